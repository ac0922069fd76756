//! CenterFace (family `centerface`): pre-processing, output decoding and the detector that runs
//! the planned passes. See `models/models.toml` and the model contract in the README.
//!
//! Input `input.1`: float32 NCHW, RGB, values 0..255 (no normalisation), sides multiples of 32.
//! Outputs at stride 4: `537` heatmap, `538` log box size (h, w), `539` centre offset (y, x).

use fast_image_resize as fir;
use image::RgbImage;
use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;
use veil_core::{nms, BBox, Detection, ObjectClass};

use std::sync::Arc;

use crate::scales::{plan_passes, DetectPolicy, Pass};
use crate::shape_sessions::{padded_shape, ShapeSessions};
use crate::DetectError;

pub const STRIDE: usize = 4;
pub const SIZE_MULTIPLE: u32 = 32;

/// Decodes CenterFace outputs of one image into boxes in network-input pixels, before NMS.
/// `heat` is `[h*w]`, `scale` and `offset` are `[2*h*w]` (channel-major), as the model emits them.
pub fn decode(
    heat: &[f32],
    scale: &[f32],
    offset: &[f32],
    h: usize,
    w: usize,
    threshold: f32,
) -> Vec<(BBox, f32)> {
    let plane = h * w;
    if heat.len() < plane || scale.len() < 2 * plane || offset.len() < 2 * plane {
        return Vec::new();
    }
    let (net_w, net_h) = ((w * STRIDE) as f32, (h * STRIDE) as f32);
    let s = STRIDE as f32;
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let score = heat[i];
            if score <= threshold || score.is_nan() {
                continue;
            }
            let bh = scale[i].exp() * s;
            let bw = scale[plane + i].exp() * s;
            let (oy, ox) = (offset[i], offset[plane + i]);
            let x1 = (x as f32 + ox + 0.5) * s - bw / 2.0;
            let y1 = (y as f32 + oy + 0.5) * s - bh / 2.0;
            let b = BBox::new(x1, y1, x1 + bw, y1 + bh).clipped(net_w, net_h);
            if b.area() > 0.0 && b.x1.is_finite() && b.y2.is_finite() {
                out.push((b, score));
            }
        }
    }
    out
}

/// Fills an NCHW float tensor (batch 1) from an RGB crop resized to the pass's network size.
pub fn preprocess(
    img: &RgbImage,
    pass: &Pass,
    resizer: &mut fir::Resizer,
) -> Result<Array4<f32>, DetectError> {
    let (nw, nh) = (pass.net_w, pass.net_h);
    // Tile plans are computed in floating point: clamp so rounding never leaves the image.
    let (iw, ih) = (img.width() as f64, img.height() as f64);
    let (x, y) = (
        pass.x.clamp(0.0, (iw - 1.0).max(0.0)),
        pass.y.clamp(0.0, (ih - 1.0).max(0.0)),
    );
    let mut dst = fir::images::Image::new(nw, nh, fir::PixelType::U8x3);
    let opts = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear))
        .crop(
            x,
            y,
            (pass.w.min(iw - x)).max(1e-3),
            (pass.h.min(ih - y)).max(1e-3),
        );
    resizer
        .resize(img, &mut dst, &opts)
        .map_err(|e| DetectError::Preprocess {
            reason: e.to_string(),
        })?;
    Ok(hwc_to_nchw(dst.buffer(), nw as usize, nh as usize))
}

/// Converts packed RGB bytes to a [1,3,H,W] float tensor with values 0..255.
pub fn hwc_to_nchw(rgb: &[u8], w: usize, h: usize) -> Array4<f32> {
    let plane = w * h;
    let mut data = vec![0f32; 3 * plane];
    let (r, rest) = data.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in rgb.chunks_exact(3).take(plane).enumerate() {
        r[i] = px[0] as f32;
        g[i] = px[1] as f32;
        b[i] = px[2] as f32;
    }
    Array4::from_shape_vec((1, 3, h, w), data).expect("shape matches length")
}

/// A loaded CenterFace model: one ONNX Runtime session (sessions are not shared between threads).
pub struct CenterFace {
    session: Session,
    name: String,
    resizer: fir::Resizer,
    /// Run options for large passes, made on first use.
    shrink: Option<ort::session::RunOptions>,
    /// Most same-size passes run at once.
    batch: usize,
    /// Shared session for large passes, if any.
    large: Option<SharedSession>,
    /// Sessions by input shape, shared by every worker (GPUs; [`crate::shape_sessions`]).
    by_shape: Option<Arc<ShapeSessions>>,
    /// Whether large passes wait for [`crate::runtime::large_pass_gate`]: on the CPU, where
    /// their activations set the peak memory; not on a GPU, whose sessions run their own passes.
    gated: bool,
}

impl std::fmt::Debug for CenterFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CenterFace")
            .field("name", &self.name)
            .finish()
    }
}

impl CenterFace {
    pub fn new(session: Session, name: impl Into<String>) -> Self {
        Self {
            session,
            name: name.into(),
            resizer: fir::Resizer::new(),
            shrink: None,
            batch: 1,
            large: None,
            by_shape: None,
            gated: true,
        }
    }

    /// Runs every pass on the session `pool` keeps for its input shape (batches padded to a
    /// power of two) instead of this worker's own: for GPUs, where a session that changes shape
    /// re-plans every convolution ([`crate::shape_sessions`]).
    pub fn with_shape_sessions(mut self, pool: Arc<ShapeSessions>) -> Self {
        self.by_shape = Some(pool);
        self
    }

    /// Large passes run on this session without waiting for the others' (for GPU sessions:
    /// their activations are in GPU memory, and the passes of several sessions overlap there).
    pub fn ungated(mut self) -> Self {
        self.gated = false;
        self
    }

    /// Runs up to this many same-size passes of one image (the tiles of the fine pass) as one
    /// batch. 1 (the default) is best on CPU; larger batches keep a GPU busy.
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Runs the network on a prepared input tensor of batch 1 and decodes it (network-input
    /// pixels, no NMS).
    pub fn run_tensor(
        &mut self,
        input: &Array4<f32>,
        threshold: f32,
    ) -> Result<Vec<(BBox, f32)>, DetectError> {
        Ok(self
            .run_batch(input, threshold)?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    /// Runs the network on an `[N,3,H,W]` tensor and decodes each of the N images.
    ///
    /// A large pass (over [`runtime::SHRINK_ABOVE_PIXELS`](crate::runtime::SHRINK_ABOVE_PIXELS)
    /// per image: the coarse pass of a big photo, or a single-scale pass) runs one at a time in
    /// the process, and the arena memory it grew is handed back when it ends. A very large one
    /// (over [`runtime::SHARED_ABOVE_PIXELS`](crate::runtime::SHARED_ABOVE_PIXELS): a native
    /// single-scale pass of a big photo) runs on the shared multi-threaded session when one was
    /// given ([`CenterFace::with_large_pass_session`]). Every other pass runs on this worker's
    /// own session.
    pub fn run_batch(
        &mut self,
        input: &Array4<f32>,
        threshold: f32,
    ) -> Result<Vec<Vec<(BBox, f32)>>, DetectError> {
        if let Some(pool) = &self.by_shape {
            return run_on_shape_session(pool, input, threshold);
        }
        // Per image of the batch: batches of tiles are an explicit request for more memory.
        let pixels = input.shape()[2] * input.shape()[3];
        if pixels <= crate::runtime::SHRINK_ABOVE_PIXELS {
            return run_and_decode(&mut self.session, None, input, threshold);
        }
        if self.shrink.is_none() {
            self.shrink = Some(crate::runtime::shrink_options().map_err(inference)?);
        }
        let opts = self.shrink.as_ref();
        match &self.large {
            Some(shared) if pixels > crate::runtime::SHARED_ABOVE_PIXELS => {
                // No shrinkage here: this is the only session that runs such passes, so keeping
                // its arena costs no more than the peak, and giving it back after every pass
                // measured ~0.4 s of page faults per 12 MP photo.
                let mut session = shared.lock().unwrap_or_else(|p| p.into_inner());
                run_and_decode(&mut session, None, input, threshold)
            }
            _ => {
                let _one_at_a_time = self.gated.then(crate::runtime::large_pass_gate);
                run_and_decode(&mut self.session, opts, input, threshold)
            }
        }
    }

    /// Sends large passes to `session`, shared by every worker of the process behind a lock. Made
    /// with as many intra-op threads as there are workers, it uses the whole machine for the one
    /// large pass running while the other workers go on with tiles, decoding and encoding.
    pub fn with_large_pass_session(mut self, session: SharedSession) -> Self {
        self.large = Some(session);
        self
    }

    /// Detects faces in an upright RGB image following `policy`; boxes in image pixels.
    /// Passes of the same network size (the tiles of the fine pass) run as batches of up to
    /// `batch`.
    pub fn detect(
        &mut self,
        img: &RgbImage,
        policy: &DetectPolicy,
    ) -> Result<Vec<Detection>, DetectError> {
        self.detect_many(&[img], policy)
            .pop()
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Detects faces in several upright RGB images, one result per image in order. Passes of the
    /// same network size, of one image (the tiles of the fine pass) or of several (photos of one
    /// size, which is most of a typical dataset), run together as batches of up to `batch`.
    ///
    /// Passes are never padded, cropped or resized to share a batch: each image's detections are
    /// those of [`CenterFace::detect`] on it alone (to float rounding), whatever else is in the
    /// call, so the batch is an execution setting like the device and is not recorded. A batch
    /// that fails fails only the images with a pass in it.
    pub fn detect_many(
        &mut self,
        imgs: &[&RgbImage],
        policy: &DetectPolicy,
    ) -> Vec<Result<Vec<Detection>, DetectError>> {
        let plans: Vec<Vec<Pass>> = imgs
            .iter()
            .map(|i| plan_passes(i.width(), i.height(), policy, SIZE_MULTIPLE))
            .collect();
        let mut per_pass: Vec<Vec<Vec<Detection>>> =
            plans.iter().map(|p| vec![Vec::new(); p.len()]).collect();
        let mut failed: Vec<Option<String>> = vec![None; imgs.len()];
        for chunk in batches_by_size(&plans, self.batch) {
            let chunk: Vec<(usize, usize)> = chunk
                .into_iter()
                .filter(|&(i, _)| failed[i].is_none())
                .collect();
            if chunk.is_empty() {
                continue;
            }
            let members: Vec<(&RgbImage, &Pass)> = chunk
                .iter()
                .map(|&(i, k)| (imgs[i], &plans[i][k]))
                .collect();
            match self.run_passes(&members, policy.threshold as f32) {
                // One result per pass, or the batch fails (never a pass without its result).
                Ok(found) if found.len() != chunk.len() => {
                    for &(i, _) in &chunk {
                        failed[i] = Some(format!(
                            "internal: {} results for a batch of {} passes",
                            found.len(),
                            chunk.len()
                        ));
                    }
                }
                Ok(found) => {
                    for (&(i, k), found) in chunk.iter().zip(found) {
                        per_pass[i][k] = self.to_detections(imgs[i], &plans[i][k], found, policy);
                    }
                }
                Err(e) => {
                    for &(i, _) in &chunk {
                        failed[i] = Some(e.to_string());
                    }
                }
            }
        }
        per_pass
            .into_iter()
            .zip(failed)
            .zip(plans.iter().zip(imgs))
            .map(|((passes, failed), (plan, img))| match failed {
                Some(reason) => Err(DetectError::Inference { reason }),
                None => Ok(merge_passes(
                    plan,
                    passes,
                    img.width(),
                    img.height(),
                    policy.nms_iou as f32,
                )),
            })
            .collect()
    }

    /// Runs passes of one network size (of any images) and decodes each (network-input pixels).
    fn run_passes(
        &mut self,
        members: &[(&RgbImage, &Pass)],
        threshold: f32,
    ) -> Result<Vec<Vec<(BBox, f32)>>, DetectError> {
        if let [(img, pass)] = members {
            let input = preprocess(img, pass, &mut self.resizer)?;
            return Ok(vec![self.run_tensor(&input, threshold)?]);
        }
        let input = preprocess_members(members, &mut self.resizer)?;
        self.run_batch(&input, threshold)
    }

    /// One pass's boxes in image pixels, after the pass's own NMS.
    fn to_detections(
        &self,
        img: &RgbImage,
        pass: &Pass,
        found: Vec<(BBox, f32)>,
        policy: &DetectPolicy,
    ) -> Vec<Detection> {
        let dets: Vec<Detection> = found
            .into_iter()
            .map(|(b, score)| Detection {
                bbox: pass
                    .to_source(b)
                    .clipped(img.width() as f32, img.height() as f32)
                    .rounded(),
                score: (score * 10_000.0).round() / 10_000.0,
                class: ObjectClass::Face,
                model: self.name.clone(),
            })
            .collect();
        nms(dets, policy.nms_iou as f32)
    }
}

/// Whether `b` (source pixels) ends on an edge of `pass`'s crop that lies inside the image, so
/// that the face may go on beyond it: the network boxes only what it sees, and a face cut by a
/// tile's inner edge gets a box that stops there (measured on the small-face stress set: such
/// boxes cover about half of their face).
pub fn cut_by_inner_edge(b: &BBox, pass: &Pass, image_w: f32, image_h: f32) -> bool {
    // Within one output cell (STRIDE network pixels, at least one source pixel): a box clipped
    // at the crop's edge ends exactly on it, and one the network stopped short of the edge ends
    // within a cell of it (seen on the stress set: 1 source pixel at 2x).
    let near = (STRIDE as f64 * pass.w / pass.net_w.max(1) as f64).max(1.0) as f32;
    let (x0, y0) = (pass.x as f32, pass.y as f32);
    let (x1, y1) = ((pass.x + pass.w) as f32, (pass.y + pass.h) as f32);
    (x0 > near && b.x1 - x0 < near)
        || (y0 > near && b.y1 - y0 < near)
        || (x1 < image_w - near && x1 - b.x2 < near)
        || (y1 < image_h - near && y1 - b.y2 < near)
}

/// Merges the detections of all passes of one `image_w x image_h` image (`per_pass[k]` from
/// `plan[k]`): greedy NMS by score, except that a box cut by an inner edge of its tile
/// ([`cut_by_inner_edge`]) ranks after every whole box. A face seen whole by another tile or by
/// the coarse pass is then obfuscated by that whole box, even when the cut view scored higher; a
/// face only ever seen cut keeps its cut box. The result is sorted by score.
pub fn merge_passes(
    plan: &[Pass],
    per_pass: Vec<Vec<Detection>>,
    image_w: u32,
    image_h: u32,
    iou: f32,
) -> Vec<Detection> {
    let (mut whole, mut cut) = (Vec::new(), Vec::new());
    for (pass, dets) in plan.iter().zip(per_pass) {
        for d in dets {
            if cut_by_inner_edge(&d.bbox, pass, image_w as f32, image_h as f32) {
                cut.push(d);
            } else {
                whole.push(d);
            }
        }
    }
    let mut kept = nms(whole, iou);
    cut.sort_by(veil_core::by_score);
    for d in cut {
        if !kept
            .iter()
            .any(|k| k.class == d.class && k.bbox.iou(&d.bbox) > iou)
        {
            kept.push(d);
        }
    }
    kept.sort_by(veil_core::by_score);
    kept
}

/// Most network-input pixels of one batch: 32 fine tiles of 1024x1024 (a 400 MB input tensor),
/// but only two native passes of 12 MP photos, whatever `--batch` says.
pub const MAX_BATCH_PIXELS: u64 = 32 * 1024 * 1024;

/// Groups the passes of several images, as `(image, pass)` indices, into batches of at most
/// `batch` passes of one network size, and at most [`MAX_BATCH_PIXELS`] in all (always at least
/// one pass): sizes in order of first appearance, and within a size in image order, then pass
/// order. With one image this is [`same_size_runs`] whenever equal sizes are consecutive (the
/// fine pass's tiles are) and small enough.
pub fn batches_by_size(plans: &[Vec<Pass>], batch: usize) -> Vec<Vec<(usize, usize)>> {
    // (network size, its passes as (image, pass)), sizes in order of first appearance.
    type Members = Vec<(usize, usize)>;
    let mut sizes: Vec<((u32, u32), Members)> = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        for (k, pass) in plan.iter().enumerate() {
            let key = (pass.net_w, pass.net_h);
            match sizes.iter_mut().find(|(s, _)| *s == key) {
                Some((_, members)) => members.push((i, k)),
                None => sizes.push((key, vec![(i, k)])),
            }
        }
    }
    sizes
        .into_iter()
        .flat_map(|((w, h), members)| {
            let fit = (MAX_BATCH_PIXELS / (u64::from(w) * u64::from(h)).max(1)).max(1);
            let n = batch.max(1).min(usize::try_from(fit).unwrap_or(usize::MAX));
            members.chunks(n).map(|c| c.to_vec()).collect::<Vec<_>>()
        })
        .collect()
}

/// A session shared between workers (see [`CenterFace::with_large_pass_session`]).
pub type SharedSession = std::sync::Arc<std::sync::Mutex<Session>>;

fn inference(e: ort::Error) -> DetectError {
    DetectError::Inference {
        reason: e.to_string(),
    }
}

/// The heatmap's `(h, w)` when its shape is what [`decode`] expects for a batch of `n` inputs of
/// `in_h x in_w`: `[n, 1, in_h / 4, in_w / 4]` (stride 4). Any other size would place the boxes
/// in the wrong spots, so it is an error, never a guess.
pub fn heatmap_size(
    shape: &[i64],
    n: usize,
    in_h: usize,
    in_w: usize,
) -> Result<(usize, usize), String> {
    match shape {
        [b, _, h, w] if *b as usize == n && (*h as usize, *w as usize) == (in_h / 4, in_w / 4) => {
            Ok((*h as usize, *w as usize))
        }
        _ => Err(format!(
            "heatmap has shape {shape:?} for a batch of {n} at {in_w}x{in_h} (stride 4 gives [{n}, 1, {}, {}])",
            in_h / 4,
            in_w / 4
        )),
    }
}

/// Runs `input` on the pool's session for its padded shape; the padding's results are dropped.
fn run_on_shape_session(
    pool: &ShapeSessions,
    input: &Array4<f32>,
    threshold: f32,
) -> Result<Vec<Vec<(BBox, f32)>>, DetectError> {
    let shape = padded_shape(input.shape());
    let session = pool.session_for(shape)?;
    let mut session = session.lock().unwrap_or_else(|p| p.into_inner());
    let n = input.shape()[0];
    if shape[0] == n {
        return run_and_decode(&mut session, None, input, threshold);
    }
    let mut padded = Array4::<f32>::zeros(shape);
    padded.slice_mut(ndarray::s![..n, .., .., ..]).assign(input);
    let mut found = run_and_decode(&mut session, None, &padded, threshold)?;
    found.truncate(n);
    Ok(found)
}

/// Runs `session` on an `[N,3,H,W]` tensor and decodes each of the N images.
fn run_and_decode(
    session: &mut Session,
    opts: Option<&ort::session::RunOptions>,
    input: &Array4<f32>,
    threshold: f32,
) -> Result<Vec<Vec<(BBox, f32)>>, DetectError> {
    let n = input.shape()[0];
    let tensor = TensorRef::from_array_view(input).map_err(inference)?;
    let outputs = match opts {
        Some(o) => session.run_with_options(ort::inputs!["input.1" => tensor], o),
        None => session.run(ort::inputs!["input.1" => tensor]),
    }
    .map_err(inference)?;
    let get = |name: &str| -> Result<(Vec<i64>, &[f32]), DetectError> {
        let v = outputs.get(name).ok_or_else(|| DetectError::Inference {
            reason: format!("model has no output `{name}`"),
        })?;
        let (shape, data) = v.try_extract_tensor::<f32>().map_err(inference)?;
        Ok((shape.to_vec(), data))
    };
    let (hs, heat) = get("537")?;
    let (_, scale) = get("538")?;
    let (_, offset) = get("539")?;
    let (in_h, in_w) = (input.shape()[2], input.shape()[3]);
    let (h, w) =
        heatmap_size(&hs, n, in_h, in_w).map_err(|reason| DetectError::Inference { reason })?;
    let plane = h * w;
    if heat.len() < n * plane || scale.len() < 2 * n * plane || offset.len() < 2 * n * plane {
        return Err(DetectError::Inference {
            reason: format!("outputs too short for a batch of {n} at {w}x{h}"),
        });
    }
    Ok((0..n)
        .map(|k| {
            decode(
                &heat[k * plane..(k + 1) * plane],
                &scale[2 * k * plane..2 * (k + 1) * plane],
                &offset[2 * k * plane..2 * (k + 1) * plane],
                h,
                w,
                threshold,
            )
        })
        .collect())
}

/// Splits passes into runs of consecutive passes with the same network size, each at most
/// `batch` long (the fine pass's tiles share one size; the coarse pass stands alone).
pub fn same_size_runs(passes: &[Pass], batch: usize) -> Vec<&[Pass]> {
    let batch = batch.max(1);
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=passes.len() {
        let split = i == passes.len()
            || i - start == batch
            || (passes[i].net_w, passes[i].net_h) != (passes[start].net_w, passes[start].net_h);
        if split {
            runs.push(&passes[start..i]);
            start = i;
        }
    }
    runs
}

/// Fills an `[N,3,H,W]` tensor from N passes, each of its own image, all of the same network
/// size (a pass of another size is an error, never resized to fit).
pub fn preprocess_members(
    members: &[(&RgbImage, &Pass)],
    resizer: &mut fir::Resizer,
) -> Result<Array4<f32>, DetectError> {
    let Some((_, first)) = members.first() else {
        return Err(DetectError::Preprocess {
            reason: "empty batch".into(),
        });
    };
    let (nw, nh) = (first.net_w as usize, first.net_h as usize);
    let mut batch = Array4::<f32>::zeros((members.len(), 3, nh, nw));
    for (k, (img, pass)) in members.iter().enumerate() {
        if (pass.net_w as usize, pass.net_h as usize) != (nw, nh) {
            return Err(DetectError::Preprocess {
                reason: format!(
                    "batched passes differ in size: {}x{} and {nw}x{nh}",
                    pass.net_w, pass.net_h
                ),
            });
        }
        let one = preprocess(img, pass, resizer)?;
        batch
            .slice_mut(ndarray::s![k..k + 1, .., .., ..])
            .assign(&one);
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pass of network size `w x 32`.
    fn p(w: u32) -> Pass {
        Pass {
            x: 0.0,
            y: 0.0,
            w: w as f64,
            h: 32.0,
            net_w: w,
            net_h: 32,
        }
    }

    fn face(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> Detection {
        Detection {
            bbox: BBox::new(x1, y1, x2, y2),
            score,
            class: ObjectClass::Face,
            model: "m".into(),
        }
    }

    /// Two 2x tiles of a 640x480 image, side by side: source x 0..400 and 240..640.
    fn two_tiles() -> [Pass; 2] {
        let tile = |x: f64| Pass {
            x,
            y: 0.0,
            w: 400.0,
            h: 480.0,
            net_w: 800,
            net_h: 960,
        };
        [tile(0.0), tile(240.0)]
    }

    #[test]
    fn a_box_on_a_tiles_inner_edge_is_cut_and_one_on_the_image_edge_is_not() {
        let [left, right] = two_tiles();
        // The left tile's right edge (x = 400) lies inside the image.
        assert!(cut_by_inner_edge(
            &BBox::new(380.0, 100.0, 400.0, 124.0),
            &left,
            640.0,
            480.0
        ));
        // Within one output cell (4 network px = 2 source px) of it.
        assert!(cut_by_inner_edge(
            &BBox::new(380.0, 100.0, 398.5, 124.0),
            &left,
            640.0,
            480.0
        ));
        assert!(!cut_by_inner_edge(
            &BBox::new(370.0, 100.0, 390.0, 124.0),
            &left,
            640.0,
            480.0
        ));
        // Its left edge is the image's: a face there is cut by the photo, not by the tile.
        assert!(!cut_by_inner_edge(
            &BBox::new(0.0, 100.0, 20.0, 124.0),
            &left,
            640.0,
            480.0
        ));
        // The right tile's left edge (x = 240) is inside; its top and bottom are the image's.
        assert!(cut_by_inner_edge(
            &BBox::new(240.0, 100.0, 260.0, 124.0),
            &right,
            640.0,
            480.0
        ));
        assert!(!cut_by_inner_edge(
            &BBox::new(300.0, 456.0, 320.0, 480.0),
            &right,
            640.0,
            480.0
        ));
    }

    /// A face across x = 400: the left tile sees it cut (higher score, only its left part), the
    /// right tile sees it whole. Plain NMS would keep the cut box and leave the face's right part
    /// unobfuscated; the merge keeps the whole one.
    #[test]
    fn the_whole_view_of_a_face_wins_over_a_higher_scoring_cut_view() {
        let tiles = two_tiles();
        let cut = face(385.0, 100.0, 400.0, 124.0, 0.9);
        let whole = face(385.0, 100.0, 405.0, 124.0, 0.6);
        let elsewhere = face(100.0, 300.0, 120.0, 324.0, 0.7);
        let merged = merge_passes(
            &tiles,
            vec![vec![cut.clone(), elsewhere.clone()], vec![whole.clone()]],
            640,
            480,
            0.3,
        );
        assert_eq!(merged, vec![elsewhere.clone(), whole.clone()]);
        // Seen only cut, the cut box is kept: never less than before.
        let merged = merge_passes(&tiles, vec![vec![cut.clone()], vec![]], 640, 480, 0.3);
        assert_eq!(merged, vec![cut.clone()]);
        // Whole boxes among themselves: plain NMS by score.
        let better = face(386.0, 101.0, 406.0, 125.0, 0.8);
        let merged = merge_passes(
            &tiles,
            vec![vec![], vec![whole, better.clone()]],
            640,
            480,
            0.3,
        );
        assert_eq!(merged, vec![better]);
    }

    #[test]
    fn same_size_runs_split_on_size_and_batch() {
        let passes = [p(64), p(32), p(32), p(32), p(32), p(32), p(64)];
        let lens = |b| {
            same_size_runs(&passes, b)
                .iter()
                .map(|r| r.len())
                .collect::<Vec<_>>()
        };
        assert_eq!(lens(1), vec![1; 7]);
        assert_eq!(lens(2), vec![1, 2, 2, 1, 1]);
        assert_eq!(lens(8), vec![1, 5, 1]);
        assert_eq!(lens(0), vec![1; 7], "0 means 1");
        assert!(same_size_runs(&[], 4).is_empty());
    }

    #[test]
    fn batches_by_size_groups_passes_of_several_images_by_size() {
        // Two photos of one size (coarse 64, three 32 tiles) and one of another (a lone 96).
        let plans = vec![
            vec![p(64), p(32), p(32), p(32)],
            vec![p(96)],
            vec![p(64), p(32), p(32), p(32)],
        ];
        let got = batches_by_size(&plans, 4);
        assert_eq!(
            got,
            vec![
                vec![(0, 0), (2, 0)],
                vec![(0, 1), (0, 2), (0, 3), (2, 1)],
                vec![(2, 2), (2, 3)],
                vec![(1, 0)],
            ]
        );
        // Every pass exactly once, at any batch size; one image alone matches same_size_runs.
        for b in [0, 1, 2, 3, 8] {
            let mut all: Vec<_> = batches_by_size(&plans, b).concat();
            all.sort();
            assert_eq!(all.len(), 9);
            all.dedup();
            assert_eq!(all.len(), 9);
            let one: Vec<usize> = batches_by_size(&plans[..1], b)
                .iter()
                .map(|c| c.len())
                .collect();
            let runs: Vec<usize> = same_size_runs(&plans[0], b)
                .iter()
                .map(|r| r.len())
                .collect();
            assert_eq!(one, runs, "batch {b}");
        }
    }

    #[test]
    fn a_batch_never_exceeds_its_pixel_cap() {
        // Native passes of 12 MP photos (4000x3008): two per batch whatever --batch says;
        // fine tiles of 1024x1024: all 32 of a --batch 32.
        let native = Pass {
            x: 0.0,
            y: 0.0,
            w: 4000.0,
            h: 3008.0,
            net_w: 4000,
            net_h: 3008,
        };
        let tile = Pass {
            net_w: 1024,
            net_h: 1024,
            ..native
        };
        let plans = vec![vec![native]; 5];
        let lens: Vec<usize> = batches_by_size(&plans, 32).iter().map(Vec::len).collect();
        assert_eq!(lens, [2, 2, 1]);
        let plans = vec![vec![tile; 4]; 10];
        let lens: Vec<usize> = batches_by_size(&plans, 32).iter().map(Vec::len).collect();
        assert_eq!(lens, [32, 8]);
        // A single pass over the cap still runs, alone.
        let huge = Pass {
            net_w: 8192,
            net_h: 8192,
            ..native
        };
        let lens: Vec<usize> = batches_by_size(&[vec![huge; 2]], 8)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(lens, [1, 1]);
    }

    #[test]
    fn a_heatmap_of_another_size_or_batch_is_an_error() {
        assert_eq!(heatmap_size(&[2, 1, 120, 160], 2, 480, 640), Ok((120, 160)));
        assert!(
            heatmap_size(&[2, 1, 60, 80], 2, 480, 640).is_err(),
            "stride 8"
        );
        assert!(
            heatmap_size(&[1, 1, 120, 160], 2, 480, 640).is_err(),
            "batch"
        );
        assert!(heatmap_size(&[2, 120, 160], 2, 480, 640).is_err(), "rank");
    }

    /// A synthetic output with one peak: checks centre, size and offset conventions.
    #[test]
    fn decode_places_box_from_index_offset_and_log_scale() {
        let (h, w) = (8, 10);
        let plane = h * w;
        let mut heat = vec![0.0; plane];
        let mut scale = vec![0.0; 2 * plane];
        let mut offset = vec![0.0; 2 * plane];
        let i = 3 * w + 5; // y=3, x=5
        heat[i] = 0.9;
        scale[i] = (16.0f32 / 4.0).ln(); // box_h = 16
        scale[plane + i] = (8.0f32 / 4.0).ln(); // box_w = 8
        offset[i] = 0.25; // y
        offset[plane + i] = -0.5; // x
        let d = decode(&heat, &scale, &offset, h, w, 0.5);
        assert_eq!(d.len(), 1);
        let (b, s) = d[0];
        assert_eq!(s, 0.9);
        let cx = (5.0 - 0.5 + 0.5) * 4.0;
        let cy = (3.0 + 0.25 + 0.5) * 4.0;
        assert!((b.x1 - (cx - 4.0)).abs() < 1e-4 && (b.x2 - (cx + 4.0)).abs() < 1e-4);
        assert!((b.y1 - (cy - 8.0)).abs() < 1e-4 && (b.y2 - (cy + 8.0)).abs() < 1e-4);
    }

    #[test]
    fn decode_applies_threshold_and_clips_to_input() {
        let (h, w) = (4, 4);
        let plane = h * w;
        let mut heat = vec![0.3; plane];
        heat[0] = 0.8;
        let mut scale = vec![0.0; 2 * plane];
        scale[0] = 10.0f32.ln(); // 40 px box at the corner: clipped
        scale[plane] = 10.0f32.ln();
        let offset = vec![0.0; 2 * plane];
        let d = decode(&heat, &scale, &offset, h, w, 0.5);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0.x1, 0.0);
        assert_eq!(d[0].0.x2, 16.0);
        assert_eq!(decode(&heat, &scale, &offset, h, w, 0.2).len(), plane);
    }

    #[test]
    fn decode_rejects_short_buffers_instead_of_panicking() {
        assert!(decode(&[0.9], &[0.0], &[0.0], 4, 4, 0.5).is_empty());
    }

    /// Regression: float rounding in tile plans once put crops a hair outside 12 MP images.
    #[test]
    fn every_planned_pass_of_awkward_sizes_can_be_prepared() {
        let mut resizer = fir::Resizer::new();
        for (w, h) in [(3098, 3873), (4164, 2882)] {
            let img = RgbImage::new(w, h);
            for pass in plan_passes(w, h, &DetectPolicy::default(), SIZE_MULTIPLE) {
                let t = preprocess(&img, &pass, &mut resizer)
                    .unwrap_or_else(|e| panic!("{w}x{h} {pass:?}: {e}"));
                assert_eq!(t.shape(), &[1, 3, pass.net_h as usize, pass.net_w as usize]);
            }
        }
    }

    #[test]
    fn nchw_layout_puts_channels_in_planes() {
        let rgb = [1u8, 2, 3, 4, 5, 6];
        let t = hwc_to_nchw(&rgb, 2, 1);
        assert_eq!(t.shape(), &[1, 3, 1, 2]);
        assert_eq!(t[[0, 0, 0, 1]], 4.0);
        assert_eq!(t[[0, 1, 0, 0]], 2.0);
        assert_eq!(t[[0, 2, 0, 1]], 6.0);
    }
}
