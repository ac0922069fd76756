//! veil-takedown owns the takedown ledger of a catalogue: one SQLite file holding the datasets,
//! their releases (imported from the release manifests), every released item with its hashes
//! (blake3 of source and output, PDQ, dHash), the recipients of each release, takedown requests,
//! their matches, the actions taken and the notices sent. Every change is also an event in an
//! append-only hash-chained log that `verify_chain` recomputes. Withdrawing items cuts a new
//! release through `veil_ledger`'s release builder and keeps tombstones (hashes, not bytes).
//!
//! It decodes no images: evidence photos are hashed by the caller and arrive as
//! [`PhotoEvidence`]. It never prints.

pub mod anchors;
mod catalogue;
pub mod deadline;
pub mod letters;
pub mod replay;
mod requests;
pub mod smtp;
mod store;

use std::path::PathBuf;

pub use catalogue::{ImportOutcome, Recipient, ReleaseRow};
pub use deadline::{Calendar, DuePolicy};
pub use requests::{
    ApplyReport, Basis, Candidate, ContainerRewrite, NewRequest, Notice, PhotoEvidence,
    PurgeReport, Request, RequestDetail, Scope, Status, TombstoneRow, DHASH_MAX_DISTANCE,
    PDQ_MAX_DISTANCE, PDQ_MIN_QUALITY,
};
pub use store::{event_hash, event_line, ChainReport, Event, Ledger, GENESIS, SCHEMA_VERSION};

/// Default ledger location, relative to the catalogue root.
pub const DEFAULT_LEDGER: &str = "datasets-manifest/ledger.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{path}: not a veil ledger ({reason}); the file was not changed")]
    NotALedger { path: PathBuf, reason: String },
    #[error("{path}: ledger schema {found} is newer than this veil knows ({known}); upgrade veil")]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("{path}: the event log is broken at event {seq} ({what}); refusing to use this ledger. Run `veil ledger verify`, then restore it from a backup or its git export")]
    Tampered {
        path: PathBuf,
        seq: i64,
        what: String,
    },
    #[error("{path}: the ledger's tables differ from what its events record (changed outside veil?); nothing was written. Run `veil ledger verify` to see the differences, then restore the ledger from a backup")]
    Diverged { path: PathBuf },
    #[error("{path}: no ledger here; create it with `veil ledger import` (or `veil ledger init`)")]
    Missing { path: PathBuf },
    #[error("unknown dataset {name:?} (known: {known})")]
    UnknownDataset { name: String, known: String },
    #[error("unknown release {dataset}@{version} (known: {known})")]
    UnknownRelease {
        dataset: String,
        version: String,
        known: String,
    },
    #[error("no takedown request {id:?}")]
    UnknownRequest { id: String },
    #[error("{id}: {what}")]
    State { id: String, what: String },
    #[error("{0}")]
    Invalid(String),
    #[error("release {dataset}@{version} is already in the ledger with Merkle root {existing}, the file says {found}")]
    ReleaseConflict {
        dataset: String,
        version: String,
        existing: String,
        found: String,
    },
    #[error("{0}")]
    Tombstoned(Box<Tombstoned>),
    #[error(transparent)]
    Release(#[from] veil_ledger::ReleaseError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("ledger database: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// An item of a release being imported that a request withdrew (its output or source blake3 is
/// a tombstone's).
#[derive(Debug, thiserror::Error)]
#[error("release {dataset}@{version} holds {path}, whose {which} blake3 {blake3} request {request} withdrew ({withdrawn}); nothing was imported. Remove that file from the output tree, build the release again and import it")]
pub struct Tombstoned {
    pub dataset: String,
    pub version: String,
    pub path: String,
    /// `output` or `source`.
    pub which: &'static str,
    pub blake3: String,
    pub request: String,
    /// `DATASET@VERSION:PATH` of the withdrawn item.
    pub withdrawn: String,
}

/// Joins names for error messages (`none` when empty).
pub(crate) fn known(names: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = names.into_iter().collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
