//! The takedown ledger proves itself: `veil ledger verify` rebuilds every table from the events
//! and names each row changed behind its back; published heads (`--head`, `--feed`) expose a
//! truncated or rewritten history; a signed feed is checked with the public key alone; a write on
//! a diverged ledger is refused; a ledger in the schema-1 format migrates and verifies.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use rusqlite::Connection;

fn lv(ledger: &Path, key: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
    let mut c = veil();
    for a in args {
        c.arg(a.as_ref());
    }
    c.arg("--ledger").arg(ledger).env("VEIL_LEDGER_KEY", key);
    let o = c.output().expect("run veil");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

struct Flow {
    _t: tempfile::TempDir,
    dir: PathBuf,
    ledger: PathBuf,
    key: PathBuf,
    feed: PathBuf,
    id: String,
    withdrawn: String,
}

/// A full open, match, confirm, apply, notify flow on the sample photos, with a signing key;
/// the feed exported after it.
fn flow() -> Flow {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_path_buf();
    let input = dir.join("in");
    let (code, _, err) = run(&[&"sample", &input]);
    assert_eq!(code, 0, "{err}");
    let out = dir.join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    let root = dir.join("manifests");
    let (code, _, err) = release_build(&out, "ds", "1", &root);
    assert_eq!(code, 0, "{err}");
    let ledger = root.join("ledger.sqlite");
    let key = dir.join("keys/ledger.key");
    let l = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let (code, stdout, err) = lv(&ledger, &key, args);
        assert_eq!(
            code,
            0,
            "{:?}: {err}",
            args[..2]
                .iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        );
        stdout
    };
    l(&[&"ledger", &"import", &"--root", &root]);
    let stdout = l(&[&"ledger", &"key", &"init"]);
    assert!(stdout.contains("public key:"), "{stdout}");
    l(&[
        &"recipients",
        &"add",
        &"--release",
        &"ds@1",
        &"--name",
        &"ACME Vision Lab",
        &"--contact",
        &"data@acme.example",
    ]);
    let withdrawn = "astronaut.png".to_string();
    let stdout = l(&[
        &"takedown",
        &"open",
        &"--dataset",
        &"ds",
        &"--path",
        &withdrawn,
        &"--requester",
        &"Jane Doe",
        &"--contact",
        &"jane@example.org",
        &"--basis",
        &"privacy",
    ]);
    let id = stdout.split('\t').next().unwrap().trim().to_string();
    l(&[&"takedown", &"match", &id]);
    l(&[&"takedown", &"confirm", &id, &withdrawn]);
    l(&[
        &"takedown",
        &"apply",
        &id,
        &"--root",
        &root,
        &"--purge",
        &out,
    ]);
    l(&[&"takedown", &"notify", &id]);
    let feed = dir.join("withdrawals.jsonl");
    l(&[&"withdrawals", &"export", &"--out", &feed]);
    Flow {
        _t: t,
        dir,
        ledger,
        key,
        feed,
        id,
        withdrawn,
    }
}

/// A copy of the ledger (through SQLite, so the WAL is included) changed by `sql`, as an SQLite
/// client would.
fn tampered(f: &Flow, name: &str, sql: &str) -> PathBuf {
    let copy = f.dir.join(format!("{name}.sqlite"));
    let c = Connection::open(&f.ledger).unwrap();
    c.execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    drop(c);
    let c = Connection::open(&copy).unwrap();
    c.execute_batch(sql).unwrap();
    copy
}

/// Recomputes every event's hash from `from` on and the recorded head, as someone rewriting
/// the history would.
fn rechain(ledger: &Path) {
    let c = Connection::open(ledger).unwrap();
    let mut events: Vec<(i64, String, String, String)> = {
        let mut s = c
            .prepare("SELECT seq, at, kind, payload FROM events ORDER BY seq")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let mut prev = veil_takedown::GENESIS.to_string();
    for (seq, at, kind, payload) in events.drain(..) {
        let hash = veil_takedown::event_hash(seq, &at, &kind, &payload, &prev);
        c.execute(
            "UPDATE events SET prev = ?2, hash = ?3 WHERE seq = ?1",
            rusqlite::params![seq, prev, hash],
        )
        .unwrap();
        c.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'head'",
            [format!("{seq}:{hash}")],
        )
        .unwrap();
        prev = hash;
    }
}

fn verify(f: &Flow, ledger: &Path, extra: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String) {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"ledger", &"verify"];
    args.extend_from_slice(extra);
    let (code, stdout, err) = lv(ledger, &f.key, &args);
    (code, format!("{stdout}{err}"))
}

#[test]
fn every_change_behind_the_ledgers_back_is_named_by_verify() {
    let f = flow();
    let (code, out) = verify(&f, &f.ledger, &[&"--feed", &f.feed]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok       state: every table rebuilt"), "{out}");
    assert!(out.contains("the chain extends it"), "{out}");

    for (name, sql, want) in [
        (
            "tombstone",
            "DELETE FROM tombstones".to_string(),
            format!(
                "DIFFERS  tombstones [request=\"{}\", dataset=\"ds\", version=\"1\", path=\"{}\"] (row)",
                f.id, f.withdrawn
            ),
        ),
        (
            "status",
            format!("UPDATE requests SET status = 'received' WHERE id = '{}'", f.id),
            format!("DIFFERS  requests [id=\"{}\"] status: from the events \"notified\", in the table \"received\"", f.id),
        ),
        (
            "item",
            "UPDATE items SET blake3 = '00' WHERE path = 'camera.png' AND version = '1'"
                .to_string(),
            "] blake3: from the events".to_string(),
        ),
        (
            "recipient",
            "INSERT INTO recipients (dataset, version, name, contact, received_at, origin)
             VALUES ('ds', '1', 'Mallory', 'm@x.example', '2026-01-01', 'manual')"
                .to_string(),
            "DIFFERS  recipients [id=2] (row): from the events absent, in the table present"
                .to_string(),
        ),
    ] {
        let copy = tampered(&f, name, &sql);
        let (code, out) = verify(&f, &copy, &[]);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.contains(&want), "{name}: expected {want:?} in\n{out}");
        assert!(out.contains("ok       chain"), "{name}: the chain itself is intact: {out}");
        // A write on the diverged state is refused, and names verify.
        let (code, _, err) = lv(
            &copy,
            &f.key,
            &[&"ledger", &"policy", &"strict", &"--working-days", &"10"],
        );
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains("veil ledger verify"), "{name}: {err}");
    }
    // The original still verifies (the copies were the ones changed).
    let (code, out) = verify(&f, &f.ledger, &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn published_heads_expose_a_truncated_or_rewritten_history() {
    let f = flow();
    let line: serde_json::Value =
        serde_json::from_str(fs::read_to_string(&f.feed).unwrap().lines().next().unwrap()).unwrap();
    let head = format!(
        "{}:{}",
        line["ledger_head"]["events"],
        line["ledger_head"]["hash"].as_str().unwrap()
    );
    let n: i64 = line["ledger_head"]["events"].as_i64().unwrap();

    // The history cut back to before the withdrawal, head and tables made consistent again.
    let cut = tampered(
        &f,
        "cut",
        &format!(
            "DELETE FROM events WHERE seq >= {n}; DELETE FROM notices; DELETE FROM tombstones;"
        ),
    );
    rechain(&cut);
    let (code, out) = verify(&f, &cut, &[&"--head", &head]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BROKEN   head {head}")) && out.contains("is gone"),
        "{out}"
    );

    // The withdrawal's event rewritten (a path changed) and every hash after it recomputed.
    let rewritten = tampered(
        &f,
        "rewritten",
        &format!(
            "UPDATE events SET payload = replace(payload, '{}', 'other.png') WHERE seq = {n}",
            f.withdrawn
        ),
    );
    rechain(&rewritten);
    let (code, out) = verify(&f, &rewritten, &[&"--feed", &f.feed]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("ok       chain"),
        "the rewritten chain is consistent: {out}"
    );
    assert!(
        out.contains(&format!("BROKEN   head {head}")) && out.contains("history rewritten"),
        "{out}"
    );
}

#[test]
fn a_signed_feed_is_checked_with_the_public_key_alone() {
    let f = flow();
    let public = fs::read_to_string(f.key.with_extension("key.pub")).unwrap();
    let public = public.trim();
    let (code, stdout, err) = lv(
        &f.ledger,
        &f.key,
        &[&"withdrawals", &"verify", &f.feed, &"--key", &public],
    );
    assert_eq!(code, 0, "{stdout}{err}");
    let text = fs::read_to_string(&f.feed).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["signature"]["key"], public);
    for (name, edit) in [
        ("head", "\"events\":"),
        ("withdrawn hash", "\"withdrawn_blake3\":[\""),
    ] {
        // One character after the edited field's name changes.
        let at = text.find(edit).unwrap() + edit.len();
        let mut bytes = text.clone().into_bytes();
        bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
        let edited = f.dir.join(format!("feed-{}.jsonl", name.replace(' ', "-")));
        fs::write(&edited, bytes).unwrap();
        let (code, stdout, _) = lv(
            &f.ledger,
            &f.key,
            &[&"withdrawals", &"verify", &edited, &"--key", &public],
        );
        assert_eq!(code, 1, "{name}: {stdout}");
        assert!(
            stdout.contains("BAD") && stdout.contains("signature"),
            "{name}: {stdout}"
        );
    }
    // Another key does not verify the feed.
    let other = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";
    let (code, _, _) = lv(
        &f.ledger,
        &f.key,
        &[&"withdrawals", &"verify", &f.feed, &"--key", &other],
    );
    assert_eq!(code, 1);
    // The notice carries the same head, signed.
    let notice = fs::read_dir(f.ledger.parent().unwrap().join("outbox").join(&f.id))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let n: serde_json::Value = serde_json::from_str(&fs::read_to_string(notice).unwrap()).unwrap();
    assert_eq!(n["ledger_head"], line["ledger_head"]);
    assert_eq!(n["signature"]["key"], public);
}

#[test]
fn a_ledger_in_the_schema_1_format_migrates_and_verifies() {
    let f = flow();
    // The format veil wrote before schema 2: events without `writes`, `state` or the
    // migration to 2; schema_version 1.
    let old = tampered(
        &f,
        "old",
        "DELETE FROM meta WHERE key = 'signing_key';
         DROP TABLE IF EXISTS letters; DROP TABLE IF EXISTS settings;
         ALTER TABLE requests DROP COLUMN language;
         ALTER TABLE notices DROP COLUMN ack_eml_blake3;",
    );
    {
        let c = Connection::open(&old).unwrap();
        let events: Vec<(i64, String, String)> = {
            let mut s = c
                .prepare("SELECT seq, kind, payload FROM events ORDER BY seq")
                .unwrap();
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let mut seq = 0;
        for (old_seq, kind, payload) in events {
            let mut v: serde_json::Value = serde_json::from_str(&payload).unwrap();
            let o = v.as_object_mut().unwrap();
            let drop = (kind == "ledger.migrated" && o["to"].as_i64() > Some(1))
                || kind == "ledger.key_added";
            if drop {
                c.execute("DELETE FROM events WHERE seq = ?1", [old_seq])
                    .unwrap();
                continue;
            }
            seq += 1;
            o.remove("writes");
            o.remove("state");
            c.execute(
                "UPDATE events SET seq = ?1, payload = ?2 WHERE seq = ?3",
                rusqlite::params![seq, serde_json::to_string(&v).unwrap(), old_seq],
            )
            .unwrap();
        }
        c.execute(
            "UPDATE meta SET value = '1' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
    }
    rechain(&old);
    let (code, out) = verify(&f, &old, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("from the snapshot in event"), "{out}");
    assert!(out.contains("written before veil recorded writes"), "{out}");
    // Migrated once, by the first command; a change after it is caught by replay.
    let c = Connection::open(&old).unwrap();
    let v: String = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v, veil_takedown::SCHEMA_VERSION.to_string());
    c.execute("DELETE FROM tombstones", []).unwrap();
    drop(c);
    let (code, out) = verify(&f, &old, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DIFFERS  tombstones"), "{out}");
}
