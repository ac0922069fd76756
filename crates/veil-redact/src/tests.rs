use super::*;
use image::{Rgb, RgbImage, Rgba, RgbaImage};
use veil_core::Shape;

/// Deterministic pseudo-random bytes (64-bit LCG, top byte).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 56) as u8
    }
}

fn noise(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut rng = Lcg(seed);
    RgbImage::from_fn(w, h, |_, _| Rgb([rng.next(), rng.next(), rng.next()]))
}

fn checker(w: u32, h: u32, cell: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if (x / cell + y / cell) & 1 == 0 {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    })
}

/// Smooth shading, darker "eyes" and "mouth", mild noise: closer to a face than pure noise.
fn face_like(w: u32, h: u32) -> RgbImage {
    let mut rng = Lcg(7);
    let (wf, hf) = (w as f32, h as f32);
    let features = [
        (0.42 * wf, 0.42 * hf, 0.04 * wf, 0.025 * hf, -70.0),
        (0.58 * wf, 0.42 * hf, 0.04 * wf, 0.025 * hf, -70.0),
        (0.50 * wf, 0.66 * hf, 0.08 * wf, 0.02 * hf, -50.0),
        (0.50 * wf, 0.54 * hf, 0.015 * wf, 0.05 * hf, 25.0),
    ];
    RgbImage::from_fn(w, h, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        let mut v = 120.0 + 60.0 * xf / wf - 30.0 * yf / hf;
        for (fx, fy, rx, ry, dv) in features {
            if ((xf - fx) / rx).powi(2) + ((yf - fy) / ry).powi(2) < 1.0 {
                v += dv;
            }
        }
        v += (rng.next() as f32 - 128.0) / 16.0;
        let v = v.clamp(0.0, 255.0);
        Rgb([v as u8, (v * 0.8) as u8, (v * 0.7) as u8])
    })
}

fn params(mode: Mode, shape: Shape) -> RedactParams {
    RedactParams {
        mode,
        shape,
        box_scale: 1.3,
        feather: 0.1,
        fill_rgb: [10, 200, 30],
        ..RedactParams::default()
    }
}

const MODES: [Mode; 3] = [Mode::Blur, Mode::Pixelate, Mode::Fill];
const SHAPES: [Shape; 2] = [Shape::Ellipse, Shape::Box];

/// Whether the centre of pixel `(x, y)` lies outside the scaled box grown by the feather width.
fn outside_band(b: &BBox, p: &RedactParams, x: u32, y: u32) -> bool {
    let s = b.scaled(p.box_scale as f32);
    let f = (p.feather as f32 * s.width().min(s.height())).max(1.0);
    let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
    cx <= s.x1 - f || cx >= s.x2 + f || cy <= s.y1 - f || cy >= s.y2 + f
}

/// The central 50% of the scaled box.
fn core(b: &BBox, p: &RedactParams) -> BBox {
    b.scaled(p.box_scale as f32).scaled(0.5)
}

fn jpeg_roundtrip(img: &RgbImage) -> RgbImage {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
        .encode_image(img)
        .unwrap();
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
        .unwrap()
        .to_rgb8()
}

#[test]
fn blur_removes_most_high_frequency_energy() {
    let b = BBox::new(50.0, 50.0, 150.0, 150.0);
    for orig in [
        noise(200, 200, 1),
        checker(200, 200, 2),
        checker(200, 200, 3),
    ] {
        for shape in SHAPES {
            let p = params(Mode::Blur, shape);
            let mut img = orig.clone();
            redact_rgb8(&mut img, &[b], &p).unwrap();
            let before = high_frequency_energy(&orig, core(&b, &p));
            let after = high_frequency_energy(&img, core(&b, &p));
            assert!(before > 50.0, "test image too flat: {before}");
            assert!(after < 0.2 * before, "{shape:?}: {before} -> {after}");
        }
    }
}

#[test]
fn blur_strength_grows_with_region_size() {
    // 8-px cells survive a small fixed blur; a radius of ceil(short_side/6) flattens them.
    let orig = checker(400, 400, 8);
    let b = BBox::new(40.0, 40.0, 360.0, 360.0);
    let mut p = params(Mode::Blur, Shape::Box);
    p.box_scale = 1.0;
    let mut img = orig.clone();
    redact_rgb8(&mut img, &[b], &p).unwrap();
    let before = high_frequency_energy(&orig, core(&b, &p));
    let after = high_frequency_energy(&img, core(&b, &p));
    assert!(after < 0.05 * before, "{before} -> {after}");
}

#[test]
fn pixels_outside_scaled_box_and_feather_band_are_byte_identical() {
    let orig = noise(240, 200, 2);
    let b = BBox::new(60.3, 40.7, 150.2, 160.9);
    for mode in MODES {
        for shape in SHAPES {
            let mut p = params(mode, shape);
            p.feather = 0.2;
            let mut img = orig.clone();
            redact_rgb8(&mut img, &[b], &p).unwrap();
            let mut changed_inside = 0;
            for (x, y, px) in img.enumerate_pixels() {
                if outside_band(&b, &p, x, y) {
                    assert_eq!(px, orig.get_pixel(x, y), "{mode:?} {shape:?} at {x},{y}");
                } else if px != orig.get_pixel(x, y) {
                    changed_inside += 1;
                }
            }
            assert!(
                changed_inside > 5000,
                "{mode:?} {shape:?}: {changed_inside}"
            );
        }
    }
}

#[test]
fn pixelate_makes_blocks_uniform_means() {
    let orig = noise(200, 200, 3);
    // Scaled box = the box (scale 1): 84 px, so blocks of ceil(84 / 6) = 14 anchored at (40, 40).
    let b = BBox::new(40.0, 40.0, 124.0, 124.0);
    let mut p = params(Mode::Pixelate, Shape::Box);
    p.box_scale = 1.0;
    p.feather = 0.0;
    let mut img = orig.clone();
    redact_rgb8(&mut img, &[b], &p).unwrap();
    for by in 0..6u32 {
        for bx in 0..6u32 {
            let (x0, y0) = (40 + bx * 14, 40 + by * 14);
            let first = *img.get_pixel(x0, y0);
            let mut sum = [0u32; 3];
            for y in y0..y0 + 14 {
                for x in x0..x0 + 14 {
                    assert_eq!(*img.get_pixel(x, y), first, "block {bx},{by} at {x},{y}");
                    for (c, s) in sum.iter_mut().enumerate() {
                        *s += orig.get_pixel(x, y)[c] as u32;
                    }
                }
            }
            let mean = sum.map(|s| ((s + 98) / 196) as u8);
            assert_eq!(first.0, mean, "block {bx},{by}");
        }
    }
    // Neighbouring blocks differ (noise means are not all equal).
    assert_ne!(img.get_pixel(40, 40), img.get_pixel(54, 40));
}

#[test]
fn fill_sets_shape_exactly_and_feathers_outside_it() {
    let orig = RgbImage::from_pixel(200, 200, Rgb([100, 100, 100]));
    let b = BBox::new(50.0, 60.0, 150.0, 140.0);
    for shape in SHAPES {
        let mut p = params(Mode::Fill, shape);
        p.box_scale = 1.0;
        p.feather = 0.2; // 16 px
        let mut img = orig.clone();
        redact_rgb8(&mut img, &[b], &p).unwrap();
        let (a, bb, cx, cy) = (50.0f32, 40.0f32, 100.0f32, 100.0f32);
        for (x, y, px) in img.enumerate_pixels() {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let inside = match shape {
                Shape::Box => b.contains(fx, fy),
                Shape::Ellipse => ((fx - cx) / a).powi(2) + ((fy - cy) / bb).powi(2) <= 1.0,
            };
            if inside {
                assert_eq!(px.0, p.fill_rgb, "{shape:?} at {x},{y}");
            }
        }
        // Feather band: 8 px left of the shape is a strict mix, 20 px left is untouched.
        let mid = img.get_pixel(41, 100).0;
        assert!(mid[1] > 100 && mid[1] < 200, "{shape:?}: {mid:?}");
        assert_eq!(img.get_pixel(29, 100).0, [100, 100, 100], "{shape:?}");
        // Ramp is monotone towards the shape.
        let g: Vec<u8> = (34..50).map(|x| img.get_pixel(x, 100)[1]).collect();
        assert!(g.windows(2).all(|w| w[0] <= w[1]), "{shape:?}: {g:?}");
    }
}

#[test]
fn ellipse_spares_box_corners_box_shape_covers_them() {
    let orig = RgbImage::from_pixel(200, 200, Rgb([100, 100, 100]));
    let b = BBox::new(50.0, 50.0, 150.0, 150.0);
    let corners = [(50, 50), (149, 50), (50, 149), (149, 149)];
    for shape in SHAPES {
        let mut p = params(Mode::Fill, shape);
        p.box_scale = 1.0;
        p.feather = 0.05;
        let mut img = orig.clone();
        redact_rgb8(&mut img, &[b], &p).unwrap();
        for (x, y) in corners {
            let px = img.get_pixel(x, y).0;
            match shape {
                Shape::Ellipse => assert_eq!(px, [100, 100, 100], "corner {x},{y}"),
                Shape::Box => assert_eq!(px, p.fill_rgb, "corner {x},{y}"),
            }
        }
        assert_eq!(img.get_pixel(100, 100).0, p.fill_rgb);
    }
}

#[test]
fn rgba_alpha_is_raised_inside_and_untouched_outside() {
    let rgb = noise(160, 120, 4);
    let orig = RgbaImage::from_fn(160, 120, |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0;
        Rgba([r, g, b, if x < 80 { 0 } else { 128 }])
    });
    let b = BBox::new(40.0, 30.0, 120.0, 90.0);
    for mode in MODES {
        for shape in SHAPES {
            let p = params(mode, shape);
            let mut img = orig.clone();
            redact_rgba8(&mut img, &[b], &p).unwrap();
            // Colour is exactly what the RGB path produces: no premultiplication.
            let mut rgb_out = rgb.clone();
            redact_rgb8(&mut rgb_out, &[b], &p).unwrap();
            for (x, y, px) in img.enumerate_pixels() {
                let o = orig.get_pixel(x, y);
                assert_eq!(&px.0[..3], &rgb_out.get_pixel(x, y).0[..], "{x},{y}");
                if outside_band(&b, &p, x, y) {
                    assert_eq!(px, o, "{mode:?} {shape:?} at {x},{y}");
                } else {
                    assert!(px[3] >= o[3]);
                }
            }
            let c = core(&b, &p);
            for y in c.y1 as u32..c.y2 as u32 {
                for x in c.x1 as u32..c.x2 as u32 {
                    assert_eq!(img.get_pixel(x, y)[3], 255, "{mode:?} {shape:?} at {x},{y}");
                }
            }
        }
    }
}

#[test]
fn degenerate_regions_do_not_panic_and_still_verify() {
    let regions = [
        BBox::new(-50.0, -40.0, 30.0, 35.0),
        BBox::new(150.0, 100.0, 260.0, 230.0),
        BBox::new(10.0, 10.0, 10.0, 10.0),
        BBox::new(60.0, 60.0, 20.0, 20.0),
        BBox::new(5.2, 5.2, 5.9, 6.1),
        BBox::new(70.0, 20.0, 71.5, 21.0),
        BBox::new(1e6, 1e6, 2e6, 2e6),
        BBox::new(-1e30, -1e30, -1e29, -1e29),
        BBox::new(-1e30, -1e30, 1e30, 1e30),
        BBox::new(-f32::MAX, -f32::MAX, f32::MAX, f32::MAX),
    ];
    let orig = noise(180, 130, 5);
    for mode in MODES {
        for shape in SHAPES {
            let p = params(mode, shape);
            for r in regions {
                let mut img = orig.clone();
                redact_rgb8(&mut img, &[r], &p).unwrap();
                verify_obfuscated(&orig, &img, &[r], &p)
                    .unwrap_or_else(|e| panic!("{mode:?} {shape:?} {r:?}: {e}"));
                let mut rgba = image::DynamicImage::ImageRgb8(orig.clone()).to_rgba8();
                redact_rgba8(&mut rgba, &[r], &p).unwrap();
            }
            let mut img = orig.clone();
            redact_rgb8(&mut img, &regions, &p).unwrap();
            for size in [(0, 0), (1, 1), (0, 5), (3, 1)] {
                let mut tiny = RgbImage::new(size.0, size.1);
                redact_rgb8(&mut tiny, &regions, &p).unwrap();
                verify_obfuscated(&tiny.clone(), &tiny, &regions, &p).unwrap();
            }
        }
    }
}

#[test]
fn non_finite_region_is_an_error_and_leaves_image_untouched() {
    let orig = noise(64, 64, 6);
    let p = params(Mode::Fill, Shape::Box);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut img = orig.clone();
        let regions = [
            BBox::new(0.0, 0.0, 30.0, 30.0),
            BBox::new(1.0, bad, 5.0, 9.0),
        ];
        let err = redact_rgb8(&mut img, &regions, &p).unwrap_err();
        assert!(
            matches!(err, RedactError::NonFiniteRegion { index: 1, .. }),
            "{err}"
        );
        assert_eq!(img, orig);
        let err = verify_obfuscated(&orig, &img, &regions, &p).unwrap_err();
        assert!(matches!(err, RedactError::NonFiniteRegion { index: 1, .. }));
    }
}

#[test]
fn invalid_params_are_rejected() {
    let mut img = noise(16, 16, 7);
    let b = [BBox::new(2.0, 2.0, 10.0, 10.0)];
    let cases: [(f64, f64, &str); 6] = [
        (0.0, 0.1, "box_scale"),
        (-1.0, 0.1, "box_scale"),
        (f64::NAN, 0.1, "box_scale"),
        (f64::INFINITY, 0.1, "box_scale"),
        (1.3, -0.1, "feather"),
        (1.3, f64::NAN, "feather"),
    ];
    for (box_scale, feather, name) in cases {
        let mut p = params(Mode::Blur, Shape::Ellipse);
        p.box_scale = box_scale;
        p.feather = feather;
        match redact_rgb8(&mut img, &b, &p) {
            Err(RedactError::InvalidParams { field, .. }) => assert_eq!(field, name),
            other => panic!("{box_scale} {feather}: {other:?}"),
        }
    }
}

#[test]
fn output_is_deterministic_with_overlapping_regions() {
    let orig = noise(220, 180, 8);
    let regions = [
        BBox::new(30.0, 30.0, 120.0, 130.0),
        BBox::new(80.0, 60.0, 200.0, 170.0),
        BBox::new(100.5, 90.25, 140.75, 120.5),
    ];
    for mode in MODES {
        for shape in SHAPES {
            let p = params(mode, shape);
            let mut a = orig.clone();
            let mut b = orig.clone();
            redact_rgb8(&mut a, &regions, &p).unwrap();
            redact_rgb8(&mut b, &regions, &p).unwrap();
            assert_eq!(a.as_raw(), b.as_raw(), "{mode:?} {shape:?}");
            assert_ne!(a.as_raw(), orig.as_raw());
            verify_obfuscated(&orig, &a, &regions, &p).unwrap();
        }
    }
}

#[test]
fn verify_passes_on_redacted_jpeg_and_fails_on_unredacted_region() {
    let images = [face_like(400, 400), noise(400, 400, 9)];
    let regions = [
        BBox::new(120.0, 100.0, 280.0, 320.0),
        BBox::new(20.0, 20.0, 80.0, 90.0),
    ];
    for orig in &images {
        for mode in MODES {
            for shape in SHAPES {
                let p = params(mode, shape);
                let mut all = orig.clone();
                redact_rgb8(&mut all, &regions, &p).unwrap();
                verify_obfuscated(orig, &all, &regions, &p).unwrap();
                verify_obfuscated(orig, &jpeg_roundtrip(&all), &regions, &p)
                    .unwrap_or_else(|e| panic!("{mode:?} {shape:?}: {e}"));

                // Only the first region redacted: the second must be reported.
                let mut first = orig.clone();
                redact_rgb8(&mut first, &regions[..1], &p).unwrap();
                let err =
                    verify_obfuscated(orig, &jpeg_roundtrip(&first), &regions, &p).unwrap_err();
                match (mode, err) {
                    (Mode::Fill, RedactError::NotFilled { index, .. })
                    | (Mode::Blur | Mode::Pixelate, RedactError::NotObfuscated { index, .. }) => {
                        assert_eq!(index, 1)
                    }
                    (_, e) => panic!("{mode:?}: unexpected {e}"),
                }
                assert!(verify_obfuscated(orig, orig, &regions, &p).is_err());
            }
        }
    }
}

#[test]
fn verify_rejects_dimension_mismatch() {
    let a = noise(20, 10, 1);
    let b = noise(10, 20, 1);
    let err = verify_obfuscated(&a, &b, &[], &RedactParams::default()).unwrap_err();
    assert_eq!(
        err,
        RedactError::DimensionMismatch {
            original_w: 20,
            original_h: 10,
            output_w: 10,
            output_h: 20
        }
    );
}

#[test]
fn high_frequency_energy_measures_second_differences_of_luma() {
    let full = BBox::new(0.0, 0.0, 32.0, 32.0);
    let e = high_frequency_energy(&checker(32, 32, 2), full);
    assert!((e - 510.0).abs() < 0.01, "{e}");
    // One-pixel detail sits outside the measured band (JPEG would blur it anyway).
    assert_eq!(high_frequency_energy(&checker(32, 32, 1), full), 0.0);
    let stripes = RgbImage::from_fn(32, 32, |_, y| Rgb([(y / 2 % 2 * 255) as u8; 3]));
    let e = high_frequency_energy(&stripes, full);
    assert!((e - 255.0).abs() < 0.01, "{e}");
    let flat = RgbImage::from_pixel(32, 32, Rgb([9, 80, 200]));
    assert_eq!(high_frequency_energy(&flat, full), 0.0);
    let c = checker(32, 32, 2);
    assert_eq!(
        high_frequency_energy(&c, BBox::new(5.0, 5.0, 5.0, 9.0)),
        0.0
    );
    assert_eq!(
        high_frequency_energy(&c, BBox::new(50.0, 0.0, 60.0, 9.0)),
        0.0
    );
    assert_eq!(
        high_frequency_energy(&c, BBox::new(9.0, 9.0, 1.0, 1.0)),
        0.0
    );
    assert_eq!(
        high_frequency_energy(&c, BBox::new(f32::NAN, 0.0, 4.0, 4.0)),
        0.0
    );
    // Clipped: a rect hanging off the image measures only the part inside.
    let e = high_frequency_energy(&c, BBox::new(-10.0, -10.0, 8.0, 8.0));
    assert!((e - 510.0).abs() < 0.01, "{e}");
}

/// Clothing-like texture: stripes `stripe` px wide, colour patches and noise.
fn clothing(w: u32, h: u32, stripe: u32) -> RgbImage {
    let mut rng = Lcg(11);
    RgbImage::from_fn(w, h, |x, y| {
        let stripe = if (x / stripe + y / (2 * stripe + 1)).is_multiple_of(2) {
            60.0
        } else {
            -60.0
        };
        let patch = ((x / 23 + 2 * (y / 31)) % 3) as f32 * 40.0;
        let n = (rng.next() as f32 - 128.0) / 6.0;
        let v = (110.0 + stripe + patch + n).clamp(0.0, 255.0);
        Rgb([v as u8, (255.0 - v) as u8, ((v * 0.5) + patch) as u8])
    })
}

/// Persons' parameters: strength from the long side over 4, at most 0.35 of the detail kept.
fn person_params(mode: Mode) -> RedactParams {
    RedactParams {
        mode,
        shape: Shape::Box,
        box_scale: 1.0,
        feather: 0.02,
        strength_basis: veil_core::StrengthBasis::Long,
        strength_divisor: 4.0,
        max_hf_ratio: 0.35,
        ..RedactParams::default()
    }
}

/// Every box shape, from 4 x 4 px to the full frame, thin, tall and clipped at the border, alone
/// and overlapping, passes validation in every mode after a JPEG round trip at quality 85: veil's
/// own strength never makes an image fail.
#[test]
fn person_regions_of_every_shape_pass_validation_in_every_mode() {
    let orig = clothing(320, 240, 3);
    let boxes = [
        BBox::new(100.0, 100.0, 104.0, 104.0),
        BBox::new(10.0, 10.0, 14.0, 210.0),
        BBox::new(20.0, 200.0, 300.0, 204.0),
        BBox::new(150.0, 60.0, 180.0, 135.0),
        BBox::new(200.0, 20.0, 260.0, 220.0),
        BBox::new(-20.0, -10.0, 40.0, 120.0),
        BBox::new(290.0, 150.0, 400.0, 300.0),
        BBox::new(0.0, 0.0, 320.0, 240.0),
    ];
    let overlapping = [
        BBox::new(0.0, 77.0, 54.0, 180.0),
        BBox::new(0.4, 135.0, 36.0, 196.0),
    ];
    for mode in MODES {
        let p = person_params(mode);
        let mut cases: Vec<Vec<BBox>> = boxes.iter().map(|b| vec![*b]).collect();
        cases.push(overlapping.to_vec());
        for regions in cases {
            let mut img = orig.clone();
            redact_rgb8(&mut img, &regions, &p).unwrap();
            let back = jpeg_roundtrip(&img);
            verify_obfuscated(&orig, &back, &regions, &p)
                .unwrap_or_else(|e| panic!("{mode:?} {regions:?}: {e}"));
        }
    }
}

/// The strength follows the long side: a 30 x 75 px pedestrian gets a blur radius and block side
/// of 19 px (75 / 4), where the face rule (short side / 6) gave 5 px (a 768 x 576 street frame's
/// pedestrians kept their clothing's colour boundaries with it; see the end-to-end test of each
/// person mode in crates/veil/tests/persons.rs).
#[test]
fn person_strength_follows_the_height() {
    let orig = clothing(320, 240, 8);
    let pedestrian = [BBox::new(150.0, 60.0, 180.0, 135.0)];
    let p = person_params(Mode::Blur);
    let region = Region::new(0, &pedestrian[0], &p, 320, 240)
        .unwrap()
        .unwrap();
    assert_eq!(region.strength(), 19);
    let mut strong = orig.clone();
    redact_rgb8(&mut strong, &pedestrian, &p).unwrap();
    verify_obfuscated(&orig, &jpeg_roundtrip(&strong), &pedestrian, &p).unwrap();
    let face_rule = RedactParams {
        strength_basis: veil_core::StrengthBasis::Short,
        strength_divisor: 6.0,
        ..p
    };
    let region = Region::new(0, &pedestrian[0], &face_rule, 320, 240)
        .unwrap()
        .unwrap();
    assert_eq!(region.strength(), 5);
    // Lying down, the same person is as strong: the long side is the width.
    let lying = BBox::new(100.0, 100.0, 175.0, 130.0);
    let region = Region::new(0, &lying, &p, 320, 240).unwrap().unwrap();
    assert_eq!(region.strength(), 19);
}
