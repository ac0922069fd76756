//! CUDA gives the CPU's answers: `veil redact --device cuda` at `--batch 1` and `--batch 8` on
//! the shared face and person photos records the same detections as `--device cpu` (boxes within
//! 1 px, scores within 1e-3), and its outputs pass `veil check`.
//!
//! Runs where `veil doctor --device cuda` finds a working CUDA provider, and prints SKIPPED
//! otherwise (CI has no GPU). `VEIL_REQUIRE_CUDA=1` turns the skip into a failure: the device
//! run (benches/gpu_device.sh) sets it, so a broken provider cannot pass as "no GPU".
//! `VEIL_TEST_GPU_DEVICE=cpu` lets the CPU stand in for the GPU, to try the test itself on a
//! machine without one before spending device time.

#![allow(clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

/// Most a box coordinate may move between devices, in pixels.
const BOX_TOLERANCE: f64 = 1.0;
/// Most a score may move between devices.
const SCORE_TOLERANCE: f64 = 1e-3;

#[derive(Debug, Clone)]
struct Det {
    class: String,
    b: [f64; 4],
    score: f64,
}

fn detections(out: &Path) -> BTreeMap<String, Vec<Det>> {
    provenance(out)
        .into_iter()
        .map(|r| {
            assert_ne!(r["status"], "failed", "{r}");
            let dets = r["detections"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    let b = &d["box"];
                    Det {
                        class: d["class"].as_str().unwrap().to_string(),
                        b: ["x1", "y1", "x2", "y2"].map(|k| b[k].as_f64().unwrap()),
                        score: d["score"].as_f64().unwrap(),
                    }
                })
                .collect();
            (r["path"].as_str().unwrap().to_string(), dets)
        })
        .collect()
}

fn max_shift(a: &Det, b: &Det) -> f64 {
    (0..4).map(|i| (a.b[i] - b.b[i]).abs()).fold(0.0, f64::max)
}

/// Pairs each detection of `cpu` with the nearest of `gpu` of its class, and lists every
/// difference beyond the tolerances. A detection on one side only is tolerated (and listed) when
/// its score is within the score tolerance of its class's threshold: a 1e-3 move may cross it.
fn differences(
    cpu: &BTreeMap<String, Vec<Det>>,
    gpu: &BTreeMap<String, Vec<Det>>,
    thresholds: &[(&str, f64)],
) -> (Vec<String>, Vec<String>) {
    let (mut bad, mut borderline) = (Vec::new(), Vec::new());
    let near_threshold = |d: &Det| {
        thresholds
            .iter()
            .any(|(c, t)| *c == d.class && (d.score - t).abs() <= SCORE_TOLERANCE)
    };
    assert_eq!(
        cpu.keys().collect::<Vec<_>>(),
        gpu.keys().collect::<Vec<_>>(),
        "the same images are recorded"
    );
    for (path, c) in cpu {
        let g = &gpu[path];
        let mut used = vec![false; g.len()];
        for d in c {
            let best = g
                .iter()
                .enumerate()
                .filter(|(i, e)| !used[*i] && e.class == d.class)
                .min_by(|(_, x), (_, y)| max_shift(d, x).total_cmp(&max_shift(d, y)));
            match best {
                Some((i, e)) if max_shift(d, e) <= BOX_TOLERANCE * 4.0 => {
                    used[i] = true;
                    let (shift, ds) = (max_shift(d, e), (d.score - e.score).abs());
                    if shift > BOX_TOLERANCE || ds > SCORE_TOLERANCE {
                        bad.push(format!(
                            "{path}: {} {:?} score {:.5} on CPU vs {:?} score {:.5} (box moved {shift:.2} px, score {ds:.5})",
                            d.class, d.b, d.score, e.b, e.score
                        ));
                    }
                }
                _ => {
                    let line = format!(
                        "{path}: {} {:?} score {:.5} found on CPU only",
                        d.class, d.b, d.score
                    );
                    if near_threshold(d) {
                        borderline.push(line)
                    } else {
                        bad.push(line)
                    }
                }
            }
        }
        for (i, e) in g.iter().enumerate().filter(|(i, _)| !used[*i]) {
            let line = format!(
                "{path}: {} {:?} score {:.5} found on CUDA only (#{i})",
                e.class, e.b, e.score
            );
            if near_threshold(e) {
                borderline.push(line)
            } else {
                bad.push(line)
            }
        }
    }
    (bad, borderline)
}

/// The device under test: `cuda`, or what `VEIL_TEST_GPU_DEVICE` names.
fn gpu() -> String {
    std::env::var("VEIL_TEST_GPU_DEVICE").unwrap_or_else(|_| "cuda".into())
}

/// Whether CUDA works here; `None` after printing why not (or panicking when it is required).
fn cuda_or_skip() -> Option<()> {
    let gpu = gpu();
    let (code, out, err) = run(&[&"doctor", &"--device", &gpu]);
    if code == 0 && out.contains(&format!("loads on {gpu}")) {
        return Some(());
    }
    let why = format!("veil doctor --device cuda exited {code}:\n{out}{err}");
    if std::env::var_os("VEIL_REQUIRE_CUDA").is_some_and(|v| v == "1") {
        panic!("VEIL_REQUIRE_CUDA=1 but CUDA is not usable: {why}");
    }
    let last = |s: &str| {
        s.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::to_string)
    };
    eprintln!(
        "SKIPPED: no usable CUDA here ({})",
        last(&err).or_else(|| last(&out)).unwrap_or_default()
    );
    None
}

#[test]
fn cuda_gives_the_cpu_detections_at_batch_1_and_8_and_its_outputs_pass_check() {
    let Some(faces) = shared("images/faces") else {
        return;
    };
    let Some(()) = cuda_or_skip() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    copy_dir(&faces, &input);
    let mut detect = "faces".to_string();
    if let Some(persons) = shared("images/persons") {
        copy_dir(&persons, &input.join("persons"));
        detect = "faces,persons".into();
    }
    let redact = |name: &str, device: &str, batch: &str| {
        let out = t.path().join(name);
        let (code, _, err) = run(&[
            &"redact",
            &input,
            &out,
            &"--detect",
            &detect,
            &"--device",
            &device,
            // The same model on both devices (`auto` would be INT8 on the CPU only).
            &"--face-model",
            &"centerface",
            &"--batch",
            &batch,
            &"--jobs",
            &"4",
            &"-q",
        ]);
        assert_eq!(code, 0, "{name}: {err}");
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("veil-run.json")).unwrap()).unwrap();
        assert_eq!(
            summary["device"].as_str().unwrap().split(':').next(),
            Some(device),
            "{name} ran on {}",
            summary["device"]
        );
        out
    };
    let cpu_out = redact("cpu", "cpu", "1");
    let cpu = detections(&cpu_out);
    let total: usize = cpu.values().map(Vec::len).sum();
    assert!(total > 50, "the photos hold many faces: {total}");
    // `veil check` of the CPU's outputs, on the CPU: the CUDA outputs must leak no more.
    let check = |out: &Path, device: &str| {
        let (code, stdout, err) = run(&[
            &"check",
            &out,
            &"--detect",
            &detect,
            &"--device",
            &device,
            &"--face-model",
            &"centerface",
        ]);
        assert!(
            code == 0 || code == 1,
            "veil check {}: {stdout}{err}",
            out.display()
        );
        leaks(&format!("{stdout}{err}"))
    };
    let cpu_leaks = check(&cpu_out, "cpu");
    for l in &cpu_leaks {
        eprintln!("already on the CPU: {l}");
    }
    assert!(
        !cpu_leaks
            .iter()
            .any(|l| l.contains(": face ") || l.starts_with("UNREADABLE")),
        "no face leaks on the CPU: {cpu_leaks:?}"
    );
    let thresholds = [("face", 0.4), ("person", 0.3)];
    let mut failures = Vec::new();
    let gpu = gpu();
    for batch in ["1", "8"] {
        let out = redact(&format!("cuda-b{batch}"), &gpu, batch);
        let (bad, borderline) = differences(&cpu, &detections(&out), &thresholds);
        eprintln!(
            "--batch {batch}: {total} CPU detections; {} differences beyond 1 px / 1e-3, {} at a threshold",
            bad.len(),
            borderline.len()
        );
        for l in bad.iter().chain(&borderline) {
            eprintln!("  {l}");
        }
        failures.extend(bad.into_iter().map(|l| format!("--batch {batch}: {l}")));
        let gpu_leaks = check(&out, &gpu);
        let key = |l: &String| l.split(" at [").next().unwrap_or(l).to_string();
        let known: Vec<String> = cpu_leaks.iter().map(key).collect();
        for l in gpu_leaks.iter().filter(|l| !known.contains(&key(l))) {
            failures.push(format!(
                "--batch {batch}: veil check: LEAK {l} (not on the CPU)"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "CUDA differs from the CPU:\n{}",
        failures.join("\n")
    );
}

/// The `LEAK` and `UNREADABLE` lines of `veil check`'s output.
fn leaks(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("LEAK ") || l.starts_with("UNREADABLE "))
        .map(str::to_string)
        .collect()
}

#[test]
fn differences_are_found_beyond_the_tolerances_and_tolerated_at_a_threshold() {
    let det = |class: &str, x: f64, score: f64| Det {
        class: class.into(),
        b: [x, 10.0, x + 20.0, 30.0],
        score,
    };
    let one = |dets: Vec<Det>| BTreeMap::from([("a.jpg".to_string(), dets)]);
    let th = [("face", 0.4)];
    let cpu = one(vec![det("face", 0.0, 0.9), det("face", 100.0, 0.4004)]);
    // Within tolerance; the borderline face missing on CUDA is tolerated.
    let (bad, border) = differences(&cpu, &one(vec![det("face", 0.8, 0.9005)]), &th);
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(border.len(), 1);
    // A box 1.5 px away, a score 0.002 away, a confident face missing: all reported.
    let (bad, _) = differences(&cpu, &one(vec![det("face", 1.5, 0.9)]), &th);
    assert_eq!(bad.len(), 1, "{bad:?}");
    let (bad, _) = differences(&cpu, &one(vec![det("face", 0.0, 0.902)]), &th);
    assert_eq!(bad.len(), 1, "{bad:?}");
    let (bad, _) = differences(&cpu, &one(vec![det("face", 100.0, 0.4004)]), &th);
    assert_eq!(bad.len(), 1, "{bad:?}");
    let extra = one(vec![det("face", 0.0, 0.9), det("face", 300.0, 0.8)]);
    let (bad, _) = differences(&cpu, &extra, &th);
    assert!(bad.iter().any(|l| l.contains("CUDA only")), "{bad:?}");
}
