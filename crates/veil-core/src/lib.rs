//! Shared vocabulary of veil: boxes, detections, obfuscation parameters, per-image outcomes and
//! progress events, and the one byte-level question every layer asks of what it would pass
//! through unchanged: does it carry a picture inside ([`embedded`])? Every other crate speaks
//! these types; this crate does no I/O and pulls in no image or inference code, so it stays cheap
//! to depend on and easy to test.

mod date;
pub mod embedded;
mod geometry;
mod outcome;
mod params;
mod progress;

pub use date::{now_rfc3339, rfc3339, Date, DateError, Weekday};
pub use geometry::{by_score, nms, suppress_by, BBox, Detection, ObjectClass};
pub use outcome::{FailureStage, ImageStatus};
pub use params::{Mode, ParseEnumError, RedactParams, Shape, StrengthBasis};
pub use progress::{ProgressEvent, ProgressSink};

/// The version of the veil tool, written into every provenance record.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
