//! ICC profiles reach outputs only rebuilt from their colour tags: bytes hidden in a private tag
//! of a PNG's profile, or of a JPEG's that takes the lossless strip path, are not in the output,
//! and a "profile" that is not one is dropped and recorded as removed.

mod common;

use std::io::Cursor;

use common::*;
use image::{ImageDecoder, ImageEncoder, RgbImage};

const HIDDEN: &[u8] = b"HIDDEN-PAYLOAD: a whole JPEG of a face would fit in a private tag";

/// A v4 profile with a white point, a red colorant and a private tag holding [`HIDDEN`].
fn profile_with_private_tag() -> Vec<u8> {
    let mut xyz = b"XYZ \0\0\0\0".to_vec();
    for v in [0xF6D6u32, 0x1_0000, 0xD32D] {
        xyz.extend_from_slice(&v.to_be_bytes());
    }
    let tags: [(&[u8; 4], Vec<u8>); 3] = [
        (b"wtpt", xyz.clone()),
        (b"rXYZ", xyz),
        (b"zzzz", [b"data\0\0\0\0".as_slice(), HIDDEN].concat()),
    ];
    let mut header = vec![0u8; 128];
    header[8] = 4;
    header[12..16].copy_from_slice(b"mntr");
    header[16..20].copy_from_slice(b"RGB ");
    header[20..24].copy_from_slice(b"XYZ ");
    header[36..40].copy_from_slice(b"acsp");
    let base = 128 + 4 + 12 * tags.len();
    let mut table = (tags.len() as u32).to_be_bytes().to_vec();
    let mut data = Vec::new();
    for (sig, bytes) in &tags {
        table.extend_from_slice(*sig);
        table.extend_from_slice(&((base + data.len()) as u32).to_be_bytes());
        table.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        data.extend_from_slice(bytes);
        while data.len() % 4 != 0 {
            data.push(0);
        }
    }
    let mut p = [header, table, data].concat();
    let size = p.len() as u32;
    p[0..4].copy_from_slice(&size.to_be_bytes());
    p
}

/// A smooth 96x96 picture without faces.
fn picture() -> RgbImage {
    RgbImage::from_fn(96, 96, |x, y| image::Rgb([x as u8 * 2, y as u8 * 2, 90]))
}

fn png_with_icc(icc: Vec<u8>) -> Vec<u8> {
    let img = picture();
    let mut out = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut out);
    enc.set_icc_profile(icc).unwrap();
    enc.write_image(img.as_raw(), 96, 96, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn jpeg_with_icc(icc: Vec<u8>) -> Vec<u8> {
    let img = picture();
    let mut out = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    enc.set_icc_profile(icc).unwrap();
    enc.write_image(img.as_raw(), 96, 96, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn record<'a>(recs: &'a [serde_json::Value], path: &str) -> &'a serde_json::Value {
    recs.iter().find(|r| r["path"] == path).unwrap()
}

#[test]
fn hidden_bytes_in_a_profile_never_reach_the_output() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let icc = profile_with_private_tag();
    std::fs::write(input.join("p.png"), png_with_icc(icc.clone())).unwrap();
    std::fs::write(input.join("j.jpg"), jpeg_with_icc(icc)).unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    let recs = provenance(&out);

    let png = std::fs::read(out.join("p.png")).unwrap();
    let kept = image::codecs::png::PngDecoder::new(Cursor::new(&png))
        .unwrap()
        .icc_profile()
        .unwrap()
        .expect("the colour tags are kept");
    assert!(contains(&kept, b"rXYZ") && contains(&kept, b"wtpt"));
    assert!(!contains(&kept, HIDDEN));
    assert_eq!(record(&recs, "p.png")["metadata_kept"][0], "icc");

    // Nothing is detected in the JPEG, which would take the lossless strip path that copies
    // APP2 segments as they are: the profile's bytes must not come along.
    let jpg = std::fs::read(out.join("j.jpg")).unwrap();
    assert!(!contains(&jpg, HIDDEN));
    assert!(contains(&jpg, b"ICC_PROFILE\0"));
}

#[test]
fn a_profile_that_is_not_one_is_dropped_and_recorded_as_removed() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let not_a_profile = [b"\xFF\xD8\xFF\xE0".as_slice(), HIDDEN, &[0u8; 200]].concat();
    std::fs::write(input.join("p.png"), png_with_icc(not_a_profile)).unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    let png = std::fs::read(out.join("p.png")).unwrap();
    let kept = image::codecs::png::PngDecoder::new(Cursor::new(&png))
        .unwrap()
        .icc_profile()
        .unwrap();
    assert_eq!(kept, None);
    let r = record(&provenance(&out), "p.png").clone();
    assert_eq!(r["metadata_removed"][0], "icc", "{r}");
    assert_eq!(r["metadata_kept"].as_array().unwrap().len(), 0, "{r}");
}
