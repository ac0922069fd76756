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

use std::collections::BTreeSet;
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
    /// For an image inside a dataset container (a shard, a zip, a Parquet table): the container's
    /// path, itself an item; `path` is then `CONTAINER#MEMBER` (see [`crate::members`]). Absent
    /// (not serialised) for a file, so the lines of releases made before it are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
}

/// `release.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub schema: u32,
    pub dataset: String,
    pub version: String,
    pub parent: Option<String>,
    pub created_at: String,
    /// Manifest lines: files, and the member items inside containers.
    pub items: u64,
    /// Bytes of the files (a member's bytes are inside its container's).
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
    /// Member items (inside containers) read back from their container with the expected blake3.
    pub members_ok: usize,
    /// Member items not read back (no container access was given, as for a pack): covered only
    /// by their container's hash.
    pub members_unchecked: usize,
    /// veil's own files found beside the items (its record files at the top; in a pack also the
    /// card and the release's files), by path: kept out of `extra` by their names alone, so what
    /// they hold is checked instead (see [`ReservedFile`]).
    pub reserved: std::collections::BTreeMap<String, ReservedFile>,
}

/// One of veil's own files in a verified tree or pack: its blake3, and why it is not what veil
/// writes there (not UTF-8 text, a NUL byte, a picture inside), if so.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReservedFile {
    pub blake3: String,
    pub problem: Option<String>,
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
    #[error("{container} loses withdrawn members but was not rewritten without them; give the output tree that holds it (`takedown apply --purge DIR`)")]
    ContainerNotRewritten { container: String },
    #[error("{path:?} is both withdrawn and in the manifest")]
    WithdrawnListed { path: String },
    #[error("{path}: present, but release.json lists no withdrawn items")]
    UnlistedWithdrawn { path: PathBuf },
    #[error("{path} was withdrawn from {dataset}@{removed_from} (request {request}) and may not be published again; remove it from the input and the output tree, then build again")]
    Withdrawn {
        path: String,
        dataset: String,
        removed_from: String,
        request: String,
    },
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> ReleaseError + '_ {
    move |e| ReleaseError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// 64 lowercase hex digits to a hash.
pub(crate) fn unhex32(s: &str) -> Option<[u8; 32]> {
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

pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), ReleaseError> {
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

/// Checks an output file against its record: a regular file of the recorded size and blake3.
fn check_output_file(
    file: &Path,
    meta: &fs::Metadata,
    expected_size: u64,
    expected_hash: &str,
) -> Result<(), ReleaseError> {
    if !meta.is_file() {
        return Err(ReleaseError::NotAFile {
            path: file.to_path_buf(),
        });
    }
    if meta.len() != expected_size {
        return Err(ReleaseError::SizeMismatch {
            path: file.to_path_buf(),
            expected: expected_size,
            actual: meta.len(),
        });
    }
    let actual = hash_file(file).map_err(io_err(file))?;
    if actual != expected_hash {
        return Err(ReleaseError::HashMismatch {
            path: file.to_path_buf(),
            expected: expected_hash.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Builds release `dataset`/`version` under `root` from the output tree of a `veil redact` run.
///
/// Only records with status `redacted` or `no_detections` enter the release. Every output file
/// must be a regular file with the recorded size and blake3. The release directory is written
/// under a temporary name and renamed into place; an existing release is never overwritten.
/// When `parent` is given, that release must exist. An item that any release of `dataset` withdrew
/// (by output or source blake3) is refused ([`crate::refuse_withdrawn`]).
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
    records.retain(|r| matches!(r.status, ImageStatus::Redacted | ImageStatus::NoDetections));
    // A member of a dataset container is an item of its own (so that it can be proved and
    // withdrawn) when its container is one; its bytes are published inside the container.
    let containers: BTreeSet<String> = records
        .iter()
        .filter(|r| !r.is_member())
        .map(|r| r.path.clone())
        .collect();
    records.retain(|r| r.archive.as_ref().is_none_or(|a| containers.contains(a)));
    if records.is_empty() {
        return Err(ReleaseError::Empty {
            output_tree: output_tree.to_path_buf(),
        });
    }
    records.sort_by(|a, b| a.path.cmp(&b.path));
    crate::withdrawn::refuse_withdrawn(
        dataset,
        records.iter().map(|r| {
            (
                r.path.as_str(),
                r.output_blake3.as_deref(),
                r.source_blake3.as_deref(),
            )
        }),
        &crate::withdrawn::withdrawn_items(root, dataset)?,
    )?;

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
        // A member has no file of its own: its container's hash covers it.
        if !r.is_member() {
            let meta = match fs::symlink_metadata(&file) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(ReleaseError::OutputMissing { path: file })
                }
                Err(e) => return Err(io_err(&file)(e)),
            };
            check_output_file(&file, &meta, expected_size, expected_hash)?;
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
            archive: r.archive.clone(),
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
        if item.archive.is_none() {
            bytes += item.size;
        }
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
/// Members inside containers: withdrawing a container withdraws its member items too, and
/// withdrawing a member of an archive withdraws the other image members of its WebDataset
/// sample (`000123.jpg` takes `000123.seg.png`: the rewrite drops the whole sample). A
/// container that keeps some members but loses others must be in `rewritten` (its path to the
/// size and blake3 of the container rewritten without them, see [`crate::rewrite_container`]);
/// its line then carries those, and is the only line that changes.
///
/// Fails when a withdrawn path is not an item of the parent, when nothing is withdrawn, when
/// every item would be, when a container losing members was not rewritten, or when `version`
/// exists.
#[allow(clippy::too_many_arguments)]
pub fn cut_release_without(
    root: &Path,
    dataset: &str,
    parent: &str,
    version: &str,
    withdrawn_paths: &BTreeSet<String>,
    rewritten: &std::collections::BTreeMap<String, (u64, String)>,
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
    // A withdrawn container takes its members with it; a withdrawn member takes its sample's
    // other members (the container's rewrite drops the whole WebDataset sample); a container
    // that only loses members must have been rewritten.
    let mut withdrawn_paths = crate::members::with_whole_samples(
        loaded
            .items
            .iter()
            .map(|i| (i.path.as_str(), i.archive.as_deref())),
        withdrawn_paths,
    );
    for item in &loaded.items {
        if let Some(c) = &item.archive {
            if withdrawn_paths.contains(c) {
                withdrawn_paths.insert(item.path.clone());
            }
        }
    }
    for item in &loaded.items {
        if let Some(c) = &item.archive {
            if withdrawn_paths.contains(&item.path)
                && !withdrawn_paths.contains(c)
                && !rewritten.contains_key(c)
            {
                return Err(ReleaseError::ContainerNotRewritten {
                    container: c.clone(),
                });
            }
        }
    }
    let mut entries = Vec::with_capacity(loaded.items.len());
    let mut tombstones = Vec::with_capacity(withdrawn_paths.len());
    for (mut item, mut line) in loaded.items.into_iter().zip(loaded.lines) {
        if let Some((size, blake3)) = rewritten.get(&item.path) {
            if !withdrawn_paths.contains(&item.path) {
                item.size = *size;
                item.blake3 = blake3.clone();
                line = manifest_line(&item);
            }
        }
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
    let bytes: u64 = items
        .iter()
        .filter(|i| i.archive.is_none())
        .map(|i| i.size)
        .sum();
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

pub use crate::prove::{
    check_absence, check_proof, diff, prove, prove_absence, AbsenceProof, Diff, InclusionProof,
};

#[cfg(test)]
mod tests;
