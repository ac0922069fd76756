//! End-to-end tests of the takedown ledger (real binary, temp dirs): a request by photo, matching,
//! a new release without the item, notices, the public feed, the event chain, bad input,
//! concurrent writers and deadlines.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// Runs veil with `--ledger L` appended.
fn lv(ledger: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = args.to_vec();
    all.push(&"--ledger");
    all.push(&ledger);
    run(&all)
}

fn export(ledger: &Path) -> String {
    let (code, out, err) = lv(ledger, &[&"ledger", &"export"]);
    assert_eq!(code, 0, "{err}");
    out
}

/// Redacts `input` into `t/out`, builds release NAME@1 under `t/manifests` and imports it into
/// a new ledger. Returns (output tree, manifests root, ledger).
fn catalogue(t: &Path, input: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let out = t.join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    let root = t.join("manifests");
    let (code, _, err) = release_build(&out, name, "1", &root);
    assert_eq!(code, 0, "{err}");
    let ledger = root.join("ledger.sqlite");
    let (code, stdout, err) = lv(&ledger, &[&"ledger", &"import", &"--root", &root]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains(&format!("imported {name}@1")), "{stdout}");
    (out, root, ledger)
}

fn request_id(stdout: &str) -> String {
    let id = stdout.split('\t').next().unwrap().trim().to_string();
    assert!(id.starts_with("TD-"), "{stdout}");
    id
}

#[test]
fn photo_request_withdraws_exactly_that_item_and_everything_is_provable() {
    let Some(faces) = shared("images/faces") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    fs::create_dir_all(&input).unwrap();
    let mut names: Vec<String> = fs::read_dir(&faces)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    names.sort();
    names.truncate(6);
    for n in &names {
        fs::copy(faces.join(n), input.join(n)).unwrap();
    }
    let target = names[2].clone();
    let (out, root, ledger) = catalogue(t.path(), &input, "faces");

    // Recipients: one by hand, two from a download log (one of them for an unknown release
    // would fail the whole import, so it is tried separately).
    let (code, _, err) = lv(
        &ledger,
        &[
            &"recipients",
            &"add",
            &"--release",
            &"faces@1",
            &"--name",
            &"ACME Vision Lab",
            &"--contact",
            &"data@acme.example",
            &"--at",
            &"2026-11-02",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let csv = t.path().join("downloads.csv");
    fs::write(
        &csv,
        "release,name,contact,received_at\nfaces@1,Univ. Example,ml@uni.example,2026-11-10\nfaces@9,Ghost,g@x.example,2026-11-11\n",
    )
    .unwrap();
    let before = export(&ledger);
    let (code, _, err) = lv(&ledger, &[&"recipients", &"import", &csv]);
    assert_eq!(code, 2, "an unknown release fails the import: {err}");
    assert!(err.contains("faces@9") && err.contains(":3:"), "{err}");
    assert_eq!(export(&ledger), before, "ledger changed by a failed import");
    fs::write(
        &csv,
        "release,name,contact,received_at\nfaces@1,Univ. Example,ml@uni.example,2026-11-10\n",
    )
    .unwrap();
    let (code, stdout, err) = lv(&ledger, &[&"recipients", &"import", &csv]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("1 recipients added"), "{stdout}");

    // The evidence: a resized (60 %), re-encoded (JPEG q70) copy of one source photo.
    let evidence = t.path().join("evidence.jpg");
    {
        let img = load_upright(&input.join(&target));
        let small = image::imageops::resize(
            &img,
            img.width() * 3 / 5,
            img.height() * 3 / 5,
            image::imageops::FilterType::Triangle,
        );
        let mut f = fs::File::create(&evidence).unwrap();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut f, 70)
            .encode_image(&small)
            .unwrap();
    }
    let (code, stdout, err) = lv(
        &ledger,
        &[
            &"takedown",
            &"open",
            &"--dataset",
            &"faces",
            &"--photo",
            &evidence,
            &"--requester",
            &"Jane <script>Doe",
            &"--contact",
            &"jane@example.org",
            &"--basis",
            &"portrait",
            &"--note",
            &"that is me, second row",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = request_id(&stdout);

    let (code, stdout, err) = lv(&ledger, &[&"takedown", &"match", &id]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one candidate expected: {stdout}");
    assert!(lines[0].contains(&target), "{stdout}");
    assert!(lines[0].starts_with("candidate"), "{stdout}");

    // Applying before confirming is refused and changes nothing.
    let before = export(&ledger);
    let (code, _, err) = lv(&ledger, &[&"takedown", &"apply", &id, &"--root", &root]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(export(&ledger), before);

    let (code, _, err) = lv(&ledger, &[&"takedown", &"confirm", &id, &target]);
    assert_eq!(code, 0, "{err}");
    let (code, stdout, err) = lv(
        &ledger,
        &[
            &"takedown",
            &"apply",
            &id,
            &"--root",
            &root,
            &"--purge",
            &out,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("new release faces@2"), "{stdout}");
    assert!(stdout.contains(&format!("deleted {target}")), "{stdout}");
    assert!(!out.join(&target).exists());

    // Applying twice: exit 2, ledger unchanged.
    let before = export(&ledger);
    let (code, _, err) = lv(&ledger, &[&"takedown", &"apply", &id, &"--root", &root]);
    assert_eq!(code, 2);
    assert!(err.contains("already applied"), "{err}");
    assert_eq!(export(&ledger), before);

    // The purged tree is exactly release 2; release 1 lost one item; absence is provable.
    let (code, stdout, err) = run(&[
        &"release",
        &"verify",
        &out,
        &"--release",
        &"faces@2",
        &"--root",
        &root,
    ]);
    assert_eq!(code, 0, "{stdout}{err}");
    let (code, stdout, _) = run(&[
        &"release", &"diff", &"faces@1", &"faces@2", &"--root", &root,
    ]);
    assert_eq!(code, 0);
    let changes: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with(['+', '-', '~']))
        .collect();
    assert_eq!(changes, vec![format!("- {target}").as_str()], "{stdout}");
    let (code, proof, err) = run(&[
        &"release",
        &"prove",
        &"faces@2",
        &"--item",
        &target,
        &"--absent",
        &"--root",
        &root,
    ]);
    assert_eq!(code, 0, "{err}");
    let proof_file = t.path().join("absent.json");
    fs::write(&proof_file, &proof).unwrap();
    let (code, _, err) = run(&[&"release", &"check-proof", &proof_file]);
    assert_eq!(code, 0, "{err}");
    // Release 1 still verifies against its own root (tombstones keep hashes, the manifest stays).
    let (code, _, err) = run(&[
        &"release", &"prove", &"faces@1", &"--item", &target, &"--root", &root,
    ]);
    assert_eq!(code, 0, "{err}");

    // Notices: one per recipient of release 1, naming the withdrawn file by hash.
    let outbox = t.path().join("outbox");
    let (code, stdout, err) = lv(
        &ledger,
        &[&"takedown", &"notify", &id, &"--outbox", &outbox],
    );
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("2 notices written"), "{stdout}");
    let manifest1 = fs::read_to_string(root.join("faces/1/manifest.jsonl")).unwrap();
    let item: serde_json::Value = manifest1
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["path"] == target.as_str())
        .unwrap();
    let output_blake3 = item["blake3"].as_str().unwrap().to_string();
    let mut notices: Vec<PathBuf> = fs::read_dir(outbox.join(&id))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    notices.sort();
    assert_eq!(notices.len(), 4, "{notices:?}");
    for n in &notices {
        let text = fs::read_to_string(n).unwrap();
        assert!(text.contains(&output_blake3), "{}", n.display());
        assert!(
            !text.contains("Jane"),
            "the requester is never named in a notice"
        );
    }
    let (code, _, err) = lv(
        &ledger,
        &[
            &"takedown",
            &"ack",
            &id,
            &"--recipient",
            &"data@acme.example",
            &"--note",
            &"deleted",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = lv(&ledger, &[&"takedown", &"close", &id]);
    assert_eq!(code, 0, "{err}");

    // The public feed lists the withdrawal by blake3 only.
    let (code, feed, err) = lv(&ledger, &[&"withdrawals", &"export"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = feed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{feed}");
    assert_eq!(lines[0]["request"], id.as_str());
    assert_eq!(lines[0]["withdrawn_blake3"][0], output_blake3.as_str());
    assert_eq!(lines[0]["new_release"], "2");
    assert!(!feed.contains("pdq") && !feed.contains("dhash") && !feed.contains("Jane"));

    // Show escapes nothing away: the JSON carries the raw note; list escapes for the terminal.
    let (code, stdout, _) = lv(&ledger, &[&"takedown", &"list"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&id) && stdout.contains("closed"),
        "{stdout}"
    );

    // The chain verifies; editing any past event breaks it.
    let (code, stdout, err) = lv(&ledger, &[&"ledger", &"verify"]);
    assert_eq!(code, 0, "{stdout}{err}");
    let events = export(&ledger).lines().count();
    assert!(events >= 8, "{events}");
    for seq in [2, events / 2, events - 1] {
        let copy = t.path().join(format!("edited-{seq}.sqlite"));
        {
            let c = rusqlite::Connection::open(&ledger).unwrap();
            c.execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
                .unwrap();
        }
        let c = rusqlite::Connection::open(&copy).unwrap();
        c.execute(
            "UPDATE events SET payload = payload || ' ' WHERE seq = ?1",
            [seq],
        )
        .unwrap();
        drop(c);
        let (code, out, _) = lv(&copy, &[&"ledger", &"verify"]);
        assert_eq!(code, 1, "edit of event {seq} not detected");
        assert!(
            out.contains(&format!("BROKEN   chain at event {seq}")),
            "{out}"
        );
        // Every other command refuses the altered ledger before using it.
        let (code, _, err) = lv(&copy, &[&"takedown", &"list"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("event log is broken"), "{err}");
    }
}

#[test]
fn bad_input_exits_2_and_leaves_the_ledger_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    assert_eq!(run(&[&"sample", &input]).0, 0);
    let (_, root, ledger) = catalogue(t.path(), &input, "sample");
    let before = export(&ledger);
    let bytes_photo = t.path().join("not-a-photo.jpg");
    fs::write(&bytes_photo, b"plain text, not a JPEG").unwrap();
    let common: [&dyn AsRef<std::ffi::OsStr>; 6] = [
        &"--requester",
        &"R",
        &"--contact",
        &"r@x.example",
        &"--basis",
        &"privacy",
    ];
    let cases: Vec<(Vec<&dyn AsRef<std::ffi::OsStr>>, &str)> = vec![
        (
            vec![
                &"takedown",
                &"open",
                &"--dataset",
                &"nope",
                &"--path",
                &"a.jpg",
            ],
            "unknown dataset",
        ),
        (
            vec![
                &"takedown",
                &"open",
                &"--dataset",
                &"sample",
                &"--release",
                &"7",
                &"--path",
                &"a.jpg",
            ],
            "unknown release",
        ),
        (
            vec![&"takedown", &"open", &"--dataset", &"sample"],
            "no scope",
        ),
        (
            vec![
                &"takedown",
                &"open",
                &"--dataset",
                &"sample",
                &"--photo",
                &bytes_photo,
            ],
            "cannot decode",
        ),
        (
            vec![
                &"takedown",
                &"open",
                &"--dataset",
                &"sample",
                &"--blake3",
                &"abc",
            ],
            "64 lowercase hex",
        ),
    ];
    for (args, expect) in cases {
        let mut all = args.clone();
        all.extend_from_slice(&common);
        let (code, _, err) = lv(&ledger, &all);
        assert_eq!(code, 2, "{args:?}: {err}", args = expect);
        assert!(err.contains(expect), "expected {expect:?} in: {err}");
    }
    let (code, _, err) = lv(&ledger, &[&"takedown", &"match", &"TD-1999-0001"]);
    assert_eq!(code, 2);
    assert!(err.contains("no takedown request"), "{err}");
    let (code, _, err) = lv(
        &ledger,
        &[
            &"takedown",
            &"open",
            &"--dataset",
            &"sample",
            &"--path",
            &"x.png",
            &"--requester",
            &"R",
            &"--contact",
            &"c",
            &"--basis",
            &"gdpr",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("unknown basis"), "{err}");
    assert_eq!(
        export(&ledger),
        before,
        "a refused command changed the ledger"
    );

    // A file that is not a veil ledger, and one from a newer veil: refused, untouched.
    let text = t.path().join("notes.sqlite");
    fs::write(&text, "dear diary").unwrap();
    let (code, _, err) = lv(&text, &[&"takedown", &"list"]);
    assert_eq!(code, 2);
    assert!(err.contains("not a veil ledger"), "{err}");
    assert_eq!(fs::read(&text).unwrap(), b"dear diary");
    let foreign = t.path().join("foreign.sqlite");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    let bytes = fs::read(&foreign).unwrap();
    let (code, _, err) = lv(&foreign, &[&"ledger", &"import", &"--root", &root]);
    assert_eq!(code, 2);
    assert!(err.contains("not a veil ledger"), "{err}");
    assert_eq!(fs::read(&foreign).unwrap(), bytes);
    let newer = t.path().join("newer.sqlite");
    rusqlite::Connection::open(&ledger)
        .unwrap()
        .execute("VACUUM INTO ?1", [newer.to_str().unwrap()])
        .unwrap();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute(
            "UPDATE meta SET value = '999' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
    let (code, _, err) = lv(&newer, &[&"takedown", &"list"]);
    assert_eq!(code, 2);
    assert!(err.contains("newer than this veil"), "{err}");
    let (code, _, err) = lv(&t.path().join("absent.sqlite"), &[&"takedown", &"list"]);
    assert_eq!(code, 2);
    assert!(err.contains("no ledger here"), "{err}");
}

#[test]
fn two_processes_writing_at_once_lose_nothing() {
    let t = tempfile::tempdir().unwrap();
    let ledger = t.path().join("ledger.sqlite");
    assert_eq!(lv(&ledger, &[&"ledger", &"init"]).0, 0);
    let rounds = 25;
    for i in 0..rounds {
        let spawn = |who: &str| {
            veil()
                .args([
                    "ledger",
                    "policy",
                    &format!("{who}-{i}"),
                    "--working-days",
                    "10",
                ])
                .arg("--ledger")
                .arg(&ledger)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let (mut a, mut b) = (spawn("a"), spawn("b"));
        assert!(a.wait().unwrap().success());
        assert!(b.wait().unwrap().success());
    }
    let exported = export(&ledger);
    let policy_events = exported
        .lines()
        .filter(|l| l.contains("policy.set"))
        .count();
    assert_eq!(policy_events, 2 * rounds);
    let (code, stdout, err) = lv(&ledger, &[&"ledger", &"verify"]);
    assert_eq!(code, 0, "{stdout}{err}");
}

#[test]
fn deadlines_follow_policy_holidays_and_children_first() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    assert_eq!(run(&[&"sample", &input]).0, 0);
    let (_, _, ledger) = catalogue(t.path(), &input, "sample");
    fs::write(
        ledger.with_file_name("holidays-cn.txt"),
        "# National Day 2026\n2026-10-01\n2026-10-02\n2026-10-05\n2026-10-06\n2026-10-07\n2026-10-10 workday\n",
    )
    .unwrap();
    let (code, _, err) = lv(
        &ledger,
        &[
            &"ledger",
            &"policy",
            &"cn",
            &"--working-days",
            &"15",
            &"--holidays",
            &"holidays-cn.txt",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let open = |basis: &str, received: &str, policy: Option<&str>| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"takedown",
            &"open",
            &"--dataset",
            &"sample",
            &"--path",
            &"*.png",
            &"--requester",
            &"R",
            &"--contact",
            &"r@x.example",
            &"--basis",
        ];
        args.push(&basis);
        args.push(&"--received");
        args.push(&received);
        if let Some(p) = &policy {
            args.push(&"--policy");
            args.push(p);
        }
        let (code, stdout, err) = lv(&ledger, &args);
        assert_eq!(code, 0, "{err}");
        stdout
    };
    // Default: 15 working days from Monday 2026-11-23 is Monday 2026-12-14.
    open("privacy", "2099-11-23", None);
    assert!(open("privacy", "2026-11-23", None).contains("due 2026-12-14"));
    // Across National Day with the holiday file: due 2026-10-27 (without it: 2026-10-21).
    assert!(open("copyright", "2026-09-30", Some("cn")).contains("due 2026-10-27"));
    assert!(open("copyright", "2026-09-30", None).contains("due 2026-10-21"));
    // Children's data: due the day it arrived, listed first.
    let child = open("child", "2026-11-20", None);
    assert!(child.contains("due 2026-11-20"), "{child}");
    let (code, stdout, _) = lv(&ledger, &[&"takedown", &"list"]);
    assert_eq!(code, 0);
    assert!(stdout.lines().next().unwrap().contains("child"), "{stdout}");
    // Overdue requests make `due` exit 1 for cron; the far-future one is not listed within 3d.
    let (code, stdout, _) = lv(&ledger, &[&"takedown", &"due", &"--within", &"3d"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("OVERDUE"));
    assert!(!stdout.contains("2099-"), "{stdout}");
}

#[test]
fn whole_dataset_withdrawal_withdraws_every_release_and_notifies_everyone() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    assert_eq!(run(&[&"sample", &input]).0, 0);
    let (out, root, ledger) = catalogue(t.path(), &input, "sample");
    let (code, _, err) = lv(
        &ledger,
        &[
            &"recipients",
            &"add",
            &"--release",
            &"sample@1",
            &"--name",
            &"Lab",
            &"--contact",
            &"lab@x.example",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, stdout, err) = lv(
        &ledger,
        &[
            &"takedown",
            &"open",
            &"--dataset",
            &"sample",
            &"--whole-dataset",
            &"--requester",
            &"Regulator",
            &"--contact",
            &"office@authority.example",
            &"--basis",
            &"authority",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = request_id(&stdout);
    let (code, stdout, err) = lv(
        &ledger,
        &[
            &"takedown",
            &"apply",
            &id,
            &"--root",
            &root,
            &"--purge",
            &out,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("dataset sample withdrawn"), "{stdout}");
    let items = fs::read_to_string(root.join("sample/1/manifest.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(stdout.contains(&format!("{items} deleted")), "{stdout}");
    let (code, stdout, err) = lv(
        &ledger,
        &[
            &"takedown",
            &"notify",
            &id,
            &"--outbox",
            &t.path().join("outbox"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("1 notices written"), "{stdout}");
    let (code, feed, _) = lv(&ledger, &[&"withdrawals", &"export"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(feed.lines().next().unwrap()).unwrap();
    assert_eq!(v["whole_dataset"], true);
    assert_eq!(v["withdrawn_blake3"].as_array().unwrap().len(), items);
    // Re-importing is a no-op, and the chain still verifies.
    let (code, _, err) = lv(&ledger, &[&"ledger", &"import", &"--root", &root]);
    assert_eq!(code, 0, "re-importing known releases is a no-op: {err}");
    let (code, stdout, _) = lv(&ledger, &[&"ledger", &"verify"]);
    assert_eq!(code, 0, "{stdout}");
}
