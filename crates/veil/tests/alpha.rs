//! A face drawn by the alpha channel alone (colour channels flat black, the picture in the
//! transparency) is what a viewer shows over a white page: veil detects it there and obfuscates it.

mod common;

use common::*;

#[test]
fn a_face_carried_by_the_alpha_channel_is_found_and_obfuscated() {
    let t = tempfile::tempdir().unwrap();
    let sample = t.path().join("sample");
    let (code, _, err) = run(&[&"sample", &sample]);
    assert_eq!(code, 0, "{err}");
    let face = load_upright(&sample.join("astronaut.png"));
    let gray = image::DynamicImage::ImageRgb8(face).to_luma8();
    // Over white the viewer shows 255 - alpha: the photo itself.
    let la = image::ImageBuffer::from_fn(gray.width(), gray.height(), |x, y| {
        image::LumaA([0u8, 255 - gray.get_pixel(x, y)[0]])
    });
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    image::DynamicImage::ImageLumaA8(la.clone())
        .save(input.join("alpha_face.png"))
        .unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    let recs = provenance(&out);
    let r = recs.iter().find(|r| r["path"] == "alpha_face.png").unwrap();
    assert_eq!(r["status"], "redacted", "{r}");
    let faces = r["detections"].as_array().unwrap();
    assert!(!faces.is_empty(), "{r}");
    // Inside every region the transparency no longer draws the face: its detail is gone.
    let written = image::open(out.join("alpha_face.png"))
        .unwrap()
        .to_luma_alpha8();
    for d in faces {
        let b = &d["box"];
        let (x1, y1) = (
            b["x1"].as_f64().unwrap() as u32,
            b["y1"].as_f64().unwrap() as u32,
        );
        let (x2, y2) = (
            b["x2"].as_f64().unwrap() as u32,
            b["y2"].as_f64().unwrap() as u32,
        );
        // The central half of the box, where the obfuscation is strongest.
        let (cx1, cx2) = (x1 + (x2 - x1) / 4, x2 - (x2 - x1) / 4);
        let (cy1, cy2) = (y1 + (y2 - y1) / 4, y2 - (y2 - y1) / 4);
        let detail = |img: &image::GrayAlphaImage| {
            let mut sum = 0f64;
            let mut n = 0f64;
            for y in cy1..cy2 {
                for x in cx1..cx2.saturating_sub(1) {
                    // What a viewer shows over white, and its horizontal change.
                    let shown = |x: u32| {
                        let p = img.get_pixel(x, y);
                        let a = f64::from(p[1]) / 255.0;
                        f64::from(p[0]) * a + 255.0 * (1.0 - a)
                    };
                    sum += (shown(x + 1) - shown(x)).abs();
                    n += 1.0;
                }
            }
            sum / n.max(1.0)
        };
        let (before, after) = (detail(&la), detail(&written));
        assert!(
            after < before / 3.0,
            "{d}: detail {before:.1} -> {after:.1}"
        );
    }
}
