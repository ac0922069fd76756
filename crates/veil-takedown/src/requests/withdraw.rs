//! Withdrawal: apply (a new release without the confirmed items, or the whole dataset withdrawn),
//! tombstones, purge of an output tree, and the public withdrawals feed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use veil_ledger::Containers;

use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};

use super::in_containers::{self, ContainerRewrite};
use super::*;

impl Ledger {
    /// Applies a request: cuts a new release of the dataset without the confirmed items (or
    /// withdraws the whole dataset), marks the releases that held them withdrawn, records
    /// tombstones. The release files are written under `root` while the ledger is locked; a
    /// release left behind by an interrupted apply of the same request is adopted.
    ///
    /// Confirmed items inside dataset containers (a sample of a shard, a row of a table) need
    /// `tree`, the output tree holding the containers and access to their formats: each
    /// affected container is rewritten without them (into a temporary file, removed again), and
    /// the new release lists the rewritten container's hash. [`Ledger::purge`] then puts the
    /// same bytes in place.
    pub fn apply(
        &mut self,
        id: &str,
        root: &Path,
        new_version: Option<&str>,
        tree: Option<(&Path, &dyn Containers)>,
    ) -> Result<ApplyReport, LedgerError> {
        let req = self.request(id)?;
        let allowed: &[Status] = if req.whole_dataset {
            &[Status::Received, Status::Matching, Status::Confirmed]
        } else {
            &[Status::Confirmed]
        };
        if matches!(
            req.status,
            Status::Applied | Status::Notified | Status::Closed
        ) {
            return Err(LedgerError::State {
                id: id.to_string(),
                what: format!("already applied (request is {})", req.status),
            });
        }
        Self::require_state(&req, allowed, "apply (confirm items first)")?;
        let releases = self.releases(&req.dataset)?;
        let ledger_dir = self.dir();
        self.write(|w| {
            if status_in(w, id)? != req.status {
                return Err(LedgerError::State {
                    id: id.to_string(),
                    what: "changed by another process; run again".into(),
                });
            }
            let report = if req.whole_dataset {
                apply_whole(w, &req, &releases)?
            } else {
                apply_items(w, &req, &releases, root, new_version, tree)?
            };
            set_status(w, id, Status::Applied)?;
            let detail = serde_json::to_value(&report).expect("report serialises");
            action(w, id, "applied", &detail)?;
            w.event("request.applied", json!({"id": id, "report": detail}))?;
            queue_applied_answer(w, &ledger_dir, &req, &report)?;
            Ok(report)
        })
    }

    /// Tombstones of a request.
    pub fn tombstones(&self, id: &str) -> Result<Vec<TombstoneRow>, LedgerError> {
        tombstones_in(&self.conn, id)
    }

    /// Deletes the withdrawn files of an applied request from an output tree: only regular files
    /// (no links followed, no parent that is a link) at the tombstone's path whose blake3 is the
    /// withdrawn one. Records what it deleted and what it left.
    ///
    /// A withdrawn member of a dataset container (with `containers`) is removed by rewriting
    /// its container without it (and its sample's other members): the container must be the one
    /// a release holding the member lists; the rewrite is synced and renamed over it.
    pub fn purge(
        &mut self,
        id: &str,
        dir: &Path,
        containers: Option<&dyn Containers>,
    ) -> Result<PurgeReport, LedgerError> {
        let req = self.request(id)?;
        Self::require_state(
            &req,
            &[Status::Applied, Status::Notified, Status::Closed],
            "purge (apply first)",
        )?;
        let mut report = PurgeReport {
            dir: dir.display().to_string(),
            ..PurgeReport::default()
        };
        let mut inside: BTreeMap<String, Vec<TombstoneRow>> = BTreeMap::new();
        let mut loose = Vec::new();
        for t in self.tombstones(id)? {
            match in_containers::container_of(&self.conn, &t.dataset, &t.version, &t.path)? {
                Some((c, _)) => inside.entry(c).or_default().push(t),
                None => loose.push(t),
            }
        }
        for (container, tombs) in inside {
            match self.purge_container(dir, &container, &tombs, containers) {
                Ok(r) => {
                    report.deleted.extend(tombs.iter().map(|t| t.path.clone()));
                    report.rewritten.push(r);
                }
                Err(why) => report
                    .skipped
                    .extend(tombs.iter().map(|t| (t.path.clone(), why.clone()))),
            }
        }
        report.deleted.sort();
        report.deleted.dedup();
        report.skipped.sort();
        report.skipped.dedup();
        // A path withdrawn from several releases may hold any of their bytes.
        let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for t in loose {
            by_path.entry(t.path).or_default().insert(t.blake3);
        }
        for (path, hashes) in by_path {
            match purge_one(dir, &path, &hashes) {
                Ok(()) => report.deleted.push(path),
                Err(why) => report.skipped.push((path, why)),
            }
        }
        let detail = serde_json::to_value(&report).expect("report serialises");
        self.write(|w| {
            action(w, id, "purged", &detail)?;
            w.event("request.purged", json!({"id": id, "report": detail}))
        })?;
        Ok(report)
    }

    /// Rewrites `dir/container` without the withdrawn members `tombs` (all in that container):
    /// the container in `dir` must be the one a release that held them lists.
    fn purge_container(
        &self,
        dir: &Path,
        container: &str,
        tombs: &[TombstoneRow],
        containers: Option<&dyn Containers>,
    ) -> Result<ContainerRewrite, String> {
        let Some(access) = containers else {
            return Err(format!("inside {container}, which only veil can rewrite"));
        };
        let file =
            in_containers::file_in(dir, container).map_err(|why| format!("{container}: {why}"))?;
        let actual = {
            let mut h = blake3::Hasher::new();
            h.update_reader(std::fs::File::open(&file).map_err(|e| format!("unreadable: {e}"))?)
                .map_err(|e| format!("unreadable: {e}"))?;
            h.finalize().to_hex().to_string()
        };
        let db = |e: LedgerError| e.to_string();
        let ds = tombs[0].dataset.as_str();
        let mut rewritten_to = Vec::new();
        let versions: BTreeSet<&str> = tombs.iter().map(|t| t.version.as_str()).collect();
        for version in versions {
            let Some(from) =
                in_containers::item_blake3(&self.conn, ds, version, container).map_err(db)?
            else {
                continue;
            };
            let new = tombs
                .iter()
                .find(|t| t.version == version)
                .and_then(|t| t.new_version.clone());
            if let Some(n) = new {
                if let Some(h) =
                    in_containers::item_blake3(&self.conn, ds, &n, container).map_err(db)?
                {
                    rewritten_to.push(h);
                }
            }
            if actual != from {
                continue;
            }
            let members =
                in_containers::members_of(&self.conn, ds, version, container).map_err(db)?;
            let drop: BTreeSet<String> = tombs
                .iter()
                .filter(|t| t.version == version)
                .map(|t| t.path.clone())
                .collect();
            let (tmp, r) =
                in_containers::rewrite_in(dir, container, &from, &members, &drop, access)?;
            in_containers::replace(dir, container, &tmp)?;
            return Ok(r);
        }
        if rewritten_to.contains(&actual) {
            return Err(format!("{container} is already rewritten without them"));
        }
        Err(format!(
            "{container}: content differs (blake3 {actual}): not a container a release lists, \
             left in place"
        ))
    }

    /// The public withdrawals feed: one JSON object per applied request, oldest first. Only
    /// blake3 hashes of withdrawn files; perceptual hashes stay private.
    pub fn withdrawals(&self) -> Result<Vec<Value>, LedgerError> {
        let mut out = Vec::new();
        let mut reqs = self.requests()?;
        reqs.sort_by(|a, b| a.id.cmp(&b.id));
        for r in reqs {
            if !matches!(
                r.status,
                Status::Applied | Status::Notified | Status::Closed
            ) {
                continue;
            }
            let applied_at: Option<String> = self
                .conn
                .query_row(
                    "SELECT at FROM actions WHERE request = ?1 AND kind = 'applied' ORDER BY id LIMIT 1",
                    [&r.id],
                    |row| row.get(0),
                )
                .optional()?;
            let mut stmt = self.conn.prepare_cached(
                "SELECT version FROM releases WHERE dataset = ?1 AND status_request = ?2",
            )?;
            let mut releases: Vec<String> = stmt
                .query_map(params![r.dataset, r.id], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            releases.sort_by(|a, b| version_order(a, b));
            let tombs = self.tombstones(&r.id)?;
            let new_release = tombs.iter().find_map(|t| t.new_version.clone());
            // Containers that lost withdrawn members: their hash before and in the new release,
            // so a mirror holding the old shard or table recognises it.
            let mut rewritten = BTreeSet::new();
            for t in &tombs {
                let Some(n) = &t.new_version else { continue };
                if let Some((c, from)) =
                    in_containers::container_of(&self.conn, &t.dataset, &t.version, &t.path)?
                {
                    if let Some(to) = in_containers::item_blake3(&self.conn, &t.dataset, n, &c)? {
                        rewritten.insert((c, from, to));
                    }
                }
            }
            let rewritten: Vec<Value> = rewritten
                .into_iter()
                .map(|(path, from, to)| json!({"path": path, "blake3": from, "new_blake3": to}))
                .collect();
            let hashes: BTreeSet<String> = tombs.into_iter().map(|t| t.blake3).collect();
            out.push(json!({
                "request": r.id,
                "date": applied_at,
                "dataset": r.dataset,
                "whole_dataset": r.whole_dataset,
                "releases": releases,
                "new_release": new_release,
                "withdrawn_blake3": hashes,
                "rewritten_containers": rewritten,
                "ledger_head": self.applied_head(&r.id)?.map(|h| h.to_json()),
            }));
        }
        Ok(out)
    }
}

/// The answer to the requester once a request is applied: what was withdrawn, the new release
/// and how to check it, and the chain head of the withdrawal.
fn queue_applied_answer(
    w: &Writer<'_>,
    ledger_dir: &Path,
    req: &Request,
    report: &ApplyReport,
) -> Result<(), LedgerError> {
    let mut vars = crate::letters::request_vars(req);
    let mut seen = BTreeSet::new();
    let files: Vec<(&str, &str)> = report
        .tombstones
        .iter()
        .filter(|t| seen.insert((t.path.as_str(), t.blake3.as_str())))
        .map(|t| (t.path.as_str(), t.blake3.as_str()))
        .collect();
    vars.insert("withdrawn_count", files.len().to_string());
    vars.insert(
        "withdrawn",
        if report.whole_dataset {
            format!("- every file of {}", req.dataset)
        } else {
            crate::letters::withdrawn_lines(files.into_iter())
        },
    );
    vars.insert(
        "releases",
        report
            .withdrawn_releases
            .iter()
            .map(|v| format!("{}@{v}", req.dataset))
            .collect::<Vec<_>>()
            .join(", "),
    );
    if let Some((v, root)) = &report.new_release {
        let r = format!("{}@{v}", req.dataset);
        vars.insert("new_release", format!("{r} (Merkle root {root})"));
        vars.insert(
            "verify",
            format!(
                "Anyone can check that a withdrawn path is gone: `veil release prove {r} --item PATH --absent`."
            ),
        );
    } else {
        vars.insert("new_release", "none (the dataset is withdrawn)".into());
    }
    let head: (i64, String) = w.tx.query_row(
        "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    vars.insert("ledger_head", format!("{}:{}", head.0, head.1));
    crate::letters::queue(
        w,
        ledger_dir,
        crate::letters::NewLetter {
            request: &req.id,
            template: "applied",
            kind: "answer",
            event: "applied",
            to_name: &req.requester,
            to_addr: &req.contact,
            language: req.language.as_deref().unwrap_or("en"),
            vars,
        },
    )
}

/// The containers of the current release that lose members, rewritten from `tree` (temporary
/// copies, removed again): container path to (size, blake3) for the new release's line.
fn rewrite_for_release(
    w: &Writer<'_>,
    ds: &str,
    version: &str,
    paths: &BTreeSet<String>,
    tree: Option<(&Path, &dyn Containers)>,
) -> Result<BTreeMap<String, (u64, String)>, LedgerError> {
    let groups = in_containers::by_container(&w.tx, ds, version, paths)?;
    let mut out = BTreeMap::new();
    if groups.is_empty() {
        return Ok(out);
    }
    let Some((dir, access)) = tree else {
        let names: Vec<&str> = groups.keys().map(String::as_str).collect();
        return Err(LedgerError::Invalid(format!(
            "confirmed items are inside {} ({}): give the output tree that holds them              (`veil takedown apply ID --purge DIR`) so they can be rewritten without them",
            if names.len() == 1 { "a container" } else { "containers" },
            names.join(", ")
        )));
    };
    for (container, (from, drop)) in groups {
        let members = in_containers::members_of(&w.tx, ds, version, &container)?;
        let (tmp, r) = in_containers::rewrite_in(dir, &container, &from, &members, &drop, access)
            .map_err(|why| {
                LedgerError::Invalid(format!(
                    "{container} in {}: {why}; the new release needs the container as release                      {version} lists it",
                    dir.display()
                ))
            })?;
        let size = std::fs::metadata(&tmp).map(|m| m.len());
        let _ = std::fs::remove_file(&tmp);
        let size = size.map_err(|e| LedgerError::Invalid(format!("{container}: {e}")))?;
        out.insert(container, (size, r.to_blake3));
    }
    Ok(out)
}

/// Deletes `dir/path` when its blake3 is one of `withdrawn` (the bytes of the releases that held
/// it).
fn purge_one(dir: &Path, path: &str, withdrawn: &BTreeSet<String>) -> Result<(), String> {
    let target = in_containers::file_in(dir, path)?;
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(&target).map_err(|e| format!("unreadable: {e}"))?)
        .map_err(|e| format!("unreadable: {e}"))?;
    let actual = h.finalize().to_hex().to_string();
    if !withdrawn.contains(&actual) {
        return Err(format!(
            "content differs (blake3 {actual}): not a withdrawn file, left in place"
        ));
    }
    std::fs::remove_file(&target).map_err(|e| format!("cannot delete: {e}"))
}

fn apply_whole(
    w: &Writer<'_>,
    req: &Request,
    releases: &[crate::ReleaseRow],
) -> Result<ApplyReport, LedgerError> {
    w.tx.execute(
        "UPDATE datasets SET status = 'withdrawn', withdrawn_by = ?2, withdrawn_at = ?3 WHERE name = ?1",
        params![req.dataset, req.id, w.now],
    )?;
    w.tx.execute(
        "UPDATE releases SET status = 'withdrawn', status_request = ?2 WHERE dataset = ?1",
        params![req.dataset, req.id],
    )?;
    // One tombstone per item of every release (each release's own bytes).
    for r in releases.iter().rev() {
        w.tx.execute(
            "INSERT OR IGNORE INTO tombstones (request, dataset, version, new_version, path, size,
                 blake3, source_blake3)
             SELECT ?1, dataset, version, NULL, path, size, blake3, source_blake3
             FROM items WHERE dataset = ?2 AND version = ?3",
            params![req.id, req.dataset, r.version],
        )?;
    }
    Ok(ApplyReport {
        dataset: req.dataset.clone(),
        whole_dataset: true,
        new_release: None,
        withdrawn_releases: releases.iter().map(|r| r.version.clone()).collect(),
        tombstones: tombstones_in(&w.tx, &req.id)?,
    })
}

fn tombstones_in(conn: &rusqlite::Connection, id: &str) -> Result<Vec<TombstoneRow>, LedgerError> {
    let mut stmt = conn.prepare(
        "SELECT dataset, version, new_version, path, size, blake3, source_blake3
         FROM tombstones WHERE request = ?1 ORDER BY dataset, path, version",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok(TombstoneRow {
            dataset: r.get(0)?,
            version: r.get(1)?,
            new_version: r.get(2)?,
            path: r.get(3)?,
            size: r.get(4)?,
            blake3: r.get(5)?,
            source_blake3: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds to `temp.doomed` the other member items of each doomed member's WebDataset sample, in
/// the same release: rewriting the shard drops the whole sample (`000123.jpg` takes
/// `000123.seg.png`, a mask of the same person), so the release, its tombstones and the feed
/// must drop it too.
fn doom_whole_samples(w: &Writer<'_>, ds: &str) -> Result<(), LedgerError> {
    let doomed: Vec<(String, String)> = {
        let mut stmt = w.tx.prepare(
            "SELECT i.version, i.path FROM items i JOIN temp.doomed d ON d.item = i.id
             WHERE i.dataset = ?1 AND instr(i.path, '#') > 0",
        )?;
        let rows = stmt.query_map([ds], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (version, path) in doomed {
        let Some((container, _)) = in_containers::container_of(&w.tx, ds, &version, &path)? else {
            continue;
        };
        let Some(key) = veil_ledger::members::member_name(&path, &container)
            .map(veil_ledger::members::sample_key)
        else {
            continue;
        };
        for sibling in in_containers::members_of(&w.tx, ds, &version, &container)? {
            let same = veil_ledger::members::member_name(&sibling, &container)
                .is_some_and(|m| veil_ledger::members::sample_key(m) == key);
            if same {
                w.tx.execute(
                    "INSERT OR IGNORE INTO temp.doomed
                     SELECT id FROM items WHERE dataset = ?1 AND version = ?2 AND path = ?3",
                    params![ds, version, sibling],
                )?;
            }
        }
    }
    Ok(())
}

fn apply_items(
    w: &Writer<'_>,
    req: &Request,
    releases: &[crate::ReleaseRow],
    root: &Path,
    new_version: Option<&str>,
    tree: Option<(&Path, &dyn Containers)>,
) -> Result<ApplyReport, LedgerError> {
    let id = req.id.as_str();
    let ds = req.dataset.as_str();
    // The confirmed items, and every item of the dataset that is the same file or the same
    // source photo (a withdrawn photo is withdrawn under any path, in any release); never an
    // item rejected for this request. A path is not an identity: another release may hold
    // another photo under the same path.
    w.tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS doomed (item INTEGER PRIMARY KEY); DELETE FROM temp.doomed;",
    )?;
    w.tx.execute(
        "INSERT OR IGNORE INTO temp.doomed
         SELECT i.id FROM items i WHERE i.dataset = ?1
           AND i.id NOT IN (SELECT m.item FROM matches m
                            WHERE m.request = ?2 AND m.state = 'rejected')
           AND (i.id IN (SELECT m.item FROM matches m
                         WHERE m.request = ?2 AND m.state = 'confirmed')
             OR i.blake3 IN (SELECT c.blake3 FROM matches m JOIN items c ON c.id = m.item
                             WHERE m.request = ?2 AND m.state = 'confirmed')
             OR i.source_blake3 IN (SELECT c.source_blake3 FROM matches m JOIN items c ON c.id = m.item
                             WHERE m.request = ?2 AND m.state = 'confirmed'))",
        params![ds, id],
    )?;
    doom_whole_samples(w, ds)?;
    let current = releases.iter().find(|r| r.status == "current");
    let mut new_release = None;
    if let Some(cur) = current {
        let paths: BTreeSet<String> = {
            let mut stmt = w.tx.prepare(
                "SELECT i.path FROM items i JOIN temp.doomed d ON d.item = i.id
                 WHERE i.dataset = ?1 AND i.version = ?2",
            )?;
            let rows = stmt.query_map(params![ds, cur.version], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if !paths.is_empty() {
            let version = match new_version {
                Some(v) => v.to_string(),
                None => next_version(&cur.version).ok_or_else(|| {
                    LedgerError::Invalid(format!(
                        "cannot derive the version after {:?}; pass --version",
                        cur.version
                    ))
                })?,
            };
            let rewritten = rewrite_for_release(w, ds, &cur.version, &paths, tree)?;
            let (info, tombs) = match veil_ledger::cut_release_without(
                root,
                ds,
                &cur.version,
                &version,
                &paths,
                &rewritten,
                id,
                w.now.clone(),
            ) {
                Ok(r) => r,
                Err(veil_ledger::ReleaseError::AlreadyExists { path }) => {
                    // Left by an interrupted apply of this same request? Then adopt it.
                    let (info, _) = veil_ledger::load_release(root, ds, &version)?;
                    let tombs = veil_ledger::load_tombstones(root, ds, &version)?;
                    let same = info.parent.as_deref() == Some(cur.version.as_str())
                        && !tombs.is_empty()
                        && tombs.iter().all(|t| t.request == id)
                        && tombs
                            .iter()
                            .map(|t| t.path.clone())
                            .collect::<BTreeSet<_>>()
                            == paths;
                    if !same {
                        return Err(veil_ledger::ReleaseError::AlreadyExists { path }.into());
                    }
                    (info, tombs)
                }
                Err(e) => return Err(e.into()),
            };
            let (_, items) = veil_ledger::load_release(root, ds, &version)?;
            insert_release(w, &info, &items)?;
            for t in &tombs {
                w.tx.execute(
                    "INSERT OR IGNORE INTO tombstones (request, dataset, version, new_version, path,
                         size, blake3, source_blake3)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![id, ds, cur.version, version, t.path, t.size, t.blake3, t.source_blake3],
                )?;
            }
            new_release = Some((version, info.merkle_root));
        }
    }
    // Every release's own copy (its path, size and bytes), each a tombstone of its own.
    for r in releases.iter().rev() {
        w.tx.execute(
            "INSERT OR IGNORE INTO tombstones (request, dataset, version, new_version, path, size,
                 blake3, source_blake3)
             SELECT ?1, i.dataset, i.version, ?4, i.path, i.size, i.blake3, i.source_blake3
             FROM items i JOIN temp.doomed d ON d.item = i.id
             WHERE i.dataset = ?2 AND i.version = ?3",
            params![id, ds, r.version, new_release.as_ref().map(|n| n.0.clone())],
        )?;
    }
    let mut withdrawn = Vec::new();
    for r in releases {
        let held: i64 = w.tx.query_row(
            "SELECT COUNT(*) FROM items i JOIN temp.doomed d ON d.item = i.id
             WHERE i.dataset = ?1 AND i.version = ?2",
            params![ds, r.version],
            |row| row.get(0),
        )?;
        if held > 0 {
            w.tx.execute(
                "UPDATE releases SET status = 'withdrawn', status_request = ?3,
                     superseded_by = COALESCE(?4, superseded_by)
                 WHERE dataset = ?1 AND version = ?2",
                params![ds, r.version, id, new_release.as_ref().map(|n| n.0.clone())],
            )?;
            withdrawn.push(r.version.clone());
        }
    }
    if withdrawn.is_empty() {
        return Err(LedgerError::State {
            id: id.to_string(),
            what: "none of the confirmed items is in a release any more".into(),
        });
    }
    Ok(ApplyReport {
        dataset: ds.to_string(),
        whole_dataset: false,
        new_release,
        withdrawn_releases: withdrawn,
        tombstones: tombstones_in(&w.tx, id)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_touches_only_the_withdrawn_file_inside_the_tree() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(tree.join("a")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(tree.join("a/x.jpg"), b"withdrawn").unwrap();
        std::fs::write(tree.join("a/y.jpg"), b"someone else").unwrap();
        std::fs::write(outside.join("z.jpg"), b"withdrawn").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("link")).unwrap();
        let withdrawn = BTreeSet::from([blake3::hash(b"withdrawn").to_hex().to_string()]);
        for (path, why) in [
            ("../outside/z.jpg", "unsafe path"),
            ("/etc/passwd", "unsafe path"),
            ("link/z.jpg", "a link is on the path"),
            ("a/y.jpg", "content differs"),
            ("a/none.jpg", "absent"),
        ] {
            let err = purge_one(&tree, path, &withdrawn).unwrap_err();
            assert!(err.contains(why), "{path}: {err}");
        }
        assert!(outside.join("z.jpg").exists());
        assert!(tree.join("a/y.jpg").exists());
        purge_one(&tree, "a/x.jpg", &withdrawn).unwrap();
        assert!(!tree.join("a/x.jpg").exists());
    }
}
