//! Takedown correspondence sent for real, to an SMTP server on loopback (`common::smtp`, a small
//! server in the test crate): the requester's acknowledgement and answer and the recipients'
//! notices of a full open, match, confirm, apply, notify flow; a refused recipient; a dropped
//! connection; a crash between delivery and record (no duplicate); overridden templates; Chinese
//! letters; dry run and hand-over by other means.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::smtp::{Behaviour, Sink};
use common::*;

struct Env {
    _t: tempfile::TempDir,
    ledger: PathBuf,
    root: PathBuf,
    out: PathBuf,
}

fn lv(
    e: &Env,
    smtp: Option<&Sink>,
    extra_env: &[(&str, &str)],
    args: &[&str],
) -> (i32, String, String) {
    let mut c = veil();
    c.args(args).arg("--ledger").arg(&e.ledger);
    c.env_remove("VEIL_SMTP_URL")
        .env_remove("VEIL_SMTP_PASSWORD");
    if let Some(s) = smtp {
        c.env("VEIL_SMTP_URL", s.url())
            .env("VEIL_SMTP_FROM", "Takedowns <takedowns@veil.test>")
            .env("VEIL_SMTP_REPLY_TO", "legal@veil.test");
    }
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn setup() -> Env {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    let (code, _, err) = run(&[&"sample", &input]);
    assert_eq!(code, 0, "{err}");
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    let root = t.path().join("manifests");
    let (code, _, err) = release_build(&out, "ds", "1", &root);
    assert_eq!(code, 0, "{err}");
    let e = Env {
        ledger: root.join("ledger.sqlite"),
        root,
        out,
        _t: t,
    };
    let root_s = e.root.display().to_string();
    let (code, _, err) = lv(&e, None, &[], &["ledger", "import", "--root", &root_s]);
    assert_eq!(code, 0, "{err}");
    for (name, contact) in [
        ("ACME Vision Lab", "data@acme.example"),
        ("Gone Univ.", "nobody@gone.example"),
    ] {
        let (code, _, err) = lv(
            &e,
            None,
            &[],
            &[
                "recipients",
                "add",
                "--release",
                "ds@1",
                "--name",
                name,
                "--contact",
                contact,
            ],
        );
        assert_eq!(code, 0, "{err}");
    }
    e
}

fn open(e: &Env, smtp: &Sink, extra: &[&str]) -> String {
    let mut args = vec![
        "takedown",
        "open",
        "--dataset",
        "ds",
        "--path",
        "astronaut.png",
        "--requester",
        "Jane Doe",
        "--contact",
        "jane@example.org",
        "--basis",
        "privacy",
        "--send",
    ];
    args.extend_from_slice(extra);
    let (code, stdout, err) = lv(e, Some(smtp), &[], &args);
    assert_eq!(code, 0, "{stdout}{err}");
    stdout.split('\t').next().unwrap().trim().to_string()
}

/// (message_id, status, subject, text) of the ledger's letters.
fn letters(e: &Env) -> Vec<(String, String, String, String, String)> {
    let c = rusqlite::Connection::open(&e.ledger).unwrap();
    let mut s = c
        .prepare("SELECT message_id, status, subject, text, to_addr FROM letters ORDER BY id")
        .unwrap();
    s.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn a_full_flow_sends_the_acknowledgement_the_answer_and_the_notices() {
    let e = setup();
    let sink = Sink::start(Behaviour {
        refuse: vec!["nobody@gone.example".into()],
        ..Default::default()
    });
    let id = open(&e, &sink, &[]);
    let got = sink.messages();
    assert_eq!(got.len(), 1, "the acknowledgement");
    let ack = &got[0];
    assert_eq!(ack.to, ["jane@example.org"]);
    assert_eq!(ack.from, "takedowns@veil.test");
    assert!(ack.header("Subject").unwrap().contains(&id), "{}", ack.data);
    assert_eq!(ack.header("Reply-To").as_deref(), Some("legal@veil.test"));
    let stored = letters(&e);
    assert_eq!(
        ack.header("Message-ID").as_deref(),
        Some(stored[0].0.as_str())
    );
    assert_eq!(stored[0].1, "sent");
    assert!(stored[0].3.contains("astronaut.png") && stored[0].3.contains("answer by"));
    assert!(stored[0].3.contains("Ledger head: "), "{}", stored[0].3);

    for args in [
        vec!["takedown", "match", &id],
        vec!["takedown", "confirm", &id, "astronaut.png"],
    ] {
        let (code, _, err) = lv(&e, None, &[], &args);
        assert_eq!(code, 0, "{err}");
    }
    let root = e.root.display().to_string();
    let out = e.out.display().to_string();
    let (code, stdout, err) = lv(
        &e,
        Some(&sink),
        &[],
        &[
            "takedown", "apply", &id, "--root", &root, "--purge", &out, "--send",
        ],
    );
    assert_eq!(code, 0, "{stdout}{err}");
    let answer = &sink.messages()[1];
    assert_eq!(answer.to, ["jane@example.org"]);
    let text = &letters(&e)[1].3;
    assert!(
        text.contains("astronaut.png") && text.contains("ds@2"),
        "{text}"
    );

    // Notices: one delivered, one refused by the server (recorded, exit 1, listed by due).
    let (code, stdout, _) = lv(&e, Some(&sink), &[], &["takedown", "notify", &id, "--send"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAILED") && stdout.contains("550"),
        "{stdout}"
    );
    let got = sink.messages();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].to, ["data@acme.example"]);
    let refused = letters(&e)
        .into_iter()
        .find(|l| l.4 == "nobody@gone.example")
        .unwrap();
    assert_eq!(refused.1, "failed");
    let (code, stdout, _) = lv(&e, None, &[], &["takedown", "due"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("LETTER") && stdout.contains("nobody@gone.example"),
        "{stdout}"
    );
    // Retried only after its backoff: nothing is sent twice meanwhile.
    let (code, stdout, _) = lv(&e, Some(&sink), &[], &["takedown", "send"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("waiting"), "{stdout}");
    assert_eq!(sink.messages().len(), 3);

    // The recipient's reply, kept by hash.
    let eml = e.ledger.parent().unwrap().join("reply.eml");
    fs::write(
        &eml,
        "From: data@acme.example\r\nSubject: Re: deleted\r\n\r\nDone.\r\n",
    )
    .unwrap();
    let eml_s = eml.display().to_string();
    let (code, _, err) = lv(
        &e,
        None,
        &[],
        &[
            "takedown",
            "ack",
            &id,
            "--recipient",
            "data@acme.example",
            "--eml",
            &eml_s,
        ],
    );
    assert_eq!(code, 0, "{err}");

    // Every letter and delivery is in the events: the state replays.
    let (code, stdout, err) = lv(&e, None, &[], &["ledger", "verify"]);
    assert_eq!(code, 0, "{stdout}{err}");
}

#[test]
fn a_dropped_connection_and_a_crash_after_delivery_never_send_twice() {
    let e = setup();
    // The server closes the connection after the message's data: a failure, recorded.
    let dropping = Sink::start(Behaviour {
        drop_after_data: 1,
        ..Default::default()
    });
    let mut args = vec![
        "takedown",
        "open",
        "--dataset",
        "ds",
        "--path",
        "camera.png",
        "--requester",
        "A",
        "--contact",
        "a@example.org",
        "--basis",
        "privacy",
        "--send",
    ];
    let (code, stdout, _) = lv(&e, Some(&dropping), &[], &args);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert_eq!(letters(&e)[0].1, "failed");
    assert!(dropping.messages().is_empty());

    // Nothing listens on the server's port: a failure saying so, recorded.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("smtp://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut c_args = args.clone();
    c_args[7] = "C";
    c_args[9] = "c@example.org";
    let (code, stdout, _) = lv(
        &e,
        None,
        &[("VEIL_SMTP_URL", &url), ("VEIL_SMTP_FROM", "t@veil.test")],
        &c_args,
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("could not deliver"), "{stdout}");
    let c = letters(&e)
        .into_iter()
        .find(|l| l.4 == "c@example.org")
        .unwrap();
    assert_eq!(c.1, "failed");

    // A TLS URL to a server that does not speak TLS: a failure, recorded.
    let plain = Sink::start(Behaviour::default());
    let tls_url = format!("smtps://{}", plain.addr);
    let mut d_args = args.clone();
    d_args[7] = "D";
    d_args[9] = "d@example.org";
    let (code, stdout, _) = lv(
        &e,
        None,
        &[
            ("VEIL_SMTP_URL", &tls_url),
            ("VEIL_SMTP_FROM", "t@veil.test"),
        ],
        &d_args,
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAILED") && stdout.contains("d@example.org"),
        "{stdout}"
    );
    assert!(plain.messages().is_empty());

    // A crash between the server's acceptance and the record: the next send does not resend.
    let sink = Sink::start(Behaviour::default());
    args[7] = "B";
    args[9] = "b@example.org";
    let (code, stdout, err) = lv(
        &e,
        Some(&sink),
        &[("VEIL_TEST_CRASH_AFTER_SMTP", "1")],
        &args,
    );
    assert_ne!(code, 0, "the process was aborted: {stdout}{err}");
    assert_eq!(sink.messages().len(), 1, "the server has it: {stdout}{err}");
    let (code, stdout, _) = lv(&e, Some(&sink), &[], &["takedown", "send"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("UNCERTAIN") && stdout.contains("b@example.org"),
        "{stdout}"
    );
    assert_eq!(sink.messages().len(), 1, "not sent twice");
    let b = letters(&e)
        .into_iter()
        .find(|l| l.4 == "b@example.org")
        .unwrap();
    assert_eq!(b.1, "uncertain");
    // Only when asked, with the same Message-ID.
    let (code, stdout, _) = lv(
        &e,
        Some(&sink),
        &[],
        &["takedown", "send", "--resend-uncertain"],
    );
    assert!(stdout.contains("sent"), "{stdout}");
    let _ = code;
    let got = sink.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("Message-ID"), got[1].header("Message-ID"));
}

#[test]
fn templates_are_overridden_and_chinese_letters_are_built_in() {
    let e = setup();
    let sink = Sink::start(Behaviour::default());
    let dir = e.ledger.parent().unwrap().join("templates");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("acknowledgement.en.txt"),
        "Subject: Received {{request}} (ACME data desk)\n\nHello {{requester}}, due {{due}}.\n",
    )
    .unwrap();
    fs::write(
        dir.join("acknowledgement.en.html"),
        "<p>Hello {{requester}}</p>\n",
    )
    .unwrap();
    let id = open(&e, &sink, &[]);
    let m = &sink.messages()[0];
    assert_eq!(
        m.header("Subject").unwrap(),
        format!("Received {id} (ACME data desk)")
    );
    assert!(m.data.contains("multipart/alternative"), "{}", m.data);
    assert!(m.data.contains("<p>Hello Jane Doe</p>"), "{}", m.data);

    let zh = open(&e, &sink, &["--language", "zh"]);
    let l = letters(&e);
    let (_, _, subject, text, _) = l.last().unwrap();
    assert!(
        subject.contains(&zh) && subject.contains("我们已收到"),
        "{subject}"
    );
    assert!(text.contains("Jane Doe 您好"), "{text}");
    assert_eq!(sink.messages().len(), 2);

    // A template with an unknown placeholder is refused, naming it; nothing is opened.
    fs::write(
        dir.join("acknowledgement.en.txt"),
        "Subject: {{nonsense}}\n\nx\n",
    )
    .unwrap();
    let (code, _, err) = lv(
        &e,
        Some(&sink),
        &[],
        &[
            "takedown",
            "open",
            "--dataset",
            "ds",
            "--path",
            "coffee.png",
            "--requester",
            "C",
            "--contact",
            "c@example.org",
            "--basis",
            "privacy",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("{{nonsense}}"), "{err}");
}

#[test]
fn dry_run_and_hand_over_change_nothing_or_record_who() {
    let e = setup();
    let (code, stdout, err) = lv(
        &e,
        None,
        &[],
        &[
            "takedown",
            "open",
            "--dataset",
            "ds",
            "--path",
            "rocket.jpg",
            "--requester",
            "R",
            "--contact",
            "by post: 1 Main St",
            "--basis",
            "privacy",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = stdout.split('\t').next().unwrap().trim().to_string();
    assert_eq!(letters(&e)[0].1, "unaddressable");
    let (code, stdout, _) = lv(&e, None, &[], &["takedown", "send", "--dry-run"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("UNSENDABLE") && stdout.contains("not an e-mail address"),
        "{stdout}"
    );
    // Without a server, sending says how to configure one.
    let (code, _, err) = lv(
        &e,
        None,
        &[],
        &[
            "takedown",
            "open",
            "--dataset",
            "ds",
            "--path",
            "chelsea.png",
            "--requester",
            "S",
            "--contact",
            "s@example.org",
            "--basis",
            "privacy",
            "--send",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("VEIL_SMTP_URL"), "{err}");
    // The server as ledger settings instead of the environment.
    let sink = Sink::start(Behaviour::default());
    for (k, v) in [
        ("smtp_url", sink.url()),
        ("smtp_from", "desk@veil.test".to_string()),
    ] {
        let (code, _, err) = lv(&e, None, &[], &["ledger", "set", k, &v]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = lv(&e, None, &[], &["ledger", "set", "smtp_password", "x"]);
    assert_eq!(code, 2, "a password is never a setting: {err}");
    let (code, stdout, _) = lv(&e, None, &[], &["takedown", "send"]);
    assert_eq!(code, 1, "the unaddressable letter remains: {stdout}");
    assert_eq!(sink.messages().len(), 1, "{stdout}");
    assert_eq!(sink.messages()[0].to, ["s@example.org"]);
    let (code, stdout, err) = lv(
        &e,
        None,
        &[],
        &["takedown", "send", "--outbox-only", "--by", "M. Aintainer"],
    );
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.contains("handed"), "{stdout}");
    let l = letters(&e);
    assert_eq!(l[0].1, "handed", "{l:?}");
    assert_eq!(l[1].1, "sent", "{l:?}");
    let eml_dir: PathBuf = e
        .ledger
        .parent()
        .unwrap()
        .join("outbox")
        .join(&id)
        .join("letters");
    assert!(fs::read_dir(&eml_dir).unwrap().count() >= 1);
    let _ = Path::new("");
}
