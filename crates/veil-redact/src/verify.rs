//! Checks that an encoded output really hides what the detectors found.

use crate::effects::block_of;
use crate::region::{measure_rect, validate_params, PixRect, Region};
use crate::RedactError;
use image::RgbImage;
use veil_core::{BBox, Mode, RedactParams};

/// A blurred or pixelated core passes when its high-frequency energy is at most
/// `RedactParams::max_hf_ratio` of the original's (this by default: faces) ...
pub const HF_MAX_RATIO: f64 = 0.5;
/// ... or below this absolute value (flat regions cannot lose energy they never had).
pub const HF_ENERGY_FLOOR: f64 = 2.0;
/// A pixelated core also passes when its pixels deviate from their block's mean luma by at most
/// this on average and by at most half as much as the source did (the signature of pixelation,
/// whatever the content; lossy re-encoding rings a little inside blocks). Pixelating a flat area
/// adds block edges, so the energy test alone can fail on it.
pub const PIXELATE_TOLERANCE: f64 = 6.0;

/// Mean absolute deviation of luma from the mean of its pixelation block, over `r` minus `exclude`.
fn block_deviation(
    img: &RgbImage,
    r: PixRect,
    anchor: (i64, i64),
    side: usize,
    exclude: &[BBox],
) -> f64 {
    use std::collections::HashMap;
    let luma = |x: usize, y: usize| {
        let [cr, cg, cb] = img.get_pixel(x as u32, y as u32).0;
        0.299 * cr as f64 + 0.587 * cg as f64 + 0.114 * cb as f64
    };
    let keep = |x: usize, y: usize| {
        !exclude
            .iter()
            .any(|e| e.contains(x as f32 + 0.5, y as f32 + 0.5))
    };
    let mut blocks: HashMap<(i128, i128), (f64, u64)> = HashMap::new();
    for y in r.y0..r.y1 {
        for x in r.x0..r.x1 {
            if keep(x, y) {
                let e = blocks
                    .entry((block_of(x, anchor.0, side), block_of(y, anchor.1, side)))
                    .or_default();
                e.0 += luma(x, y);
                e.1 += 1;
            }
        }
    }
    let (mut sum, mut n) = (0.0, 0u64);
    for y in r.y0..r.y1 {
        for x in r.x0..r.x1 {
            if keep(x, y) {
                let (s, c) = blocks[&(block_of(x, anchor.0, side), block_of(y, anchor.1, side))];
                sum += (luma(x, y) - s / c as f64).abs();
                n += 1;
            }
        }
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Pixels this close to the edge of a pixelation block are left out of the in-block measures.
pub const BLOCK_MARGIN: usize = 2;

/// A filled core passes when its mean absolute difference from the fill colour (over pixels and
/// channels) is at most this, leaving room for lossy re-encoding.
pub const FILL_TOLERANCE: f64 = 8.0;

/// Mean absolute second difference of luma (BT.601) along rows and columns, at a step of 2 px, over pixel
/// triplets whose centres lie inside `rect` (clipped to the image). 0 when the rect holds no such pair or
/// has a NaN coordinate.
pub fn high_frequency_energy(img: &RgbImage, rect: BBox) -> f64 {
    let r = measure_rect(&rect, img.width() as usize, img.height() as usize);
    hf_energy(img, r, None, &[])
}

/// Luma HF energy over `r`; with `grid = Some((anchor, side))` only pairs whose two pixels lie in
/// the same pixelation block count (detail *inside* blocks, ignoring block edges).
/// Triplets touching a pixel inside any `exclude` rectangle are skipped.
fn hf_energy(
    img: &RgbImage,
    r: PixRect,
    grid: Option<((i64, i64), usize)>,
    exclude: &[BBox],
) -> f64 {
    let (w, h) = (r.width(), r.height());
    if w == 0 || h == 0 {
        return 0.0;
    }
    let luma: Vec<f64> = (r.y0..r.y1)
        .flat_map(|y| (r.x0..r.x1).map(move |x| (x, y)))
        .map(|(x, y)| {
            let [cr, cg, cb] = img.get_pixel(x as u32, y as u32).0;
            0.299 * cr as f64 + 0.587 * cg as f64 + 0.114 * cb as f64
        })
        .collect();
    // With a grid, pixels within BLOCK_MARGIN of a block's edge (in blocks of at least
    // 6 x BLOCK_MARGIN) get an id of their own, so no triplet uses them: lossy re-encoding rings
    // next to the hard edge between two blocks, which is no detail of the source.
    let ids = |lo: usize, hi: usize, anchor: i64, s: usize| -> Vec<i128> {
        let m = if s >= 6 * BLOCK_MARGIN {
            BLOCK_MARGIN
        } else {
            0
        };
        (lo..hi)
            .map(|v| {
                let pos = (v as i64 - anchor).rem_euclid(s as i64) as usize;
                if pos >= m && pos + m < s {
                    block_of(v, anchor, s)
                } else {
                    i128::MIN + v as i128
                }
            })
            .collect()
    };
    let (col_block, row_block): (Vec<i128>, Vec<i128>) = match grid {
        Some(((ax, ay), s)) => (ids(r.x0, r.x1, ax, s), ids(r.y0, r.y1, ay, s)),
        None => (vec![0; w], vec![0; h]),
    };
    // Second differences at a step of D pixels (a band-pass Laplacian along each axis): a blur
    // removes them almost entirely, even across a single strong edge, where first differences
    // would survive; the step of 2 keeps the measure in a band that lossy re-encoding preserves.
    const D: usize = 2;
    let mut sum = 0.0;
    let mut count = 0u64;
    for y in 0..h {
        for x in 0..w {
            let v = luma[y * w + x];
            let excluded = |dx: usize, dy: usize| {
                let (px, py) = ((r.x0 + x + dx) as f32 + 0.5, (r.y0 + y + dy) as f32 + 0.5);
                exclude.iter().any(|e| e.contains(px, py))
            };
            if !exclude.is_empty() && excluded(0, 0) {
                continue;
            }
            if x + 2 * D < w
                && col_block[x] == col_block[x + 2 * D]
                && (exclude.is_empty() || !(excluded(D, 0) || excluded(2 * D, 0)))
            {
                sum += (v - 2.0 * luma[y * w + x + D] + luma[y * w + x + 2 * D]).abs();
                count += 1;
            }
            if y + 2 * D < h
                && row_block[y] == row_block[y + 2 * D]
                && (exclude.is_empty() || !(excluded(0, D) || excluded(0, 2 * D)))
            {
                sum += (v - 2.0 * luma[(y + D) * w + x] + luma[(y + 2 * D) * w + x]).abs();
                count += 1;
            }
        }
    }
    if count == 0 {
        0.0
    } else {
        sum / count as f64
    }
}

/// Checks that `output` (typically the re-encoded and decoded result of [`crate::redact_rgb8`])
/// obfuscates every region of `original`.
///
/// For each region the *core* is measured: the central 50% (in each axis) of the scaled box,
/// which lies inside the ellipse too. Regions whose core is empty after clipping are skipped.
/// - `Blur`: the core's [`high_frequency_energy`] must be at most `params.max_hf_ratio` of the
///   original's, or below [`HF_ENERGY_FLOOR`].
/// - `Pixelate`: the same test, passed either on all pairs or on pairs inside one block (block
///   edges are real detail-free steps and would otherwise count as detail).
/// - `Fill`: mean absolute difference from `fill_rgb` at most [`FILL_TOLERANCE`].
pub fn verify_obfuscated(
    original: &RgbImage,
    output: &RgbImage,
    regions: &[BBox],
    params: &RedactParams,
) -> Result<(), RedactError> {
    verify_obfuscated_except(original, output, regions, params, &[])
}

/// As [`verify_obfuscated`], ignoring pixels inside `exclude` (areas a later obfuscation with
/// other parameters painted over, such as a face inside a pixelated person; those areas
/// are verified with their own parameters).
pub fn verify_obfuscated_except(
    original: &RgbImage,
    output: &RgbImage,
    regions: &[BBox],
    params: &RedactParams,
    exclude: &[BBox],
) -> Result<(), RedactError> {
    validate_params(params)?;
    if original.dimensions() != output.dimensions() {
        return Err(RedactError::DimensionMismatch {
            original_w: original.width(),
            original_h: original.height(),
            output_w: output.width(),
            output_h: output.height(),
        });
    }
    let (w, h) = (original.width() as usize, original.height() as usize);
    let prepared = regions
        .iter()
        .enumerate()
        .map(|(i, b)| Region::new(i, b, params, w, h))
        .collect::<Result<Vec<_>, _>>()?;
    // Pixelation of overlapping regions: a later region re-pixelates on its own grid what it
    // covers, so those pixels are verified as part of it, not on an earlier region's grid.
    let rects: Vec<Option<BBox>> = prepared
        .iter()
        .map(|r| {
            r.as_ref().map(|r| {
                let q = r.rect;
                BBox::new(q.x0 as f32, q.y0 as f32, q.x1 as f32, q.y1 as f32)
            })
        })
        .collect();
    for (index, region) in prepared.iter().enumerate() {
        let Some(region) = region else {
            continue;
        };
        let core = region.core(w, h);
        if core.is_empty() {
            continue;
        }
        let with_later: Vec<BBox>;
        let exclude = if params.mode == Mode::Pixelate && index + 1 < rects.len() {
            with_later = exclude
                .iter()
                .copied()
                .chain(rects[index + 1..].iter().flatten().copied())
                .collect();
            &with_later[..]
        } else {
            exclude
        };
        match params.mode {
            Mode::Fill => {
                let mut sum = 0u64;
                let mut n = 0u64;
                for y in core.y0..core.y1 {
                    for x in core.x0..core.x1 {
                        let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                        if exclude.iter().any(|e| e.contains(px, py)) {
                            continue;
                        }
                        let px = output.get_pixel(x as u32, y as u32).0;
                        for (v, f) in px.iter().zip(params.fill_rgb) {
                            sum += v.abs_diff(f) as u64;
                        }
                        n += 3;
                    }
                }
                let mean_abs_diff = if n == 0 { 0.0 } else { sum as f64 / n as f64 };
                if mean_abs_diff > FILL_TOLERANCE {
                    return Err(RedactError::NotFilled {
                        index,
                        fill_rgb: params.fill_rgb,
                        mean_abs_diff,
                        tolerance: FILL_TOLERANCE,
                    });
                }
            }
            Mode::Blur | Mode::Pixelate => {
                let ratio = params.max_hf_ratio;
                let passes = |orig: f64, out: f64| out <= ratio * orig || out < HF_ENERGY_FLOOR;
                let original_energy = hf_energy(original, core, None, exclude);
                let output_energy = hf_energy(output, core, None, exclude);
                let mut ok = passes(original_energy, output_energy);
                if !ok && params.mode == Mode::Pixelate {
                    let grid = Some((region.anchor(), region.strength()));
                    ok = passes(
                        hf_energy(original, core, grid, exclude),
                        hf_energy(output, core, grid, exclude),
                    ) || {
                        let (anchor, side) = (region.anchor(), region.strength());
                        let out_dev = block_deviation(output, core, anchor, side, exclude);
                        let orig_dev = block_deviation(original, core, anchor, side, exclude);
                        out_dev <= PIXELATE_TOLERANCE && out_dev <= ratio * orig_dev
                    };
                }
                if !ok {
                    return Err(RedactError::NotObfuscated {
                        index,
                        original_energy,
                        output_energy,
                        max_ratio: ratio,
                        floor: HF_ENERGY_FLOOR,
                    });
                }
            }
        }
    }
    Ok(())
}
