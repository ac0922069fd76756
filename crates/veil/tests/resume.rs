//! Resume and idempotence: a run killed with SIGKILL at several points and then re-run ends with
//! exactly the outputs and records of an uninterrupted run; changed parameters redo the work.

#![allow(clippy::print_stderr)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// A few hundred small photos cut from the sample photos (JPEG and PNG, in two folders).
fn many_images(t: &Path, n: usize) -> PathBuf {
    let sample = t.join("sample");
    assert_eq!(run(&[&"sample", &sample]).0, 0);
    let mut sources: Vec<PathBuf> = fs::read_dir(&sample)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    sources.sort();
    let photos: Vec<image::RgbImage> = sources.iter().map(|p| load_upright(p)).collect();
    let input = t.join("in");
    for i in 0..n {
        let img = &photos[i % photos.len()];
        let (w, h) = (img.width() * 2 / 3, img.height() * 2 / 3);
        let (x, y) = (
            (i as u32 * 7) % (img.width() - w),
            (i as u32 * 5) % (img.height() - h),
        );
        let crop = image::imageops::crop_imm(img, x, y, w, h).to_image();
        let small = image::imageops::resize(
            &crop,
            240,
            240 * h / w,
            image::imageops::FilterType::Triangle,
        );
        let dir = input.join(if i % 2 == 0 { "a" } else { "b" });
        fs::create_dir_all(&dir).unwrap();
        if i % 5 == 0 {
            small.save(dir.join(format!("img_{i:03}.png"))).unwrap();
        } else {
            small.save(dir.join(format!("img_{i:03}.jpg"))).unwrap();
        }
    }
    input
}

/// Every file under `dir` except the run summary, by relative path.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                if rel != "veil-run.json" {
                    out.push((rel, fs::read(&p).unwrap()));
                }
            }
        }
    }
    out.sort();
    out
}

fn lines(p: &Path) -> usize {
    fs::read(p)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

#[test]
fn killed_runs_resume_to_the_same_outputs_and_records() {
    let t = tempfile::tempdir().unwrap();
    let n = 240;
    let input = many_images(t.path(), n);
    let reference = t.path().join("reference");
    let (code, _, err) = run(&[&"redact", &input, &reference, &"-q", &"--jobs", &"2"]);
    assert_eq!(code, 0, "{err}");
    let expected = tree(&reference);
    assert_eq!(lines(&reference.join("provenance.jsonl")), n);

    let out = t.path().join("out");
    let records = out.join("provenance.jsonl");
    // Kill during start-up, then after about 30, 100 and 170 finished images.
    for (i, target) in [0usize, 30, 100, 170].into_iter().enumerate() {
        let mut child = veil()
            .args(["redact".as_ref(), input.as_os_str(), out.as_os_str()])
            .args(["-q", "--jobs", "2"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if (target == 0 && t0.elapsed() > Duration::from_millis(150))
                || (target > 0 && lines(&records) >= target)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        eprintln!("kill {i}: {} records on disk", lines(&records));
    }
    let (code, _, err) = run(&[&"redact", &input, &out, &"--jobs", &"2"]);
    assert_eq!(code, 0, "{err}");
    let kept: usize = err
        .split("resuming: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resume notice: {err}"));
    assert!(
        kept >= 160,
        "the work of the killed runs was not kept: {err}"
    );
    let got = tree(&out);
    assert_eq!(
        got.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        expected.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        "file lists differ (partial files left?)"
    );
    for ((p, a), (_, b)) in got.iter().zip(&expected) {
        assert!(a == b, "{p} differs from the uninterrupted run");
    }

    // Nothing left to do: a re-run keeps every record and writes nothing new.
    let (code, _, err) = run(&[&"redact", &input, &out, &"--jobs", &"2"]);
    assert_eq!(code, 0);
    assert!(
        err.contains(&format!(
            "resuming: {n} images already done and unchanged, 0 redone"
        )),
        "{err}"
    );
    // A changed source and a changed output are redone, and the report says why.
    let victim = input.join("a/img_002.jpg");
    let img = load_upright(&victim);
    image::imageops::flip_horizontal(&img)
        .save(&victim)
        .unwrap();
    fs::write(out.join("b/img_003.jpg"), b"tampered").unwrap();
    let (code, _, err) = run(&[&"redact", &input, &out, &"--jobs", &"2"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2 redone"), "{err}");
    assert!(
        err.contains("1 source changed") && err.contains("1 output changed"),
        "{err}"
    );
    assert_eq!(
        fs::read(out.join("b/img_003.jpg")).unwrap(),
        fs::read(reference.join("b/img_003.jpg")).unwrap()
    );
    // Changing a parameter invalidates every record.
    let (code, _, err) = run(&[
        &"redact",
        &input,
        &out,
        &"--jobs",
        &"2",
        &"--mode",
        &"pixelate",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("{n} parameters changed")), "{err}");
}
