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
    let (code, stdout, err) = release_build(&out, "sample", "1", &root);
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
    let (code, _, _) = release_build(&out, "sample", "1", &root);
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
    assert_eq!(release_build(&out, "s", "1", &root).0, 0);

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

/// A Merkle path also fits a smaller tree with the same root: the last of 5 items' path proves
/// "item 1 of 2" as well. `--items` (the count published beside the root) binds the size.
#[test]
fn check_proof_binds_the_published_item_count() {
    let t = tempfile::tempdir().unwrap();
    let out = redacted_sample(t.path());
    let root = t.path().join("manifests");
    assert_eq!(release_build(&out, "s", "1", &root).0, 0);
    let info: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.join("s/1/release.json")).unwrap()).unwrap();
    let items = info["items"].as_u64().unwrap();
    assert_eq!(items, 5);
    let merkle_root = info["merkle_root"].as_str().unwrap().to_string();
    let manifest = fs::read_to_string(root.join("s/1/manifest.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(manifest.lines().last().unwrap()).unwrap();
    let (code, proof, err) = run(&[
        &"release",
        &"prove",
        &"s@1",
        &"--item",
        &last["path"].as_str().unwrap(),
        &"--root",
        &root,
    ]);
    assert_eq!(code, 0, "{err}");
    let file = t.path().join("proof.json");
    fs::write(&file, &proof).unwrap();
    let n = items.to_string();
    let check = |extra: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"release",
            &"check-proof",
            &file,
            &"--root-hash",
            &merkle_root,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (code, stdout, _) = check(&[&"--items", &n]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("published root and item count"), "{stdout}");

    let mut p: serde_json::Value = serde_json::from_str(&proof).unwrap();
    assert_eq!(p["index"], 4);
    p["index"] = 1.into();
    p["size"] = 2.into();
    fs::write(&file, p.to_string()).unwrap();
    // The root alone cannot tell: the forged position checks out against it...
    let (code, stdout, _) = check(&[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("--items"),
        "says what is not bound: {stdout}"
    );
    // ... the published count does.
    let (code, stdout, _) = check(&[&"--items", &n]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("not 5"), "{stdout}");
}

#[test]
fn absence_proofs_verify_and_fail_when_tampered() {
    let t = tempfile::tempdir().unwrap();
    let out = redacted_sample(t.path());
    let root = t.path().join("manifests");
    assert_eq!(release_build(&out, "s", "1", &root).0, 0);
    let info: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.join("s/1/release.json")).unwrap()).unwrap();
    let root_hash = info["merkle_root"].as_str().unwrap().to_string();
    let prove_absent = |item: &str| {
        run(&[
            &"release",
            &"prove",
            &"s@1",
            &"--item",
            &item,
            &"--absent",
            &"--root",
            &root,
        ])
    };
    let file = t.path().join("absent.json");
    let check = |proof: &str, extra: &[&str]| {
        fs::write(&file, proof).unwrap();
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"release", &"check-proof", &file];
        for a in extra {
            args.push(a);
        }
        run(&args)
    };

    // The failed image never entered the release: it sorts between astronaut.png and camera.png.
    let (code, proof, err) = prove_absent("broken.jpg");
    assert_eq!(code, 0, "{err}");
    let p: serde_json::Value = serde_json::from_str(&proof).unwrap();
    assert_eq!(p["path"], "broken.jpg");
    assert_eq!(p["merkle_root"].as_str(), Some(root_hash.as_str()));
    assert_eq!(p["size"], 5);
    assert_eq!(p["left"]["index"], 0);
    assert_eq!(p["right"]["index"], 1);
    assert!(
        p["left"]["leaf"]
            .as_str()
            .unwrap()
            .starts_with("{\"path\":\"astronaut.png\""),
        "{proof}"
    );
    assert!(
        p["right"]["leaf"]
            .as_str()
            .unwrap()
            .starts_with("{\"path\":\"camera.png\""),
        "{proof}"
    );
    let (code, stdout, err) = check(&proof, &[]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(
        stdout.contains("valid: broken.jpg is not in s@1 (5 items, root"),
        "{stdout}"
    );
    let (code, stdout, _) = check(&proof, &["--root-hash", &root_hash]);
    assert_eq!(code, 0, "{stdout}");
    let (code, stdout, _) = check(&proof, &["--root-hash", &"0".repeat(64)]);
    assert_eq!(code, 1, "{stdout}");

    // Edges: before the first item and after the last.
    for (item, null_side) in [("aardvark.png", "left"), ("zebra.jpg", "right")] {
        let (code, proof, err) = prove_absent(item);
        assert_eq!(code, 0, "{err}");
        let p: serde_json::Value = serde_json::from_str(&proof).unwrap();
        assert!(p[null_side].is_null(), "{proof}");
        let (code, stdout, _) = check(&proof, &[]);
        assert_eq!(code, 0, "{stdout}");
    }

    // A present item has no absence proof.
    let (code, stdout, err) = prove_absent("chelsea.png");
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.is_empty() && err.contains("chelsea.png is in s@1"),
        "{err}"
    );

    // Tampering: the path (present, or outside the bracket), an index, the sides.
    let tampered = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = p.clone();
        f(&mut v);
        check(&v.to_string(), &[]).0
    };
    for path in ["astronaut.png", "camera.png", "chelsea.png", "a.png"] {
        assert_eq!(tampered(&|v| v["path"] = path.into()), 1, "{path}");
    }
    assert_eq!(tampered(&|v| v["right"]["index"] = 2.into()), 1);
    assert_eq!(tampered(&|v| v["left"]["index"] = 1.into()), 1);
    assert_eq!(
        tampered(&|v| {
            let l = v["left"].take();
            v["left"] = v["right"].take();
            v["right"] = l;
        }),
        1
    );
    assert_eq!(tampered(&|v| v["left"] = serde_json::Value::Null), 1);
    // A valid inclusion proof that is not the neighbour.
    let (code, incl, _) = run(&[
        &"release",
        &"prove",
        &"s@1",
        &"--item",
        &"coffee.png",
        &"--root",
        &root,
    ]);
    assert_eq!(code, 0);
    assert_eq!(check(&incl, &[]).0, 0, "inclusion proofs are still checked");
    let incl: serde_json::Value = serde_json::from_str(&incl).unwrap();
    assert_eq!(tampered(&|v| v["right"] = incl.clone()), 1);
}

/// A tree holding an image or an archive of images that no record names is not released: the
/// folder is what gets uploaded. `--exclude-unrecorded` builds anyway and names what is left out.
#[test]
fn release_build_refuses_unrecorded_images_and_archives() {
    let t = tempfile::tempdir().unwrap();
    let out = redacted_sample(t.path());
    let input = t.path().join("in");
    fs::copy(input.join("astronaut.png"), out.join("stray.png")).unwrap();
    // A file where a failed record's output would be: the record (no output) does not vouch for it.
    fs::copy(input.join("astronaut.png"), out.join("broken.jpg")).unwrap();
    let mut shard = tar::Builder::new(Vec::new());
    shard
        .append_path_with_name(input.join("coffee.png"), "000001.png")
        .unwrap();
    fs::write(out.join("shard-000.tar"), shard.into_inner().unwrap()).unwrap();
    let root = t.path().join("manifests");
    let (code, _, err) = release_build(&out, "sample", "1", &root);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("NOT REDACTED BY VEIL stray.png: an image"),
        "{err}"
    );
    assert!(
        err.contains("NOT REDACTED BY VEIL shard-000.tar: tar archive that holds images"),
        "{err}"
    );
    assert!(
        err.contains("NOT REDACTED BY VEIL broken.jpg: an image"),
        "{err}"
    );
    assert!(!root.join("sample/1").exists(), "nothing built");
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
        &"--exclude-unrecorded",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("LEFT OUT stray.png"), "{err}");
    assert!(err.contains("LEFT OUT broken.jpg"), "{err}");
    assert!(stdout.contains("5 items"), "{stdout}");
    let manifest = fs::read_to_string(root.join("sample/1/manifest.jsonl")).unwrap();
    assert!(!manifest.contains("stray.png") && !manifest.contains("shard-000.tar"));
}

fn pack(out: &Path, root: &Path, to: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"release",
        &"pack",
        &out,
        &"--release",
        &"sample@1",
        &"--root",
        &root,
        &"--to",
        &to,
    ];
    for e in extra {
        args.push(e);
    }
    run(&args)
}

/// A release packs to a directory, a .tar, a .tar.zst and a .zip holding exactly its items; each
/// archive packs to the same bytes twice; `release verify` accepts every pack; an output changed
/// after the release makes the pack fail and leave nothing.
#[test]
fn release_packs_are_exact_deterministic_and_verifiable() {
    let t = tempfile::tempdir().unwrap();
    let out = redacted_sample(t.path());
    let root = t.path().join("manifests");
    assert_eq!(release_build(&out, "sample", "1", &root).0, 0);
    let packs = t.path().join("packs");
    fs::create_dir_all(&packs).unwrap();
    for name in ["dir", "a.tar", "a.tar.zst", "a.zip"] {
        let to = packs.join(name);
        let (code, stdout, err) = pack(&out, &root, &to, &["--manifest", "--card"]);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(stdout.contains("5 items"), "{stdout}");
        let (code, stdout, err) = run(&[
            &"release",
            &"verify",
            &to,
            &"--release",
            &"sample@1",
            &"--root",
            &root,
        ]);
        assert_eq!(code, 0, "{name}: {stdout}{err}");
        assert!(stdout.contains("5 of 5 items ok"), "{name}: {stdout}");
        if name != "dir" {
            let again = packs.join(format!("again-{name}"));
            assert_eq!(pack(&out, &root, &again, &["--manifest", "--card"]).0, 0);
            assert_eq!(
                fs::read(&to).unwrap(),
                fs::read(&again).unwrap(),
                "{name}: packing twice gives the same bytes"
            );
        }
    }
    // Exactly the items (and the asked-for extras): no records, no failed image's name.
    let dir = packs.join("dir");
    let card = fs::read_to_string(dir.join("README.md")).unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.join("sample/1/release.json")).unwrap())
            .unwrap();
    assert!(card.starts_with("---\n"), "{card}");
    assert!(
        card.contains(info["merkle_root"].as_str().unwrap()),
        "{card}"
    );
    assert!(card.contains("centerface"), "{card}");
    assert!(dir.join("veil-release/sample/1/manifest.jsonl").is_file());
    assert!(!dir.join("provenance.jsonl").exists() && !dir.join("broken.jpg").exists());
    // An output changed after the release: the pack stops and leaves nothing.
    let victim = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .unwrap();
    let mut bytes = fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&victim, bytes).unwrap();
    let to = packs.join("bad.zip");
    let (code, _, err) = pack(&out, &root, &to, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("blake3"), "{err}");
    assert!(!to.exists());
    assert!(!packs.join("bad.zip.veil-partial").exists());
}

/// Outputs changed after redaction are all listed, and no release is built.
#[test]
fn release_build_lists_every_output_changed_since_redaction() {
    let t = tempfile::tempdir().unwrap();
    let out = redacted_sample(t.path());
    let mut changed = Vec::new();
    for e in fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "png" || x == "jpg") && changed.len() < 2 {
            let mut b = fs::read(&p).unwrap();
            b.push(0);
            fs::write(&p, b).unwrap();
            changed.push(p.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    let root = t.path().join("manifests");
    let (code, _, err) = release_build(&out, "sample", "1", &root);
    assert_eq!(code, 1, "{err}");
    for name in &changed {
        assert!(
            err.contains(&format!("CHANGED {name}: size")),
            "{name}: {err}"
        );
    }
    assert!(!root.join("sample/1").exists());
}
