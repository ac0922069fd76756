//! `veil redact --replay-detections`: the detections an earlier run recorded, given again to the
//! same bytes, give the same outputs; a changed or new image fails closed.

#![allow(clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

fn by_path(out: &Path) -> BTreeMap<String, serde_json::Value> {
    provenance(out)
        .into_iter()
        .map(|r| (r["path"].as_str().unwrap().to_string(), r))
        .collect()
}

#[test]
fn replayed_detections_give_the_same_outputs_and_changed_images_fail_closed() {
    let Some(faces) = shared("images/faces") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    copy_dir(&faces, &input);
    let first = t.path().join("first");
    let (code, _, err) = run(&[&"redact", &input, &first, &"--device", &"cpu", &"-q"]);
    assert_eq!(code, 0, "{err}");
    let records = first.join("provenance.jsonl");

    // The same bytes: the same detections and the same output files.
    let again = t.path().join("again");
    let (code, _, err) = run(&[
        &"redact",
        &input,
        &again,
        &"--replay-detections",
        &records,
        &"-q",
    ]);
    assert_eq!(code, 0, "{err}");
    let (a, b) = (by_path(&first), by_path(&again));
    assert_eq!(a.len(), 16);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut regions = 0;
    for (path, r) in &a {
        let s = &b[path];
        assert_eq!(r["detections"], s["detections"], "{path}");
        assert_eq!(r["output_blake3"], s["output_blake3"], "{path}");
        regions += r["detections"].as_array().unwrap().len();
        assert_eq!(
            s["models"][0]["family"], "replay",
            "{path}: records say what ran"
        );
    }
    assert!(regions > 50, "the photos hold many faces: {regions}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(again.join("veil-run.json")).unwrap()).unwrap();
    assert_eq!(summary["device"], "replay");

    // A photo whose bytes changed, and one the records never saw: failed, no output.
    let changed = input.join("zidane.jpg");
    let mut bytes = std::fs::read(&changed).unwrap();
    bytes.extend_from_slice(b"trailing bytes");
    std::fs::write(&changed, bytes).unwrap();
    std::fs::copy(input.join("bus.jpg"), input.join("new.jpg")).unwrap();
    let third = t.path().join("third");
    let (code, _, err) = run(&[
        &"redact",
        &input,
        &third,
        &"--replay-detections",
        &records,
        &"-q",
    ]);
    assert_eq!(code, 1, "failed images set the exit code: {err}");
    let c = by_path(&third);
    for (name, why) in [
        ("zidane.jpg", "bytes differ"),
        ("new.jpg", "no successful record"),
    ] {
        assert_eq!(c[name]["status"], "failed", "{name}");
        let error = c[name]["error"].as_str().unwrap();
        assert!(error.contains(why), "{name}: {error}");
        assert!(!third.join(name).exists(), "{name}: no output");
    }
    assert_eq!(c["bus.jpg"]["output_blake3"], a["bus.jpg"]["output_blake3"]);
}
