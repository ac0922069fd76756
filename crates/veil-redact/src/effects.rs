//! The obfuscating effects, each computed on a region's own rectangle (3 colour channels,
//! interleaved, row-major), never on the whole image.

use crate::region::PixRect;

/// Colour channels of the effect buffers.
const C: usize = 3;

/// Largest radius used by a pass. Beyond the line length the clamped window only repeats edge
/// samples anyway; the cap (a 65535-sample window, far beyond any real region) keeps the
/// fixed-point division below exact.
const MAX_RADIUS: usize = 32767;

/// Rounded division by the window size `d = 2r + 1` as a multiply and shift. Exact for every
/// window sum `n < 256 d`: with `2^k >= 256 d^2` and `m = floor(2^k / d) + 1`, `n m / 2^k`
/// exceeds `n / d` by less than `n / 2^k < 1 / d`, the distance from a non-integer `n / d` to the
/// next integer. `m < 2^32`, so the product is a 32x32->64 multiply that vectorises.
#[derive(Clone, Copy)]
struct Div {
    half: u32,
    mul: u64,
    shift: u32,
}

impl Div {
    fn new(r: usize) -> Div {
        debug_assert!(r <= MAX_RADIUS);
        let d = 2 * r as u64 + 1;
        let bits = 64 - (d - 1).leading_zeros();
        let shift = 8 + 2 * bits;
        Div {
            half: (d / 2) as u32,
            mul: (1u64 << shift) / d + 1,
            shift,
        }
    }

    #[inline]
    fn apply(self, sum: u32) -> u8 {
        (((sum + self.half) as u64 * self.mul) >> self.shift) as u8
    }
}

/// One box-blur pass of radius `r` along the rows of a `w`-wide, 3-channel interleaved buffer,
/// edges clamped; O(1) per sample via running sums over a copy of the row padded with `r`
/// (left) and `r + 1` (right) replicated edge pixels.
fn box_pass_rows(src: &[u8], dst: &mut [u8], w: usize, r: usize) {
    if w == 0 {
        return;
    }
    let r = r.min(w).min(MAX_RADIUS);
    let div = Div::new(r);
    let win = 2 * r + 1;
    let mut pad = vec![0u8; (w + win) * C];
    for (srow, drow) in src.chunks_exact(w * C).zip(dst.chunks_exact_mut(w * C)) {
        let (left, rest) = pad.split_at_mut(r * C);
        let (mid, right) = rest.split_at_mut(w * C);
        for p in left.chunks_exact_mut(C) {
            p.copy_from_slice(&srow[..C]);
        }
        mid.copy_from_slice(srow);
        for p in right.chunks_exact_mut(C) {
            p.copy_from_slice(&srow[(w - 1) * C..]);
        }
        let mut sum = [0u32; C];
        for p in pad[..win * C].chunks_exact(C) {
            for c in 0..C {
                sum[c] += p[c] as u32;
            }
        }
        let adds = pad[win * C..].chunks_exact(C);
        let subs = pad.chunks_exact(C);
        for ((out, add), sub) in drow.chunks_exact_mut(C).zip(adds).zip(subs) {
            for c in 0..C {
                out[c] = div.apply(sum[c]);
                sum[c] = sum[c] + add[c] as u32 - sub[c] as u32;
            }
        }
    }
}

/// One box-blur pass of radius `r` down the columns of a `w x h`, 3-channel interleaved buffer,
/// edges clamped; runs whole rows at a time so memory is read sequentially.
fn box_pass_cols(src: &[u8], dst: &mut [u8], w: usize, h: usize, r: usize) {
    if w == 0 || h == 0 {
        return;
    }
    let r = r.min(h).min(MAX_RADIUS);
    let div = Div::new(r);
    let last = h - 1;
    let n = w * C;
    let row = |y: usize| &src[y * n..(y + 1) * n];
    let mut sums: Vec<u32> = row(0).iter().map(|&v| (r as u32 + 1) * v as u32).collect();
    for j in 1..=r {
        for (s, &v) in sums.iter_mut().zip(row(j.min(last))) {
            *s += v as u32;
        }
    }
    for (y, drow) in dst.chunks_exact_mut(n).enumerate().take(h) {
        for (d, &s) in drow.iter_mut().zip(&sums) {
            *d = div.apply(s);
        }
        let (add, sub) = (row((y + r + 1).min(last)), row(y.saturating_sub(r)));
        for ((s, &a), &b) in sums.iter_mut().zip(add).zip(sub) {
            *s = *s + a as u32 - b as u32;
        }
    }
}

/// Three box-blur passes of radius `r` along rows, then along columns (≈ Gaussian, σ ≈ r),
/// in place on a `w x h` 3-channel interleaved buffer.
pub(crate) fn blur3(data: &mut [u8], w: usize, h: usize, r: usize) {
    let mut tmp = vec![0u8; data.len()];
    box_pass_rows(data, &mut tmp, w, r);
    box_pass_rows(&tmp, data, w, r);
    box_pass_rows(data, &mut tmp, w, r);
    box_pass_cols(&tmp, data, w, h, r);
    box_pass_cols(data, &mut tmp, w, h, r);
    box_pass_cols(&tmp, data, w, h, r);
}

/// Index of the block that image coordinate `v` falls in, for blocks of side `s` anchored at
/// `anchor`. `i128` so that saturated anchors of huge boxes cannot overflow.
pub(crate) fn block_of(v: usize, anchor: i64, s: usize) -> i128 {
    (v as i128 - anchor as i128).div_euclid(s as i128)
}

/// Replaces every pixel of the rect buffer (`rect`-sized, 3 channels) by the mean colour of its
/// block: squares of side `s` anchored at image coordinates `anchor`, clipped to `rect`.
pub(crate) fn pixelate(data: &mut [u8], rect: PixRect, anchor: (i64, i64), s: usize) {
    let (w, h) = (rect.width(), rect.height());
    if w == 0 || h == 0 {
        return;
    }
    let bx0 = block_of(rect.x0, anchor.0, s);
    let by0 = block_of(rect.y0, anchor.1, s);
    // Block indices relative to the first block touched; bounded by the rect size.
    let col: Vec<usize> = (0..w)
        .map(|x| (block_of(rect.x0 + x, anchor.0, s) - bx0) as usize)
        .collect();
    let row: Vec<usize> = (0..h)
        .map(|y| (block_of(rect.y0 + y, anchor.1, s) - by0) as usize)
        .collect();
    let nbx = col[w - 1] + 1;
    let nby = row[h - 1] + 1;
    let mut sums = vec![[0u64; C]; nbx * nby];
    let mut counts = vec![0u64; nbx * nby];
    for (y, &by) in row.iter().enumerate() {
        for (x, &bx) in col.iter().enumerate() {
            let k = by * nbx + bx;
            let p = (y * w + x) * C;
            for c in 0..C {
                sums[k][c] += data[p + c] as u64;
            }
            counts[k] += 1;
        }
    }
    let means: Vec<[u8; C]> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &n)| {
            let n = n.max(1);
            s.map(|v| ((v + n / 2) / n) as u8)
        })
        .collect();
    for (y, &by) in row.iter().enumerate() {
        for (x, &bx) in col.iter().enumerate() {
            let p = (y * w + x) * C;
            data[p..p + C].copy_from_slice(&means[by * nbx + bx]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive clamped-window mean along one axis, for comparison.
    fn naive(src: &[u8], w: usize, h: usize, r: usize, rows: bool) -> Vec<u8> {
        let n = if rows { w } else { h } as i64;
        let rr = r.min(n as usize) as i64;
        let d = (2 * rr + 1) as u64;
        let mut out = vec![0u8; src.len()];
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                for c in 0..C {
                    let s: u64 = (-rr..=rr)
                        .map(|k| {
                            let (sx, sy) = if rows {
                                ((x + k).clamp(0, n - 1), y)
                            } else {
                                (x, (y + k).clamp(0, n - 1))
                            };
                            src[(sy as usize * w + sx as usize) * C + c] as u64
                        })
                        .sum();
                    out[(y as usize * w + x as usize) * C + c] = ((s + d / 2) / d) as u8;
                }
            }
        }
        out
    }

    #[test]
    fn box_passes_match_naive_clamped_window() {
        let (w, h) = (37, 23);
        let src: Vec<u8> = (0..w * h * C)
            .map(|i| ((i * 97 + 13) % 256) as u8)
            .collect();
        for r in [0usize, 1, 2, 5, 22, 23, 36, 37, 100, usize::MAX] {
            let mut dst = vec![0u8; src.len()];
            box_pass_rows(&src, &mut dst, w, r);
            assert_eq!(dst, naive(&src, w, h, r, true), "rows r={r}");
            box_pass_cols(&src, &mut dst, w, h, r);
            assert_eq!(dst, naive(&src, w, h, r, false), "cols r={r}");
        }
    }

    #[test]
    fn blur_of_constant_is_constant() {
        let mut data = vec![77u8; 13 * 9 * 3];
        blur3(&mut data, 13, 9, 4);
        assert!(data.iter().all(|&v| v == 77));
    }
}
