//! Replaying recorded detections instead of running the detectors (`veil redact
//! --replay-detections FILE`): every image gets the detections that an earlier run recorded for
//! the same path and the same source bytes (blake3), and is then redacted, encoded, validated and
//! recorded like any other. It measures what the cores alone can do besides inference (the floor
//! a GPU run is compared with, benches/README), and re-redacts a dataset with another
//! obfuscation setting without running the networks again.
//!
//! Fail closed: an image with no such record (a new or changed file, or one that failed before)
//! fails with that reason and gets no output.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use image::RgbImage;
use veil_core::{Detection, ImageStatus};
use veil_ledger::ModelRef;

use crate::process::{Detector, Source};

/// The family name replayed runs record as their one model.
pub const REPLAY_FAMILY: &str = "replay";

/// Recorded detections by path, with the source hash they were found in.
#[derive(Debug, Clone)]
pub struct Replay {
    records: Arc<HashMap<String, (String, Vec<Detection>)>>,
    file: String,
}

impl Replay {
    /// Reads the records of `file` (a `provenance.jsonl`); failed records are left out.
    pub fn load(file: &Path) -> Result<Self, veil_ledger::ProvenanceError> {
        let records = veil_ledger::read_provenance(file)?
            .into_iter()
            .filter(|r| r.status != ImageStatus::Failed)
            .filter_map(|r| Some((r.path, (r.source_blake3?, r.detections))))
            .collect();
        Ok(Self {
            records: Arc::new(records),
            file: file.display().to_string(),
        })
    }

    /// Number of images it has detections for.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// What records of a replayed run name as their model: the records file, by its blake3.
    pub fn model_ref(file: &Path) -> std::io::Result<ModelRef> {
        let bytes = std::fs::read(file)?;
        Ok(ModelRef {
            name: format!("replay of {}", file.display()),
            family: REPLAY_FAMILY.into(),
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        })
    }

    fn lookup(&self, source: &Source<'_>) -> Result<Vec<Detection>, String> {
        match (self.records.get(source.path), source.blake3) {
            (Some((recorded, found)), Some(now)) if recorded == now => Ok(found.clone()),
            (Some(_), _) => Err(format!(
                "its bytes differ from those recorded in {} (detections cannot be replayed: run without --replay-detections)",
                self.file
            )),
            (None, _) => Err(format!(
                "no successful record of it in {} (detections cannot be replayed: run without --replay-detections)",
                self.file
            )),
        }
    }
}

impl Detector for Replay {
    fn detect(&mut self, _: &RgbImage) -> Result<Vec<Detection>, String> {
        Err("internal: replayed detections need the image's source".into())
    }

    fn detect_sources(
        &mut self,
        sources: &[Source<'_>],
        imgs: &[&RgbImage],
    ) -> Vec<Result<Vec<Detection>, String>> {
        debug_assert_eq!(sources.len(), imgs.len());
        sources.iter().map(|s| self.lookup(s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use veil_core::{BBox, ObjectClass};

    fn record(path: &str, blake3: &str, status: ImageStatus, x: f32) -> String {
        serde_json::json!({
            "schema": 1, "path": path, "status": status, "source_blake3": blake3,
            "source_size": 10, "output_blake3": null, "output_size": null, "format": "jpeg",
            "dimensions": [100, 100], "orientation": 1,
            "detections": [Detection {
                bbox: BBox { x1: x, y1: 1.0, x2: x + 10.0, y2: 11.0 },
                score: 0.9, class: ObjectClass::Face, model: "centerface".into(),
            }],
            "metadata_removed": [], "metadata_kept": [], "models": [], "params_blake3": "p",
            "params": {}, "tool_version": "t", "error_stage": null, "error": null,
        })
        .to_string()
    }

    #[test]
    fn replays_only_the_recorded_bytes_of_successful_records() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("provenance.jsonl");
        let lines = [
            record("a.jpg", "aaa", ImageStatus::Redacted, 5.0),
            record("b.jpg", "bbb", ImageStatus::Failed, 7.0),
        ];
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let mut r = Replay::load(&file).unwrap();
        assert_eq!(r.len(), 1, "the failed record is not replayable");
        let img = RgbImage::new(4, 4);
        let src = |path, blake3| Source {
            path,
            blake3: Some(blake3),
        };
        let got = r.detect_sources(
            &[
                src("a.jpg", "aaa"),
                src("a.jpg", "changed"),
                src("b.jpg", "bbb"),
                src("c.jpg", "c"),
            ],
            &[&img, &img, &img, &img],
        );
        assert_eq!(got[0].as_ref().unwrap()[0].bbox.x1, 5.0);
        assert!(
            got[1].as_ref().unwrap_err().contains("bytes differ"),
            "{got:?}"
        );
        assert!(got[2]
            .as_ref()
            .unwrap_err()
            .contains("no successful record"));
        assert!(got[3]
            .as_ref()
            .unwrap_err()
            .contains("no successful record"));
        assert!(r.detect(&img).is_err(), "never without a source");
    }
}
