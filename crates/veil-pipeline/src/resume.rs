//! Resuming a run on an output tree that already holds records (a killed run, or a re-run).
//!
//! An image is kept, not processed again, only when its previous record says it was written
//! (`redacted` or `no_detections`) by the same veil version with the same models, policy and
//! parameters, its source file still has the recorded blake3, and its output file is a regular
//! file with the recorded size and blake3. Everything else is redone, with the reason. A torn last
//! line (a kill in the middle of an append) is ignored, and partial temporary outputs are removed.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use veil_core::{ImageStatus, TOOL_VERSION};
use veil_ledger::{ModelRef, ProvenanceRecord};

use crate::walk::rel_string;

/// What a run must match for a previous record to stand.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    pub params_blake3: &'a str,
    pub policy_blake3: Option<&'a str>,
    pub models: &'a [ModelRef],
}

/// The outcome of looking at the previous records.
#[derive(Debug, Default)]
pub struct ResumePlan {
    /// Records that stand; their images are not processed again.
    pub kept: Vec<ProvenanceRecord>,
    /// Images with a previous record that are redone, and why.
    pub redo: Vec<(String, String)>,
    /// Lines of the previous records file that could not be read (a torn last line).
    pub unreadable_lines: usize,
}

/// Suffix of the temporary files that outputs are written to before their rename.
pub const PARTIAL_SUFFIX: &str = ".veil-partial";

fn blake3_file(path: &Path) -> Option<(String, u64)> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut h = blake3::Hasher::new();
    h.update_reader(fs::File::open(path).ok()?).ok()?;
    Some((h.finalize().to_hex().to_string(), meta.len()))
}

/// Reads the records file leniently: the last record of a path wins; unreadable lines counted.
fn read_lenient(path: &Path) -> (HashMap<String, ProvenanceRecord>, usize) {
    let mut map = HashMap::new();
    let mut bad = 0;
    let Ok(f) = fs::File::open(path) else {
        return (map, 0);
    };
    for line in BufReader::new(f).split(b'\n') {
        let Ok(line) = line else {
            bad += 1;
            break;
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<ProvenanceRecord>(&line) {
            Ok(r) => {
                map.insert(r.path.clone(), r);
            }
            Err(_) => bad += 1,
        }
    }
    (map, bad)
}

/// Removes `.NAME.veil-partial` files left by a killed run, and links planted at such names (the
/// links themselves: links are never followed).
///
/// With `own` = `None` (an unsharded run: the whole output tree is this run's), anywhere under
/// `output`. With `Some(paths)` (one shard of a run whose other shards may be writing into the
/// same tree right now), only the temporary files of those relative paths: a shard never touches
/// another shard's files, and does not walk the whole tree.
pub fn remove_partials(output: &Path, own: Option<&[PathBuf]>) -> Vec<PathBuf> {
    let is_partial = |name: &std::ffi::OsStr, t: fs::FileType| {
        let name = name.to_string_lossy();
        (t.is_file() || t.is_symlink()) && name.starts_with('.') && name.ends_with(PARTIAL_SUFFIX)
    };
    let Some(own) = own else {
        return walkdir::WalkDir::new(output)
            .follow_links(false)
            .into_iter()
            .flatten()
            .filter(|e| is_partial(e.file_name(), e.file_type()))
            .filter(|e| fs::remove_file(e.path()).is_ok())
            .map(|e| e.path().to_path_buf())
            .collect();
    };
    own.iter()
        .filter_map(|rel| {
            let dir = crate::process::output_dir(output, rel, false).ok()?;
            let mut name = std::ffi::OsString::from(".");
            name.push(rel.file_name()?);
            name.push(PARTIAL_SUFFIX);
            let tmp = dir.join(name);
            let meta = fs::symlink_metadata(&tmp).ok()?;
            (is_partial(tmp.file_name()?, meta.file_type()) && fs::remove_file(&tmp).is_ok())
                .then_some(tmp)
        })
        .collect()
}

/// Decides, for every image of this run, whether its previous record stands.
pub fn plan(
    input: &Path,
    output: &Path,
    records_file: &Path,
    images: &[PathBuf],
    archives: &[PathBuf],
    expect: Expect<'_>,
) -> ResumePlan {
    let (mut previous, unreadable_lines) = read_lenient(records_file);
    let candidates: Vec<(String, ProvenanceRecord)> = images
        .iter()
        .chain(archives)
        .filter_map(|rel| {
            let s = rel_string(rel);
            previous.remove(&s).map(|r| (s, r))
        })
        .collect();
    let decided: Vec<Result<ProvenanceRecord, (String, String)>> = candidates
        .into_par_iter()
        .map(
            |(path, r)| match why_redo(input, output, &path, &r, expect) {
                None => Ok(r),
                Some(why) => Err((path, why)),
            },
        )
        .collect();
    let mut plan = ResumePlan {
        unreadable_lines,
        ..ResumePlan::default()
    };
    let mut kept_archives = std::collections::HashSet::new();
    for d in decided {
        match d {
            Ok(r) => {
                if r.format.as_deref().is_some_and(is_archive_format) {
                    kept_archives.insert(r.path.clone());
                }
                plan.kept.push(r)
            }
            Err(x) => plan.redo.push(x),
        }
    }
    // An archive with a failed member is redone, like a failed image.
    for r in previous.values() {
        if let (Some(a), ImageStatus::Failed) = (&r.archive, r.status) {
            if kept_archives.remove(a) {
                plan.kept.retain(|k| &k.path != a);
                plan.redo.push((a.clone(), "a member failed before".into()));
            }
        }
    }
    // The member records of an archive that stands are kept with it (its output holds them).
    plan.kept.extend(previous.into_values().filter(|r| {
        r.archive
            .as_ref()
            .is_some_and(|a| kept_archives.contains(a))
    }));
    plan.redo.sort();
    plan
}

/// Whether a record's `format` is that of a dataset archive ([`crate::members::Format`]).
fn is_archive_format(f: &str) -> bool {
    matches!(f, "tar" | "tar.gz" | "tar.zst" | "zip" | "parquet")
}

fn why_redo(
    input: &Path,
    output: &Path,
    path: &str,
    r: &ProvenanceRecord,
    expect: Expect<'_>,
) -> Option<String> {
    if !matches!(r.status, ImageStatus::Redacted | ImageStatus::NoDetections) {
        return Some("failed before".into());
    }
    if r.tool_version != TOOL_VERSION {
        return Some(format!(
            "veil version changed ({} -> {TOOL_VERSION})",
            r.tool_version
        ));
    }
    if r.models != expect.models {
        return Some("models changed".into());
    }
    if r.policy_blake3.as_deref() != expect.policy_blake3 {
        return Some("policy file changed".into());
    }
    if r.params_blake3 != expect.params_blake3 {
        return Some("parameters changed".into());
    }
    match (
        blake3_file(&output.join(path)),
        &r.output_blake3,
        r.output_size,
    ) {
        (Some((h, n)), Some(want), Some(size)) if h == *want && n == size => {}
        (None, _, _) => return Some("output missing".into()),
        _ => return Some("output changed since it was written".into()),
    }
    match (blake3_file(&input.join(path)), &r.source_blake3) {
        (Some((h, _)), Some(want)) if h == *want => None,
        _ => Some("source changed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn partial_files_and_links_at_partial_names_are_removed_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let (out, victims) = (t.path().join("out"), t.path().join("victims"));
        fs::create_dir_all(out.join("a")).unwrap();
        fs::create_dir_all(&victims).unwrap();
        fs::write(victims.join("v"), b"victim").unwrap();
        fs::write(out.join("a/.x.jpg.veil-partial"), b"half").unwrap();
        symlink(victims.join("v"), out.join(".y.png.veil-partial")).unwrap();
        symlink(&victims, out.join(".d.veil-partial")).unwrap();
        symlink(&victims, out.join("linked")).unwrap();
        fs::write(out.join("keep.jpg"), b"k").unwrap();
        let mut removed = remove_partials(&out, None);
        removed.sort();
        assert_eq!(
            removed,
            [
                out.join(".d.veil-partial"),
                out.join(".y.png.veil-partial"),
                out.join("a/.x.jpg.veil-partial"),
            ]
        );
        assert_eq!(fs::read(victims.join("v")).unwrap(), b"victim");
        assert!(out.join("keep.jpg").is_file());
        assert!(fs::symlink_metadata(out.join("linked")).is_ok());
    }

    #[test]
    fn a_shard_removes_only_the_partial_files_of_its_own_paths() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        fs::create_dir_all(out.join("a")).unwrap();
        // Ours (killed earlier) and another shard's (being written right now).
        fs::write(out.join("a/.mine.jpg.veil-partial"), b"half").unwrap();
        fs::write(out.join("a/.theirs.jpg.veil-partial"), b"in progress").unwrap();
        fs::write(out.join("a/mine.jpg"), b"done earlier").unwrap();
        let own = [PathBuf::from("a/mine.jpg"), PathBuf::from("b/absent.jpg")];
        let removed = remove_partials(&out, Some(&own));
        assert_eq!(removed, [out.join("a/.mine.jpg.veil-partial")]);
        assert!(out.join("a/.theirs.jpg.veil-partial").is_file());
        assert!(out.join("a/mine.jpg").is_file());
    }
}
