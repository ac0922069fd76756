//! Verifying a tree or an archive against a release manifest: every item present with its
//! blake3, nothing else there, nothing read through a link or an unsafe path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use crate::members::Containers;
use crate::release::{hash_file, safe_rel_path, ManifestItem, ReleaseError, VerifyReport};

/// Walks `dir` without following links: regular files and links (anything not a directory),
/// by `/`-joined relative path; `true` for links.
fn walk(dir: &Path) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&abs) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push((e.path(), r)),
                Ok(t) => {
                    out.insert(r, t.is_symlink());
                }
                Err(_) => {
                    out.insert(r, false);
                }
            }
        }
    }
    out
}

/// Checks an output tree against a manifest. Never follows links (a link at an item's path is
/// reported as changed, an item under a linked directory as missing); manifest paths that are
/// absolute or contain `..` are reported as invalid and never read.
///
/// With `containers`, the member items inside dataset containers are read back from their
/// container and checked one by one ([`crate::members`]); without, they are counted in
/// `members_unchecked` (their container's hash still covers them).
pub fn verify_tree(
    dir: &Path,
    items: &[ManifestItem],
    containers: Option<&dyn Containers>,
) -> VerifyReport {
    let mut report = compare(items, walk(dir), |path, is_link| {
        if is_link {
            Err("symlink".into())
        } else {
            hash_file(&dir.join(path)).map_err(|e| format!("unreadable: {e}"))
        }
    });
    if let Some(c) = containers {
        report.members_unchecked = 0;
        crate::members::verify_members(dir, items, c, &mut report);
    }
    report
}

/// Compares what was found (name -> entry) with the manifest: `hash_of` gives an entry's blake3,
/// or what to report instead of one. Entries the manifest does not list are extra, except
/// veil's own record files at the top.
fn compare<T>(
    items: &[ManifestItem],
    mut found: BTreeMap<String, T>,
    mut hash_of: impl FnMut(&str, T) -> Result<String, String>,
) -> VerifyReport {
    let mut report = VerifyReport::default();
    for item in items {
        if item.archive.is_some() {
            report.members_unchecked += 1;
            continue;
        }
        if !safe_rel_path(&item.path) {
            report.invalid.push(item.path.clone());
            continue;
        }
        match found.remove(&item.path).map(|e| hash_of(&item.path, e)) {
            None => report.missing.push(item.path.clone()),
            Some(Ok(h)) if h == item.blake3 => report.ok += 1,
            Some(Ok(actual)) | Some(Err(actual)) => {
                report
                    .changed
                    .push((item.path.clone(), item.blake3.clone(), actual))
            }
        }
    }
    report.extra = found
        .into_keys()
        .filter(|p| !crate::is_record_file(p))
        .collect();
    report.missing.sort();
    report.changed.sort();
    report.invalid.sort();
    report
}

/// Checks a tar archive (as published: `tar cf release.tar -C OUTPUT .` or with one top-level
/// directory) against a manifest without extracting anything: every regular file is hashed as it
/// streams by. Entries with unsafe names are reported as extra, links as changed.
pub fn verify_archive(
    archive: &Path,
    items: &[ManifestItem],
) -> Result<VerifyReport, ReleaseError> {
    let file = fs::File::open(archive).map_err(|e| ReleaseError::Io {
        path: archive.to_path_buf(),
        source: e,
    })?;
    verify_tar_stream(std::io::BufReader::new(file), archive, items)
}

/// [`verify_archive`] of a tar stream (a `.tar.zst` decompressing as it is read, say); `archive`
/// names it in errors.
pub fn verify_tar_stream(
    stream: impl std::io::Read,
    archive: &Path,
    items: &[ManifestItem],
) -> Result<VerifyReport, ReleaseError> {
    let io = |e: std::io::Error| ReleaseError::Io {
        path: archive.to_path_buf(),
        source: e,
    };
    let mut ar = tar::Archive::new(stream);
    // name -> Some(hash) for regular files, None for links and other entries.
    let mut found: BTreeMap<String, Option<String>> = BTreeMap::new();
    for entry in ar.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        let name = entry
            .path()
            .map_err(io)?
            .to_string_lossy()
            .replace('\\', "/");
        let name = name.trim_start_matches("./").to_string();
        let hash = if kind.is_file() {
            let mut h = blake3::Hasher::new();
            std::io::copy(&mut entry, &mut h).map_err(io)?;
            Some(h.finalize().to_hex().to_string())
        } else {
            None
        };
        found.insert(name, hash);
    }
    Ok(compare_found(items, found))
}

/// Compares the members of an archive (name -> blake3, `None` for anything but a regular file)
/// with the manifest. A single top-level directory (`tar cf x.tar out/`) is stripped when the
/// manifest paths do not start with it.
pub(crate) fn compare_found(
    items: &[ManifestItem],
    mut found: BTreeMap<String, Option<String>>,
) -> VerifyReport {
    let top: BTreeSet<&str> = found
        .keys()
        .filter_map(|k| k.split_once('/').map(|(t, _)| t))
        .collect();
    let all_under_top = top.len() == 1 && found.keys().all(|k| k.contains('/'));
    if all_under_top && !items.iter().any(|i| found.contains_key(&i.path)) {
        let t = format!("{}/", top.iter().next().copied().unwrap_or_default());
        found = found
            .into_iter()
            .map(|(k, v)| (k.strip_prefix(&t).unwrap_or(&k).to_string(), v))
            .collect();
    }
    compare(items, found, |_, entry| {
        entry.ok_or_else(|| "not a regular file".to_string())
    })
}
