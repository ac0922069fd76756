//! Multi-scale and tiling policy: which crops of an image are run through a detector, at which
//! network input size. Pure functions, no inference.
//!
//! Policy (recall first):
//! - **coarse pass**: the whole image, downscaled so its long side is at most `coarse_max_side`
//!   (never upscaled). Finds large and medium faces at any image size with bounded memory.
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
    let mut passes = vec![Pass {
        x: 0.0,
        y: 0.0,
        w: wf,
        h: hf,
        net_w: round_up(wf * coarse, multiple),
        net_h: round_up(hf * coarse, multiple),
    }];
    if policy.fine_scale <= 0.0 {
        return passes;
    }
    let budget = (policy.fine_max_pixels as f64 / (wf * hf).max(1.0)).sqrt();
    let fine = policy.fine_scale.min(budget);
    if fine < coarse * 1.25 {
        return passes;
    }
    let (sw, sh) = (wf * fine, hf * fine);
    let tile = policy.tile as f64;
    let overlap = policy.overlap as f64;
    for ty in tile_starts(sh, tile, overlap) {
        for tx in tile_starts(sw, tile, overlap) {
            let tw = tile.min(sw);
            let th = tile.min(sh);
            passes.push(Pass {
                x: tx / fine,
                y: ty / fine,
                w: tw / fine,
                h: th / fine,
                net_w: round_up(tw, multiple),
                net_h: round_up(th, multiple),
            });
        }
    }
    passes
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

    #[test]
    fn large_image_coarse_pass_is_downscaled_and_fine_pass_is_budgeted() {
        let policy = DetectPolicy::default();
        let p = plan_passes(4000, 3000, &policy, 32);
        assert!(p[0].net_w <= 1920 && p[0].net_w >= 1888);
        let fine_pixels: f64 = p[1..].iter().map(|t| t.w * t.h).sum::<f64>();
        assert!(fine_pixels >= 4000.0 * 3000.0, "fine tiles cover the image");
        for t in &p[1..] {
            assert!(t.net_w <= policy.tile && t.net_h <= policy.tile);
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
