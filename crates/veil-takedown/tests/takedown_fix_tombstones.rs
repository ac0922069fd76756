//! Withdrawal is exact per release: only the confirmed photo (and identical copies of it) is
//! withdrawn, every release's own bytes are tombstoned and published, purge recognises each of
//! them, and each recipient is told the hash of the release they received.

use std::fs;
use std::path::Path;

use serde_json::json;
use veil_takedown::{Basis, Ledger, NewRequest, Recipient, Scope};

fn b3(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Writes an output tree of `files` (path, content, source bytes) with its provenance and builds
/// release faces@`version` from it under `root`.
fn release(
    t: &Path,
    root: &Path,
    version: &str,
    parent: Option<&str>,
    files: &[(&str, &[u8], &[u8])],
) {
    try_release(t, root, version, parent, files).unwrap();
}

fn try_release(
    t: &Path,
    root: &Path,
    version: &str,
    parent: Option<&str>,
    files: &[(&str, &[u8], &[u8])],
) -> Result<veil_ledger::ReleaseInfo, veil_ledger::ReleaseError> {
    let out = t.join(format!("out{version}"));
    let _ = fs::remove_dir_all(&out);
    let mut lines = String::new();
    for (path, content, source) in files {
        let f = out.join(path);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, content).unwrap();
        let rec = json!({
            "schema": 1, "path": path, "status": "redacted",
            "source_blake3": b3(source), "source_size": source.len(),
            "output_blake3": b3(content), "output_size": content.len(),
            "format": "jpeg", "dimensions": [4, 4], "orientation": 1, "detections": [],
            "metadata_removed": [], "metadata_kept": [],
            "models": [{"name": "centerface", "family": "centerface", "blake3": b3(b"model")}],
            "params_blake3": b3(b"params"), "params": {"mode": "blur"}, "policy_blake3": null,
            "tool_version": "0.1.0", "error_stage": null, "error": null
        });
        lines += &rec.to_string();
        lines.push('\n');
    }
    fs::write(out.join("provenance.jsonl"), lines).unwrap();
    veil_ledger::build_release(
        &out,
        "faces",
        version,
        parent,
        root,
        format!("2026-01-0{version}T00:00:00Z"),
        None,
    )
}

fn request(l: &mut Ledger, releases: Option<Vec<String>>) -> String {
    l.open_request(NewRequest {
        dataset: "faces".into(),
        releases,
        whole_dataset: false,
        scope: Scope {
            paths: vec!["train/a.jpg".into()],
            ..Scope::default()
        },
        requester: "A. Person".into(),
        contact: "a@example.org".into(),
        basis: Basis::ALL[0],
        note: String::new(),
        received: Some("2026-02-02".into()),
        policy: None,
        language: None,
    })
    .unwrap()
    .id
}

fn feed_hashes(l: &Ledger) -> Vec<String> {
    let feed = l.withdrawals().unwrap();
    assert_eq!(feed.len(), 1, "{feed:?}");
    serde_json::from_value(feed[0]["withdrawn_blake3"].clone()).unwrap()
}

#[test]
fn a_request_for_release_1_leaves_another_photo_at_the_same_path_in_release_2() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("manifests");
    release(
        t.path(),
        &root,
        "1",
        None,
        &[
            ("train/a.jpg", b"PERSON1", b"src1"),
            ("train/b.jpg", b"B", b"srcb"),
        ],
    );
    release(
        t.path(),
        &root,
        "2",
        Some("1"),
        &[
            ("train/a.jpg", b"PERSON2", b"src2"),
            ("train/b.jpg", b"B", b"srcb"),
        ],
    );
    let mut l = Ledger::open_or_create(&root.join("ledger.sqlite")).unwrap();
    l.import_release(&root, "faces", "1").unwrap();
    l.import_release(&root, "faces", "2").unwrap();
    let id = request(&mut l, Some(vec!["1".into()]));
    assert_eq!(l.decide(&id, &["train/a.jpg".into()], true).unwrap(), 1);
    let report = l.apply(&id, &root, None, None).unwrap();
    assert_eq!(report.withdrawn_releases, vec!["1".to_string()]);
    assert_eq!(report.new_release, None, "release 2 does not hold PERSON1");
    assert!(!root.join("faces/3").exists());
    let rels = l.releases("faces").unwrap();
    let v2 = rels.iter().find(|r| r.version == "2").unwrap();
    assert_eq!(v2.status, "current");
    assert_eq!(feed_hashes(&l), vec![b3(b"PERSON1")]);
    let tombs = l.tombstones(&id).unwrap();
    assert_eq!(tombs.len(), 1, "{tombs:?}");
    assert_eq!(
        (tombs[0].version.as_str(), tombs[0].blake3.clone()),
        ("1", b3(b"PERSON1"))
    );
}

#[test]
fn every_release_s_bytes_of_a_withdrawn_photo_are_tombstoned_purged_and_notified() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("manifests");
    // The same source photo, redacted differently in each release.
    release(
        t.path(),
        &root,
        "1",
        None,
        &[
            ("train/a.jpg", b"A1", b"src"),
            ("train/b.jpg", b"B", b"srcb"),
        ],
    );
    release(
        t.path(),
        &root,
        "2",
        Some("1"),
        &[
            ("train/a.jpg", b"A2", b"src"),
            ("train/b.jpg", b"B", b"srcb"),
        ],
    );
    let mut l = Ledger::open_or_create(&root.join("ledger.sqlite")).unwrap();
    l.import_release(&root, "faces", "1").unwrap();
    l.import_release(&root, "faces", "2").unwrap();
    for (v, name) in [("1", "Old Lab"), ("2", "New Lab")] {
        l.add_recipient(&Recipient {
            dataset: "faces".into(),
            version: v.into(),
            name: name.into(),
            contact: format!("{v}@lab.example"),
            received_at: "2026-01-20".into(),
            origin: "manual".into(),
        })
        .unwrap();
    }
    let id = request(&mut l, None);
    l.decide(&id, &["train/a.jpg".into()], true).unwrap();
    let report = l.apply(&id, &root, None, None).unwrap();
    assert_eq!(report.new_release.as_ref().map(|n| n.0.as_str()), Some("3"));
    let mut hashes = feed_hashes(&l);
    hashes.sort();
    let mut want = vec![b3(b"A1"), b3(b"A2")];
    want.sort();
    assert_eq!(hashes, want, "both releases' bytes are published");

    let replayed = l.replay().unwrap();
    assert!(
        replayed.divergences.is_empty(),
        "{:?}",
        replayed.divergences
    );

    // A mirror of release 1 still holds A1: purge removes it.
    let mirror = t.path().join("mirror-of-v1");
    fs::create_dir_all(mirror.join("train")).unwrap();
    fs::write(mirror.join("train/a.jpg"), b"A1").unwrap();
    fs::write(mirror.join("train/b.jpg"), b"B").unwrap();
    let purged = l.purge(&id, &mirror, None).unwrap();
    assert_eq!(
        purged.deleted,
        vec!["train/a.jpg".to_string()],
        "{purged:?}"
    );
    assert!(purged.skipped.is_empty(), "{purged:?}");
    assert!(!mirror.join("train/a.jpg").exists());
    assert!(mirror.join("train/b.jpg").exists());

    // Each recipient is given the hash of the release they received.
    let outbox = t.path().join("outbox");
    let notices = l.notify(&id, &outbox).unwrap();
    assert_eq!(notices.len(), 2);
    for n in &notices {
        let body: serde_json::Value = serde_json::from_slice(&fs::read(&n.file).unwrap()).unwrap();
        let got: Vec<String> = body["withdrawn"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["blake3"].as_str().unwrap().to_string())
            .collect();
        let want = if n.name == "Old Lab" {
            b3(b"A1")
        } else {
            b3(b"A2")
        };
        assert_eq!(got, vec![want], "{}", n.name);
    }
}

#[test]
fn a_withdrawn_photo_that_comes_back_in_a_later_release_is_refused_on_import() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("manifests");
    release(
        t.path(),
        &root,
        "1",
        None,
        &[
            ("train/a.jpg", b"PERSON1", b"src1"),
            ("train/b.jpg", b"B", b"srcb"),
        ],
    );
    let mut l = Ledger::open_or_create(&root.join("ledger.sqlite")).unwrap();
    l.import_release(&root, "faces", "1").unwrap();
    let id = request(&mut l, None);
    l.decide(&id, &["train/a.jpg".into()], true).unwrap();
    l.apply(&id, &root, None, None).unwrap();
    // The same bytes under another path, then the same source redacted again. `build_release`
    // refuses both (it reads every release's tombstones); releases built without that check (by
    // an older veil, elsewhere, or by hand) are what import must still refuse.
    let elsewhere = t.path().join("elsewhere");
    fs::create_dir_all(elsewhere.join("faces")).unwrap();
    let copy = std::process::Command::new("cp")
        .arg("-r")
        .arg(root.join("faces/1"))
        .arg(elsewhere.join("faces/1"))
        .status()
        .unwrap();
    assert!(copy.success());
    for (v, files) in [
        (
            "3",
            [
                ("val/copy.jpg", &b"PERSON1"[..], &b"other"[..]),
                ("train/b.jpg", b"B", b"srcb"),
            ],
        ),
        (
            "4",
            [
                ("val/again.jpg", b"PERSON1-new", b"src1"),
                ("train/b.jpg", b"B", b"srcb"),
            ],
        ),
    ] {
        let e = try_release(t.path(), &root, v, Some("2"), &files).unwrap_err();
        assert!(
            matches!(e, veil_ledger::ReleaseError::Withdrawn { .. }),
            "{e}"
        );
        try_release(t.path(), &elsewhere, v, Some("1"), &files).unwrap();
        let moved = std::process::Command::new("cp")
            .arg("-r")
            .arg(elsewhere.join("faces").join(v))
            .arg(root.join("faces").join(v))
            .status()
            .unwrap();
        assert!(moved.success());
    }
    for (v, path, which) in [
        ("3", "val/copy.jpg", "output"),
        ("4", "val/again.jpg", "source"),
    ] {
        let before = l.events().unwrap().len();
        let err = l.import_release(&root, "faces", v).unwrap_err().to_string();
        assert!(
            err.contains(&format!("faces@{v} holds {path}, whose {which} blake3")),
            "{err}"
        );
        assert!(
            err.contains(&id) && err.contains("faces@1:train/a.jpg"),
            "{err}"
        );
        assert_eq!(l.events().unwrap().len(), before, "nothing imported");
    }
    assert_eq!(l.releases("faces").unwrap().len(), 2);
}

#[test]
fn a_later_notify_run_never_overwrites_an_earlier_notice() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("manifests");
    release(
        t.path(),
        &root,
        "1",
        None,
        &[
            ("train/a.jpg", b"PERSON1", b"src1"),
            ("train/b.jpg", b"B", b"srcb"),
        ],
    );
    let mut l = Ledger::open_or_create(&root.join("ledger.sqlite")).unwrap();
    l.import_release(&root, "faces", "1").unwrap();
    let lab = |contact: &str| Recipient {
        dataset: "faces".into(),
        version: "1".into(),
        name: "Lab".into(),
        contact: contact.into(),
        received_at: "2026-01-20".into(),
        origin: "manual".into(),
    };
    l.add_recipient(&lab("b@lab.example")).unwrap();
    let id = request(&mut l, None);
    l.decide(&id, &["train/a.jpg".into()], true).unwrap();
    l.apply(&id, &root, None, None).unwrap();
    let outbox = t.path().join("outbox");
    let first = l.notify(&id, &outbox).unwrap();
    assert_eq!(first.len(), 1);
    let first_bytes = fs::read(&first[0].file).unwrap();
    // Same name, a contact that sorts first: the second run's only notice.
    l.add_recipient(&lab("a@lab.example")).unwrap();
    let second = l.notify(&id, &outbox).unwrap();
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].file, first[0].file);
    assert_eq!(
        fs::read(&first[0].file).unwrap(),
        first_bytes,
        "first notice kept"
    );
    let txts = fs::read_dir(outbox.join(&id))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "txt")
        })
        .count();
    assert_eq!(txts, 2);
}

#[test]
fn ack_days_skip_the_holidays_of_the_request_s_policy() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("manifests");
    release(
        t.path(),
        &root,
        "1",
        None,
        &[
            ("train/a.jpg", b"PERSON1", b"src1"),
            ("train/b.jpg", b"B", b"srcb"),
        ],
    );
    let mut l = Ledger::open_or_create(&root.join("ledger.sqlite")).unwrap();
    l.import_release(&root, "faces", "1").unwrap();
    l.add_recipient(&Recipient {
        dataset: "faces".into(),
        version: "1".into(),
        name: "Lab".into(),
        contact: "lab@example.org".into(),
        received_at: "2026-01-20".into(),
        origin: "manual".into(),
    })
    .unwrap();
    let id = request(&mut l, None);
    l.decide(&id, &["train/a.jpg".into()], true).unwrap();
    l.apply(&id, &root, None, None).unwrap();
    let notices = l.notify(&id, &t.path().join("outbox")).unwrap();
    let written = veil_core::Date::parse(&notices[0].written_at).unwrap();
    // The next twenty days are holidays: one working day after the notice is weeks away.
    let days: String = (1..=20)
        .map(|n| format!("{} holiday\n", written.add_days(n)))
        .collect();
    fs::write(root.join("holidays.txt"), days).unwrap();
    l.set_policy(
        "default",
        veil_takedown::DuePolicy::WorkingDays(15),
        Some("holidays.txt"),
    )
    .unwrap();
    let today = written.add_days(6);
    assert!(l.unconfirmed_notices(today, 1).unwrap().is_empty());
    assert_eq!(
        l.unconfirmed_notices(written.add_days(30), 1)
            .unwrap()
            .len(),
        1
    );
}
