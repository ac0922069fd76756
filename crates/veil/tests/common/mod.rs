//! Helpers shared by the end-to-end tests: running the real binary, finding the shared test
//! data (skipping plainly when it is absent), and measuring images independently of veil's code.

#![allow(dead_code, clippy::print_stderr)]

pub mod archives;
pub mod smtp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{GrayImage, RgbImage};

/// The binary under test: the one cargo built, or `VEIL_TEST_BIN` when a compiled test runs on
/// another machine than the one it was built on (the GPU device, benches/gpu_device.sh).
pub fn veil() -> Command {
    match std::env::var_os("VEIL_TEST_BIN").filter(|v| !v.is_empty()) {
        Some(bin) => Command::new(bin),
        None => Command::new(env!("CARGO_BIN_EXE_veil")),
    }
}

/// Runs veil with `args`, returning (exit code, stdout, stderr).
pub fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
    let mut c = veil();
    for a in args {
        c.arg(a.as_ref());
    }
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run veil");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// `veil release build TREE --dataset DATASET --version VERSION --root ROOT`.
pub fn release_build(
    tree: &Path,
    dataset: &str,
    version: &str,
    root: &Path,
) -> (i32, String, String) {
    run(&[
        &"release",
        &"build",
        &tree,
        &"--dataset",
        &dataset,
        &"--version",
        &version,
        &"--root",
        &root,
    ])
}

/// Imports the shared YOLOX-Nano file under its built-in name (idempotent), or None to skip.
pub fn ensure_yolox() -> Option<PathBuf> {
    let file = shared("models/yolox_nano.onnx")?;
    let (code, _, err) = run(&[
        &"models",
        &"add",
        &"--family",
        &"yolox",
        &"--name",
        &"yolox-nano",
        &"--file",
        &file,
    ]);
    assert_eq!(code, 0, "{err}");
    Some(file)
}

/// `../shared` beside the project root (or `VEIL_SHARED_DIR`, for a compiled test carried to
/// another machine), or None (with a plain SKIPPED line) when absent.
pub fn shared(sub: &str) -> Option<PathBuf> {
    let root = match std::env::var_os("VEIL_SHARED_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    let p = root.join(sub);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} not found (shared test data exists only on developer and CI machines)",
            p.display()
        );
        None
    }
}

/// Copies every file of `src` (not recursive) into a new directory `dst`.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

/// Decodes an image with the `image` crate, applying EXIF orientation (displayed orientation).
pub fn load_upright(path: &Path) -> RgbImage {
    use image::ImageDecoder;
    let reader = image::ImageReader::open(path)
        .unwrap()
        .with_guessed_format()
        .unwrap();
    let mut dec = reader.into_decoder().unwrap();
    let o = dec.orientation().unwrap();
    let mut img = image::DynamicImage::from_decoder(dec).unwrap();
    img.apply_orientation(o);
    img.to_rgb8()
}

fn luma(img: &RgbImage) -> GrayImage {
    image::DynamicImage::ImageRgb8(img.clone()).to_luma8()
}

/// Variance of the 3x3 Laplacian of luma inside `[x1,y1,x2,y2]` (a classic sharpness measure,
/// independent of veil's own verification code). Uses the central 60% of the box.
pub fn laplacian_variance(img: &RgbImage, b: [f64; 4]) -> f64 {
    let g = luma(img);
    let (w, h) = (g.width() as i64, g.height() as i64);
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let (hw, hh) = ((b[2] - b[0]) * 0.3, (b[3] - b[1]) * 0.3);
    let x0 = ((cx - hw).floor() as i64).max(1);
    let x1 = ((cx + hw).ceil() as i64).min(w - 1);
    let y0 = ((cy - hh).floor() as i64).max(1);
    let y1 = ((cy + hh).ceil() as i64).min(h - 1);
    let mut vals = Vec::new();
    for y in y0..y1 {
        for x in x0..x1 {
            let p = |dx: i64, dy: i64| g.get_pixel((x + dx) as u32, (y + dy) as u32)[0] as f64;
            vals.push(p(-1, 0) + p(1, 0) + p(0, -1) + p(0, 1) - 4.0 * p(0, 0));
        }
    }
    if vals.is_empty() {
        return 0.0;
    }
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64
}

/// Labelled boxes of one file: (box, hard, ignore).
pub fn labels(file: &Path, name: &str) -> Vec<([f64; 4], bool, bool)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    // faces.json maps a name to a list; edge.json to an object with a "faces" list.
    let entry = &v[name];
    let list = if entry.is_object() {
        &entry["faces"]
    } else {
        entry
    };
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    let b = &l["box"];
                    (
                        [
                            b[0].as_f64().unwrap(),
                            b[1].as_f64().unwrap(),
                            b[2].as_f64().unwrap(),
                            b[3].as_f64().unwrap(),
                        ],
                        l["hard"].as_bool().unwrap_or(false),
                        l["ignore"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn provenance(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("provenance.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
