//! Geometry of one region: the scaled box, its feather band, the pixel rectangle the work is
//! confined to, and the per-pixel mask weight.

use crate::RedactError;
use veil_core::{BBox, RedactParams, Shape, StrengthBasis};

/// A half-open rectangle of whole pixels `[x0, x1) x [y0, y1)`, already clipped to the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PixRect {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl PixRect {
    pub fn width(&self) -> usize {
        self.x1.saturating_sub(self.x0)
    }

    pub fn height(&self) -> usize {
        self.y1.saturating_sub(self.y0)
    }

    pub fn is_empty(&self) -> bool {
        self.width() == 0 || self.height() == 0
    }
}

/// `[lo, hi)` in image coordinates mapped to whole pixels and clipped to `[0, n]`; NaN maps to 0.
/// `floor_ceil` selects the covering span (floor/ceil) instead of the rounded one.
fn span(lo: f64, hi: f64, n: usize, floor_ceil: bool) -> (usize, usize) {
    let (lo, hi) = if floor_ceil {
        (lo.floor(), hi.ceil())
    } else {
        (lo.round(), hi.round())
    };
    let clip = |v: f64| {
        if v.is_nan() {
            0
        } else {
            v.clamp(0.0, n as f64) as usize
        }
    };
    let (a, b) = (clip(lo), clip(hi));
    (a, b.max(a))
}

/// The pixels whose centres lie (roughly) inside `b`, clipped to a `w x h` image; empty when a
/// coordinate is NaN.
pub(crate) fn measure_rect(b: &BBox, w: usize, h: usize) -> PixRect {
    if [b.x1, b.y1, b.x2, b.y2].iter().any(|v| v.is_nan()) {
        return PixRect {
            x0: 0,
            y0: 0,
            x1: 0,
            y1: 0,
        };
    }
    let (x0, x1) = span(b.x1 as f64, b.x2 as f64, w, false);
    let (y0, y1) = span(b.y1 as f64, b.y2 as f64, h, false);
    PixRect { x0, y0, x1, y1 }
}

/// `b` grown by `factor` about its centre, exactly as [`BBox::scaled`] but in `f64` so that huge
/// boxes cannot overflow. Inverted boxes collapse to zero size at their centre.
pub(crate) fn scaled_f64(b: &BBox, factor: f64) -> [f64; 4] {
    let (x1, y1, x2, y2) = (b.x1 as f64, b.y1 as f64, b.x2 as f64, b.y2 as f64);
    let cx = (x1 + x2) * 0.5;
    let cy = (y1 + y2) * 0.5;
    let hw = (x2 - x1).max(0.0) * 0.5 * factor;
    let hh = (y2 - y1).max(0.0) * 0.5 * factor;
    [cx - hw, cy - hh, cx + hw, cy + hh]
}

/// Checks the parameters every operation relies on.
pub(crate) fn validate_params(params: &RedactParams) -> Result<(), RedactError> {
    if !params.box_scale.is_finite() || params.box_scale <= 0.0 {
        return Err(RedactError::InvalidParams {
            field: "box_scale",
            value: params.box_scale,
            reason: "must be finite and > 0",
        });
    }
    if !params.feather.is_finite() || params.feather < 0.0 {
        return Err(RedactError::InvalidParams {
            field: "feather",
            value: params.feather,
            reason: "must be finite and >= 0",
        });
    }
    if !params.strength_divisor.is_finite() || params.strength_divisor < 1.0 {
        return Err(RedactError::InvalidParams {
            field: "strength_divisor",
            value: params.strength_divisor,
            reason: "must be finite and >= 1",
        });
    }
    if !params.max_hf_ratio.is_finite() || params.max_hf_ratio <= 0.0 || params.max_hf_ratio > 1.0 {
        return Err(RedactError::InvalidParams {
            field: "max_hf_ratio",
            value: params.max_hf_ratio,
            reason: "must be in (0, 1]",
        });
    }
    Ok(())
}

/// One detection box prepared for obfuscation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    /// Scaled box `x1, y1, x2, y2` in image coordinates (may extend past the image).
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
    /// Width of the soft edge outside the shape, in pixels (>= 1).
    pub feather: f64,
    pub shape: Shape,
    /// Blur radius and pixelation block side (see [`Region::strength`]).
    strength: usize,
    /// Pixels the region can touch: scaled box plus feather band, clipped to the image.
    pub rect: PixRect,
}

impl Region {
    /// Prepares `bbox` (detection number `index`) for a `w x h` image. `Ok(None)` when there is
    /// nothing to do: the scaled box has no area or lies wholly outside the image.
    pub fn new(
        index: usize,
        bbox: &BBox,
        params: &RedactParams,
        w: usize,
        h: usize,
    ) -> Result<Option<Region>, RedactError> {
        if ![bbox.x1, bbox.y1, bbox.x2, bbox.y2]
            .iter()
            .all(|v| v.is_finite())
        {
            return Err(RedactError::NonFiniteRegion { index, bbox: *bbox });
        }
        let [x1, y1, x2, y2] = scaled_f64(bbox, params.box_scale);
        let (bw, bh) = (x2 - x1, y2 - y1);
        if bw <= 0.0 || bh <= 0.0 || !bw.is_finite() || !bh.is_finite() {
            return Ok(None);
        }
        let feather = (params.feather * bw.min(bh)).max(1.0);
        let (rx0, rx1) = span(x1 - feather, x2 + feather, w, true);
        let (ry0, ry1) = span(y1 - feather, y2 + feather, h, true);
        let rect = PixRect {
            x0: rx0,
            y0: ry0,
            x1: rx1,
            y1: ry1,
        };
        if rect.is_empty() {
            return Ok(None);
        }
        let side = match params.strength_basis {
            StrengthBasis::Short => bw.min(bh),
            StrengthBasis::Long => bw.max(bh),
        };
        // Whole pixels, saturating; `ceil(side / divisor)`, at least 4.
        let strength = ((side.floor() / params.strength_divisor).ceil() as usize).max(4);
        Ok(Some(Region {
            x1,
            y1,
            x2,
            y2,
            feather,
            shape: params.shape,
            strength,
            rect,
        }))
    }

    /// Blur radius and pixelate block side: `max(4, ceil(side / strength_divisor))` with `side`
    /// the scaled box's short or long side in whole pixels (`strength_basis`).
    pub fn strength(&self) -> usize {
        self.strength
    }

    /// The central 50% (per axis) of the scaled box, as whole pixels clipped to a `w x h` image.
    pub fn core(&self, w: usize, h: usize) -> PixRect {
        let qw = (self.x2 - self.x1) * 0.25;
        let qh = (self.y2 - self.y1) * 0.25;
        let (x0, x1) = span(self.x1 + qw, self.x2 - qw, w, false);
        let (y0, y1) = span(self.y1 + qh, self.y2 - qh, h, false);
        PixRect { x0, y0, x1, y1 }
    }

    /// Top-left pixel of the scaled box (may lie outside the image): the pixelate grid origin.
    pub fn anchor(&self) -> (i64, i64) {
        (self.x1.floor() as i64, self.y1.floor() as i64)
    }

    /// The mask over [`Region::rect`]; see [`Mask::weight`].
    pub fn mask(&self) -> Mask {
        let f = self.feather;
        let (a, b) = ((self.x2 - self.x1) * 0.5, (self.y2 - self.y1) * 0.5);
        let (cx, cy) = (self.x1 + a, self.y1 + b);
        let r = self.rect;
        // Per-axis terms, sampled at pixel centres; the weight combines one column and one row.
        let axis = |p0: usize, p1: usize, lo: f64, hi: f64, c: f64, half: f64| -> Vec<[f64; 2]> {
            (p0..p1)
                .map(|p| {
                    let v = p as f64 + 0.5;
                    match self.shape {
                        // Distance outside the box along this axis.
                        Shape::Box => [(lo - v).max(v - hi).max(0.0), 0.0],
                        // Squared normalised offsets for the ellipse and the feather ellipse.
                        Shape::Ellipse => {
                            let d = v - c;
                            [(d / half).powi(2), (d / (half + f)).powi(2)]
                        }
                    }
                })
                .collect()
        };
        Mask {
            shape: self.shape,
            feather: f,
            cols: axis(r.x0, r.x1, self.x1, self.x2, cx, a),
            rows: axis(r.y0, r.y1, self.y1, self.y2, cy, b),
        }
    }
}

/// Mask weights of one region over its rectangle, from per-column and per-row tables.
#[derive(Debug, Clone)]
pub(crate) struct Mask {
    shape: Shape,
    feather: f64,
    cols: Vec<[f64; 2]>,
    rows: Vec<[f64; 2]>,
}

impl Mask {
    /// Weight in `[0, 1]` of the pixel at `(x, y)` relative to the region's rectangle, sampled at
    /// its centre: 1 inside the shape, falling linearly to 0 across the feather band outside it.
    /// For the ellipse the ramp runs along the ray from the centre, between the ellipse and the
    /// same ellipse with both semi-axes grown by the feather width.
    pub fn weight(&self, x: usize, y: usize) -> f32 {
        let (c, r) = (self.cols[x], self.rows[y]);
        let w = match self.shape {
            Shape::Box => {
                if c[0] == 0.0 && r[0] == 0.0 {
                    return 1.0;
                }
                1.0 - (c[0] * c[0] + r[0] * r[0]).sqrt() / self.feather
            }
            Shape::Ellipse => {
                let r_in2 = c[0] + r[0];
                if r_in2 <= 1.0 {
                    return 1.0;
                }
                let r_out2 = c[1] + r[1];
                if r_out2 >= 1.0 {
                    return 0.0;
                }
                let (r_in, r_out) = (r_in2.sqrt(), r_out2.sqrt());
                r_in * (1.0 - r_out) / (r_in - r_out)
            }
        };
        if w.is_nan() {
            0.0
        } else {
            w.clamp(0.0, 1.0) as f32
        }
    }
}
