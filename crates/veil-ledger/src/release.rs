//! Release manifests: numbered, immutable, verifiable snapshots of a de-identified output tree.
//!
//! A release of dataset `NAME` version `V` lives in `<root>/NAME/V/`:
//!
//! - `manifest.jsonl`: one [`ManifestItem`] per line, sorted by `path`, each line ending in `\n`;
//! - `release.json`: the [`ReleaseInfo`], with the Merkle root over the manifest lines and the
//!   blake3 of the manifest file.
//!
//! The Merkle leaves are the manifest lines exactly as stored (bytes without the newline), in
//! path order: leaf hash = `blake3(0x00 || line)` (see [`crate::merkle`]). An [`InclusionProof`]
//! carries the line itself, so anyone holding the published root can check that one item was part
//! of a release without the rest of the manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use veil_core::ImageStatus;

use crate::merkle;
use crate::provenance::{read_provenance, ProvenanceError, PROVENANCE_FILE, RUN_SUMMARY_FILE};

/// File name of the manifest inside a release directory.
pub const MANIFEST_FILE: &str = "manifest.jsonl";
/// File name of the release summary inside a release directory.
pub const RELEASE_FILE: &str = "release.json";
/// Version of the release layout.
pub const RELEASE_SCHEMA: u32 = 1;
/// How a Merkle leaf is derived from the manifest; written into every `release.json`.
pub const LEAF_ENCODING: &str = "blake3(0x00 || manifest line bytes without newline)";
/// Top-level directory names that become an item's `split`.
pub const SPLITS: &[&str] = &["train", "val", "valid", "test"];

/// Where an item's provenance record is: the records file of the output tree and the record's
/// `params_blake3`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenanceRef {
    pub file: String,
    pub params_blake3: String,
}

/// A model that touched an item: its manifest name and the blake3 of the file loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestModel {
    pub name: String,
    pub blake3: String,
}

/// One line of `manifest.jsonl`. Field order is the serialisation order, and is part of the
/// format: the Merkle leaves are these lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestItem {
    /// Relative `/`-separated path inside the output tree.
    pub path: String,
    pub size: u64,
    /// blake3 of the output file.
    pub blake3: String,
    /// blake3 of the source file (null when the source could not be hashed).
    pub source_blake3: Option<String>,
    pub provenance: ProvenanceRef,
    pub models: Vec<ManifestModel>,
    pub licence: Option<String>,
    /// `train`, `val`, `valid` or `test` when that is the first path component.
    pub split: Option<String>,
    /// Perceptual hashes of the source and of the output (for takedown matching by photo).
    #[serde(default)]
    pub source_phash: Option<crate::PerceptualHashes>,
    #[serde(default)]
    pub output_phash: Option<crate::PerceptualHashes>,
}

/// `release.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub schema: u32,
    pub dataset: String,
    pub version: String,
    pub parent: Option<String>,
    pub created_at: String,
    pub items: u64,
    pub bytes: u64,
    /// Version of the veil that built the release.
    pub tool_version: String,
    pub policy_blake3: Option<String>,
    /// Distinct `params_blake3` of the included records, sorted.
    pub params_blake3: Vec<String>,
    /// Hex Merkle root over the manifest lines.
    pub merkle_root: String,
    /// Hex blake3 of the bytes of `manifest.jsonl`.
    pub manifest_blake3: String,
    pub leaf_encoding: String,
}

/// Result of [`verify_tree`]. Every list is sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Manifest paths with no regular file in the tree.
    pub missing: Vec<String>,
    /// `(path, expected blake3, actual)`; `actual` is a hash, `symlink`, or `unreadable: reason`.
    pub changed: Vec<(String, String, String)>,
    /// Files (and links) in the tree that the manifest does not list, other than the top-level
    /// `provenance.jsonl` and `veil-run.json`.
    pub extra: Vec<String>,
    /// Manifest paths that are absolute, contain `..` or are otherwise unsafe; never read.
    pub invalid: Vec<String>,
    /// Items present with the expected blake3.
    pub ok: usize,
}

impl VerifyReport {
    /// True when every item is present and unchanged and nothing else is in the tree.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.changed.is_empty()
            && self.extra.is_empty()
            && self.invalid.is_empty()
    }
}

/// Paths added, removed and changed (any field of the manifest line differs) from `a` to `b`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// Proof that one manifest line is leaf `index` of a release's Merkle tree of `size` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub dataset: String,
    pub version: String,
    pub merkle_root: String,
    pub size: u64,
    pub index: u64,
    /// The manifest line, without its newline.
    pub leaf: String,
    /// Audit path, hex, from the leaf's sibling up.
    pub path: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("invalid {what} {value:?}: must be non-empty, without '/', '\\', '..' or control characters")]
    InvalidName { what: &'static str, value: String },
    #[error("{path}: release already exists; releases are immutable")]
    AlreadyExists { path: PathBuf },
    #[error("parent release {dataset}/{parent} not found at {path}")]
    ParentMissing {
        dataset: String,
        parent: String,
        path: PathBuf,
    },
    #[error(transparent)]
    Provenance(#[from] ProvenanceError),
    #[error("{path}: {reason}")]
    InvalidRecord { path: String, reason: String },
    #[error("{path:?}: unsafe item path (absolute, empty component, '.', '..' or '\\')")]
    UnsafePath { path: String },
    #[error("{path}: listed more than once")]
    DuplicatePath { path: String },
    #[error("{path}: output file missing")]
    OutputMissing { path: PathBuf },
    #[error("{path}: not a regular file (links are not followed)")]
    NotAFile { path: PathBuf },
    #[error("{path}: size {actual}, provenance says {expected}")]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("{path}: blake3 {actual}, expected {expected}")]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("records name more than one policy: {first:?} and {other:?}")]
    MixedPolicy {
        first: Option<String>,
        other: Option<String>,
    },
    #[error("{output_tree}: no redacted or no_detections records; a release cannot be empty")]
    Empty { output_tree: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}:{line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: unsupported release schema {schema}")]
    UnsupportedSchema { path: PathBuf, schema: u32 },
    #[error("{path}: {field} is {actual:?}, expected {expected:?}")]
    Mismatch {
        path: PathBuf,
        field: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{path}:{line}: manifest not sorted by path (or duplicate path)")]
    Unsorted { path: PathBuf, line: usize },
    #[error("Merkle root of the items is {actual}, release says {expected}")]
    RootMismatch { expected: String, actual: String },
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> ReleaseError + '_ {
    move |e| ReleaseError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Lowercase hex of bytes.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// 64 lowercase hex digits to a hash.
fn unhex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (digit(b[2 * i])? << 4) | digit(b[2 * i + 1])?;
    }
    Some(out)
}

fn check_name(what: &'static str, value: &str) -> Result<(), ReleaseError> {
    let bad = value.is_empty()
        || value == "."
        || value.contains('/')
        || value.contains('\\')
        || value.contains("..")
        || value.chars().any(char::is_control);
    if bad {
        Err(ReleaseError::InvalidName {
            what,
            value: value.to_string(),
        })
    } else {
        Ok(())
    }
}

/// True for a relative `/`-separated path of normal components (no `..`, `.`, empty component,
/// backslash, NUL or leading `/`).
fn safe_rel_path(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\\')
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

fn split_of(path: &str) -> Option<String> {
    let first = path.split('/').next()?;
    (path.contains('/') && SPLITS.contains(&first)).then(|| first.to_string())
}

/// The manifest line of an item (no newline). Deterministic: field order is fixed.
pub fn manifest_line(item: &ManifestItem) -> String {
    serde_json::to_string(item).expect("a manifest item always serialises")
}

/// Merkle leaf hashes of the items' manifest lines, in the given order.
pub fn leaf_hashes(items: &[ManifestItem]) -> Vec<[u8; 32]> {
    items
        .iter()
        .map(|i| merkle::leaf_hash(manifest_line(i).as_bytes()))
        .collect()
}

/// blake3 of a file, streamed.
fn hash_file(path: &Path) -> io::Result<String> {
    let mut h = blake3::Hasher::new();
    let mut f = fs::File::open(path)?;
    io::copy(&mut f, &mut h)?;
    Ok(h.finalize().to_hex().to_string())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ReleaseError> {
    let io = io_err(path);
    let mut f = fs::File::create(path).map_err(&io)?;
    f.write_all(bytes).map_err(&io)?;
    f.sync_all().map_err(&io)
}

/// Builds release `dataset`/`version` under `root` from the output tree of a `veil redact` run.
///
/// Only records with status `redacted` or `no_detections` enter the release. Every output file
/// must be a regular file with the recorded size and blake3. The release directory is written
/// under a temporary name and renamed into place; an existing release is never overwritten.
/// When `parent` is given, that release must exist.
pub fn build_release(
    output_tree: &Path,
    dataset: &str,
    version: &str,
    parent: Option<&str>,
    root: &Path,
    created_at: String,
    licence: Option<String>,
) -> Result<ReleaseInfo, ReleaseError> {
    check_name("dataset", dataset)?;
    check_name("version", version)?;
    if let Some(p) = parent {
        check_name("parent", p)?;
        let pdir = root.join(dataset).join(p).join(RELEASE_FILE);
        if !pdir.is_file() {
            return Err(ReleaseError::ParentMissing {
                dataset: dataset.to_string(),
                parent: p.to_string(),
                path: pdir,
            });
        }
    }
    let dataset_dir = root.join(dataset);
    let dest = dataset_dir.join(version);
    if fs::symlink_metadata(&dest).is_ok() {
        return Err(ReleaseError::AlreadyExists { path: dest });
    }

    let mut records = read_provenance(&output_tree.join(PROVENANCE_FILE))?;
    records.retain(|r| matches!(r.status, ImageStatus::Redacted | ImageStatus::NoDetections));
    if records.is_empty() {
        return Err(ReleaseError::Empty {
            output_tree: output_tree.to_path_buf(),
        });
    }
    records.sort_by(|a, b| a.path.cmp(&b.path));

    let mut items = Vec::with_capacity(records.len());
    let mut params = BTreeSet::new();
    let mut policy: Option<Option<String>> = None;
    let mut bytes = 0u64;
    for (i, r) in records.iter().enumerate() {
        if i > 0 && records[i - 1].path == r.path {
            return Err(ReleaseError::DuplicatePath {
                path: r.path.clone(),
            });
        }
        if !safe_rel_path(&r.path) {
            return Err(ReleaseError::UnsafePath {
                path: r.path.clone(),
            });
        }
        let (Some(expected_hash), Some(expected_size)) = (&r.output_blake3, r.output_size) else {
            return Err(ReleaseError::InvalidRecord {
                path: r.path.clone(),
                reason: "status is not failed but output_blake3 or output_size is null".into(),
            });
        };
        match &policy {
            None => policy = Some(r.policy_blake3.clone()),
            Some(p) if *p != r.policy_blake3 => {
                return Err(ReleaseError::MixedPolicy {
                    first: p.clone(),
                    other: r.policy_blake3.clone(),
                })
            }
            Some(_) => {}
        }
        let file = output_tree.join(&r.path);
        let meta = match fs::symlink_metadata(&file) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ReleaseError::OutputMissing { path: file })
            }
            Err(e) => return Err(io_err(&file)(e)),
        };
        if !meta.is_file() {
            return Err(ReleaseError::NotAFile { path: file });
        }
        if meta.len() != expected_size {
            return Err(ReleaseError::SizeMismatch {
                path: file,
                expected: expected_size,
                actual: meta.len(),
            });
        }
        let actual = hash_file(&file).map_err(io_err(&file))?;
        if actual != *expected_hash {
            return Err(ReleaseError::HashMismatch {
                path: file,
                expected: expected_hash.clone(),
                actual,
            });
        }
        bytes += expected_size;
        params.insert(r.params_blake3.clone());
        items.push(ManifestItem {
            path: r.path.clone(),
            size: expected_size,
            blake3: expected_hash.clone(),
            source_blake3: r.source_blake3.clone(),
            provenance: ProvenanceRef {
                file: PROVENANCE_FILE.to_string(),
                params_blake3: r.params_blake3.clone(),
            },
            models: r
                .models
                .iter()
                .map(|m| ManifestModel {
                    name: m.name.clone(),
                    blake3: m.blake3.clone(),
                })
                .collect(),
            licence: licence.clone(),
            split: split_of(&r.path),
            source_phash: r.source_phash.clone(),
            output_phash: r.output_phash.clone(),
        });
    }

    let mut manifest = Vec::new();
    let mut leaves = Vec::with_capacity(items.len());
    for item in &items {
        let line = manifest_line(item);
        leaves.push(merkle::leaf_hash(line.as_bytes()));
        manifest.extend_from_slice(line.as_bytes());
        manifest.push(b'\n');
    }
    let info = ReleaseInfo {
        schema: RELEASE_SCHEMA,
        dataset: dataset.to_string(),
        version: version.to_string(),
        parent: parent.map(str::to_string),
        created_at,
        items: items.len() as u64,
        bytes,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        policy_blake3: policy.flatten(),
        params_blake3: params.into_iter().collect(),
        merkle_root: hex(&merkle::root(&leaves)),
        manifest_blake3: blake3::hash(&manifest).to_hex().to_string(),
        leaf_encoding: LEAF_ENCODING.to_string(),
    };
    let mut info_json = serde_json::to_vec_pretty(&info).expect("release info serialises");
    info_json.push(b'\n');

    fs::create_dir_all(&dataset_dir).map_err(io_err(&dataset_dir))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dataset_dir.join(format!(".{version}.partial-{}-{nanos}", std::process::id()));
    fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    let written = (|| {
        write_synced(&tmp.join(MANIFEST_FILE), &manifest)?;
        write_synced(&tmp.join(RELEASE_FILE), &info_json)?;
        // Checked again just before the rename: rename(2) would replace an empty directory.
        if fs::symlink_metadata(&dest).is_ok() {
            return Err(ReleaseError::AlreadyExists { path: dest.clone() });
        }
        fs::rename(&tmp, &dest).map_err(io_err(&dest))
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Ok(d) = fs::File::open(&dataset_dir) {
        let _ = d.sync_all();
    }
    Ok(info)
}

/// Reads release `dataset`/`version` and checks it: schema, names, `manifest_blake3`, order of
/// the lines, counts and the Merkle root.
pub fn load_release(
    root: &Path,
    dataset: &str,
    version: &str,
) -> Result<(ReleaseInfo, Vec<ManifestItem>), ReleaseError> {
    check_name("dataset", dataset)?;
    check_name("version", version)?;
    let dir = root.join(dataset).join(version);
    let info_path = dir.join(RELEASE_FILE);
    let text = fs::read(&info_path).map_err(io_err(&info_path))?;
    let info: ReleaseInfo = serde_json::from_slice(&text).map_err(|e| ReleaseError::Parse {
        path: info_path.clone(),
        line: e.line(),
        reason: e.to_string(),
    })?;
    if info.schema != RELEASE_SCHEMA {
        return Err(ReleaseError::UnsupportedSchema {
            path: info_path,
            schema: info.schema,
        });
    }
    let mismatch = |field, expected: &str, actual: &str| ReleaseError::Mismatch {
        path: info_path.clone(),
        field,
        expected: expected.to_string(),
        actual: actual.to_string(),
    };
    if info.dataset != dataset {
        return Err(mismatch("dataset", dataset, &info.dataset));
    }
    if info.version != version {
        return Err(mismatch("version", version, &info.version));
    }

    let man_path = dir.join(MANIFEST_FILE);
    let manifest = fs::read(&man_path).map_err(io_err(&man_path))?;
    let actual = blake3::hash(&manifest).to_hex().to_string();
    if actual != info.manifest_blake3 {
        return Err(ReleaseError::Mismatch {
            path: man_path,
            field: "manifest_blake3",
            expected: info.manifest_blake3.clone(),
            actual,
        });
    }
    if !manifest.is_empty() && manifest.last() != Some(&b'\n') {
        return Err(ReleaseError::Parse {
            path: man_path,
            line: manifest.split(|&b| b == b'\n').count(),
            reason: "last line has no newline".into(),
        });
    }
    let mut items: Vec<ManifestItem> = Vec::new();
    let mut leaves = Vec::new();
    let body = manifest.strip_suffix(b"\n").unwrap_or(&manifest);
    if !manifest.is_empty() {
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            let item: ManifestItem =
                serde_json::from_slice(line).map_err(|e| ReleaseError::Parse {
                    path: man_path.clone(),
                    line: i + 1,
                    reason: e.to_string(),
                })?;
            if items.last().is_some_and(|prev| prev.path >= item.path) {
                return Err(ReleaseError::Unsorted {
                    path: man_path,
                    line: i + 1,
                });
            }
            leaves.push(merkle::leaf_hash(line));
            items.push(item);
        }
    }
    let count = items.len().to_string();
    if info.items.to_string() != count {
        return Err(mismatch("items", &count, &info.items.to_string()));
    }
    let bytes: u64 = items.iter().map(|i| i.size).sum();
    if info.bytes != bytes {
        return Err(mismatch(
            "bytes",
            &bytes.to_string(),
            &info.bytes.to_string(),
        ));
    }
    let root_hex = hex(&merkle::root(&leaves));
    if root_hex != info.merkle_root {
        return Err(ReleaseError::RootMismatch {
            expected: info.merkle_root,
            actual: root_hex,
        });
    }
    Ok((info, items))
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
pub fn verify_tree(dir: &Path, items: &[ManifestItem]) -> VerifyReport {
    compare(items, walk(dir), |path, is_link| {
        if is_link {
            Err("symlink".into())
        } else {
            hash_file(&dir.join(path)).map_err(|e| format!("unreadable: {e}"))
        }
    })
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
        .filter(|p| p != PROVENANCE_FILE && p != RUN_SUMMARY_FILE)
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
    let io = |e: std::io::Error| ReleaseError::Io {
        path: archive.to_path_buf(),
        source: e,
    };
    let file = fs::File::open(archive).map_err(io)?;
    let mut ar = tar::Archive::new(std::io::BufReader::new(file));
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
    // A single top-level directory (`tar cf x.tar out/`) is stripped when the manifest paths
    // do not start with it.
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
    Ok(compare(items, found, |_, entry| {
        entry.ok_or_else(|| "not a regular file".to_string())
    }))
}

/// Paths added, removed and changed from release `a` to release `b`, each sorted.
pub fn diff(a: &[ManifestItem], b: &[ManifestItem]) -> Diff {
    let am: BTreeMap<&str, &ManifestItem> = a.iter().map(|i| (i.path.as_str(), i)).collect();
    let bm: BTreeMap<&str, &ManifestItem> = b.iter().map(|i| (i.path.as_str(), i)).collect();
    let mut d = Diff::default();
    for (p, ia) in &am {
        match bm.get(p) {
            None => d.removed.push(p.to_string()),
            Some(ib) if ib != ia => d.changed.push(p.to_string()),
            Some(_) => {}
        }
    }
    d.added = bm
        .keys()
        .filter(|p| !am.contains_key(*p))
        .map(|p| p.to_string())
        .collect();
    d
}

/// Inclusion proof for the item whose path, or else whose output blake3, is `item` (the first in
/// path order when several outputs share a hash). `Ok(None)` when no item matches. Fails when the
/// items do not give the release's Merkle root.
pub fn prove(
    items: &[ManifestItem],
    info: &ReleaseInfo,
    item: &str,
) -> Result<Option<InclusionProof>, ReleaseError> {
    let leaves = leaf_hashes(items);
    let root_hex = hex(&merkle::root(&leaves));
    if root_hex != info.merkle_root {
        return Err(ReleaseError::RootMismatch {
            expected: info.merkle_root.clone(),
            actual: root_hex,
        });
    }
    let index = items.iter().position(|i| i.path == item).or_else(|| {
        let h = item.to_ascii_lowercase();
        items.iter().position(|i| i.blake3 == h)
    });
    let Some(index) = index else {
        return Ok(None);
    };
    Ok(Some(InclusionProof {
        dataset: info.dataset.clone(),
        version: info.version.clone(),
        merkle_root: root_hex,
        size: items.len() as u64,
        index: index as u64,
        leaf: manifest_line(&items[index]),
        path: merkle::inclusion_proof(&leaves, index)
            .iter()
            .map(|h| hex(h))
            .collect(),
    }))
}

/// Checks a proof on its own: hashes the leaf line and verifies the path against the root.
/// The caller compares `merkle_root` (and `size`) with the published `release.json`.
pub fn check_proof(p: &InclusionProof) -> bool {
    let Some(root) = unhex32(&p.merkle_root) else {
        return false;
    };
    let Some(path) = p
        .path
        .iter()
        .map(|h| unhex32(h))
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let (Ok(index), Ok(size)) = (usize::try_from(p.index), usize::try_from(p.size)) else {
        return false;
    };
    if p.leaf.contains('\n') {
        return false;
    }
    merkle::verify_inclusion(
        merkle::leaf_hash(p.leaf.as_bytes()),
        index,
        size,
        &path,
        root,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provenance::{ModelRef, ProvenanceRecord, PROVENANCE_SCHEMA};
    use veil_core::FailureStage;

    fn b3(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }

    fn rec(path: &str, status: ImageStatus, content: Option<&[u8]>) -> ProvenanceRecord {
        ProvenanceRecord {
            schema: PROVENANCE_SCHEMA,
            path: path.into(),
            status,
            source_blake3: Some(b3(path.as_bytes())),
            source_size: Some(10),
            output_blake3: content.map(b3),
            output_size: content.map(|c| c.len() as u64),
            source_phash: None,
            output_phash: None,
            format: Some("jpeg".into()),
            dimensions: Some([4, 4]),
            orientation: Some(1),
            detections: vec![],
            metadata_removed: vec![],
            metadata_kept: vec![],
            models: vec![ModelRef {
                name: "centerface".into(),
                family: "centerface".into(),
                blake3: b3(b"model"),
            }],
            params_blake3: b3(b"params"),
            params: serde_json::json!({"mode": "blur"}),
            policy_blake3: None,
            tool_version: "0.1.0".into(),
            check: None,
            error_stage: content.is_none().then_some(FailureStage::Decode),
            error: content.is_none().then(|| "bad".to_string()),
        }
    }

    /// An output tree with three good items and one failed item.
    fn output_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let files: [(&str, &[u8]); 3] = [
            ("train/a.jpg", b"aaaa"),
            ("val/b.jpg", b"bbbbbb"),
            ("c.png", b"c"),
        ];
        let mut lines = String::new();
        for (p, c) in files {
            let f = dir.path().join(p);
            fs::create_dir_all(f.parent().unwrap()).unwrap();
            fs::write(&f, c).unwrap();
            let status = if p == "c.png" {
                ImageStatus::NoDetections
            } else {
                ImageStatus::Redacted
            };
            lines += &serde_json::to_string(&rec(p, status, Some(c))).unwrap();
            lines.push('\n');
        }
        lines +=
            &serde_json::to_string(&rec("test/broken.jpg", ImageStatus::Failed, None)).unwrap();
        lines.push('\n');
        fs::write(dir.path().join(PROVENANCE_FILE), lines).unwrap();
        fs::write(dir.path().join(RUN_SUMMARY_FILE), "{}").unwrap();
        dir
    }

    fn build(out: &Path, root: &Path, version: &str) -> Result<ReleaseInfo, ReleaseError> {
        build_release(
            out,
            "faces",
            version,
            None,
            root,
            "2026-01-01T00:00:00Z".into(),
            Some("CC-BY-4.0".into()),
        )
    }

    #[test]
    fn build_load_verify_round_trip() {
        let out = output_tree();
        let root = tempfile::tempdir().unwrap();
        let info = build(out.path(), root.path(), "1").unwrap();
        assert_eq!(info.items, 3);
        assert_eq!(info.bytes, 11);
        assert_eq!(info.params_blake3, [b3(b"params")]);
        assert_eq!(info.leaf_encoding, LEAF_ENCODING);

        let (back, items) = load_release(root.path(), "faces", "1").unwrap();
        assert_eq!(back, info);
        let paths: Vec<&str> = items.iter().map(|i| i.path.as_str()).collect();
        // Sorted by path; the failed record is not there.
        assert_eq!(paths, ["c.png", "train/a.jpg", "val/b.jpg"]);
        assert_eq!(items[0].split, None);
        assert_eq!(items[1].split.as_deref(), Some("train"));
        assert_eq!(items[2].split.as_deref(), Some("val"));
        assert_eq!(items[1].licence.as_deref(), Some("CC-BY-4.0"));
        assert_eq!(items[1].provenance.file, PROVENANCE_FILE);
        assert_eq!(items[1].models[0].name, "centerface");

        let r = verify_tree(out.path(), &items);
        assert!(r.is_clean(), "{r:?}");
        assert_eq!(r.ok, 3);

        // The manifest file is exactly the lines, and no temporary directory is left.
        let text = fs::read_to_string(root.path().join("faces/1").join(MANIFEST_FILE)).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(
            text.starts_with("{\"path\":\"c.png\",\"size\":1,"),
            "{text}"
        );
        let names: Vec<_> = fs::read_dir(root.path().join("faces"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["1"]);
    }

    #[test]
    fn corrupt_deleted_and_added_files_are_named() {
        let out = output_tree();
        let root = tempfile::tempdir().unwrap();
        build(out.path(), root.path(), "1").unwrap();
        let (_, items) = load_release(root.path(), "faces", "1").unwrap();

        let a = out.path().join("train/a.jpg");
        let mut bytes = fs::read(&a).unwrap();
        bytes[0] ^= 1;
        fs::write(&a, &bytes).unwrap();
        fs::remove_file(out.path().join("c.png")).unwrap();
        fs::write(out.path().join("val/new.jpg"), b"x").unwrap();

        let r = verify_tree(out.path(), &items);
        assert_eq!(r.missing, ["c.png"]);
        assert_eq!(r.changed.len(), 1);
        assert_eq!(r.changed[0].0, "train/a.jpg");
        assert_eq!(r.changed[0].1, b3(b"aaaa"));
        assert_eq!(r.changed[0].2, b3(&bytes));
        assert_eq!(r.extra, ["val/new.jpg"]);
        assert_eq!(r.ok, 1);
        assert!(!r.is_clean());
    }

    #[test]
    fn unsafe_manifest_paths_are_invalid_and_links_not_followed() {
        let out = output_tree();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.jpg"), b"s").unwrap();
        let mk = |p: &str| ManifestItem {
            path: p.into(),
            size: 1,
            blake3: b3(b"s"),
            source_blake3: None,
            provenance: ProvenanceRef {
                file: PROVENANCE_FILE.into(),
                params_blake3: String::new(),
            },
            models: vec![],
            licence: None,
            split: None,
            source_phash: None,
            output_phash: None,
        };
        let abs = outside
            .path()
            .join("secret.jpg")
            .to_string_lossy()
            .into_owned();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outside.path(), out.path().join("linkdir")).unwrap();
            std::os::unix::fs::symlink(
                outside.path().join("secret.jpg"),
                out.path().join("link.jpg"),
            )
            .unwrap();
        }
        let items = vec![
            mk("../secret.jpg"),
            mk(&abs),
            mk("train/../../x"),
            mk("linkdir/secret.jpg"),
            mk("link.jpg"),
        ];
        let r = verify_tree(out.path(), &items);
        let mut want = vec!["../secret.jpg".to_string(), abs, "train/../../x".into()];
        want.sort();
        assert_eq!(r.invalid, want);
        assert_eq!(r.ok, 0);
        #[cfg(unix)]
        {
            assert_eq!(r.missing, ["linkdir/secret.jpg"]);
            assert_eq!(r.changed.len(), 1);
            assert_eq!(r.changed[0].0, "link.jpg");
            assert_eq!(r.changed[0].2, "symlink");
            assert!(r.extra.contains(&"linkdir".to_string()), "{r:?}");
        }
    }

    #[test]
    fn releases_are_immutable_and_names_checked() {
        let out = output_tree();
        let root = tempfile::tempdir().unwrap();
        build(out.path(), root.path(), "1").unwrap();
        let before = fs::read(root.path().join("faces/1").join(RELEASE_FILE)).unwrap();
        let err = build(out.path(), root.path(), "1").unwrap_err();
        assert!(matches!(err, ReleaseError::AlreadyExists { .. }), "{err}");
        assert_eq!(
            fs::read(root.path().join("faces/1").join(RELEASE_FILE)).unwrap(),
            before
        );
        for bad in ["", "a/b", "..", "x..y", "."] {
            let err = build(out.path(), root.path(), bad).unwrap_err();
            assert!(
                matches!(err, ReleaseError::InvalidName { .. }),
                "{bad}: {err}"
            );
            let err = build_release(out.path(), bad, "2", None, root.path(), String::new(), None)
                .unwrap_err();
            assert!(
                matches!(err, ReleaseError::InvalidName { .. }),
                "{bad}: {err}"
            );
        }
        // A parent must exist; then it is recorded.
        let err = build_release(
            out.path(),
            "faces",
            "3",
            Some("2"),
            root.path(),
            String::new(),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, ReleaseError::ParentMissing { .. }), "{err}");
        let info = build_release(
            out.path(),
            "faces",
            "2",
            Some("1"),
            root.path(),
            String::new(),
            None,
        )
        .unwrap();
        assert_eq!(info.parent.as_deref(), Some("1"));
    }

    #[test]
    fn bad_outputs_are_refused_by_name() {
        let root = tempfile::tempdir().unwrap();
        let out = output_tree();
        fs::write(out.path().join("val/b.jpg"), b"bbbbbc").unwrap();
        let err = build(out.path(), root.path(), "1").unwrap_err();
        assert!(matches!(err, ReleaseError::HashMismatch { .. }), "{err}");
        assert!(err.to_string().contains("b.jpg"), "{err}");

        let out = output_tree();
        fs::write(out.path().join("val/b.jpg"), b"b").unwrap();
        let err = build(out.path(), root.path(), "1").unwrap_err();
        assert!(matches!(err, ReleaseError::SizeMismatch { .. }), "{err}");
        assert!(err.to_string().contains("b.jpg"), "{err}");

        let out = output_tree();
        fs::remove_file(out.path().join("train/a.jpg")).unwrap();
        let err = build(out.path(), root.path(), "1").unwrap_err();
        assert!(matches!(err, ReleaseError::OutputMissing { .. }), "{err}");
        assert!(err.to_string().contains("a.jpg"), "{err}");
        assert!(!root.path().join("faces/1").exists());
    }

    #[test]
    fn tampered_release_fails_to_load() {
        let out = output_tree();
        let root = tempfile::tempdir().unwrap();
        build(out.path(), root.path(), "1").unwrap();
        let dir = root.path().join("faces/1");
        let man = dir.join(MANIFEST_FILE);
        let text = fs::read_to_string(&man).unwrap();
        fs::write(&man, text.replace("\"size\":4", "\"size\":5")).unwrap();
        let err = load_release(root.path(), "faces", "1").unwrap_err();
        assert!(
            matches!(
                err,
                ReleaseError::Mismatch {
                    field: "manifest_blake3",
                    ..
                }
            ),
            "{err}"
        );
        // With manifest_blake3 updated too, the Merkle root catches it.
        let info_path = dir.join(RELEASE_FILE);
        let mut info: ReleaseInfo = serde_json::from_slice(&fs::read(&info_path).unwrap()).unwrap();
        info.manifest_blake3 = b3(&fs::read(&man).unwrap());
        info.bytes += 1;
        fs::write(&info_path, serde_json::to_vec(&info).unwrap()).unwrap();
        let err = load_release(root.path(), "faces", "1").unwrap_err();
        assert!(matches!(err, ReleaseError::RootMismatch { .. }), "{err}");
    }

    #[test]
    fn diff_counts() {
        let out = output_tree();
        let root = tempfile::tempdir().unwrap();
        build(out.path(), root.path(), "1").unwrap();
        let (_, a) = load_release(root.path(), "faces", "1").unwrap();
        let mut b = a.clone();
        b.remove(0); // c.png
        b[0].blake3 = b3(b"other"); // train/a.jpg
        let mut new = b[1].clone();
        new.path = "val/z.jpg".into();
        b.push(new);
        let d = diff(&a, &b);
        assert_eq!(d.added, ["val/z.jpg"]);
        assert_eq!(d.removed, ["c.png"]);
        assert_eq!(d.changed, ["train/a.jpg"]);
        assert_eq!(diff(&a, &a), Diff::default());
    }

    #[test]
    fn proofs_verify_and_tampering_fails() {
        let out = output_tree();
        let root = tempfile::tempdir().unwrap();
        build(out.path(), root.path(), "1").unwrap();
        let (info, items) = load_release(root.path(), "faces", "1").unwrap();
        for item in &items {
            let p = prove(&items, &info, &item.path).unwrap().unwrap();
            assert!(check_proof(&p), "{p:?}");
            assert_eq!(p.merkle_root, info.merkle_root);
            let by_hash = prove(&items, &info, &item.blake3.to_uppercase())
                .unwrap()
                .unwrap();
            assert_eq!(by_hash, p);
            // Round trip through JSON.
            let back: InclusionProof =
                serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
            assert!(check_proof(&back));

            let mut t = p.clone();
            t.leaf = t.leaf.replace("CC-BY-4.0", "CC0");
            assert!(!check_proof(&t));
            for k in 0..p.path.len() {
                let mut t = p.clone();
                let mut h = unhex32(&t.path[k]).unwrap();
                h[0] ^= 1;
                t.path[k] = hex(&h);
                assert!(!check_proof(&t));
            }
            let mut t = p.clone();
            t.index = (t.index + 1) % t.size;
            assert!(!check_proof(&t));
            // A size whose paths have other lengths (the size itself is bound by release.json).
            for size in [1, 7] {
                let mut t = p.clone();
                t.size = size;
                assert!(!check_proof(&t));
            }
            let mut t = p.clone();
            t.merkle_root = "zz".into();
            assert!(!check_proof(&t));
        }
        assert_eq!(prove(&items, &info, "nope.jpg").unwrap(), None);
        // Items that do not give the release's root are refused.
        let mut other = items.clone();
        other[0].size += 1;
        let err = prove(&other, &info, "c.png").unwrap_err();
        assert!(matches!(err, ReleaseError::RootMismatch { .. }), "{err}");
    }
}
