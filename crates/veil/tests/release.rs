//! End-to-end tests of `veil release` on a redacted sample (real binary, temp dirs).

mod common;

use std::fs;
use std::path::Path;

use common::*;

fn redacted_sample(t: &Path) -> std::path::PathBuf {
    let input = t.join("in");
    assert_eq!(run(&[&"sample", &input]).0, 0);
    // A file that fails redaction: it can never enter a release.
    fs::write(
        input.join("broken.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .unwrap();
    let out = t.join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 1, "{err}");
    out
}

#[test]
fn release_builds_verifies_and_reports_corruption_by_name() {
    let t = tempfile::tempdir().unwrap();
    let out = redacted_sample(t.path());
    let root = t.path().join("manifests");
    let (code, stdout, err) = run(&[
        &"release",
        &"build",
        &out,
        &"--dataset",
        &"sample",
        &"--version",
        &"1",
        &"--root",
        &root,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("5 items"),
        "the failed image must not be released: {stdout}"
    );
    let manifest = fs::read_to_string(root.join("sample/1/manifest.jsonl")).unwrap();
    assert!(!manifest.contains("broken.jpg"));
    assert!(
        manifest.contains("\"output_phash\":{\"pdq\":"),
        "perceptual hashes missing: {manifest}"
    );
    // Immutable: building the same version again is refused.
    let (code, _, _) = run(&[
        &"release",
        &"build",
        &out,
        &"--dataset",
        &"sample",
        &"--version",
        &"1",
        &"--root",
        &root,
    ]);
    assert_ne!(code, 0);

    let verify = |dir: &Path| {
        run(&[
            &"release",
            &"verify",
            &dir,
            &"--release",
            &"sample@1",
            &"--root",
            &root,
        ])
    };
    let (code, stdout, err) = verify(&out);
    assert_eq!(code, 0, "{stdout}{err}");
    // The same as a published tar archive, checked without extracting it.
    let tar_file = t.path().join("sample-1.tar");
    let st = std::process::Command::new("tar")
        .arg("cf")
        .arg(&tar_file)
        .arg("-C")
        .arg(&out)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let (code, stdout, err) = verify(&tar_file);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.contains("5 of 5 items ok"), "{stdout}");

    // Corrupt one byte, delete one file, add one file: each is named and verify fails.
    let copy = t.path().join("copy");
    fs::create_dir_all(&copy).unwrap();
    for e in fs::read_dir(&out).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let mut bytes = fs::read(copy.join("camera.png")).unwrap();
    let n = bytes.len() / 2;
    bytes[n] ^= 1;
    fs::write(copy.join("camera.png"), bytes).unwrap();
    fs::remove_file(copy.join("coffee.png")).unwrap();
    fs::write(copy.join("extra.jpg"), b"x").unwrap();
    let (code, stdout, _) = verify(&copy);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("CHANGED  camera.png"), "{stdout}");
    assert!(stdout.contains("MISSING  coffee.png"), "{stdout}");
    assert!(stdout.contains("EXTRA    extra.jpg"), "{stdout}");
    assert!(!stdout.contains("astronaut.png"), "{stdout}");
    let tar_bad = t.path().join("bad.tar");
    let st = std::process::Command::new("tar")
        .arg("cf")
        .arg(&tar_bad)
        .arg("copy")
        .current_dir(t.path())
        .status()
        .unwrap();
    assert!(st.success());
    let (code, stdout, _) = verify(&tar_bad);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("CHANGED  camera.png") && stdout.contains("MISSING  coffee.png"),
        "{stdout}"
    );
}

#[test]
fn inclusion_proofs_verify_and_fail_when_tampered_and_diff_counts_changes() {
    let t = tempfile::tempdir().unwrap();
    let out = redacted_sample(t.path());
    let root = t.path().join("manifests");
    assert_eq!(
        run(&[
            &"release",
            &"build",
            &out,
            &"--dataset",
            &"s",
            &"--version",
            &"1",
            &"--root",
            &root
        ])
        .0,
        0
    );

    let (code, proof, err) = run(&[
        &"release",
        &"prove",
        &"s@1",
        &"--item",
        &"chelsea.png",
        &"--root",
        &root,
    ]);
    assert_eq!(code, 0, "{err}");
    let file = t.path().join("proof.json");
    fs::write(&file, &proof).unwrap();
    let (code, stdout, _) = run(&[&"release", &"check-proof", &file]);
    assert_eq!(code, 0, "{stdout}");
    // A proof for an absent item does not exist.
    let (code, _, _) = run(&[
        &"release",
        &"prove",
        &"s@1",
        &"--item",
        &"broken.jpg",
        &"--root",
        &root,
    ]);
    assert_eq!(code, 1);
    // Tampering: the leaf line (another hash), or a sibling on the path.
    let mut p: serde_json::Value = serde_json::from_str(&proof).unwrap();
    let leaf = p["leaf"]
        .as_str()
        .unwrap()
        .replace("chelsea.png", "chelsea2.png");
    p["leaf"] = leaf.into();
    fs::write(&file, p.to_string()).unwrap();
    assert_eq!(run(&[&"release", &"check-proof", &file]).0, 1);
    let mut p: serde_json::Value = serde_json::from_str(&proof).unwrap();
    let sib = p["path"][0].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        if sib.starts_with('0') { "1" } else { "0" },
        &sib[1..]
    );
    p["path"][0] = flipped.into();
    fs::write(&file, p.to_string()).unwrap();
    assert_eq!(run(&[&"release", &"check-proof", &file]).0, 1);

    // Version 2: one image removed from the tree and its record (a takedown, done by hand here).
    let prov = fs::read_to_string(out.join("provenance.jsonl")).unwrap();
    let kept: String = prov
        .lines()
        .filter(|l| !l.contains("\"path\":\"rocket.jpg\""))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(out.join("provenance.jsonl"), kept).unwrap();
    fs::remove_file(out.join("rocket.jpg")).unwrap();
    let (code, _, err) = run(&[
        &"release",
        &"build",
        &out,
        &"--dataset",
        &"s",
        &"--version",
        &"2",
        &"--parent",
        &"1",
        &"--root",
        &root,
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, stdout, _) = run(&[&"release", &"diff", &"s@1", &"s@2", &"--root", &root]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("- rocket.jpg") && stdout.contains("0 added, 1 removed, 0 changed"),
        "{stdout}"
    );
}
