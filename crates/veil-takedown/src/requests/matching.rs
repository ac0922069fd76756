//! Matching: the items a request names (paths, blake3, photos by perceptual hash) found in its
//! releases, and the candidates a human confirms.

use std::collections::BTreeMap;

use rusqlite::params;
use serde_json::json;

use super::*;

impl Ledger {
    /// Finds the items a request names (paths, blake3, photos by PDQ or dHash against source and
    /// output hashes) in its releases and records them as candidates for a human to confirm.
    /// Returns every match of the request (candidates, confirmed and rejected).
    pub fn find_matches(&mut self, id: &str) -> Result<Vec<Candidate>, LedgerError> {
        let req = self.request(id)?;
        Self::require_state(
            &req,
            &[Status::Received, Status::Matching, Status::Confirmed],
            "match",
        )?;
        let versions = json_versions(&self.scope_versions(&req)?);
        let ds = req.dataset.as_str();
        // item -> (distance, how); exact matches win, then the smallest distance.
        let mut best: BTreeMap<i64, (u32, String)> = BTreeMap::new();
        let mut offer = |item: i64, distance: u32, how: String| {
            let e = best.entry(item).or_insert((u32::MAX, String::new()));
            if (distance, &how) < (e.0, &e.1) {
                *e = (distance, how);
            }
        };
        let (exact, globs): (Vec<&String>, Vec<&String>) =
            req.scope.paths.iter().partition(|p| !is_glob(p));
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id FROM items WHERE dataset = ?1 AND path = ?2
                   AND version IN (SELECT value FROM json_each(?3))",
            )?;
            for p in exact {
                for item in stmt.query_map(params![ds, p, versions], |r| r.get(0))? {
                    offer(item?, 0, "path".into());
                }
            }
        }
        if !globs.is_empty() {
            let mut b = globset::GlobSetBuilder::new();
            for g in &globs {
                b.add(
                    globset::GlobBuilder::new(g)
                        .literal_separator(true)
                        .build()
                        .map_err(|e| LedgerError::Invalid(format!("--path {g:?}: {e}")))?,
                );
            }
            let set = b.build().map_err(|e| LedgerError::Invalid(e.to_string()))?;
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, path FROM items WHERE dataset = ?1
                   AND version IN (SELECT value FROM json_each(?2))",
            )?;
            let rows = stmt.query_map(params![ds, versions], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (item, path) = row?;
                if set.is_match(&path) {
                    offer(item, 0, "path".into());
                }
            }
        }
        let hashes = req
            .scope
            .blake3
            .iter()
            .map(|h| (h.as_str(), "blake3"))
            .chain(
                req.scope
                    .photos
                    .iter()
                    .map(|p| (p.blake3.as_str(), "photo-blake3")),
            );
        {
            // Two index lookups; an OR over both columns would scan the table.
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, 1 FROM items INDEXED BY items_blake3 WHERE blake3 = ?2 AND dataset = ?1
                   AND version IN (SELECT value FROM json_each(?3))
                 UNION ALL
                 SELECT id, 0 FROM items INDEXED BY items_source_blake3 WHERE source_blake3 = ?2
                   AND dataset = ?1 AND version IN (SELECT value FROM json_each(?3))",
            )?;
            for (h, label) in hashes {
                let rows = stmt.query_map(params![ds, h, versions], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?))
                })?;
                for row in rows {
                    let (item, output) = row?;
                    let side = if output { "output" } else { "source" };
                    offer(item, 0, format!("{label}:{side}"));
                }
            }
        }
        for photo in &req.scope.photos {
            let all = req.releases.is_none();
            for (item, distance, how) in
                self.photo_matches(ds, (!all).then_some(versions.as_str()), photo)?
            {
                offer(item, distance, how);
            }
        }
        let found: Vec<(i64, u32, String)> =
            best.into_iter().map(|(i, (d, h))| (i, d, h)).collect();
        self.write(|w| {
            let status = status_in(w, id)?;
            if !matches!(
                status,
                Status::Received | Status::Matching | Status::Confirmed
            ) {
                return Err(LedgerError::State {
                    id: id.to_string(),
                    what: format!("cannot match: request is {status}"),
                });
            }
            for (item, distance, how) in &found {
                w.tx.execute(
                    "INSERT INTO matches (request, item, how, distance) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(request, item) DO UPDATE SET how = excluded.how,
                         distance = excluded.distance
                     WHERE excluded.distance < matches.distance",
                    params![id, item, how, distance],
                )?;
            }
            if status == Status::Received {
                set_status(w, id, Status::Matching)?;
            }
            w.event(
                "request.matched",
                json!({"id": id, "candidates": found.iter().map(|(i, d, h)| json!({"item": i, "distance": d, "how": h})).collect::<Vec<_>>()}),
            )
        })?;
        self.matches(id)
    }

    /// Items whose source or output perceptual hashes are near the photo's.
    fn photo_matches(
        &self,
        dataset: &str,
        versions: Option<&str>,
        photo: &PhotoEvidence,
    ) -> Result<Vec<(i64, u32, String)>, LedgerError> {
        let pdq = (photo.pdq_quality >= PDQ_MIN_QUALITY)
            .then(|| pdq_blob(&photo.pdq))
            .flatten();
        let dhash = dhash_int(&photo.dhash);
        // One SQL function call per row (see `store::photo_near`); a full scan of the table is
        // faster than walking the (dataset, version, path) index for this.
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, m FROM (
                 SELECT id, veil_photo_near(source_pdq, source_pdq_quality, output_pdq,
                            output_pdq_quality, source_dhash, output_dhash, ?1, ?2) AS m
                 FROM items NOT INDEXED
                 WHERE dataset = ?3 AND (?4 IS NULL OR version IN (SELECT value FROM json_each(?4))))
             WHERE m IS NOT NULL",
        )?;
        let rows = stmt.query_map(params![pdq, dhash, dataset, versions], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (item, code) = row?;
            let how = ["pdq:source", "pdq:output", "dhash:source", "dhash:output"]
                [(code / 1000).clamp(0, 3) as usize];
            out.push((item, (code % 1000) as u32, how.to_string()));
        }
        Ok(out)
    }

    /// Every match of a request, by path then version.
    pub fn matches(&self, id: &str) -> Result<Vec<Candidate>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT i.id, i.dataset, i.version, i.path, i.blake3, m.how, m.distance, m.state
             FROM matches m JOIN items i ON i.id = m.item WHERE m.request = ?1",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(Candidate {
                item: r.get(0)?,
                dataset: r.get(1)?,
                version: r.get(2)?,
                path: r.get(3)?,
                blake3: r.get(4)?,
                how: r.get(5)?,
                distance: r.get(6)?,
                state: r.get(7)?,
            })
        })?;
        let mut v: Vec<Candidate> = rows.collect::<Result<_, _>>()?;
        v.sort_by(|a, b| {
            a.path
                .cmp(&b.path)
                .then(version_order(&a.version, &b.version))
        });
        Ok(v)
    }

    /// Items of the request's releases named by path, output blake3 or source blake3.
    pub(super) fn items_named(&self, req: &Request, spec: &str) -> Result<Vec<i64>, LedgerError> {
        let versions = json_versions(&self.scope_versions(req)?);
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM items WHERE dataset = ?1
               AND (path = ?2 OR blake3 = ?2 OR source_blake3 = ?2)
               AND version IN (SELECT value FROM json_each(?3))",
        )?;
        let rows = stmt.query_map(params![req.dataset, spec, versions], |r| r.get(0))?;
        let ids: Vec<i64> = rows.collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Err(LedgerError::Invalid(format!(
                "{spec:?} names no item of {} in the request's releases (give a path, output blake3 or source blake3)",
                req.dataset
            )));
        }
        Ok(ids)
    }
}
