//! Pictures veil does not redact (TGA, BMP, SVG, a JPEG without its extension or with a damaged
//! signature) never pass through: loose ones are failed records (exit 1) instead of "not images",
//! and archive members are failed and left out of the output archive instead of copied as they
//! were.

mod common;

use common::*;

/// A 2x2 uncompressed true-colour TGA (no signature: only its name says what it is).
fn tga() -> Vec<u8> {
    let mut t = vec![0u8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2, 0, 24, 0];
    t.extend_from_slice(&[200; 12]);
    t
}

fn bmp() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(4, 4, image::Rgb([10, 200, 30]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Bmp)
        .unwrap_or_else(|_| {
            // `image` built without BMP: a header is enough for the content check.
            out = b"BM".to_vec();
            out.extend_from_slice(&[0; 60]);
        });
    out
}

#[test]
fn loose_pictures_veil_does_not_redact_are_failures_not_other_files() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("face.tga"), tga()).unwrap();
    std::fs::write(input.join("photo"), bmp()).unwrap();
    std::fs::write(input.join("notes.txt"), b"captions").unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q", &"--copy-other"]);
    assert_eq!(code, 1, "{err}");
    let recs = provenance(&out);
    for name in ["face.tga", "photo"] {
        let r = recs.iter().find(|r| r["path"] == name).unwrap();
        assert_eq!(r["status"], "failed", "{r}");
        assert!(
            r["error"]
                .as_str()
                .unwrap()
                .contains("JPEG, PNG and WebP only"),
            "{r}"
        );
        assert!(!out.join(name).exists(), "{name} was written");
    }
    assert!(
        out.join("notes.txt").is_file(),
        "other files are still copied"
    );
}

#[test]
fn archive_members_veil_does_not_redact_are_left_out_and_failed() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("000001.json", b"{\"caption\": \"x\"}".to_vec()),
        ("000001.tga", tga()),
        (
            "000002.svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec(),
        ),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    std::fs::write(input.join("shard.tar"), b.into_inner().unwrap()).unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 1, "{err}");
    let recs = provenance(&out);
    for member in ["shard.tar#000001.tga", "shard.tar#000002.svg"] {
        let r = recs.iter().find(|r| r["path"] == member).unwrap();
        assert_eq!(r["status"], "failed", "{r}");
    }
    if out.join("shard.tar").exists() {
        let mut a = tar::Archive::new(std::fs::File::open(out.join("shard.tar")).unwrap());
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !n.ends_with(".tga") && !n.ends_with(".svg")),
            "{names:?}"
        );
    }
}

/// Loose annotation files copied with `--copy-other` can carry the very photo veil redacts: a
/// LabelMe JSON's `imageData` (base64), an HTML page's data URI, a JPEG wrapped in a PDF. They are
/// failed records and not copied; a JSON without one still is.
#[test]
fn loose_files_carrying_a_picture_inside_are_failures_not_copies() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let img = image::RgbImage::from_fn(48, 40, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 6) as u8, 90])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .encode_image(&img)
        .unwrap();
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&jpeg)
    };
    std::fs::write(
        input.join("a.json"),
        format!(r#"{{"version":"5.0","shapes":[],"imagePath":"a.jpg","imageData":"{b64}"}}"#),
    )
    .unwrap();
    std::fs::write(
        input.join("page.html"),
        format!(r#"<p>crew</p><img src="data:image/jpeg;base64,{b64}">"#),
    )
    .unwrap();
    let pdf = [
        b"%PDF-1.4\n1 0 obj << /Subtype /Image /Filter /DCTDecode >> stream\n".as_slice(),
        &jpeg,
        b"\nendstream endobj\n%%EOF\n",
    ]
    .concat();
    std::fs::write(input.join("scan.pdf"), pdf).unwrap();
    std::fs::write(
        input.join("b.json"),
        br#"{"shapes":[{"label":"face","points":[[1,2],[3,4]]}]}"#,
    )
    .unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q", &"--copy-other"]);
    assert_eq!(code, 1, "{err}");
    let recs = provenance(&out);
    for name in ["a.json", "page.html", "scan.pdf"] {
        let r = recs
            .iter()
            .find(|r| r["path"] == name)
            .unwrap_or_else(|| panic!("no record for {name}: {recs:?}"));
        assert_eq!(r["status"], "failed", "{r}");
        assert!(r["error"].as_str().unwrap().contains("it carries"), "{r}");
        assert!(!out.join(name).exists(), "{name} was copied");
    }
    assert!(
        out.join("b.json").is_file(),
        "a plain annotation is still copied"
    );
}
