//! Batched inference (`--batch N`) gives the same faces as one pass at a time: the tiles of the
//! fine pass of real photos run as batches of 1, 4 and 8 through the real model and runtime.

#![allow(clippy::print_stderr)]

use std::path::Path;

use veil_detect::{
    plan_passes, provision, runtime, same_size_runs, CenterFace, DetectPolicy, DeviceRequest,
    Manifest,
};

/// A new CPU session of the verified CenterFace model.
fn session() -> ort::session::Session {
    let manifest = Manifest::builtin().unwrap();
    let quiet = |_: &str| {};
    let (env, info) = runtime::init(&manifest, DeviceRequest::Cpu, &quiet).unwrap();
    let spec = manifest.model("centerface").unwrap();
    let path = provision::ensure_model(spec, &quiet).unwrap();
    let bytes = runtime::read_verified_model(&path, &spec.blake3).unwrap();
    runtime::create_session(env, info, &bytes, DeviceRequest::Cpu, 1, &quiet)
        .unwrap()
        .0
}

fn model(batch: usize) -> CenterFace {
    CenterFace::new(session(), "centerface").with_batch(batch)
}

/// `../shared/images/faces`, or `None` after saying SKIPPED.
fn shared_faces() -> Option<std::path::PathBuf> {
    let faces = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images/faces");
    if faces.exists() {
        return Some(faces);
    }
    eprintln!(
        "SKIPPED: {} not found (shared test data exists only on developer and CI machines)",
        faces.display()
    );
    None
}

#[test]
fn batched_tiles_find_the_same_faces_as_single_runs() {
    let Some(faces) = shared_faces() else { return };
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
            assert_same_faces(&format!("{name} batch {batch}"), &got, &single);
        }
        eprintln!(
            "{name}: {} faces, same with batches of 4 and 8",
            single.len()
        );
    }
}

/// Asserts two detection lists are the same faces: same count, boxes within 1 px, scores within
/// 1e-3 (batched float sums may round differently).
fn assert_same_faces(what: &str, got: &[veil_core::Detection], want: &[veil_core::Detection]) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, s) in got.iter().zip(want) {
        let d = [
            g.bbox.x1 - s.bbox.x1,
            g.bbox.y1 - s.bbox.y1,
            g.bbox.x2 - s.bbox.x2,
            g.bbox.y2 - s.bbox.y2,
        ];
        assert!(d.iter().all(|d| d.abs() <= 1.0), "{what}: {g:?} vs {s:?}");
        assert!((g.score - s.score).abs() <= 1e-3, "{what}: {g:?} vs {s:?}");
    }
}

/// Batching across images (`detect_many`, what a run's detect stage calls with `--batch N`):
/// passes of two photos of one size share batches, and every photo gets exactly the faces it
/// gets alone; a photo of another size in the same call is unaffected.
#[test]
fn batches_across_images_find_each_images_own_faces() {
    let Some(faces) = shared_faces() else { return };
    let policy = DetectPolicy::default();
    let t1 = image::open(faces.join("t1.jpg")).unwrap().to_rgb8();
    // Same size, other content: the mirror image (its faces are mirrored too).
    let mirrored = image::imageops::flip_horizontal(&t1);
    let zidane = image::open(faces.join("zidane.jpg")).unwrap().to_rgb8();
    let imgs = [&t1, &zidane, &mirrored];
    let plans: Vec<_> = imgs
        .iter()
        .map(|i| plan_passes(i.width(), i.height(), &policy, 32))
        .collect();
    assert!(
        veil_detect::batches_by_size(&plans, 8)
            .iter()
            .any(|b| b.iter().any(|p| p.0 == 0) && b.iter().any(|p| p.0 == 2)),
        "the two same-size photos must share a batch"
    );
    let mut alone = model(1);
    let want: Vec<_> = imgs
        .iter()
        .map(|i| alone.detect(i, &policy).unwrap())
        .collect();
    assert!(want.iter().all(|w| !w.is_empty()), "faces found alone");
    for batch in [1, 8] {
        let got = model(batch).detect_many(&imgs, &policy);
        assert_eq!(got.len(), imgs.len());
        for (k, (g, w)) in got.into_iter().zip(&want).enumerate() {
            assert_same_faces(&format!("image {k}, batch {batch}"), &g.unwrap(), w);
        }
    }
    // The mirror's faces are the original's, mirrored: the pairing is right, not swapped.
    let w = t1.width() as f32;
    for d in &want[2] {
        let (cx, cy) = (
            w - (d.bbox.x1 + d.bbox.x2) / 2.0,
            (d.bbox.y1 + d.bbox.y2) / 2.0,
        );
        assert!(
            want[0]
                .iter()
                .any(|o| (o.bbox.x1..=o.bbox.x2).contains(&cx)
                    && (o.bbox.y1..=o.bbox.y2).contains(&cy)),
            "mirrored face {d:?} has no counterpart in t1"
        );
    }
    eprintln!(
        "t1 {} faces, zidane {}, mirrored t1 {}: same in one call with batches of 1 and 8",
        want[0].len(),
        want[1].len(),
        want[2].len()
    );
}

/// Sessions by input shape (what GPU runs use, here on the CPU): every pass on the session kept
/// for its shape, batches padded to a power of two, the least recently used shape dropped at
/// capacity. Each photo gets exactly the faces one session gives it.
#[test]
fn sessions_by_shape_find_the_same_faces_and_keep_one_session_per_shape() {
    let Some(faces) = shared_faces() else { return };
    let factory = || Ok(session());
    let pool = std::sync::Arc::new(veil_detect::ShapeSessions::new(Box::new(factory), 2));
    let mut by_shape = model(3).with_shape_sessions(pool.clone());
    let mut plain = model(1);
    let policy = DetectPolicy::default();
    // Three sizes, so the capacity of two is exceeded and shapes come back.
    for name in ["t1.jpg", "zidane.jpg", "bus.jpg", "t1.jpg"] {
        let img = image::open(faces.join(name)).unwrap().to_rgb8();
        let got = by_shape.detect(&img, &policy).unwrap();
        let want = plain.detect(&img, &policy).unwrap();
        assert!(!want.is_empty(), "{name}: no faces found");
        assert_same_faces(name, &got, &want);
        let shapes = pool.shapes();
        assert!(shapes.len() <= 2, "{name}: {shapes:?}");
        for s in &shapes {
            assert!(s[0].is_power_of_two(), "{name}: batch padded: {s:?}");
        }
    }
    assert!(
        pool.created() > 2,
        "shapes were dropped at capacity and made again: {}",
        pool.created()
    );
}
