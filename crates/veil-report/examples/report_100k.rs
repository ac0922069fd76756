//! The review page of a large run: synthesises an output tree of `--records` records (default
//! 100 000) whose files are hard links to `--distinct` generated JPEG outputs (default 1 000, of
//! `--size` WxH, default 1024x768), so every record has a real output file and each distinct
//! content gets one thumbnail; then times `write_report` cold (every thumbnail made) and warm
//! (every thumbnail reused), prints the size of `data.js`, and, with `--chromium`, the time until
//! the first page is rendered in headless Chromium (`data-rendered-ms`, performance.now() at the
//! end of the first render; median of 3 loads) plus the wall time of each Chromium run.
//!
//! ```sh
//! cargo run --release -p veil-report --example report_100k -- --chromium
//! cargo run --release -p veil-report --example report_100k -- --records 10000 --distinct 10000
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use veil_core::{BBox, Detection, FailureStage, ImageStatus, ObjectClass};
use veil_ledger::{LeakCheck, ModelRef, ProvenanceRecord, RunSummary, PROVENANCE_SCHEMA};
use veil_report::{write_report, ReportOptions};

struct Args {
    records: usize,
    distinct: usize,
    size: (u32, u32),
    dir: Option<PathBuf>,
    chromium: bool,
}

fn args() -> Args {
    let mut a = Args {
        records: 100_000,
        distinct: 1_000,
        size: (1024, 768),
        dir: None,
        chromium: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--records" => a.records = v().parse().expect("--records N"),
            "--distinct" => a.distinct = v().parse().expect("--distinct N"),
            "--size" => {
                let s = v();
                let (w, h) = s.split_once('x').expect("--size WxH");
                a.size = (w.parse().expect("width"), h.parse().expect("height"));
            }
            "--dir" => a.dir = Some(PathBuf::from(v())),
            "--chromium" => a.chromium = true,
            other => panic!("unknown argument {other}"),
        }
    }
    a.distinct = a.distinct.clamp(1, a.records.max(1));
    a
}

/// xorshift64*: deterministic data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A photo-like JPEG (gradients and noise, so it compresses like a photo, not like a flat fill).
fn photo(seed: u64, w: u32, h: u32) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let (a, b, c) = (rng.unit() * 255.0, rng.unit() * 255.0, rng.unit() * 255.0);
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let n = (rng.next() & 31) as f32;
            let fx = x as f32 / w as f32;
            let fy = y as f32 / h as f32;
            px.push((a * fx + n) as u8);
            px.push((b * fy + n) as u8);
            px.push((c * (1.0 - fx * fy) + n) as u8);
        }
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&px, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
        .expect("encode");
    out
}

fn det(rng: &mut Rng, class: ObjectClass, w: u32, h: u32, model: &str) -> Detection {
    let x = rng.unit() * (w as f32 - 80.0);
    let y = rng.unit() * (h as f32 - 100.0);
    Detection {
        bbox: BBox::new(
            x,
            y,
            x + 40.0 + rng.unit() * 40.0,
            y + 50.0 + rng.unit() * 50.0,
        )
        .rounded(),
        score: ((0.4 + rng.unit() * 0.6) * 10_000.0).round() / 10_000.0,
        class,
        model: model.into(),
    }
}

fn synthesise(root: &Path, a: &Args) -> usize {
    let (w, h) = a.size;
    let t0 = Instant::now();
    let src = root.join("distinct");
    fs::create_dir_all(&src).unwrap();
    let contents: Vec<(String, u64)> = (0..a.distinct)
        .into_par_iter()
        .map(|k| {
            let bytes = photo(k as u64 + 1, w, h);
            fs::write(src.join(format!("{k}.jpg")), &bytes).unwrap();
            (
                blake3::hash(&bytes).to_hex().to_string(),
                bytes.len() as u64,
            )
        })
        .collect();
    eprintln!(
        "generated {} distinct {w}x{h} outputs in {:.1} s",
        a.distinct,
        t0.elapsed().as_secs_f64()
    );
    let t0 = Instant::now();
    let params = serde_json::json!({"policy": {
        "face": {"threshold": 0.4, "redact": {"box_scale": 1.3, "shape": "ellipse"}},
        "person": {"threshold": 0.3, "redact": {"box_scale": 1.0, "shape": "box"}},
    }});
    let models = vec![ModelRef {
        name: "centerface".into(),
        family: "centerface".into(),
        blake3: "0".repeat(64),
    }];
    for d in 0..100 {
        fs::create_dir_all(root.join(format!("set{d:03}"))).unwrap();
    }
    let mut rng = Rng(42);
    let mut lines = String::with_capacity(a.records * 1400);
    let mut failed = 0;
    for i in 0..a.records {
        let k = i % a.distinct;
        let path = format!("set{:03}/img{i:06}.jpg", i % 100);
        let fail = rng.next() % 100 < 1;
        let mut detections = Vec::new();
        let mut check = None;
        if !fail {
            let dst = root.join(&path);
            fs::hard_link(src.join(format!("{k}.jpg")), &dst).unwrap();
            for _ in 0..rng.next() % 5 {
                detections.push(det(&mut rng, ObjectClass::Face, w, h, "centerface"));
            }
            if rng.next() % 4 < 1 {
                detections.push(det(&mut rng, ObjectClass::Person, w, h, "yolox-nano"));
            }
            if rng.next() % 200 < 1 {
                check = Some(LeakCheck {
                    threshold: 0.5,
                    models: models.clone(),
                    leaks: vec![det(&mut rng, ObjectClass::Face, w, h, "centerface")],
                    inside: vec![],
                    changed: None,
                });
            }
        } else {
            failed += 1;
        }
        let rec = ProvenanceRecord {
            schema: PROVENANCE_SCHEMA,
            path,
            status: match (fail, detections.is_empty()) {
                (true, _) => ImageStatus::Failed,
                (false, true) => ImageStatus::NoDetections,
                (false, false) => ImageStatus::Redacted,
            },
            source_blake3: Some("1".repeat(64)),
            source_size: Some(1),
            output_blake3: (!fail).then(|| contents[k].0.clone()),
            output_size: (!fail).then_some(contents[k].1),
            source_phash: None,
            output_phash: None,
            format: Some("jpeg".into()),
            dimensions: (!fail).then_some([w, h]),
            orientation: Some(1),
            detections,
            metadata_removed: vec!["exif".into()],
            metadata_kept: vec![],
            models: models.clone(),
            params_blake3: "2".repeat(64),
            params: params.clone(),
            policy_blake3: None,
            tool_version: veil_core::TOOL_VERSION.into(),
            check,
            error_stage: fail.then_some(FailureStage::Decode),
            error: fail.then(|| "not a supported image".to_string()),
            review: None,
            archive: None,
        };
        lines.push_str(&serde_json::to_string(&rec).unwrap());
        lines.push('\n');
    }
    fs::write(root.join("provenance.jsonl"), &lines).unwrap();
    let summary = RunSummary {
        tool_version: veil_core::TOOL_VERSION.into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        finished_at: "2026-01-01T01:00:00Z".into(),
        input: "in".into(),
        output: root.display().to_string(),
        device: "cpu".into(),
        workers: 16,
        images: a.records as u64,
        redacted: 0,
        no_detections: 0,
        failed,
        detections: 0,
        other_files: vec![],
        copied_files: vec![],
        skipped_links: vec![],
        seconds: 3600.0,
        images_per_second: a.records as f64 / 3600.0,
        models,
        params_blake3: "2".repeat(64),
        stage_seconds: Default::default(),
    };
    fs::write(
        root.join("veil-run.json"),
        serde_json::to_string_pretty(&summary).unwrap(),
    )
    .unwrap();
    eprintln!(
        "wrote {} records ({:.1} MB) and their output links in {:.1} s",
        a.records,
        lines.len() as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    lines.len()
}

/// CPU seconds (user + system, all threads) of this process so far, from /proc (Linux; 0
/// elsewhere). Wall times depend on what else runs on the machine; CPU time much less.
fn cpu_seconds() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Loads the page in headless Chromium (`--dump-dom` returns after the load event); returns
/// (first render in ms after navigation start, wall seconds of the whole Chromium run).
fn chromium_load(chromium: &Path, index: &Path) -> Option<(f64, f64)> {
    let t0 = Instant::now();
    let out = std::process::Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
        ])
        .arg(format!("file://{}", index.display()))
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let wall = t0.elapsed().as_secs_f64();
    let dom = String::from_utf8_lossy(&out.stdout);
    let at = dom.find("data-rendered-ms=\"")? + "data-rendered-ms=\"".len();
    let ms: f64 = dom[at..].split('"').next()?.parse().ok()?;
    Some((ms, wall))
}

fn main() {
    let a = args();
    let tmp;
    let root = match &a.dir {
        Some(d) => {
            fs::create_dir_all(d).unwrap();
            d.clone()
        }
        None => {
            tmp = std::env::temp_dir().join(format!("veil-report-bench-{}", std::process::id()));
            tmp.clone()
        }
    };
    let out = root.join("out");
    if out.exists() {
        fs::remove_dir_all(&out).unwrap();
    }
    fs::create_dir_all(&out).unwrap();
    let records_bytes = synthesise(&out, &a);

    let opts = ReportOptions::default();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let cold = write_report(&out, &opts, &|_| {}).expect("report");
    let (cold_s, cold_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let warm = write_report(&out, &opts, &|_| {}).expect("report");
    let (warm_s, warm_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    let thumbs_bytes: u64 = fs::read_dir(cold.dir.join("thumbs"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "records: {} ({:.1} MB of provenance.jsonl), distinct outputs {} of {}x{}, threads {}",
        a.records,
        records_bytes as f64 / 1e6,
        a.distinct,
        a.size.0,
        a.size.1,
        rayon::current_num_threads()
    );
    println!(
        "cold write_report: {cold_s:.2} s wall, {cold_cpu:.1} s CPU ({} thumbnails made; {:.1} ms CPU per thumbnail beyond the warm run; thumbnails {:.1} MB in all)",
        cold.thumbnails_made,
        1000.0 * (cold_cpu - warm_cpu) / cold.thumbnails_made.max(1) as f64,
        thumbs_bytes as f64 / 1e6
    );
    println!(
        "warm write_report: {warm_s:.2} s wall, {warm_cpu:.1} s CPU ({} thumbnails reused)",
        warm.thumbnails_reused
    );
    println!(
        "data.js: {:.1} MB ({:.0} bytes per record); categories: {} failed, {} leaks, {} near threshold, {} persons without face",
        warm.data_bytes as f64 / 1e6,
        warm.data_bytes as f64 / a.records as f64,
        warm.counts.failed,
        warm.counts.leak_images,
        warm.counts.near_threshold,
        warm.counts.persons_without_face
    );
    if a.chromium {
        match find_on_path("chromium").or_else(|| find_on_path("chromium-browser")) {
            None => println!("chromium: not installed; page load not measured"),
            Some(c) => {
                let mut runs: Vec<(f64, f64)> = (0..3)
                    .filter_map(|_| chromium_load(&c, &warm.index))
                    .collect();
                runs.sort_by(|x, y| x.0.total_cmp(&y.0));
                match runs.get(runs.len() / 2) {
                    Some((ms, wall)) => println!(
                        "chromium: first page ({} cards) rendered {ms:.0} ms after navigation start (median of {}); whole headless run {wall:.1} s",
                        opts.page_size.min(a.records),
                        runs.len()
                    ),
                    None => println!("chromium: the page did not report a render time"),
                }
            }
        }
    }
    if a.dir.is_none() {
        let _ = fs::remove_dir_all(&root);
    }
}
