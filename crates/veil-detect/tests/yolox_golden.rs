//! The YOLOX decoder, fed the exact network input in `../shared/golden/`, reproduces the reference
//! implementation's raw outputs and person detections (boxes within 0.5 px, scores within 1e-3),
//! and the whole detector (letterbox, inference, mapping back) agrees with the reference on a full
//! image. Runs the pinned YOLOX-Nano file from the shared data on the CPU ONNX Runtime from veil's
//! cache (`veil models fetch` provisions it).

#![allow(clippy::print_stderr)]

use std::path::Path;
use std::time::Instant;

use veil_core::{nms, BBox, Detection, ObjectClass};
use veil_detect::yolox::{paste_bgr_nchw, PersonPolicy, Yolox};
use veil_detect::{runtime, DeviceRequest, Manifest};

const YOLOX_NANO_BLAKE3: &str = "65c54365c96adf10f3675f6c60b6816761a276c49beba23b2fad6c1350624064";

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn yolox_reproduces_the_reference_outputs_and_detections() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if !shared.exists() {
        eprintln!(
            "SKIPPED: {} not found (shared test data exists only on developer and CI machines)",
            shared.display()
        );
        return;
    }
    let golden = shared.join("golden");
    let manifest = Manifest::builtin().unwrap();
    let quiet = |_: &str| {};
    let (env, info) = runtime::init(&manifest, DeviceRequest::Cpu, &quiet).unwrap();
    let bytes =
        runtime::read_verified_model(&shared.join("models/yolox_nano.onnx"), YOLOX_NANO_BLAKE3)
            .unwrap();
    let (session, _) =
        runtime::create_session(env, info, &bytes, DeviceRequest::Cpu, 1, &quiet).unwrap();

    // The raw output rows, straight from the session.
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(golden.join("reference_outputs.json")).unwrap(),
    )
    .unwrap();
    let case = &reference["yolox_input_bus_416.png"];
    let img = image::open(golden.join("yolox_input_bus_416.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(img.dimensions(), (416, 416));
    let input = paste_bgr_nchw(img.as_raw(), 416, 416, 416, 416);
    let mut session = session;
    assert_eq!(session.inputs()[0].name(), "images");
    assert_eq!(session.outputs()[0].name(), "output");
    {
        let outputs = session
            .run(ort::inputs!["images" => ort::value::TensorRef::from_array_view(&input).unwrap()])
            .unwrap();
        let (shape, data) = outputs
            .get("output")
            .unwrap()
            .try_extract_tensor::<f32>()
            .unwrap();
        assert_eq!(shape.to_vec(), vec![1, 3549, 85]);
        let want = case["raw_output_rows_0_and_3548"].as_array().unwrap();
        for (row, w) in [0usize, 3548].into_iter().zip(want) {
            for (c, r) in floats(w).into_iter().enumerate() {
                let g = data[row * 85 + c];
                assert!((g - r).abs() <= 1e-3, "row {row} col {c}: {g} vs {r}");
            }
        }
    }

    // Decoded persons on the exact network input.
    let mut model = Yolox::new(session, "yolox_nano").unwrap();
    assert_eq!(model.input_size(), (416, 416));
    let raw = model.run_tensor(&input, 0.25).unwrap();
    let dets: Vec<Detection> = raw
        .into_iter()
        .map(|(bbox, score)| Detection {
            bbox,
            score,
            class: ObjectClass::Person,
            model: "yolox_nano".into(),
        })
        .collect();
    let got = nms(dets, 0.45);
    let want = case["persons_conf0.25_nms0.45_in_416_pixels"]
        .as_array()
        .unwrap();
    assert_eq!(got.len(), want.len(), "{got:?}");
    assert_eq!(want.len(), 4);
    for w in want {
        let w = floats(w);
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
            assert!((g - r).abs() <= 0.5, "box {:?} vs reference {wb:?}", m.bbox);
        }
        assert!(
            (m.score - w[4]).abs() <= 1e-3,
            "score {} vs {}",
            m.score,
            w[4]
        );
    }

    // One-thread inference time at 416x416.
    let mut times: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            model.run_tensor(&input, 0.25).unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    eprintln!("yolox_nano 416x416, 1 thread: median {:.2} ms", times[7]);

    // The whole detector on a full image: letterbox with fast_image_resize instead of Pillow, so
    // boxes agree by IoU and scores within 0.05.
    let full = &reference["full_image"];
    let name = ["faces/bus.jpg", "faces/2008_004176.jpg", "faces/t1.jpg"]
        .into_iter()
        .find(|n| full[n]["yolox_person_conf0.3"].is_array())
        .expect("a full image with YOLOX reference detections");
    let img = image::open(shared.join("images").join(name))
        .unwrap()
        .to_rgb8();
    let policy = PersonPolicy {
        threshold: 0.3,
        nms_iou: 0.45,
        tiles: false,
        // The reference is the model's own output: no closer look.
        confirm_below: 0.0,
    };
    let got = model.detect(&img, &policy).unwrap();
    let want = full[name]["yolox_person_conf0.3"].as_array().unwrap();
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len(), "{name}: {got:?}");
    for w in want {
        let w = floats(w);
        let wb = BBox::new(w[0], w[1], w[2], w[3]);
        let m = got
            .iter()
            .max_by(|a, b| a.bbox.iou(&wb).total_cmp(&b.bbox.iou(&wb)))
            .unwrap();
        assert!(m.bbox.iou(&wb) >= 0.9, "{name}: {m:?} vs {wb:?}");
        assert!((m.score - w[4]).abs() < 0.05, "{name}: {m:?} vs {w:?}");
        assert_eq!(m.class, ObjectClass::Person);
        assert_eq!(m.model, "yolox_nano");
    }

    // Tiles on a large image add passes but never lose the whole-image detections.
    let big = image::imageops::resize(&img, 1620, 2160, image::imageops::FilterType::Triangle);
    let tiled = model.detect(&big, &PersonPolicy::default()).unwrap();
    for w in want {
        let w = floats(w);
        let wb = BBox::new(w[0] * 2.0, w[1] * 2.0, w[2] * 2.0, w[3] * 2.0);
        assert!(
            tiled.iter().any(|d| d.bbox.iou(&wb) >= 0.7),
            "tiled {name} x2 lost {wb:?}: {tiled:?}"
        );
    }
}
