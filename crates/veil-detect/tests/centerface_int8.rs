//! veil's INT8 CenterFace (`centerface-int8`, built by `onnx_quant`): the build is a pure
//! function of the float model and the pinned activation table, its bytes are the pinned ones,
//! and on real photos it finds what the float model finds. Runs the real models on the real
//! ONNX Runtime from veil's cache (`veil models fetch` provisions them).

#![allow(clippy::print_stderr)]

use std::path::Path;

use veil_core::{nms, BBox, Detection, ObjectClass};
use veil_detect::onnx_quant::{quantize_centerface, SCALES};
use veil_detect::{hwc_to_nchw, provision, runtime, CenterFace, DeviceRequest, Manifest};

fn float_model_bytes(manifest: &Manifest) -> Vec<u8> {
    let spec = manifest.model("centerface").unwrap();
    let path = provision::ensure_model(spec, &|_: &str| {}).unwrap();
    runtime::read_verified_model(&path, &spec.blake3).unwrap()
}

#[test]
fn the_int8_model_is_built_to_its_pinned_bytes_from_the_float_model_and_table() {
    let manifest = Manifest::builtin().unwrap();
    let float = float_model_bytes(&manifest);
    let a = quantize_centerface(&float, SCALES).unwrap();
    let b = quantize_centerface(&float, SCALES).unwrap();
    assert_eq!(a, b, "two builds differ");
    let pin = &manifest.model("centerface-int8").unwrap().blake3;
    assert_eq!(&blake3::hash(&a).to_hex().to_string(), pin);

    // The table decides the bytes: another scale gives another model.
    let changed = SCALES.replacen(" 0.", " 0.00", 1);
    assert_ne!(quantize_centerface(&float, &changed).unwrap(), a);
    // A table that leaves an activation out, or names one the model does not quantise, is
    // refused by name.
    let line = SCALES
        .lines()
        .find(|l| !l.starts_with('#') && !l.starts_with("float"))
        .unwrap();
    let tensor = line.split(' ').next().unwrap();
    let missing = SCALES.replace(&format!("{line}\n"), "");
    let e = quantize_centerface(&float, &missing)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("no scale for activation {tensor}")),
        "{e}"
    );
    let extra = format!("{SCALES}not-a-tensor 0.5 0\n");
    let e = quantize_centerface(&float, &extra).unwrap_err().to_string();
    assert!(e.contains("not-a-tensor"), "{e}");
    // Only CenterFace's graph is accepted.
    assert!(quantize_centerface(b"\x0a\x02hi", SCALES).is_err());
}

fn detect(model: &mut CenterFace, input: &ndarray::Array4<f32>, threshold: f32) -> Vec<Detection> {
    let raw = model.run_tensor(input, threshold).unwrap();
    let dets = raw
        .into_iter()
        .map(|(bbox, score)| Detection {
            bbox,
            score,
            class: ObjectClass::Face,
            model: "centerface".into(),
        })
        .collect();
    nms(dets, 0.3)
}

fn best_iou(b: &BBox, among: &[Detection]) -> f32 {
    among.iter().map(|d| d.bbox.iou(b)).fold(0.0, f32::max)
}

/// On the golden network inputs (real photos), every face either model scores clearly above the
/// threshold is found by the other one at the same place.
#[test]
fn int8_and_float_find_the_same_faces_on_real_photos() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden");
    if !golden.exists() {
        eprintln!(
            "SKIPPED: {} not found (shared test data exists only on developer and CI machines)",
            golden.display()
        );
        return;
    }
    let manifest = Manifest::builtin().unwrap();
    let quiet = |_: &str| {};
    let (env, info) = runtime::init(&manifest, DeviceRequest::Cpu, &quiet).unwrap();
    let mut models = ["centerface", "centerface-int8"].map(|name| {
        let spec = manifest.model(name).unwrap();
        let path = provision::ensure_model(spec, &quiet).unwrap();
        let bytes = runtime::read_verified_model(&path, &spec.blake3).unwrap();
        let (session, _) =
            runtime::create_session(env, info, &bytes, DeviceRequest::Cpu, 1, &quiet).unwrap();
        CenterFace::new(session, name)
    });
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(golden.join("centerface_reference.json")).unwrap(),
    )
    .unwrap();
    let mut clear_faces = 0;
    for (name, case) in reference.as_object().unwrap() {
        let img = image::open(golden.join(case["network_input"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        let (w, h) = img.dimensions();
        let input = hwc_to_nchw(img.as_raw(), w as usize, h as usize);
        let threshold = case["threshold"].as_f64().unwrap() as f32;
        let [float, int8] = [0, 1].map(|i| detect(&mut models[i], &input, threshold));
        for (a, b, which) in [(&float, &int8, "float"), (&int8, &float, "int8")] {
            for d in a.iter().filter(|d| d.score >= threshold + 0.1) {
                clear_faces += 1;
                let iou = best_iou(&d.bbox, b);
                assert!(
                    iou >= 0.5,
                    "{name}: {which} finds {:?} ({:.2}), the other model not (best IoU {iou:.2})",
                    d.bbox,
                    d.score
                );
            }
        }
    }
    assert!(clear_faces >= 10, "too few faces compared: {clear_faces}");
}
