//! Obfuscation of image regions for veil. This crate owns everything that happens to pixels once
//! the detectors have spoken: growing each detection box by `box_scale`, building its mask
//! (ellipse or box, with a linear feather band *outside* the shape so the fully covered core is the
//! whole shape), computing the effect (size-proportional blur, pixelation or solid fill) on the
//! region's own rectangle only, and compositing it into RGB or RGBA buffers deterministically. It
//! also owns the check that the output really is obfuscated ([`verify_obfuscated`]). It does no
//! I/O and never prints.
//!
//! Exact rules (see [`redact_rgb8`]): with `s = max(4, ceil(side / d))` for the scaled box
//! `w x h`, where `side` is `min(w, h)` or `max(w, h)` (`strength_basis`: short for faces, long
//! for persons, whose height identifies them) and `d` is `strength_divisor`, blur is three box
//! passes of radius `s` per axis (≈ Gaussian with σ ≈ `s`) and pixelate uses square blocks of
//! side `s` anchored at the scaled box's top-left pixel.

mod effects;
mod region;
mod verify;

use region::{validate_params, Region};
use veil_core::{BBox, Mode, RedactParams};

pub use verify::{
    high_frequency_energy, verify_obfuscated, verify_obfuscated_except, FILL_TOLERANCE,
    HF_ENERGY_FLOOR, HF_MAX_RATIO,
};

/// Why a redaction or a verification failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RedactError {
    /// A parameter is outside its domain (e.g. `box_scale <= 0`, NaN feather).
    #[error("invalid redaction parameter {field} = {value}: {reason}")]
    InvalidParams {
        field: &'static str,
        value: f64,
        reason: &'static str,
    },
    /// A region has a NaN or infinite coordinate; it cannot be located, so nothing is done.
    #[error("region {index} has a non-finite coordinate: {bbox:?}")]
    NonFiniteRegion { index: usize, bbox: BBox },
    /// The output image does not have the original's dimensions.
    #[error("output is {output_w}x{output_h} but the original is {original_w}x{original_h}")]
    DimensionMismatch {
        original_w: u32,
        original_h: u32,
        output_w: u32,
        output_h: u32,
    },
    /// The core of a blurred or pixelated region still carries most of its detail.
    #[error(
        "region {index} is not obfuscated: high-frequency energy in its core is {output_energy:.3} \
         vs {original_energy:.3} in the original (needs <= {max_ratio} x original or < {floor})"
    )]
    NotObfuscated {
        index: usize,
        original_energy: f64,
        output_energy: f64,
        max_ratio: f64,
        floor: f64,
    },
    /// The core of a filled region is not the fill colour.
    #[error(
        "region {index} is not filled: mean absolute difference of its core from {fill_rgb:?} \
         is {mean_abs_diff:.3} (max {tolerance})"
    )]
    NotFilled {
        index: usize,
        fill_rgb: [u8; 3],
        mean_abs_diff: f64,
        tolerance: f64,
    },
}

/// Obfuscates `regions` of an RGB image in place.
///
/// Each region is a detection box in image pixels; it is grown by `params.box_scale` about its
/// centre, masked by `params.shape` (ellipse inscribed in the scaled box, or the box itself) plus
/// a linear feather band of width `max(1, params.feather * min(w, h))` outside the shape, and
/// clipped to the image. Regions are applied in the given order (a later region sees the result
/// of earlier ones). Boxes with no area or lying outside the image are skipped; boxes with a
/// non-finite coordinate are an error, reported before any pixel is changed.
pub fn redact_rgb8(
    img: &mut image::RgbImage,
    regions: &[BBox],
    params: &RedactParams,
) -> Result<(), RedactError> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let buf: &mut [u8] = img;
    redact_interleaved::<3>(&mut buf[..w * h * 3], w, h, regions, params)
}

/// Obfuscates `regions` of an RGBA image in place; see [`redact_rgb8`] for the geometry.
///
/// Colour is processed straight (not premultiplied), so RGB stored under transparent pixels is
/// never mixed by alpha. Alpha outside the regions is untouched; inside, it is raised toward 255 by
/// the mask weight `m` (`a' = a + m * (255 - a)`), so the obfuscated core is fully opaque.
pub fn redact_rgba8(
    img: &mut image::RgbaImage,
    regions: &[BBox],
    params: &RedactParams,
) -> Result<(), RedactError> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let buf: &mut [u8] = img;
    redact_interleaved::<4>(&mut buf[..w * h * 4], w, h, regions, params)
}

/// The shared core over an interleaved 8-bit buffer of `CH` (3: RGB, 4: RGBA) bytes per pixel;
/// the first three are colour, a fourth is alpha.
fn redact_interleaved<const CH: usize>(
    buf: &mut [u8],
    w: usize,
    h: usize,
    regions: &[BBox],
    params: &RedactParams,
) -> Result<(), RedactError> {
    debug_assert!(CH == 3 || CH == 4);
    debug_assert_eq!(buf.len(), w * h * CH);
    validate_params(params)?;
    // Validate every region first so that an error leaves the image untouched.
    let prepared = regions
        .iter()
        .enumerate()
        .map(|(i, b)| Region::new(i, b, params, w, h))
        .collect::<Result<Vec<_>, _>>()?;
    for region in prepared.iter().flatten() {
        apply_region::<CH>(buf, w, region, params);
    }
    Ok(())
}

/// Computes the effect on the region's rectangle (colour only) and composites it with the mask
/// weight; alpha, when present, is raised toward 255 by the same weight.
fn apply_region<const CH: usize>(buf: &mut [u8], w: usize, region: &Region, params: &RedactParams) {
    let rect = region.rect;
    let (rw, rh) = (rect.width(), rect.height());
    let row_range = |y: usize| (y * w + rect.x0) * CH..(y * w + rect.x1) * CH;
    let effect: Vec<u8> = match params.mode {
        // One row of the fill colour, reused for every row.
        Mode::Fill => params.fill_rgb.repeat(rw),
        Mode::Blur | Mode::Pixelate => {
            let mut data = Vec::with_capacity(rw * rh * 3);
            for y in rect.y0..rect.y1 {
                let row = &buf[row_range(y)];
                if CH == 3 {
                    data.extend_from_slice(row);
                } else {
                    for px in row.chunks_exact(CH) {
                        data.extend_from_slice(&px[..3]);
                    }
                }
            }
            if params.mode == Mode::Blur {
                effects::blur3(&mut data, rw, rh, region.strength());
            } else {
                effects::pixelate(&mut data, rect, region.anchor(), region.strength());
            }
            data
        }
    };
    let mask = region.mask();
    for (ry, y) in (rect.y0..rect.y1).enumerate() {
        let erow = match params.mode {
            Mode::Fill => &effect[..],
            _ => &effect[ry * rw * 3..(ry + 1) * rw * 3],
        };
        let row = &mut buf[row_range(y)];
        for (rx, (px, e)) in row
            .chunks_exact_mut(CH)
            .zip(erow.chunks_exact(3))
            .enumerate()
        {
            let m = mask.weight(rx, ry);
            if m >= 1.0 {
                px[..3].copy_from_slice(e);
                if CH == 4 {
                    px[3] = 255;
                }
            } else if m > 0.0 {
                for c in 0..3 {
                    px[c] = mix(px[c], e[c], m);
                }
                if CH == 4 {
                    px[3] = mix(px[3], 255, m);
                }
            }
        }
    }
}

/// `o + m * (e - o)` for `m` in `(0, 1)`, rounded half up.
#[inline]
fn mix(o: u8, e: u8, m: f32) -> u8 {
    let (o, e) = (o as f32, e as f32);
    // A convex combination of two bytes: in [0, 255], so truncating after +0.5 rounds.
    (o + (e - o) * m + 0.5) as u8
}

#[cfg(test)]
mod tests;
