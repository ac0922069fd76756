//! YOLOX (family `yolox`): Megvii's YOLOX detectors (Apache-2.0), COCO class 0 = person.
//! See `models/yolox_nano.onnx.txt` in the shared data for the model contract.
//!
//! Input (the nano model: `images`): float32 NCHW `[1,3,H,W]` with a fixed size (416x416 for
//! YOLOX-Nano), channel order **B,G,R**, values 0..255, no normalisation. The image is letterboxed:
//! scaled by `r = min(W_in/W, H_in/H)` to `floor(W*r) x floor(H*r)` with a bilinear filter and pasted
//! at the **top-left** of a canvas filled with 114 (padding is bottom/right only, so mapping back
//! is a plain division by `r`).
//!
//! Output (`output`, else the first output): `[1,N,5+C]` rows of `tx, ty, tw, th, obj, cls0..`, one
//! row per grid cell, stride 8 grid first (row-major), then stride 16, then stride 32. `obj` and
//! `cls` are already sigmoided; the box terms are raw (Megvii's `export_onnx.py` default,
//! `decode_in_inference=False`): `cx = (tx + gx) * s`, `cy = (ty + gy) * s`, `w = exp(tw) * s`,
//! `h = exp(th) * s`. Exports that decode inside the graph are supported with
//! [`Yolox::with_decoded_output`]; a mismatch between the flag and the output is reported as an
//! error instead of silently finding nothing. Person score = `obj * cls0`.
//!
//! Person policy ([`PersonPolicy`]), recall first:
//! - **whole-image pass**: the image letterboxed to the network input. Finds people whose height
//!   is more than a few percent of the image's long side.
//! - **tiles** (`tiles = true`, only when the image's long side exceeds twice the network input
//!   side): a 2x2 grid of tiles, each 60% of the image width and height, so neighbours share 20% of
//!   the image; each tile is letterboxed on its own, which makes small people in crowds about 1.7x
//!   larger for the network. A person cut by a tile border yields a partial box; it is kept
//!   (over-covering is the safe failure) and usually suppressed by the whole-image box.
//! - **closer look** (`confirm_below > 0`): a box scoring below it is kept only if the network,
//!   run again on a square crop of [`CONFIRM_CONTEXT`] times its long side around it
//!   ([`confirm_crop`]), finds a box overlapping it by [`CONFIRM_IOU`]; a box that crop cannot
//!   show at least [`CONFIRM_MIN_ZOOM`] times larger is kept unchecked. It removes textures that
//!   look like a person only at the whole-image scale (README, "Persons").
//!
//! Detections are mapped back to image pixels and clipped to their crop and the image. Each pass
//! is reduced by score-ordered NMS; the passes are then merged by [`merge_prefer_larger`]: of
//! boxes overlapping above the NMS IoU, the **larger** one is kept. Partial boxes from tiles often
//! score higher than the whole person seen by the whole-image pass, and plain score-NMS would
//! replace the whole box by a partial one (a head left outside the box). With tiles off (or a
//! small image) the result is exactly the reference's score-NMS.

use fast_image_resize as fir;
use image::RgbImage;
use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};
use veil_core::{nms, BBox, Detection, ObjectClass};

use crate::DetectError;

/// Strides of the three detection heads, in the order their rows appear in the output.
pub const STRIDES: [u32; 3] = [8, 16, 32];
/// COCO class index of `person`.
pub const PERSON_CLASS: usize = 0;
/// Value of the letterbox padding (YOLOX's `preproc`).
pub const PAD_VALUE: f32 = 114.0;
/// Tiles are used when the image's long side exceeds this many network input sides.
pub const TILE_TRIGGER: f64 = 2.0;
/// Side of a tile as a fraction of the image side (2 tiles per axis: 20% shared).
pub const TILE_FRACTION: f64 = 0.6;

/// Person-detection settings recorded in every provenance record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PersonPolicy {
    /// Minimum `obj * cls` score for a detection to count.
    pub threshold: f64,
    /// IoU above which overlapping detections are merged.
    pub nms_iou: f64,
    /// Also run a 2x2 grid of overlapping tiles on large images (see the module doc).
    pub tiles: bool,
    /// A detection scoring below this is kept only if a closer look confirms it
    /// ([`confirm_crop`]); 0 keeps every detection above `threshold`. Off in the detector's own
    /// default; a run's default is set by its policy (README, "Persons").
    #[serde(default)]
    pub confirm_below: f64,
}

impl Default for PersonPolicy {
    fn default() -> Self {
        Self {
            threshold: 0.3,
            nms_iou: 0.45,
            // Off by default: on the shared labels the extra tile pass lowered person recall at
            // IoU 0.5 (71/76 -> 68/76) by splitting people into part boxes; `--person-tiles`.
            tiles: false,
            confirm_below: 0.0,
        }
    }
}

/// The closer look at a low-scoring person box is a square crop of this many times the box's
/// long side, centred on it, letterboxed to the network input on its own.
pub const CONFIRM_CONTEXT: f64 = 2.0;
/// A low-scoring box is confirmed by a detection in its crop (at the policy threshold) that
/// overlaps it by at least this IoU.
pub const CONFIRM_IOU: f32 = 0.3;
/// A closer look must show the box at least this much larger than the whole-image pass did;
/// a box too large for that (a person filling the frame) is kept as it is. Looking again at
/// nearly the same scale only re-rolls a score that sits near the threshold.
pub const CONFIRM_MIN_ZOOM: f64 = 1.5;
/// At most this many closer looks per image (one network run each); doubtful boxes beyond them,
/// the lowest-scoring ones, are kept unchecked. The most any shared photo needs is 6; the
/// cap only bounds the time a hostile image can cost, and errs towards obfuscating.
pub const CONFIRM_MAX_LOOKS: usize = 64;

/// The crop (`x, y, w, h` in whole source pixels) that confirms or rejects `b` in an image of
/// `w x h`: a square of [`CONFIRM_CONTEXT`] times the box's long side centred on the box,
/// clipped to the image. A real person seen larger is found again; a texture that looked like
/// one at the whole-image scale usually is not (README, "Persons").
pub fn confirm_crop(b: &BBox, w: u32, h: u32) -> (f64, f64, f64, f64) {
    let side = f64::from(b.width().max(b.height())) * CONFIRM_CONTEXT;
    let (cx, cy) = b.center();
    let (cx, cy) = (f64::from(cx), f64::from(cy));
    let x0 = (cx - side / 2.0).floor().clamp(0.0, f64::from(w));
    let y0 = (cy - side / 2.0).floor().clamp(0.0, f64::from(h));
    let x1 = (cx + side / 2.0).ceil().clamp(0.0, f64::from(w));
    let y1 = (cy + side / 2.0).ceil().clamp(0.0, f64::from(h));
    (x0, y0, x1 - x0, y1 - y0)
}

/// How a crop of `src_w x src_h` pixels is scaled into the network input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Scale from source pixels to network-input pixels.
    pub ratio: f64,
    /// Size of the resized image inside the canvas (pasted at the top-left).
    pub new_w: u32,
    pub new_h: u32,
    pub input_w: u32,
    pub input_h: u32,
}

/// YOLOX's letterbox: `r = min(input_w/src_w, input_h/src_h)`, resized size `floor(src*r)` in
/// f64 exactly like the reference's `int(W * r)` (at least 1, at most the input).
pub fn letterbox(src_w: u32, src_h: u32, input_w: u32, input_h: u32) -> Letterbox {
    let (sw, sh) = (src_w.max(1) as f64, src_h.max(1) as f64);
    let (iw, ih) = (input_w.max(1), input_h.max(1));
    let ratio = (iw as f64 / sw).min(ih as f64 / sh);
    let side = |s: f64, max: u32| ((s * ratio).floor() as u32).clamp(1, max);
    Letterbox {
        ratio,
        new_w: side(sw, iw),
        new_h: side(sh, ih),
        input_w: iw,
        input_h: ih,
    }
}

/// Pastes packed RGB bytes (`w x h`) at the top-left of an `input_w x input_h` canvas of 114 and
/// returns it as a `[1,3,input_h,input_w]` tensor in B,G,R channel order, values 0..255. Parts of
/// the image beyond the canvas are dropped.
pub fn paste_bgr_nchw(
    rgb: &[u8],
    w: usize,
    h: usize,
    input_w: usize,
    input_h: usize,
) -> Array4<f32> {
    let plane = input_w * input_h;
    let mut data = vec![PAD_VALUE; 3 * plane];
    let (b, rest) = data.split_at_mut(plane);
    let (g, r) = rest.split_at_mut(plane);
    if w > 0 {
        for (y, line) in rgb.chunks_exact(3 * w).take(h.min(input_h)).enumerate() {
            for (x, px) in line.chunks_exact(3).take(input_w).enumerate() {
                let i = y * input_w + x;
                b[i] = px[2] as f32;
                g[i] = px[1] as f32;
                r[i] = px[0] as f32;
            }
        }
    }
    Array4::from_shape_vec((1, 3, input_h, input_w), data).expect("shape matches length")
}

/// Fills a `[1,3,H,W]` network input: the `crop` (`x, y, w, h` in source pixels) of `img`
/// resized bilinearly to `lb.new_w x lb.new_h`, pasted at the top-left of a canvas of 114, in
/// B,G,R order with values 0..255.
pub fn preprocess(
    img: &RgbImage,
    crop: (f64, f64, f64, f64),
    lb: &Letterbox,
    resizer: &mut fir::Resizer,
) -> Result<Array4<f32>, DetectError> {
    if img.width() == 0 || img.height() == 0 {
        return Err(DetectError::Preprocess {
            reason: "empty image".into(),
        });
    }
    // Crops are computed in floating point: clamp so rounding never leaves the image.
    let (iw, ih) = (img.width() as f64, img.height() as f64);
    let (x, y) = (
        crop.0.clamp(0.0, (iw - 1.0).max(0.0)),
        crop.1.clamp(0.0, (ih - 1.0).max(0.0)),
    );
    let (nw, nh) = (
        lb.new_w.clamp(1, lb.input_w.max(1)),
        lb.new_h.clamp(1, lb.input_h.max(1)),
    );
    let mut dst = fir::images::Image::new(nw, nh, fir::PixelType::U8x3);
    let opts = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear))
        .crop(
            x,
            y,
            (crop.2.min(iw - x)).max(1e-3),
            (crop.3.min(ih - y)).max(1e-3),
        );
    resizer
        .resize(img, &mut dst, &opts)
        .map_err(|e| DetectError::Preprocess {
            reason: e.to_string(),
        })?;
    Ok(paste_bgr_nchw(
        dst.buffer(),
        nw as usize,
        nh as usize,
        lb.input_w as usize,
        lb.input_h as usize,
    ))
}

/// Number of output rows (grid cells over all strides) for an input of `input_w x input_h`.
pub fn grid_rows(input_w: u32, input_h: u32) -> usize {
    STRIDES
        .iter()
        .map(|s| (input_w / s) as usize * (input_h / s) as usize)
        .sum()
}

/// Checks that an output of `len` values in rows of `cols` is what [`decode`] expects for an
/// input of `input_w x input_h`: rows long enough to hold class `class`, and (raw output) exactly
/// one row per grid cell. A model that answers otherwise fails its images rather than finding
/// nobody in them.
pub fn check_output(
    len: usize,
    cols: usize,
    input_w: u32,
    input_h: u32,
    class: usize,
    already_decoded: bool,
) -> Result<(), String> {
    if cols <= 5 + class {
        return Err(format!(
            "rows of {cols} values cannot hold class {class} (need {})",
            6 + class
        ));
    }
    if !len.is_multiple_of(cols) {
        return Err(format!("{len} values are not rows of {cols}"));
    }
    let rows = grid_rows(input_w, input_h);
    if !already_decoded && len / cols != rows {
        return Err(format!(
            "{} rows, but a {input_w}x{input_h} input has {rows} grid cells",
            len / cols
        ));
    }
    Ok(())
}

/// Decodes raw `[N, cols]` output rows (`tx, ty, tw, th, obj, cls0..`) of one image into boxes in
/// network-input pixels with score `obj * cls[class]` above `threshold`, before NMS. Rows are the
/// stride 8, 16 and 32 grids over `input_w x input_h`, each row-major. With `already_decoded` the
/// first four columns are `cx, cy, w, h` in input pixels and every row is used. Short or
/// mismatched buffers give no boxes.
pub fn decode(
    rows: &[f32],
    cols: usize,
    input_w: u32,
    input_h: u32,
    class: usize,
    threshold: f32,
    already_decoded: bool,
) -> Vec<(BBox, f32)> {
    let ci = 5 + class;
    if cols <= ci {
        return Vec::new();
    }
    let (net_w, net_h) = (input_w as f32, input_h as f32);
    let mut out = Vec::new();
    let mut push = |cx: f32, cy: f32, w: f32, h: f32, score: f32| {
        let b = BBox::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0);
        let finite = [b.x1, b.y1, b.x2, b.y2].iter().all(|v| v.is_finite());
        let b = b.clipped(net_w, net_h);
        if finite && b.area() > 0.0 {
            out.push((b, score));
        }
    };
    let score_of = |r: &[f32]| {
        let s = r[4] * r[ci];
        (s > threshold).then_some(s)
    };
    if already_decoded {
        for r in rows.chunks_exact(cols) {
            if let Some(s) = score_of(r) {
                push(r[0], r[1], r[2], r[3], s);
            }
        }
        return out;
    }
    let n = grid_rows(input_w, input_h);
    if n == 0 || rows.len() < n * cols {
        return Vec::new();
    }
    let mut cells = rows.chunks_exact(cols);
    for stride in STRIDES {
        let s = stride as f32;
        for gy in 0..input_h / stride {
            for gx in 0..input_w / stride {
                let r = cells.next().expect("length checked");
                if let Some(score) = score_of(r) {
                    push(
                        (r[0] + gx as f32) * s,
                        (r[1] + gy as f32) * s,
                        r[2].exp() * s,
                        r[3].exp() * s,
                        score,
                    );
                }
            }
        }
    }
    out
}

/// Whether output rows look grid-decoded already: decoded centres average about half the input
/// width over all cells, raw offsets `tx` stay within a few cells' fraction of zero.
pub fn output_looks_decoded(rows: &[f32], cols: usize, input_w: u32) -> bool {
    if cols == 0 || rows.len() < cols {
        return false;
    }
    let (sum, n) = rows
        .chunks_exact(cols)
        .filter(|r| r[0].is_finite())
        .fold((0f64, 0usize), |(s, n), r| (s + r[0].abs() as f64, n + 1));
    n > 0 && sum / n as f64 > input_w as f64 / 8.0
}

/// The crops (`x, y, w, h` in source pixels, whole numbers) run for an image of `w x h`: the
/// whole image, plus with `tiles` and a long side above [`TILE_TRIGGER`] network input sides a
/// 2x2 grid of tiles of [`TILE_FRACTION`] of each side, flush with the image edges.
pub fn plan_crops(
    w: u32,
    h: u32,
    input_w: u32,
    input_h: u32,
    tiles: bool,
) -> Vec<(f64, f64, f64, f64)> {
    let (wf, hf) = (w as f64, h as f64);
    let mut crops = vec![(0.0, 0.0, wf, hf)];
    let input_side = input_w.max(input_h) as f64;
    if !tiles || wf.max(hf) <= TILE_TRIGGER * input_side {
        return crops;
    }
    let (tw, th) = (
        (wf * TILE_FRACTION).round().clamp(1.0, wf),
        (hf * TILE_FRACTION).round().clamp(1.0, hf),
    );
    for y in [0.0, hf - th] {
        for x in [0.0, wf - tw] {
            crops.push((x, y, tw, th));
        }
    }
    crops
}

/// Greedy NMS that keeps the larger box of every overlapping group (IoU above `iou_threshold`,
/// same class), each kept detection with its own score; used to merge passes. Ties go to the
/// higher score, then position, so the result does not depend on input order. Output is sorted
/// by descending score like [`veil_core::nms`].
pub fn merge_prefer_larger(dets: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    veil_core::suppress_by(dets, iou_threshold, |a, b| {
        b.bbox
            .area()
            .total_cmp(&a.bbox.area())
            .then_with(|| veil_core::by_score(a, b))
    })
}

/// A loaded YOLOX model: one ONNX Runtime session (sessions are not shared between threads).
pub struct Yolox {
    session: Session,
    name: String,
    input_name: String,
    output_name: String,
    input_w: u32,
    input_h: u32,
    already_decoded: bool,
    resizer: fir::Resizer,
}

impl std::fmt::Debug for Yolox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Yolox")
            .field("name", &self.name)
            .field("input", &(self.input_w, self.input_h))
            .field("already_decoded", &self.already_decoded)
            .finish()
    }
}

impl Yolox {
    /// Wraps a session of a YOLOX export with a fixed `[1,3,H,W]` input (sides multiples of 32).
    /// Expects raw box terms (see [`Yolox::with_decoded_output`]).
    pub fn new(session: Session, name: impl Into<String>) -> Result<Self, DetectError> {
        let name = name.into();
        let bad = |reason: String| DetectError::Session {
            reason: format!("model `{name}`: {reason}"),
        };
        let input = session
            .inputs()
            .first()
            .ok_or_else(|| bad("the model has no input".into()))?;
        let shape: Vec<i64> = input
            .dtype()
            .tensor_shape()
            .map(|s| s.to_vec())
            .unwrap_or_default();
        let fixed = shape.len() == 4
            && matches!(shape[0], 1 | -1)
            && shape[1] == 3
            && shape[2] >= 32
            && shape[3] >= 32
            && shape[2] % 32 == 0
            && shape[3] % 32 == 0
            && shape[2] <= u32::MAX as i64
            && shape[3] <= u32::MAX as i64;
        if !fixed {
            return Err(bad(format!(
                "input `{}` has shape {shape:?}; a YOLOX export with a fixed [1,3,H,W] input \
                 (sides multiples of 32) is needed",
                input.name()
            )));
        }
        let (input_h, input_w) = (shape[2] as u32, shape[3] as u32);
        let input_name = input.name().to_string();
        let output = session
            .outputs()
            .iter()
            .find(|o| o.name() == "output")
            .or_else(|| session.outputs().first())
            .ok_or_else(|| bad("the model has no output".into()))?;
        if let Some(s) = output.dtype().tensor_shape() {
            let rows = s.len().checked_sub(2).map(|i| s[i]).unwrap_or(-1);
            let expected = grid_rows(input_w, input_h) as i64;
            if s.len() < 2
                || (rows >= 0 && rows != expected)
                || (s[s.len() - 1] >= 0 && s[s.len() - 1] < 6)
            {
                return Err(bad(format!(
                    "output `{}` has shape {:?}; expected [1,{expected},5+classes]",
                    output.name(),
                    s.to_vec()
                )));
            }
        }
        let output_name = output.name().to_string();
        Ok(Self {
            session,
            name,
            input_name,
            output_name,
            input_w,
            input_h,
            already_decoded: false,
            resizer: fir::Resizer::new(),
        })
    }

    /// Declares that the export decodes boxes in the graph (`cx, cy, w, h` in input pixels).
    pub fn with_decoded_output(mut self, decoded: bool) -> Self {
        self.already_decoded = decoded;
        self
    }

    /// Network input size `(width, height)`.
    pub fn input_size(&self) -> (u32, u32) {
        (self.input_w, self.input_h)
    }

    /// Runs the network on a prepared `[1,3,H,W]` input and decodes persons (network-input
    /// pixels, no NMS).
    pub fn run_tensor(
        &mut self,
        input: &Array4<f32>,
        threshold: f32,
    ) -> Result<Vec<(BBox, f32)>, DetectError> {
        let want = [1, 3, self.input_h as usize, self.input_w as usize];
        if input.shape() != want {
            return Err(DetectError::Preprocess {
                reason: format!("input tensor {:?}, model needs {want:?}", input.shape()),
            });
        }
        let infer = |e: ort::Error| DetectError::Inference {
            reason: e.to_string(),
        };
        let tensor = TensorRef::from_array_view(input).map_err(infer)?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(infer)?;
        let v = outputs
            .get(&self.output_name)
            .ok_or_else(|| DetectError::Inference {
                reason: format!("model has no output `{}`", self.output_name),
            })?;
        let (shape, data) = v.try_extract_tensor::<f32>().map_err(infer)?;
        let cols = match shape.last() {
            Some(&c) if shape.len() >= 2 && c > 0 => c as usize,
            _ => {
                return Err(DetectError::Inference {
                    reason: format!("output `{}` has shape {shape:?}", self.output_name),
                })
            }
        };
        if output_looks_decoded(data, cols, self.input_w) != self.already_decoded {
            return Err(DetectError::Inference {
                reason: format!(
                    "model `{}` output looks {}, but it is configured as {}",
                    self.name,
                    if self.already_decoded {
                        "raw (not grid-decoded)"
                    } else {
                        "grid-decoded already"
                    },
                    if self.already_decoded {
                        "decoded"
                    } else {
                        "raw"
                    },
                ),
            });
        }
        check_output(
            data.len(),
            cols,
            self.input_w,
            self.input_h,
            PERSON_CLASS,
            self.already_decoded,
        )
        .map_err(|reason| DetectError::Inference {
            reason: format!("model `{}`: unexpected output: {reason}", self.name),
        })?;
        Ok(decode(
            data,
            cols,
            self.input_w,
            self.input_h,
            PERSON_CLASS,
            threshold,
            self.already_decoded,
        ))
    }

    /// Detects persons in an upright RGB image following `policy`; boxes in image pixels.
    pub fn detect(
        &mut self,
        img: &RgbImage,
        policy: &PersonPolicy,
    ) -> Result<Vec<Detection>, DetectError> {
        let (input_w, input_h) = (self.input_w, self.input_h);
        let name = self.name.clone();
        detect_in_crops(img, policy, input_w, input_h, &name, |crop| {
            let lb = letterbox(crop.2 as u32, crop.3 as u32, input_w, input_h);
            let input = preprocess(img, crop, &lb, &mut self.resizer)?;
            Ok((self.run_tensor(&input, policy.threshold as f32)?, lb.ratio))
        })
    }
}

/// A letterboxing person detector over the crops of `policy` ([`plan_crops`]): `run` turns a
/// crop into boxes in network-input pixels with scores, and the letterbox ratio it used; the
/// boxes are mapped back to image pixels and clipped, reduced by NMS per crop, and the crops
/// merged preferring the larger box ([`merge_prefer_larger`]); with `confirm_below`, doubtful boxes
/// then get their closer look (module doc). Shared by YOLOX and NanoDet.
pub fn detect_in_crops(
    img: &RgbImage,
    policy: &PersonPolicy,
    input_w: u32,
    input_h: u32,
    model: &str,
    mut run: impl FnMut((f64, f64, f64, f64)) -> Result<(Vec<(BBox, f32)>, f64), DetectError>,
) -> Result<Vec<Detection>, DetectError> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Ok(Vec::new());
    }
    let iou = policy.nms_iou as f32;
    let crops = plan_crops(w, h, input_w, input_h, policy.tiles);
    let single = crops.len() == 1;
    let mut all = Vec::new();
    for crop in crops {
        let (found, ratio) = run(crop)?;
        all.extend(nms(to_image(found, ratio, crop, w, h, model), iou));
    }
    let found = if single {
        all
    } else {
        merge_prefer_larger(all, iou)
    };
    if policy.confirm_below <= 0.0 {
        return Ok(found);
    }
    // The closer look: a box below `confirm_below` stays only if its own crop finds it again.
    let fit = |cw: f64, ch: f64| (f64::from(input_w) / cw).min(f64::from(input_h) / ch);
    let mut kept = Vec::with_capacity(found.len());
    let mut looks = 0;
    // Highest scores first, so that the cap leaves the least likely boxes unchecked (and kept).
    let mut found = found;
    found.sort_by(|a, b| b.score.total_cmp(&a.score));
    for d in found {
        if f64::from(d.score) >= policy.confirm_below {
            kept.push(d);
            continue;
        }
        let crop = confirm_crop(&d.bbox, w, h);
        let zoom = fit(crop.2, crop.3) / fit(f64::from(w), f64::from(h));
        if crop.2 < 1.0 || crop.3 < 1.0 || zoom < CONFIRM_MIN_ZOOM || looks >= CONFIRM_MAX_LOOKS {
            kept.push(d);
            continue;
        }
        looks += 1;
        let (again, ratio) = run(crop)?;
        if to_image(again, ratio, crop, w, h, model)
            .iter()
            .any(|a| a.bbox.iou(&d.bbox) >= CONFIRM_IOU)
        {
            kept.push(d);
        }
    }
    Ok(kept)
}

/// Boxes found in `crop` (network-input pixels, letterboxed by `ratio`) as person detections in
/// image pixels, clipped to the crop and the image.
fn to_image(
    found: Vec<(BBox, f32)>,
    ratio: f64,
    crop: (f64, f64, f64, f64),
    w: u32,
    h: u32,
    model: &str,
) -> Vec<Detection> {
    let (cx, cy, cw, ch) = crop;
    let back = (1.0 / ratio) as f32;
    found
        .into_iter()
        .map(|(b, score)| Detection {
            bbox: b
                .rescaled(back, back)
                .clipped(cw as f32, ch as f32)
                .translated(cx as f32, cy as f32)
                .clipped(w as f32, h as f32)
                .rounded(),
            score: (score * 10_000.0).round() / 10_000.0,
            class: ObjectClass::Person,
            model: model.to_string(),
        })
        .filter(|d| d.bbox.area() > 0.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const N416: usize = 52 * 52 + 26 * 26 + 13 * 13;

    #[test]
    fn letterbox_scales_by_the_tighter_side_and_floors() {
        let lb = letterbox(810, 1080, 416, 416);
        assert!((lb.ratio - 0.3851851851851852).abs() < 1e-12);
        assert_eq!((lb.new_w, lb.new_h), (312, 416));
        let lb = letterbox(5, 3, 8, 8);
        assert_eq!(
            (lb.ratio, lb.new_w, lb.new_h),
            (1.6, 8, 4),
            "floor(3 * 1.6) = 4"
        );
        let lb = letterbox(4, 2, 8, 8);
        assert_eq!((lb.ratio, lb.new_w, lb.new_h), (2.0, 8, 4));
        let lb = letterbox(10_000, 1, 416, 416);
        assert_eq!((lb.new_w, lb.new_h), (416, 1), "never below one pixel");
        let lb = letterbox(0, 0, 416, 416);
        assert!(lb.new_w >= 1 && lb.new_h >= 1 && lb.ratio.is_finite());
    }

    #[test]
    fn preprocess_pastes_top_left_in_bgr_over_114() {
        let mut resizer = fir::Resizer::new();
        let img = RgbImage::from_pixel(4, 2, image::Rgb([10, 20, 30]));
        let lb = letterbox(4, 2, 8, 8);
        let t = preprocess(&img, (0.0, 0.0, 4.0, 2.0), &lb, &mut resizer).unwrap();
        assert_eq!(t.shape(), &[1, 3, 8, 8]);
        for y in 0..8 {
            for x in 0..8 {
                let px = [t[[0, 0, y, x]], t[[0, 1, y, x]], t[[0, 2, y, x]]];
                if y < 4 {
                    assert_eq!(px, [30.0, 20.0, 10.0], "({x},{y}) is B,G,R");
                } else {
                    assert_eq!(px, [114.0; 3], "({x},{y}) is padding");
                }
            }
        }
        // Tall image: padding on the right only.
        let img = RgbImage::from_pixel(2, 4, image::Rgb([1, 2, 3]));
        let lb = letterbox(2, 4, 8, 8);
        let t = preprocess(&img, (0.0, 0.0, 2.0, 4.0), &lb, &mut resizer).unwrap();
        assert_eq!(t[[0, 0, 7, 3]], 3.0);
        assert_eq!(t[[0, 2, 0, 3]], 1.0);
        assert_eq!(t[[0, 0, 0, 4]], 114.0);
        assert_eq!(t[[0, 1, 7, 7]], 114.0);
    }

    #[test]
    fn preprocess_takes_only_the_crop() {
        let mut resizer = fir::Resizer::new();
        let img = RgbImage::from_fn(40, 20, |x, _| {
            if x < 20 {
                image::Rgb([200, 0, 0])
            } else {
                image::Rgb([0, 0, 200])
            }
        });
        let lb = letterbox(20, 20, 8, 8);
        let t = preprocess(&img, (20.0, 0.0, 20.0, 20.0), &lb, &mut resizer).unwrap();
        // The filter reaches a little beyond the crop's edge (a window into the image), no further.
        assert!(t[[0, 0, 4, 0]] > 150.0 && t[[0, 2, 4, 0]] < 50.0);
        for x in 2..8 {
            assert_eq!(t[[0, 0, 4, x]], 200.0, "blue in channel 0");
            assert_eq!(t[[0, 2, 4, x]], 0.0, "no red from the left half");
        }
    }

    #[test]
    fn paste_drops_what_does_not_fit() {
        let rgb = [1u8, 2, 3, 4, 5, 6];
        let t = paste_bgr_nchw(&rgb, 2, 1, 1, 2);
        assert_eq!(t.shape(), &[1, 3, 2, 1]);
        assert_eq!(
            [t[[0, 0, 0, 0]], t[[0, 1, 0, 0]], t[[0, 2, 0, 0]]],
            [3.0, 2.0, 1.0]
        );
        assert_eq!(t[[0, 0, 1, 0]], 114.0);
        assert_eq!(paste_bgr_nchw(&[], 0, 0, 2, 2).sum(), 114.0 * 12.0);
    }

    /// A synthetic 416 output with one planted cell per stride group.
    fn planted() -> Vec<f32> {
        let cols = 85;
        let mut rows = vec![0f32; N416 * cols];
        let mut set = |i: usize, v: &[(usize, f32)]| {
            for &(c, x) in v {
                rows[i * cols + c] = x;
            }
        };
        // stride 8, gx=10, gy=20: 16x32 box centred at (84, 162), score 0.9*0.8.
        set(
            20 * 52 + 10,
            &[
                (0, 0.5),
                (1, 0.25),
                (2, 2f32.ln()),
                (3, 4f32.ln()),
                (4, 0.9),
                (5, 0.8),
            ],
        );
        // stride 16, gx=3, gy=5: person 0.5*0.5 (below 0.3), class 1 0.5*0.9.
        set(2704 + 5 * 26 + 3, &[(4, 0.5), (5, 0.5), (6, 0.9)]);
        // stride 32, last cell gx=gy=12: 128 px wide box centred at 400, clipped to 416.
        set(
            N416 - 1,
            &[(0, 0.5), (1, 0.5), (2, 4f32.ln()), (4, 1.0), (5, 0.6)],
        );
        rows
    }

    fn close(b: BBox, want: [f32; 4]) -> bool {
        [b.x1, b.y1, b.x2, b.y2]
            .iter()
            .zip(want)
            .all(|(g, w)| (g - w).abs() < 1e-3)
    }

    #[test]
    fn decode_places_grid_cells_of_every_stride() {
        let rows = planted();
        let mut d = decode(&rows, 85, 416, 416, PERSON_CLASS, 0.3, false);
        d.sort_by(|a, b| a.0.x1.total_cmp(&b.0.x1));
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(close(d[0].0, [76.0, 146.0, 92.0, 178.0]), "{:?}", d[0]);
        assert!((d[0].1 - 0.72).abs() < 1e-6);
        assert!(close(d[1].0, [336.0, 384.0, 416.0, 416.0]), "{:?}", d[1]);
        assert!((d[1].1 - 0.6).abs() < 1e-6);

        let d = decode(&rows, 85, 416, 416, 1, 0.3, false);
        assert_eq!(d.len(), 1);
        assert!(close(d[0].0, [40.0, 72.0, 56.0, 88.0]), "{:?}", d[0]);
        assert!((d[0].1 - 0.45).abs() < 1e-6);
    }

    #[test]
    fn decode_threshold_is_strict_and_scores_are_obj_times_cls() {
        let rows = planted();
        let s = 0.9f32 * 0.8;
        let at = decode(&rows, 85, 416, 416, PERSON_CLASS, s, false);
        assert!(at.iter().all(|(_, sc)| *sc > s));
        assert_eq!(at.len(), 0, "0.6 and 0.72 are not above 0.72");
        assert_eq!(
            decode(&rows, 85, 416, 416, PERSON_CLASS, 0.2, false).len(),
            3
        );
        assert!(decode(&rows, 85, 416, 416, PERSON_CLASS, 0.9, false).is_empty());
    }

    #[test]
    fn decode_takes_decoded_rows_as_is() {
        let mut rows = vec![0f32; 3 * 85];
        rows[85..90].copy_from_slice(&[100.0, 50.0, 20.0, 40.0, 1.0]);
        rows[90] = 0.9;
        let d = decode(&rows, 85, 416, 416, PERSON_CLASS, 0.3, true);
        assert_eq!(d.len(), 1);
        assert!(close(d[0].0, [90.0, 30.0, 110.0, 70.0]), "{:?}", d[0]);
        assert!((d[0].1 - 0.9).abs() < 1e-6);
    }

    #[test]
    fn decode_rejects_short_buffers_instead_of_panicking() {
        let rows = planted();
        assert!(decode(&rows[..rows.len() - 1], 85, 416, 416, 0, 0.1, false).is_empty());
        assert!(decode(&[0.9; 10], 85, 416, 416, 0, 0.1, false).is_empty());
        // ...which is why a run checks the output first and fails the image instead.
        let cells = grid_rows(416, 416);
        assert!(check_output(cells * 85, 85, 416, 416, PERSON_CLASS, false).is_ok());
        assert!(check_output((cells - 1) * 85, 85, 416, 416, PERSON_CLASS, false).is_err());
        assert!(check_output(cells * 5, 5, 416, 416, PERSON_CLASS, false).is_err());
        assert!(check_output(cells * 85 + 1, 85, 416, 416, PERSON_CLASS, false).is_err());
        assert!(check_output(7 * 85, 85, 416, 416, PERSON_CLASS, true).is_ok());
        assert!(decode(&[0.9; 10], 85, 416, 416, 0, 0.1, true).is_empty());
        assert!(
            decode(&rows, 85, 416, 416, 80, 0.1, false).is_empty(),
            "class 80 of 80"
        );
        assert!(decode(&rows, 5, 416, 416, 0, 0.1, false).is_empty());
        assert!(decode(&rows, 0, 416, 416, 0, 0.1, true).is_empty());
        assert!(decode(&[], 85, 0, 0, 0, 0.1, false).is_empty());
        let mut nan = planted();
        nan[20 * 52 * 85 + 10 * 85 + 4] = f32::NAN;
        nan[(N416 - 1) * 85 + 2] = f32::INFINITY;
        assert!(decode(&nan, 85, 416, 416, 0, 0.3, false).is_empty());
    }

    #[test]
    fn decoded_outputs_are_told_from_raw_ones() {
        let raw = planted();
        assert!(!output_looks_decoded(&raw, 85, 416));
        let mut dec = raw.clone();
        let mut i = 0;
        for s in STRIDES {
            for gy in 0..416 / s {
                for gx in 0..416 / s {
                    dec[i * 85] = (gx as f32 + 0.5) * s as f32;
                    dec[i * 85 + 1] = (gy as f32 + 0.5) * s as f32;
                    i += 1;
                }
            }
        }
        assert!(output_looks_decoded(&dec, 85, 416));
        assert!(!output_looks_decoded(&[], 85, 416));
    }

    #[test]
    fn small_images_get_one_pass_and_large_ones_overlapping_tiles() {
        assert_eq!(plan_crops(832, 600, 416, 416, true).len(), 1);
        assert_eq!(plan_crops(4000, 3000, 416, 416, false).len(), 1);
        let c = plan_crops(2000, 1001, 416, 416, true);
        assert_eq!(c[0], (0.0, 0.0, 2000.0, 1001.0));
        assert_eq!(c.len(), 5);
        for &(x, y, w, h) in &c[1..] {
            assert_eq!((w, h), (1200.0, 601.0));
            assert!(x >= 0.0 && y >= 0.0 && x + w <= 2000.0 && y + h <= 1001.0);
            assert!(x.fract() == 0.0 && y.fract() == 0.0);
        }
        assert_eq!(
            (c[2].0, c[3].1),
            (800.0, 400.0),
            "flush with the right and bottom"
        );
        let shared = c[1].0 + c[1].2 - c[2].0;
        assert!((shared / 2000.0 - 0.2).abs() < 1e-3, "20% overlap");
    }

    /// Every planned crop of awkward sizes can be prepared at the network size.
    #[test]
    fn every_planned_crop_of_awkward_sizes_can_be_prepared() {
        let mut resizer = fir::Resizer::new();
        for (w, h) in [(3098, 3873), (4164, 2882), (1, 1), (1, 5000), (2049, 17)] {
            let img = RgbImage::new(w, h);
            for crop in plan_crops(w, h, 416, 416, true) {
                let lb = letterbox(crop.2 as u32, crop.3 as u32, 416, 416);
                let t = preprocess(&img, crop, &lb, &mut resizer)
                    .unwrap_or_else(|e| panic!("{w}x{h} {crop:?}: {e}"));
                assert_eq!(t.shape(), &[1, 3, 416, 416]);
            }
        }
    }

    fn person(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> Detection {
        Detection {
            bbox: BBox::new(x1, y1, x2, y2),
            score,
            class: ObjectClass::Person,
            model: "m".into(),
        }
    }

    #[test]
    fn merging_passes_keeps_the_whole_person_over_a_higher_scoring_part() {
        let whole = person(150.0, 200.0, 680.0, 712.0, 0.85);
        let cut = person(134.0, 289.0, 732.0, 715.0, 0.93); // IoU 0.75 with `whole`
        let other = person(750.0, 40.0, 1150.0, 700.0, 0.8);
        let inside = person(500.0, 330.0, 600.0, 430.0, 0.4); // contained, IoU < 0.45: kept
        let mut face = whole.clone();
        face.class = ObjectClass::Face;
        let input = vec![
            cut.clone(),
            inside.clone(),
            whole.clone(),
            other.clone(),
            face,
        ];
        let out = merge_prefer_larger(input.clone(), 0.45);
        assert_eq!(out.len(), 4, "{out:?}");
        assert!(out.contains(&whole) && out.contains(&other) && out.contains(&inside));
        assert!(!out.contains(&cut));
        assert!(
            out.windows(2).all(|p| p[0].score >= p[1].score),
            "sorted by score"
        );
        let mut reversed = input;
        reversed.reverse();
        assert_eq!(merge_prefer_larger(reversed, 0.45), out);
        assert!(whole.bbox.iou(&cut.bbox) > 0.45);
        assert_eq!(
            nms(vec![whole, cut.clone()], 0.45),
            vec![cut],
            "what score-NMS would do"
        );
    }

    type Crop = (f64, f64, f64, f64);
    type Found = Result<(Vec<(BBox, f32)>, f64), DetectError>;

    /// A fake network for [`detect_in_crops`]: the whole image finds a sure person and a
    /// doubtful one; a crop finds whatever of `seen_again` lies inside it (input = crop, ratio 1).
    fn run_fake(seen_again: Vec<BBox>, calls: &mut Vec<Crop>) -> impl FnMut(Crop) -> Found + '_ {
        move |crop| {
            calls.push(crop);
            if crop == (0.0, 0.0, 400.0, 300.0) {
                return Ok((
                    vec![
                        (BBox::new(10.0, 10.0, 60.0, 150.0), 0.8),
                        (BBox::new(200.0, 100.0, 240.0, 200.0), 0.35),
                    ],
                    1.0,
                ));
            }
            let (x, y, w, h) = crop;
            let inside = seen_again
                .iter()
                .filter(|b| b.x1 as f64 >= x && b.x2 as f64 <= x + w)
                .map(|b| {
                    (
                        b.translated(-x as f32, -y as f32)
                            .clipped(w as f32, h as f32),
                        0.5,
                    )
                })
                .collect();
            Ok((inside, 1.0))
        }
    }

    #[test]
    fn a_doubtful_person_stays_only_if_its_closer_look_finds_it_again() {
        let img = RgbImage::new(400, 300);
        let policy = PersonPolicy {
            confirm_below: 0.5,
            ..PersonPolicy::default()
        };
        // Seen again in its crop: kept, and only the doubtful box got a second look.
        let mut calls = Vec::new();
        let again = vec![BBox::new(198.0, 98.0, 242.0, 202.0)];
        let found =
            detect_in_crops(&img, &policy, 416, 416, "m", run_fake(again, &mut calls)).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            calls.len(),
            2,
            "one closer look, for the 0.35 box: {calls:?}"
        );
        assert_eq!(
            calls[1],
            confirm_crop(&BBox::new(200.0, 100.0, 240.0, 200.0), 400, 300)
        );
        // Not seen again: dropped; the sure box is kept without a second look.
        let mut calls = Vec::new();
        let found =
            detect_in_crops(&img, &policy, 416, 416, "m", run_fake(vec![], &mut calls)).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].score, 0.8);
        assert_eq!(calls.len(), 2);
        // A box whose crop would be almost the whole image cannot be seen closer: kept as is.
        let mut calls = Vec::new();
        let tall = |crop: (f64, f64, f64, f64)| {
            calls.push(crop);
            Ok((vec![(BBox::new(150.0, 10.0, 260.0, 290.0), 0.31)], 1.0))
        };
        let found = detect_in_crops(&img, &policy, 416, 416, "m", tall).unwrap();
        assert_eq!((found.len(), calls.len()), (1, 1), "{calls:?}");
        // Off: every box above the threshold is kept and nothing is run twice.
        let mut calls = Vec::new();
        let off = PersonPolicy::default();
        let found =
            detect_in_crops(&img, &off, 416, 416, "m", run_fake(vec![], &mut calls)).unwrap();
        assert_eq!((found.len(), calls.len()), (2, 1));
    }

    /// A photo full of doubtful boxes gets at most [`CONFIRM_MAX_LOOKS`] closer looks, the
    /// highest scores first; the rest are kept unchecked.
    #[test]
    fn closer_looks_are_capped_per_image_and_the_unchecked_boxes_are_kept() {
        let img = RgbImage::new(4000, 3000);
        let policy = PersonPolicy {
            confirm_below: 0.5,
            ..PersonPolicy::default()
        };
        let n = CONFIRM_MAX_LOOKS + 6;
        let whole: Vec<(BBox, f32)> = (0..n)
            .map(|i| {
                let (x, y) = ((i % 20) as f32 * 100.0, (i / 20) as f32 * 100.0);
                (BBox::new(x, y, x + 10.0, y + 20.0), 0.49 - i as f32 * 0.001)
            })
            .collect();
        let mut calls = 0;
        let run = |crop: (f64, f64, f64, f64)| {
            calls += 1;
            if crop == (0.0, 0.0, 4000.0, 3000.0) {
                Ok((whole.clone(), 1.0))
            } else {
                Ok((Vec::new(), 1.0))
            }
        };
        let found = detect_in_crops(&img, &policy, 416, 416, "m", run).unwrap();
        assert_eq!(calls, 1 + CONFIRM_MAX_LOOKS);
        assert_eq!(found.len(), 6, "{found:?}");
        let lowest_checked = 0.49 - (CONFIRM_MAX_LOOKS - 1) as f32 * 0.001;
        assert!(found.iter().all(|d| d.score < lowest_checked));
    }

    #[test]
    fn the_closer_look_is_a_square_twice_the_long_side_clipped_to_the_image() {
        // 40 x 100 box centred at (220, 150): a 200 px square from (120, 50).
        let c = confirm_crop(&BBox::new(200.0, 100.0, 240.0, 200.0), 400, 300);
        assert_eq!(c, (120.0, 50.0, 200.0, 200.0));
        // Near a corner the square is cut by the image.
        let c = confirm_crop(&BBox::new(0.0, 0.0, 30.0, 60.0), 400, 300);
        assert_eq!(c, (0.0, 0.0, 75.0, 90.0));
        // Whole pixels whatever the box.
        let c = confirm_crop(&BBox::new(10.3, 20.7, 15.1, 29.9), 400, 300);
        for v in [c.0, c.1, c.2, c.3] {
            assert_eq!(v, v.round());
        }
    }

    #[test]
    fn person_policy_defaults_and_round_trips() {
        let p = PersonPolicy::default();
        assert_eq!((p.threshold, p.nms_iou, p.tiles), (0.3, 0.45, false));
        let back: PersonPolicy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
