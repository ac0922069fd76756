//! Perceptual hashes for veil. Two hashes are provided: PDQ, Meta's 256-bit perceptual hash with
//! a 0..=100 quality score (ThreatExchange; two hashes whose Hamming distance is at most
//! [`PDQ_MATCH_THRESHOLD`] are considered the same picture), and a 64-bit difference hash
//! (dHash) that is cheap to compute and easy to index. The pipeline records both hashes for the
//! source image and for the de-identified output, because redaction (blurring a large face, for
//! example) can move the output beyond the match threshold of its source.
//!
//! # PDQ
//!
//! [`pdq`] is a port of the reference C++ implementation (`pdq/cpp/hashing/pdqhashing.cpp` and
//! `pdq/cpp/downscaling/downscaling.cpp` in facebook/ThreatExchange), operation for operation in
//! `f32` so that it is bit-compatible with it: BT.601 luminance, two passes of the Jarosz
//! box-filter (tent) blur with window `ceil(dim / 128)`, decimation to 64x64 at the block
//! centres, the quality metric from the sum of quantised neighbour gradients, the 16x16 corner of
//! the 64x64 DCT-II (without the DC row and column), and one bit per coefficient that is greater
//! than the (Torben) median. Luminance is computed in `f64` and rounded to `f32`, which is what
//! the `pdqhash` PyPI wrapper of the reference code does; the reference command-line tool
//! computes it in `f32`, which can differ in the last bit of a few pixels (a hash difference of
//! 0, rarely 1 bit).
//!
//! The hash is computed on the full-size image. The reference *library* function
//! (`pdqHash256FromFloatLuma`, which the PyPI wrapper calls) does the same; the reference
//! *command-line tool* (`pdqHash256FromFile`) first resizes images larger than 512 pixels in
//! either dimension to exactly 512x512 with CImg's nearest-neighbour resize, which changes a few
//! bits. Callers that want speed on very large images may hash a downscaled copy (at least 512
//! pixels per side keeps the distance to the full-size hash small), but should do so
//! consistently for every image they compare.
//!
//! [`Pdq::to_hex`] writes the hash as 64 hex digits in the reference's order (the reference's
//! `Hash256::format`: 16-bit words from the last to the first, each most significant nibble
//! first). Bit `k` of the reference hash (DCT coefficient row `k / 16`, column `k % 16`) is bit
//! `k % 8` of byte `31 - k / 8` of [`Pdq::hash`].
//!
//! # dHash
//!
//! [`dhash`] converts the image to BT.601 luminance (`299 R + 587 G + 114 B`, in integers),
//! reduces it to 9 columns by 8 rows with an exact area average (each output cell is the mean of
//! the source pixels it covers, a partly covered pixel weighted by the covered fraction; all in
//! exact integer arithmetic, and no external resizer is involved, so the result does not depend
//! on an `image` version or on floating point), and sets one bit per horizontally adjacent pair:
//! bit
//! `63 - (8 * row + col)` is set when cell `col + 1` is brighter than cell `col`. In hex
//! ([`dhash_hex`], 16 digits) the first digit holds row 0, columns 0..4, which is the order of
//! the Python `imagehash` package (whose resize differs, so values are close but not equal).

use image::RgbImage;

/// Hamming distance at or below which two PDQ hashes are considered a match (the reference's
/// recommended threshold).
pub const PDQ_MATCH_THRESHOLD: u32 = 31;

/// Images smaller than this in either dimension get an all-zero hash with quality 0, as in the
/// reference.
const MIN_HASHABLE_DIM: usize = 5;
#[cfg(test)]
const PDQ_NUM_JAROSZ_XY_PASSES: usize = 2;

/// A PDQ hash and its quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pdq {
    /// The 256 hash bits, in the byte order of the reference's hex output.
    pub hash: [u8; 32],
    /// The reference's quality score, 0..=100. Hashes with quality below about 50 (flat or
    /// nearly flat images) are unreliable for matching.
    pub quality: u8,
}

impl Pdq {
    /// The hash as 64 lowercase hex digits, identical to the reference implementation's output.
    pub fn to_hex(&self) -> String {
        hex(&self.hash)
    }

    /// Parses 64 hex digits written by [`Pdq::to_hex`] (or the reference) into a hash.
    pub fn hash_from_hex(s: &str) -> Option<[u8; 32]> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            *o = (hi * 16 + lo) as u8;
        }
        Some(out)
    }

    /// Hamming distance to another PDQ hash.
    pub fn distance(&self, other: &Pdq) -> u32 {
        pdq_distance(&self.hash, &other.hash)
    }
}

/// Hamming distance between two PDQ hashes (0..=256; at most [`PDQ_MATCH_THRESHOLD`] is a match).
pub fn pdq_distance(a: &[u8; 32], b: &[u8; 32]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Computes the PDQ hash and quality of an image, on the full-size image (see the crate docs).
///
/// The Jarosz filter (row box, column box, twice) runs as a stream over the image's rows: each
/// column pass keeps only the rows inside its window, and only the 64 rows that the
/// decimation samples are kept at the end. Every value sees the same `f32` operations in the same
/// order as in the reference's full-image passes (the result is bit-identical; see the tests
/// against [`pdq_from_luma`]), in memory of a few dozen rows instead of two full-size `f32`
/// planes (96 MB for a 12 MP photo).
pub fn pdq(img: &RgbImage) -> Pdq {
    let (width, height) = (img.width() as usize, img.height() as usize);
    if width < MIN_HASHABLE_DIM || height < MIN_HASHABLE_DIM {
        return Pdq {
            hash: [0; 32],
            quality: 0,
        };
    }
    let luma_row = |y: usize| -> Vec<f32> {
        let raw = &img.as_raw()[y * width * 3..(y + 1) * width * 3];
        raw.chunks_exact(3)
            .map(|p| luma_601([p[0], p[1], p[2]]))
            .collect()
    };
    if width == 64 && height == 64 {
        let mut b64 = [[0f32; 64]; 64];
        for (i, row) in b64.iter_mut().enumerate() {
            row.copy_from_slice(&luma_row(i));
        }
        return pdq_from_block(&b64);
    }
    let win_rows = jarosz_window(width, 64);
    let win_cols = jarosz_window(height, 64);
    let sample_cols: Vec<usize> = (0..64)
        .map(|j| (((j as f64 + 0.5) * width as f64) / 64.0) as usize)
        .collect();
    let sample_rows: Vec<usize> = (0..64)
        .map(|i| (((i as f64 + 0.5) * height as f64) / 64.0) as usize)
        .collect();
    let mut b64 = [[0f32; 64]; 64];
    let mut scratch = vec![0f32; width];
    // Stages after the first row pass: column pass, row pass, column pass (passes = 2).
    let mut col1 = ColumnBox::new(height, width, win_cols);
    let mut col2 = ColumnBox::new(height, width, win_cols);
    let mut keep = |y: usize, row: &[f32]| {
        for (i, _) in sample_rows.iter().enumerate().filter(|(_, &r)| r == y) {
            for (j, &c) in sample_cols.iter().enumerate() {
                b64[i][j] = row[c];
            }
        }
    };
    // The second row pass, fed by the first column pass, feeding the second column pass.
    let mut row2 = vec![0f32; width];
    let mut second = |_: usize, row: &[f32]| {
        box_1d(row, &mut row2, win_rows);
        col2.push(&row2, &mut keep);
    };
    for y in 0..height {
        box_1d(&luma_row(y), &mut scratch, win_rows);
        col1.push(&scratch, &mut second);
    }
    col1.finish(&mut second);
    col2.finish(&mut keep);
    pdq_from_block(&b64)
}

/// The reference's column box pass over a stream of rows: rows go in in order, filtered rows come
/// out in order (to `emit`, with their index), and only the rows inside the window are held.
/// The running sums see the same `f32` operations as the reference's full-image column pass.
struct ColumnBox {
    ph: BoxPhases,
    sum: Vec<f32>,
    /// Rows `li..ri` (the oldest first).
    window: std::collections::VecDeque<Vec<f32>>,
    /// Row buffers that left the window, reused for the rows that enter it.
    spare: Vec<Vec<f32>>,
    pushed: usize,
    out_row: usize,
    cur: i32,
    out: Vec<f32>,
}

impl ColumnBox {
    fn new(rows: usize, cols: usize, window: usize) -> Self {
        Self {
            ph: BoxPhases::new(rows, window),
            sum: vec![0f32; cols],
            window: std::collections::VecDeque::with_capacity(window + 1),
            spare: Vec::new(),
            pushed: 0,
            out_row: 0,
            cur: 0,
            out: vec![0f32; cols],
        }
    }

    fn push(&mut self, row: &[f32], emit: &mut dyn FnMut(usize, &[f32])) {
        let n = self.pushed;
        self.pushed += 1;
        let (p1, p2, p3) = (self.ph.p1, self.ph.p2, self.ph.p3);
        if n < p1 {
            self.sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            self.cur += 1;
        } else if n < p1 + p2 {
            self.cur += 1;
            let d = self.cur as f32;
            for ((s, v), o) in self.sum.iter_mut().zip(row).zip(&mut self.out) {
                *s += v;
                *o = *s / d;
            }
            self.emit(emit);
        } else if n < p1 + p2 + p3 {
            let d = self.cur as f32;
            let left = self.window.pop_front().unwrap_or_default();
            for (((s, a), l), o) in self.sum.iter_mut().zip(row).zip(&left).zip(&mut self.out) {
                *s += a;
                *s -= l;
                *o = *s / d;
            }
            self.spare.push(left);
            self.emit(emit);
        } else {
            // More rows than planned: the reference never reads them.
            return;
        }
        let mut kept = self.spare.pop().unwrap_or_default();
        kept.clear();
        kept.extend_from_slice(row);
        self.window.push_back(kept);
    }

    /// The last phase: the window shrinks from the left.
    fn finish(&mut self, emit: &mut dyn FnMut(usize, &[f32])) {
        for _ in 0..self.ph.p4 {
            self.cur -= 1;
            let d = self.cur as f32;
            let left = self.window.pop_front().unwrap_or_default();
            for ((s, l), o) in self.sum.iter_mut().zip(&left).zip(&mut self.out) {
                *s -= l;
                *o = *s / d;
            }
            self.emit(emit);
        }
    }

    fn emit(&mut self, emit: &mut dyn FnMut(usize, &[f32])) {
        emit(self.out_row, &self.out);
        self.out_row += 1;
    }
}

/// PDQ of a row-major `width` x `height` luminance buffer (0.0..=255.0), which is used as
/// scratch: the reference's full-image passes, kept as the oracle of [`pdq`]'s streaming ones.
#[cfg(test)]
fn pdq_from_luma(luma: &mut [f32], width: usize, height: usize) -> Pdq {
    if width < MIN_HASHABLE_DIM || height < MIN_HASHABLE_DIM {
        return Pdq {
            hash: [0; 32],
            quality: 0,
        };
    }
    let mut b64 = [[0f32; 64]; 64];
    if width == 64 && height == 64 {
        for (i, row) in b64.iter_mut().enumerate() {
            row.copy_from_slice(&luma[i * 64..(i + 1) * 64]);
        }
    } else {
        let win_rows = jarosz_window(width, 64);
        let win_cols = jarosz_window(height, 64);
        let mut scratch = vec![0f32; luma.len()];
        for _ in 0..PDQ_NUM_JAROSZ_XY_PASSES {
            box_along_rows(luma, &mut scratch, height, width, win_rows);
            box_along_cols(&scratch, luma, height, width, win_cols);
        }
        // Decimate, sampling block centres.
        for (outi, row) in b64.iter_mut().enumerate() {
            let ini = (((outi as f64 + 0.5) * height as f64) / 64.0) as usize;
            for (outj, v) in row.iter_mut().enumerate() {
                let inj = (((outj as f64 + 0.5) * width as f64) / 64.0) as usize;
                *v = luma[ini * width + inj];
            }
        }
    }
    pdq_from_block(&b64)
}

/// Hash and quality of the decimated 64x64 block.
fn pdq_from_block(b64: &[[f32; 64]; 64]) -> Pdq {
    let quality = quality_metric(b64);
    let dct = dct64_to_16(b64);
    let median = torben(&dct);
    let mut hash = [0u8; 32];
    for (k, &v) in dct.iter().enumerate() {
        if v > median {
            hash[31 - k / 8] |= 1 << (k % 8);
        }
    }
    Pdq { hash, quality }
}

/// BT.601 luminance as the `pdqhash` PyPI wrapper computes it: in `f64`, rounded to `f32`.
fn luma_601([r, g, b]: [u8; 3]) -> f32 {
    (f64::from(r) * 0.299 + f64::from(g) * 0.587 + f64::from(b) * 0.114) as f32
}

fn jarosz_window(old_dim: usize, new_dim: usize) -> usize {
    old_dim.div_ceil(2 * new_dim)
}

/// Phase lengths of the reference's `box1DFloat`.
struct BoxPhases {
    p1: usize,
    p2: usize,
    p3: usize,
    p4: usize,
}

impl BoxPhases {
    fn new(len: usize, window: usize) -> Self {
        let half = (window + 2) / 2;
        Self {
            p1: half - 1,
            p2: window - half + 1,
            p3: len.saturating_sub(window),
            p4: half - 1,
        }
    }
}

/// The reference's `box1DFloat` on a contiguous vector.
fn box_1d(input: &[f32], out: &mut [f32], window: usize) {
    let ph = BoxPhases::new(input.len(), window);
    let (mut li, mut ri, mut oi) = (0usize, 0usize, 0usize);
    let mut sum = 0f32;
    let mut cur = 0i32;
    for _ in 0..ph.p1 {
        sum += input[ri];
        cur += 1;
        ri += 1;
    }
    for _ in 0..ph.p2 {
        sum += input[ri];
        cur += 1;
        out[oi] = sum / cur as f32;
        ri += 1;
        oi += 1;
    }
    for _ in 0..ph.p3 {
        sum += input[ri];
        sum -= input[li];
        out[oi] = sum / cur as f32;
        li += 1;
        ri += 1;
        oi += 1;
    }
    for _ in 0..ph.p4 {
        sum -= input[li];
        cur -= 1;
        out[oi] = sum / cur as f32;
        li += 1;
        oi += 1;
    }
}

#[cfg(test)]
fn box_along_rows(input: &[f32], out: &mut [f32], _rows: usize, cols: usize, window: usize) {
    for (i, o) in input.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        box_1d(i, o, window);
    }
}

/// The reference's column pass, run on whole rows at a time so that memory is read
/// sequentially. Every column sees exactly the same sequence of `f32` operations as in the
/// reference, so the result is bit-identical.
#[cfg(test)]
fn box_along_cols(input: &[f32], out: &mut [f32], rows: usize, cols: usize, window: usize) {
    let ph = BoxPhases::new(rows, window);
    let row = |r: usize| &input[r * cols..(r + 1) * cols];
    let mut sum = vec![0f32; cols];
    let (mut li, mut ri, mut oi) = (0usize, 0usize, 0usize);
    let mut cur = 0i32;
    for _ in 0..ph.p1 {
        sum.iter_mut().zip(row(ri)).for_each(|(s, v)| *s += v);
        cur += 1;
        ri += 1;
    }
    for _ in 0..ph.p2 {
        cur += 1;
        let d = cur as f32;
        let o = &mut out[oi * cols..(oi + 1) * cols];
        for ((s, v), o) in sum.iter_mut().zip(row(ri)).zip(o) {
            *s += v;
            *o = *s / d;
        }
        ri += 1;
        oi += 1;
    }
    let d = cur as f32;
    for _ in 0..ph.p3 {
        let o = &mut out[oi * cols..(oi + 1) * cols];
        for (((s, a), l), o) in sum.iter_mut().zip(row(ri)).zip(row(li)).zip(o) {
            *s += a;
            *s -= l;
            *o = *s / d;
        }
        li += 1;
        ri += 1;
        oi += 1;
    }
    for _ in 0..ph.p4 {
        cur -= 1;
        let d = cur as f32;
        let o = &mut out[oi * cols..(oi + 1) * cols];
        for ((s, l), o) in sum.iter_mut().zip(row(li)).zip(o) {
            *s -= l;
            *o = *s / d;
        }
        li += 1;
        oi += 1;
    }
}

/// The reference's `pdqImageDomainQualityMetric`.
fn quality_metric(b: &[[f32; 64]; 64]) -> u8 {
    let q = |u: f32, v: f32| ((((u - v) * 100.0) / 255.0) as i32).abs();
    let mut sum = 0i32;
    for (upper, lower) in b.iter().zip(&b[1..]) {
        for (&u, &v) in upper.iter().zip(lower) {
            sum += q(u, v);
        }
    }
    for row in b {
        for j in 0..63 {
            sum += q(row[j], row[j + 1]);
        }
    }
    (sum / 90).min(100) as u8
}

/// The 16x64 DCT matrix, computed as the reference does (`float` scale factor, `double`
/// cosine, rounded to `float`).
fn dct_matrix() -> [[f32; 64]; 16] {
    let scale = (2.0f64 / 64.0).sqrt() as f32;
    let mut d = [[0f32; 64]; 16];
    for (i, row) in d.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            let angle = (std::f64::consts::PI / 2.0 / 64.0) * (i + 1) as f64 * (2 * j + 1) as f64;
            *v = (f64::from(scale) * angle.cos()) as f32;
        }
    }
    d
}

/// `B = D A D^T`, keeping the reference's `f32` summation order.
fn dct64_to_16(a: &[[f32; 64]; 64]) -> [f32; 256] {
    let d = dct_matrix();
    let mut t = [[0f32; 64]; 16];
    for i in 0..16 {
        for j in 0..64 {
            let mut s = 0f32;
            for k in 0..64 {
                s += d[i][k] * a[k][j];
            }
            t[i][j] = s;
        }
    }
    let mut b = [0f32; 256];
    for i in 0..16 {
        for j in 0..16 {
            let mut s = 0f32;
            for k in 0..64 {
                s += t[i][k] * d[j][k];
            }
            b[i * 16 + j] = s;
        }
    }
    b
}

/// Torben's median, as in the reference (`torben.cpp`).
fn torben(m: &[f32]) -> f32 {
    let n = m.len();
    let half = n.div_ceil(2);
    let mut min = m.iter().copied().fold(m[0], f32::min);
    let mut max = m.iter().copied().fold(m[0], f32::max);
    loop {
        let guess = (min + max) / 2.0;
        let (mut less, mut greater, mut equal) = (0usize, 0usize, 0usize);
        let (mut maxlt, mut mingt) = (min, max);
        for &v in m {
            if v < guess {
                less += 1;
                if v > maxlt {
                    maxlt = v;
                }
            } else if v > guess {
                greater += 1;
                if v < mingt {
                    mingt = v;
                }
            } else {
                equal += 1;
            }
        }
        if less <= half && greater <= half {
            return if less >= half {
                maxlt
            } else if less + equal >= half {
                guess
            } else {
                mingt
            };
        } else if less > greater {
            max = maxlt;
        } else {
            min = mingt;
        }
    }
}

/// Computes the 64-bit difference hash (see the crate docs for the exact resize and bit order).
/// An empty image hashes to 0.
pub fn dhash(img: &RgbImage) -> u64 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return 0;
    }
    let xw = area_weights(w, 9);
    let yw = area_weights(h, 8);
    // Exact integer sums: every cell covers the same area, so sums compare like means.
    let mut cells = [[0u64; 9]; 8];
    let mut next_y = 0;
    for (y, row) in img.as_raw().chunks_exact(w * 3).enumerate() {
        let mut cols = [0u64; 9];
        for &(o, x, wt) in &xw {
            let p = &row[x * 3..x * 3 + 3];
            cols[o] += wt * (299 * u64::from(p[0]) + 587 * u64::from(p[1]) + 114 * u64::from(p[2]));
        }
        while next_y < yw.len() && yw[next_y].1 < y {
            next_y += 1;
        }
        for &(o, _, wt) in yw[next_y..].iter().take_while(|t| t.1 == y) {
            for (c, v) in cells[o].iter_mut().zip(cols) {
                *c += wt * v;
            }
        }
    }
    let mut bits = 0u64;
    for (r, row) in cells.iter().enumerate() {
        for c in 0..8 {
            if row[c + 1] > row[c] {
                bits |= 1 << (63 - (r * 8 + c));
            }
        }
    }
    bits
}

/// `(output cell, source index, weight)` triples, sorted by source index, of an exact
/// area-average resize of `src` samples to `dst` cells. Positions are in units of `1 / dst`
/// source pixel, so source pixel `x` spans `[x * dst, (x + 1) * dst)`, cell `o` spans
/// `[o * src, (o + 1) * src)`, and each weight is the integer overlap.
fn area_weights(src: usize, dst: usize) -> Vec<(usize, usize, u64)> {
    let mut out = Vec::new();
    for x in 0..src {
        let (a, b) = (x * dst, (x + 1) * dst);
        for o in a / src..=((b - 1) / src).min(dst - 1) {
            let cover = b.min((o + 1) * src).saturating_sub(a.max(o * src));
            if cover > 0 {
                out.push((o, x, cover as u64));
            }
        }
    }
    out
}

/// A dHash as 16 lowercase hex digits (most significant first).
pub fn dhash_hex(hash: u64) -> String {
    format!("{hash:016x}")
}

/// Hamming distance between two dHashes (0..=64).
pub fn dhash_distance(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests;
