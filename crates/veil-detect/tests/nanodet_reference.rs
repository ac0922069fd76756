//! veil's own TF.js → ONNX conversion of NanoDet-g (fetched from npm by `veil models fetch`)
//! reproduces TensorFlow.js on real photos. The pinned numbers below are the top person cells of
//! `@tensorflow/tfjs@4.22.0` (CPU backend, in Node.js) running the package's `nanodet.json` +
//! `nanodet.bin` directly, on the same network inputs: the top-left 416 x 416 pixels of
//! scikit-image's `astronaut.png` (a sample veil fetches) and the shared golden
//! `yolox_input_bus_416.png`, each B,G,R and normalised with NanoDet's mean and std, no resize.
//! Each entry: (stride index, cell, person score, expected distances left/top/right/bottom in
//! strides, from the softmax of the 11 bins). A wrong operator mapping (layout, padding, groups,
//! resize mode) moves these far beyond the tolerances.

#![allow(clippy::print_stderr)]

use std::path::Path;

use image::RgbImage;
use veil_detect::nanodet::{normalise, NanoDet, STRIDES};
use veil_detect::yolox::{letterbox, paste_bgr_nchw};
use veil_detect::{provision, runtime, DeviceRequest, Manifest};

type Cell = (usize, usize, f32, [f32; 4]);

const ASTRONAUT: [Cell; 4] = [
    (2, 84, 0.797363, [5.94068, 6.07477, 4.93605, 6.55719]),
    (2, 97, 0.787344, [5.91127, 7.09815, 4.95217, 5.49857]),
    (2, 83, 0.773488, [4.93671, 6.06879, 5.99498, 6.56014]),
    (2, 71, 0.749859, [5.85896, 5.07504, 4.99026, 7.53764]),
];

const BUS_416: [Cell; 4] = [
    (1, 393, 0.771941, [2.20997, 5.98474, 2.26491, 6.38447]),
    (1, 419, 0.755037, [2.25948, 6.97598, 2.45700, 5.41782]),
    (1, 392, 0.730441, [1.18054, 5.97683, 3.32393, 6.35817]),
    (1, 394, 0.729175, [3.27955, 6.07199, 1.17297, 6.34560]),
];

fn check(model: &mut NanoDet, img: &RgbImage, want: &[Cell], label: &str) {
    let crop = image::imageops::crop_imm(img, 0, 0, 416, 416).to_image();
    let mut input = paste_bgr_nchw(crop.as_raw(), 416, 416, 416, 416);
    normalise(&mut input, &letterbox(416, 416, 416, 416));
    let floor = want.last().unwrap().2 - 0.01;
    let mut got = model.run_tensor(&input, floor).unwrap();
    got.sort_by(|a, b| b.1.total_cmp(&a.1));
    eprintln!("{label}: {} cells above {floor}", got.len());
    for (i, &(k, cell, score, dist)) in want.iter().enumerate() {
        let s = STRIDES[k] as f32;
        let side = (416 / STRIDES[k]) as usize;
        let (cx, cy) = (
            ((cell % side) as f32 + 0.5) * s,
            ((cell / side) as f32 + 0.5) * s,
        );
        let expect = [
            cx - dist[0] * s,
            cy - dist[1] * s,
            cx + dist[2] * s,
            cy + dist[3] * s,
        ];
        let (b, sc) = got[i];
        let g = [b.x1, b.y1, b.x2, b.y2];
        assert!(
            (sc - score).abs() < 1e-3,
            "{label} #{i}: score {sc} vs TF.js {score}"
        );
        for (a, e) in g.iter().zip(expect) {
            assert!(
                (a - e).abs() < 0.05,
                "{label} #{i}: box {g:?} vs TF.js {expect:?}"
            );
        }
    }
}

#[test]
fn converted_nanodet_matches_tensorflow_js_on_real_photos() {
    let manifest = Manifest::builtin().unwrap();
    let quiet = |_: &str| {};
    let spec = manifest.model("nanodet-g").unwrap();
    let path = provision::ensure_model(spec, &quiet).unwrap();
    let (env, info) = runtime::init(&manifest, DeviceRequest::Cpu, &quiet).unwrap();
    let bytes = runtime::read_verified_model(&path, &spec.blake3).unwrap();
    let (session, _) =
        runtime::create_session(env, info, &bytes, DeviceRequest::Cpu, 1, &quiet).unwrap();
    let mut model = NanoDet::new(session, "nanodet-g").unwrap();

    let t = tempfile::tempdir().unwrap();
    provision::ensure_samples(&manifest, t.path(), &quiet).unwrap();
    let astronaut = image::open(t.path().join("astronaut.png"))
        .unwrap()
        .to_rgb8();
    check(&mut model, &astronaut, &ASTRONAUT, "astronaut.png");

    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/golden/yolox_input_bus_416.png");
    if !golden.exists() {
        eprintln!("SKIPPED (bus): {} not found", golden.display());
        return;
    }
    let bus = image::open(&golden).unwrap().to_rgb8();
    check(&mut model, &bus, &BUS_416, "yolox_input_bus_416.png");
}
