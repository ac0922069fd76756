//! Building the review page: reading the records, categorising and ordering them, thumbnails,
//! and writing `index.html` and `data.js`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use veil_core::{ImageStatus, ObjectClass, ProgressSink};
use veil_ledger::{ModelRef, ProvenanceRecord, RunSummary, PROVENANCE_FILE, RUN_SUMMARY_FILE};

use crate::{page, thumbs, write_atomic, ReportError};

/// Directory of the page inside the output tree, unless [`ReportOptions::out_dir`] says otherwise.
pub const REPORT_DIR: &str = "report";
/// A detection scoring less than its class's threshold plus this is "near the threshold".
pub const DEFAULT_NEAR_MARGIN: f64 = 0.15;
/// Longest side of a thumbnail, in pixels.
pub const DEFAULT_THUMB_MAX_SIDE: u32 = 256;
/// JPEG quality of the thumbnails.
pub const DEFAULT_THUMB_QUALITY: u8 = 75;
/// Cards per page.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Model name of the head regions added for persons without a detected face (as recorded by
/// veil-pipeline's fusion).
const HEAD_FALLBACK: &str = "head-fallback";
/// Histogram bins of detections per image: 0..=9, and 10 or more.
const HIST_BINS: usize = 11;

/// How to write the page.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Where to write the page (default `OUTPUT/report`). A directory inside the output tree must
    /// not hold any output.
    pub out_dir: Option<PathBuf>,
    /// A detection is near the threshold when its score is below its class's threshold + this.
    pub near_margin: f64,
    pub thumb_max_side: u32,
    pub thumb_quality: u8,
    /// Outputs whose header declares more pixels are not decoded (their card says why).
    pub max_pixels: u64,
    /// Cards per page (the reader can change it on the page).
    pub page_size: usize,
    /// Keep a thumbnail that is newer than its output when the output still has its recorded size.
    pub reuse_thumbs: bool,
    /// Reads the images inside dataset containers (shards, zips, Parquet tables), for their
    /// thumbnails; without it their cards say why they have none.
    pub containers: Option<std::sync::Arc<dyn veil_ledger::Containers + Send + Sync>>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            out_dir: None,
            near_margin: DEFAULT_NEAR_MARGIN,
            thumb_max_side: DEFAULT_THUMB_MAX_SIDE,
            thumb_quality: DEFAULT_THUMB_QUALITY,
            max_pixels: 150_000_000,
            page_size: DEFAULT_PAGE_SIZE,
            reuse_thumbs: true,
            containers: None,
        }
    }
}

/// Why a record needs a reviewer's look, most urgent first (the order of the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// The image failed: no output.
    Failed,
    /// The output is missing, differs from its record, or cannot be decoded.
    Unreadable,
    /// The leakage re-check found a detection outside every obfuscated region, or inside one
    /// that did not hide it.
    Leak,
    /// A detection scored within the margin above its class's threshold.
    NearThreshold,
    /// A person was detected in whose box the face model found no face (head-fallback regions
    /// do not count as faces).
    PersonsWithoutFace,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::Failed,
        Category::Unreadable,
        Category::Leak,
        Category::NearThreshold,
        Category::PersonsWithoutFace,
    ];

    /// The bit of this category in a card's `c` field of `data.js`.
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }

    pub fn name(self) -> &'static str {
        match self {
            Category::Failed => "failed",
            Category::Unreadable => "unreadable",
            Category::Leak => "leak",
            Category::NearThreshold => "near_threshold",
            Category::PersonsWithoutFace => "persons_without_face",
        }
    }

    /// The categories set in a bit mask, most urgent first.
    pub fn from_bits(bits: u32) -> Vec<Category> {
        Category::ALL
            .into_iter()
            .filter(|c| bits & c.bit() != 0)
            .collect()
    }
}

/// Figures of the page's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Records.
    pub images: u64,
    pub redacted: u64,
    pub no_detections: u64,
    pub failed: u64,
    /// Face detections of a face model (head-fallback regions are counted as `heads`).
    pub faces: u64,
    pub persons: u64,
    pub heads: u64,
    /// Records whose re-check found at least one leak, and the number of leaks.
    pub leak_images: u64,
    pub leaks: u64,
    pub near_threshold: u64,
    pub persons_without_face: u64,
    pub unreadable: u64,
    /// Records with a review decision already recorded.
    pub reviewed: u64,
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    /// The page's directory and its `index.html`.
    pub dir: PathBuf,
    pub index: PathBuf,
    pub counts: Counts,
    /// Outputs (failed images excluded) with 0, 1, ..., 9 and 10 or more detections.
    pub histogram: Vec<u64>,
    pub thumbnails_made: u64,
    pub thumbnails_reused: u64,
    /// Outputs that could not be shown: (path, reason).
    pub unreadable: Vec<(String, String)>,
    /// Record paths in the order of the page, with their categories.
    pub order: Vec<(String, Vec<Category>)>,
    /// Size of `data.js` in bytes.
    pub data_bytes: u64,
}

/// One card of `data.js`. Short keys: the file holds one per record (100 k records are a few
/// tens of MB).
#[derive(Serialize)]
struct Item<'a> {
    /// Path relative to the output root.
    p: &'a str,
    /// Status: `redacted`, `no_detections` or `failed`.
    s: &'static str,
    /// Upright dimensions `[w, h]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    z: Option<[u32; 2]>,
    /// Output blake3 (what a decision is bound to). The thumbnail is `thumbs/` + its first 32
    /// hex digits + `.jpg` unless the record failed or `u` says why there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    o: Option<&'a str>,
    /// Category bits ([`Category::bit`]).
    c: u32,
    /// Obfuscated regions: `[kind (0 face, 1 person, 2 head), score x 1000, x1, y1, x2, y2,
    /// ellipse (0/1)]` in image pixels (the detection grown by its class's box scale).
    d: Vec<[i64; 7]>,
    /// Leaks of the re-check: same layout, the detection as found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    k: Vec<[i64; 7]>,
    /// Failure: `stage: reason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    /// Why the output cannot be shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    /// Decision already recorded in the provenance.
    #[serde(skip_serializing_if = "Option::is_none")]
    r: Option<ItemReview<'a>>,
}

#[derive(Serialize)]
struct ItemReview<'a> {
    d: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<&'a str>,
    at: &'a str,
}

#[derive(Serialize)]
struct RunInfo<'a> {
    tool_version: &'a str,
    started_at: &'a str,
    finished_at: &'a str,
    input: &'a str,
    output: &'a str,
    device: &'a str,
    workers: usize,
    images: u64,
    seconds: f64,
    images_per_second: f64,
    other_files: usize,
}

/// What identifies the run in an exported review file.
#[derive(Serialize)]
struct ReviewRunInfo<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<&'a str>,
    params_blake3: Option<&'a str>,
    output: &'a str,
}

#[derive(Serialize)]
struct Data<'a> {
    format: &'static str,
    version: u32,
    generated_at: String,
    tool_version: &'static str,
    /// The output tree as given.
    output: String,
    /// URL prefix (relative to the page) of the output tree, ending with `/`.
    base: String,
    run: Option<RunInfo<'a>>,
    /// Key of the reviewer's decisions in the browser's storage.
    run_key: String,
    review_run: ReviewRunInfo<'a>,
    models: Vec<&'a ModelRef>,
    params_blake3: Vec<&'a str>,
    policy_blake3: Vec<&'a str>,
    params: Option<&'a serde_json::Value>,
    margin: f64,
    page_size: usize,
    counts: &'a Counts,
    hist: &'a [u64],
    items: Vec<Item<'a>>,
}

/// Per-class settings read from a record's parameters.
#[derive(Clone, Copy)]
struct ClassSettings {
    threshold: Option<f64>,
    box_scale: f32,
    ellipse: bool,
}

fn class_settings(params: &serde_json::Value, class: ObjectClass) -> ClassSettings {
    let c = &params["policy"][class.to_string()];
    let threshold = c["threshold"].as_f64().or_else(|| match class {
        ObjectClass::Face => params["face_scales"]["threshold"].as_f64(),
        ObjectClass::Person => None,
    });
    ClassSettings {
        threshold,
        box_scale: c["redact"]["box_scale"].as_f64().unwrap_or(1.0) as f32,
        ellipse: c["redact"]["shape"].as_str() == Some("ellipse"),
    }
}

/// A record's categories (without `Unreadable`, known only after the thumbnails), its lowest
/// score margin above a threshold, and its regions.
struct Analysis {
    bits: u32,
    near_margin: f64,
    regions: Vec<[i64; 7]>,
    leaks: Vec<[i64; 7]>,
    faces: u64,
    persons: u64,
    heads: u64,
}

fn analyse(r: &ProvenanceRecord, margin: f64) -> Analysis {
    let face = class_settings(&r.params, ObjectClass::Face);
    let person = class_settings(&r.params, ObjectClass::Person);
    let settings = |c: ObjectClass| match c {
        ObjectClass::Face => face,
        ObjectClass::Person => person,
    };
    let dims = r.dimensions.map(|[w, h]| (w as f32, h as f32));
    let mut a = Analysis {
        bits: 0,
        near_margin: f64::INFINITY,
        regions: Vec::with_capacity(r.detections.len()),
        leaks: Vec::new(),
        faces: 0,
        persons: 0,
        heads: 0,
    };
    let enc = |kind: i64, score: f32, b: veil_core::BBox, ellipse: bool| {
        let b = match dims {
            Some((w, h)) => b.clipped(w, h),
            None => b,
        };
        [
            kind,
            (f64::from(score) * 1000.0).round() as i64,
            b.x1.round() as i64,
            b.y1.round() as i64,
            b.x2.round() as i64,
            b.y2.round() as i64,
            i64::from(ellipse),
        ]
    };
    for d in &r.detections {
        let s = settings(d.class);
        let head = d.model == HEAD_FALLBACK;
        let kind = match (d.class, head) {
            (_, true) => {
                a.heads += 1;
                2
            }
            (ObjectClass::Face, false) => {
                a.faces += 1;
                0
            }
            (ObjectClass::Person, false) => {
                a.persons += 1;
                1
            }
        };
        // A head region carries its person's score, which is judged as the person.
        if let (false, Some(t)) = (head, s.threshold) {
            let m = f64::from(d.score) - t;
            if m < margin {
                a.bits |= Category::NearThreshold.bit();
                a.near_margin = a.near_margin.min(m);
            }
        }
        a.regions
            .push(enc(kind, d.score, d.bbox.scaled(s.box_scale), s.ellipse));
    }
    if r.status == ImageStatus::Failed {
        a.bits |= Category::Failed.bit();
    }
    if let Some(check) = &r.check {
        if !check.leaks.is_empty() {
            a.bits |= Category::Leak.bit();
        }
        for d in &check.leaks {
            let kind = match d.class {
                ObjectClass::Face => 0,
                ObjectClass::Person => 1,
            };
            a.leaks.push(enc(kind, d.score, d.bbox, false));
        }
    }
    // A person in whose box the face model found no face (a head-fallback region is a guess,
    // not a found face).
    let faces: Vec<(f32, f32)> = r
        .detections
        .iter()
        .filter(|d| d.class == ObjectClass::Face && d.model != HEAD_FALLBACK)
        .map(|d| d.bbox.center())
        .collect();
    let faceless = r.detections.iter().any(|p| {
        p.class == ObjectClass::Person && !faces.iter().any(|&(x, y)| p.bbox.contains(x, y))
    });
    if faceless {
        a.bits |= Category::PersonsWithoutFace.bit();
    }
    a
}

pub(crate) use veil_ledger::safe_rel_path;

fn read_records(path: &Path) -> Result<Vec<ProvenanceRecord>, ReportError> {
    veil_ledger::read_provenance(path).map_err(|e| ReportError::Records {
        path: path.to_path_buf(),
        reason: match e {
            veil_ledger::ProvenanceError::Io { source, .. } => source.to_string(),
            veil_ledger::ProvenanceError::Parse { line, reason, .. } => {
                format!("line {line}: {reason}")
            }
        },
    })
}

fn read_summary(path: &Path) -> Result<Option<RunSummary>, ReportError> {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ReportError::io(path, e)),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ReportError::Summary {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
    }
}

/// A record of a dataset container itself (not of an image in it).
fn is_container(r: &ProvenanceRecord) -> bool {
    r.archive.is_none()
        && matches!(
            r.format.as_deref(),
            Some("tar" | "tar.gz" | "tar.zst" | "zip" | "parquet")
        )
}

/// Writes the review page of the output tree `output` (see the crate documentation): reads
/// `provenance.jsonl` and `veil-run.json` (optional), makes the thumbnails of the outputs, and
/// writes `index.html`, `data.js` and `thumbs/` into [`ReportOptions::out_dir`] (default
/// `OUTPUT/report`). Outputs that cannot be shown are listed in the summary, not errors.
pub fn write_report(
    output: &Path,
    opts: &ReportOptions,
    progress: &dyn ProgressSink,
) -> Result<ReportSummary, ReportError> {
    let mut records = read_records(&output.join(PROVENANCE_FILE))?;
    // A redacted container (shard, zip, table) is not an image: its images have cards of their
    // own. A container that failed as a whole keeps its card.
    records.retain(|r| !(r.status != ImageStatus::Failed && is_container(r)));
    let run = read_summary(&output.join(RUN_SUMMARY_FILE))?;
    let dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| output.join(REPORT_DIR));
    std::fs::create_dir_all(&dir).map_err(|e| ReportError::io(&dir, e))?;
    let canon_out = output
        .canonicalize()
        .map_err(|e| ReportError::io(output, e))?;
    let canon_dir = dir.canonicalize().map_err(|e| ReportError::io(&dir, e))?;
    check_collision(&canon_out, &canon_dir, &dir, &records, run.as_ref())?;

    let analyses: Vec<Analysis> = records
        .iter()
        .map(|r| analyse(r, opts.near_margin))
        .collect();
    let thumbs = thumbs::make_all(output, &dir, &records, opts, progress)?;

    let mut counts = Counts {
        images: records.len() as u64,
        ..Counts::default()
    };
    let mut hist = vec![0u64; HIST_BINS];
    let mut bits: Vec<u32> = Vec::with_capacity(records.len());
    let mut unreadable = Vec::new();
    for (i, (r, a)) in records.iter().zip(&analyses).enumerate() {
        let mut b = a.bits;
        if let Some(why) = &thumbs.problems[i] {
            b |= Category::Unreadable.bit();
            unreadable.push((r.path.clone(), why.clone()));
        }
        bits.push(b);
        match r.status {
            ImageStatus::Redacted => counts.redacted += 1,
            ImageStatus::NoDetections => counts.no_detections += 1,
            ImageStatus::Failed => counts.failed += 1,
        }
        if r.status != ImageStatus::Failed {
            hist[r.detections.len().min(HIST_BINS - 1)] += 1;
        }
        counts.faces += a.faces;
        counts.persons += a.persons;
        counts.heads += a.heads;
        counts.leaks += a.leaks.len() as u64;
        let has = |c: Category| u64::from(b & c.bit() != 0);
        counts.leak_images += has(Category::Leak);
        counts.near_threshold += has(Category::NearThreshold);
        counts.persons_without_face += has(Category::PersonsWithoutFace);
        counts.unreadable += has(Category::Unreadable);
        counts.reviewed += u64::from(r.review.is_some());
    }

    // Review order: most urgent category, then (for near-threshold) the lowest margin, then path.
    let rank = |b: u32| {
        Category::ALL
            .iter()
            .position(|c| b & c.bit() != 0)
            .unwrap_or(Category::ALL.len())
    };
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|&x, &y| {
        let (rx, ry) = (rank(bits[x]), rank(bits[y]));
        let near = Category::ALL
            .iter()
            .position(|c| *c == Category::NearThreshold)
            .unwrap_or(usize::MAX);
        rx.cmp(&ry)
            .then_with(|| {
                if rx == near {
                    analyses[x].near_margin.total_cmp(&analyses[y].near_margin)
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .then_with(|| records[x].path.cmp(&records[y].path))
    });

    let mut items = Vec::with_capacity(records.len());
    for &i in &order {
        let r = &records[i];
        let a = &analyses[i];
        items.push(Item {
            p: &r.path,
            s: r.status.as_str(),
            z: r.dimensions.or(thumbs.dims[i]),
            o: r.output_blake3.as_deref(),
            c: bits[i],
            d: a.regions.clone(),
            k: a.leaks.clone(),
            e: r.error.as_ref().map(|e| match r.error_stage {
                Some(st) => format!(
                    "{}: {e}",
                    serde_json::to_value(st)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
                None => e.clone(),
            }),
            u: thumbs.problems[i].clone(),
            r: r.review.as_ref().map(|rv| ItemReview {
                d: rv.decision.as_str(),
                n: rv.note.as_deref(),
                by: rv.reviewer.as_deref(),
                at: &rv.decided_at,
            }),
        });
    }

    let params_blake3: Vec<&str> = records
        .iter()
        .map(|r| r.params_blake3.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let policy_blake3: Vec<&str> = records
        .iter()
        .filter_map(|r| r.policy_blake3.as_deref())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let models: Vec<&ModelRef> = match &run {
        Some(s) if !s.models.is_empty() => s.models.iter().collect(),
        _ => {
            let mut seen = BTreeSet::new();
            records
                .iter()
                .flat_map(|r| r.models.iter())
                .filter(|m| seen.insert((m.name.as_str(), m.blake3.as_str())))
                .collect()
        }
    };
    let run_params = run
        .as_ref()
        .map(|s| s.params_blake3.as_str())
        .or(params_blake3.first().copied());
    let run_key = format!(
        "{}|{}|{}",
        canon_out.display(),
        run.as_ref().map(|s| s.started_at.as_str()).unwrap_or(""),
        run_params.unwrap_or("")
    );
    let output_name = output.display().to_string();
    let data = Data {
        format: "veil-report",
        version: 1,
        generated_at: veil_core::now_rfc3339(),
        tool_version: veil_core::TOOL_VERSION,
        output: output_name.clone(),
        base: page::relative_base(&canon_dir, &canon_out),
        run: run.as_ref().map(|s| RunInfo {
            tool_version: &s.tool_version,
            started_at: &s.started_at,
            finished_at: &s.finished_at,
            input: &s.input,
            output: &s.output,
            device: &s.device,
            workers: s.workers,
            images: s.images,
            seconds: s.seconds,
            images_per_second: s.images_per_second,
            other_files: s.other_files.len(),
        }),
        run_key,
        review_run: ReviewRunInfo {
            started_at: run.as_ref().map(|s| s.started_at.as_str()),
            params_blake3: run_params,
            output: &output_name,
        },
        models,
        params_blake3,
        policy_blake3,
        params: records
            .iter()
            .find(|r| r.status != ImageStatus::Failed)
            .or(records.first())
            .map(|r| &r.params),
        margin: opts.near_margin,
        page_size: opts.page_size.max(1),
        counts: &counts,
        hist: &hist,
        items,
    };
    let json = serde_json::to_string(&data).map_err(|e| ReportError::io(&dir, e))?;
    let script = page::data_script(&json);
    let data_path = dir.join("data.js");
    write_atomic(&data_path, script.as_bytes(), true)?;
    let index = dir.join("index.html");
    write_atomic(&index, page::INDEX_HTML.as_bytes(), true)?;

    let order = order
        .iter()
        .map(|&i| (records[i].path.clone(), Category::from_bits(bits[i])))
        .collect();
    Ok(ReportSummary {
        dir,
        index,
        counts,
        histogram: hist,
        thumbnails_made: thumbs.made,
        thumbnails_reused: thumbs.reused,
        unreadable,
        order,
        data_bytes: script.len() as u64,
    })
}

/// Refuses a page directory that is the output root or that holds an output or copied file.
fn check_collision(
    canon_out: &Path,
    canon_dir: &Path,
    dir: &Path,
    records: &[ProvenanceRecord],
    run: Option<&RunSummary>,
) -> Result<(), ReportError> {
    let Ok(rel) = canon_dir.strip_prefix(canon_out) else {
        return Ok(());
    };
    let rel: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if rel.is_empty() {
        return Err(ReportError::Collision {
            dir: dir.to_path_buf(),
            path: "the output root itself".into(),
        });
    }
    let prefix = rel.join("/");
    let inside = |p: &str| p == prefix || p.starts_with(&format!("{prefix}/"));
    let copied = run.map(|s| s.copied_files.as_slice()).unwrap_or_default();
    for p in records
        .iter()
        .map(|r| r.path.as_str())
        .chain(copied.iter().map(String::as_str))
    {
        if inside(p) {
            return Err(ReportError::Collision {
                dir: dir.to_path_buf(),
                path: p.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_paths_that_could_leave_the_tree_are_unsafe() {
        for p in ["a.jpg", "d/e f.png", "<script>alert(1)</script>.jpg"] {
            assert!(safe_rel_path(p), "{p}");
        }
        for p in [
            "",
            "/etc/passwd",
            "../x.jpg",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
            "a\0",
        ] {
            assert!(!safe_rel_path(p), "{p}");
        }
    }

    #[test]
    fn category_bits_follow_the_review_order() {
        assert_eq!(Category::Failed.bit(), 1);
        assert_eq!(Category::PersonsWithoutFace.bit(), 16);
        assert_eq!(
            Category::from_bits(16 | 4 | 1),
            [
                Category::Failed,
                Category::Leak,
                Category::PersonsWithoutFace
            ]
        );
    }
}
