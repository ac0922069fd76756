//! The CenterFace decoder, fed the exact network inputs in `../shared/golden/`, reproduces the
//! reference implementation's detections (boxes within a pixel, scores within 1e-3). Runs the real
//! model on the real ONNX Runtime from veil's cache (`veil models fetch` provisions both).

#![allow(clippy::print_stderr)]

use std::path::Path;

use veil_core::{nms, BBox, Detection, ObjectClass};
use veil_detect::{hwc_to_nchw, provision, runtime, CenterFace, DeviceRequest, Manifest};

#[test]
fn centerface_reproduces_the_reference_detections_on_the_golden_inputs() {
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
    let spec = manifest.model("centerface").unwrap();
    let path = provision::ensure_model(spec, &quiet).unwrap();
    let bytes = runtime::read_verified_model(&path, &spec.blake3).unwrap();
    let (session, _) =
        runtime::create_session(env, info, &bytes, DeviceRequest::Cpu, 1, &quiet).unwrap();
    let mut model = CenterFace::new(session, "centerface");

    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(golden.join("centerface_reference.json")).unwrap(),
    )
    .unwrap();
    let mut compared = 0;
    for (name, case) in reference.as_object().unwrap() {
        let img = image::open(golden.join(case["network_input"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        let (w, h) = img.dimensions();
        assert!(w % 32 == 0 && h % 32 == 0);
        let threshold = case["threshold"].as_f64().unwrap() as f32;
        let input = hwc_to_nchw(img.as_raw(), w as usize, h as usize);
        let raw = model.run_tensor(&input, threshold).unwrap();
        let dets: Vec<Detection> = raw
            .into_iter()
            .map(|(bbox, score)| Detection {
                bbox,
                score,
                class: ObjectClass::Face,
                model: "centerface".into(),
            })
            .collect();
        let got = nms(dets, case["nms_iou"].as_f64().unwrap() as f32);
        let want = case["detections_in_network_input_pixels"]
            .as_array()
            .unwrap();
        assert_eq!(got.len(), want.len(), "{name}: {got:?}");
        for w in want {
            let w: Vec<f32> = w
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let wb = BBox::new(w[0], w[1], w[2], w[3]);
            let m = got
                .iter()
                .max_by(|a, b| a.bbox.iou(&wb).total_cmp(&b.bbox.iou(&wb)))
                .unwrap();
            for (g, r) in [
                (m.bbox.x1, wb.x1),
                (m.bbox.y1, wb.y1),
                (m.bbox.x2, wb.x2),
                (m.bbox.y2, wb.y2),
            ] {
                assert!(
                    (g - r).abs() <= 1.0,
                    "{name}: box {:?} vs reference {wb:?}",
                    m.bbox
                );
            }
            assert!(
                (m.score - w[4]).abs() <= 1e-3,
                "{name}: score {} vs {}",
                m.score,
                w[4]
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 7);
}
