use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use veil_core::{Detection, FailureStage, ImageStatus};

/// File name of the provenance records inside an output tree.
pub const PROVENANCE_FILE: &str = "provenance.jsonl";
/// File name of the run summary inside an output tree.
pub const RUN_SUMMARY_FILE: &str = "veil-run.json";
/// Whether a path relative to an output root names one of veil's own record files: the records
/// and run summary of a whole run, or of one shard (`provenance.shard-K-of-N.jsonl`,
/// `veil-run.shard-K-of-N.json`). These names are reserved: nothing from an input is copied to
/// them, and a release does not list them as extra files.
pub fn is_record_file(rel: &str) -> bool {
    let shard_part = |s: &str| {
        s.split_once("-of-").is_some_and(|(k, n)| {
            !k.is_empty()
                && !n.is_empty()
                && k.bytes().all(|b| b.is_ascii_digit())
                && n.bytes().all(|b| b.is_ascii_digit())
        })
    };
    rel == PROVENANCE_FILE
        || rel == RUN_SUMMARY_FILE
        || rel
            .strip_prefix("provenance.shard-")
            .and_then(|r| r.strip_suffix(".jsonl"))
            .is_some_and(shard_part)
        || rel
            .strip_prefix("veil-run.shard-")
            .and_then(|r| r.strip_suffix(".json"))
            .is_some_and(shard_part)
}

/// Version of the record layout; bumped on any incompatible change.
pub const PROVENANCE_SCHEMA: u32 = 1;

/// A model as used in a run: its manifest name and the blake3 of the exact file loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub name: String,
    pub family: String,
    pub blake3: String,
}

/// Perceptual hashes of one decoded image (upright pixels): PDQ (256 bits, hex as Meta's
/// reference prints it, with its quality 0-100; Hamming distance <= 31 counts as a match) and a
/// 64-bit dHash (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerceptualHashes {
    pub pdq: String,
    pub pdq_quality: u8,
    pub dhash: String,
}

/// One image of a run. Hashes are lowercase hex blake3 of the whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceRecord {
    pub schema: u32,
    /// Path relative to the input root, `/`-separated.
    pub path: String,
    pub status: ImageStatus,
    pub source_blake3: Option<String>,
    pub source_size: Option<u64>,
    /// Absent when the image failed: a failed image has no output file.
    pub output_blake3: Option<String>,
    pub output_size: Option<u64>,
    /// Perceptual hashes of the decoded source and of the written output (both: heavy blurring
    /// can move an output beyond the match threshold from its source).
    #[serde(default)]
    pub source_phash: Option<PerceptualHashes>,
    #[serde(default)]
    pub output_phash: Option<PerceptualHashes>,
    /// Sniffed container format of the source (`jpeg`, `png`, `webp`, ...).
    pub format: Option<String>,
    /// Upright dimensions `[width, height]`.
    pub dimensions: Option<[u32; 2]>,
    /// EXIF orientation that was applied (1 = none).
    pub orientation: Option<u8>,
    pub detections: Vec<Detection>,
    /// Metadata kinds found in the source and not carried to the output.
    pub metadata_removed: Vec<String>,
    /// Metadata kinds deliberately kept (only `icc`).
    pub metadata_kept: Vec<String>,
    pub models: Vec<ModelRef>,
    /// blake3 of the canonical JSON of the parameters (same for every record of a run).
    pub params_blake3: String,
    pub params: serde_json::Value,
    /// blake3 of the per-dataset policy file, when one was given.
    #[serde(default)]
    pub policy_blake3: Option<String>,
    pub tool_version: String,
    /// Result of the leakage re-check (`veil check` / `veil redact --check`), when run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<LeakCheck>,
    pub error_stage: Option<FailureStage>,
    pub error: Option<String>,
    /// A reviewer's decision on the output (`veil review import`), when one was recorded. It
    /// applies to the output with `output_blake3` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// On the record of an image inside a dataset archive (a WebDataset shard, a zip): the
    /// archive's path. Such a record's `path` is `ARCHIVE#MEMBER` (for example
    /// `shards/000042.tar#000123.jpg`) and its output lives inside the archive's output, which
    /// has a record of its own (with `format` `tar`, `tar.gz`, `tar.zst` or `zip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
}

impl ProvenanceRecord {
    /// Whether this is the record of a member of a dataset archive (no file of its own).
    pub fn is_member(&self) -> bool {
        self.archive.is_some()
    }
}

/// A reviewer's decision on one output, made on the review page (`veil report`) and recorded by
/// `veil review import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub decision: ReviewDecision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,
    /// When the reviewer decided (as the page recorded it, RFC 3339).
    pub decided_at: String,
    /// When the decision was recorded in the provenance (RFC 3339, UTC).
    pub imported_at: String,
}

/// What a reviewer decided about an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// The output is correctly de-identified.
    Fine,
    /// The output needs a manual fix before it may be published.
    NeedsFix,
}

impl ReviewDecision {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReviewDecision::Fine => "fine",
            ReviewDecision::NeedsFix => "needs_fix",
        }
    }
}

/// The leakage re-check of one output: detectors run again on the written image; every detection
/// above the threshold that no obfuscated region covers is a leak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakCheck {
    pub threshold: f64,
    pub models: Vec<ModelRef>,
    /// Every detection at or above the threshold, inside a recorded region or not.
    pub leaks: Vec<Detection>,
    /// Those of `leaks` that lie inside a recorded region (the region did not hide them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inside: Vec<Detection>,
    /// Set when the output's bytes are not those recorded at redaction (what differs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<String>,
}

/// Summary of one run, written as JSON next to the records and printed by the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub tool_version: String,
    pub started_at: String,
    pub finished_at: String,
    pub input: String,
    pub output: String,
    pub device: String,
    pub workers: usize,
    pub images: u64,
    pub redacted: u64,
    pub no_detections: u64,
    pub failed: u64,
    pub detections: u64,
    pub other_files: Vec<String>,
    pub copied_files: Vec<String>,
    pub skipped_links: Vec<String>,
    pub seconds: f64,
    pub images_per_second: f64,
    pub models: Vec<ModelRef>,
    pub params_blake3: String,
    /// Seconds spent in each step, summed over the images processed by all workers.
    #[serde(default)]
    pub stage_seconds: StageTimes,
}

/// Seconds spent per step of the per-image pipeline (summed when aggregated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimes {
    /// Read, hash, container scan, decode, orientation.
    pub decode: f64,
    /// Face and person detection (ONNX Runtime, including pre- and post-processing).
    pub detect: f64,
    pub redact: f64,
    pub encode: f64,
    /// Decoding the encoded output and checking it (`validate_output`).
    pub verify: f64,
    /// PDQ and dHash of source and output.
    pub phash: f64,
    /// Atomic write and fsync.
    pub write: f64,
}

impl StageTimes {
    pub fn add(&mut self, o: &StageTimes) {
        self.decode += o.decode;
        self.detect += o.detect;
        self.redact += o.redact;
        self.encode += o.encode;
        self.verify += o.verify;
        self.phash += o.phash;
        self.write += o.write;
    }

    pub fn total(&self) -> f64 {
        self.decode
            + self.detect
            + self.redact
            + self.encode
            + self.verify
            + self.phash
            + self.write
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a provenance record: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Reads every record of a provenance file.
pub fn read_provenance(path: &Path) -> Result<Vec<ProvenanceRecord>, ProvenanceError> {
    let io = |e| ProvenanceError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let f = fs::File::open(path).map_err(io)?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str(&line).map_err(|e| ProvenanceError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        out.push(rec);
    }
    Ok(out)
}

/// Sorts a records file by path in place, atomically (a fresh temporary file, fsync, rename; see
/// [`crate::fsutil::write_file_atomic`]: a link planted at the temporary name is not followed).
/// Holds the raw lines while sorting, not parsed records. Returns the number of records.
pub fn sort_provenance_file(path: &Path) -> Result<usize, ProvenanceError> {
    #[derive(Deserialize)]
    struct PathOnly {
        path: String,
    }
    let io = |e| ProvenanceError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let f = fs::File::open(path).map_err(io)?;
    let mut lines: Vec<(String, String)> = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let key: PathOnly = serde_json::from_str(&line).map_err(|e| ProvenanceError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        lines.push((key.path, line));
    }
    lines.sort();
    let tmp = path.with_extension("jsonl.partial");
    crate::fsutil::write_file_atomic(path, &tmp, |f| {
        let mut w = std::io::BufWriter::new(f);
        for (_, l) in &lines {
            w.write_all(l.as_bytes())?;
            w.write_all(b"\n")?;
        }
        w.flush()
    })
    .map_err(io)?;
    Ok(lines.len())
}

/// Writes records sorted by path, atomically (temporary file, fsync, rename), so readers see the
/// old file or the new one, never a mix.
pub fn write_provenance_sorted(
    path: &Path,
    records: &mut [ProvenanceRecord],
) -> Result<(), ProvenanceError> {
    records.sort_by(|a, b| a.path.cmp(&b.path));
    let io = |e| ProvenanceError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let tmp = path.with_extension("jsonl.partial");
    let mut buf = Vec::new();
    for r in records.iter() {
        serde_json::to_writer(&mut buf, r).map_err(|e| io(e.into()))?;
        buf.push(b'\n');
    }
    crate::fsutil::write_file_atomic(path, &tmp, |f| f.write_all(&buf)).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn record_file_names_are_reserved_and_nothing_else() {
        for name in [
            "provenance.jsonl",
            "veil-run.json",
            "provenance.shard-0-of-4.jsonl",
            "veil-run.shard-12-of-16.json",
        ] {
            assert!(super::is_record_file(name), "{name}");
        }
        for name in [
            "provenance.json",
            "sub/provenance.jsonl",
            "provenance.shard-a-of-4.jsonl",
            "provenance.shard--of-4.jsonl",
            "provenance.shard-1-of-.jsonl",
            "veil-run.shard-1-of-2.jsonl",
            "veil-run.shard-1.json",
            "photo.jpg",
        ] {
            assert!(!super::is_record_file(name), "{name}");
        }
    }

    use super::*;
    use veil_core::{BBox, ObjectClass};

    fn rec(path: &str) -> ProvenanceRecord {
        ProvenanceRecord {
            schema: PROVENANCE_SCHEMA,
            path: path.into(),
            status: ImageStatus::Redacted,
            source_blake3: Some("aa".into()),
            source_size: Some(3),
            output_blake3: Some("bb".into()),
            output_size: Some(4),
            source_phash: None,
            output_phash: None,
            format: Some("jpeg".into()),
            dimensions: Some([10, 20]),
            orientation: Some(1),
            detections: vec![Detection {
                bbox: BBox::new(1.0, 2.0, 3.0, 4.0),
                score: 0.5,
                class: ObjectClass::Face,
                model: "centerface".into(),
            }],
            metadata_removed: vec!["exif_gps".into()],
            metadata_kept: vec![],
            models: vec![],
            params_blake3: "cc".into(),
            params: serde_json::json!({"mode": "blur"}),
            policy_blake3: None,
            tool_version: "0".into(),
            check: None,
            error_stage: None,
            error: None,
            review: None,
            archive: None,
        }
    }

    #[test]
    fn records_round_trip_sorted_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PROVENANCE_FILE);
        let mut recs = vec![rec("b.jpg"), rec("a/c.jpg")];
        write_provenance_sorted(&p, &mut recs).unwrap();
        let back = read_provenance(&p).unwrap();
        assert_eq!(
            back.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            ["a/c.jpg", "b.jpg"]
        );
        assert_eq!(back[0], rec("a/c.jpg"));
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"box\":{\"x1\":1.0"), "{text}");
    }

    #[test]
    fn a_review_is_optional_and_round_trips() {
        let plain = serde_json::to_string(&rec("a.jpg")).unwrap();
        assert!(!plain.contains("review"), "{plain}");
        let mut r = rec("a.jpg");
        r.review = Some(Review {
            decision: ReviewDecision::NeedsFix,
            note: Some("ear visible".into()),
            reviewer: None,
            decided_at: "2026-01-02T03:04:05Z".into(),
            imported_at: "2026-01-03T00:00:00Z".into(),
        });
        let line = serde_json::to_string(&r).unwrap();
        assert!(
            line.ends_with(r#""review":{"decision":"needs_fix","note":"ear visible","decided_at":"2026-01-02T03:04:05Z","imported_at":"2026-01-03T00:00:00Z"}}"#),
            "{line}"
        );
        let back: ProvenanceRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
        let old: ProvenanceRecord = serde_json::from_str(&plain).unwrap();
        assert_eq!(old.review, None);
    }

    #[test]
    fn a_corrupt_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PROVENANCE_FILE);
        fs::write(
            &p,
            format!("{}\nnot json\n", serde_json::to_string(&rec("a")).unwrap()),
        )
        .unwrap();
        let err = read_provenance(&p).unwrap_err().to_string();
        assert!(err.contains(":2:"), "{err}");
    }
}
