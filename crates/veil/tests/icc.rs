//! ICC profiles reach outputs only rebuilt from their validated colour tags: bytes hidden in a
//! private tag, the `tech` tag or a lookup table of a PNG's or a JPEG's profile are not in the
//! output (re-encoded by default or with `--lossless-strip`), and a "profile" that is not one is
//! dropped and recorded as removed.

mod common;

use std::io::Cursor;

use common::*;
use image::{ImageDecoder, ImageEncoder, RgbImage};

const HIDDEN: &[u8] = b"HIDDEN-PAYLOAD: a whole JPEG of a face would fit in a private tag";

fn xyz(v: [u32; 3]) -> Vec<u8> {
    let mut t = b"XYZ \0\0\0\0".to_vec();
    for v in v {
        t.extend_from_slice(&v.to_be_bytes());
    }
    t
}

/// A matrix/TRC RGB display profile of ICC version `major` with `extra` tags after its colour
/// tags (white point, colorants, one gamma curve shared by the three TRCs).
fn rgb_profile(major: u8, extra: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let gamma = b"curv\0\0\0\0\0\0\0\x01\x02\x33".to_vec();
    let mut tags: Vec<(&[u8; 4], Vec<u8>)> = vec![
        (b"wtpt", xyz([0xF6D6, 0x1_0000, 0xD32D])),
        (b"rXYZ", xyz([0x6FA2, 0x38F5, 0x390])),
        (b"gXYZ", xyz([0x6299, 0xB785, 0x18DA])),
        (b"bXYZ", xyz([0x24A0, 0xF84, 0xB6CF])),
        (b"rTRC", gamma.clone()),
        (b"gTRC", gamma.clone()),
        (b"bTRC", gamma),
    ];
    tags.extend(extra.iter().cloned());
    let mut header = vec![0u8; 128];
    header[8] = major;
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

/// A v4 profile with a private tag holding [`HIDDEN`].
fn profile_with_private_tag() -> Vec<u8> {
    rgb_profile(
        4,
        &[(b"zzzz", [b"data\0\0\0\0".as_slice(), HIDDEN].concat())],
    )
}

/// A small JPEG (a 48x48 pattern, not a face, but bytes no profile would hold by chance).
fn small_jpeg() -> Vec<u8> {
    let img = RgbImage::from_fn(48, 48, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 5) as u8, ((x * y) % 251) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .write_image(img.as_raw(), 48, 48, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
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

    // Nothing is detected in the JPEG: re-encoded or stripped, the profile's bytes must not
    // come along.
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

/// The fault a review found: a whole JPEG in the `tech` tag (and in a lookup table's grid) of an
/// otherwise valid profile came out byte for byte in every output.
#[test]
fn a_jpeg_hidden_in_a_profile_reaches_no_jpeg_or_png_output() {
    let payload = small_jpeg();
    assert!(payload.len() > 500);
    // mft2 with 3 inputs, 3 outputs and 9 grid points, the payload inside its grid.
    let mut lut = b"mft2\0\0\0\0\x03\x03\x09\0".to_vec();
    lut.resize(52 + 2 * (2 * 3 + 9 * 9 * 9 * 3 + 2 * 3), 0);
    lut[100..100 + payload.len()].copy_from_slice(&payload);
    let icc = rgb_profile(
        2,
        &[
            (b"tech", [b"sig \0\0\0\0".as_slice(), &payload].concat()),
            (b"A2B0", lut),
        ],
    );
    // A stretch from the middle of the payload: its entropy-coded data, which the outputs' own
    // JPEG markers cannot match by chance.
    let middle = &payload[payload.len() / 2..payload.len() / 2 + 64];

    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("p.png"), png_with_icc(icc.clone())).unwrap();
    std::fs::write(input.join("j.jpg"), jpeg_with_icc(icc)).unwrap();
    for (name, extra) in [
        ("default", None),
        ("lossless-strip", Some("--lossless-strip")),
    ] {
        let out = t.path().join(name);
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"redact", &input, &out, &"-q"];
        if let Some(flag) = &extra {
            args.push(flag);
        }
        let (code, _, err) = run(&args);
        assert_eq!(code, 0, "{name}: {err}");
        for file in ["p.png", "j.jpg"] {
            let bytes = std::fs::read(out.join(file)).unwrap();
            // PNG stores its profile compressed: look in the file and in the profile read back.
            let kept = image::ImageReader::new(Cursor::new(&bytes))
                .with_guessed_format()
                .unwrap()
                .into_decoder()
                .unwrap()
                .icc_profile()
                .unwrap()
                .expect("the colour tags are kept");
            for hay in [&bytes, &kept] {
                assert!(!contains(hay, &payload), "{name} {file}: the payload");
                assert!(!contains(hay, middle), "{name} {file}: part of the payload");
            }
            assert!(!contains(&kept, b"mft2") && !contains(&kept, b"tech"));
            // The colour tags are still there, rebuilt: the colours read the same.
            assert!(
                contains(&kept, &xyz([0x6FA2, 0x38F5, 0x390])),
                "{name} {file}"
            );
        }
        let recs = provenance(&out);
        for file in ["p.png", "j.jpg"] {
            assert_eq!(
                record(&recs, file)["metadata_kept"][0],
                "icc",
                "{name} {file}"
            );
        }
    }
}
