//! Items inside dataset containers (a WebDataset shard, a zip, a Parquet table): how a release
//! names them, checks them member by member, and rewrites a container without withdrawn ones.
//!
//! A member item's `path` is `CONTAINER#MEMBER` and its `archive` is `CONTAINER` (itself an item
//! of the release). For an archive, `MEMBER` is the member's name; for a table it is `row=N`, the
//! row's index in the *source* table. That name stays the item's name in every later release,
//! even when rows before it are left out (failed, or withdrawn), so a table's member items are
//! paired with its image cells in order: the k-th item by row number is the k-th non-null image
//! of the file.
//!
//! Reading and writing the formats belongs to the pipeline; it is handed in as a
//! [`Containers`] so that this crate stays free of archive and Parquet code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::release::{hash_file, ManifestItem, VerifyReport};

/// One image member of a container as read back from the file: its name (`None` for a table row),
/// size and blake3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDigest {
    pub name: Option<String>,
    pub size: u64,
    pub blake3: String,
}

/// Read and rewrite access to dataset containers, by content (the format is sniffed).
pub trait Containers: std::fmt::Debug {
    /// The image members of the container `file` in stored order. For an archive every file
    /// member is listed (with its name); for a table, every non-null cell of its image column.
    fn members(&self, file: &Path) -> Result<Vec<MemberDigest>, String>;

    /// Writes to `dst` (a new file) the container `src` without the members at `drop` (indexes
    /// into [`Containers::members`]' list); everything else keeps its content and order. An
    /// archive also loses the other members of a dropped member's sample (the WebDataset key:
    /// the name up to the first `.` of its last component). Returns the names of every member
    /// left out (for a table, `row k of the file`).
    fn rewrite_without(
        &self,
        src: &Path,
        dst: &Path,
        drop: &BTreeSet<usize>,
    ) -> Result<Vec<String>, String>;

    /// Hands the bytes of each image member of `file` to `f`, with its index in
    /// [`Containers::members`]' list, one at a time (never the whole container in memory).
    fn read_members(&self, file: &Path, f: &mut dyn FnMut(usize, &[u8])) -> Result<(), String>;
}

/// Hands `f` the bytes of each of `members` (item paths `CONTAINER#MEMBER`) found in the
/// container file `file`, paired as [`verify_members`] pairs them; returns the paths not found.
pub fn member_bytes(
    file: &Path,
    container: &str,
    members: &[&str],
    access: &dyn Containers,
    f: &mut dyn FnMut(&str, &[u8]),
) -> Result<Vec<String>, String> {
    let digests = access.members(file)?;
    let (paired, _) = pair(container, members, &digests);
    let mut by_index: BTreeMap<usize, String> = BTreeMap::new();
    let mut missing = Vec::new();
    for (path, hit) in paired {
        match hit {
            Some(k) => {
                by_index.insert(k, path);
            }
            None => missing.push(path),
        }
    }
    access.read_members(file, &mut |k, bytes| {
        if let Some(path) = by_index.get(&k) {
            f(path, bytes);
        }
    })?;
    Ok(missing)
}

/// The WebDataset key of a member name: the name up to the first `.` of its last component
/// (`000123.jpg` and `000123.seg.png` are one sample, `000123`). A table row's name `row=N` is
/// its own key.
pub fn sample_key(name: &str) -> &str {
    let start = name.rfind('/').map_or(0, |i| i + 1);
    match name[start..].find('.') {
        Some(dot) => &name[..start + dot],
        None => name,
    }
}

/// `withdrawn` (item paths) with the other member items of each withdrawn member's sample:
/// [`Containers::rewrite_without`] drops a member's whole sample, so a release must drop (and
/// tombstone) every image item of it too. `items` are the release's (path, archive) pairs.
pub fn with_whole_samples<'a>(
    items: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    withdrawn: &BTreeSet<String>,
) -> BTreeSet<String> {
    let items: Vec<(&str, &str)> = items
        .into_iter()
        .filter_map(|(p, a)| Some((p, a?)))
        .collect();
    let keys: BTreeSet<(&str, &str)> = items
        .iter()
        .filter(|(p, _)| withdrawn.contains(*p))
        .filter_map(|(p, a)| Some((*a, sample_key(member_name(p, a)?))))
        .collect();
    let mut out = withdrawn.clone();
    for (p, a) in items {
        if let Some(m) = member_name(p, a) {
            if keys.contains(&(a, sample_key(m))) {
                out.insert(p.to_string());
            }
        }
    }
    out
}

/// `MEMBER` of a member item's path `CONTAINER#MEMBER`, given its container.
pub fn member_name<'a>(path: &'a str, container: &str) -> Option<&'a str> {
    path.strip_prefix(container)?.strip_prefix('#')
}

/// The row number of a table member's name `row=N`.
pub fn row_number(member: &str) -> Option<u64> {
    member.strip_prefix("row=")?.parse().ok()
}

/// A container's member items (their `path`s) in the order their bytes are stored: for a table,
/// by row number; for an archive the order does not matter (they are found by name).
fn stored_order<'a>(container: &str, items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = items.collect();
    v.sort_by_key(|p| {
        member_name(p, container)
            .and_then(row_number)
            .unwrap_or(u64::MAX)
    });
    v
}

/// Pairs the member items of `container` (paths) with the digests read from its file: by name
/// for an archive, in order for a table. Returns, per item path, the index of its digest (or
/// `None` when the file has no such member), and the indexes of the digests no item claims.
fn pair(
    container: &str,
    member_paths: &[&str],
    digests: &[MemberDigest],
) -> (Vec<(String, Option<usize>)>, Vec<usize>) {
    let mut claimed = vec![false; digests.len()];
    let mut out = Vec::with_capacity(member_paths.len());
    if digests.iter().all(|d| d.name.is_none()) {
        for (k, p) in stored_order(container, member_paths.iter().copied())
            .into_iter()
            .enumerate()
        {
            let hit = (k < digests.len()).then_some(k);
            if let Some(k) = hit {
                claimed[k] = true;
            }
            out.push((p.to_string(), hit));
        }
    } else {
        let by_name: BTreeMap<&str, usize> = digests
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((d.name.as_deref()?, i)))
            .collect();
        for p in member_paths {
            let hit = member_name(p, container).and_then(|m| by_name.get(m).copied());
            if let Some(k) = hit {
                claimed[k] = true;
            }
            out.push((p.to_string(), hit));
        }
    }
    let unclaimed = (0..digests.len()).filter(|&i| !claimed[i]).collect();
    (out, unclaimed)
}

/// Checks the member items of a release against the containers in the output tree `dir`, member
/// by member, adding what differs to `report` (`missing`, `changed` under the member's path; a
/// row of a table that no item names goes to `extra` as `TABLE#row k of the file`). Archive
/// members that are not items (captions, JSON sidecars) are covered by the container's own hash.
pub(crate) fn verify_members(
    dir: &Path,
    items: &[ManifestItem],
    containers: &dyn Containers,
    report: &mut VerifyReport,
) {
    let mut by_container: BTreeMap<&str, Vec<&ManifestItem>> = BTreeMap::new();
    for i in items {
        if let Some(c) = &i.archive {
            by_container.entry(c.as_str()).or_default().push(i);
        }
    }
    for (container, members) in by_container {
        let file = dir.join(container);
        let digests = match std::fs::symlink_metadata(&file) {
            Ok(m) if m.is_file() => containers.members(&file),
            Ok(_) => Err("the container is not a regular file".into()),
            Err(_) => {
                report
                    .missing
                    .extend(members.iter().map(|m| m.path.clone()));
                continue;
            }
        };
        let digests = match digests {
            Ok(d) => d,
            Err(why) => {
                for m in members {
                    report.changed.push((
                        m.path.clone(),
                        m.blake3.clone(),
                        format!("unreadable: {why}"),
                    ));
                }
                continue;
            }
        };
        let paths: Vec<&str> = members.iter().map(|m| m.path.as_str()).collect();
        let by_path: BTreeMap<&str, &ManifestItem> =
            members.iter().map(|m| (m.path.as_str(), *m)).collect();
        let (paired, unclaimed) = pair(container, &paths, &digests);
        for (path, hit) in paired {
            let item = by_path[path.as_str()];
            match hit {
                None => report.missing.push(path),
                Some(k) if digests[k].blake3 == item.blake3 => report.members_ok += 1,
                Some(k) => {
                    report
                        .changed
                        .push((path, item.blake3.clone(), digests[k].blake3.clone()))
                }
            }
        }
        if digests.iter().all(|d| d.name.is_none()) {
            for k in unclaimed {
                report
                    .extra
                    .push(format!("{container}#row {k} of the file"));
            }
        }
    }
    report.missing.sort();
    report.changed.sort();
    report.extra.sort();
}

/// What [`rewrite_container`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub size: u64,
    pub blake3: String,
    /// Names of every member left out (withdrawn ones and their samples' other members).
    pub dropped: Vec<String>,
}

/// Writes to `dst` the container `file` without the member items `drop` (paths
/// `CONTAINER#MEMBER`). `members` are all the member items of the container in the release that
/// `file` belongs to (to pair table rows in order); `expected_blake3` is that release's hash of
/// the container, checked before anything is written.
pub fn rewrite_container(
    file: &Path,
    container: &str,
    expected_blake3: &str,
    members: &[&str],
    drop: &BTreeSet<String>,
    containers: &dyn Containers,
    dst: &Path,
) -> Result<Rewritten, String> {
    let actual = hash_file(file).map_err(|e| format!("unreadable: {e}"))?;
    if actual != expected_blake3 {
        return Err(format!(
            "content differs (blake3 {actual}): not the container the release lists, left in place"
        ));
    }
    let digests = containers.members(file)?;
    let (paired, _) = pair(container, members, &digests);
    let mut positions = BTreeSet::new();
    for (path, hit) in paired {
        if drop.contains(&path) {
            match hit {
                Some(k) => {
                    positions.insert(k);
                }
                None => return Err(format!("{path} is not in the container")),
            }
        }
    }
    if positions.len() != drop.len() {
        let missing: Vec<&String> = drop
            .iter()
            .filter(|d| !members.contains(&d.as_str()))
            .collect();
        return Err(format!(
            "not member items of {container} in its release: {missing:?}"
        ));
    }
    let dropped = containers.rewrite_without(file, dst, &positions)?;
    let size = std::fs::metadata(dst)
        .map_err(|e| format!("cannot read the rewritten container: {e}"))?
        .len();
    let blake3 = hash_file(dst).map_err(|e| format!("cannot read the rewritten container: {e}"))?;
    Ok(Rewritten {
        size,
        blake3,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: Option<&str>, h: &str) -> MemberDigest {
        MemberDigest {
            name: name.map(str::to_string),
            size: 1,
            blake3: h.into(),
        }
    }

    #[test]
    fn table_rows_pair_in_row_number_order_not_string_order() {
        let paths = ["t.parquet#row=10", "t.parquet#row=2", "t.parquet#row=9"];
        let digests = [d(None, "a"), d(None, "b"), d(None, "c"), d(None, "x")];
        let (paired, unclaimed) = pair("t.parquet", &paths, &digests);
        let got: Vec<(&str, Option<usize>)> =
            paired.iter().map(|(p, k)| (p.as_str(), *k)).collect();
        assert_eq!(
            got,
            [
                ("t.parquet#row=2", Some(0)),
                ("t.parquet#row=9", Some(1)),
                ("t.parquet#row=10", Some(2))
            ]
        );
        assert_eq!(unclaimed, [3]);
    }

    #[test]
    fn archive_members_pair_by_name() {
        let paths = ["s.tar#b.jpg", "s.tar#a.jpg", "s.tar#gone.jpg"];
        let digests = [
            d(Some("a.jpg"), "1"),
            d(Some("a.txt"), "2"),
            d(Some("b.jpg"), "3"),
        ];
        let (paired, unclaimed) = pair("s.tar", &paths, &digests);
        let got: Vec<(&str, Option<usize>)> =
            paired.iter().map(|(p, k)| (p.as_str(), *k)).collect();
        assert_eq!(
            got,
            [
                ("s.tar#b.jpg", Some(2)),
                ("s.tar#a.jpg", Some(0)),
                ("s.tar#gone.jpg", None)
            ]
        );
        assert_eq!(unclaimed, [1]);
    }

    #[test]
    fn sample_keys_follow_webdataset() {
        assert_eq!(sample_key("000123.jpg"), "000123");
        assert_eq!(sample_key("000123.seg.png"), "000123");
        assert_eq!(sample_key("a.b/000123.txt"), "a.b/000123");
        assert_eq!(sample_key("row=12"), "row=12");
    }

    #[test]
    fn member_names_split_at_the_container_not_at_the_first_hash() {
        assert_eq!(member_name("a#b.tar#c#d.jpg", "a#b.tar"), Some("c#d.jpg"));
        assert_eq!(member_name("a.tar#x.jpg", "b.tar"), None);
        assert_eq!(row_number("row=42"), Some(42));
        assert_eq!(row_number("row=x"), None);
    }
}
