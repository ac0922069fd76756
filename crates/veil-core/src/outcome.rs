use serde::{Deserialize, Serialize};

/// Final state of one image of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    /// At least one region was found and obfuscated; output written and verified.
    Redacted,
    /// Detectors ran and found nothing; output re-encoded without metadata and verified.
    NoDetections,
    /// Something failed; no output file exists for this image.
    Failed,
}

impl ImageStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ImageStatus::Redacted => "redacted",
            ImageStatus::NoDetections => "no_detections",
            ImageStatus::Failed => "failed",
        }
    }
}

/// Where an image failed, so reports can group failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureStage {
    Read,
    Decode,
    Detect,
    Redact,
    Encode,
    Verify,
    Write,
}
