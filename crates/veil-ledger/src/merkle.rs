//! RFC 6962 / RFC 9162 Merkle tree over blake3.
//!
//! - leaf hash: `blake3(0x00 || leaf bytes)`
//! - interior node: `blake3(0x01 || left || right)`
//! - a tree over `n > 1` leaves splits at `k`, the largest power of two smaller than `n` (MTH of
//!   RFC 6962 section 2.1); the root of one leaf is that leaf's hash; the root of the empty tree is
//!   `blake3("")`.
//!
//! Functions take leaf *hashes* (already passed through [`leaf_hash`]). Every function is linear in
//! the number of leaves, with recursion depth `log2(n)` and no copies of the leaf slice.

/// A 32-byte blake3 digest.
pub type Hash = [u8; 32];

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// `blake3(0x00 || bytes)`.
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[LEAF_PREFIX]);
    h.update(bytes);
    *h.finalize().as_bytes()
}

/// `blake3(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = NODE_PREFIX;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    *blake3::hash(&buf).as_bytes()
}

/// Largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    n.next_power_of_two() / 2
}

/// MTH of a non-empty slice of leaf hashes.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// The Merkle tree hash (root) of the given leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        *blake3::hash(b"").as_bytes()
    } else {
        mth(leaves)
    }
}

/// The audit path of leaf `index` (RFC 6962 PATH), ordered from the leaf's sibling up to the
/// root's child. Empty when the tree has one leaf, or when `index` is out of range (such a path
/// never verifies, because [`verify_inclusion`] rejects `index >= size`).
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Vec<Hash> {
    let mut out = Vec::new();
    if index < leaves.len() {
        path(index, leaves, &mut out);
    }
    out
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if m < k {
        path(m, &leaves[..k], out);
        out.push(mth(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(mth(&leaves[..k]));
    }
}

/// Verifies an inclusion proof (RFC 9162 section 2.1.3.2).
///
/// As in RFC 9162, the tree size is bound by the root (a signed tree head, here `release.json`),
/// not by the path alone: for some leaves the paths in trees of different sizes coincide (leaf 0
/// of 3 and leaf 0 of 4), so check `size` against the published size.
pub fn verify_inclusion(leaf: Hash, index: usize, size: usize, proof: &[Hash], root: Hash) -> bool {
    if index >= size {
        return false;
    }
    let mut fnode = index;
    let mut snode = size - 1;
    let mut r = leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Leaves `b"a"`, `b"b"`, ... hashed with [`leaf_hash`].
    fn letters(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&[b'a' + i as u8])).collect()
    }

    #[test]
    fn split_point_is_largest_power_of_two_below_n() {
        for n in 2..300usize {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }

    /// Computed once with an independent Python implementation (`blake3` package).
    #[test]
    fn pinned_roots() {
        let cases = [
            (
                0,
                "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
            ),
            (
                1,
                "1ff621ee3430890e869728995a6cee4f2b0b61271bfc19b0092b06d778750ae8",
            ),
            (
                2,
                "6564e87d8619ea09c801c567c641d47fe817ae3b2cf80685cde2eb6557247eca",
            ),
            (
                3,
                "6c62dd52a0971b7d00a7cead004e0c3f3c0766e3f5359a0f8297768d2b02d03c",
            ),
            (
                5,
                "75a40a0808bd168c7a54cfabaa7bbc3f37d558bb83d063ad4a110aa97c6280b9",
            ),
            (
                8,
                "32a1f6c1350ec68bd8186513f3aa2866f0c7d478d8fadd2afe8fadfc1375ddd6",
            ),
        ];
        for (n, want) in cases {
            assert_eq!(hex(&root(&letters(n))), want, "n = {n}");
        }
    }

    /// Also from the Python implementation.
    #[test]
    fn pinned_paths() {
        let leaves = letters(5);
        let p: Vec<String> = inclusion_proof(&leaves, 2).iter().map(hex).collect();
        assert_eq!(
            p,
            [
                "ee559c54b3736531a80cadf597b8df1df1fe534ca76678587c2e3ee0a75874f0",
                "6564e87d8619ea09c801c567c641d47fe817ae3b2cf80685cde2eb6557247eca",
                "ae7c58fce7cb9007fe1140f3d80f731205ccc47256d92bc8406813694a907480",
            ]
        );
        let p: Vec<String> = inclusion_proof(&leaves, 4).iter().map(hex).collect();
        assert_eq!(
            p,
            ["ab907076358a51f0ac078d433e405dd69e1a632ec5be0c6c54cae29e99368d9d"]
        );
    }

    #[test]
    fn every_proof_verifies_up_to_17_leaves() {
        for n in 1..=17 {
            let leaves = letters(n);
            let r = root(&leaves);
            for (i, leaf) in leaves.iter().enumerate() {
                let p = inclusion_proof(&leaves, i);
                assert!(verify_inclusion(*leaf, i, n, &p, r), "n = {n}, i = {i}");
            }
        }
    }

    #[test]
    fn tampered_proofs_fail() {
        for n in 1..=17 {
            let leaves = letters(n);
            let r = root(&leaves);
            for (i, leaf) in leaves.iter().enumerate() {
                let p = inclusion_proof(&leaves, i);
                // Another leaf.
                assert!(!verify_inclusion(leaf_hash(b"zz"), i, n, &p, r));
                // Another index (the other leaves' proofs differ).
                for j in 0..n + 1 {
                    if j != i {
                        assert!(!verify_inclusion(*leaf, j, n, &p, r), "n={n} i={i} j={j}");
                    }
                }
                // Another size: fails whenever a path for (i, s) has another length. (A path
                // cannot bind the size on its own: leaf 0 of 3 has the same path as leaf 0 of 4.)
                for s in 0..=2 * n + 2 {
                    let other_len = (i < s).then(|| inclusion_proof(&letters(s), i).len());
                    if s != n && other_len != Some(p.len()) {
                        assert!(!verify_inclusion(*leaf, i, s, &p, r), "n={n} i={i} s={s}");
                    }
                }
                // A flipped bit in each element; a dropped or an extra element.
                for k in 0..p.len() {
                    let mut q = p.clone();
                    q[k][0] ^= 1;
                    assert!(!verify_inclusion(*leaf, i, n, &q, r));
                }
                if !p.is_empty() {
                    assert!(!verify_inclusion(*leaf, i, n, &p[..p.len() - 1], r));
                }
                let mut q = p.clone();
                q.push(r);
                assert!(!verify_inclusion(*leaf, i, n, &q, r));
                // Another root.
                let mut r2 = r;
                r2[31] ^= 0x80;
                assert!(!verify_inclusion(*leaf, i, n, &p, r2));
            }
        }
    }

    #[test]
    fn size_is_bound_by_the_root_not_by_the_path() {
        let leaves = letters(3);
        let p = inclusion_proof(&leaves, 0);
        assert!(verify_inclusion(leaves[0], 0, 4, &p, root(&leaves)));
        assert!(!verify_inclusion(
            leaves[2],
            2,
            4,
            &inclusion_proof(&leaves, 2),
            root(&leaves)
        ));
    }

    #[test]
    fn out_of_range_index_gives_empty_path_that_fails() {
        let leaves = letters(3);
        assert!(inclusion_proof(&leaves, 3).is_empty());
        assert!(!verify_inclusion(leaves[0], 3, 3, &[], root(&leaves)));
        assert!(!verify_inclusion(leaves[0], 0, 0, &[], root(&[])));
    }
}
