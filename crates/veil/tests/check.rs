//! `veil check` proves the tree, not just the detector: an output swapped for its original, an
//! image or archive that no record names, and a face painted back inside its own region (with
//! its record edited to match, so that only the detector can tell) each fail the check (exit 1).

mod common;

use std::io::Cursor;
use std::path::Path;

use common::*;

fn redact_faces(t: &Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let faces = shared("images/faces")?;
    let input = t.join("in");
    copy_dir(&faces, &input);
    let out = t.join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"--device", &"cpu", &"-q"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&[&"check", &out, &"--device", &"cpu", &"-q"]);
    assert_eq!(code, 0, "a fresh output passes: {err}");
    Some((input, out))
}

fn check(out: &Path) -> (i32, String) {
    let (code, _, err) = run(&[&"check", &out, &"--device", &"cpu", &"-q"]);
    (code, err)
}

#[test]
fn an_original_copied_over_its_output_is_changed_since_redaction() {
    let t = tempfile::tempdir().unwrap();
    let Some((input, out)) = redact_faces(t.path()) else {
        return;
    };
    std::fs::copy(input.join("t1.jpg"), out.join("t1.jpg")).unwrap();
    let (code, err) = check(&out);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("CHANGED t1.jpg: changed since redaction"),
        "{err}"
    );
    // Its faces sit inside the recorded regions at their source's scores.
    assert!(
        err.lines()
            .any(|l| l.contains("LEAK t1.jpg") && l.contains("inside its obfuscated region")),
        "{err}"
    );
    let rec = provenance(&out)
        .into_iter()
        .find(|r| r["path"] == "t1.jpg")
        .unwrap();
    assert!(rec["check"]["changed"]
        .as_str()
        .unwrap()
        .contains("changed since redaction"));
}

#[test]
fn images_and_archives_that_no_record_names_are_not_redacted_by_veil() {
    let t = tempfile::tempdir().unwrap();
    let Some((input, out)) = redact_faces(t.path()) else {
        return;
    };
    std::fs::create_dir_all(out.join("extra")).unwrap();
    std::fs::copy(input.join("zidane.jpg"), out.join("extra/stray.jpg")).unwrap();
    let mut shard = tar::Builder::new(Vec::new());
    shard
        .append_path_with_name(input.join("bus.jpg"), "000001.jpg")
        .unwrap();
    std::fs::write(out.join("extra/shard.bin"), shard.into_inner().unwrap()).unwrap();
    std::fs::write(out.join("extra/notes.txt"), b"not an image").unwrap();
    // A photo under a name veil reserves for its records is looked at like any other file.
    std::fs::copy(
        input.join("zidane.jpg"),
        out.join("provenance.shard-9-of-3.jsonl"),
    )
    .unwrap();
    // The review page's thumbnails of recorded outputs are known; a photo named like one is not.
    std::fs::create_dir_all(out.join("report/thumbs")).unwrap();
    let rec = provenance(&out)
        .into_iter()
        .find(|r| r["path"] == "bus.jpg")
        .unwrap();
    let known = &rec["output_blake3"].as_str().unwrap()[..32];
    std::fs::copy(
        out.join("bus.jpg"),
        out.join(format!("report/thumbs/{known}.jpg")),
    )
    .unwrap();
    let fake = "0123456789abcdef0123456789abcdef";
    std::fs::copy(
        input.join("t1.jpg"),
        out.join(format!("report/thumbs/{fake}.jpg")),
    )
    .unwrap();
    let (code, err) = check(&out);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("NOT REDACTED BY VEIL extra/stray.jpg: an image"),
        "{err}"
    );
    assert!(
        err.contains("NOT REDACTED BY VEIL extra/shard.bin: tar archive that holds images"),
        "{err}"
    );
    assert!(!err.contains("notes.txt"), "{err}");
    assert!(
        err.contains("NOT REDACTED BY VEIL provenance.shard-9-of-3.jsonl"),
        "{err}"
    );
    assert!(
        err.contains(&format!("NOT REDACTED BY VEIL report/thumbs/{fake}.jpg")),
        "{err}"
    );
    assert!(!err.contains(known), "{err}");
    assert!(
        !err.contains("provenance.jsonl") && !err.contains("veil-run.json"),
        "{err}"
    );
}

#[test]
fn a_face_painted_back_inside_its_region_is_a_leak_even_with_its_record_edited() {
    let t = tempfile::tempdir().unwrap();
    let Some((input, out)) = redact_faces(t.path()) else {
        return;
    };
    let records = provenance(&out);
    let rec = records.iter().find(|r| r["path"] == "zidane.jpg").unwrap();
    let face = rec["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["class"] == "face")
        .max_by(|a, b| {
            a["score"]
                .as_f64()
                .partial_cmp(&b["score"].as_f64())
                .unwrap()
        })
        .unwrap();
    let b = &face["box"];
    let [x1, y1, x2, y2] = ["x1", "y1", "x2", "y2"].map(|k| b[k].as_f64().unwrap());
    // The source's pixels back into the scaled region (box_scale 1.3), re-encoded.
    let (cx, cy, hw, hh) = (
        (x1 + x2) / 2.0,
        (y1 + y2) / 2.0,
        (x2 - x1) * 0.65,
        (y2 - y1) * 0.65,
    );
    let src = load_upright(&input.join("zidane.jpg"));
    let mut img = load_upright(&out.join("zidane.jpg"));
    for y in (cy - hh).max(0.0) as u32..((cy + hh) as u32).min(img.height()) {
        for x in (cx - hw).max(0.0) as u32..((cx + hw) as u32).min(img.width()) {
            img.put_pixel(x, y, *src.get_pixel(x, y));
        }
    }
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut bytes), 92)
        .encode_image(&img)
        .unwrap();
    std::fs::write(out.join("zidane.jpg"), &bytes).unwrap();
    // The record now names the tampered file: only the detector can tell.
    let lines: Vec<String> = records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if r["path"] == "zidane.jpg" {
                r["output_blake3"] = blake3::hash(&bytes).to_hex().to_string().into();
                r["output_size"] = bytes.len().into();
            }
            r.to_string()
        })
        .collect();
    std::fs::write(out.join("provenance.jsonl"), lines.join("\n") + "\n").unwrap();
    let (code, err) = check(&out);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("CHANGED"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("LEAK zidane.jpg: face")
                && l.contains("inside its obfuscated region")),
        "{err}"
    );
}

/// `--face-model auto` (the default) audits with the face model the records say redacted, so
/// the check's scores compare with the recorded ones; an explicit model is used as given.
#[test]
fn check_audits_with_the_face_model_that_redacted() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    let (code, _, err) = run(&[&"sample", &input]);
    assert_eq!(code, 0, "{err}");
    for (redact_with, check_with, audited) in [
        ("centerface", "auto", "centerface"),
        ("auto", "auto", "centerface-int8"),
        ("centerface-int8", "centerface", "centerface"),
    ] {
        let out = t.path().join(format!("{redact_with}-{check_with}"));
        let (code, _, err) = run(&[
            &"redact",
            &input,
            &out,
            &"--device",
            &"cpu",
            &"-q",
            &"--face-model",
            &redact_with,
        ]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = run(&[
            &"check",
            &out,
            &"--device",
            &"cpu",
            &"--face-model",
            &check_with,
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains(&format!("outputs with {audited}:")),
            "{redact_with} then {check_with}: {err}"
        );
    }
}
