//! Comparing and proving releases: the paths that differ between two manifests, and Merkle
//! inclusion and absence proofs of manifest lines that anyone can check with the release's root
//! alone. Split from `release.rs` (building, loading and cutting releases) without changing
//! behaviour.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::merkle;
use crate::release::{
    hex, leaf_hashes, manifest_line, unhex32, ManifestItem, ReleaseError, ReleaseInfo, RELEASE_FILE,
};

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
