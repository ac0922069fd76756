//! veil-pipeline owns the redaction run: walking the input tree, decoding untrusted images
//! (pixel caps, contained decoder panics, EXIF orientation), detection, obfuscation, encoding
//! without metadata, validation of every output before it is written, atomic writes, provenance
//! records and the run summary, in three stages on their own threads with bounded queues between
//! them ([`stages`]); dataset archives ([`members`], [`archive_job`]) and Parquet image tables
//! ([`parquet_job`]) go through the same stages member by member. It never prints: it sends
//! [`veil_core::ProgressEvent`]s to the caller.

pub mod alpha_view;
pub mod archive_job;
pub mod archives;
pub mod container;
pub mod dataset_containers;
pub mod decode;
use veil_core::embedded;
pub mod encode;
pub mod fusion;
pub mod icc;
pub mod members;
pub mod parquet_job;
pub mod policy;
pub mod process;
pub mod replay;
pub mod resume;
mod run;
pub mod shard;
pub mod stages;
pub mod strip;
pub mod walk;

use std::path::{Path, PathBuf};

pub use run::{
    check, load_detectors, now_rfc3339, resolve_face_model, run, unrecorded_files, CheckReport,
    DetectorConfig, Detectors, RunConfig, RunReport, AUTO_FACE_MODEL,
};

/// Default pixel cap: 150 megapixels (a 12 MP photo is far below; the 100000x100000 "bomb" far above).
pub const DEFAULT_MAX_PIXELS: u64 = 150_000_000;

/// Errors that stop a run before or around processing (usage and setup). Per-image failures are
/// never errors: they are failed records.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("walking {path}: {reason}")]
    Walk { path: PathBuf, reason: String },
    #[error("writing {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error(transparent)]
    Setup(#[from] veil_detect::DetectError),
    #[error(transparent)]
    Records(#[from] veil_ledger::ProvenanceError),
}

impl PipelineError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        PipelineError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
