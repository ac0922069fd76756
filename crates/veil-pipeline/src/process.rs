//! One image from bytes to a verified output file and its provenance record. Fail closed: any
//! error returns a failed record and leaves no output file behind.

use std::ffi::OsString;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use image::{ImageFormat, RgbImage};
use veil_core::{BBox, Detection, FailureStage, ImageStatus, ObjectClass, TOOL_VERSION};
use veil_ledger::{ModelRef, PerceptualHashes, ProvenanceRecord, StageTimes, PROVENANCE_SCHEMA};

use crate::container::{self, ContainerFormat, MetadataKind};
use crate::decode::{self, Decoded, Working};
use crate::encode;
use crate::policy::Policy;
use crate::stages::Permit;

/// Anything that turns an upright RGB image into detections.
pub trait Detector: Send {
    fn detect(&mut self, img: &RgbImage) -> Result<Vec<Detection>, String>;

    /// Detections of several images at once, one result per image in order. A detector that
    /// batches inference across images overrides this; detections must not depend on which
    /// images share a call (the default runs them one by one).
    fn detect_many(&mut self, imgs: &[&RgbImage]) -> Vec<Result<Vec<Detection>, String>> {
        imgs.iter().map(|img| self.detect(img)).collect()
    }

    /// [`Detector::detect_many`] with the source of each image, which is what the pipeline calls.
    /// Only a detector whose answer depends on the source rather than the pixels (replaying
    /// recorded detections, [`crate::replay`]) overrides it.
    fn detect_sources(
        &mut self,
        sources: &[Source<'_>],
        imgs: &[&RgbImage],
    ) -> Vec<Result<Vec<Detection>, String>> {
        let _ = sources;
        self.detect_many(imgs)
    }
}

/// Where an image being detected came from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Its path relative to the input root, `/`-separated (as in its record).
    pub path: &'a str,
    /// blake3 of its bytes.
    pub blake3: Option<&'a str>,
}

/// Settings shared by every image of a run.
#[derive(Debug, Clone)]
pub struct ImageSettings {
    pub policy: Policy,
    /// blake3 of the policy file, when one was given.
    pub policy_blake3: Option<String>,
    pub max_pixels: u64,
    pub jpeg_quality: u8,
    pub models: Vec<ModelRef>,
    pub params: serde_json::Value,
    pub params_blake3: String,
    /// JPEGs in which nothing was detected are written by dropping their metadata segments
    /// (pixels bit-exact, see [`crate::strip`]) instead of being re-encoded.
    pub lossless_strip: bool,
}

struct Failure {
    stage: FailureStage,
    reason: String,
}

fn fail(stage: FailureStage) -> impl FnOnce(String) -> Failure {
    move |reason| Failure { stage, reason }
}

/// Facts gathered along the way, kept even when a later step fails.
#[derive(Default)]
struct Partial {
    source_blake3: Option<String>,
    source_size: Option<u64>,
    format: Option<String>,
    dimensions: Option<[u32; 2]>,
    orientation: Option<u8>,
    detections: Vec<Detection>,
    metadata_removed: Vec<String>,
    metadata_kept: Vec<String>,
    source_phash: Option<PerceptualHashes>,
    output_phash: Option<PerceptualHashes>,
    times: StageTimes,
}

/// Seconds since `t`, and `t` moved to now.
fn lap(t: &mut Instant) -> f64 {
    let now = Instant::now();
    let d = now.duration_since(*t).as_secs_f64();
    *t = now;
    d
}

/// PDQ (full size, as Meta's reference library computes it) and dHash of upright pixels.
pub fn perceptual_hashes(img: &RgbImage) -> PerceptualHashes {
    let pdq = veil_phash::pdq(img);
    PerceptualHashes {
        pdq: pdq.to_hex(),
        pdq_quality: pdq.quality,
        dhash: veil_phash::dhash_hex(veil_phash::dhash(img)),
    }
}

/// Hashes of a photo given as evidence (a takedown request): blake3 of the file and the
/// perceptual hashes of its upright pixels. The photo is decoded like any input (pixel cap,
/// contained panics, EXIF orientation) and then dropped; nothing of it is kept.
pub fn photo_hashes(path: &Path, max_pixels: u64) -> Result<(String, PerceptualHashes), String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let format = match container::scan(&bytes).format {
        ContainerFormat::Jpeg => ImageFormat::Jpeg,
        ContainerFormat::Png => ImageFormat::Png,
        ContainerFormat::Webp => ImageFormat::WebP,
        _ => return Err("not a JPEG, PNG or WebP image".into()),
    };
    let decoded = decode::decode(&bytes, format, max_pixels)?;
    Ok((
        blake3::hash(&bytes).to_hex().to_string(),
        perceptual_hashes(&decoded.image.to_rgb()),
    ))
}

/// The JPEG with its metadata segments dropped, when that output is complete, carries no
/// metadata but an ICC profile that is already clean ([`crate::icc::sanitize`] keeps it as it is),
/// and decodes to exactly `pixels`; otherwise `None` (re-encode).
fn lossless_copy(bytes: &[u8], pixels: &RgbImage, max_pixels: u64) -> Option<Vec<u8>> {
    let out = crate::strip::strip_jpeg(bytes)?;
    let info = container::scan(&out);
    let has_icc = info.metadata.contains(&MetadataKind::Icc);
    let clean =
        info.complete && !info.animated && info.metadata.iter().all(|k| *k == MetadataKind::Icc);
    let same = clean
        && decode::decode(&out, ImageFormat::Jpeg, max_pixels).is_ok_and(|d| {
            d.orientation == 1
                && !d.icc_changed
                // ICC segments the decoder did not read as a profile are not copied either.
                && d.icc_profile.is_some() == has_icc
                && d.image.to_rgb() == *pixels
        });
    same.then_some(out)
}

/// Processes `input_root/rel` into `output_root/rel`.
pub fn process_image(
    input_root: &Path,
    output_root: &Path,
    rel: &Path,
    rel_str: &str,
    settings: &ImageSettings,
    detector: &mut dyn Detector,
) -> ProvenanceRecord {
    process_image_timed(input_root, output_root, rel, rel_str, settings, detector).0
}

/// [`process_image`], also returning the time spent in each step: [`prepare`], the detector,
/// then [`finish`], as the staged pipeline of a run does them on different threads.
pub fn process_image_timed(
    input_root: &Path,
    output_root: &Path,
    rel: &Path,
    rel_str: &str,
    settings: &ImageSettings,
    detector: &mut dyn Detector,
) -> (ProvenanceRecord, StageTimes) {
    match prepare(input_root, output_root, rel, rel_str, settings, None) {
        Err(done) => *done,
        Ok(item) => {
            let t = Instant::now();
            let found = detector.detect(item.rgb());
            let seconds = t.elapsed().as_secs_f64();
            finish(output_root, item, found, seconds, settings)
        }
    }
}

/// An image read, checked, decoded (upright) and hashed, waiting for its detections. It holds
/// the source bytes and one copy of the pixels (two for a source with alpha: the RGBA pixels
/// and the RGB view the detectors see).
pub struct Prepared {
    rel: PathBuf,
    rel_str: String,
    bytes: Vec<u8>,
    format: ImageFormat,
    decoded: Decoded,
    /// The RGB view of an RGBA source (an RGB source is its own view).
    rgb_of_rgba: Option<RgbImage>,
    /// What the detectors see of a source with transparency ([`crate::alpha_view`]).
    alpha_view: Option<RgbImage>,
    p: Partial,
    /// The image's place in the run's in-flight budget, given back when it is dropped.
    permit: Option<Permit>,
    /// For a member of a dataset archive: where its result goes (its archive's writer) instead
    /// of a file of its own.
    member: Option<MemberTx>,
}

/// The result of an image member of a dataset archive: its record, and its redacted bytes
/// unless it failed (then it is left out of the output archive).
#[derive(Debug)]
pub struct MemberResult {
    pub record: ProvenanceRecord,
    pub times: StageTimes,
    pub output: Option<Vec<u8>>,
}

/// Where a member's [`MemberResult`] is sent.
pub type MemberTx = std::sync::mpsc::Sender<MemberResult>;

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("rel", &self.rel_str)
            .field("dimensions", &self.p.dimensions)
            .finish()
    }
}

/// The panels the detectors see of a source with transparency, `None` for an opaque one.
fn alpha_view_of(decoded: &Decoded) -> Option<RgbImage> {
    match &decoded.image {
        Working::Rgba(i) => crate::alpha_view::panels(i),
        Working::Rgb(_) => None,
    }
}

impl Prepared {
    /// The upright RGB pixels the detectors run on (for a source with transparency, the panels
    /// of [`crate::alpha_view`]; [`finish`] maps their detections back).
    pub fn rgb(&self) -> &RgbImage {
        if let Some(view) = &self.alpha_view {
            return view;
        }
        match (&self.decoded.image, &self.rgb_of_rgba) {
            (Working::Rgb(i), _) => i,
            (Working::Rgba(_), Some(rgb)) => rgb,
            // `prepare` always makes the view of an RGBA source.
            (Working::Rgba(_), None) => unreachable!("RGBA source without its RGB view"),
        }
    }

    /// Pixels of the image (what it costs to hold, in units of a pixel's few bytes).
    pub fn pixels(&self) -> u64 {
        let (w, h) = self.decoded.image.dimensions();
        w as u64 * h as u64
    }

    /// Its path and source hash, as its record will name them.
    pub fn source(&self) -> Source<'_> {
        Source {
            path: &self.rel_str,
            blake3: self.p.source_blake3.as_deref(),
        }
    }

    /// The image's path relative to the input root.
    pub fn rel(&self) -> &Path {
        &self.rel
    }

    /// Where the result of an archive member goes (`None` for a file of its own).
    pub fn member_tx(&self) -> Option<MemberTx> {
        self.member.clone()
    }

    /// Concludes the image as failed outside the normal steps: a file through
    /// [`fail_closed`] (returned, for the caller to record), a member by sending its failed
    /// result to its archive (`None` returned).
    pub fn fail(
        self,
        output_root: &Path,
        settings: &ImageSettings,
        stage: FailureStage,
        reason: &str,
    ) -> Option<(ProvenanceRecord, StageTimes)> {
        let Prepared {
            rel,
            rel_str,
            member,
            ..
        } = self;
        match member {
            Some(tx) => {
                let _ = tx.send(member_failed(&rel_str, settings, stage, reason));
                None
            }
            None => Some(fail_closed(
                output_root,
                &rel,
                &rel_str,
                settings,
                stage,
                reason,
            )),
        }
    }
}

/// The record of a dataset archive itself ([`crate::archive_job`]): its source, and its output
/// (status `redacted`) or why it failed as a whole.
pub fn archive_record(
    rel_str: &str,
    settings: &ImageSettings,
    format: &str,
    source: Option<(String, u64)>,
    result: Result<(String, u64), (FailureStage, String)>,
) -> ProvenanceRecord {
    let mut p = Partial::default();
    if let Some((blake3, size)) = source {
        p.source_blake3 = Some(blake3);
        p.source_size = Some(size);
    }
    p.format = Some(format.to_string());
    let ok = result.is_ok();
    let mut r = record(
        rel_str,
        settings,
        p,
        result.map_err(|(stage, reason)| Failure { stage, reason }),
    );
    if ok {
        r.status = ImageStatus::Redacted;
    }
    r
}

/// The failed result of an archive member (no output: it is left out of its archive).
pub fn member_failed(
    rel_str: &str,
    settings: &ImageSettings,
    stage: FailureStage,
    reason: &str,
) -> MemberResult {
    let failure = Failure {
        stage,
        reason: reason.to_string(),
    };
    MemberResult {
        record: record(rel_str, settings, Partial::default(), Err(failure)),
        times: StageTimes::default(),
        output: None,
    }
}

/// Removes whatever exists under the output name of `rel`, so the output tree never holds a file
/// this run did not verify and record. Only through real directories: with a link on the way the
/// file is not in the output tree, and is left alone. A link at the output name itself is removed
/// (that never touches its target).
pub fn remove_output(output_root: &Path, rel: &Path) {
    if let (Ok(dir), Some(name)) = (output_dir(output_root, rel, false), rel.file_name()) {
        let _ = fs::remove_file(dir.join(name));
    }
}

/// Concludes an image: on failure, whatever may exist under the output name from an earlier run
/// is removed ([`remove_output`]).
fn conclude(
    output_root: &Path,
    rel: &Path,
    rel_str: &str,
    settings: &ImageSettings,
    p: Partial,
    result: Result<(String, u64), Failure>,
) -> (ProvenanceRecord, StageTimes) {
    if result.is_err() {
        remove_output(output_root, rel);
    }
    let times = p.times;
    (record(rel_str, settings, p, result), times)
}

/// Admits an image of so many pixels into a run's in-flight budget (waiting for room).
pub type Admit<'a> = &'a dyn Fn(u64) -> Permit;

/// The first step of an image: read, hash, scan the container, decode with the pixel cap and
/// orientation applied, and the source's perceptual hashes. With `admit`, the image waits for
/// room in the budget once its header is read, before its pixels are decoded. An image that
/// fails here is concluded at once (its record, with no output left behind).
pub fn prepare(
    input_root: &Path,
    output_root: &Path,
    rel: &Path,
    rel_str: &str,
    settings: &ImageSettings,
    admit: Option<Admit<'_>>,
) -> Result<Prepared, Box<(ProvenanceRecord, StageTimes)>> {
    let mut p = Partial::default();
    let mut permit = None;
    // Records, releases and takedowns name an image by its UTF-8 path; a name that is not UTF-8
    // would be recorded under another name than its file's, so it fails (closed) instead.
    let steps = if rel.to_str().is_none() {
        Err(fail(FailureStage::Read)(
            "the file name is not valid UTF-8 (records name images by UTF-8 paths): rename it"
                .into(),
        ))
    } else {
        prepare_steps(&input_root.join(rel), settings, admit, &mut permit, &mut p)
    };
    match steps {
        Ok((bytes, format, decoded, rgb_of_rgba)) => Ok(Prepared {
            alpha_view: alpha_view_of(&decoded),
            permit,
            rel: rel.to_path_buf(),
            rel_str: rel_str.to_string(),
            bytes,
            format,
            decoded,
            rgb_of_rgba,
            p,
            member: None,
        }),
        Err(f) => Err(Box::new(conclude(
            output_root,
            rel,
            rel_str,
            settings,
            p,
            Err(f),
        ))),
    }
}

/// [`prepare`] for an image member of a dataset archive, from its bytes: its result will go to
/// `tx`. A member that fails here is concluded at once (its failed result is returned).
pub fn prepare_member(
    bytes: Vec<u8>,
    rel_str: &str,
    settings: &ImageSettings,
    admit: Option<Admit<'_>>,
    tx: MemberTx,
) -> Result<Prepared, Box<MemberResult>> {
    let mut p = Partial::default();
    let mut permit = None;
    match prepare_bytes_steps(bytes, settings, admit, &mut permit, &mut p) {
        Ok((bytes, format, decoded, rgb_of_rgba)) => Ok(Prepared {
            alpha_view: alpha_view_of(&decoded),
            permit,
            rel: PathBuf::from(rel_str),
            rel_str: rel_str.to_string(),
            bytes,
            format,
            decoded,
            rgb_of_rgba,
            p,
            member: Some(tx),
        }),
        Err(f) => {
            let times = p.times;
            Err(Box::new(MemberResult {
                record: record(rel_str, settings, p, Err(f)),
                times,
                output: None,
            }))
        }
    }
}

/// [`finish`] for an archive member: the result, with the redacted bytes instead of a file.
pub fn finish_member(
    item: Prepared,
    detections: Result<Vec<Detection>, String>,
    detect_seconds: f64,
    settings: &ImageSettings,
) -> MemberResult {
    let mut output = None;
    let (_, rel_str, p, result) = finish_into(
        Path::new(""),
        item,
        detections,
        detect_seconds,
        settings,
        Some(&mut output),
    );
    if result.is_err() {
        output = None;
    }
    let times = p.times;
    MemberResult {
        record: record(&rel_str, settings, p, result),
        times,
        output,
    }
}

/// The last step of an image, given what the detectors found (`detect_seconds` is its share of
/// the detection time): redact, encode, validate, hash and write the output, or fail closed.
pub fn finish(
    output_root: &Path,
    item: Prepared,
    detections: Result<Vec<Detection>, String>,
    detect_seconds: f64,
    settings: &ImageSettings,
) -> (ProvenanceRecord, StageTimes) {
    let (rel, rel_str, p, result) = finish_into(
        output_root,
        item,
        detections,
        detect_seconds,
        settings,
        None,
    );
    conclude(output_root, &rel, &rel_str, settings, p, result)
}

/// The steps of [`finish`]: the output written under `output_root`, or kept in `keep` (an
/// archive member); the image's budget is given back.
fn finish_into(
    output_root: &Path,
    item: Prepared,
    detections: Result<Vec<Detection>, String>,
    detect_seconds: f64,
    settings: &ImageSettings,
    keep: Option<&mut Option<Vec<u8>>>,
) -> (PathBuf, String, Partial, Result<(String, u64), Failure>) {
    let Prepared {
        rel,
        rel_str,
        bytes,
        format,
        decoded,
        rgb_of_rgba,
        alpha_view,
        mut p,
        permit,
        member: _,
    } = item;
    p.times.detect += detect_seconds;
    let result = match detections {
        Err(e) => Err(fail(FailureStage::Detect)(e)),
        Ok(dets) => {
            p.detections = match alpha_view {
                Some(_) => crate::alpha_view::from_panels(dets, decoded.image.dimensions().0),
                None => dets,
            };
            finish_steps(
                output_root,
                &rel,
                settings,
                bytes,
                format,
                decoded,
                rgb_of_rgba,
                &mut p,
                keep,
            )
        }
    };
    drop(permit);
    (rel, rel_str, p, result)
}

/// Concludes an image as failed outside the normal steps (a stage crashed, or could not hand it
/// on): its record, and no output left behind (an earlier run's output at its name is removed).
pub fn fail_closed(
    output_root: &Path,
    rel: &Path,
    rel_str: &str,
    settings: &ImageSettings,
    stage: FailureStage,
    reason: &str,
) -> (ProvenanceRecord, StageTimes) {
    let failure = Failure {
        stage,
        reason: reason.to_string(),
    };
    conclude(
        output_root,
        rel,
        rel_str,
        settings,
        Partial::default(),
        Err(failure),
    )
}

fn record(
    rel_str: &str,
    settings: &ImageSettings,
    p: Partial,
    result: Result<(String, u64), Failure>,
) -> ProvenanceRecord {
    let (status, output_blake3, output_size, error_stage, error) = match result {
        Ok((blake3, size)) => {
            let status = if p.detections.is_empty() {
                ImageStatus::NoDetections
            } else {
                ImageStatus::Redacted
            };
            (status, Some(blake3), Some(size), None, None)
        }
        Err(f) => (
            ImageStatus::Failed,
            None,
            None,
            Some(f.stage),
            Some(f.reason),
        ),
    };
    ProvenanceRecord {
        schema: PROVENANCE_SCHEMA,
        path: rel_str.to_string(),
        status,
        source_blake3: p.source_blake3,
        source_size: p.source_size,
        output_blake3,
        output_size,
        source_phash: p.source_phash,
        output_phash: if status == ImageStatus::Failed {
            None
        } else {
            p.output_phash
        },
        format: p.format,
        dimensions: p.dimensions,
        orientation: p.orientation,
        detections: p.detections,
        metadata_removed: p.metadata_removed,
        metadata_kept: p.metadata_kept,
        models: settings.models.clone(),
        params_blake3: settings.params_blake3.clone(),
        params: settings.params.clone(),
        policy_blake3: settings.policy_blake3.clone(),
        tool_version: TOOL_VERSION.to_string(),
        check: None,
        error_stage,
        error,
        review: None,
        archive: None,
    }
}

type PreparedParts = (Vec<u8>, ImageFormat, Decoded, Option<RgbImage>);

fn prepare_steps(
    src: &Path,
    settings: &ImageSettings,
    admit: Option<Admit<'_>>,
    permit: &mut Option<Permit>,
    p: &mut Partial,
) -> Result<PreparedParts, Failure> {
    let bytes = fs::read(src).map_err(|e| fail(FailureStage::Read)(e.to_string()))?;
    prepare_bytes_steps(bytes, settings, admit, permit, p)
}

fn prepare_bytes_steps(
    bytes: Vec<u8>,
    settings: &ImageSettings,
    admit: Option<Admit<'_>>,
    permit: &mut Option<Permit>,
    p: &mut Partial,
) -> Result<PreparedParts, Failure> {
    let mut t = Instant::now();
    p.source_blake3 = Some(blake3::hash(&bytes).to_hex().to_string());
    p.source_size = Some(bytes.len() as u64);
    if bytes.is_empty() {
        return Err(fail(FailureStage::Decode)("empty file (0 bytes)".into()));
    }
    let info = container::scan(&bytes);
    let format = match info.format {
        ContainerFormat::Jpeg => ImageFormat::Jpeg,
        ContainerFormat::Png => ImageFormat::Png,
        ContainerFormat::Webp => ImageFormat::WebP,
        ContainerFormat::Gif => {
            p.format = Some("gif".into());
            return Err(fail(FailureStage::Decode)(
                "GIF is not supported: an animated GIF would need every frame redacted; convert it to PNG first".into(),
            ));
        }
        ContainerFormat::Unknown => {
            return Err(fail(FailureStage::Decode)(
                "not a supported image: content is not JPEG, PNG or WebP".into(),
            ));
        }
    };
    p.format = Some(format.extensions_str()[0].replace("jpg", "jpeg"));
    for kind in &info.metadata {
        let list = if *kind == MetadataKind::Icc {
            &mut p.metadata_kept
        } else {
            &mut p.metadata_removed
        };
        list.push(kind.as_str().to_string());
    }
    if !info.complete {
        return Err(fail(FailureStage::Decode)(
            "truncated or malformed file: the container does not end properly".into(),
        ));
    }
    if info.animated {
        return Err(fail(FailureStage::Decode)(
            "animated image: only still images are supported (every frame would need redaction)"
                .into(),
        ));
    }
    if let Some(admit) = admit {
        // The header's size (a bad header fails in the decode just below).
        let pixels = decode::header_pixels(&bytes, format).unwrap_or(1);
        p.times.decode += lap(&mut t);
        *permit = Some(admit(pixels.min(settings.max_pixels)));
        t = Instant::now();
    }
    let decoded =
        decode::decode(&bytes, format, settings.max_pixels).map_err(fail(FailureStage::Decode))?;
    let (w, h) = decoded.image.dimensions();
    p.dimensions = Some([w, h]);
    p.orientation = Some(decoded.orientation);
    if decoded.icc_profile.is_none() {
        // A profile that could not be kept (not a profile, or no colour tags) was removed.
        let icc = MetadataKind::Icc.as_str();
        if let Some(i) = p.metadata_kept.iter().position(|k| k == icc) {
            p.metadata_kept.remove(i);
            p.metadata_removed.push(icc.to_string());
        }
    }
    p.times.decode += lap(&mut t);
    // The source's hashes first, so that PDQ's full-size planes are never alive together with
    // the RGB view made of an RGBA source.
    let rgb_of_rgba = match &decoded.image {
        Working::Rgb(i) => {
            p.source_phash = Some(perceptual_hashes(i));
            p.times.phash += lap(&mut t);
            None
        }
        Working::Rgba(_) => {
            let rgb = decoded.image.to_rgb();
            p.times.decode += lap(&mut t);
            p.source_phash = Some(perceptual_hashes(&rgb));
            p.times.phash += lap(&mut t);
            Some(rgb)
        }
    };
    Ok((bytes, format, decoded, rgb_of_rgba))
}

#[allow(clippy::too_many_arguments)]
fn finish_steps(
    output_root: &Path,
    rel: &Path,
    settings: &ImageSettings,
    bytes: Vec<u8>,
    format: ImageFormat,
    decoded: Decoded,
    rgb_of_rgba: Option<RgbImage>,
    p: &mut Partial,
    keep: Option<&mut Option<Vec<u8>>>,
) -> Result<(String, u64), Failure> {
    let mut t = Instant::now();
    // Writes the output file, or keeps the bytes for an archive member.
    let deliver = |out: Vec<u8>| -> Result<(String, u64), Failure> {
        let done = (blake3::hash(&out).to_hex().to_string(), out.len() as u64);
        match keep {
            Some(slot) => *slot = Some(out),
            None => write_output(output_root, rel, &out).map_err(fail(FailureStage::Write))?,
        }
        Ok(done)
    };
    if p.detections.is_empty()
        && settings.lossless_strip
        && format == ImageFormat::Jpeg
        && decoded.orientation == 1
        && !decoded.icc_changed
    {
        if let Working::Rgb(original) = &decoded.image {
            if let Some(out) = lossless_copy(&bytes, original, settings.max_pixels) {
                p.times.encode += lap(&mut t);
                p.output_phash = p.source_phash.clone();
                let done = deliver(out)?;
                p.times.write += lap(&mut t);
                return Ok(done);
            }
        }
    }
    drop(bytes);
    // The original pixels stay untouched for validation; the redaction works on a copy (of the
    // RGB pixels, or on the RGBA pixels themselves when the RGB view is the original).
    let (mut image, original_rgb) = match (decoded.image, rgb_of_rgba) {
        (Working::Rgb(i), _) => (Working::Rgb(i.clone()), i),
        (Working::Rgba(i), Some(rgb)) => (Working::Rgba(i), rgb),
        (Working::Rgba(_), None) => {
            return Err(fail(FailureStage::Redact)(
                "internal: RGBA source without its RGB view".into(),
            ))
        }
    };
    // Faces first, then persons on top (the stronger obfuscation: a person's strength follows
    // its height), each with its class's parameters. Painting a face's blur over a filled or
    // pixelated person would blur the person's hard edges into the face's core instead.
    let groups = class_groups(&p.detections);
    for (class, regions) in &groups {
        let params = &settings.policy.class(*class).redact;
        match &mut image {
            Working::Rgb(i) => veil_redact::redact_rgb8(i, regions, params),
            Working::Rgba(i) => veil_redact::redact_rgba8(i, regions, params),
        }
        .map_err(|e| fail(FailureStage::Redact)(format!("{class} regions: {e}")))?;
    }
    p.times.redact += lap(&mut t);
    let icc = decoded.icc_profile.as_deref();
    let out = encode::encode(
        &image,
        decoded.grayscale,
        format,
        icc,
        settings.jpeg_quality,
    )
    .map_err(fail(FailureStage::Encode))?;
    drop(image);
    p.times.encode += lap(&mut t);
    let written = validate_output(&out, format, &original_rgb, &groups, settings)
        .map_err(fail(FailureStage::Verify))?;
    drop(original_rgb);
    p.times.verify += lap(&mut t);
    p.output_phash = Some(perceptual_hashes(&written));
    p.times.phash += lap(&mut t);
    let done = deliver(out)?;
    p.times.write += lap(&mut t);
    Ok(done)
}

/// Detection boxes grouped by class, in the order they are applied (faces, then persons).
pub fn class_groups(dets: &[Detection]) -> Vec<(ObjectClass, Vec<BBox>)> {
    [ObjectClass::Face, ObjectClass::Person]
        .into_iter()
        .map(|c| {
            (
                c,
                dets.iter()
                    .filter(|d| d.class == c)
                    .map(|d| d.bbox)
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// Decodes what is about to be written and checks it: same size, every region obfuscated, a
/// complete container, and no metadata but an ICC profile.
pub fn validate_output(
    out: &[u8],
    format: ImageFormat,
    original: &RgbImage,
    groups: &[(ObjectClass, Vec<BBox>)],
    settings: &ImageSettings,
) -> Result<RgbImage, String> {
    let info = container::scan(out);
    if !info.complete {
        return Err("encoded output is not a complete file".into());
    }
    if let Some(kind) = info.metadata.iter().find(|k| **k != MetadataKind::Icc) {
        return Err(format!(
            "encoded output still carries metadata ({})",
            kind.as_str()
        ));
    }
    let back = decode::decode(out, format, settings.max_pixels)
        .map_err(|e| format!("output does not decode: {e}"))?;
    if back.orientation != 1 {
        return Err("output carries an orientation".into());
    }
    let rgb = back.image.into_rgb();
    for (i, (class, regions)) in groups.iter().enumerate() {
        let params = &settings.policy.class(*class).redact;
        // Areas a later group painted over (a face inside a pixelated person) are
        // verified with that group's parameters, so they are left out here.
        let exclude: Vec<BBox> = groups[i + 1..]
            .iter()
            .flat_map(|(c, rs)| {
                let p = settings.policy.class(*c).redact;
                rs.iter().map(move |r| {
                    let s = r.scaled(p.box_scale as f32);
                    let grow = (p.feather as f32 * s.width().min(s.height())).max(1.0) + 2.0;
                    BBox::new(s.x1 - grow, s.y1 - grow, s.x2 + grow, s.y2 + grow)
                })
            })
            .collect();
        veil_redact::verify_obfuscated_except(original, &rgb, regions, params, &exclude)
            .map_err(|e| format!("{class} {e}"))?;
    }
    Ok(rgb)
}

/// The directory of `output_root/rel` (`rel` relative, plain components), with each missing
/// directory between the two created when `create` is set. Every component on the way must be a
/// real directory: a symbolic link (or a file) there is refused, never followed, so a link planted
/// in the output tree cannot make veil write or remove anything outside it. (`output_root` itself
/// is the user's choice and may be a link; it is created too when missing.)
pub fn output_dir(output_root: &Path, rel: &Path, create: bool) -> Result<PathBuf, String> {
    if create {
        fs::create_dir_all(output_root).map_err(|e| format!("{}: {e}", output_root.display()))?;
    }
    let mut dir = output_root.to_path_buf();
    for c in rel.parent().unwrap_or(Path::new("")).components() {
        let Component::Normal(name) = c else {
            return Err(format!("{}: not a plain relative path", rel.display()));
        };
        dir.push(name);
        let mut meta = fs::symlink_metadata(&dir);
        if create
            && meta
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::NotFound)
        {
            // `mkdir` never follows a link; one made in between is caught by the check below.
            match fs::create_dir(&dir) {
                Err(e) if e.kind() != ErrorKind::AlreadyExists => {
                    return Err(format!("{}: {e}", dir.display()))
                }
                _ => meta = fs::symlink_metadata(&dir),
            }
        }
        let meta = meta.map_err(|e| format!("{}: {e}", dir.display()))?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "{}: a symbolic link in the output tree (links there are not followed)",
                dir.display()
            ));
        }
        if !meta.is_dir() {
            return Err(format!("{}: not a directory", dir.display()));
        }
    }
    Ok(dir)
}

/// Writes `output_root/rel` (see [`output_dir`]: only through real directories) via a fresh
/// temporary file `.NAME.veil-partial` beside it, fsync, rename and a fsync of the directory (see
/// [`veil_ledger::fsutil::write_file_atomic`]): a crash leaves either no file or the complete one
/// under the final name, and a link at either name is replaced, never written through.
pub fn write_output(output_root: &Path, rel: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = output_dir(output_root, rel, true)?;
    let name = rel
        .file_name()
        .ok_or_else(|| format!("{}: no file name", rel.display()))?;
    let dest = dir.join(name);
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(crate::resume::PARTIAL_SUFFIX);
    veil_ledger::fsutil::write_file_atomic(&dest, &dir.join(tmp_name), |f| f.write_all(bytes))
        .map_err(|e| format!("{}: {e}", dest.display()))
}

/// Settings for unit tests: the default policy, no models, lossless strip on.
#[cfg(test)]
pub(crate) fn test_settings() -> ImageSettings {
    ImageSettings {
        policy: Policy::default(),
        policy_blake3: None,
        max_pixels: 1 << 24,
        jpeg_quality: 90,
        models: vec![],
        params: serde_json::json!({}),
        params_blake3: String::new(),
        lossless_strip: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Result<Vec<Detection>, String>);

    impl Detector for Fixed {
        fn detect(&mut self, _: &RgbImage) -> Result<Vec<Detection>, String> {
            self.0.clone()
        }
    }

    fn settings() -> ImageSettings {
        test_settings()
    }

    /// Deterministic detailed test picture (so blurring measurably removes detail).
    fn picture() -> RgbImage {
        let mut s = 12345u32;
        RgbImage::from_fn(160, 120, |_, _| {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let v = (s >> 16) as u8;
            image::Rgb([v, v / 2, 255 - v])
        })
    }

    fn face(x: f32, y: f32) -> Detection {
        Detection {
            bbox: BBox::new(x, y, x + 40.0, y + 40.0),
            score: 0.9,
            class: veil_core::ObjectClass::Face,
            model: "test".into(),
        }
    }

    fn setup(name: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let (i, o) = (t.path().join("in"), t.path().join("out"));
        fs::create_dir_all(&i).unwrap();
        picture().save(i.join(name)).unwrap();
        (t, i, o)
    }

    #[test]
    fn detected_region_is_redacted_and_recorded() {
        let (_t, i, o) = setup("a.png");
        let rec = process_image(
            &i,
            &o,
            Path::new("a.png"),
            "a.png",
            &settings(),
            &mut Fixed(Ok(vec![face(50.0, 40.0)])),
        );
        assert_eq!(rec.status, ImageStatus::Redacted, "{:?}", rec.error);
        let bytes = fs::read(o.join("a.png")).unwrap();
        assert_eq!(
            rec.output_blake3.unwrap(),
            blake3::hash(&bytes).to_hex().to_string()
        );
        assert_eq!(rec.format.as_deref(), Some("png"));
    }

    #[test]
    fn detector_failure_fails_closed_and_removes_a_stale_output() {
        let (_t, i, o) = setup("a.png");
        fs::create_dir_all(&o).unwrap();
        fs::write(o.join("a.png"), b"stale output of an earlier run").unwrap();
        let rec = process_image(
            &i,
            &o,
            Path::new("a.png"),
            "a.png",
            &settings(),
            &mut Fixed(Err("boom".into())),
        );
        assert_eq!(rec.status, ImageStatus::Failed);
        assert_eq!(rec.error_stage, Some(FailureStage::Detect));
        assert_eq!(rec.error.as_deref(), Some("boom"));
        assert!(rec.output_blake3.is_none());
        assert!(
            !o.join("a.png").exists(),
            "a failed image must leave no output"
        );
    }

    #[test]
    fn output_dirs_are_created_and_links_on_the_way_refused() {
        let t = tempfile::tempdir().unwrap();
        let (out, victims) = (t.path().join("out"), t.path().join("victims"));
        fs::create_dir_all(&out).unwrap();
        fs::create_dir_all(&victims).unwrap();
        assert_eq!(output_dir(&out, Path::new("a.png"), true).unwrap(), out);
        assert_eq!(
            output_dir(&out, Path::new("x/y/a.png"), true).unwrap(),
            out.join("x/y")
        );
        assert!(out.join("x/y").is_dir());
        std::os::unix::fs::symlink(&victims, out.join("sub")).unwrap();
        fs::write(out.join("file"), b"f").unwrap();
        for (rel, why) in [
            ("sub/a.png", "symbolic link"),
            ("sub/deeper/a.png", "symbolic link"),
            ("file/a.png", "not a directory"),
            ("../a.png", "not a plain relative path"),
        ] {
            let e = output_dir(&out, Path::new(rel), true).unwrap_err();
            assert!(e.contains(why), "{rel}: {e}");
        }
        assert!(output_dir(&out, Path::new("new/a.png"), false).is_err());
        assert!(!out.join("new").exists());
        let e = write_output(&out, Path::new("sub/a.png"), b"x").unwrap_err();
        assert!(e.contains("sub"), "{e}");
        assert_eq!(fs::read_dir(&victims).unwrap().count(), 0);
        write_output(&out, Path::new("x/y/a.png"), b"x").unwrap();
        assert_eq!(fs::read(out.join("x/y/a.png")).unwrap(), b"x");
        assert_eq!(fs::read_dir(out.join("x/y")).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_image_removes_nothing_through_a_directory_link() {
        let (t, i, o) = setup("a.png");
        fs::create_dir_all(i.join("sub")).unwrap();
        fs::rename(i.join("a.png"), i.join("sub/a.png")).unwrap();
        let victims = t.path().join("victims");
        fs::create_dir_all(&victims).unwrap();
        fs::write(victims.join("a.png"), b"victim").unwrap();
        fs::create_dir_all(&o).unwrap();
        std::os::unix::fs::symlink(&victims, o.join("sub")).unwrap();
        for det in [Err("boom".to_string()), Ok(vec![])] {
            let rec = process_image(
                &i,
                &o,
                Path::new("sub/a.png"),
                "sub/a.png",
                &settings(),
                &mut Fixed(det),
            );
            assert_eq!(rec.status, ImageStatus::Failed);
            assert_eq!(fs::read(victims.join("a.png")).unwrap(), b"victim");
            assert_eq!(fs::read_dir(&victims).unwrap().count(), 1);
        }
    }

    #[test]
    fn validation_rejects_an_output_whose_region_was_not_obfuscated() {
        let img = picture();
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(img.clone())
            .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let groups = class_groups(&[face(50.0, 40.0)]);
        let err = validate_output(&png, ImageFormat::Png, &img, &groups, &settings()).unwrap_err();
        assert!(err.contains("not obfuscated"), "{err}");
        assert!(validate_output(&png, ImageFormat::Png, &img, &[], &settings()).is_ok());
    }

    #[test]
    fn validation_rejects_metadata_in_the_encoded_output() {
        let img = RgbImage::from_pixel(16, 16, image::Rgb([1, 2, 3]));
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
        enc.add_exif_metadata(b"MM\0\x2a\0\0\0\x08\0\0\0\0\0\0")
            .unwrap();
        enc.encode(img.as_raw(), 16, 16, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let err = validate_output(&out, ImageFormat::Jpeg, &img, &[], &settings()).unwrap_err();
        assert!(err.contains("metadata"), "{err}");
    }
}
