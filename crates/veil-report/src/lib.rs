//! veil-report owns the review page of a run and the reviewer decisions made on it. From an
//! output tree written by `veil redact` (`OUTPUT/provenance.jsonl` and `OUTPUT/veil-run.json`) it
//! writes a self-contained static page, `OUTPUT/report/index.html` with `data.js` and small JPEG
//! thumbnails of the redacted outputs (never of the originals), that works from a `file://` URL
//! and from any static server without a single external request. Reviewers mark outputs as fine
//! or as needing a manual fix; the page exports those decisions as a JSON file, which
//! [`import_review`] records in the provenance records of exactly the outputs they were made on.
//!
//! # Review priority
//!
//! Cards are sorted so that the images most in need of a human look come first. Each record gets
//! every category that applies ([`Category`]); its most urgent category decides its place:
//!
//! 1. **failed**: the image could not be processed and has no output (the card shows the reason);
//! 2. **unreadable**: the output file is missing, is not the file the record describes (size or
//!    blake3 differ) or cannot be decoded, so no thumbnail could be made;
//! 3. **leak**: the leakage re-check (`veil check`) found a detection outside every obfuscated
//!    region, or inside one that did not hide it (`record.check.leaks` non-empty; those inside
//!    are also in `record.check.inside`);
//! 4. **near threshold**: a detection scored less than `threshold + margin` (margin 0.15 by
//!    default) for its class's threshold in the record's parameters, so a slightly different
//!    photo could have been missed; most doubtful (lowest score above its threshold) first;
//! 5. **persons without face**: a person was detected in whose box the face model found no face
//!    (a head-fallback region, if any, is a guess and does not count), e.g. someone seen from
//!    behind or in profile;
//! 6. everything else.
//!
//! Within a level cards are sorted by path. Regions are outlined by the page (the obfuscated
//! region: the detection box grown by its class's box scale, as an ellipse or a box), not burned
//! into the thumbnails.
//!
//! # Files
//!
//! Thumbnails are named by the blake3 of the output they show (`thumbs/<32 hex>.jpg`), so outputs
//! with the same content share one, and a thumbnail is reused when it is newer than its output and
//! the output still has its recorded size. Thumbnails are made in parallel (rayon), read through
//! a pixel cap and checked against the record's blake3 before decoding; an output that cannot be
//! shown becomes a card with the reason. `data.js` sets `window.VEIL_REPORT` (a script, not
//! fetched JSON, because `fetch` of local files fails under `file://`); every `<`, `>`, `&`,
//! U+2028 and U+2029 in it is written as a `\u` escape, and the page inserts every string from the
//! records with `textContent` only.
//!
//! No function here prints; progress goes to a [`veil_core::ProgressSink`].

use std::path::PathBuf;

mod page;
mod report;
mod review;
mod thumbs;

pub use report::{
    write_report, Category, Counts, ReportOptions, ReportSummary, DEFAULT_NEAR_MARGIN,
    DEFAULT_PAGE_SIZE, DEFAULT_THUMB_MAX_SIDE, DEFAULT_THUMB_QUALITY, REPORT_DIR,
};
pub use review::{
    import_review, ImportSummary, ReviewEntry, ReviewFile, ReviewRun, REVIEW_FORMAT, REVIEW_VERSION,
};

/// Everything that can stop a report from being written or a review from being imported.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{path}: not a readable provenance file: {reason}")]
    Records { path: PathBuf, reason: String },
    #[error("{path}: not a run summary: {reason}")]
    Summary { path: PathBuf, reason: String },
    #[error("{dir}: the review page would be written over {path} of the output tree; choose another directory")]
    Collision { dir: PathBuf, path: String },
    #[error("{path}: not a usable veil review file: {reason}")]
    ReviewFile { path: PathBuf, reason: String },
    #[error(
        "{path}: changed while the review was imported; nothing was written, run the import again"
    )]
    Concurrent { path: PathBuf },
}

impl ReportError {
    pub(crate) fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        ReportError::Io {
            path: path.into(),
            reason: e.to_string(),
        }
    }
}

/// Writes `bytes` to `path` through a fresh temporary file in the same directory and a rename
/// (see `veil_ledger::fsutil`: a link planted at the temporary name is never written through), so
/// a reader sees the old file or the new one; `sync` also fsyncs the file before the rename and
/// the directory after it (thumbnails skip that: they are rebuilt when missing).
pub(crate) fn write_atomic(
    path: &std::path::Path,
    bytes: &[u8],
    sync: bool,
) -> Result<(), ReportError> {
    use std::io::Write;
    use veil_ledger::fsutil;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.veil-partial", std::process::id()));
    let result = if sync {
        fsutil::write_file_atomic(path, &tmp, |f| f.write_all(bytes))
    } else {
        fsutil::create_fresh(&tmp)
            .and_then(|mut f| f.write_all(bytes))
            .and_then(|()| std::fs::rename(&tmp, path))
    };
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ReportError::io(path, e)
    })
}
