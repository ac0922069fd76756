//! Tests of building, loading, verifying, cutting and proving releases.
use super::*;
use crate::provenance::{ModelRef, ProvenanceRecord, PROVENANCE_SCHEMA, RUN_SUMMARY_FILE};
use veil_core::FailureStage;

fn b3(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn rec(path: &str, status: ImageStatus, content: Option<&[u8]>) -> ProvenanceRecord {
    ProvenanceRecord {
        schema: PROVENANCE_SCHEMA,
        path: path.into(),
        status,
        source_blake3: Some(b3(path.as_bytes())),
        source_size: Some(10),
        output_blake3: content.map(b3),
        output_size: content.map(|c| c.len() as u64),
        source_phash: None,
        output_phash: None,
        format: Some("jpeg".into()),
        dimensions: Some([4, 4]),
        orientation: Some(1),
        detections: vec![],
        metadata_removed: vec![],
        metadata_kept: vec![],
        models: vec![ModelRef {
            name: "centerface".into(),
            family: "centerface".into(),
            blake3: b3(b"model"),
        }],
        params_blake3: b3(b"params"),
        params: serde_json::json!({"mode": "blur"}),
        policy_blake3: None,
        tool_version: "0.1.0".into(),
        check: None,
        error_stage: content.is_none().then_some(FailureStage::Decode),
        error: content.is_none().then(|| "bad".to_string()),
        review: None,
        archive: None,
    }
}

/// An output tree with three good items and one failed item.
fn output_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let files: [(&str, &[u8]); 3] = [
        ("train/a.jpg", b"aaaa"),
        ("val/b.jpg", b"bbbbbb"),
        ("c.png", b"c"),
    ];
    let mut lines = String::new();
    for (p, c) in files {
        let f = dir.path().join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, c).unwrap();
        let status = if p == "c.png" {
            ImageStatus::NoDetections
        } else {
            ImageStatus::Redacted
        };
        lines += &serde_json::to_string(&rec(p, status, Some(c))).unwrap();
        lines.push('\n');
    }
    lines += &serde_json::to_string(&rec("test/broken.jpg", ImageStatus::Failed, None)).unwrap();
    lines.push('\n');
    fs::write(dir.path().join(PROVENANCE_FILE), lines).unwrap();
    fs::write(dir.path().join(RUN_SUMMARY_FILE), "{}").unwrap();
    dir
}

fn build(out: &Path, root: &Path, version: &str) -> Result<ReleaseInfo, ReleaseError> {
    build_release(
        out,
        "faces",
        version,
        None,
        root,
        "2026-01-01T00:00:00Z".into(),
        Some("CC-BY-4.0".into()),
    )
}

#[test]
fn build_load_verify_round_trip() {
    let out = output_tree();
    let root = tempfile::tempdir().unwrap();
    let info = build(out.path(), root.path(), "1").unwrap();
    assert_eq!(info.items, 3);
    assert_eq!(info.bytes, 11);
    assert_eq!(info.params_blake3, [b3(b"params")]);
    assert_eq!(info.leaf_encoding, LEAF_ENCODING);

    let (back, items) = load_release(root.path(), "faces", "1").unwrap();
    assert_eq!(back, info);
    let paths: Vec<&str> = items.iter().map(|i| i.path.as_str()).collect();
    // Sorted by path; the failed record is not there.
    assert_eq!(paths, ["c.png", "train/a.jpg", "val/b.jpg"]);
    assert_eq!(items[0].split, None);
    assert_eq!(items[1].split.as_deref(), Some("train"));
    assert_eq!(items[2].split.as_deref(), Some("val"));
    assert_eq!(items[1].licence.as_deref(), Some("CC-BY-4.0"));
    assert_eq!(items[1].provenance.file, PROVENANCE_FILE);
    assert_eq!(items[1].models[0].name, "centerface");

    let r = verify_tree(out.path(), &items, None);
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.ok, 3);

    // The manifest file is exactly the lines, and no temporary directory is left.
    let text = fs::read_to_string(root.path().join("faces/1").join(MANIFEST_FILE)).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(
        text.starts_with("{\"path\":\"c.png\",\"size\":1,"),
        "{text}"
    );
    let names: Vec<_> = fs::read_dir(root.path().join("faces"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["1"]);
}

#[test]
fn corrupt_deleted_and_added_files_are_named() {
    let out = output_tree();
    let root = tempfile::tempdir().unwrap();
    build(out.path(), root.path(), "1").unwrap();
    let (_, items) = load_release(root.path(), "faces", "1").unwrap();

    let a = out.path().join("train/a.jpg");
    let mut bytes = fs::read(&a).unwrap();
    bytes[0] ^= 1;
    fs::write(&a, &bytes).unwrap();
    fs::remove_file(out.path().join("c.png")).unwrap();
    fs::write(out.path().join("val/new.jpg"), b"x").unwrap();

    let r = verify_tree(out.path(), &items, None);
    assert_eq!(r.missing, ["c.png"]);
    assert_eq!(r.changed.len(), 1);
    assert_eq!(r.changed[0].0, "train/a.jpg");
    assert_eq!(r.changed[0].1, b3(b"aaaa"));
    assert_eq!(r.changed[0].2, b3(&bytes));
    assert_eq!(r.extra, ["val/new.jpg"]);
    assert_eq!(r.ok, 1);
    assert!(!r.is_clean());
}

#[test]
fn unsafe_manifest_paths_are_invalid_and_links_not_followed() {
    let out = output_tree();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret.jpg"), b"s").unwrap();
    let mk = |p: &str| ManifestItem {
        path: p.into(),
        size: 1,
        blake3: b3(b"s"),
        source_blake3: None,
        provenance: ProvenanceRef {
            file: PROVENANCE_FILE.into(),
            params_blake3: String::new(),
        },
        models: vec![],
        licence: None,
        split: None,
        source_phash: None,
        output_phash: None,
        archive: None,
    };
    let abs = outside
        .path()
        .join("secret.jpg")
        .to_string_lossy()
        .into_owned();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outside.path(), out.path().join("linkdir")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.jpg"),
            out.path().join("link.jpg"),
        )
        .unwrap();
    }
    let items = vec![
        mk("../secret.jpg"),
        mk(&abs),
        mk("train/../../x"),
        mk("linkdir/secret.jpg"),
        mk("link.jpg"),
    ];
    let r = verify_tree(out.path(), &items, None);
    let mut want = vec!["../secret.jpg".to_string(), abs, "train/../../x".into()];
    want.sort();
    assert_eq!(r.invalid, want);
    assert_eq!(r.ok, 0);
    #[cfg(unix)]
    {
        assert_eq!(r.missing, ["linkdir/secret.jpg"]);
        assert_eq!(r.changed.len(), 1);
        assert_eq!(r.changed[0].0, "link.jpg");
        assert_eq!(r.changed[0].2, "symlink");
        assert!(r.extra.contains(&"linkdir".to_string()), "{r:?}");
    }
}

#[test]
fn releases_are_immutable_and_names_checked() {
    let out = output_tree();
    let root = tempfile::tempdir().unwrap();
    build(out.path(), root.path(), "1").unwrap();
    let before = fs::read(root.path().join("faces/1").join(RELEASE_FILE)).unwrap();
    let err = build(out.path(), root.path(), "1").unwrap_err();
    assert!(matches!(err, ReleaseError::AlreadyExists { .. }), "{err}");
    assert_eq!(
        fs::read(root.path().join("faces/1").join(RELEASE_FILE)).unwrap(),
        before
    );
    for bad in ["", "a/b", "..", "x..y", "."] {
        let err = build(out.path(), root.path(), bad).unwrap_err();
        assert!(
            matches!(err, ReleaseError::InvalidName { .. }),
            "{bad}: {err}"
        );
        let err = build_release(out.path(), bad, "2", None, root.path(), String::new(), None)
            .unwrap_err();
        assert!(
            matches!(err, ReleaseError::InvalidName { .. }),
            "{bad}: {err}"
        );
    }
    // A parent must exist; then it is recorded.
    let err = build_release(
        out.path(),
        "faces",
        "3",
        Some("2"),
        root.path(),
        String::new(),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, ReleaseError::ParentMissing { .. }), "{err}");
    let info = build_release(
        out.path(),
        "faces",
        "2",
        Some("1"),
        root.path(),
        String::new(),
        None,
    )
    .unwrap();
    assert_eq!(info.parent.as_deref(), Some("1"));
}

#[test]
fn bad_outputs_are_refused_by_name() {
    let root = tempfile::tempdir().unwrap();
    let out = output_tree();
    fs::write(out.path().join("val/b.jpg"), b"bbbbbc").unwrap();
    let err = build(out.path(), root.path(), "1").unwrap_err();
    assert!(matches!(err, ReleaseError::HashMismatch { .. }), "{err}");
    assert!(err.to_string().contains("b.jpg"), "{err}");

    let out = output_tree();
    fs::write(out.path().join("val/b.jpg"), b"b").unwrap();
    let err = build(out.path(), root.path(), "1").unwrap_err();
    assert!(matches!(err, ReleaseError::SizeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("b.jpg"), "{err}");

    let out = output_tree();
    fs::remove_file(out.path().join("train/a.jpg")).unwrap();
    let err = build(out.path(), root.path(), "1").unwrap_err();
    assert!(matches!(err, ReleaseError::OutputMissing { .. }), "{err}");
    assert!(err.to_string().contains("a.jpg"), "{err}");
    assert!(!root.path().join("faces/1").exists());
}

#[test]
fn tampered_release_fails_to_load() {
    let out = output_tree();
    let root = tempfile::tempdir().unwrap();
    build(out.path(), root.path(), "1").unwrap();
    let dir = root.path().join("faces/1");
    let man = dir.join(MANIFEST_FILE);
    let text = fs::read_to_string(&man).unwrap();
    fs::write(&man, text.replace("\"size\":4", "\"size\":5")).unwrap();
    let err = load_release(root.path(), "faces", "1").unwrap_err();
    assert!(
        matches!(
            err,
            ReleaseError::Mismatch {
                field: "manifest_blake3",
                ..
            }
        ),
        "{err}"
    );
    // With manifest_blake3 updated too, the Merkle root catches it.
    let info_path = dir.join(RELEASE_FILE);
    let mut info: ReleaseInfo = serde_json::from_slice(&fs::read(&info_path).unwrap()).unwrap();
    info.manifest_blake3 = b3(&fs::read(&man).unwrap());
    info.bytes += 1;
    fs::write(&info_path, serde_json::to_vec(&info).unwrap()).unwrap();
    let err = load_release(root.path(), "faces", "1").unwrap_err();
    assert!(matches!(err, ReleaseError::RootMismatch { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}: ", info_path.display())),
        "{err}"
    );
}

#[test]
fn a_consistent_release_listing_unsafe_paths_is_refused_at_load() {
    let out = output_tree();
    let root = tempfile::tempdir().unwrap();
    build(out.path(), root.path(), "1").unwrap();
    let (info, items) = load_release(root.path(), "faces", "1").unwrap();
    for bad in [
        "../x.jpg",
        "/etc/passwd",
        "train/../../y.jpg",
        "a//b",
        "./c",
    ] {
        // Everything recomputed, so only the path is wrong.
        let mut forged = items.clone();
        forged[0].path = bad.into();
        forged.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest: String = forged.iter().map(|i| manifest_line(i) + "\n").collect();
        let mut f = info.clone();
        f.version = "2".into();
        f.manifest_blake3 = b3(manifest.as_bytes());
        f.merkle_root = hex(&merkle::root(&leaf_hashes(&forged)));
        let dir = root.path().join("faces/2");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(MANIFEST_FILE), manifest).unwrap();
        fs::write(dir.join(RELEASE_FILE), serde_json::to_vec(&f).unwrap()).unwrap();
        let err = load_release(root.path(), "faces", "2").unwrap_err();
        assert!(
            matches!(&err, ReleaseError::UnsafePath { path } if path == bad),
            "{bad}: {err}"
        );
    }
}

#[test]
fn safe_rel_paths_are_plain_relative_paths() {
    for p in [
        "a.jpg",
        "train/a.jpg",
        "..x.png",
        "sub/..dots...png",
        "a b/c",
    ] {
        assert!(safe_rel_path(p), "{p}");
    }
    for p in [
        "", "/a", "../a", "a/..", "a/../b", ".", "./a", "a/.", "a//b", "a/", "a\\b", "a\0b",
    ] {
        assert!(!safe_rel_path(p), "{p:?}");
    }
}

#[test]
fn diff_counts() {
    let out = output_tree();
    let root = tempfile::tempdir().unwrap();
    build(out.path(), root.path(), "1").unwrap();
    let (_, a) = load_release(root.path(), "faces", "1").unwrap();
    let mut b = a.clone();
    b.remove(0); // c.png
    b[0].blake3 = b3(b"other"); // train/a.jpg
    let mut new = b[1].clone();
    new.path = "val/z.jpg".into();
    b.push(new);
    let d = diff(&a, &b);
    assert_eq!(d.added, ["val/z.jpg"]);
    assert_eq!(d.removed, ["c.png"]);
    assert_eq!(d.changed, ["train/a.jpg"]);
    assert_eq!(diff(&a, &a), Diff::default());
}

#[test]
fn proofs_verify_and_tampering_fails() {
    let out = output_tree();
    let root = tempfile::tempdir().unwrap();
    build(out.path(), root.path(), "1").unwrap();
    let (info, items) = load_release(root.path(), "faces", "1").unwrap();
    for item in &items {
        let p = prove(&items, &info, &item.path).unwrap().unwrap();
        assert!(check_proof(&p), "{p:?}");
        assert_eq!(p.merkle_root, info.merkle_root);
        let by_hash = prove(&items, &info, &item.blake3.to_uppercase())
            .unwrap()
            .unwrap();
        assert_eq!(by_hash, p);
        // Round trip through JSON.
        let back: InclusionProof =
            serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert!(check_proof(&back));

        let mut t = p.clone();
        t.leaf = t.leaf.replace("CC-BY-4.0", "CC0");
        assert!(!check_proof(&t));
        for k in 0..p.path.len() {
            let mut t = p.clone();
            let mut h = unhex32(&t.path[k]).unwrap();
            h[0] ^= 1;
            t.path[k] = hex(&h);
            assert!(!check_proof(&t));
        }
        let mut t = p.clone();
        t.index = (t.index + 1) % t.size;
        assert!(!check_proof(&t));
        // A size whose paths have other lengths (the size itself is bound by release.json).
        for size in [1, 7] {
            let mut t = p.clone();
            t.size = size;
            assert!(!check_proof(&t));
        }
        let mut t = p.clone();
        t.merkle_root = "zz".into();
        assert!(!check_proof(&t));
    }
    assert_eq!(prove(&items, &info, "nope.jpg").unwrap(), None);
    // Items that do not give the release's root are refused.
    let mut other = items.clone();
    other[0].size += 1;
    let err = prove(&other, &info, "c.png").unwrap_err();
    assert!(matches!(err, ReleaseError::RootMismatch { .. }), "{err}");
}

/// `build_release` writes exactly what it wrote before releases could withdraw items:
/// no `withdrawn` keys, no `withdrawn.jsonl`.
#[test]
fn build_release_json_is_pinned() {
    let out = output_tree();
    let root = tempfile::tempdir().unwrap();
    build(out.path(), root.path(), "1").unwrap();
    let dir = root.path().join("faces/1");
    let want = format!(
        r#"{{
  "schema": 1,
  "dataset": "faces",
  "version": "1",
  "parent": null,
  "created_at": "2026-01-01T00:00:00Z",
  "items": 3,
  "bytes": 11,
  "tool_version": "{}",
  "policy_blake3": null,
  "params_blake3": [
    "a15f1a1ae723480d69ab9071cb95a38b03943f317e93649c02509ef5f8b1b74f"
  ],
  "merkle_root": "14155f0f88fa80b8f213a43d42478482ace30845ac5a4e3cb652e796d0a240ed",
  "manifest_blake3": "0dd2b69f5038e35cf63c36323a24a6a0b3c4b9fd79bb74d1f9310225f28fb2a0",
  "leaf_encoding": "blake3(0x00 || manifest line bytes without newline)"
}}
"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(fs::read_to_string(dir.join(RELEASE_FILE)).unwrap(), want);
    assert!(!dir.join(WITHDRAWN_FILE).exists());
    assert_eq!(load_tombstones(root.path(), "faces", "1").unwrap(), []);
}

fn cut(
    root: &Path,
    parent: &str,
    version: &str,
    paths: &[&str],
) -> Result<(ReleaseInfo, Vec<Tombstone>), ReleaseError> {
    cut_release_without(
        root,
        "faces",
        parent,
        version,
        &paths.iter().map(|p| p.to_string()).collect(),
        &Default::default(),
        "req-7",
        "2026-02-01T00:00:00Z".into(),
    )
}

#[test]
fn cut_release_without_removes_items_and_writes_tombstones() {
    let out = output_tree();
    let root = tempfile::tempdir().unwrap();
    let parent = build(out.path(), root.path(), "1").unwrap();
    let (info, tombs) = cut(root.path(), "1", "2", &["val/b.jpg", "c.png"]).unwrap();
    assert_eq!(info.parent.as_deref(), Some("1"));
    assert_eq!(info.version, "2");
    assert_eq!(info.created_at, "2026-02-01T00:00:00Z");
    assert_eq!(info.items, 1);
    assert_eq!(info.bytes, 4);
    assert_eq!(info.policy_blake3, parent.policy_blake3);
    assert_eq!(info.params_blake3, [b3(b"params")]);
    assert_eq!(info.withdrawn, 2);
    assert_eq!(
        tombs,
        [
            Tombstone {
                path: "c.png".into(),
                size: 1,
                blake3: b3(b"c"),
                source_blake3: Some(b3(b"c.png")),
                removed_from: "1".into(),
                request: "req-7".into(),
            },
            Tombstone {
                path: "val/b.jpg".into(),
                size: 6,
                blake3: b3(b"bbbbbb"),
                source_blake3: Some(b3(b"val/b.jpg")),
                removed_from: "1".into(),
                request: "req-7".into(),
            },
        ]
    );

    let dir = root.path().join("faces/2");
    let wd = fs::read(dir.join(WITHDRAWN_FILE)).unwrap();
    assert_eq!(info.withdrawn_blake3, Some(b3(&wd)));
    let wd_text = String::from_utf8(wd).unwrap();
    assert!(
        wd_text.starts_with("{\"path\":\"c.png\",\"size\":1,\"blake3\":\"",),
        "{wd_text}"
    );
    assert!(wd_text.ends_with("\"removed_from\":\"1\",\"request\":\"req-7\"}\n"));
    assert_eq!(wd_text.lines().count(), 2);
    let json = fs::read_to_string(dir.join(RELEASE_FILE)).unwrap();
    assert!(json.contains("\"withdrawn\": 2,") && json.contains("\"withdrawn_blake3\": \""));

    // The remaining line is the parent's, byte for byte.
    let parent_man = fs::read_to_string(root.path().join("faces/1").join(MANIFEST_FILE)).unwrap();
    let man = fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
    let kept: String = parent_man
        .lines()
        .filter(|l| l.contains("train/a.jpg"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(man, kept);

    let (back, items) = load_release(root.path(), "faces", "2").unwrap();
    assert_eq!(back, info);
    assert_eq!(load_tombstones(root.path(), "faces", "2").unwrap(), tombs);
    let (_, pitems) = load_release(root.path(), "faces", "1").unwrap();
    let d = diff(&pitems, &items);
    assert_eq!(d.removed, ["c.png", "val/b.jpg"]);
    assert!(d.added.is_empty() && d.changed.is_empty());
    // The parent is untouched and no temporary directory is left.
    assert_eq!(load_release(root.path(), "faces", "1").unwrap().0, parent);
    let mut names: Vec<_> = fs::read_dir(root.path().join("faces"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["1", "2"]);
}

#[test]
fn cut_release_without_refuses_bad_requests() {
    let out = output_tree();
    let root = tempfile::tempdir().unwrap();
    build(out.path(), root.path(), "1").unwrap();

    let err = cut(root.path(), "1", "2", &["c.png", "nope.jpg"]).unwrap_err();
    assert!(
        matches!(&err, ReleaseError::NotInParent { path, .. } if path == "nope.jpg"),
        "{err}"
    );
    assert!(err.to_string().contains("nope.jpg"), "{err}");
    let err = cut(root.path(), "1", "2", &[]).unwrap_err();
    assert!(
        matches!(err, ReleaseError::NothingWithdrawn { .. }),
        "{err}"
    );
    let err = cut(
        root.path(),
        "1",
        "2",
        &["c.png", "train/a.jpg", "val/b.jpg"],
    )
    .unwrap_err();
    assert!(
        matches!(&err, ReleaseError::AllWithdrawn { dataset, parent } if dataset == "faces" && parent == "1"),
        "{err}"
    );
    let err = cut(root.path(), "9", "2", &["c.png"]).unwrap_err();
    assert!(matches!(err, ReleaseError::ParentMissing { .. }), "{err}");
    let err = cut(root.path(), "1", "1", &["c.png"]).unwrap_err();
    assert!(matches!(err, ReleaseError::AlreadyExists { .. }), "{err}");
    let err = cut(root.path(), "1", "a/b", &["c.png"]).unwrap_err();
    assert!(matches!(err, ReleaseError::InvalidName { .. }), "{err}");
    // Nothing was written by the refusals.
    let names: Vec<_> = fs::read_dir(root.path().join("faces"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["1"]);

    cut(root.path(), "1", "2", &["c.png"]).unwrap();
    let before = fs::read(root.path().join("faces/2").join(RELEASE_FILE)).unwrap();
    let err = cut(root.path(), "1", "2", &["val/b.jpg"]).unwrap_err();
    assert!(matches!(err, ReleaseError::AlreadyExists { .. }), "{err}");
    assert_eq!(
        fs::read(root.path().join("faces/2").join(RELEASE_FILE)).unwrap(),
        before
    );
    // An item already withdrawn is not in the new release.
    let err = cut(root.path(), "2", "3", &["c.png"]).unwrap_err();
    assert!(matches!(err, ReleaseError::NotInParent { .. }), "{err}");
    let (_, t) = cut(root.path(), "2", "3", &["val/b.jpg"]).unwrap();
    assert_eq!(t[0].removed_from, "2");
}

/// A parent written with the factored writer from lines that are not what `manifest_line`
/// gives today (an older manifest without perceptual hashes): the cut keeps them as they are.
#[test]
fn cut_keeps_parent_lines_byte_identical() {
    let root = tempfile::tempdir().unwrap();
    let mk = |p: &str, size: u64, params: &str| ManifestItem {
        path: p.into(),
        size,
        blake3: b3(p.as_bytes()),
        source_blake3: None,
        provenance: ProvenanceRef {
            file: PROVENANCE_FILE.into(),
            params_blake3: b3(params.as_bytes()),
        },
        models: vec![],
        licence: None,
        split: split_of(p),
        source_phash: None,
        output_phash: None,
        archive: None,
    };
    let entries: Vec<(ManifestItem, String)> = [
        mk("a.jpg", 1, "p1"),
        mk("b.jpg", 2, "p2"),
        mk("train/c.jpg", 3, "p1"),
    ]
    .into_iter()
    .map(|i| {
        let old = manifest_line(&i).replace(",\"source_phash\":null,\"output_phash\":null", "");
        assert_ne!(old, manifest_line(&i));
        (i, old)
    })
    .collect();
    let parent = write_release(
        root.path(),
        NewRelease {
            dataset: "faces",
            version: "1",
            parent: None,
            created_at: "t".into(),
            policy_blake3: Some(b3(b"policy")),
            entries: &entries,
            withdrawn: &[],
        },
    )
    .unwrap();
    assert_eq!(parent.params_blake3.len(), 2);
    load_release(root.path(), "faces", "1").unwrap();

    let (info, _) = cut(root.path(), "1", "2", &["b.jpg"]).unwrap();
    let man = fs::read_to_string(root.path().join("faces/2").join(MANIFEST_FILE)).unwrap();
    assert_eq!(man, format!("{}\n{}\n", entries[0].1, entries[2].1));
    assert_eq!(info.policy_blake3, Some(b3(b"policy")));
    // params_blake3 recomputed from what is left.
    assert_eq!(info.params_blake3, [b3(b"p1")]);
    assert_eq!(info.bytes, 4);
    let leaves: Vec<_> = [&entries[0].1, &entries[2].1]
        .iter()
        .map(|l| merkle::leaf_hash(l.as_bytes()))
        .collect();
    assert_eq!(info.merkle_root, hex(&merkle::root(&leaves)));
    load_release(root.path(), "faces", "2").unwrap();
}

#[test]
fn tampered_withdrawn_file_fails_to_load() {
    let out = output_tree();
    let root = tempfile::tempdir().unwrap();
    build(out.path(), root.path(), "1").unwrap();
    cut(root.path(), "1", "2", &["c.png", "val/b.jpg"]).unwrap();
    let dir = root.path().join("faces/2");
    let wd_path = dir.join(WITHDRAWN_FILE);
    let info_path = dir.join(RELEASE_FILE);
    let good_wd = fs::read_to_string(&wd_path).unwrap();
    let good_info = fs::read(&info_path).unwrap();
    let load = || load_release(root.path(), "faces", "2").unwrap_err();
    // Writes `wd` as withdrawn.jsonl with release.json's hash (and count) updated to match.
    let rewrite = |wd: &str, count: Option<u64>| {
        fs::write(&wd_path, wd).unwrap();
        let mut info: ReleaseInfo = serde_json::from_slice(&good_info).unwrap();
        info.withdrawn_blake3 = Some(b3(wd.as_bytes()));
        if let Some(c) = count {
            info.withdrawn = c;
        }
        fs::write(&info_path, serde_json::to_vec(&info).unwrap()).unwrap();
    };

    fs::write(&wd_path, good_wd.replace("req-7", "req-8")).unwrap();
    let err = load();
    assert!(
        matches!(
            err,
            ReleaseError::Mismatch {
                field: "withdrawn_blake3",
                ..
            }
        ),
        "{err}"
    );
    fs::remove_file(&wd_path).unwrap();
    assert!(matches!(load(), ReleaseError::Io { .. }));

    let first = good_wd.lines().next().unwrap();
    rewrite(&format!("{first}\n"), None);
    let err = load();
    assert!(
        matches!(
            err,
            ReleaseError::Mismatch {
                field: "withdrawn",
                ..
            }
        ),
        "{err}"
    );

    let lines: Vec<&str> = good_wd.lines().collect();
    rewrite(&format!("{}\n{}\n", lines[1], lines[0]), None);
    assert!(matches!(load(), ReleaseError::Unsorted { .. }));

    rewrite(&good_wd.replace("\"c.png\"", "\"train/a.jpg\""), None);
    let err = load();
    assert!(
        matches!(&err, ReleaseError::WithdrawnListed { path } if path == "train/a.jpg"),
        "{err}"
    );

    rewrite(
        &good_wd.replace("\"removed_from\":\"1\"", "\"removed_from\":\"0\""),
        None,
    );
    let err = load();
    assert!(
        matches!(
            err,
            ReleaseError::Mismatch {
                field: "removed_from",
                ..
            }
        ),
        "{err}"
    );

    rewrite(&good_wd.replace("\"size\":1,", ""), None);
    assert!(matches!(load(), ReleaseError::Parse { line: 1, .. }));

    rewrite(good_wd.trim_end(), None);
    assert!(matches!(load(), ReleaseError::Parse { .. }));

    // release.json without the two fields, but the file still there.
    fs::write(&wd_path, &good_wd).unwrap();
    let mut info: ReleaseInfo = serde_json::from_slice(&good_info).unwrap();
    info.withdrawn_blake3 = None;
    fs::write(&info_path, serde_json::to_vec(&info).unwrap()).unwrap();
    assert!(matches!(
        load(),
        ReleaseError::Mismatch {
            field: "withdrawn",
            ..
        }
    ));
    info.withdrawn = 0;
    fs::write(&info_path, serde_json::to_vec(&info).unwrap()).unwrap();
    let err = load();
    assert!(
        matches!(err, ReleaseError::UnlistedWithdrawn { .. }),
        "{err}"
    );
    fs::remove_file(&wd_path).unwrap();
    load_release(root.path(), "faces", "2").unwrap();

    // Back to the original: it loads.
    fs::write(&wd_path, &good_wd).unwrap();
    fs::write(&info_path, &good_info).unwrap();
    assert_eq!(load_tombstones(root.path(), "faces", "2").unwrap().len(), 2);
}

fn item(path: &str) -> ManifestItem {
    ManifestItem {
        path: path.into(),
        size: path.len() as u64,
        blake3: b3(path.as_bytes()),
        source_blake3: None,
        provenance: ProvenanceRef {
            file: PROVENANCE_FILE.into(),
            params_blake3: b3(b"params"),
        },
        models: vec![],
        licence: None,
        split: None,
        source_phash: None,
        output_phash: None,
        archive: None,
    }
}

fn info_of(items: &[ManifestItem]) -> ReleaseInfo {
    ReleaseInfo {
        schema: RELEASE_SCHEMA,
        dataset: "faces".into(),
        version: "1".into(),
        parent: None,
        created_at: String::new(),
        items: items.len() as u64,
        bytes: items.iter().map(|i| i.size).sum(),
        tool_version: String::new(),
        policy_blake3: None,
        params_blake3: vec![],
        merkle_root: hex(&merkle::root(&leaf_hashes(items))),
        manifest_blake3: String::new(),
        leaf_encoding: LEAF_ENCODING.into(),
        withdrawn: 0,
        withdrawn_blake3: None,
    }
}

/// Items `b01.jpg`, `b03.jpg`, ... (`n` of them, sorted); the gaps are `b00`, `b02`, ..., `b{2n}`.
fn odd_items(n: usize) -> Vec<ManifestItem> {
    (0..n)
        .map(|i| item(&format!("b{:02}.jpg", 2 * i + 1)))
        .collect()
}

#[test]
fn absence_proofs_for_every_gap_of_trees_of_many_sizes() {
    for n in 1..=17 {
        let items = odd_items(n);
        let info = info_of(&items);
        for k in 0..=2 * n {
            let path = format!("b{k:02}.jpg");
            let got = prove_absence(&items, &info, &path).unwrap();
            if k % 2 == 1 {
                assert_eq!(got, None, "{path} is present");
                continue;
            }
            let p = got.unwrap();
            assert!(check_absence(&p), "n={n} {path}: {p:?}");
            assert_eq!(p.left.is_none(), k == 0);
            assert_eq!(p.right.is_none(), k == 2 * n);
            assert_eq!(p.size, n as u64);
            let back: AbsenceProof =
                serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
            assert_eq!(back, p);
        }
        // Paths that are prefixes or extensions of present ones, and outside the range.
        for path in ["", "a", "b01", "b01.jpg.x", "b01.jpeg", "c", "\u{10ffff}"] {
            let p = prove_absence(&items, &info, path).unwrap().unwrap();
            assert!(check_absence(&p), "n={n} {path:?}");
        }
    }
}

#[test]
fn tampered_absence_proofs_fail() {
    let items = odd_items(6); // b01.jpg, b03.jpg, ..., b11.jpg
    let info = info_of(&items);
    let p = prove_absence(&items, &info, "b04.jpg").unwrap().unwrap();
    assert!(check_absence(&p));
    let (l, r) = (p.left.clone().unwrap(), p.right.clone().unwrap());
    assert_eq!(l.index + 1, r.index);
    assert!(l.leaf.contains("\"b03.jpg\"") && r.leaf.contains("\"b05.jpg\""));

    let tamper = |f: &dyn Fn(&mut AbsenceProof)| {
        let mut t = p.clone();
        f(&mut t);
        check_absence(&t)
    };
    // The absent path is actually present, or outside the bracket.
    for path in ["b03.jpg", "b05.jpg", "b07.jpg", "b02.jpg", "a"] {
        assert!(!tamper(&|t| t.path = path.into()), "{path}");
    }
    // Sides swapped, or one dropped (they are not the first / last leaf).
    assert!(!tamper(&|t| std::mem::swap(&mut t.left, &mut t.right)));
    assert!(!tamper(&|t| t.left = None));
    assert!(!tamper(&|t| t.right = None));
    // Valid inclusion proofs that are not adjacent: proves nothing about what lies between.
    let far = prove(&items, &info, "b09.jpg").unwrap().unwrap();
    assert!(check_proof(&far));
    assert!(!tamper(&|t| t.right = Some(far.clone())));
    let first = prove(&items, &info, &items[0].path).unwrap().unwrap();
    assert!(!tamper(&|t| t.left = Some(first.clone())));
    // Wrong index on one side (its audit path no longer verifies).
    assert!(!tamper(&|t| t.right.as_mut().unwrap().index += 1));
    assert!(!tamper(&|t| t.left.as_mut().unwrap().index -= 1));
    // Root, size, release names that disagree between the proof and its sides.
    assert!(!tamper(&|t| t.merkle_root = hex(&[0; 32])));
    assert!(!tamper(&|t| t.size += 1));
    assert!(!tamper(&|t| t.version = "2".into()));
    assert!(!tamper(&|t| t.dataset = "other".into()));
    // A side's leaf changed.
    assert!(!tamper(&|t| {
        let r = t.right.as_mut().unwrap();
        r.leaf = r.leaf.replace("b05.jpg", "b06.jpg");
    }));
    // A leaf that is not a manifest line (but correctly hashed) proves nothing.
    let odd = vec![item("a"), item("c")];
    let mut odd_info = info_of(&odd);
    let mut junk = prove_absence(&odd, &odd_info, "b").unwrap().unwrap();
    assert!(check_absence(&junk));
    let leaves = vec![merkle::leaf_hash(b"not json"), leaf_hashes(&odd)[1]];
    odd_info.merkle_root = hex(&merkle::root(&leaves));
    junk.merkle_root = odd_info.merkle_root.clone();
    let mut l = junk.left.take().unwrap();
    l.leaf = "not json".into();
    l.merkle_root = junk.merkle_root.clone();
    l.path = vec![hex(&leaves[1])];
    assert!(check_proof(&l));
    let mut r = junk.right.take().unwrap();
    r.merkle_root = junk.merkle_root.clone();
    r.path = vec![hex(&leaves[0])];
    assert!(check_proof(&r));
    junk.left = Some(l);
    junk.right = Some(r);
    assert!(!check_absence(&junk));

    // Edges: before the first and after the last item.
    let before = prove_absence(&items, &info, "a.jpg").unwrap().unwrap();
    assert!(check_absence(&before) && before.left.is_none());
    let mut t = before.clone();
    t.right = Some(l_of(&items, &info, 1));
    assert!(!check_absence(&t), "right side must be leaf 0");
    let after = prove_absence(&items, &info, "c.jpg").unwrap().unwrap();
    assert!(check_absence(&after) && after.right.is_none());
    let mut t = after.clone();
    t.left = Some(l_of(&items, &info, items.len() - 2));
    t.path = "b09.jpg.x".into();
    assert!(!check_absence(&t), "left side must be the last leaf");

    // Single item, and the empty release.
    let one = vec![item("m")];
    let one_info = info_of(&one);
    for path in ["a", "z"] {
        assert!(check_absence(
            &prove_absence(&one, &one_info, path).unwrap().unwrap()
        ));
    }
    assert_eq!(prove_absence(&one, &one_info, "m").unwrap(), None);
    let empty = prove_absence(&[], &info_of(&[]), "x").unwrap().unwrap();
    assert!(empty.left.is_none() && empty.right.is_none() && check_absence(&empty));
    let mut t = empty.clone();
    t.size = 1;
    assert!(!check_absence(&t));
    let mut t = empty;
    t.merkle_root = info.merkle_root.clone();
    assert!(!check_absence(&t), "no sides only for the empty tree");
    let mut t = p.clone();
    t.left = None;
    t.right = None;
    assert!(!check_absence(&t));

    // Items that do not give the release's root are refused.
    let mut other = items.clone();
    other[0].size += 1;
    let err = prove_absence(&other, &info, "b04.jpg").unwrap_err();
    assert!(matches!(err, ReleaseError::RootMismatch { .. }), "{err}");
}

fn l_of(items: &[ManifestItem], info: &ReleaseInfo, index: usize) -> InclusionProof {
    prove(items, info, &items[index].path).unwrap().unwrap()
}

/// A WebDataset shard loses a withdrawn member's whole sample (the rewrite drops every member
/// with its key), so the cut release drops (and tombstones) the sample's other image items too:
/// manifest and shard agree.
#[test]
fn cut_withdraws_the_whole_sample_of_a_withdrawn_shard_member() {
    let root = tempfile::tempdir().unwrap();
    let mk = |p: &str, archive: Option<&str>| ManifestItem {
        path: p.into(),
        size: 1,
        blake3: b3(p.as_bytes()),
        source_blake3: None,
        provenance: ProvenanceRef {
            file: PROVENANCE_FILE.into(),
            params_blake3: b3(b"p"),
        },
        models: vec![],
        licence: None,
        split: None,
        source_phash: None,
        output_phash: None,
        archive: archive.map(str::to_string),
    };
    let shard = "shards/0.tar";
    let entries: Vec<(ManifestItem, String)> = [
        mk(shard, None),
        mk("shards/0.tar#000123.jpg", Some(shard)),
        mk("shards/0.tar#000123.seg.png", Some(shard)),
        mk("shards/0.tar#000124.jpg", Some(shard)),
    ]
    .into_iter()
    .map(|i| {
        let l = manifest_line(&i);
        (i, l)
    })
    .collect();
    write_release(
        root.path(),
        NewRelease {
            dataset: "faces",
            version: "1",
            parent: None,
            created_at: "t".into(),
            policy_blake3: None,
            entries: &entries,
            withdrawn: &[],
        },
    )
    .unwrap();
    let rewritten = [(shard.to_string(), (7, b3(b"rewritten")))].into();
    let (_, tombs) = cut_release_without(
        root.path(),
        "faces",
        "1",
        "2",
        &["shards/0.tar#000123.jpg".to_string()].into(),
        &rewritten,
        "req-7",
        "t2".into(),
    )
    .unwrap();
    let gone: Vec<&str> = tombs.iter().map(|t| t.path.as_str()).collect();
    assert_eq!(
        gone,
        ["shards/0.tar#000123.jpg", "shards/0.tar#000123.seg.png"]
    );
    let (_, items) = load_release(root.path(), "faces", "2").unwrap();
    let kept: Vec<&str> = items.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(kept, [shard, "shards/0.tar#000124.jpg"]);
    assert_eq!(items[0].blake3, b3(b"rewritten"));
}

/// A takedown cut `val/b.jpg` out of faces@1 into faces@2, but the output tree still holds it (a
/// later `veil redact` makes it again). No later build may publish it, by its output's bytes or,
/// redacted into other bytes, by its source's; nor may a pack of faces@1, which still lists it.
#[test]
fn an_item_withdrawn_by_any_release_is_refused_by_later_builds_and_packs() {
    let out = output_tree();
    let root = tempfile::tempdir().unwrap();
    build(out.path(), root.path(), "1").unwrap();
    cut(root.path(), "1", "2", &["val/b.jpg"]).unwrap();
    let withdrawn = |e: &ReleaseError| {
        matches!(e, ReleaseError::Withdrawn { path, dataset, removed_from, request }
            if path == "val/b.jpg" && dataset == "faces" && removed_from == "1" && request == "req-7")
    };
    let e = build(out.path(), root.path(), "3").unwrap_err();
    assert!(withdrawn(&e), "{e}");
    assert!(!root.path().join("faces/3").exists());

    let provenance = |with_b: Option<&[u8]>| {
        let mut lines = String::new();
        let mut files: Vec<(&str, &[u8])> = vec![("train/a.jpg", b"aaaa"), ("c.png", b"c")];
        if let Some(b) = with_b {
            files.push(("val/b.jpg", b));
            fs::write(out.path().join("val/b.jpg"), b).unwrap();
        } else {
            fs::remove_file(out.path().join("val/b.jpg")).unwrap();
        }
        for (p, c) in files {
            lines += &serde_json::to_string(&rec(p, ImageStatus::Redacted, Some(c))).unwrap();
            lines.push('\n');
        }
        fs::write(out.path().join(PROVENANCE_FILE), lines).unwrap();
    };
    provenance(Some(b"redacted again, other bytes"));
    let e = build(out.path(), root.path(), "3").unwrap_err();
    assert!(withdrawn(&e), "by source: {e}");

    let (_, items) = load_release(root.path(), "faces", "1").unwrap();
    let tombstones = crate::withdrawn_items(root.path(), "faces").unwrap();
    assert_eq!(tombstones.len(), 1);
    let e = crate::refuse_withdrawn(
        "faces",
        items.iter().map(|i| {
            (
                i.path.as_str(),
                Some(i.blake3.as_str()),
                i.source_blake3.as_deref(),
            )
        }),
        &tombstones,
    )
    .unwrap_err();
    assert!(withdrawn(&e), "pack of faces@1: {e}");
    assert!(e.to_string().contains("remove it from the input"), "{e}");

    // What a build killed before its rename leaves behind is not a release to read.
    let partial = root.path().join("faces/.4.partial-123-456");
    fs::create_dir_all(&partial).unwrap();
    fs::copy(
        root.path().join("faces/1").join(RELEASE_FILE),
        partial.join(RELEASE_FILE),
    )
    .unwrap();
    provenance(None);
    let info = build(out.path(), root.path(), "3").unwrap();
    assert_eq!(info.items, 2);
    assert_eq!(
        crate::withdrawn_items(tempfile::tempdir().unwrap().path(), "faces").unwrap(),
        []
    );
}

/// Record files are never extras, by name: an original photo saved as `provenance.jsonl` or as a
/// shard's `veil-run.shard-3-of-4.json`, in a tree or in a tar of it, is reported as changed.
#[test]
fn a_photo_under_a_record_file_name_is_changed_not_ignored() {
    let out = output_tree();
    let root = tempfile::tempdir().unwrap();
    build(out.path(), root.path(), "1").unwrap();
    let (_, items) = load_release(root.path(), "faces", "1").unwrap();
    assert!(verify_tree(out.path(), &items, None).is_clean());
    let jpeg = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xFF\xDB";
    fs::write(out.path().join(PROVENANCE_FILE), jpeg).unwrap();
    fs::write(out.path().join("veil-run.shard-3-of-4.json"), jpeg).unwrap();
    let r = verify_tree(out.path(), &items, None);
    let changed: Vec<&str> = r.changed.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        changed,
        [PROVENANCE_FILE, "veil-run.shard-3-of-4.json"],
        "{r:?}"
    );
    assert!(!r.is_clean() && r.extra.is_empty(), "{r:?}");

    let tar_path = root.path().join("out.tar");
    let mut tar = tar::Builder::new(fs::File::create(&tar_path).unwrap());
    tar.append_dir_all("out", out.path()).unwrap();
    tar.finish().unwrap();
    drop(tar);
    let r = verify_archive(&tar_path, &items).unwrap();
    let changed: Vec<&str> = r.changed.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        changed,
        [PROVENANCE_FILE, "veil-run.shard-3-of-4.json"],
        "{r:?}"
    );
}
