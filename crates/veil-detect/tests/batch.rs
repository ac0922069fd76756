//! Batched inference (`--batch N`) gives the same faces as one pass at a time: the tiles of the
//! fine pass of real photos run as batches of 1, 4 and 8 through the real model and runtime.

#![allow(clippy::print_stderr)]

use std::path::Path;

use veil_detect::{
    plan_passes, provision, runtime, same_size_runs, CenterFace, DetectPolicy, DeviceRequest,
    Manifest,
};

fn model(batch: usize) -> CenterFace {
    let manifest = Manifest::builtin().unwrap();
    let quiet = |_: &str| {};
    let (env, info) = runtime::init(&manifest, DeviceRequest::Cpu, &quiet).unwrap();
    let spec = manifest.model("centerface").unwrap();
    let path = provision::ensure_model(spec, &quiet).unwrap();
    let bytes = runtime::read_verified_model(&path, &spec.blake3).unwrap();
    let (session, _) =
        runtime::create_session(env, info, &bytes, DeviceRequest::Cpu, 1, &quiet).unwrap();
    CenterFace::new(session, "centerface").with_batch(batch)
}

#[test]
fn batched_tiles_find_the_same_faces_as_single_runs() {
    let faces = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images/faces");
    if !faces.exists() {
        eprintln!(
            "SKIPPED: {} not found (shared test data exists only on developer and CI machines)",
            faces.display()
        );
        return;
    }
    let policy = DetectPolicy::default();
    for name in ["t1.jpg", "zidane.jpg"] {
        let img = image::open(faces.join(name)).unwrap().to_rgb8();
        let passes = plan_passes(img.width(), img.height(), &policy, 32);
        // The point of the test: these photos have several same-size tiles to batch.
        assert!(
            same_size_runs(&passes, 8).iter().any(|r| r.len() >= 4),
            "{name}: {passes:?}"
        );
        let single = model(1).detect(&img, &policy).unwrap();
        assert!(!single.is_empty(), "{name}: no faces found");
        for batch in [4, 8] {
            let got = model(batch).detect(&img, &policy).unwrap();
            assert_eq!(
                got.len(),
                single.len(),
                "{name} batch {batch}: {got:?} vs {single:?}"
            );
            for (g, s) in got.iter().zip(&single) {
                let d = [
                    g.bbox.x1 - s.bbox.x1,
                    g.bbox.y1 - s.bbox.y1,
                    g.bbox.x2 - s.bbox.x2,
                    g.bbox.y2 - s.bbox.y2,
                ];
                assert!(
                    d.iter().all(|d| d.abs() <= 1.0),
                    "{name} batch {batch}: {g:?} vs {s:?}"
                );
                assert!((g.score - s.score).abs() <= 1e-3, "{name} batch {batch}");
            }
        }
        eprintln!(
            "{name}: {} faces, same with batches of 4 and 8",
            single.len()
        );
    }
}
