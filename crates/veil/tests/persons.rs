//! End-to-end tests of persons, fusion, policy files, `veil models add` and `veil check`.

#![allow(clippy::print_stderr)]

mod common;

use std::fs;
use std::path::Path;

use common::*;

fn boxes(rec: &serde_json::Value, class: &str) -> Vec<[f64; 4]> {
    rec["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["class"] == class)
        .map(|d| {
            let b = &d["box"];
            [
                b["x1"].as_f64().unwrap(),
                b["y1"].as_f64().unwrap(),
                b["x2"].as_f64().unwrap(),
                b["y2"].as_f64().unwrap(),
            ]
        })
        .collect()
}

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let i = ix * iy;
    i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i)
}

/// Fraction of `g` covered by the union of `rs`, sampled on a 20x20 grid.
fn coverage(g: [f64; 4], rs: &[[f64; 4]]) -> f64 {
    let mut hit = 0;
    for i in 0..20 {
        for j in 0..20 {
            let x = g[0] + (g[2] - g[0]) * (i as f64 + 0.5) / 20.0;
            let y = g[1] + (g[3] - g[1]) * (j as f64 + 0.5) / 20.0;
            hit += rs
                .iter()
                .any(|r| r[0] <= x && x < r[2] && r[1] <= y && y < r[3])
                as usize;
        }
    }
    hit as f64 / 400.0
}

/// Grows a box about its centre like the person policy's `box_scale` does before obfuscation.
fn grown(b: [f64; 4], scale: f64) -> [f64; 4] {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let (hw, hh) = ((b[2] - b[0]) * scale / 2.0, (b[3] - b[1]) * scale / 2.0);
    [cx - hw, cy - hh, cx + hw, cy + hh]
}

/// Person recall of `--detect persons` (with `extra` arguments) on the shared labelled photos:
/// (non-hard persons, matched at IoU 0.5, covered at least half, covered at least 90% by the
/// obfuscated regions, the ones under 90%), or None to skip.
fn person_recall(extra: &[&str]) -> Option<(usize, usize, usize, usize, Vec<String>)> {
    let (faces, persons, labels_file) = (
        shared("images/faces")?,
        shared("images/persons")?,
        shared("labels/persons.json")?,
    );
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    copy_dir(&faces, &input);
    copy_dir(&persons, &input);
    let out = t.path().join("out");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"redact", &input, &out, &"-q", &"--detect", &"persons"];
    for a in extra {
        args.push(a);
    }
    let (code, _, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    let recs = provenance(&out);
    let (mut total, mut matched, mut half, mut most) = (0, 0, 0, 0);
    let mut under = Vec::new();
    for rec in &recs {
        let name = rec["path"].as_str().unwrap();
        let scale = rec["params"]["policy"]["person"]["redact"]["box_scale"]
            .as_f64()
            .unwrap();
        let regions: Vec<[f64; 4]> = boxes(rec, "person")
            .into_iter()
            .map(|b| grown(b, scale))
            .collect();
        for (b, hard, ignore) in labels(&labels_file, name) {
            if hard || ignore {
                continue;
            }
            total += 1;
            matched += boxes(rec, "person").iter().any(|r| iou(b, *r) >= 0.5) as usize;
            let c = coverage(b, &regions);
            half += (c >= 0.5) as usize;
            most += (c >= 0.9) as usize;
            if c < 0.9 {
                under.push(format!("{name} {b:?}: {c:.2}"));
            }
        }
    }
    assert!(total >= 70, "labels not read: {total}");
    Some((total, matched, half, most, under))
}

/// The default person model (NanoDet-g, from npm) covers every non-hard labelled person at least
/// half, at least 97% of them at least 90% (issue 15's target; measured 75/76), and matches at
/// least 94% at IoU 0.5 (measured 72/76).
#[test]
fn every_labelled_person_is_covered_with_detect_persons() {
    let Some((total, matched, half, most, under)) = person_recall(&[]) else {
        return;
    };
    eprintln!(
        "nanodet-g: {total} persons, IoU 0.5 {matched}, covered >= 0.5 {half}, >= 0.9 {most}\n{}",
        under.join("\n")
    );
    assert_eq!(
        half,
        total,
        "persons not even half covered:\n{}",
        under.join("\n")
    );
    assert!(
        most * 100 >= total * 97,
        "persons under 90% covered:\n{}",
        under.join("\n")
    );
    assert!(
        matched * 100 >= total * 94,
        "person recall fell: {matched}/{total}"
    );
}

/// Person boxes `--detect persons` puts on the shared photos without people (`extra` added to
/// the command), with the confirmation threshold each record says was used; None to skip.
fn boxes_on_negatives(extra: &[&str]) -> Option<(Vec<String>, f64)> {
    let negatives = shared("images/negatives")?;
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"redact",
        &negatives,
        &out,
        &"-q",
        &"--detect",
        &"persons",
        &"--no-head-fallback",
    ];
    for a in extra {
        args.push(a);
    }
    let (code, _, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    let recs = provenance(&out);
    assert!(recs.len() >= 10, "negatives not read: {}", recs.len());
    let confirm = recs[0]["params"]["policy"]["person_confirm_below"]
        .as_f64()
        .expect("the record says which confirmation ran");
    let found = recs
        .iter()
        .flat_map(|r| {
            let name = r["path"].as_str().unwrap().to_string();
            boxes(r, "person")
                .into_iter()
                .map(move |b| format!("{name} {b:?}"))
        })
        .collect();
    Some((found, confirm))
}

/// Issue 15's target: at most 1 false person box per 10 photos without people. NanoDet-g boxed a
/// baboon, a circuit board and a butterfly (4 boxes at 0.31-0.48); the closer look at boxes under
/// 0.5 removes what it does not find again, and `--person-confirm-below 0` turns it off.
#[test]
fn at_most_one_person_box_on_ten_photos_without_people() {
    let Some((found, confirm)) = boxes_on_negatives(&[]) else {
        return;
    };
    assert_eq!(confirm, 0.5);
    assert!(
        found.len() <= 1,
        "false person boxes:\n{}",
        found.join("\n")
    );
    let (unconfirmed, off) = boxes_on_negatives(&["--person-confirm-below", "0"]).unwrap();
    assert_eq!(off, 0.0);
    assert!(
        unconfirmed.len() > found.len(),
        "without the closer look there were more: {unconfirmed:?}"
    );
}

/// YOLOX-Nano stays available (`--person-model yolox-nano` once imported) and keeps its
/// measured level: every person covered at least half, 90% matched at IoU 0.5.
#[test]
fn yolox_nano_stays_an_option_for_persons() {
    if ensure_yolox().is_none() {
        return;
    }
    let Some((total, matched, half, most, under)) =
        person_recall(&["--person-model", "yolox-nano"])
    else {
        return;
    };
    eprintln!(
        "yolox-nano: {total} persons, IoU 0.5 {matched}, covered >= 0.5 {half}, >= 0.9 {most}\n{}",
        under.join("\n")
    );
    assert_eq!(
        half,
        total,
        "persons not even half covered:\n{}",
        under.join("\n")
    );
    assert!(
        matched * 100 >= total * 90,
        "person recall fell: {matched}/{total}"
    );
}

/// `veil check` passes a clean output and finds a face pasted, un-redacted, into an output.
#[test]
fn check_finds_a_face_planted_unredacted_in_an_output() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    assert_eq!(run(&[&"sample", &input]).0, 0);
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q", &"--check"]);
    assert_eq!(code, 0, "a clean run must pass its own check: {err}");
    assert!(err.contains("0 leaks"), "{err}");

    // Paste the astronaut's face (from the source) into the redacted coffee photo.
    let astro = image::open(input.join("astronaut.png")).unwrap().to_rgb8();
    let face = image::imageops::crop_imm(&astro, 160, 40, 130, 160).to_image();
    let coffee_path = out.join("coffee.png");
    let mut coffee = image::open(&coffee_path).unwrap().to_rgb8();
    image::imageops::overlay(&mut coffee, &face, 200, 150);
    coffee.save(&coffee_path).unwrap();

    let (code, _, err) = run(&[&"check", &out, &"-q"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("LEAK coffee.png: face"), "{err}");
    assert!(!err.contains("LEAK astronaut.png"), "{err}");
    let rec = provenance(&out)
        .into_iter()
        .find(|r| r["path"] == "coffee.png")
        .unwrap();
    let leaks = rec["check"]["leaks"].as_array().unwrap();
    assert_eq!(leaks.len(), 1, "{rec}");
    let b = &leaks[0]["box"];
    let (cx, cy) = (
        (b["x1"].as_f64().unwrap() + b["x2"].as_f64().unwrap()) / 2.0,
        (b["y1"].as_f64().unwrap() + b["y2"].as_f64().unwrap()) / 2.0,
    );
    assert!(
        (200.0..330.0).contains(&cx) && (150.0..310.0).contains(&cy),
        "leak at the wrong place: {b}"
    );
}

/// The runtime library of the default cache, so a private cache need not fetch it again.
fn runtime_library() -> String {
    let (code, out, err) = run(&[&"doctor", &"--device", &"cpu"]);
    assert_eq!(code, 0, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("runtime library:"))
        .unwrap();
    line.trim_start_matches("runtime library:")
        .trim()
        .rsplit_once(" (")
        .unwrap()
        .0
        .to_string()
}

/// A detector registered with `veil models add` is verified before every load: once its cached
/// file is altered it is refused, naming the file and both hashes.
#[test]
fn model_registered_with_models_add_is_refused_after_alteration() {
    let Some(yolox) = shared("models/yolox_nano.onnx") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let lib = runtime_library();
    let veil_in = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut c = veil();
        c.env("VEIL_CACHE_DIR", &cache).env("ORT_DYLIB_PATH", &lib);
        for a in args {
            c.arg(a.as_ref());
        }
        let o = c.output().unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (code, out) = veil_in(&[
        &"models",
        &"add",
        &"--family",
        &"retinaface",
        &"--name",
        &"x",
        &"--file",
        &yolox,
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("centerface") && out.contains("yolox"),
        "families not listed: {out}"
    );

    let (code, out) = veil_in(&[
        &"models",
        &"add",
        &"--family",
        &"yolox",
        &"--name",
        &"my-persons",
        &"--file",
        &yolox,
    ]);
    assert_eq!(code, 0, "{out}");
    let input = t.path().join("in");
    fs::create_dir_all(&input).unwrap();
    fs::copy(
        shared("images/persons/vtest_f0.png").unwrap(),
        input.join("a.png"),
    )
    .unwrap();
    let run_persons = |out_dir: &Path| {
        veil_in(&[
            &"redact",
            &input,
            &out_dir,
            &"-q",
            &"--detect",
            &"persons",
            &"--person-model",
            &"my-persons",
        ])
    };
    let (code, out) = run_persons(&t.path().join("ok"));
    assert_eq!(code, 0, "registered model must load: {out}");
    let rec = &provenance(&t.path().join("ok"))[0];
    assert_eq!(rec["models"][0]["name"], "my-persons");

    let cached = cache.join("models/my-persons.onnx");
    let mut bytes = fs::read(&cached).unwrap();
    let n = bytes.len() / 3;
    bytes[n] ^= 0x40;
    fs::write(&cached, &bytes).unwrap();
    let (code, out) = run_persons(&t.path().join("bad"));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("blake3 mismatch") && out.contains("my-persons.onnx"),
        "{out}"
    );
    assert!(!t.path().join("bad/a.png").exists());
}

/// A per-dataset policy file changes the obfuscation and is recorded by its blake3.
#[test]
fn policy_file_is_applied_and_recorded_by_hash() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    assert_eq!(run(&[&"sample", &input]).0, 0);
    let policy = t.path().join("policy.toml");
    fs::write(
        &policy,
        "[face]\nmode = \"fill\"\nshape = \"box\"\nbox_scale = 1.1\n",
    )
    .unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q", &"--policy", &policy]);
    assert_eq!(code, 0, "{err}");
    let want = blake3::hash(&fs::read(&policy).unwrap())
        .to_hex()
        .to_string();
    for r in provenance(&out) {
        assert_eq!(r["policy_blake3"].as_str(), Some(want.as_str()));
        assert_eq!(r["params"]["policy"]["face"]["redact"]["mode"], "fill");
    }
    // The astronaut's face is now a black box.
    let rec = provenance(&out)
        .into_iter()
        .find(|r| r["path"] == "astronaut.png")
        .unwrap();
    let b = boxes(&rec, "face")[0];
    let img = image::open(out.join("astronaut.png")).unwrap().to_rgb8();
    let p = img.get_pixel(((b[0] + b[2]) / 2.0) as u32, ((b[1] + b[3]) / 2.0) as u32);
    assert_eq!(p.0, [0, 0, 0]);
    fs::write(&policy, "[face]\nblurriness = 1\n").unwrap();
    let (code, _, err) = run(&[
        &"redact",
        &input,
        &t.path().join("o2"),
        &"-q",
        &"--policy",
        &policy,
    ]);
    assert_eq!(code, 2, "{err}");
}

/// Every person mode de-identifies every shared photo: veil's own strength never makes an image
/// fail (before issue 15, `--person-mode blur` failed two of the four street frames and `fill`
/// one, where a face's blur smeared the fill's edge into the face), and the records say persons
/// are obfuscated by their height.
#[test]
fn every_person_mode_redacts_every_shared_photo() {
    let (Some(faces), Some(persons)) = (shared("images/faces"), shared("images/persons")) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    copy_dir(&faces, &input);
    copy_dir(&persons, &input.join("persons"));
    for mode in ["pixelate", "blur", "fill"] {
        let out = t.path().join(mode);
        let (code, _, err) = run(&[
            &"redact",
            &input,
            &out,
            &"--detect",
            &"faces,persons",
            &"--person-mode",
            &mode,
            &"--device",
            &"cpu",
            &"-q",
        ]);
        let records = provenance(&out);
        let failed: Vec<String> = records
            .iter()
            .filter(|r| r["status"] == "failed")
            .map(|r| format!("{}: {}", r["path"], r["error"]))
            .collect();
        assert!(failed.is_empty(), "--person-mode {mode}: {failed:#?}");
        assert_eq!(code, 0, "--person-mode {mode}: {err}");
        assert_eq!(records.len(), 20);
        let person = &records[0]["params"]["policy"]["person"]["redact"];
        assert_eq!(person["mode"], mode);
        assert_eq!(person["strength_basis"], "long", "{person}");
        assert!(
            records.iter().any(|r| boxes(r, "person").len() >= 3
                && r["path"].as_str().unwrap().starts_with("persons/")),
            "persons were found"
        );
    }
}

/// `veil check` looks again for whatever the redaction looked for: persons too when the records
/// say persons were detected, without `--detect`; an honest output still passes.
#[test]
fn check_looks_for_persons_when_the_records_say_persons_were_redacted() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    assert_eq!(run(&[&"sample", &input]).0, 0);
    let out = t.path().join("out");
    let (code, _, err) = run(&[
        &"redact",
        &input,
        &out,
        &"-q",
        &"--detect",
        &"faces,persons",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&[&"check", &out]);
    assert_eq!(code, 0, "an honest output passes: {err}");
    assert!(err.contains("checking for persons too"), "{err}");
    let faces_only = t.path().join("faces");
    let (code, _, err) = run(&[&"redact", &input, &faces_only, &"-q"]);
    assert_eq!(code, 0, "{err}");
    let (_, _, err) = run(&[&"check", &faces_only]);
    assert!(!err.contains("persons too"), "{err}");
}
