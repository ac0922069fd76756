//! veil-ledger owns veil's records: the per-image provenance record written by `veil redact`
//! (one JSON line per image in `OUTPUT/provenance.jsonl`), its reader, and the run summary.
//! Later: release manifests and the takedown ledger. No ONNX Runtime or image code lives here.
//!
//! Records are deterministic: the same input, models and parameters give byte-identical lines
//! (no timestamps; keys in a fixed order; floats rounded by the producer), so a release can be
//! re-derived and compared. Timestamps live only in the run summary.

mod provenance;

pub use provenance::{
    read_provenance, write_provenance_sorted, ModelRef, ProvenanceError, ProvenanceRecord,
    RunSummary, PROVENANCE_FILE, PROVENANCE_SCHEMA, RUN_SUMMARY_FILE,
};
