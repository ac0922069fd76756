//! Verifying a tree or an archive against a release manifest: every item present with its
//! blake3, nothing else there, nothing read through a link or an unsafe path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use crate::members::Containers;
use crate::release::{
    hash_file, safe_rel_path, ManifestItem, ReleaseError, ReservedFile, VerifyReport,
};

/// Whether `name` (or `name` below one top-level directory) is a file veil writes beside the
/// items: a record file, or a pack's card or release files. Such names are not extras, so their
/// content is read with [`read_reserved`] instead.
pub(crate) fn is_reserved(name: &str) -> bool {
    let exact = |n: &str| {
        crate::is_record_file(n)
            || n == crate::PACK_CARD
            || n.strip_prefix(crate::PACK_RELEASE_DIR)
                .is_some_and(|r| r.starts_with('/'))
    };
    exact(name) || name.split_once('/').is_some_and(|(_, rest)| exact(rest))
}

/// Reads one of veil's own files as a stream: its blake3, and why it is not what veil writes
/// there. veil writes only UTF-8 text (JSON lines, JSON, Markdown) there, never a picture, so an
/// original photo saved under such a name, or text carrying one, is a problem.
pub(crate) fn read_reserved(mut r: impl std::io::Read) -> std::io::Result<ReservedFile> {
    let mut h = blake3::Hasher::new();
    let mut scanner = veil_core::embedded::Scanner::new();
    // Bytes of a character split across chunks.
    let mut carry: Vec<u8> = Vec::new();
    let mut problem: Option<String> = None;
    let mut chunk = vec![0u8; 256 << 10];
    loop {
        let n = r.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        let c = &chunk[..n];
        h.update(c);
        if problem.is_some() {
            continue;
        }
        if c.contains(&0) {
            problem = Some("binary content, not the text veil writes there".into());
            continue;
        }
        carry.extend_from_slice(c);
        match std::str::from_utf8(&carry) {
            Ok(_) => carry.clear(),
            Err(e) if e.error_len().is_none() => {
                carry.drain(..e.valid_up_to());
            }
            Err(_) => {
                problem = Some("not UTF-8 text, as veil writes there".into());
                continue;
            }
        }
        if let Some(what) = scanner.push(c) {
            problem = Some(format!("it carries {what}"));
        }
    }
    if problem.is_none() {
        if !carry.is_empty() {
            problem = Some("not UTF-8 text, as veil writes there".into());
        } else if let Some(what) = scanner.finish() {
            problem = Some(format!("it carries {what}"));
        }
    }
    Ok(ReservedFile {
        blake3: h.finalize().to_hex().to_string(),
        problem,
    })
}

/// [`read_reserved`] of a file in a tree (never through a link).
fn reserved_on_disk(dir: &Path, rel: &str, is_link: bool) -> ReservedFile {
    if is_link {
        return ReservedFile {
            blake3: "symlink".into(),
            problem: Some("a link, not a file veil writes".into()),
        };
    }
    match fs::File::open(dir.join(rel)).and_then(|f| read_reserved(std::io::BufReader::new(f))) {
        Ok(f) => f,
        Err(e) => ReservedFile {
            blake3: format!("unreadable: {e}"),
            problem: Some(format!("unreadable ({e})")),
        },
    }
}

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
    let found = walk(dir);
    let reserved = found
        .iter()
        .filter(|(name, _)| is_reserved(name))
        .map(|(name, &is_link)| (name.clone(), reserved_on_disk(dir, name, is_link)))
        .collect();
    let mut report = compare(items, found, reserved, |path, is_link| {
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
    reserved: BTreeMap<String, ReservedFile>,
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
    // Record files are not extra by their names: what they hold must be records.
    for (path, f) in &reserved {
        if let (true, Some(problem)) = (crate::is_record_file(path), &f.problem) {
            report.changed.push((
                path.clone(),
                "a record file of veil".into(),
                problem.clone(),
            ));
        }
    }
    report.reserved = reserved;
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
    let mut reserved: BTreeMap<String, ReservedFile> = BTreeMap::new();
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
        let hash = if kind.is_file() && is_reserved(&name) {
            let f = read_reserved(&mut entry).map_err(io)?;
            let h = f.blake3.clone();
            reserved.insert(name.clone(), f);
            Some(h)
        } else if kind.is_file() {
            let mut h = blake3::Hasher::new();
            std::io::copy(&mut entry, &mut h).map_err(io)?;
            Some(h.finalize().to_hex().to_string())
        } else {
            None
        };
        found.insert(name, hash);
    }
    Ok(compare_found(items, found, reserved))
}

/// Compares the members of an archive (name -> blake3, `None` for anything but a regular file)
/// with the manifest. A single top-level directory (`tar cf x.tar out/`) is stripped when the
/// manifest paths do not start with it.
pub(crate) fn compare_found(
    items: &[ManifestItem],
    mut found: BTreeMap<String, Option<String>>,
    mut reserved: BTreeMap<String, ReservedFile>,
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
        reserved = reserved
            .into_iter()
            .map(|(k, v)| (k.strip_prefix(&t).unwrap_or(&k).to_string(), v))
            .collect();
    }
    compare(items, found, reserved, |_, entry| {
        entry.ok_or_else(|| "not a regular file".to_string())
    })
}
