//! The catalogue side of the ledger: datasets, releases and their items (imported from verified
//! release manifests), recipients (by hand or from a CSV download log) and deadline policies.

use std::collections::BTreeSet;
use std::path::Path;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use serde_json::json;
use veil_ledger::{load_release, ManifestItem, ReleaseInfo, RELEASE_FILE};

use crate::deadline::DuePolicy;
use crate::store::{Ledger, Writer};
use crate::{known, LedgerError};

/// What importing one release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    Added { items: u64 },
    AlreadyPresent,
}

/// A release as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseRow {
    pub dataset: String,
    pub version: String,
    pub parent: Option<String>,
    pub created_at: String,
    pub merkle_root: String,
    pub items: u64,
    pub status: String,
    pub superseded_by: Option<String>,
    pub status_request: Option<String>,
}

/// Someone who obtained a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipient {
    pub dataset: String,
    pub version: String,
    pub name: String,
    pub contact: String,
    pub received_at: String,
    pub origin: String,
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() & 1 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// 16 hex digits of a dHash as the signed integer SQLite stores.
pub(crate) fn dhash_int(s: &str) -> Option<i64> {
    (s.len() == 16)
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
        .map(|v| v as i64)
}

pub(crate) fn pdq_blob(s: &str) -> Option<Vec<u8>> {
    unhex(s).filter(|b| b.len() == 32)
}

/// Inserts a verified release and its items; the newest import of a dataset becomes `current`
/// and the previous current one `superseded`.
pub(crate) fn insert_release(
    w: &Writer<'_>,
    info: &ReleaseInfo,
    items: &[ManifestItem],
) -> Result<ImportOutcome, LedgerError> {
    // `load_release` refuses these already; checked again so no caller can catalogue a path that
    // a purge or a notice would join to a directory.
    if let Some(item) = items.iter().find(|i| !veil_ledger::safe_rel_path(&i.path)) {
        return Err(veil_ledger::ReleaseError::UnsafePath {
            path: item.path.clone(),
        }
        .into());
    }
    let existing: Option<String> =
        w.tx.query_row(
            "SELECT merkle_root FROM releases WHERE dataset = ?1 AND version = ?2",
            params![info.dataset, info.version],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(root) = existing {
        return if root == info.merkle_root {
            Ok(ImportOutcome::AlreadyPresent)
        } else {
            Err(LedgerError::ReleaseConflict {
                dataset: info.dataset.clone(),
                version: info.version.clone(),
                existing: root,
                found: info.merkle_root.clone(),
            })
        };
    }
    w.tx.execute(
        "INSERT OR IGNORE INTO datasets (name) VALUES (?1)",
        [&info.dataset],
    )?;
    let withdrawn: Option<String> = w.tx.query_row(
        "SELECT withdrawn_by FROM datasets WHERE name = ?1",
        [&info.dataset],
        |r| r.get(0),
    )?;
    if let Some(req) = withdrawn {
        return Err(LedgerError::State {
            id: req,
            what: format!(
                "dataset {} was withdrawn; release {} cannot be added to it",
                info.dataset, info.version
            ),
        });
    }
    refuse_tombstoned(w, info, items)?;
    w.tx.execute(
        "UPDATE releases SET status = 'superseded', superseded_by = ?2
         WHERE dataset = ?1 AND status = 'current'",
        params![info.dataset, info.version],
    )?;
    w.tx.execute(
        "INSERT INTO releases (dataset, version, parent, created_at, imported_at, merkle_root,
                               manifest_blake3, items)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            info.dataset,
            info.version,
            info.parent,
            info.created_at,
            w.now,
            info.merkle_root,
            info.manifest_blake3,
            info.items
        ],
    )?;
    let mut stmt = w.tx.prepare_cached(
        "INSERT INTO items (dataset, version, path, size, blake3, source_blake3,
             source_pdq, source_pdq_quality, source_dhash, output_pdq, output_pdq_quality, output_dhash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    for it in items {
        let (sp, sq, sd) = split_phash(it.source_phash.as_ref());
        let (op, oq, od) = split_phash(it.output_phash.as_ref());
        stmt.execute(params![
            info.dataset,
            info.version,
            it.path,
            it.size,
            it.blake3,
            it.source_blake3,
            sp,
            sq,
            sd,
            op,
            oq,
            od
        ])?;
    }
    w.event(
        "release.imported",
        json!({
            "dataset": info.dataset,
            "version": info.version,
            "parent": info.parent,
            "merkle_root": info.merkle_root,
            "manifest_blake3": info.manifest_blake3,
            "items": info.items,
        }),
    )?;
    Ok(ImportOutcome::Added {
        items: items.len() as u64,
    })
}

/// Fails when an item of the release is a withdrawn one come back: its output blake3, or its
/// source blake3, is a tombstone's (of any request, any dataset of the ledger).
fn refuse_tombstoned(
    w: &Writer<'_>,
    info: &ReleaseInfo,
    items: &[ManifestItem],
) -> Result<(), LedgerError> {
    let any: bool =
        w.tx.query_row("SELECT EXISTS (SELECT 1 FROM tombstones)", [], |r| r.get(0))?;
    if !any {
        return Ok(());
    }
    let mut by_output = w.tx.prepare_cached(
        "SELECT request, dataset, version, path FROM tombstones WHERE blake3 = ?1
         ORDER BY request, dataset, version, path LIMIT 1",
    )?;
    let mut by_source = w.tx.prepare_cached(
        "SELECT request, dataset, version, path FROM tombstones WHERE source_blake3 = ?1
         ORDER BY request, dataset, version, path LIMIT 1",
    )?;
    let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(String, String, String, String)> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    };
    for it in items {
        let mut hit = by_output
            .query_row([&it.blake3], row)
            .optional()?
            .map(|t| ("output", it.blake3.clone(), t));
        if hit.is_none() {
            if let Some(src) = &it.source_blake3 {
                hit = by_source
                    .query_row([src], row)
                    .optional()?
                    .map(|t| ("source", src.clone(), t));
            }
        }
        if let Some((which, blake3, (request, ds, v, path))) = hit {
            return Err(LedgerError::Tombstoned(Box::new(crate::Tombstoned {
                dataset: info.dataset.clone(),
                version: info.version.clone(),
                path: it.path.clone(),
                which,
                blake3,
                request,
                withdrawn: format!("{ds}@{v}:{path}"),
            })));
        }
    }
    Ok(())
}

type PhashCols = (Option<Vec<u8>>, Option<u8>, Option<i64>);

fn split_phash(p: Option<&veil_ledger::PerceptualHashes>) -> PhashCols {
    match p {
        Some(p) => (pdq_blob(&p.pdq), Some(p.pdq_quality), dhash_int(&p.dhash)),
        None => (None, None, None),
    }
}

/// Orders versions numerically when both are numbers (`2` before `10`), else as text.
pub(crate) fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

impl Ledger {
    /// Imports release `dataset`/`version` from the manifests root (verified first).
    pub fn import_release(
        &mut self,
        root: &Path,
        dataset: &str,
        version: &str,
    ) -> Result<ImportOutcome, LedgerError> {
        let (info, items) = load_release(root, dataset, version)?;
        self.write(|w| insert_release(w, &info, &items))
    }

    /// Imports every release found under `root` (`NAME/V/release.json`), oldest first.
    pub fn import_all(
        &mut self,
        root: &Path,
    ) -> Result<Vec<(String, String, ImportOutcome)>, LedgerError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| LedgerError::Io { path: p, source: e }
        };
        let mut found = Vec::new();
        for ds in std::fs::read_dir(root).map_err(io(root))? {
            let ds = ds.map_err(io(root))?;
            let name = ds.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !ds.path().is_dir() {
                continue;
            }
            for v in std::fs::read_dir(ds.path()).map_err(io(&ds.path()))? {
                let v = v.map_err(io(&ds.path()))?;
                let version = v.file_name().to_string_lossy().into_owned();
                if !version.starts_with('.') && v.path().join(RELEASE_FILE).is_file() {
                    found.push((name.clone(), version));
                }
            }
        }
        let mut loaded = Vec::new();
        for (d, v) in found {
            let (info, items) = load_release(root, &d, &v)?;
            loaded.push((info, items));
        }
        loaded.sort_by(|(a, _), (b, _)| {
            a.dataset
                .cmp(&b.dataset)
                .then(a.created_at.cmp(&b.created_at))
                .then(version_order(&a.version, &b.version))
        });
        self.write(|w| {
            loaded
                .iter()
                .map(|(info, items)| {
                    Ok((
                        info.dataset.clone(),
                        info.version.clone(),
                        insert_release(w, info, items)?,
                    ))
                })
                .collect()
        })
    }

    /// Names of the datasets with their status.
    pub fn datasets(&self) -> Result<Vec<(String, String)>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, status FROM datasets ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn require_dataset(&self, name: &str) -> Result<(), LedgerError> {
        if self.datasets()?.iter().any(|(n, _)| n == name) {
            Ok(())
        } else {
            Err(LedgerError::UnknownDataset {
                name: name.to_string(),
                known: known(self.datasets()?.into_iter().map(|(n, _)| n)),
            })
        }
    }

    /// Releases of a dataset, oldest first.
    pub fn releases(&self, dataset: &str) -> Result<Vec<ReleaseRow>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT dataset, version, parent, created_at, merkle_root, items, status, superseded_by,
                    status_request
             FROM releases WHERE dataset = ?1",
        )?;
        let rows = stmt.query_map([dataset], |r| {
            Ok(ReleaseRow {
                dataset: r.get(0)?,
                version: r.get(1)?,
                parent: r.get(2)?,
                created_at: r.get(3)?,
                merkle_root: r.get(4)?,
                items: r.get(5)?,
                status: r.get(6)?,
                superseded_by: r.get(7)?,
                status_request: r.get(8)?,
            })
        })?;
        let mut v: Vec<ReleaseRow> = rows.collect::<Result<_, _>>()?;
        v.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then(version_order(&a.version, &b.version))
        });
        Ok(v)
    }

    pub(crate) fn require_release(&self, dataset: &str, version: &str) -> Result<(), LedgerError> {
        self.require_dataset(dataset)?;
        let all = self.releases(dataset)?;
        if all.iter().any(|r| r.version == version) {
            Ok(())
        } else {
            Err(LedgerError::UnknownRelease {
                dataset: dataset.to_string(),
                version: version.to_string(),
                known: known(all.into_iter().map(|r| r.version)),
            })
        }
    }

    /// Records that `r.name` obtained release `r.dataset@r.version`. Returns false when the
    /// same row (same time) is already there.
    pub fn add_recipient(&mut self, r: &Recipient) -> Result<bool, LedgerError> {
        self.require_release(&r.dataset, &r.version)?;
        self.write(|w| insert_recipient(w, r))
    }

    /// Imports a download log: a CSV file with a header naming `name`, `contact`, either
    /// `release` (`NAME@V`) or `dataset` and `version`, and optionally `received_at` (defaults to
    /// now). All rows or none: an unknown release fails the whole import.
    pub fn import_recipients_csv(&mut self, file: &Path) -> Result<(u64, u64), LedgerError> {
        let parse = |line: usize, reason: String| LedgerError::Parse {
            path: file.to_path_buf(),
            line,
            reason,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(file)
            .map_err(|e| parse(1, e.to_string()))?;
        let headers = reader
            .headers()
            .map_err(|e| parse(1, e.to_string()))?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        let (Some(name_c), Some(contact_c)) = (col("name"), col("contact")) else {
            return Err(parse(
                1,
                "header must name `name` and `contact` columns".into(),
            ));
        };
        let release_c = col("release");
        let (dataset_c, version_c) = (col("dataset"), col("version"));
        if release_c.is_none() && (dataset_c.is_none() || version_c.is_none()) {
            return Err(parse(
                1,
                "header must name `release` (NAME@V) or `dataset` and `version`".into(),
            ));
        }
        let received_c = col("received_at").or_else(|| col("date"));
        let origin = format!(
            "csv:{}",
            file.file_name().unwrap_or_default().to_string_lossy()
        );
        let mut rows = Vec::new();
        for (i, rec) in reader.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| parse(line, e.to_string()))?;
            let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").to_string();
            let (dataset, version) = match release_c {
                Some(c) => {
                    let rel = rec.get(c).unwrap_or("");
                    match rel.split_once('@') {
                        Some((d, v)) if !d.is_empty() && !v.is_empty() => {
                            (d.to_string(), v.to_string())
                        }
                        _ => return Err(parse(line, format!("release {rel:?} is not NAME@V"))),
                    }
                }
                None => (get(dataset_c), get(version_c)),
            };
            let r = Recipient {
                dataset,
                version,
                name: get(Some(name_c)),
                contact: get(Some(contact_c)),
                received_at: get(received_c),
                origin: origin.clone(),
            };
            if r.name.is_empty() || r.contact.is_empty() {
                return Err(parse(line, "empty name or contact".into()));
            }
            if !r.received_at.is_empty() {
                veil_core::Date::parse(&r.received_at).map_err(|e| parse(line, e.to_string()))?;
            }
            self.require_release(&r.dataset, &r.version)
                .map_err(|e| parse(line, e.to_string()))?;
            rows.push(r);
        }
        self.write(|w| {
            let mut added = 0;
            let mut dup = 0;
            for mut r in rows {
                if r.received_at.is_empty() {
                    r.received_at = w.now.clone();
                }
                if insert_recipient(w, &r)? {
                    added += 1;
                } else {
                    dup += 1;
                }
            }
            Ok((added, dup))
        })
    }

    /// Recipients, optionally of one dataset, by release then name.
    pub fn recipients(&self, dataset: Option<&str>) -> Result<Vec<Recipient>, LedgerError> {
        let mut stmt = self.conn.prepare(
            "SELECT dataset, version, name, contact, received_at, origin FROM recipients
             WHERE ?1 IS NULL OR dataset = ?1 ORDER BY dataset, version, name, contact, received_at",
        )?;
        let rows = stmt.query_map([dataset], |r| {
            Ok(Recipient {
                dataset: r.get(0)?,
                version: r.get(1)?,
                name: r.get(2)?,
                contact: r.get(3)?,
                received_at: r.get(4)?,
                origin: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds or replaces a deadline policy. `holidays` is a calendar file path as given (relative
    /// paths are resolved against the ledger's directory when a request is opened).
    pub fn set_policy(
        &mut self,
        name: &str,
        policy: DuePolicy,
        holidays: Option<&str>,
    ) -> Result<(), LedgerError> {
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(LedgerError::Invalid(format!(
                "invalid policy name {name:?}"
            )));
        }
        self.write(|w| {
            w.tx.execute(
                "INSERT INTO policies (name, kind, amount, holidays) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, amount = excluded.amount,
                     holidays = excluded.holidays",
                params![name, policy.kind(), policy.amount(), holidays],
            )?;
            w.event(
                "policy.set",
                json!({"name": name, "kind": policy.kind(), "amount": policy.amount(), "holidays": holidays}),
            )
        })
    }

    /// Deadline policies: name, policy, holiday file.
    pub fn policies(&self) -> Result<Vec<(String, DuePolicy, Option<String>)>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, kind, amount, holidays FROM policies ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, kind, amount, holidays) = row?;
            let policy = DuePolicy::from_parts(&kind, amount).ok_or_else(|| {
                LedgerError::Invalid(format!("policy {name}: unknown kind {kind:?}"))
            })?;
            out.push((name, policy, holidays));
        }
        Ok(out)
    }

    /// Versions of `dataset` in a set, for scope checks.
    pub(crate) fn versions(&self, dataset: &str) -> Result<BTreeSet<String>, LedgerError> {
        Ok(self
            .releases(dataset)?
            .into_iter()
            .map(|r| r.version)
            .collect())
    }
}

fn insert_recipient(w: &Writer<'_>, r: &Recipient) -> Result<bool, LedgerError> {
    let n = w.tx.execute(
        "INSERT OR IGNORE INTO recipients (dataset, version, name, contact, received_at, origin)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            r.dataset,
            r.version,
            r.name,
            r.contact,
            r.received_at,
            r.origin
        ],
    )?;
    if n > 0 {
        w.event(
            "recipient.added",
            json!({"dataset": r.dataset, "version": r.version, "name": r.name,
                   "contact": r.contact, "received_at": r.received_at, "origin": r.origin}),
        )?;
    }
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_with_unsafe_paths_are_never_catalogued() {
        let t = tempfile::tempdir().unwrap();
        let mut l = Ledger::open_or_create(&t.path().join("l.sqlite")).unwrap();
        let item = |path: &str| -> ManifestItem {
            serde_json::from_value(json!({
                "path": path, "size": 1, "blake3": "00", "source_blake3": null,
                "provenance": {"file": "provenance.jsonl", "params_blake3": "p"},
                "models": [], "licence": null, "split": null
            }))
            .unwrap()
        };
        let info: ReleaseInfo = serde_json::from_value(json!({
            "schema": 1, "dataset": "d", "version": "1", "parent": null,
            "created_at": "2026-01-01T00:00:00Z", "items": 2, "bytes": 2, "tool_version": "0",
            "policy_blake3": null, "params_blake3": ["p"], "merkle_root": "r",
            "manifest_blake3": "m", "leaf_encoding": "x"
        }))
        .unwrap();
        for bad in ["../x.jpg", "/etc/passwd", "a/../../b.jpg"] {
            let items = [item("a.jpg"), item(bad)];
            let err = l.write(|w| insert_release(w, &info, &items)).unwrap_err();
            assert!(
                matches!(
                    &err,
                    LedgerError::Release(veil_ledger::ReleaseError::UnsafePath { path }) if path == bad
                ),
                "{bad}: {err}"
            );
        }
        assert!(l.releases("d").unwrap().is_empty());
        l.write(|w| insert_release(w, &info, &[item("a.jpg"), item("b/c.jpg")]))
            .unwrap();
        assert_eq!(l.releases("d").unwrap().len(), 1);
    }
}
