//! The staged pipeline of a run: **decode** (read, scan, decode, source hashes) → **detect**
//! (ONNX Runtime; several images per call when batching) → **finish** (redact, encode, validate,
//! output hashes, atomic write, record), each stage on its own threads, with bounded queues
//! between them and a budget on what is in flight.
//!
//! Memory stays flat however many images there are, and bounded however large they are: an image
//! is admitted (after its header is read, before its pixels are decoded) only while the images in
//! flight, from admission until their record is written, hold at most [`InFlight::max_pixels`]
//! pixels and number at most [`InFlight::max_images`]. One image is always admitted when nothing
//! is in flight, so an image larger than the budget still runs (alone). The queues are bounded
//! too, so a slow stage holds back the ones before it instead of piling up work.
//!
//! Inference sessions are owned by the detect stage, one thread each: the decode and finish
//! stages keep the cores busy while a detect thread waits (for the one-at-a-time large pass, or
//! for a GPU).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use veil_core::{Detection, FailureStage};
use veil_ledger::{ProvenanceRecord, StageTimes};

use crate::process::{self, Detector, ImageSettings, Prepared};
use crate::walk::rel_string;

/// Pixels a worker may have in flight: a 12 MP photo plus room for a decode ahead.
pub const PIXELS_PER_WORKER: u64 = 16_000_000;

/// The budget of images in flight (admitted, not yet recorded).
#[derive(Debug)]
pub struct InFlight {
    state: Mutex<(u64, usize)>,
    freed: Condvar,
    /// Most pixels in flight (unless a single image is larger: it then runs alone).
    pub max_pixels: u64,
    /// Most images in flight.
    pub max_images: usize,
}

impl InFlight {
    pub fn new(max_pixels: u64, max_images: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new((0, 0)),
            freed: Condvar::new(),
            max_pixels,
            max_images: max_images.max(1),
        })
    }

    /// Waits until an image of `pixels` fits (or nothing is in flight), then admits it. The
    /// returned permit gives the room back when dropped.
    pub fn admit(self: &Arc<Self>, pixels: u64) -> Permit {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while s.1 > 0 && (s.0.saturating_add(pixels) > self.max_pixels || s.1 >= self.max_images) {
            s = self.freed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.0 = s.0.saturating_add(pixels);
        s.1 += 1;
        Permit {
            budget: Arc::clone(self),
            pixels,
        }
    }

    /// (pixels, images) in flight now.
    pub fn in_flight(&self) -> (u64, usize) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An admitted image's share of the budget, returned when dropped (also on a panic).
#[derive(Debug)]
pub struct Permit {
    budget: Arc<InFlight>,
    pixels: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = self.budget.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = s.0.saturating_sub(self.pixels);
        s.1 = s.1.saturating_sub(1);
        drop(s);
        self.budget.freed.notify_all();
    }
}

/// How many threads each stage gets, and the budget.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub decoders: usize,
    pub finishers: usize,
    /// Most images handed to one detect call (1: no batching across images).
    pub images_per_detect: usize,
    pub max_pixels: u64,
    pub max_images: usize,
}

impl Shape {
    /// `jobs` workers feeding `detect_threads` inference sessions that batch up to `batch`
    /// images: decode and finish get half the workers each (with inference on the CPU they are
    /// a few per cent of the work, and on a GPU node they are all of the CPU's work, so together
    /// they fill the cores); the budget is `jobs + 1` photos of 12 MP, or two full batches.
    ///
    /// Fewer decode and finish threads also means fewer of their large transient buffers (the
    /// decoder's, the redacted copy, the output decoded back for validation) alive at once.
    pub fn for_run(jobs: usize, detect_threads: usize, batch: usize) -> Self {
        let jobs = jobs.max(1);
        let batch = batch.max(1);
        let feed = detect_threads.max(1) * batch;
        let half = jobs.div_ceil(2);
        Self {
            decoders: half,
            finishers: half,
            images_per_detect: batch,
            max_pixels: PIXELS_PER_WORKER * photos_in_flight(jobs, feed, batch),
            max_images: 2 * (jobs + feed),
        }
    }
}

/// Most photos of 12 MP the budget holds for batching (3 GB of RGB pixels): small photos still
/// fill large batches under it, and a slow GPU cannot let decoders run gigabytes ahead.
pub const MAX_BATCHING_PHOTOS: u64 = 64;

/// Photos of 12 MP the budget holds: one per worker and one decoded ahead; with batches, two
/// full batches per session (one running, one queued), up to [`MAX_BATCHING_PHOTOS`].
fn photos_in_flight(jobs: usize, feed: usize, batch: usize) -> u64 {
    let per_worker = jobs as u64 + 1;
    if batch > 1 {
        per_worker.max((2 * feed as u64).min(MAX_BATCHING_PHOTOS))
    } else {
        per_worker
    }
}

/// An image on its way from detect to finish.
type Detected = (Prepared, Result<Vec<Detection>, String>, f64);

/// The receiving end of a stage's queue, shared by the stage's threads.
struct Inbox<T> {
    rx: Mutex<Receiver<T>>,
    members: AtomicUsize,
}

impl<T> Inbox<T> {
    fn new(rx: Receiver<T>, members: usize) -> Self {
        Self {
            rx: Mutex::new(rx),
            members: AtomicUsize::new(members),
        }
    }
}

/// A stage thread's membership of its inbox. The last member to leave (normally once the queue
/// is closed and empty, so there is nothing left; early only if the stage crashed, or when the
/// stage has no thread at all) stays to conclude everything still coming with `orphan`, until
/// the stage before is done: no image is ever left in a queue without a record, and no sender
/// waits on a queue that nobody reads.
struct Member<'a, T> {
    inbox: &'a Inbox<T>,
    orphan: &'a (dyn Fn(T) + Sync),
}

impl<T> Drop for Member<'_, T> {
    fn drop(&mut self) {
        if self.inbox.members.fetch_sub(1, Ordering::SeqCst) == 1 {
            let rx = self.inbox.rx.lock().unwrap_or_else(|e| e.into_inner());
            while let Ok(item) = rx.recv() {
                (self.orphan)(item);
            }
        }
    }
}

/// The message of a caught panic, for the failure reason.
fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Runs `images` (relative to `input`) through the three stages. `done` gets every image's
/// record once its output is written or removed, from whichever thread finished it.
///
/// Every image gets exactly one record, whatever fails: each step of a stage runs under
/// `catch_unwind` (a panic fails that image, closed, with the panic's message), and should a
/// stage's threads all be gone, the last one out concludes the images still coming to it as
/// failed (see [`Member`]).
#[allow(clippy::too_many_arguments)]
pub fn run_staged<D: Detector>(
    images: &[PathBuf],
    archives: &[crate::archive_job::ArchiveJob],
    input: &Path,
    output: &Path,
    settings: &ImageSettings,
    detectors: Vec<D>,
    shape: Shape,
    done: &(dyn Fn(ProvenanceRecord, StageTimes) + Sync),
) {
    let budget = InFlight::new(shape.max_pixels, shape.max_images);
    let next = AtomicUsize::new(0);
    let queue = shape.max_images.max(1);
    let (to_detect, detect_rx) = sync_channel::<Prepared>(queue);
    let (to_finish, finish_rx) = sync_channel::<Detected>(queue);
    let detect_inbox = Inbox::new(detect_rx, detectors.len().max(1));
    let finish_inbox = Inbox::new(finish_rx, shape.finishers.max(1));
    // `done` reports and records; a panic there (it should have none) must not stop a stage.
    let done = |record: ProvenanceRecord, times: StageTimes| {
        let _ = catch_unwind(AssertUnwindSafe(|| done(record, times)));
    };
    let done = &done;
    // An image that crashed its stage, or can no longer reach the next one: failed, no output.
    let crashed = |rel: &Path, stage: FailureStage, why: String| {
        let (record, times) =
            process::fail_closed(output, rel, &rel_string(rel), settings, stage, &why);
        done(record, times);
    };
    let crashed = &crashed;
    // An item that cannot go on: a file is concluded here, a member through its archive.
    let fail_item = |item: Prepared, stage: FailureStage, why: &str| {
        if let Some((record, times)) = item.fail(output, settings, stage, why) {
            done(record, times);
        }
    };
    let fail_item = &fail_item;
    let detect_orphan =
        |item: Prepared| fail_item(item, FailureStage::Detect, "internal: no detector running");
    let finish_orphan = |(item, _, _): Detected| {
        fail_item(item, FailureStage::Redact, "internal: no finisher running")
    };
    let (detect_orphan, finish_orphan) = (&detect_orphan, &finish_orphan);
    let next_archive = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..shape.decoders.max(1) {
            let to_detect = to_detect.clone();
            let (budget, next, next_archive) = (&budget, &next, &next_archive);
            s.spawn(move || {
                while let Some(rel) = images.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let rel_str = rel_string(rel);
                    let admit = |pixels: u64| budget.admit(pixels);
                    let prepared = catch_unwind(AssertUnwindSafe(|| {
                        process::prepare(input, output, rel, &rel_str, settings, Some(&admit))
                    }));
                    match prepared {
                        Err(e) => crashed(
                            rel,
                            FailureStage::Decode,
                            format!(
                                "internal: crashed (panic) while decoding: {}",
                                panic_message(&*e)
                            ),
                        ),
                        Ok(Err(concluded)) => done(concluded.0, concluded.1),
                        Ok(Ok(item)) => {
                            if let Err(back) = to_detect.send(item) {
                                // Only if every detect thread is gone.
                                fail_item(
                                    back.0,
                                    FailureStage::Detect,
                                    "internal: no detector running",
                                );
                            }
                        }
                    }
                }
                // Then whole archives, each read and written in order by this thread while its
                // image members go through the same detect and finish stages.
                while let Some(job) = archives.get(next_archive.fetch_add(1, Ordering::Relaxed)) {
                    let admit = |pixels: u64| budget.admit(pixels);
                    let ran = catch_unwind(AssertUnwindSafe(|| {
                        crate::archive_job::run_archive(
                            job, input, output, settings, &to_detect, &admit, done,
                        )
                    }));
                    if let Err(e) = ran {
                        crashed(
                            &job.rel,
                            FailureStage::Decode,
                            format!(
                                "internal: crashed (panic) while reading the archive: {}",
                                panic_message(&*e)
                            ),
                        );
                    }
                }
            });
        }
        drop(to_detect);
        let detect_inbox = &detect_inbox;
        if detectors.is_empty() {
            // No detect thread: one that only concludes every image as failed.
            s.spawn(move || {
                drop(Member {
                    inbox: detect_inbox,
                    orphan: detect_orphan,
                })
            });
        }
        for mut detector in detectors {
            let to_finish = to_finish.clone();
            s.spawn(move || {
                let _member = Member {
                    inbox: detect_inbox,
                    orphan: detect_orphan,
                };
                while let Some(items) = take(&detect_inbox.rx, shape.images_per_detect) {
                    let t = Instant::now();
                    let found = {
                        let imgs: Vec<&image::RgbImage> = items.iter().map(|i| i.rgb()).collect();
                        let sources: Vec<_> = items.iter().map(|i| i.source()).collect();
                        match catch_unwind(AssertUnwindSafe(|| {
                            detector.detect_sources(&sources, &imgs)
                        })) {
                            Ok(found) if found.len() == imgs.len() => found,
                            Ok(found) => vec![
                                Err(format!(
                                    "internal: {} results for {} images",
                                    found.len(),
                                    imgs.len()
                                ));
                                imgs.len()
                            ],
                            Err(e) => vec![
                                Err(format!("detector crashed (panic): {}", panic_message(&*e)));
                                imgs.len()
                            ],
                        }
                    };
                    // A batch's time is shared evenly by its images.
                    let seconds = t.elapsed().as_secs_f64() / items.len() as f64;
                    for (item, found) in items.into_iter().zip(found) {
                        if let Err(back) = to_finish.send((item, found, seconds)) {
                            fail_item(back.0 .0, FailureStage::Redact, "internal: no finisher running");
                        }
                    }
                }
            });
        }
        drop(to_finish);
        let finish_inbox = &finish_inbox;
        for _ in 0..shape.finishers.max(1) {
            s.spawn(move || {
                let _member = Member {
                    inbox: finish_inbox,
                    orphan: finish_orphan,
                };
                loop {
                    let msg = finish_inbox
                        .rx
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .recv();
                    let Ok((item, found, seconds)) = msg else {
                        break;
                    };
                    let rel = item.rel().to_path_buf();
                    if let Some(tx) = item.member_tx() {
                        let rel_str = rel_string(&rel);
                        let result = catch_unwind(AssertUnwindSafe(|| {
                            process::finish_member(item, found, seconds, settings)
                        }))
                        .unwrap_or_else(|e| {
                            process::member_failed(
                                &rel_str,
                                settings,
                                FailureStage::Redact,
                                &format!(
                                    "internal: crashed (panic) while finishing: {}",
                                    panic_message(&*e)
                                ),
                            )
                        });
                        let _ = tx.send(result);
                        continue;
                    }
                    match catch_unwind(AssertUnwindSafe(|| {
                        process::finish(output, item, found, seconds, settings)
                    })) {
                        Ok((record, times)) => done(record, times),
                        Err(e) => crashed(
                            &rel,
                            FailureStage::Redact,
                            format!(
                                "internal: crashed (panic) while finishing: {}",
                                panic_message(&*e)
                            ),
                        ),
                    }
                }
            });
        }
    });
}

/// The next images for a detect thread: one (waiting for it), then up to `most - 1` more that
/// are already queued (never waiting for them). `None` once the decode stage is done and the
/// queue is empty.
fn take(rx: &Mutex<Receiver<Prepared>>, most: usize) -> Option<Vec<Prepared>> {
    let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
    let first = rx.recv().ok()?;
    let mut items = vec![first];
    while items.len() < most.max(1) {
        match rx.try_recv() {
            Ok(i) => items.push(i),
            Err(_) => break,
        }
    }
    Some(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn budget_admits_up_to_its_pixels_and_always_one_image() {
        let b = InFlight::new(100, 10);
        let big = b.admit(1_000);
        assert_eq!(
            b.in_flight(),
            (1_000, 1),
            "alone, an image over budget runs"
        );
        let b2 = Arc::clone(&b);
        let waiter = std::thread::spawn(move || {
            let _p = b2.admit(60);
            b2.in_flight()
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            b.in_flight(),
            (1_000, 1),
            "the second waits while the first holds it"
        );
        drop(big);
        assert_eq!(waiter.join().unwrap(), (60, 1));
        assert_eq!(b.in_flight(), (0, 0), "permits give their room back");
        let (p1, p2) = (b.admit(40), b.admit(60));
        assert_eq!(b.in_flight(), (100, 2), "exactly the budget fits");
        drop((p1, p2));
    }

    #[test]
    fn budget_caps_the_number_of_images() {
        let b = InFlight::new(u64::MAX, 2);
        let held = (b.admit(1), b.admit(1));
        let b2 = Arc::clone(&b);
        let waiter = std::thread::spawn(move || drop(b2.admit(1)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "a third image waits");
        drop(held);
        waiter.join().unwrap();
    }

    #[test]
    fn shape_feeds_every_batch_and_scales_with_workers() {
        let cpu = Shape::for_run(2, 2, 1);
        assert_eq!(cpu.max_pixels, 3 * PIXELS_PER_WORKER);
        assert_eq!(cpu.images_per_detect, 1);
        assert_eq!((cpu.decoders, cpu.finishers), (1, 1));
        assert_eq!(Shape::for_run(1, 1, 1).decoders, 1);
        let gpu = Shape::for_run(16, 2, 32);
        assert!(gpu.max_images >= 64, "two full batches can queue");
        assert_eq!(gpu.images_per_detect, 32);
        assert_eq!(gpu.max_pixels, 64 * PIXELS_PER_WORKER);
        // --batch 256 on two sessions: the pixel budget stays at 64 photos of 12 MP.
        let big = Shape::for_run(16, 2, 256);
        assert_eq!(big.max_pixels, MAX_BATCHING_PHOTOS * PIXELS_PER_WORKER);
    }

    /// Panics on images whose first pixel is pure red; finds nothing elsewhere.
    struct PanicsOnRed;

    impl Detector for PanicsOnRed {
        fn detect(&mut self, img: &image::RgbImage) -> Result<Vec<Detection>, String> {
            assert!(img.get_pixel(0, 0).0 != [255, 0, 0], "red marker");
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_panicking_detector_or_reporter_fails_only_its_images_and_every_image_gets_one_record() {
        let t = tempfile::tempdir().unwrap();
        let (input, output) = (t.path().join("in"), t.path().join("out"));
        std::fs::create_dir_all(&input).unwrap();
        std::fs::create_dir_all(&output).unwrap();
        let mut images = Vec::new();
        for i in 0..8u8 {
            let red = i.is_multiple_of(3);
            let img = image::RgbImage::from_fn(64, 48, |x, y| {
                if red && (x, y) == (0, 0) {
                    image::Rgb([255, 0, 0])
                } else {
                    image::Rgb([i * 20, (x * 3) as u8, (y * 5) as u8])
                }
            });
            let name = format!("{i}.png");
            img.save(input.join(&name)).unwrap();
            // An earlier run's output: it must not stand for an image that fails now.
            std::fs::write(output.join(&name), b"old output").unwrap();
            images.push(PathBuf::from(name));
        }
        let settings = process::test_settings();
        let records = Mutex::new(Vec::new());
        let calls = AtomicUsize::new(0);
        // The first report panics after recording (as `eprintln!` on a closed pipe would).
        let done = |r: ProvenanceRecord, _: StageTimes| {
            records.lock().unwrap().push(r);
            assert!(calls.fetch_add(1, Ordering::SeqCst) > 0, "reporter broke");
        };
        run_staged(
            &images,
            &[],
            &input,
            &output,
            &settings,
            vec![PanicsOnRed, PanicsOnRed],
            Shape::for_run(2, 2, 1),
            &done,
        );
        let mut records = records.into_inner().unwrap();
        records.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(records.len(), 8, "one record per image");
        for r in &records {
            let i: u8 = r.path.trim_end_matches(".png").parse().unwrap();
            let out = std::fs::read(output.join(&r.path)).ok();
            if i.is_multiple_of(3) {
                assert_eq!(r.status, veil_core::ImageStatus::Failed, "{}", r.path);
                let why = r.error.clone().unwrap_or_default();
                assert!(why.contains("panic") && why.contains("red marker"), "{why}");
                assert_eq!(out, None, "{}: a failed image keeps no output", r.path);
            } else {
                assert_eq!(r.status, veil_core::ImageStatus::NoDetections, "{}", r.path);
                assert_ne!(out.as_deref(), Some(b"old output".as_slice()), "{}", r.path);
            }
        }
    }

    #[test]
    fn with_no_detect_thread_every_image_still_gets_a_failed_record() {
        let t = tempfile::tempdir().unwrap();
        let (input, output) = (t.path().join("in"), t.path().join("out"));
        std::fs::create_dir_all(&input).unwrap();
        let images: Vec<PathBuf> = (0..12)
            .map(|i| {
                let name = format!("{i}.png");
                image::RgbImage::from_pixel(32, 24, image::Rgb([i * 10, 0, 0]))
                    .save(input.join(&name))
                    .unwrap();
                PathBuf::from(name)
            })
            .collect();
        let settings = process::test_settings();
        let records = Mutex::new(Vec::new());
        // A budget of 4 images: were the queued images never concluded, the run would hang.
        let shape = Shape {
            max_images: 4,
            ..Shape::for_run(2, 1, 1)
        };
        run_staged(
            &images,
            &[],
            &input,
            &output,
            &settings,
            Vec::<PanicsOnRed>::new(),
            shape,
            &|r: ProvenanceRecord, _: StageTimes| records.lock().unwrap().push(r),
        );
        let records = records.into_inner().unwrap();
        assert_eq!(records.len(), 12, "one record per image");
        for r in &records {
            assert_eq!(r.status, veil_core::ImageStatus::Failed, "{}", r.path);
            assert!(
                r.error
                    .as_deref()
                    .unwrap_or_default()
                    .contains("no detector running"),
                "{r:?}"
            );
            assert!(!output.join(&r.path).exists());
        }
    }
}
