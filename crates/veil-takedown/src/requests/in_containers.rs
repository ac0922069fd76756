//! Withdrawn items inside dataset containers (a sample of a WebDataset shard, a row of a Parquet
//! table): which container holds a member item, and rewriting that container without it, in a
//! new release (apply) and in an output tree or mirror (purge).
//!
//! A member item's path is `CONTAINER#MEMBER` where `CONTAINER` is an item of the same release
//! (see `veil_ledger::members`); the catalogue finds it as the longest item path that is followed
//! by `#` in the member's path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use veil_ledger::Containers;

use crate::LedgerError;

/// A container rewritten without withdrawn members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerRewrite {
    pub path: String,
    /// blake3 of the container before (the release's that held the members).
    pub from_blake3: String,
    /// blake3 of the rewritten container.
    pub to_blake3: String,
    /// Names of the members left out (withdrawn ones and their samples' other members).
    pub dropped: Vec<String>,
}

/// The container item (path, blake3) of `dataset`@`version` that holds member item `path`, if
/// `path` is a member item.
pub(crate) fn container_of(
    conn: &Connection,
    dataset: &str,
    version: &str,
    path: &str,
) -> Result<Option<(String, String)>, LedgerError> {
    if !path.contains('#') {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            "SELECT path, blake3 FROM items WHERE dataset = ?1 AND version = ?2
               AND length(path) < length(?3) AND substr(?3, 1, length(path) + 1) = path || '#'
             ORDER BY length(path) DESC LIMIT 1",
            params![dataset, version, path],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// The member item paths of `container` in `dataset`@`version`.
pub(crate) fn members_of(
    conn: &Connection,
    dataset: &str,
    version: &str,
    container: &str,
) -> Result<Vec<String>, LedgerError> {
    let mut stmt = conn.prepare_cached(
        "SELECT path FROM items WHERE dataset = ?1 AND version = ?2
           AND substr(path, 1, length(?3) + 1) = ?3 || '#'",
    )?;
    let rows = stmt.query_map(params![dataset, version, container], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The blake3 of item `path` in `dataset`@`version`.
pub(crate) fn item_blake3(
    conn: &Connection,
    dataset: &str,
    version: &str,
    path: &str,
) -> Result<Option<String>, LedgerError> {
    Ok(conn
        .query_row(
            "SELECT blake3 FROM items WHERE dataset = ?1 AND version = ?2 AND path = ?3",
            params![dataset, version, path],
            |r| r.get(0),
        )
        .optional()?)
}

/// `dir/path` when it is a regular file reached through real directories only (no link on the
/// way), `path` being a safe relative path.
pub(crate) fn file_in(dir: &Path, path: &str) -> Result<PathBuf, String> {
    if !veil_ledger::safe_rel_path(path) {
        return Err("unsafe path (absolute or with ..): not touched".into());
    }
    let mut target = PathBuf::from(dir);
    let parts: Vec<&str> = path.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        target.push(part);
        let meta = match std::fs::symlink_metadata(&target) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("absent".into()),
            Err(e) => return Err(format!("unreadable: {e}")),
        };
        let last = i + 1 == parts.len();
        if meta.file_type().is_symlink() {
            return Err("a link is on the path (links are not followed): not touched".into());
        }
        if !last && !meta.is_dir() {
            return Err("a parent is not a directory".into());
        }
        if last && !meta.is_file() {
            return Err("not a regular file: not touched".into());
        }
    }
    Ok(target)
}

/// A fresh name beside `file` for its rewritten copy.
fn temp_beside(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.with_file_name(format!(".{name}.veil-rewrite-{}", std::process::id()))
}

/// Rewrites `dir/container` (whose blake3 must be `from_blake3`, the hash in the release whose
/// member items are `members`) without the member items `drop`, into a temporary file beside
/// it. Returns the temporary file and what was written; the caller renames or removes it.
pub(crate) fn rewrite_in(
    dir: &Path,
    container: &str,
    from_blake3: &str,
    members: &[String],
    drop: &BTreeSet<String>,
    access: &dyn Containers,
) -> Result<(PathBuf, ContainerRewrite), String> {
    let file = file_in(dir, container)?;
    let tmp = temp_beside(&file);
    let _ = std::fs::remove_file(&tmp);
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    match veil_ledger::rewrite_container(&file, container, from_blake3, &refs, drop, access, &tmp) {
        Ok(r) => Ok((
            tmp,
            ContainerRewrite {
                path: container.to_string(),
                from_blake3: from_blake3.to_string(),
                to_blake3: r.blake3,
                dropped: r.dropped,
            },
        )),
        Err(why) => {
            let _ = std::fs::remove_file(&tmp);
            Err(why)
        }
    }
}

/// Puts the rewritten `tmp` in place of `dir/container`: synced, then renamed over it.
pub(crate) fn replace(dir: &Path, container: &str, tmp: &Path) -> Result<(), String> {
    let file = file_in(dir, container)?;
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(tmp, &file))
        .map_err(|e| {
            let _ = std::fs::remove_file(tmp);
            format!("cannot replace the container: {e}")
        })?;
    if let Some(parent) = file.parent() {
        let _ = veil_ledger::fsutil::sync_dir(parent);
    }
    Ok(())
}

/// Groups member item paths by their container in `dataset`@`version`: container path to (its
/// blake3, the members to drop). Paths that are not member items, and members of a container
/// that is itself withdrawn, are left out.
pub(crate) fn by_container(
    conn: &Connection,
    dataset: &str,
    version: &str,
    paths: &BTreeSet<String>,
) -> Result<BTreeMap<String, (String, BTreeSet<String>)>, LedgerError> {
    let mut out: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for p in paths {
        if let Some((c, h)) = container_of(conn, dataset, version, p)? {
            if !paths.contains(&c) {
                out.entry(c)
                    .or_insert_with(|| (h, BTreeSet::new()))
                    .1
                    .insert(p.clone());
            }
        }
    }
    Ok(out)
}
