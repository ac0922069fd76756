//! A whole `veil redact` run: walk, set up detectors (one single-threaded ONNX Runtime session
//! per worker on CPU, [`CUDA_SESSIONS`] on a GPU), process images through the staged pipeline
//! of [`crate::stages`], record, summarise.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;
use veil_core::{Detection, ImageStatus, ObjectClass, ProgressEvent, ProgressSink, TOOL_VERSION};
use veil_detect::nanodet::NanoDet;
use veil_detect::yolox::{PersonPolicy, Yolox};
use veil_detect::PersonDetector;
use veil_detect::{provision, runtime, CenterFace, DetectPolicy, DeviceRequest, Family, Manifest};
use veil_ledger::{ModelRef, ProvenanceRecord, RunSummary, PROVENANCE_FILE, RUN_SUMMARY_FILE};

use crate::container;
use crate::fusion;
use crate::policy::Policy;
use crate::process::{Detector, ImageSettings};
use crate::walk::{check_dirs, rel_string, walk};
use crate::PipelineError;

/// `--face-model auto`: the INT8 CenterFace for the recall-first policy (with its fine pass) on
/// the CPU, where it is about 1.6x faster per pass with the same recall (benches/README.md);
/// otherwise the float one. A single native pass at a low threshold loses hard faces in INT8,
/// and a GPU gains nothing from it (ONNX Runtime's CUDA provider has no INT8 convolutions).
pub const AUTO_FACE_MODEL: &str = "auto";

/// The face model `auto` stands for with this device, runtime and policy.
pub fn resolve_face_model(
    name: &str,
    device: DeviceRequest,
    cuda_available: bool,
    fine_pass: bool,
) -> &str {
    let on_cpu = device == DeviceRequest::Cpu || !cuda_available;
    match name {
        AUTO_FACE_MODEL if on_cpu && fine_pass => "centerface-int8",
        AUTO_FACE_MODEL => "centerface",
        other => other,
    }
}

/// The face model the records say ran (the first record that names one).
fn recorded_face_model(records: &[ProvenanceRecord]) -> Option<String> {
    records
        .iter()
        .flat_map(|r| &r.models)
        .find(|m| m.family == veil_detect::Family::Centerface.as_str())
        .map(|m| m.name.clone())
}

/// Which detectors run, and how.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    pub faces: bool,
    pub persons: bool,
    /// A face model's name, or [`AUTO_FACE_MODEL`].
    pub face_model: String,
    pub person_model: String,
    /// Face scales and tiling (its threshold is taken from the policy).
    pub face_scales: DetectPolicy,
    /// Person tiling (its threshold is taken from the policy).
    pub person_tiles: bool,
    pub policy: Policy,
    pub device: DeviceRequest,
    /// Most same-size face passes of one image run as one batch (an execution setting like the
    /// device: it is not part of the recorded parameters, since detections do not depend on it).
    pub batch: usize,
}

/// Everything `veil redact` is asked to do.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub input: PathBuf,
    pub output: PathBuf,
    pub detectors: DetectorConfig,
    /// blake3 of the policy file, when one was given.
    pub policy_blake3: Option<String>,
    pub jobs: usize,
    pub max_pixels: u64,
    pub jpeg_quality: u8,
    /// Copy files that are not images (annotations, licences) unchanged.
    pub copy_other: bool,
    /// Process only this slice of the images (records go to a per-shard file; see `veil merge`).
    pub shard: Option<crate::shard::Shard>,
    /// Ignore the records already in the output and process every image again.
    pub fresh: bool,
    /// Write JPEGs in which nothing was detected losslessly without their metadata
    /// ([`crate::strip`]) instead of re-encoding them. Off by default: the strip copies compressed
    /// data and tables as they are, where a crafted file can hide bytes no decoder shows.
    pub lossless_strip: bool,
    /// Replay the detections recorded in this `provenance.jsonl` instead of running the
    /// detectors ([`crate::replay`]).
    pub replay: Option<PathBuf>,
    /// The column of Parquet tables that holds the images (default: the first struct column
    /// with a binary `bytes` field, the Hugging Face `Image` feature).
    pub image_column: Option<String>,
}

/// Result of a run that got as far as processing (individual images may still have failed).
/// Only the failed records are kept in memory; all of them are in the records file.
#[derive(Debug)]
pub struct RunReport {
    pub summary: RunSummary,
    pub failed: Vec<ProvenanceRecord>,
}

impl RunReport {
    pub fn failed(&self) -> impl Iterator<Item = &ProvenanceRecord> {
        self.failed.iter()
    }
}

/// What the run keeps of each image once its record is on disk: memory stays flat however many
/// images there are.
#[derive(Debug, Default)]
struct Tally {
    images: u64,
    redacted: u64,
    no_detections: u64,
    detections: u64,
    failed: Vec<ProvenanceRecord>,
}

impl Tally {
    fn add(&mut self, r: ProvenanceRecord) {
        self.images += 1;
        self.detections += r.detections.len() as u64;
        match r.status {
            ImageStatus::Redacted => self.redacted += 1,
            ImageStatus::NoDetections => self.no_detections += 1,
            ImageStatus::Failed => self.failed.push(r),
        }
    }
}

/// The detectors of one worker (each owns its inference sessions) and how their results are fused.
pub struct Detectors {
    face: Option<(CenterFace, DetectPolicy)>,
    person: Option<(PersonDetector, PersonPolicy)>,
    head_fallback: bool,
}

impl std::fmt::Debug for Detectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detectors")
            .field("head_fallback", &self.head_fallback)
            .finish()
    }
}

impl Detector for Detectors {
    fn detect(&mut self, img: &image::RgbImage) -> Result<Vec<Detection>, String> {
        self.detect_many(&[img])
            .pop()
            .unwrap_or_else(|| Err("internal: no result for the image".into()))
    }

    /// Faces of all the images in one go (CenterFace batches same-size passes across them), then
    /// persons image by image (a YOLOX export takes one image per run), fused per image.
    fn detect_many(&mut self, imgs: &[&image::RgbImage]) -> Vec<Result<Vec<Detection>, String>> {
        let mut all: Vec<Result<Vec<Detection>, String>> = match &mut self.face {
            Some((m, p)) => m
                .detect_many(imgs, p)
                .into_iter()
                .map(|r| r.map_err(|e| format!("face detector: {e}")))
                .collect(),
            None => vec![Ok(Vec::new()); imgs.len()],
        };
        if let Some((m, p)) = &mut self.person {
            for (img, found) in imgs.iter().zip(all.iter_mut()) {
                if let Ok(dets) = found {
                    match m.detect(img, p) {
                        Ok(persons) => dets.extend(persons),
                        Err(e) => *found = Err(format!("person detector: {e}")),
                    }
                }
            }
        }
        let head_fallback = self.head_fallback && self.person.is_some();
        let person_iou = self.person.as_ref().map_or(0.45, |(_, p)| p.nms_iou as f32);
        all.into_iter()
            .map(|r| r.map(|dets| fusion::fuse(dets, 0.3, person_iou, head_fallback)))
            .collect()
    }
}

/// What the detect stage of a run runs.
enum DetectStage {
    Run(Vec<Detectors>),
    Replay(Vec<crate::replay::Replay>),
}

impl DetectStage {
    fn len(&self) -> usize {
        match self {
            DetectStage::Run(d) => d.len(),
            DetectStage::Replay(d) => d.len(),
        }
    }
}

/// Detectors ready for `n` workers, and what was loaded.
pub struct Loaded {
    pub detectors: Vec<Detectors>,
    pub device: runtime::Device,
    pub models: Vec<ModelRef>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("device", &self.device)
            .field("models", &self.models)
            .finish()
    }
}

/// Inference sessions (detect threads) of a run on a GPU: two, so that one prepares and decodes
/// its batch on the CPU while the other's runs on the device; more would only split the batches.
pub const CUDA_SESSIONS: usize = 2;

/// Sessions by input shape on a GPU ([`veil_detect::shape_sessions`]): at most this many, shared
/// by the detect threads; `VEIL_CUDA_SHAPE_SESSIONS` sets another number (0 turns them off:
/// every detect thread runs all shapes on its own session).
pub const CUDA_SHAPE_SESSIONS: usize = 8;

fn cuda_shape_sessions() -> Result<usize, PipelineError> {
    env_count("VEIL_CUDA_SHAPE_SESSIONS", 0..=256, CUDA_SHAPE_SESSIONS)
}

/// [`CUDA_SESSIONS`], or `VEIL_CUDA_SESSIONS` (1 to 64) for tuning on other GPUs.
fn cuda_sessions() -> Result<usize, PipelineError> {
    env_count("VEIL_CUDA_SESSIONS", 1..=64, CUDA_SESSIONS)
}

/// The number in the environment variable `name`, within `range`, or `default` when unset.
fn env_count(
    name: &str,
    range: std::ops::RangeInclusive<usize>,
    default: usize,
) -> Result<usize, PipelineError> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                PipelineError::Usage(format!(
                    "{name} is `{v}`; set it to a number from {} to {}, or unset it",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

/// Loads (provisioning and verifying first) the configured models, one session per worker.
pub fn load_detectors(
    cfg: &DetectorConfig,
    n: usize,
    progress: &dyn ProgressSink,
) -> Result<Loaded, PipelineError> {
    load_detectors_for(cfg, n, n, progress)
}

/// [`load_detectors`] with `cpu` sessions on the CPU and `cuda` on a GPU (the device is known
/// once the first session is made).
pub fn load_detectors_for(
    cfg: &DetectorConfig,
    cpu: usize,
    cuda: usize,
    progress: &dyn ProgressSink,
) -> Result<Loaded, PipelineError> {
    let notify = |m: &str| {
        progress.event(ProgressEvent::Provision {
            message: m.to_string(),
        })
    };
    let notice = |m: &str| {
        progress.event(ProgressEvent::Notice {
            message: m.to_string(),
        })
    };
    let manifest = Manifest::builtin()?.with_local()?;
    let (env, info) = runtime::init(&manifest, cfg.device, &notify)?;
    let mut wanted: Vec<(&str, ObjectClass)> = Vec::new();
    if cfg.faces {
        wanted.push((
            resolve_face_model(
                &cfg.face_model,
                cfg.device,
                info.cuda_available,
                cfg.face_scales.fine_scale > 0.0,
            ),
            ObjectClass::Face,
        ));
    }
    if cfg.persons {
        wanted.push((&cfg.person_model, ObjectClass::Person));
    }
    if wanted.is_empty() {
        return Err(PipelineError::Usage(
            "nothing to detect: --detect needs faces and/or persons".into(),
        ));
    }
    let mut specs = Vec::new();
    for (name, class) in wanted {
        let spec = manifest.model(name)?.clone();
        if spec.class != class {
            return Err(PipelineError::Usage(format!(
                "model `{name}` detects {}, not {class}",
                spec.class
            )));
        }
        let path = provision::ensure_model(&spec, &notify)?;
        let bytes = runtime::read_verified_model(&path, &spec.blake3)?;
        specs.push((spec, bytes));
    }
    let models = specs
        .iter()
        .map(|(s, _)| ModelRef {
            name: s.name.clone(),
            family: s.family.as_str().to_string(),
            blake3: s.blake3.clone(),
        })
        .collect();
    let mut device_used = None;
    let mut large_pass: Option<veil_detect::SharedSession> = None;
    // On a GPU: the sessions by input shape all workers share (None inside when turned off).
    let mut shape_pool: Option<Option<std::sync::Arc<veil_detect::ShapeSessions>>> = None;
    let mut n = cpu.max(1);
    let mut detectors = Vec::with_capacity(n);
    while detectors.len() < n {
        let mut d = Detectors {
            face: None,
            person: None,
            head_fallback: cfg.policy.head_fallback,
        };
        for (spec, bytes) in &specs {
            // Once the first session settled the device, the rest use it directly.
            let request = match device_used {
                Some(runtime::Device::Cpu) => DeviceRequest::Cpu,
                Some(runtime::Device::Cuda(k)) => DeviceRequest::Cuda(k),
                None => cfg.device,
            };
            let (session, device) = runtime::create_session(env, info, bytes, request, 1, &notice)?;
            if device_used.is_none() {
                n = match device {
                    runtime::Device::Cpu => cpu.max(1),
                    runtime::Device::Cuda(_) => cuda.max(1),
                };
            }
            device_used = Some(device);
            match spec.family {
                Family::Centerface => {
                    let mut scales = cfg.face_scales;
                    scales.threshold = cfg.policy.face.threshold;
                    // On the CPU, one extra session, shared by all workers and using as many
                    // threads as there are workers, for the large passes that run one at a
                    // time. On a GPU every session runs its own passes, large ones too.
                    let on_gpu = matches!(device, runtime::Device::Cuda(_));
                    if large_pass.is_none() && n > 1 && !on_gpu {
                        let (shared, _) =
                            runtime::create_session(env, info, bytes, device.into(), n, &notice)?;
                        large_pass = Some(std::sync::Arc::new(std::sync::Mutex::new(shared)));
                    }
                    let mut model =
                        CenterFace::new(session, spec.name.clone()).with_batch(cfg.batch);
                    if let Some(shared) = &large_pass {
                        model = model.with_large_pass_session(shared.clone());
                    }
                    if on_gpu {
                        model = model.ungated();
                        if shape_pool.is_none() {
                            let capacity = cuda_shape_sessions()?;
                            if capacity > 0 {
                                let bytes: std::sync::Arc<[u8]> = bytes.as_slice().into();
                                let request = DeviceRequest::from(device);
                                let factory = move || {
                                    let quiet = |_: &str| {};
                                    runtime::create_session(env, info, &bytes, request, 1, &quiet)
                                        .map(|(s, _)| s)
                                };
                                shape_pool = Some(Some(std::sync::Arc::new(
                                    veil_detect::ShapeSessions::new(Box::new(factory), capacity),
                                )));
                            } else {
                                shape_pool = Some(None);
                            }
                        }
                        if let Some(Some(pool)) = &shape_pool {
                            model = model.with_shape_sessions(pool.clone());
                        }
                    }
                    d.face = Some((model, scales));
                }
                Family::Yolox | Family::Nanodet => {
                    let policy = PersonPolicy {
                        threshold: cfg.policy.person.threshold,
                        tiles: cfg.person_tiles,
                        confirm_below: cfg.policy.person_confirm_below,
                        ..PersonPolicy::default()
                    };
                    let model = if spec.family == Family::Yolox {
                        PersonDetector::Yolox(Yolox::new(session, spec.name.clone())?)
                    } else {
                        PersonDetector::NanoDet(NanoDet::new(session, spec.name.clone())?)
                    };
                    d.person = Some((model, policy));
                }
            }
        }
        detectors.push(d);
    }
    Ok(Loaded {
        detectors,
        device: device_used.unwrap_or(runtime::Device::Cpu),
        models,
    })
}

/// Whether the file starts and ends like a Parquet table.
fn is_parquet(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let (mut head, mut tail) = ([0u8; 4], [0u8; 4]);
    f.read_exact(&mut head).is_ok()
        && f.seek(SeekFrom::End(-4)).is_ok()
        && f.read_exact(&mut tail).is_ok()
        && &head == b"PAR1"
        && &tail == b"PAR1"
}

/// Parameters recorded in every provenance record (and hashed into `params_blake3`).
fn params_json(cfg: &RunConfig) -> serde_json::Value {
    let d = &cfg.detectors;
    let mut params = serde_json::json!({
        "policy": d.policy,
        "face_scales": if d.faces { serde_json::to_value(d.face_scales).ok() } else { None },
        "person_tiles": if d.persons { Some(d.person_tiles) } else { None },
        "detect": { "faces": d.faces, "persons": d.persons },
        "max_pixels": cfg.max_pixels,
        "jpeg_quality": cfg.jpeg_quality,
        "lossless_strip": cfg.lossless_strip,
    });
    // Only when given, so that runs without tables keep the parameters they always had.
    if let (Some(c), Some(map)) = (&cfg.image_column, params.as_object_mut()) {
        map.insert("image_column".into(), c.clone().into());
    }
    params
}

pub use veil_core::now_rfc3339;

fn pool_for(jobs: usize) -> Result<rayon::ThreadPool, PipelineError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .map_err(|e| PipelineError::Usage(format!("cannot start {jobs} workers: {e}")))
}

/// Runs `veil redact`. Errors are setup or usage problems (nothing was processed); per-image
/// failures are in the report.
pub fn run(cfg: &RunConfig, progress: &dyn ProgressSink) -> Result<RunReport, PipelineError> {
    let started_at = now_rfc3339();
    check_dirs(&cfg.input, &cfg.output)?;
    let mut listing = walk(&cfg.input)?;
    if let Some(shard) = cfg.shard {
        listing.images.retain(|p| shard.contains(&rel_string(p)));
        listing.others.retain(|p| shard.contains(&rel_string(p)));
    }
    let jobs = cfg.jobs.max(1);

    // Models and runtime: verified before load; fetched on first use.
    cfg.detectors.policy.validate()?;
    let (detectors, device, models) = match &cfg.replay {
        Some(file) => {
            let replay = crate::replay::Replay::load(file)?;
            let model =
                crate::replay::Replay::model_ref(file).map_err(|e| PipelineError::io(file, e))?;
            // Two threads hand out recorded detections: far more than the other stages need.
            (
                DetectStage::Replay(vec![replay; 2]),
                "replay".to_string(),
                vec![model],
            )
        }
        None => {
            let Loaded {
                detectors,
                device,
                models,
            } = load_detectors_for(
                &cfg.detectors,
                // Other files may be archives full of images.
                jobs.min((listing.images.len() + listing.others.len()).max(1)),
                cuda_sessions()?.min(jobs),
                progress,
            )?;
            (DetectStage::Run(detectors), device.to_string(), models)
        }
    };
    let params = params_json(cfg);
    let params_blake3 = blake3::hash(
        serde_json::to_string(&params)
            .unwrap_or_default()
            .as_bytes(),
    )
    .to_hex()
    .to_string();
    let settings = ImageSettings {
        policy: cfg.detectors.policy,
        policy_blake3: cfg.policy_blake3.clone(),
        max_pixels: cfg.max_pixels,
        jpeg_quality: cfg.jpeg_quality,
        models: models.clone(),
        params,
        params_blake3: params_blake3.clone(),
        lossless_strip: cfg.lossless_strip,
    };

    fs::create_dir_all(&cfg.output).map_err(|e| PipelineError::io(&cfg.output, e))?;
    let prov_path = cfg.output.join(
        cfg.shard
            .map(|s| s.provenance_file())
            .unwrap_or(PROVENANCE_FILE.into()),
    );
    let summary_name = cfg
        .shard
        .map(|s| s.summary_file())
        .unwrap_or(RUN_SUMMARY_FILE.into());
    // A run writes its summary last, so a summary is proof that the run finished (`veil merge`
    // relies on it): the previous one goes before anything else is done.
    match fs::remove_file(cfg.output.join(&summary_name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(PipelineError::io(&cfg.output.join(&summary_name), e))
        }
        _ => {}
    }
    // Temporary files of a killed run: all of them for a whole run, only this shard's own for a
    // shard (the others may be writing into the same tree right now).
    let own: Option<Vec<PathBuf>> = cfg.shard.map(|_| {
        listing
            .images
            .iter()
            .chain(&listing.others)
            .cloned()
            .chain([PathBuf::from(&summary_name)])
            .collect()
    });
    let removed_partials = crate::resume::remove_partials(&cfg.output, own.as_deref());
    drop(own);
    // Other files: dataset archives that hold images (tar, tar.gz, tar.zst, zip) are redacted
    // member by member into the same format; other archives and tables that may hold images
    // are failed records and never copied (crate::archives); the rest are ordinary files.
    let mut plain_others = Vec::with_capacity(listing.others.len());
    let mut archives = Vec::new();
    let mut refused = Vec::new();
    for rel in std::mem::take(&mut listing.others) {
        let path = cfg.input.join(&rel);
        let why = match crate::archives::file_holds_images(&path) {
            Ok(why) => why,
            Err(e) => Some(format!("unreadable ({e}), so it may hold images")),
        };
        let Some(why) = why else {
            plain_others.push(rel);
            continue;
        };
        match crate::members::Format::sniff(&path) {
            Ok(Some(format)) => archives.push(crate::archive_job::ArchiveJob {
                rel,
                kind: crate::archive_job::JobKind::Archive(format),
            }),
            _ if is_parquet(&path) => {
                match crate::parquet_job::classify(&path, cfg.image_column.as_deref()) {
                    Ok(Some(column)) => archives.push(crate::archive_job::ArchiveJob {
                        rel,
                        kind: crate::archive_job::JobKind::Table(column),
                    }),
                    Ok(None) => plain_others.push(rel),
                    Err(e) => {
                        refused.push((rel, container_refused(&format!("Parquet table: {e}"))))
                    }
                }
            }
            // A picture veil does not redact (by content or name), or a container it cannot read.
            _ => {
                let picture = match crate::archives::file_kind(&path) {
                    Ok(None) => crate::archives::file_picture_not_redacted(&path).or_else(|| {
                        why.starts_with(crate::archives::CARRIES)
                            .then(|| why.clone())
                    }),
                    _ => None,
                };
                let why = match picture {
                    Some(p) => format!("not processed: {p}"),
                    None => container_refused(&why),
                };
                refused.push((rel, why));
            }
        }
    }
    listing.others = plain_others;
    // A file named like a member of an archive beside it (`x.tar#y.jpg` next to `x.tar`) would
    // share that member's record path, and resume, merge and releases would take one for the
    // other: the run is refused before any image is processed.
    let archive_names: std::collections::HashSet<String> =
        archives.iter().map(|a| rel_string(&a.rel)).collect();
    if let Some((file, archive)) = listing
        .images
        .iter()
        .chain(&listing.others)
        .chain(refused.iter().map(|(rel, _)| rel))
        .find_map(|rel| {
            // Only names with a `#` can collide: each prefix before a `#` is looked up once.
            let s = rel_string(rel);
            let archive = s
                .match_indices('#')
                .map(|(i, _)| &s[..i])
                .find(|prefix| archive_names.contains(*prefix))?
                .to_string();
            Some((s, archive))
        })
    {
        return Err(PipelineError::Usage(format!(
            "{file} is named like a member of the archive {archive} beside it, and records name \
             archive members `ARCHIVE#MEMBER`: rename the file (without `#`) and run again"
        )));
    }
    // Resume: records that still stand are kept (rewritten first, atomically), their images
    // skipped; the rest are appended as they finish.
    let resume = if cfg.fresh {
        crate::resume::ResumePlan::default()
    } else {
        pool_for(jobs)?.install(|| {
            let archive_paths: Vec<PathBuf> = archives.iter().map(|a| a.rel.clone()).collect();
            crate::resume::plan(
                &cfg.input,
                &cfg.output,
                &prov_path,
                &listing.images,
                &archive_paths,
                crate::resume::Expect {
                    params_blake3: &params_blake3,
                    policy_blake3: cfg.policy_blake3.as_deref(),
                    models: &models,
                },
            )
        })
    };
    let mut kept = resume.kept;
    veil_ledger::write_provenance_sorted(&prov_path, &mut kept)?;
    if !kept.is_empty()
        || !resume.redo.is_empty()
        || resume.unreadable_lines > 0
        || !removed_partials.is_empty()
    {
        let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
        for (_, why) in &resume.redo {
            *reasons.entry(why.as_str()).or_default() += 1;
        }
        let reasons: Vec<String> = reasons.iter().map(|(w, n)| format!("{n} {w}")).collect();
        progress.event(ProgressEvent::Notice {
            message: format!(
                "resuming: {} images already done and unchanged, {} redone{}{}{}",
                kept.len(),
                resume.redo.len(),
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", reasons.join(", "))
                },
                if resume.unreadable_lines > 0 {
                    format!("; {} torn record lines ignored", resume.unreadable_lines)
                } else {
                    String::new()
                },
                if removed_partials.is_empty() {
                    String::new()
                } else {
                    format!("; {} partial files removed", removed_partials.len())
                },
            ),
        });
    }
    // Kept records are counted now and dropped: only their paths are held during the run, so
    // memory does not grow with the records of a large, mostly finished dataset.
    let mut kept_tally = Tally::default();
    let done: std::collections::HashSet<String> = kept.iter().map(|r| r.path.clone()).collect();
    for r in kept {
        kept_tally.add(r);
    }
    listing
        .images
        .retain(|p| !done.contains(rel_string(p).as_str()));
    // An archive whose record stands is done as a whole (resume works archive by archive).
    archives.retain(|a| !done.contains(rel_string(&a.rel).as_str()));
    drop(done);
    // The records file, and whether a failed append may have left a torn line behind.
    let prov = Mutex::new((
        fs::OpenOptions::new()
            .append(true)
            .open(&prov_path)
            .map_err(|e| PipelineError::io(&prov_path, e))?,
        false,
    ));
    let stage_times = Mutex::new(veil_ledger::StageTimes::default());
    let shape = crate::stages::Shape::for_run(jobs, detectors.len(), cfg.detectors.batch);

    // One record per image and per archive; an archive's image members are announced as their
    // records come.
    progress.event(ProgressEvent::Started {
        total: (listing.images.len() + archives.len()) as u64,
    });
    let t0 = Instant::now();
    let tally = Mutex::new(Tally::default());
    let done = |record: ProvenanceRecord, times: veil_ledger::StageTimes| {
        stage_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&times);
        // Appended only after the output file is complete (renamed) or removed. An output
        // whose record cannot be written does not stand: it is removed and the image fails.
        let mut record = record;
        let appended = serde_json::to_string(&record)
            .map_err(std::io::Error::other)
            .and_then(|line| {
                let mut guard = prov.lock().unwrap_or_else(|e| e.into_inner());
                let (f, torn) = &mut *guard;
                // After a failed append, start on a fresh line: one torn line, not two records
                // run together.
                let lead = if *torn { "\n" } else { "" };
                *torn = true;
                writeln!(f, "{lead}{line}")?;
                *torn = false;
                f.sync_data()
            });
        if let Err(e) = appended {
            if record.status != ImageStatus::Failed {
                crate::process::remove_output(&cfg.output, Path::new(&record.path));
            }
            record.status = ImageStatus::Failed;
            record.output_blake3 = None;
            record.output_size = None;
            record.error_stage = Some(veil_core::FailureStage::Write);
            record.error = Some(format!(
                "its record could not be written to {}: {e} (its output was removed)",
                prov_path.display()
            ));
        }
        if record.is_member() {
            progress.event(ProgressEvent::Queued { count: 1 });
        }
        progress.event(ProgressEvent::ImageDone {
            path: record.path.clone(),
            status: record.status,
            detections: record.detections.len(),
            error: record.error.clone(),
        });
        tally.lock().unwrap_or_else(|e| e.into_inner()).add(record);
    };
    let (images, input, output) = (&listing.images, &cfg.input, &cfg.output);
    match detectors {
        DetectStage::Run(d) => {
            crate::stages::run_staged(images, &archives, input, output, &settings, d, shape, &done)
        }
        DetectStage::Replay(d) => {
            crate::stages::run_staged(images, &archives, input, output, &settings, d, shape, &done)
        }
    }
    for (rel, why) in refused {
        let (record, times) = crate::process::fail_closed(
            &cfg.output,
            &rel,
            &rel_string(&rel),
            &settings,
            veil_core::FailureStage::Decode,
            &why,
        );
        done(record, times);
    }
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
    let mut tally = tally.into_inner().unwrap_or_else(|e| e.into_inner());
    let processed = tally.images;
    tally.images += kept_tally.images;
    tally.redacted += kept_tally.redacted;
    tally.no_detections += kept_tally.no_detections;
    tally.detections += kept_tally.detections;
    tally.failed.append(&mut kept_tally.failed);
    // Records were appended as images finished; the final file is sorted by path (streamed
    // lines, not parsed records, are held while sorting).
    veil_ledger::sort_provenance_file(&prov_path)?;

    tally.failed.sort_by(|a, b| a.path.cmp(&b.path));
    let summary = RunSummary {
        tool_version: TOOL_VERSION.to_string(),
        started_at,
        finished_at: now_rfc3339(),
        input: cfg.input.display().to_string(),
        output: cfg.output.display().to_string(),
        device,
        workers: jobs,
        images: tally.images,
        redacted: tally.redacted,
        no_detections: tally.no_detections,
        failed: tally.failed.len() as u64,
        detections: tally.detections,
        other_files,
        copied_files,
        skipped_links: listing
            .skipped
            .iter()
            .map(|(p, why)| format!("{}: {why}", rel_string(p)))
            .collect(),
        seconds,
        images_per_second: if seconds > 0.0 {
            processed as f64 / seconds
        } else {
            0.0
        },
        models,
        params_blake3,
        stage_seconds: stage_times.into_inner().unwrap_or_else(|e| e.into_inner()),
    };
    let json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    crate::process::write_output(&cfg.output, Path::new(&summary_name), &json).map_err(
        |reason| PipelineError::Write {
            path: cfg.output.join(&summary_name),
            reason,
        },
    )?;
    Ok(RunReport {
        summary,
        failed: tally.failed,
    })
}

/// The failure of a container veil does not read (`why` says what it is).
fn container_refused(why: &str) -> String {
    format!(
        "not processed: container ({why}); veil reads images inside tar, tar.gz, tar.zst and zip \
         archives and Parquet tables only: unpack it into the input and run again"
    )
}

/// Copies non-image files unchanged, except anything whose content looks like an image (it would
/// bypass redaction) and veil's own record files. Returns (copied, not copied with reasons).
fn copy_others(input: &Path, output: &Path, others: &[PathBuf]) -> (Vec<String>, Vec<String>) {
    let mut copied = Vec::new();
    let mut listed = Vec::new();
    for rel in others {
        let s = rel_string(rel);
        if veil_ledger::is_record_file(&s) {
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
        if crate::archives::looks_like_image(&bytes) {
            listed.push(format!("{s} (not copied: content looks like an image)"));
            continue;
        }
        // Archives and tables that may hold images were failed before copying; this is the
        // last line, should one change between the two reads.
        if let Some(why) = crate::archives::holds_images(&s, &bytes) {
            listed.push(format!("{s} (not copied: {why})"));
            continue;
        }
        match crate::process::write_output(output, rel, &bytes) {
            Ok(()) => copied.push(s),
            Err(e) => listed.push(format!("{s} (not copied: {e})")),
        }
    }
    (copied, listed)
}

/// A detection inside an obfuscated region is a leak when it scores at least this fraction of the
/// score recorded for the source there, and at least [`INSIDE_MIN_SCORE`] (and the threshold).
pub const INSIDE_SCORE_RATIO: f32 = 0.8;
/// ... and at least this: on the 16 shared face photos, blurred faces are re-found inside their
/// regions at up to 0.58 (a partial face at the border more surely than its source, 0.53 vs
/// 0.44), while a face left or painted back keeps its source's score (0.8 to 0.95 there).
pub const INSIDE_MIN_SCORE: f32 = 0.7;

/// Result of a leakage re-check.
#[derive(Debug)]
pub struct CheckReport {
    pub images: u64,
    /// The models that looked at the outputs.
    pub models: Vec<String>,
    /// (path, detection, inside) for every detection at or above the threshold: outside every
    /// obfuscated region (`inside` false), or inside one that did not hide it (`inside` true).
    pub leaks: Vec<(String, Detection, bool)>,
    /// Outputs that could not be read or decoded (path, reason).
    pub unreadable: Vec<(String, String)>,
    /// Outputs whose bytes are not those recorded at redaction (path, what differs).
    pub changed: Vec<(String, String)>,
    /// Files under the output that hold images (or archives and tables of them) and that no
    /// record names (path, what they are).
    pub unrecorded: Vec<(String, String)>,
}

impl CheckReport {
    /// Whether anything at all was found (the exit code is then 1).
    pub fn found_anything(&self) -> bool {
        !(self.leaks.is_empty()
            && self.unreadable.is_empty()
            && self.changed.is_empty()
            && self.unrecorded.is_empty())
    }
}

/// Files under `output` that hold images, archives or tables of them, and that no record names
/// (path, what they are); veil's own files (records, summaries, shard files, the review page
/// and its thumbnails of recorded outputs) are known.
pub fn unrecorded_files(
    output: &Path,
    records: &[ProvenanceRecord],
) -> Result<Vec<(String, String)>, PipelineError> {
    // Only records with an output name a file: a failed record has none, so a file at its path
    // (put there by hand, or left by a later run) is not vouched for by it.
    let named: std::collections::HashSet<&str> = records
        .iter()
        .filter(|r| r.output_blake3.is_some())
        .map(|r| r.path.as_str())
        .collect();
    // The review page's thumbnails are `report/thumbs/<first 32 hex of an output's blake3>.jpg`:
    // only those of recorded outputs are known, so a photo dropped in there is still reported.
    let thumbs: std::collections::HashSet<String> = records
        .iter()
        .filter_map(|r| r.output_blake3.as_deref())
        .filter_map(|b| b.get(..32))
        .map(|h| format!("report/thumbs/{h}.jpg"))
        .collect();
    let listing = walk(output)?;
    let mut found = Vec::new();
    for rel in &listing.images {
        let s = rel_string(rel);
        if !named.contains(s.as_str()) && !thumbs.contains(&s) {
            found.push((s, "an image".to_string()));
        }
    }
    // veil's own record files are looked at too: their names are reserved, not their content
    // (JSON text never looks like an image or an archive; a photo renamed to one does).
    for rel in &listing.others {
        let s = rel_string(rel);
        if named.contains(s.as_str()) {
            continue;
        }
        let why = match crate::archives::file_holds_images(&output.join(rel)) {
            Ok(why) => why,
            Err(e) => Some(format!("unreadable ({e})")),
        };
        if let Some(why) = why {
            found.push((s, why));
        }
    }
    for (rel, why) in &listing.skipped {
        found.push((rel_string(rel), format!("not checked: {why}")));
    }
    Ok(found)
}

/// Whether `d` lies in an obfuscated region of the record: its centre inside a scaled region,
/// or at least half of its area covered by one.
fn covered(d: &Detection, regions: &[veil_core::BBox]) -> bool {
    let (cx, cy) = d.bbox.center();
    regions.iter().any(|r| {
        let ix = (d.bbox.x2.min(r.x2) - d.bbox.x1.max(r.x1)).max(0.0);
        let iy = (d.bbox.y2.min(r.y2) - d.bbox.y1.max(r.y1)).max(0.0);
        r.contains(cx, cy) || ix * iy >= 0.5 * d.bbox.area()
    })
}

/// `veil check`: runs the detectors again on every written output and reports each detection
/// scoring at least `threshold` that lies outside every obfuscated region (the record's
/// detections grown by their class's box scale). Results go into the provenance records.
pub fn check(
    output: &Path,
    detectors: &DetectorConfig,
    threshold: f64,
    jobs: usize,
    progress: &dyn ProgressSink,
) -> Result<CheckReport, PipelineError> {
    let prov_path = output.join(PROVENANCE_FILE);
    let mut records = veil_ledger::read_provenance(&prov_path)?;
    let mut cfg = detectors.clone();
    // `auto` audits with the face model that redacted (its scores are what the check's
    // inside-a-region rule compares with); `auto`'s own choice only when no record names one.
    if cfg.face_model == AUTO_FACE_MODEL {
        if let Some(name) = recorded_face_model(&records) {
            cfg.face_model = name;
        }
    }
    // Look for everything above the check threshold, without synthetic head regions.
    cfg.policy.face.threshold = cfg.policy.face.threshold.min(threshold);
    cfg.policy.person.threshold = cfg.policy.person.threshold.min(threshold);
    cfg.policy.head_fallback = false;
    let jobs = jobs.max(1);
    let Loaded {
        detectors: dets,
        models,
        ..
    } = load_detectors(&cfg, jobs, progress)?;
    let pool_of_detectors = Mutex::new(dets);
    let pool = pool_for(jobs)?;
    let todo: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].status != ImageStatus::Failed && !records[i].is_member())
        .collect();
    // Members of dataset archives are checked archive by archive, each archive read once.
    let mut by_archive: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, r) in records.iter().enumerate() {
        if let (Some(archive), false) = (&r.archive, r.status == ImageStatus::Failed) {
            by_archive.entry(archive.clone()).or_default().push(i);
        }
    }
    let members_total: usize = by_archive.values().map(Vec::len).sum();
    progress.event(ProgressEvent::Started {
        total: (todo.len() + members_total) as u64,
    });
    type Checked = (Vec<(Detection, bool)>, Option<String>);
    let judge = |rec: &ProvenanceRecord,
                 found: Result<(Vec<Detection>, Option<String>), String>| {
        let found = found.map(|(dets, changed)| {
            let record_policy: Policy = rec
                .params
                .get("policy")
                .and_then(|p| serde_json::from_value(p.clone()).ok())
                .unwrap_or(detectors.policy);
            let regions: Vec<veil_core::BBox> = rec
                .detections
                .iter()
                .map(|r| {
                    r.bbox
                        .scaled(record_policy.class(r.class).redact.box_scale as f32)
                })
                .collect();
            // Outside every region, a detection at the threshold is a leak. Inside one, it
            // is when the detector is about as sure as it was of the source there and
            // sure in itself: a blurred face still looks like a head (CenterFace re-finds
            // about one in ten at 0.52-0.58), a face painted back keeps its score.
            let leaks = dets
                .into_iter()
                .filter(|d| f64::from(d.score) >= threshold)
                .filter_map(|d| {
                    let source = rec
                        .detections
                        .iter()
                        .zip(&regions)
                        .filter(|(r, region)| {
                            r.class == d.class && covered(&d, std::slice::from_ref(*region))
                        })
                        .map(|(r, _)| r.score)
                        .fold(None::<f32>, |m, s| Some(m.map_or(s, |m| m.max(s))));
                    match source {
                        None if covered(&d, &regions) => None,
                        None => Some((d, false)),
                        Some(s)
                            if d.score >= INSIDE_SCORE_RATIO * s && d.score >= INSIDE_MIN_SCORE =>
                        {
                            Some((d, true))
                        }
                        Some(_) => None,
                    }
                })
                .collect::<Vec<_>>();
            (leaks, changed)
        });
        progress.event(ProgressEvent::ImageDone {
            path: rec.path.clone(),
            status: rec.status,
            detections: found.as_ref().map(|l| l.0.len()).unwrap_or(0),
            error: found.as_ref().err().cloned(),
        });
        found
    };
    let take = || {
        pool_of_detectors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
    };
    let give_back = |d: Option<Detectors>| {
        if let Some(d) = d {
            pool_of_detectors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(d);
        }
    };
    let mut results: Vec<(usize, Result<Checked, String>)> = pool.install(|| {
        todo.par_iter()
            .with_max_len(1)
            .map(|&i| {
                let rec = &records[i];
                let mut det = take();
                let found = match det.as_mut() {
                    None => Err("internal: no free detector".to_string()),
                    Some(d) => check_one(output, rec, d),
                };
                give_back(det);
                (i, judge(rec, found))
            })
            .collect()
    });
    let member_results: Vec<Vec<(usize, Result<Checked, String>)>> = pool.install(|| {
        let by_archive: Vec<(&String, &Vec<usize>)> = by_archive.iter().collect();
        by_archive
            .par_iter()
            .with_max_len(1)
            .map(|&(archive, idx)| {
                let mut det = take();
                let found = match det.as_mut() {
                    None => idx
                        .iter()
                        .map(|&i| (i, Err("internal: no free detector".to_string())))
                        .collect(),
                    Some(d) => check_members(output, archive, idx, &records, d),
                };
                give_back(det);
                found
                    .into_iter()
                    .map(|(i, f)| (i, judge(&records[i], f)))
                    .collect()
            })
            .collect()
    });
    results.extend(member_results.into_iter().flatten());
    let mut report = CheckReport {
        images: (todo.len() + members_total) as u64,
        models: models.iter().map(|m| m.name.clone()).collect(),
        leaks: Vec::new(),
        unreadable: Vec::new(),
        changed: Vec::new(),
        unrecorded: unrecorded_files(output, &records)?,
    };
    for (i, found) in results {
        match found {
            Ok((leaks, changed)) => {
                for (l, inside) in &leaks {
                    report
                        .leaks
                        .push((records[i].path.clone(), l.clone(), *inside));
                }
                if let Some(why) = &changed {
                    report.changed.push((records[i].path.clone(), why.clone()));
                }
                records[i].check = Some(veil_ledger::LeakCheck {
                    threshold,
                    models: models.clone(),
                    leaks: leaks.iter().map(|(l, _)| l.clone()).collect(),
                    inside: leaks
                        .iter()
                        .filter(|(_, i)| *i)
                        .map(|(l, _)| l.clone())
                        .collect(),
                    changed,
                });
            }
            Err(e) => report.unreadable.push((records[i].path.clone(), e)),
        }
    }
    report.leaks.sort_by(|a, b| a.0.cmp(&b.0));
    report.changed.sort();
    veil_ledger::write_provenance_sorted(&prov_path, &mut records)?;
    Ok(report)
}

/// The detections in one output, and what differs from its record (`changed since redaction`)
/// when its bytes are not the recorded ones.
fn check_one(
    output: &Path,
    rec: &ProvenanceRecord,
    d: &mut Detectors,
) -> Result<(Vec<Detection>, Option<String>), String> {
    // The record's path is data: it must stay inside the output tree, and is read only through
    // real directories and as a regular file (no link is followed).
    if !veil_ledger::safe_rel_path(&rec.path) {
        return Err(
            "unsafe path in the record (absolute, '..', '.' or empty component): not read".into(),
        );
    }
    let rel = Path::new(&rec.path);
    let path =
        crate::process::output_dir(output, rel, false)?.join(rel.file_name().unwrap_or_default());
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(format!(
                "{}: not a regular file (links are not followed)",
                path.display()
            ))
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    if is_archive_record(rec) {
        // The archive as a file: its bytes against its record (its images are checked as
        // members, each against its own record).
        let mut h = blake3::Hasher::new();
        h.update_reader(fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let blake3 = h.finalize().to_hex().to_string();
        let size = fs::metadata(&path).map(|m| m.len()).ok();
        return Ok((Vec::new(), changed_since(rec, &blake3, size)));
    }
    let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_bytes(&bytes, rec, d)
}

/// Whether a record is that of a dataset archive itself (`format` tar, tar.gz, tar.zst, zip).
fn is_archive_record(rec: &ProvenanceRecord) -> bool {
    !rec.is_member()
        && matches!(
            rec.format.as_deref(),
            Some("tar" | "tar.gz" | "tar.zst" | "zip" | "parquet")
        )
}

fn changed_since(rec: &ProvenanceRecord, blake3: &str, size: Option<u64>) -> Option<String> {
    (rec.output_blake3.as_deref() != Some(blake3)).then(|| {
        format!(
            "changed since redaction: blake3 {blake3} ({} bytes), recorded {} ({} bytes)",
            size.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
            rec.output_blake3.as_deref().unwrap_or("none"),
            rec.output_size
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".into())
        )
    })
}

/// What checking one output found: the detections in it, and how it changed since redaction.
type Found = (Vec<Detection>, Option<String>);

/// The members of one output archive with records (`idx` into `records`), each checked like a
/// file: its bytes against its record, and the detector run on it. The archive is read once.
fn check_members(
    output: &Path,
    archive: &str,
    idx: &[usize],
    records: &[ProvenanceRecord],
    d: &mut Detectors,
) -> Vec<(usize, Result<Found, String>)> {
    let prefix = format!("{archive}#");
    let mut wanted: std::collections::HashMap<&str, usize> = idx
        .iter()
        .filter_map(|&i| records[i].path.strip_prefix(&prefix).map(|m| (m, i)))
        .collect();
    let mut out = Vec::new();
    let path = if veil_ledger::safe_rel_path(archive) {
        crate::process::output_dir(output, Path::new(archive), false)
            .map(|dir| dir.join(Path::new(archive).file_name().unwrap_or_default()))
    } else {
        Err("unsafe archive path in the record: not read".into())
    };
    let table = records
        .iter()
        .find(|r| r.path == archive)
        .is_some_and(|r| r.format.as_deref() == Some("parquet"));
    if table {
        // Rows whose image failed were dropped from the output table: its rows are the input's
        // rows without those, in order.
        let dropped: std::collections::HashSet<usize> = records
            .iter()
            .filter(|r| r.archive.as_deref() == Some(archive) && r.status == ImageStatus::Failed)
            .filter_map(|r| {
                r.path
                    .strip_prefix(&prefix)?
                    .strip_prefix("row=")?
                    .parse()
                    .ok()
            })
            .collect();
        let mut input_row = 0usize;
        let read = path.and_then(|path| {
            let column = records
                .iter()
                .find(|r| r.path == archive)
                .and_then(|r| r.params.get("image_column"))
                .and_then(|c| c.as_str())
                .map(str::to_string);
            crate::parquet_job::read_images(&path, column.as_deref(), &mut |_, image| {
                while dropped.contains(&input_row) {
                    input_row += 1;
                }
                let name = format!("row={input_row}");
                input_row += 1;
                if let (Some(bytes), Some(i)) = (image, wanted.remove(name.as_str())) {
                    out.push((i, check_bytes(&bytes, &records[i], d)));
                }
            })
            .map_err(|e| format!("{}: {e}", path.display()))
        });
        if let Err(e) = read {
            return idx.iter().map(|&i| (i, Err(e.clone()))).collect();
        }
        out.extend(
            wanted
                .into_values()
                .map(|i| (i, Err(format!("not in the output table {archive}")))),
        );
        return out;
    }
    let read = path.and_then(|path| {
        let format = crate::members::Format::sniff(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .ok_or_else(|| format!("{}: no longer a tar or zip archive", path.display()))?;
        crate::members::read_members(&path, format, crate::members::Caps::default(), &mut |m| {
            if let Some(i) = wanted.remove(m.name.as_str()) {
                out.push((i, check_bytes(&m.data, &records[i], d)));
            }
            Ok(())
        })
        .map_err(|e| format!("{}: {e}", path.display()))
    });
    if let Err(e) = read {
        return idx.iter().map(|&i| (i, Err(e.clone()))).collect();
    }
    out.extend(
        wanted
            .into_values()
            .map(|i| (i, Err(format!("not in the output archive {archive}")))),
    );
    out
}

/// An output's bytes against its record, and the detections in them.
fn check_bytes(
    bytes: &[u8],
    rec: &ProvenanceRecord,
    d: &mut Detectors,
) -> Result<(Vec<Detection>, Option<String>), String> {
    let blake3 = blake3::hash(bytes).to_hex().to_string();
    let changed = if rec.output_blake3.as_deref() != Some(blake3.as_str()) {
        Some(format!(
            "changed since redaction: blake3 {blake3} ({} bytes), recorded {} ({} bytes)",
            bytes.len(),
            rec.output_blake3.as_deref().unwrap_or("none"),
            rec.output_size
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".into())
        ))
    } else {
        None
    };
    let format = match container::scan(bytes).format {
        container::ContainerFormat::Jpeg => image::ImageFormat::Jpeg,
        container::ContainerFormat::Png => image::ImageFormat::Png,
        container::ContainerFormat::Webp => image::ImageFormat::WebP,
        _ => return Err("output is not a JPEG, PNG or WebP file".into()),
    };
    let decoded = crate::decode::decode(bytes, format, crate::DEFAULT_MAX_PIXELS)?;
    Ok((d.detect(&decoded.image.to_rgb())?, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_the_int8_model_for_the_fine_pass_on_the_cpu_and_the_float_one_otherwise() {
        let r = resolve_face_model;
        assert_eq!(r("auto", DeviceRequest::Cpu, true, true), "centerface-int8");
        assert_eq!(
            r("auto", DeviceRequest::Auto, false, true),
            "centerface-int8"
        );
        assert_eq!(r("auto", DeviceRequest::Auto, true, true), "centerface");
        assert_eq!(r("auto", DeviceRequest::Cuda(0), true, true), "centerface");
        assert_eq!(r("auto", DeviceRequest::Cpu, false, false), "centerface");
        assert_eq!(
            r("centerface", DeviceRequest::Cpu, false, true),
            "centerface"
        );
        assert_eq!(
            r("centerface-int8", DeviceRequest::Cuda(0), true, false),
            "centerface-int8"
        );
    }
}
