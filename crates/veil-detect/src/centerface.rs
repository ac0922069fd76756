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

use crate::scales::{plan_passes, DetectPolicy, Pass};
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
        }
    }

    /// Runs the network on a prepared input tensor and decodes it (network-input pixels, no NMS).
    pub fn run_tensor(
        &mut self,
        input: &Array4<f32>,
        threshold: f32,
    ) -> Result<Vec<(BBox, f32)>, DetectError> {
        let infer = |e: ort::Error| DetectError::Inference {
            reason: e.to_string(),
        };
        let tensor = TensorRef::from_array_view(input).map_err(infer)?;
        let outputs = self
            .session
            .run(ort::inputs!["input.1" => tensor])
            .map_err(infer)?;
        let get = |name: &str| -> Result<(Vec<i64>, &[f32]), DetectError> {
            let v = outputs.get(name).ok_or_else(|| DetectError::Inference {
                reason: format!("model has no output `{name}`"),
            })?;
            let (shape, data) = v.try_extract_tensor::<f32>().map_err(infer)?;
            Ok((shape.to_vec(), data))
        };
        let (hs, heat) = get("537")?;
        let (_, scale) = get("538")?;
        let (_, offset) = get("539")?;
        if hs.len() != 4 {
            return Err(DetectError::Inference {
                reason: format!("heatmap has shape {hs:?}"),
            });
        }
        let (h, w) = (hs[2] as usize, hs[3] as usize);
        Ok(decode(heat, scale, offset, h, w, threshold))
    }

    /// Detects faces in an upright RGB image following `policy`; boxes in image pixels.
    pub fn detect(
        &mut self,
        img: &RgbImage,
        policy: &DetectPolicy,
    ) -> Result<Vec<Detection>, DetectError> {
        let mut all = Vec::new();
        for pass in plan_passes(img.width(), img.height(), policy, SIZE_MULTIPLE) {
            let input = preprocess(img, &pass, &mut self.resizer)?;
            let found = self.run_tensor(&input, policy.threshold as f32)?;
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
            all.extend(nms(dets, policy.nms_iou as f32));
        }
        Ok(nms(all, policy.nms_iou as f32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
