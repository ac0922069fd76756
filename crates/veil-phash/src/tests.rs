#![allow(clippy::print_stderr)]

use super::*;
use image::Rgb;
use std::path::PathBuf;

/// Reference outputs of Meta's C++ implementation through the `pdqhash` 0.2.8 PyPI wrapper
/// (`pdqhash.compute` on the photo decoded to RGB by Pillow 13.0.0), hex in the reference's
/// order, and quality.
const REFERENCE: &[(&str, &str, u8)] = &[
    (
        "faces/bus.jpg",
        "20431750a8f4541b1532e28c1ebb95727b8157cd81de7ab857cbe2ec70f9547b",
        100,
    ),
    (
        "faces/zidane.jpg",
        "8da684626ad1209c7daa6f4b484675276e4d2b4ef13acd69d4c9f63f28e51b90",
        100,
    ),
    (
        "faces/t1.jpg",
        "2cb358b6baec3e14528ce25265bb4308b9e35c4362b1fd48180fc39d2bfc14ff",
        100,
    ),
    (
        "negatives/baboon.jpg",
        "8f3c64f76fa5e4d225c716c7e74097801f0d5278260dbb82f87c03dfc583f502",
        100,
    ),
    (
        "negatives/fruits.jpg",
        "5181e3bd6102cb1487b764289fcb0c317ce3da63c0d76fa636cfb666c93c09a3",
        100,
    ),
];

fn shared_images() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} not found (shared test data exists only on developer and CI machines)",
            dir.display()
        );
        None
    }
}

#[test]
fn pdq_matches_reference_on_shared_photos() {
    let Some(dir) = shared_images() else { return };
    for &(name, want_hex, want_q) in REFERENCE {
        let path = dir.join(name);
        let img = image::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .to_rgb8();
        let got = pdq(&img);
        let want = Pdq::hash_from_hex(want_hex).unwrap();
        let d = pdq_distance(&got.hash, &want);
        eprintln!(
            "{name}: {} q={} (reference q={want_q}), distance {d}",
            got.to_hex(),
            got.quality
        );
        assert!(d <= 4, "{name}: distance {d} to the reference");
        assert!(got.quality.abs_diff(want_q) <= 2, "{name}: quality");
    }
}

/// A deterministic photo-like image: smooth shapes, gradients and a little noise.
fn synthetic(w: u32, h: u32, seed: u32) -> RgbImage {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    let s = seed as f32;
    RgbImage::from_fn(w, h, |x, y| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = (state >> 24) as f32 / 255.0 * 12.0 - 6.0;
        let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
        let base = 128.0
            + 60.0 * ((u * (3.0 + s) + v * 2.0) * std::f32::consts::PI).sin()
            + 40.0 * ((v * (5.0 + 0.5 * s) - u) * std::f32::consts::PI).cos()
            + 30.0 * (((u - 0.3) * (u - 0.3) + (v - 0.6) * (v - 0.6)) < 0.04) as i32 as f32
            - 50.0 * u * v;
        let c = |k: f32| (base + k + noise).clamp(0.0, 255.0) as u8;
        Rgb([c(10.0 * s), c(0.0), c(-10.0)])
    })
}

/// Three passes of a separable box blur of `radius` (approximately Gaussian).
fn heavy_blur(img: &RgbImage, radius: i64) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut cur = img.clone();
    for _ in 0..3 {
        for horizontal in [true, false] {
            let src = cur.clone();
            for y in 0..h {
                for x in 0..w {
                    let mut acc = [0u32; 3];
                    let mut n = 0;
                    for t in -radius..=radius {
                        let (sx, sy) = if horizontal { (x + t, y) } else { (x, y + t) };
                        if (0..w).contains(&sx) && (0..h).contains(&sy) {
                            let p = src.get_pixel(sx as u32, sy as u32).0;
                            for c in 0..3 {
                                acc[c] += u32::from(p[c]);
                            }
                            n += 1;
                        }
                    }
                    cur.put_pixel(x as u32, y as u32, Rgb(acc.map(|a| (a / n) as u8)));
                }
            }
        }
    }
    cur
}

#[test]
fn identical_images_have_distance_zero() {
    let a = synthetic(320, 240, 1);
    let (p1, p2) = (pdq(&a), pdq(&a.clone()));
    assert_eq!(p1, p2);
    assert_eq!(p1.distance(&p2), 0);
    assert_eq!(dhash_distance(dhash(&a), dhash(&a.clone())), 0);
    assert!(p1.quality >= 50, "quality {}", p1.quality);
}

#[test]
fn small_brightness_change_is_a_match() {
    let a = synthetic(320, 240, 1);
    let mut b = a.clone();
    b.pixels_mut()
        .for_each(|p| p.0 = p.0.map(|c| c.saturating_add(8)));
    let d = pdq(&a).distance(&pdq(&b));
    assert!(d <= 10, "pdq distance {d}");
    let dd = dhash_distance(dhash(&a), dhash(&b));
    assert!(dd <= 4, "dhash distance {dd}");
}

#[test]
fn different_images_do_not_match() {
    let a = synthetic(320, 240, 1);
    let b = synthetic(320, 240, 4);
    let d = pdq(&a).distance(&pdq(&b));
    assert!(d > PDQ_MATCH_THRESHOLD, "pdq distance {d}");
    assert!(dhash_distance(dhash(&a), dhash(&b)) > 10);
}

#[test]
fn flat_image_has_low_quality() {
    let flat = RgbImage::from_pixel(200, 150, Rgb([90, 120, 140]));
    assert_eq!(pdq(&flat).quality, 0);
    // Identical neighbours set no dHash bits.
    assert_eq!(dhash(&flat), 0);
}

#[test]
fn tiny_image_hashes_to_zero() {
    let tiny = RgbImage::from_pixel(4, 100, Rgb([1, 2, 3]));
    assert_eq!(
        pdq(&tiny),
        Pdq {
            hash: [0; 32],
            quality: 0
        }
    );
    assert_eq!(dhash(&RgbImage::new(0, 0)), 0);
    // dHash works on images smaller than 9x8 (upsampling by area).
    let _ = dhash(&synthetic(3, 2, 1));
}

#[test]
fn heavy_blur_changes_the_hash() {
    let a = synthetic(256, 192, 2);
    let b = heavy_blur(&a, 12);
    let (pa, pb) = (pdq(&a), pdq(&b));
    let d = pa.distance(&pb);
    eprintln!(
        "heavy blur: pdq distance {d}, quality {} -> {}",
        pa.quality, pb.quality
    );
    assert!(d > 0, "pdq distance {d}");
    assert!(pb.quality <= pa.quality);
}

#[test]
fn hex_round_trips_and_has_reference_layout() {
    let mut hash = [0u8; 32];
    // Reference bit 0 (DCT row 0, column 0) is the lowest bit of the last byte; bit 255 the
    // highest bit of the first.
    hash[31] |= 1;
    hash[0] |= 0x80;
    let p = Pdq { hash, quality: 7 };
    let hex = p.to_hex();
    assert_eq!(hex.len(), 64);
    assert!(hex.starts_with("80") && hex.ends_with("01"), "{hex}");
    assert_eq!(Pdq::hash_from_hex(&hex), Some(hash));
    assert_eq!(Pdq::hash_from_hex("zz"), None);
    assert_eq!(pdq_distance(&hash, &[0; 32]), 2);
    assert_eq!(dhash_hex(0xf0), "00000000000000f0");
    assert_eq!(dhash_distance(0b1011, 0b0001), 2);
}

#[test]
fn dhash_bit_order() {
    // Brightness increasing to the right everywhere: every bit set.
    let ramp = RgbImage::from_fn(90, 80, |x, _| Rgb([x as u8 * 2; 3]));
    assert_eq!(dhash(&ramp), u64::MAX);
    // Only the top half increases: rows 0..4 are the high 32 bits.
    let half = RgbImage::from_fn(90, 80, |x, y| {
        Rgb([if y < 40 { x as u8 * 2 } else { 50 }; 3])
    });
    assert_eq!(dhash_hex(dhash(&half)), "ffffffff00000000");
}

#[test]
fn box_filter_matches_the_reference_phases() {
    // The worked example in the reference's downscaling.cpp (window 7 over 0..16), as sums.
    let input: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let mut out = vec![0f32; 16];
    box_1d(&input, &mut out, 7);
    let counts = [4, 5, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 5, 4];
    let sums: Vec<f32> = out.iter().zip(counts).map(|(v, n)| v * n as f32).collect();
    let want = [
        6., 10., 15., 21., 28., 35., 42., 49., 56., 63., 70., 77., 84., 75., 65., 54.,
    ];
    for (s, w) in sums.iter().zip(want) {
        assert!((s - w).abs() < 1e-3, "{sums:?}");
    }
    // The row-at-a-time column pass equals the per-column 1-D filter bit for bit.
    let (rows, cols) = (37, 5);
    let m: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 37) % 101) as f32 * 1.37)
        .collect();
    let mut by_rows = vec![0f32; m.len()];
    box_along_cols(&m, &mut by_rows, rows, cols, 6);
    for j in 0..cols {
        let col: Vec<f32> = (0..rows).map(|i| m[i * cols + j]).collect();
        let mut o = vec![0f32; rows];
        box_1d(&col, &mut o, 6);
        for i in 0..rows {
            assert_eq!(o[i].to_bits(), by_rows[i * cols + j].to_bits());
        }
    }
}

/// Timing on a 12-megapixel image; run with `--release -- --ignored --nocapture`.
#[test]
#[ignore = "timing only"]
fn timing_12mp() {
    let img = synthetic(4000, 3000, 3);
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let p = pdq(&img);
        let tp = t.elapsed();
        let t = std::time::Instant::now();
        let d = dhash(&img);
        let td = t.elapsed();
        eprintln!(
            "4000x3000: pdq {tp:?} (q={}), dhash {td:?} ({})",
            p.quality,
            dhash_hex(d)
        );
    }
}

/// The streaming filter (what `pdq` runs) gives the same hash and quality as the reference's
/// full-image passes (`pdq_from_luma`), over sizes with
/// every window shape: tiny, exactly 64, odd, prime, tall, wide, and a window wider than 128.
#[test]
fn streaming_pdq_is_bit_identical_to_the_full_image_passes() {
    for (k, (w, h)) in [
        (5, 5),
        (7, 300),
        (64, 64),
        (65, 64),
        (64, 65),
        (127, 129),
        (128, 128),
        (257, 31),
        (640, 480),
        (1021, 769),
        (3000, 40),
        (4000, 3000),
    ]
    .into_iter()
    .enumerate()
    {
        let img = synthetic(w, h, k as u32 + 11);
        let mut luma: Vec<f32> = img.pixels().map(|p| luma_601(p.0)).collect();
        let want = pdq_from_luma(&mut luma, w as usize, h as usize);
        let got = pdq(&img);
        assert_eq!(got.hash, want.hash, "{w}x{h}");
        assert_eq!(got.quality, want.quality, "{w}x{h}");
    }
    assert_eq!(
        pdq(&synthetic(4, 100, 1)).quality,
        0,
        "below the hashable size"
    );
}
