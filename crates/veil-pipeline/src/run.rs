//! A whole `veil redact` run: walk, set up detectors (one single-threaded ONNX Runtime session
//! per worker), process images in parallel with rayon, record, summarise.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;
use veil_core::{Detection, ImageStatus, ProgressEvent, ProgressSink, RedactParams, TOOL_VERSION};
use veil_detect::{provision, runtime, CenterFace, DetectPolicy, DeviceRequest, Manifest};
use veil_ledger::{ModelRef, ProvenanceRecord, RunSummary, PROVENANCE_FILE, RUN_SUMMARY_FILE};

use crate::container;
use crate::process::{process_image, Detector, ImageSettings};
use crate::walk::{check_dirs, rel_string, walk};
use crate::PipelineError;

/// Everything `veil redact` is asked to do.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub input: PathBuf,
    pub output: PathBuf,
    pub redact: RedactParams,
    pub detect: DetectPolicy,
    pub jobs: usize,
    pub device: DeviceRequest,
    pub max_pixels: u64,
    pub jpeg_quality: u8,
    /// Copy files that are not images (annotations, licences) unchanged.
    pub copy_other: bool,
    pub face_model: String,
}

/// Result of a run that got as far as processing (individual images may still have failed).
#[derive(Debug)]
pub struct RunReport {
    pub summary: RunSummary,
    pub records: Vec<ProvenanceRecord>,
}

impl RunReport {
    pub fn failed(&self) -> impl Iterator<Item = &ProvenanceRecord> {
        self.records
            .iter()
            .filter(|r| r.status == ImageStatus::Failed)
    }
}

struct FaceDetector {
    model: CenterFace,
    policy: DetectPolicy,
}

impl Detector for FaceDetector {
    fn detect(&mut self, img: &image::RgbImage) -> Result<Vec<Detection>, String> {
        self.model
            .detect(img, &self.policy)
            .map_err(|e| e.to_string())
    }
}

/// Parameters recorded in every provenance record (and hashed into `params_blake3`).
fn params_json(cfg: &RunConfig) -> serde_json::Value {
    serde_json::json!({
        "redact": cfg.redact,
        "detect": cfg.detect,
        "max_pixels": cfg.max_pixels,
        "jpeg_quality": cfg.jpeg_quality,
        "face_model": cfg.face_model,
    })
}

fn now_rfc3339() -> String {
    // Seconds since the epoch in UTC, formatted without a date library.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Runs `veil redact`. Errors are setup or usage problems (nothing was processed); per-image
/// failures are in the report.
pub fn run(cfg: &RunConfig, progress: &dyn ProgressSink) -> Result<RunReport, PipelineError> {
    let started_at = now_rfc3339();
    check_dirs(&cfg.input, &cfg.output)?;
    let listing = walk(&cfg.input)?;
    let jobs = cfg.jobs.max(1);

    // Models and runtime: verified before load; fetched on first use.
    let notify = |m: &str| {
        progress.event(ProgressEvent::Provision {
            message: m.to_string(),
        })
    };
    let manifest = Manifest::builtin()?;
    let spec = manifest.model(&cfg.face_model)?.clone();
    let (env, info) = runtime::init(&manifest, cfg.device, &notify)?;
    let model_path = provision::ensure_model(&spec, &notify)?;
    let model_bytes = runtime::read_verified_model(&model_path, &spec.blake3)?;
    let mut detectors: Vec<FaceDetector> = Vec::with_capacity(jobs);
    let mut device_used = None;
    for _ in 0..jobs.min(listing.images.len().max(1)) {
        // Once the first session settled the device, the rest use it directly.
        let request = match device_used {
            Some(runtime::Device::Cpu) => DeviceRequest::Cpu,
            Some(runtime::Device::Cuda(n)) => DeviceRequest::Cuda(n),
            None => cfg.device,
        };
        let notice = |m: &str| {
            progress.event(ProgressEvent::Notice {
                message: m.to_string(),
            })
        };
        let (session, device) =
            runtime::create_session(env, info, &model_bytes, request, 1, &notice)?;
        device_used = Some(device);
        detectors.push(FaceDetector {
            model: CenterFace::new(session, spec.name.clone()),
            policy: cfg.detect,
        });
    }
    drop(model_bytes);
    let device = device_used.unwrap_or(runtime::Device::Cpu);

    let params = params_json(cfg);
    let params_blake3 = blake3::hash(
        serde_json::to_string(&params)
            .unwrap_or_default()
            .as_bytes(),
    )
    .to_hex()
    .to_string();
    let models = vec![ModelRef {
        name: spec.name.clone(),
        family: "centerface".into(),
        blake3: spec.blake3.clone(),
    }];
    let settings = ImageSettings {
        redact: cfg.redact,
        max_pixels: cfg.max_pixels,
        jpeg_quality: cfg.jpeg_quality,
        models: models.clone(),
        params,
        params_blake3: params_blake3.clone(),
    };

    fs::create_dir_all(&cfg.output).map_err(|e| PipelineError::io(&cfg.output, e))?;
    let prov_path = cfg.output.join(PROVENANCE_FILE);
    let prov =
        Mutex::new(fs::File::create(&prov_path).map_err(|e| PipelineError::io(&prov_path, e))?);
    let pool_of_detectors = Mutex::new(detectors);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .map_err(|e| PipelineError::Usage(format!("cannot start {jobs} workers: {e}")))?;

    progress.event(ProgressEvent::Started {
        total: listing.images.len() as u64,
    });
    let t0 = Instant::now();
    let records: Vec<ProvenanceRecord> = pool.install(|| {
        listing
            .images
            .par_iter()
            .with_max_len(1)
            .map(|rel| {
                let rel_str = rel_string(rel);
                let mut det = pool_of_detectors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop();
                let record = match det.as_mut() {
                    Some(d) => process_image(&cfg.input, &cfg.output, rel, &rel_str, &settings, d),
                    None => unreachable_detector(&rel_str, &settings),
                };
                if let Some(d) = det {
                    pool_of_detectors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(d);
                }
                // Appended only after the output file is complete (renamed) or removed.
                if let Ok(line) = serde_json::to_string(&record) {
                    let mut f = prov.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = writeln!(f, "{line}").and_then(|_| f.sync_data());
                }
                progress.event(ProgressEvent::ImageDone {
                    path: rel_str,
                    status: record.status,
                    detections: record.detections.len(),
                    error: record.error.clone(),
                });
                record
            })
            .collect()
    });
    let seconds = t0.elapsed().as_secs_f64();
    drop(prov);

    let (copied_files, mut other_files) = if cfg.copy_other {
        copy_others(&cfg.input, &cfg.output, &listing.others)
    } else {
        (
            Vec::new(),
            listing.others.iter().map(|p| rel_string(p)).collect(),
        )
    };
    other_files.sort();
    let mut records = records;
    veil_ledger::write_provenance_sorted(&prov_path, &mut records)?;

    let count = |s: ImageStatus| records.iter().filter(|r| r.status == s).count() as u64;
    let images = records.len() as u64;
    let summary = RunSummary {
        tool_version: TOOL_VERSION.to_string(),
        started_at,
        finished_at: now_rfc3339(),
        input: cfg.input.display().to_string(),
        output: cfg.output.display().to_string(),
        device: device.to_string(),
        workers: jobs,
        images,
        redacted: count(ImageStatus::Redacted),
        no_detections: count(ImageStatus::NoDetections),
        failed: count(ImageStatus::Failed),
        detections: records.iter().map(|r| r.detections.len() as u64).sum(),
        other_files,
        copied_files,
        skipped_links: listing
            .skipped
            .iter()
            .map(|(p, why)| format!("{}: {why}", rel_string(p)))
            .collect(),
        seconds,
        images_per_second: if seconds > 0.0 {
            images as f64 / seconds
        } else {
            0.0
        },
        models,
        params_blake3,
    };
    let summary_path = cfg.output.join(RUN_SUMMARY_FILE);
    let json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    crate::process::write_atomic(&summary_path, &json).map_err(|reason| PipelineError::Write {
        path: summary_path,
        reason,
    })?;
    Ok(RunReport { summary, records })
}

fn unreachable_detector(rel: &str, settings: &ImageSettings) -> ProvenanceRecord {
    // The pool holds one detector per worker, so this cannot happen; fail closed if it does.
    ProvenanceRecord {
        schema: veil_ledger::PROVENANCE_SCHEMA,
        path: rel.to_string(),
        status: ImageStatus::Failed,
        source_blake3: None,
        source_size: None,
        output_blake3: None,
        output_size: None,
        format: None,
        dimensions: None,
        orientation: None,
        detections: vec![],
        metadata_removed: vec![],
        metadata_kept: vec![],
        models: settings.models.clone(),
        params_blake3: settings.params_blake3.clone(),
        params: settings.params.clone(),
        tool_version: TOOL_VERSION.to_string(),
        error_stage: Some(veil_core::FailureStage::Detect),
        error: Some("internal: no free detector".into()),
    }
}

/// Copies non-image files unchanged, except anything whose content looks like an image (it would
/// bypass redaction) and veil's own record files. Returns (copied, not copied with reasons).
fn copy_others(input: &Path, output: &Path, others: &[PathBuf]) -> (Vec<String>, Vec<String>) {
    let mut copied = Vec::new();
    let mut listed = Vec::new();
    for rel in others {
        let s = rel_string(rel);
        if s == PROVENANCE_FILE || s == RUN_SUMMARY_FILE {
            listed.push(format!(
                "{s} (not copied: name reserved for veil's records)"
            ));
            continue;
        }
        let bytes = match fs::read(input.join(rel)) {
            Ok(b) => b,
            Err(e) => {
                listed.push(format!("{s} (not copied: {e})"));
                continue;
            }
        };
        let sniffed = container::scan(&bytes).format != container::ContainerFormat::Unknown
            || image::guess_format(&bytes).is_ok();
        if sniffed {
            listed.push(format!("{s} (not copied: content looks like an image)"));
            continue;
        }
        match crate::process::write_atomic(&output.join(rel), &bytes) {
            Ok(()) => copied.push(s),
            Err(e) => listed.push(format!("{s} (not copied: {e})")),
        }
    }
    (copied, listed)
}
