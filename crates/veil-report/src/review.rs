//! Importing reviewer decisions exported by the page into the provenance records.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use veil_ledger::{ProvenanceRecord, Review, ReviewDecision, PROVENANCE_FILE, RUN_SUMMARY_FILE};

use crate::{write_atomic, ReportError};

/// `format` of a review file.
pub const REVIEW_FORMAT: &str = "veil-review";
/// `version` of the review file layout this build reads and the page writes.
pub const REVIEW_VERSION: u32 = 1;
/// Largest review file read (about 10 M decisions).
const MAX_FILE_BYTES: u64 = 4 << 30;
const MAX_NOTE_CHARS: usize = 10_000;
const MAX_SHORT_CHARS: usize = 200;

/// A review file as the page exports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewFile {
    pub format: String,
    pub version: u32,
    /// The run the page showed (informational: decisions are bound to output blake3s).
    #[serde(default)]
    pub run: Option<ReviewRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_at: Option<String>,
    pub decisions: Vec<ReviewEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewRun {
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub params_blake3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// One decision: it applies to the record with `path` only while that record's output has
/// `output_blake3` (the exact file the reviewer looked at).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewEntry {
    pub path: String,
    pub output_blake3: String,
    pub decision: ReviewDecision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,
    pub decided_at: String,
}

/// What [`import_review`] did with each decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Decisions recorded now.
    pub applied: Vec<String>,
    /// Decisions already recorded exactly so (the record was left as it was).
    pub unchanged: Vec<String>,
    /// Decisions made on another version of the output: (path, blake3 decided on, blake3 or
    /// state recorded now). Not applied.
    pub stale: Vec<(String, String, String)>,
    /// Decisions for paths no record has. Not applied.
    pub unknown: Vec<String>,
    /// The file names another run than the records' (informational).
    pub run_mismatch: Option<String>,
}

impl ImportSummary {
    /// Whether every decision was recorded (now or before).
    pub fn is_complete(&self) -> bool {
        self.stale.is_empty() && self.unknown.is_empty()
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> ReportError {
    ReportError::ReviewFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Reads and validates a review file.
fn read_review_file(path: &Path) -> Result<ReviewFile, ReportError> {
    let md = std::fs::metadata(path).map_err(|e| bad(path, e.to_string()))?;
    if !md.is_file() {
        return Err(bad(path, "not a regular file"));
    }
    if md.len() > MAX_FILE_BYTES {
        return Err(bad(path, format!("{} bytes is too large", md.len())));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(path, e.to_string()))?;
    let head: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(path, format!("not JSON: {e}")))?;
    if head["format"] != REVIEW_FORMAT {
        return Err(bad(
            path,
            format!(
                "`format` is {}, expected \"{REVIEW_FORMAT}\"",
                head["format"]
            ),
        ));
    }
    if head["version"] != REVIEW_VERSION {
        return Err(bad(
            path,
            format!(
                "`version` {} is not supported (this build reads {REVIEW_VERSION})",
                head["version"]
            ),
        ));
    }
    let file: ReviewFile = serde_json::from_value(head).map_err(|e| bad(path, e.to_string()))?;
    let mut seen = HashSet::new();
    for (i, d) in file.decisions.iter().enumerate() {
        let at = |what: &str| bad(path, format!("decision {} ({:?}): {what}", i + 1, d.path));
        if d.path.is_empty() {
            return Err(at("empty path"));
        }
        if !is_hex64(&d.output_blake3) {
            return Err(at("output_blake3 is not 64 lowercase hex digits"));
        }
        if d.decided_at.trim().is_empty() || d.decided_at.chars().count() > MAX_SHORT_CHARS {
            return Err(at("decided_at is empty or too long"));
        }
        if d.note
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
        {
            return Err(at("note longer than 10000 characters"));
        }
        if d.reviewer
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_SHORT_CHARS || r.chars().any(char::is_control))
        {
            return Err(at("reviewer is too long or has control characters"));
        }
        if !seen.insert(d.path.as_str()) {
            return Err(at("a second decision for the same path"));
        }
    }
    Ok(file)
}

/// Records the decisions of the review file `review` in `OUTPUT/provenance.jsonl`: a decision
/// applies when a record has its path and that record's `output_blake3` is the one the decision
/// was made on; it is then stored as the record's `review` (replacing an earlier one). Stale and
/// unknown decisions are reported, not applied. Only the lines of changed records are rewritten
/// (every other line stays byte-identical), through a temporary file, fsync and rename; nothing
/// is written when nothing changes. An invalid file changes nothing.
pub fn import_review(output: &Path, review: &Path) -> Result<ImportSummary, ReportError> {
    let file = read_review_file(review)?;
    let prov = output.join(PROVENANCE_FILE);
    let original = std::fs::read(&prov).map_err(|e| ReportError::Records {
        path: prov.clone(),
        reason: e.to_string(),
    })?;

    // Split into lines keeping every byte: a line is its content plus its '\n' (if any).
    let mut lines: Vec<(&[u8], Option<ProvenanceRecord>)> = Vec::new();
    let mut by_path: HashMap<String, usize> = HashMap::new();
    for (n, raw) in original.split_inclusive(|&b| b == b'\n').enumerate() {
        let content = raw.strip_suffix(b"\n").unwrap_or(raw);
        if content.iter().all(u8::is_ascii_whitespace) {
            lines.push((raw, None));
            continue;
        }
        let rec: ProvenanceRecord =
            serde_json::from_slice(content).map_err(|e| ReportError::Records {
                path: prov.clone(),
                reason: format!("line {}: {e}", n + 1),
            })?;
        by_path.entry(rec.path.clone()).or_insert(lines.len());
        lines.push((raw, Some(rec)));
    }

    let mut summary = ImportSummary::default();
    let mut changed: HashSet<usize> = HashSet::new();
    let imported_at = veil_core::now_rfc3339();
    for d in &file.decisions {
        let Some(&li) = by_path.get(&d.path) else {
            summary.unknown.push(d.path.clone());
            continue;
        };
        let Some(rec) = lines[li].1.as_mut() else {
            continue;
        };
        if rec.output_blake3.as_deref() != Some(d.output_blake3.as_str()) {
            summary.stale.push((
                d.path.clone(),
                d.output_blake3.clone(),
                rec.output_blake3
                    .clone()
                    .unwrap_or_else(|| "no output".into()),
            ));
            continue;
        }
        let note = d.note.clone().filter(|n| !n.trim().is_empty());
        let reviewer = d.reviewer.clone().filter(|r| !r.trim().is_empty());
        let same = rec.review.as_ref().is_some_and(|r| {
            r.decision == d.decision
                && r.note == note
                && r.reviewer == reviewer
                && r.decided_at == d.decided_at
        });
        if same {
            summary.unchanged.push(d.path.clone());
            continue;
        }
        rec.review = Some(Review {
            decision: d.decision,
            note,
            reviewer,
            decided_at: d.decided_at.clone(),
            imported_at: imported_at.clone(),
        });
        changed.insert(li);
        summary.applied.push(d.path.clone());
    }
    summary.run_mismatch = run_mismatch(output, &file, &lines);

    if !changed.is_empty() {
        let mut out = Vec::with_capacity(original.len() + changed.len() * 160);
        for (i, (raw, rec)) in lines.iter().enumerate() {
            match rec {
                Some(rec) if changed.contains(&i) => {
                    serde_json::to_writer(&mut out, rec).map_err(|e| ReportError::io(&prov, e))?;
                    out.push(b'\n');
                }
                _ => out.extend_from_slice(raw),
            }
        }
        // Refuse to overwrite records another process changed since we read them.
        let now = std::fs::read(&prov).map_err(|e| ReportError::io(&prov, e))?;
        if now != original {
            return Err(ReportError::Concurrent { path: prov });
        }
        write_atomic(&prov, &out, true)?;
    }
    Ok(summary)
}

/// A note when the file names a run other than the records' (by parameters or start time).
fn run_mismatch(
    output: &Path,
    file: &ReviewFile,
    lines: &[(&[u8], Option<ProvenanceRecord>)],
) -> Option<String> {
    let run = file.run.as_ref()?;
    if let Some(p) = &run.params_blake3 {
        let known = lines
            .iter()
            .filter_map(|(_, r)| r.as_ref())
            .any(|r| &r.params_blake3 == p);
        if !known {
            return Some(format!(
                "the review was made with parameters {p}, which no record has"
            ));
        }
    }
    let summary: PathBuf = output.join(RUN_SUMMARY_FILE);
    let started = std::fs::read(&summary)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["started_at"].as_str().map(str::to_string));
    match (&run.started_at, started) {
        (Some(a), Some(b)) if *a != b => Some(format!(
            "the review was made on the run started at {a}; the output tree's last run started at {b}"
        )),
        _ => None,
    }
}
