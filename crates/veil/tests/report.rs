//! End-to-end tests of the review page (`veil report`, `veil redact --report`) and of
//! `veil review import`: the real binary, and the page driven in headless Chromium through
//! chromedriver's WebDriver HTTP API (a minimal client on std::net).

#![allow(clippy::print_stderr)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The name of the hostile file: its `/` makes it a directory plus a file on disk.
const SCRIPT_NAME: &str = "<script>alert(1)</script>.jpg";
const QUOTE_NAME: &str = "quote\"it's <img src=x onerror=alert(2)> #1?%.png";
const NEWLINE_NAME: &str = "new\nline\u{2028}sep.jpg";
const MARGIN: f64 = 0.15;

// ---------------------------------------------------------------------------------------------
// Expectations computed from provenance.jsonl, independently of veil-report's code.

fn f32_of(v: &Value) -> f64 {
    // Scores are f32 in veil: compare exactly as the report does.
    f64::from(v.as_f64().unwrap() as f32)
}

/// The review categories of one record (see veil-report's crate documentation).
fn categories(r: &Value) -> BTreeSet<&'static str> {
    let mut c = BTreeSet::new();
    if r["status"] == "failed" {
        c.insert("failed");
    }
    if r["check"]["leaks"]
        .as_array()
        .is_some_and(|l| !l.is_empty())
    {
        c.insert("leak");
    }
    let dets = r["detections"].as_array().unwrap();
    for d in dets {
        if d["model"] == "head-fallback" {
            continue;
        }
        let class = d["class"].as_str().unwrap();
        let thr = r["params"]["policy"][class]["threshold"].as_f64().unwrap();
        if f32_of(&d["score"]) - thr < MARGIN {
            c.insert("near");
        }
    }
    let faces: Vec<(f32, f32)> = dets
        .iter()
        .filter(|d| d["class"] == "face" && d["model"] != "head-fallback")
        .map(|d| {
            let f = |k: &str| d["box"][k].as_f64().unwrap() as f32;
            ((f("x1") + f("x2")) * 0.5, (f("y1") + f("y2")) * 0.5)
        })
        .collect();
    let faceless = dets.iter().filter(|d| d["class"] == "person").any(|p| {
        let b = &p["box"];
        let f = |k: &str| b[k].as_f64().unwrap() as f32;
        !faces
            .iter()
            .any(|&(x, y)| x >= f("x1") && x < f("x2") && y >= f("y1") && y < f("y2"))
    });
    if faceless {
        c.insert("noface");
    }
    c
}

fn count(recs: &[Value], f: impl Fn(&Value) -> bool) -> usize {
    recs.iter().filter(|r| f(r)).count()
}

fn detections(recs: &[Value], class: &str, head: bool) -> usize {
    recs.iter()
        .flat_map(|r| r["detections"].as_array().unwrap())
        .filter(|d| d["class"] == class && (d["model"] == "head-fallback") == head)
        .count()
}

// ---------------------------------------------------------------------------------------------
// A minimal WebDriver client.

fn find_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// chromium and chromedriver, or None (SKIPPED) unless VEIL_REQUIRE_BROWSER=1 demands them.
fn browser() -> Option<PathBuf> {
    let chromium = find_on_path(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = find_on_path(&["chromedriver"]);
    match (chromium, driver) {
        (Some(_), Some(d)) => Some(d),
        _ if std::env::var("VEIL_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("VEIL_REQUIRE_BROWSER=1 but chromium or chromedriver is not on PATH")
        }
        _ => {
            eprintln!(
                "SKIPPED: chromium not installed (Debian packages chromium and chromium-driver)"
            );
            None
        }
    }
}

/// chromedriver and one browser session; both ended on drop.
struct Driver {
    child: Child,
    port: u16,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read the header, then exactly the body it announces (the server may keep the connection).
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 << 10];
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut buf).expect("read from chromedriver");
        assert!(n > 0, "chromedriver closed the connection");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut payload = raw[split + 4..].to_vec();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let mut fill = |payload: &mut Vec<u8>, done: &dyn Fn(&[u8]) -> bool| {
        while !done(payload) {
            let n = s.read(&mut buf).expect("read from chromedriver");
            if n == 0 {
                break;
            }
            payload.extend_from_slice(&buf[..n]);
        }
    };
    if let Some(len) = header("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        fill(&mut payload, &|p| p.len() >= len);
        payload.truncate(len);
    } else if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        fill(&mut payload, &|p| p.windows(5).any(|w| w == b"0\r\n\r\n"));
        let mut out = Vec::new();
        let mut rest = &payload[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size_text = String::from_utf8_lossy(&rest[..nl]).into_owned();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + size]);
            rest = &rest[nl + 2 + size + 2..];
        }
        payload = out;
    } else {
        fill(&mut payload, &|_| false);
    }
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let v = if payload.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&payload).unwrap_or(Value::Null)
    };
    (status, v)
}

impl Driver {
    fn start(chromedriver: &Path, downloads: &Path) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(chromedriver);
        cmd.arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so the browser it starts can be ended with it.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("start chromedriver");
        let mut d = Driver {
            child,
            port,
            session: String::new(),
        };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--allow-file-access-from-files", "--window-size=1400,1200"],
                "prefs": {"download.default_directory": downloads.to_str().unwrap(),
                          "download.prompt_for_download": false},
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let (status, v) = http(port, "POST", "/session", Some(&caps));
        assert_eq!(status, 200, "new session: {v}");
        d.session = v["value"]["sessionId"].as_str().unwrap().to_string();
        d
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.try_call(method, path, body);
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let p = format!("/session/{}{path}", self.session);
        http(self.port, method, &p, body.as_ref())
    }

    fn exec(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    fn find(&self, css: &str) -> Value {
        self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )
    }

    fn click(&self, element: &Value) {
        let id = element[ELEMENT].as_str().expect("an element");
        // As a user would: bring it to the middle of the window first. WebDriver alone scrolls
        // it to the top edge, under the page's sticky controls bar.
        self.exec(
            "arguments[0].scrollIntoView({block: 'center'})",
            json!([element]),
        );
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn type_into(&self, element: &Value, text: &str) {
        let id = element[ELEMENT].as_str().expect("an element");
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Waits until a script returns something truthy.
    fn wait_for(&self, script: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.exec(script, json!([]));
            if !(v.is_null() || v == false) {
                return v;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "timed out: {script}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Paths of the cards of the current filter, over every page (walked with the next button).
    fn all_card_paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        while self.exec(
            "return !document.getElementById('prev').disabled",
            json!([]),
        ) == true
        {
            self.click(&self.find("#prev"));
        }
        loop {
            let page = self.exec(
                "return Array.from(document.querySelectorAll('#grid .card .path')).map(e => e.textContent)",
                json!([]),
            );
            out.extend(
                page.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string()),
            );
            if self.exec("return document.getElementById('next').disabled", json!([])) == true {
                return out;
            }
            self.click(&self.find("#next"));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let p = format!("/session/{}", self.session);
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                let _ = std::panic::catch_unwind(|| http(self.port, "DELETE", &p, None));
            }
        }
        #[cfg(unix)]
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * i);
        }
        out.push((acc >> 16) as u8);
        if chunk.len() > 2 {
            out.push((acc >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(acc as u8);
        }
    }
    out
}

/// `target/test-artifacts` (the target directory of this build, also under CARGO_TARGET_DIR).
fn artifacts_dir() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_veil"));
    let target = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir of the veil binary");
    let dir = target.join("test-artifacts");
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn file_url(p: &Path) -> String {
    let mut s = String::from("file://");
    for b in p.to_str().unwrap().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// A few shared photos plus hostile file names and a corrupt file.
fn make_input(dir: &Path) -> Option<()> {
    let faces = shared("images/faces")?;
    let persons = shared("images/persons")?;
    let negatives = shared("images/negatives")?;
    fs::create_dir_all(dir).unwrap();
    for (from, name) in [
        (faces.join("astronaut.png"), "astronaut.png"),
        (faces.join("bus.jpg"), "bus.jpg"),
        (faces.join("zidane.jpg"), "zidane.jpg"),
        (faces.join("2008_001322.jpg"), "2008_001322.jpg"),
        (persons.join("vtest_f0.png"), "vtest_f0.png"),
        (negatives.join("coffee.png"), "coffee.png"),
        (faces.join("messi5.jpg"), SCRIPT_NAME),
        (faces.join("camera.png"), QUOTE_NAME),
        (faces.join("t1.jpg"), NEWLINE_NAME),
    ] {
        let to = dir.join(name);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(&from, &to).unwrap();
    }
    fs::write(dir.join("broken.jpg"), b"this is not a jpeg").unwrap();
    Some(())
}

// ---------------------------------------------------------------------------------------------

/// The page of a real run in headless Chromium: loads without errors, shows every record once
/// with the run's figures, filters exactly, escapes hostile names, and exports decisions that
/// `veil review import` records on exactly the decided outputs.
#[test]
fn review_page_in_headless_chromium() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    if make_input(&input).is_none() {
        return;
    }
    let Some(chromedriver) = browser() else {
        return;
    };
    let out = t.path().join("out");
    // --report writes the page even when images failed (exit 1 for the corrupt file).
    let (code, _, err) = run(&[
        &"redact",
        &input,
        &out,
        &"--quiet",
        &"--detect",
        &"faces,persons",
        &"--report",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(out.join("report/index.html").is_file(), "{err}");
    // A low re-check threshold finds some leaks on these photos (exit 1 when it does).
    let (code, _, err) = run(&[
        &"check",
        &out,
        &"--detect",
        &"faces,persons",
        &"--threshold",
        &"0.2",
        &"--quiet",
    ]);
    assert!(code == 0 || code == 1, "{err}");
    let (code, stdout, err) = run(&[&"report", &out, &"--quiet"]);
    assert_eq!(code, 0, "{err}");
    let index = out.join("report/index.html");
    assert_eq!(stdout.trim(), index.display().to_string());

    let recs = provenance(&out);
    let run_summary: Value =
        serde_json::from_str(&fs::read_to_string(out.join("veil-run.json")).unwrap()).unwrap();
    let cats: BTreeMap<String, BTreeSet<&str>> = recs
        .iter()
        .map(|r| (r["path"].as_str().unwrap().to_string(), categories(r)))
        .collect();
    let with = |c: &str| -> BTreeSet<String> {
        cats.iter()
            .filter(|(_, s)| s.contains(c))
            .map(|(p, _)| p.clone())
            .collect()
    };
    assert_eq!(with("failed"), BTreeSet::from(["broken.jpg".to_string()]));
    for c in ["leak", "near", "noface"] {
        eprintln!("expected {c}: {:?}", with(c));
    }

    let downloads = t.path().join("downloads");
    fs::create_dir_all(&downloads).unwrap();
    let d = Driver::start(&chromedriver, &downloads);
    d.call("POST", "/url", Some(json!({ "url": file_url(&index) })));
    let load_ms = d.wait_for("return window.__veilRendered");
    eprintln!("first page rendered after {load_ms} ms");

    // Summary figures equal those of the records and the run summary.
    let shown = d.exec(
        "const o = {}; for (const e of document.querySelectorAll('[id^=sum-]')) o[e.id] = e.textContent; return o;",
        json!([]),
    );
    let expect_num = [
        ("sum-images", recs.len()),
        ("sum-redacted", count(&recs, |r| r["status"] == "redacted")),
        (
            "sum-no-detections",
            count(&recs, |r| r["status"] == "no_detections"),
        ),
        ("sum-failed", count(&recs, |r| r["status"] == "failed")),
        ("sum-faces", detections(&recs, "face", false)),
        ("sum-persons", detections(&recs, "person", false)),
        ("sum-heads", detections(&recs, "face", true)),
        ("sum-leaks", with("leak").len()),
        ("sum-near", with("near").len()),
        ("sum-noface", with("noface").len()),
        ("sum-unreadable", 0),
    ];
    for (id, n) in expect_num {
        assert_eq!(shown[id], n.to_string(), "{id}: {shown}");
    }
    assert_eq!(
        shown["sum-ips"],
        format!("{:.2}", run_summary["images_per_second"].as_f64().unwrap())
    );
    assert_eq!(shown["sum-params"], run_summary["params_blake3"]);
    let models_text = d.exec(
        "return document.getElementById('models').textContent",
        json!([]),
    );
    for m in run_summary["models"].as_array().unwrap() {
        assert!(
            models_text
                .as_str()
                .unwrap()
                .contains(m["blake3"].as_str().unwrap()),
            "{models_text}"
        );
    }
    let hist_total = d.exec(
        "return Array.from(document.querySelectorAll('#hist g')).reduce((a, g) => a + Number(g.getAttribute('data-count')), 0)",
        json!([]),
    );
    assert_eq!(
        hist_total,
        count(&recs, |r| r["status"] != "failed"),
        "histogram"
    );

    // Every record exactly once, over several pages, most urgent first.
    d.exec("window.veilSetPageSize(3)", json!([]));
    let all = d.all_card_paths();
    assert_eq!(all.len(), recs.len(), "{all:?}");
    assert_eq!(
        all.iter().cloned().collect::<BTreeSet<_>>(),
        cats.keys().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(all[0], "broken.jpg");
    let rank = |p: &String| {
        let c = &cats[p];
        ["failed", "unreadable", "leak", "near", "noface"]
            .iter()
            .position(|k| c.contains(k))
            .unwrap_or(5)
    };
    let ranks: Vec<usize> = all.iter().map(rank).collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "order {all:?}");

    // Each filter shows exactly its records.
    d.exec("window.veilSetPageSize(100)", json!([]));
    for (key, cat) in [
        ("failed", "failed"),
        ("unreadable", "unreadable"),
        ("leak", "leak"),
        ("near", "near"),
        ("noface", "noface"),
    ] {
        d.click(&d.find(&format!("#filters button[data-filter=\"{key}\"]")));
        let shown: BTreeSet<String> = d.all_card_paths().into_iter().collect();
        assert_eq!(shown, with(cat), "filter {key}");
    }
    d.click(&d.find("#filters button[data-filter=\"all\"]"));
    let thumbs = d.exec(
        "return document.querySelectorAll('.thumb img').length",
        json!([]),
    );
    assert_eq!(thumbs, recs.len() - 1, "a thumbnail per output");

    // Hostile names are text: no alert, no injected element, the name shown literally.
    let (status, v) = d.try_call("GET", "/alert/text", None);
    assert_eq!(status, 404, "an alert is open: {v}");
    let hostile = d.exec(
        "const paths = Array.from(document.querySelectorAll('.card .path')).map(e => e.textContent);
         return {script: paths.includes(arguments[0]), quote: paths.includes(arguments[1]),
                 newline: paths.includes(arguments[2]),
                 scripts: document.scripts.length, injected: document.querySelectorAll('img[src=x], .card script').length};",
        json!([SCRIPT_NAME, QUOTE_NAME, NEWLINE_NAME]),
    );
    assert_eq!(
        hostile,
        json!({"script": true, "quote": true, "newline": true, "scripts": 3, "injected": 0})
    );
    // The link of a card opens its full output (the name percent-encoded).
    let href = d.exec(
        "return Array.from(document.querySelectorAll('.card')).find(c => c.getAttribute('data-path') === arguments[0]).querySelector('.thumb a').href",
        json!([QUOTE_NAME]),
    );
    let href = href.as_str().unwrap();
    let target = href.strip_prefix("file://").unwrap();
    assert_eq!(
        percent_decode(target),
        out.join(QUOTE_NAME).to_str().unwrap().as_bytes(),
        "{href}"
    );

    // Decisions: one "needs fix" with a note, one "fine"; exported as JSON.
    let card_el = |path: &str, css: &str| {
        d.exec(
            "return Array.from(document.querySelectorAll('.card')).find(c => c.getAttribute('data-path') === arguments[0]).querySelector(arguments[1])",
            json!([path, css]),
        )
    };
    let note = "left ear <visible> & \"quoted\"";
    d.type_into(&d.find("#reviewer"), "tester");
    d.type_into(&card_el("zidane.jpg", ".note"), note);
    d.click(&card_el("zidane.jpg", ".dec-fix"));
    d.click(&card_el("astronaut.png", ".dec-fine"));
    d.click(&d.find("#filters button[data-filter=\"needs_fix\"]"));
    assert_eq!(d.all_card_paths(), ["zidane.jpg"]);
    d.click(&d.find("#filters button[data-filter=\"all\"]"));

    d.exec("window.scrollTo(0, 0)", json!([]));
    let shot = d.call("GET", "/screenshot", None);
    let png = base64_decode(shot.as_str().unwrap());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let shot_path = artifacts_dir().join("report.png");
    fs::write(&shot_path, &png).unwrap();
    eprintln!("screenshot: {}", shot_path.display());

    let exported = d.exec("return window.veilExportDecisions()", json!([]));
    let exported = exported.as_str().unwrap().to_string();
    let review: Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(review["format"], "veil-review");
    assert_eq!(review["version"], 1);
    assert_eq!(review["run"]["started_at"], run_summary["started_at"]);
    assert_eq!(review["run"]["params_blake3"], run_summary["params_blake3"]);
    let ds = review["decisions"].as_array().unwrap();
    assert_eq!(ds.len(), 2, "{exported}");
    let zid = recs.iter().find(|r| r["path"] == "zidane.jpg").unwrap();
    assert_eq!(ds[1]["path"], "zidane.jpg");
    assert_eq!(ds[1]["decision"], "needs_fix");
    assert_eq!(ds[1]["note"], note);
    assert_eq!(ds[1]["reviewer"], "tester");
    assert_eq!(ds[1]["output_blake3"], zid["output_blake3"]);
    assert_eq!(ds[0]["decision"], "fine");

    // The export button downloads the same decisions.
    d.click(&d.find("#export"));
    let t0 = Instant::now();
    let downloaded = loop {
        let found = fs::read_dir(&downloads)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "json"));
        if let Some(p) = found {
            break p;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no download in {}",
            downloads.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let file: Value = serde_json::from_str(&fs::read_to_string(&downloaded).unwrap()).unwrap();
    assert_eq!(file["decisions"], review["decisions"]);

    // Decisions survive a reload (kept in the browser until exported).
    d.call("POST", "/refresh", Some(json!({})));
    d.wait_for("return window.__veilRendered");
    assert_eq!(
        d.exec(
            "return document.getElementById('decided-count').textContent",
            json!([])
        ),
        "2"
    );

    // No console errors, no script errors, all along.
    let logs = d.call("POST", "/se/log", Some(json!({"type": "browser"})));
    let severe: Vec<&Value> = logs
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["level"] == "SEVERE")
        .collect();
    assert!(severe.is_empty(), "console errors: {severe:?}");
    assert_eq!(d.exec("return window.__veilErrors", json!([])), json!([]));

    // A click on the thumbnail's link shows the full output image.
    d.call("POST", "/url", Some(json!({ "url": href })));
    let w = d.wait_for("return document.images.length === 1 && document.images[0].complete && document.images[0].naturalWidth");
    let rec = recs.iter().find(|r| r["path"] == QUOTE_NAME).unwrap();
    assert_eq!(w, rec["dimensions"][0]);
    drop(d);

    // `veil review import` records the decisions on exactly those records.
    let review_file = t.path().join("review.json");
    fs::write(&review_file, &exported).unwrap();
    let before = fs::read_to_string(out.join("provenance.jsonl")).unwrap();
    let (code, _, err) = run(&[&"review", &"import", &out, &review_file]);
    assert_eq!(code, 0, "{err}");
    let after = fs::read_to_string(out.join("provenance.jsonl")).unwrap();
    let (bl, al): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    assert_eq!(bl.len(), al.len());
    for (b, a) in bl.iter().zip(&al) {
        let path = serde_json::from_str::<Value>(b).unwrap()["path"].clone();
        if path == "zidane.jpg" || path == "astronaut.png" {
            let r: Value = serde_json::from_str(a).unwrap();
            let want = if path == "zidane.jpg" {
                "needs_fix"
            } else {
                "fine"
            };
            assert_eq!(r["review"]["decision"], want, "{a}");
            assert!(r["review"]["imported_at"].is_string());
            if path == "zidane.jpg" {
                assert_eq!(r["review"]["note"], note);
                assert_eq!(r["review"]["reviewer"], "tester");
            }
        } else {
            assert_eq!(b, a, "a line without a decision changed");
        }
    }

    // A decision on another version of an output is stale, an unknown path is reported; neither
    // is applied (exit 1) and the records stay byte-identical.
    let mut stale = review.clone();
    stale["decisions"] = json!([
        {"path": "zidane.jpg", "output_blake3": "0".repeat(64), "decision": "fine", "decided_at": "2026-01-01T00:00:00Z"},
        {"path": "nobody.jpg", "output_blake3": "0".repeat(64), "decision": "fine", "decided_at": "2026-01-01T00:00:00Z"},
    ]);
    fs::write(&review_file, stale.to_string()).unwrap();
    let (code, _, err) = run(&[&"review", &"import", &out, &review_file]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("STALE zidane.jpg") && err.contains("UNKNOWN nobody.jpg"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(out.join("provenance.jsonl")).unwrap(),
        after
    );
    // A file that is not a review file is refused (exit 2).
    fs::write(
        &review_file,
        r#"{"format":"something-else","version":1,"decisions":[]}"#,
    )
    .unwrap();
    let (code, _, err) = run(&[&"review", &"import", &out, &review_file]);
    assert_eq!(code, 2, "{err}");

    // The page written again shows the recorded reviews.
    let (code, _, err) = run(&[&"report", &out, &"--quiet"]);
    assert_eq!(code, 0, "{err}");
    let data = fs::read_to_string(out.join("report/data.js")).unwrap();
    assert!(data.contains("\"r\":{\"d\":\"needs_fix\""), "{data}");
}

/// Without models or a browser: the page and its data request nothing from any host, hostile
/// names cannot break out of data.js, unreadable outputs are listed (exit 1), and a tree without
/// records is a usage error (exit 2).
#[test]
fn report_is_self_contained_and_escapes_names() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let names = [
        SCRIPT_NAME,
        "x<!--</script>y.png",
        NEWLINE_NAME,
        "a & b\u{2029}.png",
        "plain.png",
    ];
    let mut lines = String::new();
    for (i, name) in names.iter().enumerate() {
        let file = out.join(name);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        let img = image::RgbImage::from_pixel(300 + i as u32, 200, image::Rgb([200, 10, 10]));
        let mut bytes = std::io::Cursor::new(Vec::new());
        img.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
        let bytes = bytes.into_inner();
        fs::write(&file, &bytes).unwrap();
        let rec = json!({
            "schema": 1, "path": name, "status": "redacted",
            "source_blake3": "a".repeat(64), "source_size": 1,
            "output_blake3": blake3::hash(&bytes).to_hex().to_string(), "output_size": bytes.len(),
            "format": "png", "dimensions": [300 + i, 200], "orientation": 1,
            "detections": [{"box": {"x1": 10.0, "y1": 10.0, "x2": 60.0, "y2": 80.0}, "score": 0.9,
                            "class": "face", "model": "centerface"}],
            "metadata_removed": [], "metadata_kept": [], "models": [],
            "params_blake3": "b".repeat(64),
            "params": {"policy": {"face": {"threshold": 0.4, "redact": {"box_scale": 1.3, "shape": "ellipse"}}}},
            "policy_blake3": null, "tool_version": "0.1.0", "error_stage": null, "error": null,
        });
        lines.push_str(&rec.to_string());
        lines.push('\n');
    }
    fs::write(out.join("provenance.jsonl"), &lines).unwrap();
    let (code, stdout, err) = run(&[&"report", &out, &"--quiet"]);
    assert_eq!(code, 0, "{err}");
    let page = out.join("report");
    assert_eq!(stdout.trim(), page.join("index.html").display().to_string());
    let html = fs::read_to_string(page.join("index.html")).unwrap();
    let js = fs::read_to_string(page.join("data.js")).unwrap();
    for text in [&html, &js] {
        let lower = text.to_ascii_lowercase();
        assert!(
            !lower.contains("http://") && !lower.contains("https://"),
            "external reference"
        );
    }
    assert!(html.contains("Content-Security-Policy"));
    for bad in ["</script", "<!--", "<", ">", "&", "\u{2028}", "\u{2029}"] {
        assert!(!js.contains(bad), "{bad:?} unescaped in data.js");
    }
    assert!(js.contains("\\u003c/script\\u003e"));
    // The data parse back to the exact names.
    let data: Value = serde_json::from_str(
        js.strip_prefix("window.VEIL_REPORT = ")
            .unwrap()
            .strip_suffix(";\n")
            .unwrap(),
    )
    .unwrap();
    let got: BTreeSet<&str> = data["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["p"].as_str().unwrap())
        .collect();
    assert_eq!(got, names.iter().copied().collect());
    // Small JPEG thumbnails of the outputs.
    for item in data["items"].as_array().unwrap() {
        let thumb = page.join(format!("thumbs/{}.jpg", &item["o"].as_str().unwrap()[..32]));
        let bytes = fs::read(&thumb).unwrap();
        assert_eq!(&bytes[..2], b"\xff\xd8", "{}", thumb.display());
        let img = image::load_from_memory(&bytes).unwrap();
        assert!(img.width() <= 256 && img.height() <= 256);
        let px = img.to_rgb8().get_pixel(10, 10).0;
        assert!(px[0] > 170 && px[1] < 50, "{px:?}");
    }

    // An output removed after the run: its card says so, the page is still written, exit 1.
    fs::remove_file(out.join("plain.png")).unwrap();
    let (code, _, err) = run(&[&"report", &out, &"--quiet"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("UNREADABLE plain.png: the output file is missing"),
        "{err}"
    );

    // No records: usage error.
    let empty = t.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let (code, _, err) = run(&[&"report", &empty]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&[&"review", &"import", &empty, &t.path().join("none.json")]);
    assert_eq!(code, 2, "{err}");
}
