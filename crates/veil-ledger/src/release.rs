//! Release manifests: numbered, immutable, verifiable snapshots of a de-identified output tree.
//!
//! A release of dataset `NAME` version `V` lives in `<root>/NAME/V/`:
//!
//! - `manifest.jsonl`: one [`ManifestItem`] per line, sorted by `path`, each line ending in `\n`;
//! - `release.json`: the [`ReleaseInfo`], with the Merkle root over the manifest lines and the
//!   blake3 of the manifest file;
//! - `withdrawn.jsonl`, only in a release cut from its parent without some items
//!   ([`cut_release_without`]): one [`Tombstone`] per line, sorted by `path` (the items' hashes
//!   are kept, their bytes are gone).
//!
//! The Merkle leaves are the manifest lines exactly as stored (bytes without the newline), in
//! path order: leaf hash = `blake3(0x00 || line)` (see [`crate::merkle`]). An [`InclusionProof`]
//! carries the line itself, so anyone holding the published root can check that one item was part
//! of a release without the rest of the manifest. Because the lines are sorted by path, an
//! [`AbsenceProof`] (the inclusion proofs of the two adjacent lines that bracket a path) shows
//! that a path is not in a release.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use veil_core::ImageStatus;

use crate::merkle;
use crate::provenance::{read_provenance, ProvenanceError, PROVENANCE_FILE};
pub use crate::verify::{verify_archive, verify_tree};

/// File name of the manifest inside a release directory.
pub const MANIFEST_FILE: &str = "manifest.jsonl";
/// File name of the release summary inside a release directory.
pub const RELEASE_FILE: &str = "release.json";
/// File name of the tombstones of the items withdrawn from the parent release (only present when
/// some were).
pub const WITHDRAWN_FILE: &str = "withdrawn.jsonl";
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
    /// Number of items withdrawn from the parent (lines of `withdrawn.jsonl`); absent when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub withdrawn: u64,
    /// Hex blake3 of the bytes of `withdrawn.jsonl`; absent when the release has no such file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_blake3: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One line of `withdrawn.jsonl`: an item of the parent release left out of this one. The hashes
/// are kept so that the item can still be recognised (and refused) later; the bytes are gone.
/// Field order is the serialisation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub path: String,
    pub size: u64,
    /// blake3 of the withdrawn output file.
    pub blake3: String,
    /// blake3 of the source file it was derived from.
    pub source_blake3: Option<String>,
    /// The version the item was removed from (this release's parent).
    pub removed_from: String,
    /// The request that withdrew it (e.g. a takedown request id).
    pub request: String,
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

/// Proof that no item of a release has path `path`: the inclusion proofs of the two adjacent
/// manifest lines that bracket it (`left.path < path < right.path`, `right.index == left.index +
/// 1`). `left` is null when `path` sorts before the first item, `right` when it sorts after the
/// last; both are null only for an empty release. Sound because the manifest is sorted by path
/// without duplicates, which [`load_release`] checks of every published release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbsenceProof {
    pub dataset: String,
    pub version: String,
    pub merkle_root: String,
    pub size: u64,
    /// The absent path.
    pub path: String,
    pub left: Option<InclusionProof>,
    pub right: Option<InclusionProof>,
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
    #[error("{path}: Merkle root of the items is {actual}, release says {expected}")]
    RootMismatch {
        /// The `release.json` holding the root (relative to the manifests root when the items
        /// were given in memory).
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path:?} is not an item of {dataset}/{parent}; nothing to withdraw")]
    NotInParent {
        dataset: String,
        parent: String,
        path: String,
    },
    #[error("no item to withdraw from {dataset}/{parent}")]
    NothingWithdrawn { dataset: String, parent: String },
    #[error("every item of {dataset}/{parent} would be withdrawn; a release cannot be empty")]
    AllWithdrawn { dataset: String, parent: String },
    #[error("{path:?} is both withdrawn and in the manifest")]
    WithdrawnListed { path: String },
    #[error("{path}: present, but release.json lists no withdrawn items")]
    UnlistedWithdrawn { path: PathBuf },
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
/// backslash, NUL or leading `/`): a path that cannot leave the tree it is joined to. Every path
/// read from a record or a manifest is checked with this before it is joined to a directory.
pub fn safe_rel_path(p: &str) -> bool {
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
pub(crate) fn hash_file(path: &Path) -> io::Result<String> {
    let mut h = blake3::Hasher::new();
    let mut f = fs::File::open(path)?;
    io::copy(&mut f, &mut h)?;
    Ok(h.finalize().to_hex().to_string())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ReleaseError> {
    let io = io_err(path);
    let mut f = crate::fsutil::create_fresh(path).map_err(&io)?;
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
    let dest = root.join(dataset).join(version);
    if fs::symlink_metadata(&dest).is_ok() {
        return Err(ReleaseError::AlreadyExists { path: dest });
    }

    let mut records = read_provenance(&output_tree.join(PROVENANCE_FILE))?;
    // A member of a dataset archive is published inside its archive, which is the item (with a
    // record of its own).
    records.retain(|r| {
        !r.is_member() && matches!(r.status, ImageStatus::Redacted | ImageStatus::NoDetections)
    });
    if records.is_empty() {
        return Err(ReleaseError::Empty {
            output_tree: output_tree.to_path_buf(),
        });
    }
    records.sort_by(|a, b| a.path.cmp(&b.path));

    let mut items = Vec::with_capacity(records.len());
    let mut policy: Option<Option<String>> = None;
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

    let entries: Vec<(ManifestItem, String)> = items
        .into_iter()
        .map(|i| {
            let line = manifest_line(&i);
            (i, line)
        })
        .collect();
    write_release(
        root,
        NewRelease {
            dataset,
            version,
            parent,
            created_at,
            policy_blake3: policy.flatten(),
            entries: &entries,
            withdrawn: &[],
        },
    )
}

/// A release to write: what [`write_release`] does not derive from the items.
struct NewRelease<'a> {
    dataset: &'a str,
    version: &'a str,
    parent: Option<&'a str>,
    created_at: String,
    policy_blake3: Option<String>,
    /// The items sorted by path, each with its exact manifest line (no newline).
    entries: &'a [(ManifestItem, String)],
    /// Tombstones of the items withdrawn from the parent; `withdrawn.jsonl` is written (sorted by
    /// path) only when there are some.
    withdrawn: &'a [Tombstone],
}

/// The bytes of `withdrawn.jsonl`: one compact JSON line per tombstone, sorted by path.
fn withdrawn_jsonl(tombstones: &[Tombstone]) -> Vec<u8> {
    let mut sorted: Vec<&Tombstone> = tombstones.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = Vec::new();
    for t in sorted {
        out.extend_from_slice(
            serde_json::to_string(t)
                .expect("a tombstone always serialises")
                .as_bytes(),
        );
        out.push(b'\n');
    }
    out
}

/// Writes release `new.dataset`/`new.version` under `root`: `manifest.jsonl` (the entries' lines),
/// `withdrawn.jsonl` when there are tombstones, and `release.json` with the counts, the distinct
/// `params_blake3` of the items, the Merkle root and the file hashes. Everything is written into a
/// temporary directory beside the destination and renamed into place; an existing release is
/// never overwritten.
fn write_release(root: &Path, new: NewRelease<'_>) -> Result<ReleaseInfo, ReleaseError> {
    check_name("dataset", new.dataset)?;
    check_name("version", new.version)?;
    let dataset_dir = root.join(new.dataset);
    let dest = dataset_dir.join(new.version);
    if fs::symlink_metadata(&dest).is_ok() {
        return Err(ReleaseError::AlreadyExists { path: dest });
    }

    let mut manifest = Vec::new();
    let mut leaves = Vec::with_capacity(new.entries.len());
    let mut params = BTreeSet::new();
    let mut bytes = 0u64;
    for (item, line) in new.entries {
        leaves.push(merkle::leaf_hash(line.as_bytes()));
        manifest.extend_from_slice(line.as_bytes());
        manifest.push(b'\n');
        params.insert(item.provenance.params_blake3.clone());
        bytes += item.size;
    }
    let withdrawn = (!new.withdrawn.is_empty()).then(|| withdrawn_jsonl(new.withdrawn));
    let info = ReleaseInfo {
        schema: RELEASE_SCHEMA,
        dataset: new.dataset.to_string(),
        version: new.version.to_string(),
        parent: new.parent.map(str::to_string),
        created_at: new.created_at,
        items: new.entries.len() as u64,
        bytes,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        policy_blake3: new.policy_blake3,
        params_blake3: params.into_iter().collect(),
        merkle_root: hex(&merkle::root(&leaves)),
        manifest_blake3: blake3::hash(&manifest).to_hex().to_string(),
        leaf_encoding: LEAF_ENCODING.to_string(),
        withdrawn: new.withdrawn.len() as u64,
        withdrawn_blake3: withdrawn
            .as_ref()
            .map(|w| blake3::hash(w).to_hex().to_string()),
    };
    let mut info_json = serde_json::to_vec_pretty(&info).expect("release info serialises");
    info_json.push(b'\n');

    fs::create_dir_all(&dataset_dir).map_err(io_err(&dataset_dir))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dataset_dir.join(format!(
        ".{}.partial-{}-{nanos}",
        new.version,
        std::process::id()
    ));
    fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    let written = (|| {
        write_synced(&tmp.join(MANIFEST_FILE), &manifest)?;
        if let Some(w) = &withdrawn {
            write_synced(&tmp.join(WITHDRAWN_FILE), w)?;
        }
        write_synced(&tmp.join(RELEASE_FILE), &info_json)?;
        crate::fsutil::sync_dir(&tmp).map_err(io_err(&tmp))?;
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
    crate::fsutil::sync_dir(&dataset_dir).map_err(io_err(&dataset_dir))?;
    Ok(info)
}

/// Cuts release `dataset`/`version` from release `parent` without the items whose path is in
/// `withdrawn_paths` (a takedown). The parent is loaded and verified first. The remaining items'
/// manifest lines are byte-identical to the parent's; `policy_blake3` is the parent's and
/// `params_blake3` is recomputed from the remaining items. A [`Tombstone`] per withdrawn item
/// (hashes kept, bytes gone) is written, sorted by path, to `withdrawn.jsonl` in the new release,
/// within the same write-then-rename step; they are also returned.
///
/// Fails when a withdrawn path is not an item of the parent, when nothing is withdrawn, when
/// every item would be, or when `version` exists.
pub fn cut_release_without(
    root: &Path,
    dataset: &str,
    parent: &str,
    version: &str,
    withdrawn_paths: &BTreeSet<String>,
    request: &str,
    created_at: String,
) -> Result<(ReleaseInfo, Vec<Tombstone>), ReleaseError> {
    check_name("dataset", dataset)?;
    check_name("version", version)?;
    check_name("parent", parent)?;
    let pinfo = root.join(dataset).join(parent).join(RELEASE_FILE);
    if !pinfo.is_file() {
        return Err(ReleaseError::ParentMissing {
            dataset: dataset.to_string(),
            parent: parent.to_string(),
            path: pinfo,
        });
    }
    let dest = root.join(dataset).join(version);
    if fs::symlink_metadata(&dest).is_ok() {
        return Err(ReleaseError::AlreadyExists { path: dest });
    }
    if withdrawn_paths.is_empty() {
        return Err(ReleaseError::NothingWithdrawn {
            dataset: dataset.to_string(),
            parent: parent.to_string(),
        });
    }
    let loaded = read_release(root, dataset, parent)?;
    for w in withdrawn_paths {
        if loaded
            .items
            .binary_search_by(|i| i.path.as_str().cmp(w))
            .is_err()
        {
            return Err(ReleaseError::NotInParent {
                dataset: dataset.to_string(),
                parent: parent.to_string(),
                path: w.clone(),
            });
        }
    }
    let mut entries = Vec::with_capacity(loaded.items.len());
    let mut tombstones = Vec::with_capacity(withdrawn_paths.len());
    for (item, line) in loaded.items.into_iter().zip(loaded.lines) {
        if withdrawn_paths.contains(&item.path) {
            tombstones.push(Tombstone {
                path: item.path,
                size: item.size,
                blake3: item.blake3,
                source_blake3: item.source_blake3,
                removed_from: parent.to_string(),
                request: request.to_string(),
            });
        } else {
            entries.push((item, line));
        }
    }
    if entries.is_empty() {
        return Err(ReleaseError::AllWithdrawn {
            dataset: dataset.to_string(),
            parent: parent.to_string(),
        });
    }
    let info = write_release(
        root,
        NewRelease {
            dataset,
            version,
            parent: Some(parent),
            created_at,
            policy_blake3: loaded.info.policy_blake3,
            entries: &entries,
            withdrawn: &tombstones,
        },
    )?;
    Ok((info, tombstones))
}

/// A release as read and checked by [`read_release`].
struct LoadedRelease {
    info: ReleaseInfo,
    items: Vec<ManifestItem>,
    /// The manifest lines exactly as stored (no newline), one per item.
    lines: Vec<String>,
    tombstones: Vec<Tombstone>,
}

/// The lines of a JSON-lines file (without their newlines); fails when the last line has no
/// newline. An empty file has no lines.
fn jsonl_lines<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<&'a [u8]>, ReleaseError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = bytes.strip_suffix(b"\n") else {
        return Err(ReleaseError::Parse {
            path: path.to_path_buf(),
            line: bytes.split(|&b| b == b'\n').count(),
            reason: "last line has no newline".into(),
        });
    };
    Ok(body.split(|&b| b == b'\n').collect())
}

/// Reads release `dataset`/`version` and checks it: schema, names, `manifest_blake3`, order of
/// the lines, counts and the Merkle root.
///
/// When `release.json` has a `withdrawn_blake3`, `withdrawn.jsonl` is checked too: its blake3, that
/// it has `withdrawn` tombstones sorted by path, each removed from the release's parent, and that
/// no withdrawn path is in the manifest. Without `withdrawn_blake3`, `withdrawn` must be 0 and no
/// `withdrawn.jsonl` may exist.
pub fn load_release(
    root: &Path,
    dataset: &str,
    version: &str,
) -> Result<(ReleaseInfo, Vec<ManifestItem>), ReleaseError> {
    let r = read_release(root, dataset, version)?;
    Ok((r.info, r.items))
}

/// The tombstones of the items release `dataset`/`version` withdrew from its parent, sorted by
/// path (empty when it withdrew none). The whole release is loaded and checked as by
/// [`load_release`].
pub fn load_tombstones(
    root: &Path,
    dataset: &str,
    version: &str,
) -> Result<Vec<Tombstone>, ReleaseError> {
    Ok(read_release(root, dataset, version)?.tombstones)
}

fn read_release(root: &Path, dataset: &str, version: &str) -> Result<LoadedRelease, ReleaseError> {
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
    let mut items: Vec<ManifestItem> = Vec::new();
    let mut lines = Vec::new();
    let mut leaves = Vec::new();
    for (i, line) in jsonl_lines(&man_path, &manifest)?.into_iter().enumerate() {
        let parse_err = |reason: String| ReleaseError::Parse {
            path: man_path.clone(),
            line: i + 1,
            reason,
        };
        let item: ManifestItem =
            serde_json::from_slice(line).map_err(|e| parse_err(e.to_string()))?;
        if !safe_rel_path(&item.path) {
            return Err(ReleaseError::UnsafePath { path: item.path });
        }
        if items.last().is_some_and(|prev| prev.path >= item.path) {
            return Err(ReleaseError::Unsorted {
                path: man_path,
                line: i + 1,
            });
        }
        let text = std::str::from_utf8(line).map_err(|e| parse_err(e.to_string()))?;
        leaves.push(merkle::leaf_hash(line));
        lines.push(text.to_string());
        items.push(item);
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
            path: info_path,
            expected: info.merkle_root,
            actual: root_hex,
        });
    }

    let wd_path = dir.join(WITHDRAWN_FILE);
    let tombstones = match &info.withdrawn_blake3 {
        None => {
            if info.withdrawn != 0 {
                return Err(mismatch(
                    "withdrawn",
                    "0 (there is no withdrawn_blake3)",
                    &info.withdrawn.to_string(),
                ));
            }
            if fs::symlink_metadata(&wd_path).is_ok() {
                return Err(ReleaseError::UnlistedWithdrawn { path: wd_path });
            }
            Vec::new()
        }
        Some(expected) => {
            let withdrawn = fs::read(&wd_path).map_err(io_err(&wd_path))?;
            let actual = blake3::hash(&withdrawn).to_hex().to_string();
            if actual != *expected {
                return Err(ReleaseError::Mismatch {
                    path: wd_path,
                    field: "withdrawn_blake3",
                    expected: expected.clone(),
                    actual,
                });
            }
            let parent = info.parent.as_deref().unwrap_or_default();
            let mut tombstones: Vec<Tombstone> = Vec::new();
            for (i, line) in jsonl_lines(&wd_path, &withdrawn)?.into_iter().enumerate() {
                let t: Tombstone =
                    serde_json::from_slice(line).map_err(|e| ReleaseError::Parse {
                        path: wd_path.clone(),
                        line: i + 1,
                        reason: e.to_string(),
                    })?;
                if tombstones.last().is_some_and(|prev| prev.path >= t.path) {
                    return Err(ReleaseError::Unsorted {
                        path: wd_path,
                        line: i + 1,
                    });
                }
                if t.removed_from != parent {
                    return Err(ReleaseError::Mismatch {
                        path: wd_path,
                        field: "removed_from",
                        expected: parent.to_string(),
                        actual: t.removed_from,
                    });
                }
                if items
                    .binary_search_by(|item| item.path.as_str().cmp(&t.path))
                    .is_ok()
                {
                    return Err(ReleaseError::WithdrawnListed { path: t.path });
                }
                tombstones.push(t);
            }
            let count = tombstones.len().to_string();
            if info.withdrawn.to_string() != count {
                return Err(mismatch("withdrawn", &count, &info.withdrawn.to_string()));
            }
            tombstones
        }
    };
    Ok(LoadedRelease {
        info,
        items,
        lines,
        tombstones,
    })
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
    let leaves = checked_leaves(items, info)?;
    let index = items.iter().position(|i| i.path == item).or_else(|| {
        let h = item.to_ascii_lowercase();
        items.iter().position(|i| i.blake3 == h)
    });
    Ok(index.map(|index| inclusion_proof(items, &leaves, info, index)))
}

/// The items' leaf hashes, checked against the release's Merkle root.
fn checked_leaves(
    items: &[ManifestItem],
    info: &ReleaseInfo,
) -> Result<Vec<merkle::Hash>, ReleaseError> {
    let leaves = leaf_hashes(items);
    let root_hex = hex(&merkle::root(&leaves));
    if root_hex != info.merkle_root {
        return Err(ReleaseError::RootMismatch {
            path: Path::new(&info.dataset)
                .join(&info.version)
                .join(RELEASE_FILE),
            expected: info.merkle_root.clone(),
            actual: root_hex,
        });
    }
    Ok(leaves)
}

/// Inclusion proof of item `index` (`leaves` are the items' checked leaf hashes).
fn inclusion_proof(
    items: &[ManifestItem],
    leaves: &[merkle::Hash],
    info: &ReleaseInfo,
    index: usize,
) -> InclusionProof {
    InclusionProof {
        dataset: info.dataset.clone(),
        version: info.version.clone(),
        merkle_root: info.merkle_root.clone(),
        size: items.len() as u64,
        index: index as u64,
        leaf: manifest_line(&items[index]),
        path: merkle::inclusion_proof(leaves, index)
            .iter()
            .map(|h| hex(h))
            .collect(),
    }
}

/// Absence proof for `path`: the inclusion proofs of the items just before and just after it in
/// path (byte) order. `Ok(None)` when an item has that path. `items` must be the release's items
/// in manifest order (as [`load_release`] returns them); fails when they do not give the release's
/// Merkle root.
pub fn prove_absence(
    items: &[ManifestItem],
    info: &ReleaseInfo,
    path: &str,
) -> Result<Option<AbsenceProof>, ReleaseError> {
    let leaves = checked_leaves(items, info)?;
    // The first item whose path is not below `path`.
    let next = items.partition_point(|i| i.path.as_str() < path);
    if items.get(next).is_some_and(|i| i.path == path) {
        return Ok(None);
    }
    let proof = |index| inclusion_proof(items, &leaves, info, index);
    Ok(Some(AbsenceProof {
        dataset: info.dataset.clone(),
        version: info.version.clone(),
        merkle_root: info.merkle_root.clone(),
        size: items.len() as u64,
        path: path.to_string(),
        left: next.checked_sub(1).map(proof),
        right: (next < items.len()).then(|| proof(next)),
    }))
}

/// Checks an absence proof on its own: each present side is a valid inclusion proof for the same
/// release, root and size; the sides are adjacent leaves (or the first / last leaf when the other
/// side is absent; both absent only for the empty tree); and the absent path sorts strictly
/// between the paths of their manifest lines. The caller compares `merkle_root` (and `size`) with
/// the published `release.json`.
pub fn check_absence(p: &AbsenceProof) -> bool {
    let side_ok = |s: &InclusionProof| {
        s.dataset == p.dataset
            && s.version == p.version
            && s.merkle_root == p.merkle_root
            && s.size == p.size
            && check_proof(s)
    };
    let leaf_path = |s: &InclusionProof| {
        serde_json::from_str::<ManifestItem>(&s.leaf)
            .ok()
            .map(|i| i.path)
    };
    let below = |s: &InclusionProof| leaf_path(s).is_some_and(|l| l.as_str() < p.path.as_str());
    let above = |s: &InclusionProof| leaf_path(s).is_some_and(|r| p.path.as_str() < r.as_str());
    match (&p.left, &p.right) {
        (None, None) => p.size == 0 && p.merkle_root == hex(&merkle::root(&[])),
        (Some(l), None) => side_ok(l) && l.index.checked_add(1) == Some(p.size) && below(l),
        (None, Some(r)) => side_ok(r) && r.index == 0 && above(r),
        (Some(l), Some(r)) => {
            side_ok(l)
                && side_ok(r)
                && l.index.checked_add(1) == Some(r.index)
                && below(l)
                && above(r)
        }
    }
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
    use crate::provenance::{ModelRef, ProvenanceRecord, PROVENANCE_SCHEMA, RUN_SUMMARY_FILE};
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
            review: None,
            archive: None,
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
        assert!(
            err.to_string()
                .starts_with(&format!("{}: ", info_path.display())),
            "{err}"
        );
    }

    #[test]
    fn a_consistent_release_listing_unsafe_paths_is_refused_at_load() {
        let out = output_tree();
        let root = tempfile::tempdir().unwrap();
        build(out.path(), root.path(), "1").unwrap();
        let (info, items) = load_release(root.path(), "faces", "1").unwrap();
        for bad in [
            "../x.jpg",
            "/etc/passwd",
            "train/../../y.jpg",
            "a//b",
            "./c",
        ] {
            // Everything recomputed, so only the path is wrong.
            let mut forged = items.clone();
            forged[0].path = bad.into();
            forged.sort_by(|a, b| a.path.cmp(&b.path));
            let manifest: String = forged.iter().map(|i| manifest_line(i) + "\n").collect();
            let mut f = info.clone();
            f.version = "2".into();
            f.manifest_blake3 = b3(manifest.as_bytes());
            f.merkle_root = hex(&merkle::root(&leaf_hashes(&forged)));
            let dir = root.path().join("faces/2");
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(MANIFEST_FILE), manifest).unwrap();
            fs::write(dir.join(RELEASE_FILE), serde_json::to_vec(&f).unwrap()).unwrap();
            let err = load_release(root.path(), "faces", "2").unwrap_err();
            assert!(
                matches!(&err, ReleaseError::UnsafePath { path } if path == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn safe_rel_paths_are_plain_relative_paths() {
        for p in [
            "a.jpg",
            "train/a.jpg",
            "..x.png",
            "sub/..dots...png",
            "a b/c",
        ] {
            assert!(safe_rel_path(p), "{p}");
        }
        for p in [
            "", "/a", "../a", "a/..", "a/../b", ".", "./a", "a/.", "a//b", "a/", "a\\b", "a\0b",
        ] {
            assert!(!safe_rel_path(p), "{p:?}");
        }
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

    /// `build_release` writes exactly what it wrote before releases could withdraw items:
    /// no `withdrawn` keys, no `withdrawn.jsonl`.
    #[test]
    fn build_release_json_is_pinned() {
        let out = output_tree();
        let root = tempfile::tempdir().unwrap();
        build(out.path(), root.path(), "1").unwrap();
        let dir = root.path().join("faces/1");
        let want = format!(
            r#"{{
  "schema": 1,
  "dataset": "faces",
  "version": "1",
  "parent": null,
  "created_at": "2026-01-01T00:00:00Z",
  "items": 3,
  "bytes": 11,
  "tool_version": "{}",
  "policy_blake3": null,
  "params_blake3": [
    "a15f1a1ae723480d69ab9071cb95a38b03943f317e93649c02509ef5f8b1b74f"
  ],
  "merkle_root": "14155f0f88fa80b8f213a43d42478482ace30845ac5a4e3cb652e796d0a240ed",
  "manifest_blake3": "0dd2b69f5038e35cf63c36323a24a6a0b3c4b9fd79bb74d1f9310225f28fb2a0",
  "leaf_encoding": "blake3(0x00 || manifest line bytes without newline)"
}}
"#,
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(fs::read_to_string(dir.join(RELEASE_FILE)).unwrap(), want);
        assert!(!dir.join(WITHDRAWN_FILE).exists());
        assert_eq!(load_tombstones(root.path(), "faces", "1").unwrap(), []);
    }

    fn cut(
        root: &Path,
        parent: &str,
        version: &str,
        paths: &[&str],
    ) -> Result<(ReleaseInfo, Vec<Tombstone>), ReleaseError> {
        cut_release_without(
            root,
            "faces",
            parent,
            version,
            &paths.iter().map(|p| p.to_string()).collect(),
            "req-7",
            "2026-02-01T00:00:00Z".into(),
        )
    }

    #[test]
    fn cut_release_without_removes_items_and_writes_tombstones() {
        let out = output_tree();
        let root = tempfile::tempdir().unwrap();
        let parent = build(out.path(), root.path(), "1").unwrap();
        let (info, tombs) = cut(root.path(), "1", "2", &["val/b.jpg", "c.png"]).unwrap();
        assert_eq!(info.parent.as_deref(), Some("1"));
        assert_eq!(info.version, "2");
        assert_eq!(info.created_at, "2026-02-01T00:00:00Z");
        assert_eq!(info.items, 1);
        assert_eq!(info.bytes, 4);
        assert_eq!(info.policy_blake3, parent.policy_blake3);
        assert_eq!(info.params_blake3, [b3(b"params")]);
        assert_eq!(info.withdrawn, 2);
        assert_eq!(
            tombs,
            [
                Tombstone {
                    path: "c.png".into(),
                    size: 1,
                    blake3: b3(b"c"),
                    source_blake3: Some(b3(b"c.png")),
                    removed_from: "1".into(),
                    request: "req-7".into(),
                },
                Tombstone {
                    path: "val/b.jpg".into(),
                    size: 6,
                    blake3: b3(b"bbbbbb"),
                    source_blake3: Some(b3(b"val/b.jpg")),
                    removed_from: "1".into(),
                    request: "req-7".into(),
                },
            ]
        );

        let dir = root.path().join("faces/2");
        let wd = fs::read(dir.join(WITHDRAWN_FILE)).unwrap();
        assert_eq!(info.withdrawn_blake3, Some(b3(&wd)));
        let wd_text = String::from_utf8(wd).unwrap();
        assert!(
            wd_text.starts_with("{\"path\":\"c.png\",\"size\":1,\"blake3\":\"",),
            "{wd_text}"
        );
        assert!(wd_text.ends_with("\"removed_from\":\"1\",\"request\":\"req-7\"}\n"));
        assert_eq!(wd_text.lines().count(), 2);
        let json = fs::read_to_string(dir.join(RELEASE_FILE)).unwrap();
        assert!(json.contains("\"withdrawn\": 2,") && json.contains("\"withdrawn_blake3\": \""));

        // The remaining line is the parent's, byte for byte.
        let parent_man =
            fs::read_to_string(root.path().join("faces/1").join(MANIFEST_FILE)).unwrap();
        let man = fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
        let kept: String = parent_man
            .lines()
            .filter(|l| l.contains("train/a.jpg"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(man, kept);

        let (back, items) = load_release(root.path(), "faces", "2").unwrap();
        assert_eq!(back, info);
        assert_eq!(load_tombstones(root.path(), "faces", "2").unwrap(), tombs);
        let (_, pitems) = load_release(root.path(), "faces", "1").unwrap();
        let d = diff(&pitems, &items);
        assert_eq!(d.removed, ["c.png", "val/b.jpg"]);
        assert!(d.added.is_empty() && d.changed.is_empty());
        // The parent is untouched and no temporary directory is left.
        assert_eq!(load_release(root.path(), "faces", "1").unwrap().0, parent);
        let mut names: Vec<_> = fs::read_dir(root.path().join("faces"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["1", "2"]);
    }

    #[test]
    fn cut_release_without_refuses_bad_requests() {
        let out = output_tree();
        let root = tempfile::tempdir().unwrap();
        build(out.path(), root.path(), "1").unwrap();

        let err = cut(root.path(), "1", "2", &["c.png", "nope.jpg"]).unwrap_err();
        assert!(
            matches!(&err, ReleaseError::NotInParent { path, .. } if path == "nope.jpg"),
            "{err}"
        );
        assert!(err.to_string().contains("nope.jpg"), "{err}");
        let err = cut(root.path(), "1", "2", &[]).unwrap_err();
        assert!(
            matches!(err, ReleaseError::NothingWithdrawn { .. }),
            "{err}"
        );
        let err = cut(
            root.path(),
            "1",
            "2",
            &["c.png", "train/a.jpg", "val/b.jpg"],
        )
        .unwrap_err();
        assert!(
            matches!(&err, ReleaseError::AllWithdrawn { dataset, parent } if dataset == "faces" && parent == "1"),
            "{err}"
        );
        let err = cut(root.path(), "9", "2", &["c.png"]).unwrap_err();
        assert!(matches!(err, ReleaseError::ParentMissing { .. }), "{err}");
        let err = cut(root.path(), "1", "1", &["c.png"]).unwrap_err();
        assert!(matches!(err, ReleaseError::AlreadyExists { .. }), "{err}");
        let err = cut(root.path(), "1", "a/b", &["c.png"]).unwrap_err();
        assert!(matches!(err, ReleaseError::InvalidName { .. }), "{err}");
        // Nothing was written by the refusals.
        let names: Vec<_> = fs::read_dir(root.path().join("faces"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["1"]);

        cut(root.path(), "1", "2", &["c.png"]).unwrap();
        let before = fs::read(root.path().join("faces/2").join(RELEASE_FILE)).unwrap();
        let err = cut(root.path(), "1", "2", &["val/b.jpg"]).unwrap_err();
        assert!(matches!(err, ReleaseError::AlreadyExists { .. }), "{err}");
        assert_eq!(
            fs::read(root.path().join("faces/2").join(RELEASE_FILE)).unwrap(),
            before
        );
        // An item already withdrawn is not in the new release.
        let err = cut(root.path(), "2", "3", &["c.png"]).unwrap_err();
        assert!(matches!(err, ReleaseError::NotInParent { .. }), "{err}");
        let (_, t) = cut(root.path(), "2", "3", &["val/b.jpg"]).unwrap();
        assert_eq!(t[0].removed_from, "2");
    }

    /// A parent written with the factored writer from lines that are not what `manifest_line`
    /// gives today (an older manifest without perceptual hashes): the cut keeps them as they are.
    #[test]
    fn cut_keeps_parent_lines_byte_identical() {
        let root = tempfile::tempdir().unwrap();
        let mk = |p: &str, size: u64, params: &str| ManifestItem {
            path: p.into(),
            size,
            blake3: b3(p.as_bytes()),
            source_blake3: None,
            provenance: ProvenanceRef {
                file: PROVENANCE_FILE.into(),
                params_blake3: b3(params.as_bytes()),
            },
            models: vec![],
            licence: None,
            split: split_of(p),
            source_phash: None,
            output_phash: None,
        };
        let entries: Vec<(ManifestItem, String)> = [
            mk("a.jpg", 1, "p1"),
            mk("b.jpg", 2, "p2"),
            mk("train/c.jpg", 3, "p1"),
        ]
        .into_iter()
        .map(|i| {
            let old = manifest_line(&i).replace(",\"source_phash\":null,\"output_phash\":null", "");
            assert_ne!(old, manifest_line(&i));
            (i, old)
        })
        .collect();
        let parent = write_release(
            root.path(),
            NewRelease {
                dataset: "faces",
                version: "1",
                parent: None,
                created_at: "t".into(),
                policy_blake3: Some(b3(b"policy")),
                entries: &entries,
                withdrawn: &[],
            },
        )
        .unwrap();
        assert_eq!(parent.params_blake3.len(), 2);
        load_release(root.path(), "faces", "1").unwrap();

        let (info, _) = cut(root.path(), "1", "2", &["b.jpg"]).unwrap();
        let man = fs::read_to_string(root.path().join("faces/2").join(MANIFEST_FILE)).unwrap();
        assert_eq!(man, format!("{}\n{}\n", entries[0].1, entries[2].1));
        assert_eq!(info.policy_blake3, Some(b3(b"policy")));
        // params_blake3 recomputed from what is left.
        assert_eq!(info.params_blake3, [b3(b"p1")]);
        assert_eq!(info.bytes, 4);
        let leaves: Vec<_> = [&entries[0].1, &entries[2].1]
            .iter()
            .map(|l| merkle::leaf_hash(l.as_bytes()))
            .collect();
        assert_eq!(info.merkle_root, hex(&merkle::root(&leaves)));
        load_release(root.path(), "faces", "2").unwrap();
    }

    #[test]
    fn tampered_withdrawn_file_fails_to_load() {
        let out = output_tree();
        let root = tempfile::tempdir().unwrap();
        build(out.path(), root.path(), "1").unwrap();
        cut(root.path(), "1", "2", &["c.png", "val/b.jpg"]).unwrap();
        let dir = root.path().join("faces/2");
        let wd_path = dir.join(WITHDRAWN_FILE);
        let info_path = dir.join(RELEASE_FILE);
        let good_wd = fs::read_to_string(&wd_path).unwrap();
        let good_info = fs::read(&info_path).unwrap();
        let load = || load_release(root.path(), "faces", "2").unwrap_err();
        // Writes `wd` as withdrawn.jsonl with release.json's hash (and count) updated to match.
        let rewrite = |wd: &str, count: Option<u64>| {
            fs::write(&wd_path, wd).unwrap();
            let mut info: ReleaseInfo = serde_json::from_slice(&good_info).unwrap();
            info.withdrawn_blake3 = Some(b3(wd.as_bytes()));
            if let Some(c) = count {
                info.withdrawn = c;
            }
            fs::write(&info_path, serde_json::to_vec(&info).unwrap()).unwrap();
        };

        fs::write(&wd_path, good_wd.replace("req-7", "req-8")).unwrap();
        let err = load();
        assert!(
            matches!(
                err,
                ReleaseError::Mismatch {
                    field: "withdrawn_blake3",
                    ..
                }
            ),
            "{err}"
        );
        fs::remove_file(&wd_path).unwrap();
        assert!(matches!(load(), ReleaseError::Io { .. }));

        let first = good_wd.lines().next().unwrap();
        rewrite(&format!("{first}\n"), None);
        let err = load();
        assert!(
            matches!(
                err,
                ReleaseError::Mismatch {
                    field: "withdrawn",
                    ..
                }
            ),
            "{err}"
        );

        let lines: Vec<&str> = good_wd.lines().collect();
        rewrite(&format!("{}\n{}\n", lines[1], lines[0]), None);
        assert!(matches!(load(), ReleaseError::Unsorted { .. }));

        rewrite(&good_wd.replace("\"c.png\"", "\"train/a.jpg\""), None);
        let err = load();
        assert!(
            matches!(&err, ReleaseError::WithdrawnListed { path } if path == "train/a.jpg"),
            "{err}"
        );

        rewrite(
            &good_wd.replace("\"removed_from\":\"1\"", "\"removed_from\":\"0\""),
            None,
        );
        let err = load();
        assert!(
            matches!(
                err,
                ReleaseError::Mismatch {
                    field: "removed_from",
                    ..
                }
            ),
            "{err}"
        );

        rewrite(&good_wd.replace("\"size\":1,", ""), None);
        assert!(matches!(load(), ReleaseError::Parse { line: 1, .. }));

        rewrite(good_wd.trim_end(), None);
        assert!(matches!(load(), ReleaseError::Parse { .. }));

        // release.json without the two fields, but the file still there.
        fs::write(&wd_path, &good_wd).unwrap();
        let mut info: ReleaseInfo = serde_json::from_slice(&good_info).unwrap();
        info.withdrawn_blake3 = None;
        fs::write(&info_path, serde_json::to_vec(&info).unwrap()).unwrap();
        assert!(matches!(
            load(),
            ReleaseError::Mismatch {
                field: "withdrawn",
                ..
            }
        ));
        info.withdrawn = 0;
        fs::write(&info_path, serde_json::to_vec(&info).unwrap()).unwrap();
        let err = load();
        assert!(
            matches!(err, ReleaseError::UnlistedWithdrawn { .. }),
            "{err}"
        );
        fs::remove_file(&wd_path).unwrap();
        load_release(root.path(), "faces", "2").unwrap();

        // Back to the original: it loads.
        fs::write(&wd_path, &good_wd).unwrap();
        fs::write(&info_path, &good_info).unwrap();
        assert_eq!(load_tombstones(root.path(), "faces", "2").unwrap().len(), 2);
    }

    fn item(path: &str) -> ManifestItem {
        ManifestItem {
            path: path.into(),
            size: path.len() as u64,
            blake3: b3(path.as_bytes()),
            source_blake3: None,
            provenance: ProvenanceRef {
                file: PROVENANCE_FILE.into(),
                params_blake3: b3(b"params"),
            },
            models: vec![],
            licence: None,
            split: None,
            source_phash: None,
            output_phash: None,
        }
    }

    fn info_of(items: &[ManifestItem]) -> ReleaseInfo {
        ReleaseInfo {
            schema: RELEASE_SCHEMA,
            dataset: "faces".into(),
            version: "1".into(),
            parent: None,
            created_at: String::new(),
            items: items.len() as u64,
            bytes: items.iter().map(|i| i.size).sum(),
            tool_version: String::new(),
            policy_blake3: None,
            params_blake3: vec![],
            merkle_root: hex(&merkle::root(&leaf_hashes(items))),
            manifest_blake3: String::new(),
            leaf_encoding: LEAF_ENCODING.into(),
            withdrawn: 0,
            withdrawn_blake3: None,
        }
    }

    /// Items `b01.jpg`, `b03.jpg`, ... (`n` of them, sorted); the gaps are `b00`, `b02`, ..., `b{2n}`.
    fn odd_items(n: usize) -> Vec<ManifestItem> {
        (0..n)
            .map(|i| item(&format!("b{:02}.jpg", 2 * i + 1)))
            .collect()
    }

    #[test]
    fn absence_proofs_for_every_gap_of_trees_of_many_sizes() {
        for n in 1..=17 {
            let items = odd_items(n);
            let info = info_of(&items);
            for k in 0..=2 * n {
                let path = format!("b{k:02}.jpg");
                let got = prove_absence(&items, &info, &path).unwrap();
                if k % 2 == 1 {
                    assert_eq!(got, None, "{path} is present");
                    continue;
                }
                let p = got.unwrap();
                assert!(check_absence(&p), "n={n} {path}: {p:?}");
                assert_eq!(p.left.is_none(), k == 0);
                assert_eq!(p.right.is_none(), k == 2 * n);
                assert_eq!(p.size, n as u64);
                let back: AbsenceProof =
                    serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
                assert_eq!(back, p);
            }
            // Paths that are prefixes or extensions of present ones, and outside the range.
            for path in ["", "a", "b01", "b01.jpg.x", "b01.jpeg", "c", "\u{10ffff}"] {
                let p = prove_absence(&items, &info, path).unwrap().unwrap();
                assert!(check_absence(&p), "n={n} {path:?}");
            }
        }
    }

    #[test]
    fn tampered_absence_proofs_fail() {
        let items = odd_items(6); // b01.jpg, b03.jpg, ..., b11.jpg
        let info = info_of(&items);
        let p = prove_absence(&items, &info, "b04.jpg").unwrap().unwrap();
        assert!(check_absence(&p));
        let (l, r) = (p.left.clone().unwrap(), p.right.clone().unwrap());
        assert_eq!(l.index + 1, r.index);
        assert!(l.leaf.contains("\"b03.jpg\"") && r.leaf.contains("\"b05.jpg\""));

        let tamper = |f: &dyn Fn(&mut AbsenceProof)| {
            let mut t = p.clone();
            f(&mut t);
            check_absence(&t)
        };
        // The absent path is actually present, or outside the bracket.
        for path in ["b03.jpg", "b05.jpg", "b07.jpg", "b02.jpg", "a"] {
            assert!(!tamper(&|t| t.path = path.into()), "{path}");
        }
        // Sides swapped, or one dropped (they are not the first / last leaf).
        assert!(!tamper(&|t| std::mem::swap(&mut t.left, &mut t.right)));
        assert!(!tamper(&|t| t.left = None));
        assert!(!tamper(&|t| t.right = None));
        // Valid inclusion proofs that are not adjacent: proves nothing about what lies between.
        let far = prove(&items, &info, "b09.jpg").unwrap().unwrap();
        assert!(check_proof(&far));
        assert!(!tamper(&|t| t.right = Some(far.clone())));
        let first = prove(&items, &info, &items[0].path).unwrap().unwrap();
        assert!(!tamper(&|t| t.left = Some(first.clone())));
        // Wrong index on one side (its audit path no longer verifies).
        assert!(!tamper(&|t| t.right.as_mut().unwrap().index += 1));
        assert!(!tamper(&|t| t.left.as_mut().unwrap().index -= 1));
        // Root, size, release names that disagree between the proof and its sides.
        assert!(!tamper(&|t| t.merkle_root = hex(&[0; 32])));
        assert!(!tamper(&|t| t.size += 1));
        assert!(!tamper(&|t| t.version = "2".into()));
        assert!(!tamper(&|t| t.dataset = "other".into()));
        // A side's leaf changed.
        assert!(!tamper(&|t| {
            let r = t.right.as_mut().unwrap();
            r.leaf = r.leaf.replace("b05.jpg", "b06.jpg");
        }));
        // A leaf that is not a manifest line (but correctly hashed) proves nothing.
        let odd = vec![item("a"), item("c")];
        let mut odd_info = info_of(&odd);
        let mut junk = prove_absence(&odd, &odd_info, "b").unwrap().unwrap();
        assert!(check_absence(&junk));
        let leaves = vec![merkle::leaf_hash(b"not json"), leaf_hashes(&odd)[1]];
        odd_info.merkle_root = hex(&merkle::root(&leaves));
        junk.merkle_root = odd_info.merkle_root.clone();
        let mut l = junk.left.take().unwrap();
        l.leaf = "not json".into();
        l.merkle_root = junk.merkle_root.clone();
        l.path = vec![hex(&leaves[1])];
        assert!(check_proof(&l));
        let mut r = junk.right.take().unwrap();
        r.merkle_root = junk.merkle_root.clone();
        r.path = vec![hex(&leaves[0])];
        assert!(check_proof(&r));
        junk.left = Some(l);
        junk.right = Some(r);
        assert!(!check_absence(&junk));

        // Edges: before the first and after the last item.
        let before = prove_absence(&items, &info, "a.jpg").unwrap().unwrap();
        assert!(check_absence(&before) && before.left.is_none());
        let mut t = before.clone();
        t.right = Some(l_of(&items, &info, 1));
        assert!(!check_absence(&t), "right side must be leaf 0");
        let after = prove_absence(&items, &info, "c.jpg").unwrap().unwrap();
        assert!(check_absence(&after) && after.right.is_none());
        let mut t = after.clone();
        t.left = Some(l_of(&items, &info, items.len() - 2));
        t.path = "b09.jpg.x".into();
        assert!(!check_absence(&t), "left side must be the last leaf");

        // Single item, and the empty release.
        let one = vec![item("m")];
        let one_info = info_of(&one);
        for path in ["a", "z"] {
            assert!(check_absence(
                &prove_absence(&one, &one_info, path).unwrap().unwrap()
            ));
        }
        assert_eq!(prove_absence(&one, &one_info, "m").unwrap(), None);
        let empty = prove_absence(&[], &info_of(&[]), "x").unwrap().unwrap();
        assert!(empty.left.is_none() && empty.right.is_none() && check_absence(&empty));
        let mut t = empty.clone();
        t.size = 1;
        assert!(!check_absence(&t));
        let mut t = empty;
        t.merkle_root = info.merkle_root.clone();
        assert!(!check_absence(&t), "no sides only for the empty tree");
        let mut t = p.clone();
        t.left = None;
        t.right = None;
        assert!(!check_absence(&t));

        // Items that do not give the release's root are refused.
        let mut other = items.clone();
        other[0].size += 1;
        let err = prove_absence(&other, &info, "b04.jpg").unwrap_err();
        assert!(matches!(err, ReleaseError::RootMismatch { .. }), "{err}");
    }

    fn l_of(items: &[ManifestItem], info: &ReleaseInfo, index: usize) -> InclusionProof {
        prove(items, info, &items[index].path).unwrap().unwrap()
    }
}
