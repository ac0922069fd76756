//! The review page and the review import on hand-made output trees (no models needed).

use std::fs;
use std::path::Path;

use veil_core::{BBox, Detection, FailureStage, ImageStatus, ObjectClass};
use veil_ledger::{LeakCheck, ProvenanceRecord, ReviewDecision, RunSummary, PROVENANCE_SCHEMA};
use veil_report::{
    import_review, write_report, Category, ReportError, ReportOptions, REVIEW_FORMAT,
};

fn b3(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn params() -> serde_json::Value {
    serde_json::json!({"policy": {
        "face": {"threshold": 0.4, "redact": {"box_scale": 1.3, "shape": "ellipse"}},
        "person": {"threshold": 0.3, "redact": {"box_scale": 1.0, "shape": "box"}},
    }})
}

fn det(class: ObjectClass, score: f32, model: &str) -> Detection {
    Detection {
        bbox: BBox::new(10.0, 10.0, 40.0, 50.0),
        score,
        class,
        model: model.into(),
    }
}

fn png(rgb: [u8; 3], w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Writes `bytes` as the output `path` and returns its record.
fn output(root: &Path, path: &str, bytes: &[u8], detections: Vec<Detection>) -> ProvenanceRecord {
    let file = root.join(path);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, bytes).unwrap();
    let img = image::load_from_memory(bytes).unwrap();
    ProvenanceRecord {
        schema: PROVENANCE_SCHEMA,
        path: path.into(),
        status: if detections.is_empty() {
            ImageStatus::NoDetections
        } else {
            ImageStatus::Redacted
        },
        source_blake3: Some(b3(path.as_bytes())),
        source_size: Some(1),
        output_blake3: Some(b3(bytes)),
        output_size: Some(bytes.len() as u64),
        source_phash: None,
        output_phash: None,
        format: Some("png".into()),
        dimensions: Some([img.width(), img.height()]),
        orientation: Some(1),
        detections,
        metadata_removed: vec![],
        metadata_kept: vec![],
        models: vec![],
        params_blake3: "p".repeat(64),
        params: params(),
        policy_blake3: None,
        tool_version: "0.1.0".into(),
        check: None,
        error_stage: None,
        error: None,
        review: None,
        archive: None,
    }
}

fn failed(path: &str, error: &str) -> ProvenanceRecord {
    let dir = tempfile::tempdir().unwrap();
    let mut r = output(dir.path(), "x.png", &png([0, 0, 0], 4, 4), vec![]);
    r.path = path.into();
    r.status = ImageStatus::Failed;
    r.output_blake3 = None;
    r.output_size = None;
    r.dimensions = None;
    r.error_stage = Some(FailureStage::Decode);
    r.error = Some(error.into());
    r
}

fn write_records(root: &Path, records: &[ProvenanceRecord]) {
    let mut s = String::new();
    for r in records {
        s.push_str(&serde_json::to_string(r).unwrap());
        s.push('\n');
    }
    fs::write(root.join("provenance.jsonl"), s).unwrap();
}

fn summary(images: u64) -> RunSummary {
    RunSummary {
        tool_version: "0.1.0".into(),
        started_at: "2026-01-02T03:04:05Z".into(),
        finished_at: "2026-01-02T03:05:05Z".into(),
        input: "in".into(),
        output: "out".into(),
        device: "cpu".into(),
        workers: 2,
        images,
        redacted: 0,
        no_detections: 0,
        failed: 0,
        detections: 0,
        other_files: vec![],
        copied_files: vec![],
        skipped_links: vec![],
        seconds: 2.0,
        images_per_second: 4.5,
        models: vec![],
        params_blake3: "p".repeat(64),
        stage_seconds: Default::default(),
    }
}

/// An output tree covering every category; returns its records.
fn tree(root: &Path) -> Vec<ProvenanceRecord> {
    use ObjectClass::{Face, Person};
    let mut recs = vec![
        output(
            root,
            "b_ok.png",
            &png([200, 0, 0], 600, 300),
            vec![det(Face, 0.95, "centerface")],
        ),
        output(
            root,
            "a_near.png",
            &png([0, 200, 0], 64, 64),
            vec![det(Face, 0.45, "centerface")],
        ),
        output(
            root,
            "z_near.png",
            &png([0, 0, 200], 64, 64),
            vec![det(Face, 0.42, "centerface")],
        ),
        output(
            root,
            "noface.png",
            &png([9, 9, 9], 64, 64),
            vec![
                det(Person, 0.9, "yolox-nano"),
                det(Face, 0.9, "head-fallback"),
            ],
        ),
        output(root, "dup1.png", &png([50, 50, 50], 32, 32), vec![]),
        output(root, "sub/dup2.png", &png([50, 50, 50], 32, 32), vec![]),
        output(root, "gone.png", &png([1, 2, 3], 8, 8), vec![]),
        output(root, "changed.png", &png([4, 5, 6], 8, 8), vec![]),
        output(
            root,
            "<script>alert(1)</script>.png",
            &png([7, 7, 7], 8, 8),
            vec![],
        ),
        failed("failed.jpg", "not an image: <b>bold</b> & \u{2028}"),
    ];
    let mut leak = output(root, "leak.png", &png([90, 0, 90], 64, 64), vec![]);
    leak.check = Some(LeakCheck {
        threshold: 0.5,
        models: vec![],
        leaks: vec![det(Person, 0.7, "yolox-nano")],
        inside: vec![],
        changed: None,
    });
    recs.push(leak);
    fs::remove_file(root.join("gone.png")).unwrap();
    fs::write(root.join("changed.png"), png([6, 5, 4], 8, 8)).unwrap();
    write_records(root, &recs);
    fs::write(
        root.join("veil-run.json"),
        serde_json::to_string(&summary(recs.len() as u64)).unwrap(),
    )
    .unwrap();
    recs
}

fn thumb_of_opt(dir: &Path, item: &serde_json::Value) -> Option<std::path::PathBuf> {
    let o = item.get("o")?.as_str()?;
    Some(dir.join(format!("thumbs/{}.jpg", &o[..32])))
}

fn data(dir: &Path) -> serde_json::Value {
    let s = fs::read_to_string(dir.join("data.js")).unwrap();
    let json = s
        .strip_prefix("window.VEIL_REPORT = ")
        .unwrap()
        .strip_suffix(";\n")
        .unwrap();
    serde_json::from_str(json).unwrap()
}

#[test]
fn cards_come_in_review_order_with_thumbnails_of_the_outputs_only() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let recs = tree(root);
    let s = write_report(root, &ReportOptions::default(), &|_| {}).unwrap();
    let order: Vec<&str> = s.order.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        order,
        [
            "failed.jpg",
            "changed.png",
            "gone.png",
            "leak.png",
            "z_near.png", // lowest margin above the threshold first
            "a_near.png",
            "noface.png",
            "<script>alert(1)</script>.png",
            "b_ok.png",
            "dup1.png",
            "sub/dup2.png",
        ]
    );
    assert_eq!(s.order[0].1, [Category::Failed]);
    assert_eq!(s.order[3].1, [Category::Leak]);
    assert_eq!(s.order[6].1, [Category::PersonsWithoutFace]);
    let c = &s.counts;
    assert_eq!(
        (c.images, c.failed, c.redacted, c.no_detections),
        (11, 1, 4, 6)
    );
    assert_eq!((c.faces, c.persons, c.heads), (3, 1, 1));
    assert_eq!(
        (
            c.leak_images,
            c.near_threshold,
            c.persons_without_face,
            c.unreadable
        ),
        (1, 2, 1, 2)
    );
    assert_eq!(s.histogram[0], 6);
    assert_eq!(s.histogram[1], 3);
    assert_eq!(s.histogram[2], 1);
    let why: Vec<&str> = s.unreadable.iter().map(|(_, w)| w.as_str()).collect();
    assert!(why.iter().any(|w| w.contains("missing")), "{why:?}");
    assert!(why.iter().any(|w| w.contains("blake3")), "{why:?}");

    // One thumbnail per distinct readable output (dup1 and dup2 share one), small JPEGs whose
    // pixels are the output's.
    let thumbs: Vec<_> = fs::read_dir(s.dir.join("thumbs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(thumbs.len(), 7, "{thumbs:?}");
    assert_eq!(s.thumbnails_made, 7);
    let d = data(&s.dir);
    let items = d["items"].as_array().unwrap();
    assert_eq!(items.len(), recs.len());
    let ok = items.iter().find(|i| i["p"] == "b_ok.png").unwrap();
    let thumb_of = |item: &serde_json::Value| {
        s.dir
            .join(format!("thumbs/{}.jpg", &item["o"].as_str().unwrap()[..32]))
    };
    let thumb = image::open(thumb_of(ok)).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (256, 128));
    let px = thumb.to_rgb8().get_pixel(128, 64).0;
    assert!(px[0] > 180 && px[1] < 30 && px[2] < 30, "{px:?}");
    assert_eq!(ok["o"], recs[0].output_blake3.as_deref().unwrap());
    // The region is the detection grown by the face box scale (1.3) as an ellipse.
    assert_eq!(ok["d"][0], serde_json::json!([0, 950, 6, 4, 45, 56, 1]));
    let dup1 = items.iter().find(|i| i["p"] == "dup1.png").unwrap();
    let dup2 = items.iter().find(|i| i["p"] == "sub/dup2.png").unwrap();
    assert_eq!(thumb_of(dup1), thumb_of(dup2));
    for item in items {
        let shown = item.get("o").is_some() && item.get("u").is_none();
        assert_eq!(
            shown,
            !["failed.jpg", "gone.png", "changed.png"].contains(&item["p"].as_str().unwrap())
        );
        assert_eq!(
            thumb_of_opt(&s.dir, item).is_some_and(|p| p.is_file()),
            shown
        );
    }
    let f = items.iter().find(|i| i["p"] == "failed.jpg").unwrap();
    assert!(f.get("o").is_none());
    assert_eq!(f["e"], "decode: not an image: <b>bold</b> & \u{2028}");
    assert_eq!(d["base"], "../");
    assert_eq!(d["run"]["images_per_second"], 4.5);

    let js = fs::read_to_string(s.dir.join("data.js")).unwrap();
    for bad in ["<", ">", "&", "\u{2028}", "http://", "https://"] {
        assert!(!js.contains(bad), "{bad:?} in data.js");
    }
    let html = fs::read_to_string(&s.index).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"));

    // A second report reuses every thumbnail.
    let again = write_report(root, &ReportOptions::default(), &|_| {}).unwrap();
    assert_eq!((again.thumbnails_made, again.thumbnails_reused), (0, 7));
}

#[test]
fn a_page_directory_holding_outputs_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let recs = vec![output(root, "report/a.png", &png([1, 1, 1], 4, 4), vec![])];
    write_records(root, &recs);
    let err = write_report(root, &ReportOptions::default(), &|_| {}).unwrap_err();
    assert!(matches!(err, ReportError::Collision { .. }), "{err}");
    // Elsewhere is fine, with links back to the output tree.
    let other = tempfile::tempdir().unwrap();
    let opts = ReportOptions {
        out_dir: Some(other.path().join("page")),
        ..ReportOptions::default()
    };
    let s = write_report(root, &opts, &|_| {}).unwrap();
    let d = data(&s.dir);
    assert!(
        d["base"].as_str().unwrap().starts_with("../"),
        "{}",
        d["base"]
    );
    assert!(d["base"].as_str().unwrap().ends_with('/'));
}

#[test]
fn a_missing_record_file_is_an_error_naming_it() {
    let t = tempfile::tempdir().unwrap();
    let err = write_report(t.path(), &ReportOptions::default(), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("provenance.jsonl"), "{err}");
}

fn review_file(decisions: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "format": REVIEW_FORMAT,
        "version": 1,
        "run": {"started_at": "2026-01-02T03:04:05Z", "params_blake3": "p".repeat(64)},
        "decisions": decisions,
    })
}

#[test]
fn decisions_are_recorded_on_the_exact_outputs_only() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let recs = tree(root);
    // A hand-written line with other spacing must survive byte for byte.
    let mut text = fs::read_to_string(root.join("provenance.jsonl")).unwrap();
    text = text.replacen("{\"schema\":1,", "{ \"schema\" : 1 ,", 1);
    fs::write(root.join("provenance.jsonl"), &text).unwrap();
    let before: Vec<String> = text.lines().map(str::to_string).collect();

    let ok = &recs[0];
    let near = &recs[1];
    let file = root.join("review.json");
    let decisions = serde_json::json!([
        {"path": ok.path, "output_blake3": ok.output_blake3, "decision": "fine", "decided_at": "2026-01-03T00:00:00.000Z"},
        {"path": near.path, "output_blake3": near.output_blake3, "decision": "needs_fix",
         "note": "ear <visible>\nleft", "reviewer": "ann", "decided_at": "2026-01-03T00:00:01.000Z"},
        {"path": "changed.png", "output_blake3": "0".repeat(64), "decision": "fine", "decided_at": "x"},
        {"path": "nobody.png", "output_blake3": "0".repeat(64), "decision": "fine", "decided_at": "x"},
        {"path": "failed.jpg", "output_blake3": "1".repeat(64), "decision": "needs_fix", "decided_at": "x"},
    ]);
    fs::write(&file, review_file(decisions).to_string()).unwrap();
    let s = import_review(root, &file).unwrap();
    assert_eq!(s.applied, ["b_ok.png", "a_near.png"]);
    assert_eq!(s.unknown, ["nobody.png"]);
    let stale: Vec<&str> = s.stale.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(stale, ["changed.png", "failed.jpg"]);
    assert!(!s.is_complete());
    assert_eq!(s.run_mismatch, None);

    let after_text = fs::read_to_string(root.join("provenance.jsonl")).unwrap();
    let after: Vec<&str> = after_text.lines().collect();
    assert_eq!(after.len(), before.len());
    for (i, (a, b)) in before.iter().zip(&after).enumerate() {
        if i == 0 || i == 1 {
            let r: ProvenanceRecord = serde_json::from_str(b).unwrap();
            let rv = r.review.clone().unwrap();
            assert_eq!(
                rv.decision,
                if i == 0 {
                    ReviewDecision::Fine
                } else {
                    ReviewDecision::NeedsFix
                }
            );
            if i == 1 {
                assert_eq!(rv.note.as_deref(), Some("ear <visible>\nleft"));
                assert_eq!(rv.reviewer.as_deref(), Some("ann"));
            }
            // Everything else of the record is as it was.
            let mut old: ProvenanceRecord = serde_json::from_str(a).unwrap();
            old.review = r.review.clone();
            let mut new = r.clone();
            new.review = old.review.clone();
            assert_eq!(old, new);
        } else {
            assert_eq!(a, b, "line {i} changed");
        }
    }

    // The same file again changes nothing (not even the file's bytes).
    let s2 = import_review(root, &file).unwrap();
    assert!(s2.applied.is_empty());
    assert_eq!(s2.unchanged.len(), 2);
    assert_eq!(
        fs::read_to_string(root.join("provenance.jsonl")).unwrap(),
        after_text
    );

    // The page shows the recorded decisions.
    let rep = write_report(root, &ReportOptions::default(), &|_| {}).unwrap();
    assert_eq!(rep.counts.reviewed, 2);
    let d = data(&rep.dir);
    let item = d["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["p"] == "a_near.png")
        .unwrap();
    assert_eq!(item["r"]["d"], "needs_fix");
    assert_eq!(item["r"]["n"], "ear <visible>\nleft");
}

#[test]
fn invalid_review_files_change_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let recs = tree(root);
    let before = fs::read(root.join("provenance.jsonl")).unwrap();
    let ok = &recs[0];
    let good = serde_json::json!({"path": ok.path, "output_blake3": ok.output_blake3, "decision": "fine", "decided_at": "2026-01-03T00:00:00Z"});
    let cases = [
        ("format", {
            let mut f = review_file(serde_json::json!([good]));
            f["format"] = "other".into();
            f
        }),
        ("version", {
            let mut f = review_file(serde_json::json!([good]));
            f["version"] = 2.into();
            f
        }),
        ("decision", {
            let mut g = good.clone();
            g["decision"] = "maybe".into();
            review_file(serde_json::json!([g]))
        }),
        ("hex", {
            let mut g = good.clone();
            g["output_blake3"] = "ABC".into();
            review_file(serde_json::json!([g]))
        }),
        ("twice", review_file(serde_json::json!([good, good]))),
    ];
    for (what, content) in cases {
        let file = root.join(format!("{what}.json"));
        fs::write(&file, content.to_string()).unwrap();
        let err = import_review(root, &file).unwrap_err();
        assert!(
            matches!(err, ReportError::ReviewFile { .. }),
            "{what}: {err}"
        );
        assert_eq!(fs::read(root.join("provenance.jsonl")).unwrap(), before);
    }
    let file = root.join("notjson.json");
    fs::write(&file, "{").unwrap();
    assert!(import_review(root, &file).is_err());
}
