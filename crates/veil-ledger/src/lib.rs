//! veil-ledger owns veil's records: the per-image provenance record written by `veil redact`
//! (one JSON line per image in `OUTPUT/provenance.jsonl`), its reader, and the run summary.
//! Release manifests (build, cut without withdrawn items, verify, inclusion and absence proofs),
//! with the images inside dataset containers as items of their own ([`members`]). No ONNX Runtime or image code lives here.
//!
//! Records are deterministic: the same input, models and parameters give byte-identical lines
//! (no timestamps; keys in a fixed order; floats rounded by the producer), so a release can be
//! re-derived and compared. Timestamps live only in the run summary.

pub mod fsutil;
pub mod members;
pub mod merkle;
mod pack;
mod prove;
mod provenance;
mod release;
mod verify;
mod withdrawn;

pub use members::{member_bytes, rewrite_container, Containers, MemberDigest, Rewritten};
pub use pack::{
    dataset_card, pack_release, verify_pack, Extras, PackFormat, PACK_CARD, PACK_RELEASE_DIR,
};
pub use provenance::{
    is_record_file, read_provenance, sort_provenance_file, write_provenance_sorted, LeakCheck,
    ModelRef, PerceptualHashes, ProvenanceError, ProvenanceRecord, Review, ReviewDecision,
    RunSummary, StageTimes, PROVENANCE_FILE, PROVENANCE_SCHEMA, RUN_SUMMARY_FILE,
};
pub use release::{
    build_release, check_absence, check_proof, cut_release_without, diff, leaf_hashes,
    load_release, load_tombstones, manifest_line, prove, prove_absence, safe_rel_path,
    verify_archive, verify_tree, AbsenceProof, Diff, InclusionProof, ManifestItem, ManifestModel,
    ProvenanceRef, ReleaseError, ReleaseInfo, ReservedFile, Tombstone, VerifyReport, LEAF_ENCODING,
    MANIFEST_FILE, RELEASE_FILE, RELEASE_SCHEMA, SPLITS, WITHDRAWN_FILE,
};
pub use withdrawn::{refuse_withdrawn, withdrawn_items};

#[cfg(test)]
mod hash_vectors {
    /// The hash format written in datasets-manifest/README.md: blake3, lowercase hex, no prefix.
    #[test]
    fn pinned_blake3_test_vectors() {
        let hex = |b: &[u8]| blake3::hash(b).to_hex().to_string();
        assert_eq!(
            hex(b""),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(
            hex(b"veil"),
            "3cdd105e421fced773eb30aa07353eb01712d97b37a227cc1410803b6b5add86"
        );
    }
}
