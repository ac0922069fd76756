//! Hardening (issue 7), end to end with the real binary in temp dirs, on images generated from
//! the sample photos (no `../shared` needed):
//!
//! * paths: links, link loops and hard links in the input, links planted in the output, and
//!   manifest / record paths that try to leave their tree (`..`, absolute);
//! * crash safety: `veil redact`, `veil release build`, `veil ledger import` and `veil takedown
//!   apply` killed with SIGKILL at pseudo-random points (fixed seed) leave the old state or the
//!   new one, never a half-written file that looks complete;
//! * hostile strings (file names, requester names and notes, proof fields) are escaped on the
//!   terminal and round-trip exactly in JSON;
//! * altered runtime library, model and release files are refused, naming the file and both
//!   hashes.
//!
//! Already covered elsewhere (not repeated here): an altered model refused by `veil redact`
//! (`redact.rs::tampered_model_is_refused`) and by `veil models verify`
//! (`models.rs::models_verify_reports_fetched_files_ok_and_an_altered_one_by_name`); an edited
//! ledger event refused by `veil ledger verify` and every other command
//! (`takedown.rs::photo_request_withdraws_exactly_that_item_and_everything_is_provable`); unsafe
//! paths in `verify_tree` and in purge (unit tests in veil-ledger `release.rs` and veil-takedown
//! `requests.rs`); a resumed run equal to an uninterrupted one (`resume.rs`).

#![allow(clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// The sample photos (fetched once per cache by `veil sample`), upright RGB.
fn sample_photos(t: &Path) -> Vec<image::RgbImage> {
    let sample = t.join("sample");
    let (code, _, err) = run(&[&"sample", &sample]);
    assert_eq!(code, 0, "{err}");
    let mut paths: Vec<PathBuf> = fs::read_dir(&sample)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths.iter().map(|p| load_upright(p)).collect()
}

/// A crop of sample photo `i % len`, `width` px wide (some show a face, most do not).
fn crop(photos: &[image::RgbImage], i: usize, width: u32) -> image::RgbImage {
    let img = &photos[i % photos.len()];
    let (w, h) = (img.width() * 2 / 3, img.height() * 2 / 3);
    let (x, y) = (
        (i as u32 * 7) % (img.width() - w),
        (i as u32 * 5) % (img.height() - h),
    );
    let c = image::imageops::crop_imm(img, x, y, w, h).to_image();
    image::imageops::resize(
        &c,
        width,
        width * h / w,
        image::imageops::FilterType::Triangle,
    )
}

/// `n` small photos in two folders, JPEG and PNG (as in resume.rs).
fn many_images(photos: &[image::RgbImage], input: &Path, n: usize, width: u32) {
    for i in 0..n {
        let dir = input.join(if i % 2 == 0 { "a" } else { "b" });
        fs::create_dir_all(&dir).unwrap();
        let ext = if i % 5 == 0 { "png" } else { "jpg" };
        crop(photos, i, width)
            .save(dir.join(format!("img_{i:03}.{ext}")))
            .unwrap();
    }
}

/// What a directory entry looks like, without following links: kind, size, mtime, inode, link
/// count, content hash (files) or target (links).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    len: u64,
    mtime: (i64, i64),
    ino: u64,
    nlink: u64,
    content: String,
}

/// Every entry under `dir` (links not followed), except those under `skip`; empty when `dir`
/// does not exist.
fn snapshot(dir: &Path, skip: &[&Path]) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if skip.iter().any(|s| p.starts_with(s)) {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let (kind, content) = if m.file_type().is_symlink() {
                ("link", fs::read_link(&p).unwrap().display().to_string())
            } else if m.is_dir() {
                stack.push(p.clone());
                ("dir", String::new())
            } else {
                (
                    "file",
                    blake3::hash(&fs::read(&p).unwrap()).to_hex().to_string(),
                )
            };
            out.insert(
                p,
                Entry {
                    kind,
                    len: if kind == "dir" { 0 } else { m.len() },
                    mtime: (m.mtime(), m.mtime_nsec()),
                    ino: m.ino(),
                    nlink: m.nlink(),
                    content,
                },
            );
        }
    }
    out
}

/// Every file under `dir` by relative path (links not followed), except the run summary.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    snapshot(dir, &[])
        .into_iter()
        .filter(|(_, e)| e.kind != "dir")
        .map(|(p, _)| {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let bytes = fs::read(&p).unwrap_or_default();
            (rel, bytes)
        })
        .filter(|(rel, _)| rel != "veil-run.json")
        .collect()
}

fn b3(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Deterministic pseudo-random numbers (xorshift64*), so every run kills at the same points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Spawns `cmd`, waits until `fire(elapsed)` says so (or the process ends), then SIGKILLs it.
/// Returns true when the process was still running at the kill.
fn kill_when(cmd: &mut Command, mut fire: impl FnMut(Duration) -> bool) -> bool {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if fire(t0.elapsed()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    running
}

fn count_lines(p: &Path) -> usize {
    fs::read(p)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Runs veil with `--ledger L` appended.
fn lv(ledger: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = args.to_vec();
    all.push(&"--ledger");
    all.push(&ledger);
    run(&all)
}

/// Copies a directory tree (files and directories only).
fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_tree(&e.path(), &dst.join(e.file_name()));
        } else if ft.is_file() {
            fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

/// The raw bytes the terminal would get: no ESC, BEL, CR or other control character but `\n`.
fn assert_no_raw_controls(what: &str, text: &str) {
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        panic!(
            "{what} carries a raw control character {c:?}:\n{}",
            text.escape_debug()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Paths

/// Links leaving the input (to a file, to a directory, to the input's parent), link loops and
/// dangling links are not followed; a link to a file inside the input is read as that file; a
/// hard link is a regular file of the dataset and is processed (its bytes are in the dataset),
/// and its output is a new file, not another link to the same inode. Names with `..` inside a
/// component are ordinary names; no record path has a `..` component or is absolute. Nothing
/// outside the output directory changes (hashes, sizes, mtimes, inodes, link counts).
#[test]
fn input_links_and_hard_links_never_lead_reads_or_writes_outside() {
    let t = tempfile::tempdir().unwrap();
    let photos = sample_photos(t.path());
    let outside = t.path().join("outside");
    fs::create_dir_all(outside.join("dir")).unwrap();
    crop(&photos, 0, 96)
        .save(outside.join("secret.png"))
        .unwrap();
    crop(&photos, 1, 96)
        .save(outside.join("dir/inner.png"))
        .unwrap();
    crop(&photos, 2, 96).save(outside.join("hard.png")).unwrap();
    fs::write(outside.join("notes.txt"), "outside notes").unwrap();

    let input = t.path().join("in");
    fs::create_dir_all(input.join("sub")).unwrap();
    crop(&photos, 3, 96).save(input.join("a.png")).unwrap();
    crop(&photos, 4, 96).save(input.join("..x.png")).unwrap();
    crop(&photos, 5, 96)
        .save(input.join("sub/..dots...png"))
        .unwrap();
    symlink(outside.join("secret.png"), input.join("link_file.png")).unwrap();
    symlink(&outside, input.join("link_dir")).unwrap();
    symlink("..", input.join("sub/up")).unwrap();
    symlink("loop_b.jpg", input.join("loop_a.jpg")).unwrap();
    symlink("loop_a.jpg", input.join("loop_b.jpg")).unwrap();
    symlink(t.path().join("nowhere.png"), input.join("dangling.png")).unwrap();
    symlink("../a.png", input.join("sub/inside_link.png")).unwrap();
    symlink(outside.join("notes.txt"), input.join("notes.txt")).unwrap();
    fs::hard_link(outside.join("hard.png"), input.join("hard.png")).unwrap();

    let out = t.path().join("out");
    let before = snapshot(t.path(), &[&out]);
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q", &"--copy-other"]);
    assert_eq!(code, 0, "{err}");
    let after = snapshot(t.path(), &[&out]);
    assert_eq!(
        before, after,
        "something outside the output directory changed"
    );

    let recs = provenance(&out);
    let mut paths: Vec<&str> = recs.iter().map(|r| r["path"].as_str().unwrap()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "..x.png",
            "a.png",
            "hard.png",
            "sub/..dots...png",
            "sub/inside_link.png"
        ]
    );
    for p in &paths {
        assert!(
            !p.starts_with('/') && p.split('/').all(|c| c != ".." && c != "." && !c.is_empty()),
            "unsafe record path {p:?}"
        );
    }
    for r in &recs {
        assert_ne!(r["status"], "failed", "{r}");
    }
    // The output tree holds regular files only, each a new inode (the hard-linked input's output
    // is not the outside file), and nothing reached through a link.
    let outputs = snapshot(&out, &[]);
    let inodes: std::collections::BTreeSet<u64> = after.values().map(|e| e.ino).collect();
    for (p, e) in &outputs {
        assert_ne!(e.kind, "link", "{} is a link", p.display());
        if e.kind == "file" {
            assert!(!inodes.contains(&e.ino), "{} shares an inode", p.display());
            assert_eq!(e.nlink, 1, "{} has other names", p.display());
        }
    }
    let rels: Vec<String> = outputs
        .keys()
        .map(|p| p.strip_prefix(&out).unwrap().to_string_lossy().into_owned())
        .collect();
    for gone in [
        "link_file.png",
        "link_dir",
        "sub/up",
        "loop_a.jpg",
        "loop_b.jpg",
        "dangling.png",
        "notes.txt",
    ] {
        assert!(
            !rels.iter().any(|r| r.starts_with(gone)),
            "{gone} was followed: {rels:?}"
        );
    }
    let hard = recs.iter().find(|r| r["path"] == "hard.png").unwrap();
    assert_eq!(
        hard["source_blake3"].as_str().unwrap(),
        b3(&fs::read(outside.join("hard.png")).unwrap()),
        "the hard link's own bytes are what was read"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("veil-run.json")).unwrap()).unwrap();
    let skipped: Vec<&str> = summary["skipped_links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for (name, why) in [
        ("link_file.png", "leaving the input"),
        ("link_dir", "directory"),
        ("sub/up", "directory"),
        ("loop_a.jpg", "symlink"),
        ("loop_b.jpg", "symlink"),
        ("dangling.png", "dangling"),
        ("notes.txt", "leaving the input"),
    ] {
        assert!(
            skipped
                .iter()
                .any(|s| s.starts_with(&format!("{name}: ")) && s.contains(why)),
            "{name} not listed as skipped ({why}): {skipped:?}"
        );
    }
}

/// Links planted in the output tree at the names veil writes (an image, provenance.jsonl and
/// veil-run.json) are replaced by the new files (write to a temporary name, rename over the
/// link); the files they point to are never written.
#[test]
fn links_planted_at_output_names_are_replaced_not_written_through() {
    let t = tempfile::tempdir().unwrap();
    let photos = sample_photos(t.path());
    let input = t.path().join("in");
    fs::create_dir_all(&input).unwrap();
    crop(&photos, 0, 160).save(input.join("a.png")).unwrap();
    crop(&photos, 1, 160).save(input.join("b.jpg")).unwrap();
    let victims = t.path().join("victims");
    fs::create_dir_all(&victims).unwrap();
    let out = t.path().join("out");
    fs::create_dir_all(&out).unwrap();
    for name in ["a.png", "b.jpg", "provenance.jsonl", "veil-run.json"] {
        fs::write(victims.join(name), format!("victim {name}\n")).unwrap();
        symlink(victims.join(name), out.join(name)).unwrap();
    }
    let before = snapshot(&victims, &[]);
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(snapshot(&victims, &[]), before, "a victim file was written");
    for name in ["a.png", "b.jpg", "provenance.jsonl", "veil-run.json"] {
        let m = fs::symlink_metadata(out.join(name)).unwrap();
        assert!(m.is_file(), "{name} is still a link");
    }
    for r in provenance(&out) {
        let bytes = fs::read(out.join(r["path"].as_str().unwrap())).unwrap();
        assert_eq!(r["output_blake3"].as_str().unwrap(), b3(&bytes));
    }
}

/// Links planted at the temporary names veil writes before renaming (`.NAME.veil-partial`,
/// `provenance.jsonl.partial`, `.veil-run.json.veil-partial`) and a directory link in the output
/// tree must not make veil write (or delete) files outside the output: links at temporary names
/// are removed (not followed) and replaced by veil's files; an image whose output directory is a
/// link fails, naming the link, which is left alone.
#[test]
fn links_planted_at_temporary_names_and_output_directories_are_not_written_through() {
    let t = tempfile::tempdir().unwrap();
    let photos = sample_photos(t.path());
    let input = t.path().join("in");
    fs::create_dir_all(input.join("sub")).unwrap();
    crop(&photos, 0, 160).save(input.join("a.png")).unwrap();
    crop(&photos, 1, 160).save(input.join("sub/b.png")).unwrap();
    fs::write(input.join("sub/broken.png"), b"not a png").unwrap();
    let victims = t.path().join("victims");
    fs::create_dir_all(&victims).unwrap();
    // A file the fail-closed removal of sub/broken.png would delete through the directory link.
    fs::write(victims.join("broken.png"), b"victim broken.png").unwrap();
    let out = t.path().join("out");
    fs::create_dir_all(&out).unwrap();
    for name in [
        ".a.png.veil-partial",
        "provenance.jsonl.partial",
        ".veil-run.json.veil-partial",
    ] {
        fs::write(victims.join(name), format!("victim {name}\n")).unwrap();
        symlink(victims.join(name), out.join(name)).unwrap();
    }
    symlink(&victims, out.join("sub")).unwrap();
    let before = snapshot(&victims, &[]);
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        snapshot(&victims, &[]),
        before,
        "a file outside the output was written or deleted"
    );
    for (p, e) in snapshot(&out, &[]) {
        if p != out.join("sub") {
            assert_ne!(e.kind, "link", "{} is a link in the output", p.display());
        }
    }
    let recs = provenance(&out);
    let b = recs.iter().find(|r| r["path"] == "sub/b.png").unwrap();
    assert_eq!(b["status"], "failed", "{b}");
    let why = b["error"].as_str().unwrap();
    assert!(
        why.contains(&out.join("sub").display().to_string()) && why.contains("symbolic link"),
        "{why}"
    );
    assert!(recs
        .iter()
        .any(|r| r["path"] == "a.png" && r["status"] != "failed"));
    assert!(fs::symlink_metadata(out.join("sub")).unwrap().is_symlink());
}

/// Record and manifest paths that leave their tree (`..`, absolute, `a/../../x`): `release build`
/// refuses them; a crafted release carrying them (hashes and Merkle root consistent) is refused
/// when it is loaded, by `release verify` and by `ledger import`, so the decoys outside are never
/// read, catalogued or purged.
#[test]
fn record_and_manifest_paths_cannot_leave_their_tree() {
    let t = tempfile::tempdir().unwrap();
    let photos = sample_photos(t.path());
    let input = t.path().join("in");
    fs::create_dir_all(&input).unwrap();
    for (i, name) in ["a.png", "b.jpg", "c.jpg"].iter().enumerate() {
        crop(&photos, i, 96).save(input.join(name)).unwrap();
    }
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    let root = t.path().join("manifests");
    let build = |tree: &Path, version: &str| release_build(tree, "d", version, &root);
    let (code, _, err) = build(&out, "1");
    assert_eq!(code, 0, "{err}");

    // Decoys outside the output tree, where `out/../x.png`, an absolute path and `a/../../y.png`
    // (with `out/a/` present) lead.
    let decoys = [
        ("../x.png".to_string(), t.path().join("x.png")),
        (
            t.path().join("abs.png").to_string_lossy().into_owned(),
            t.path().join("abs.png"),
        ),
        ("a/../../y.png".to_string(), t.path().join("y.png")),
    ];
    fs::create_dir_all(out.join("a")).unwrap();
    for (i, (_, file)) in decoys.iter().enumerate() {
        fs::write(file, format!("decoy {i}")).unwrap();
    }
    let decoy_state = || {
        decoys
            .iter()
            .map(|(_, f)| fs::read(f).ok())
            .collect::<Vec<_>>()
    };
    let decoys_before = decoy_state();

    // 1. A records file naming such a path is refused by `release build`.
    for (bad, file) in &decoys {
        let tree = t.path().join("tampered-out");
        let _ = fs::remove_dir_all(&tree);
        copy_tree(&out, &tree);
        let text = fs::read_to_string(tree.join("provenance.jsonl")).unwrap();
        let mut lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let bytes = fs::read(file).unwrap();
        lines[0]["path"] = bad.as_str().into();
        lines[0]["output_blake3"] = b3(&bytes).into();
        lines[0]["output_size"] = bytes.len().into();
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        fs::write(tree.join("provenance.jsonl"), text).unwrap();
        let (code, _, err) = build(&tree, "9");
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("unsafe item path"), "{bad}: {err}");
        assert!(!root.join("d/9").exists());
    }

    // 2. A crafted release (hashes and Merkle root recomputed, so it loads) listing them.
    let (info1, items1) = veil_ledger::load_release(&root, "d", "1").unwrap();
    let mut items = items1.clone();
    for (bad, file) in &decoys {
        let bytes = fs::read(file).unwrap();
        let mut item = items1[0].clone();
        item.path = bad.clone();
        item.size = bytes.len() as u64;
        item.blake3 = b3(&bytes);
        item.source_blake3 = Some(b3(format!("source of {bad}").as_bytes()));
        item.source_phash = None;
        item.output_phash = None;
        items.push(item);
    }
    items.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest: String = items
        .iter()
        .map(|i| veil_ledger::manifest_line(i) + "\n")
        .collect();
    let mut info = info1.clone();
    info.version = "2".into();
    info.parent = None;
    info.items = items.len() as u64;
    info.bytes = items.iter().map(|i| i.size).sum();
    info.manifest_blake3 = b3(manifest.as_bytes());
    info.merkle_root = veil_ledger::merkle::root(&veil_ledger::leaf_hashes(&items))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir2 = root.join("d/2");
    fs::create_dir_all(&dir2).unwrap();
    fs::write(dir2.join("manifest.jsonl"), manifest).unwrap();
    fs::write(
        dir2.join("release.json"),
        serde_json::to_string_pretty(&info).unwrap() + "\n",
    )
    .unwrap();
    let (code, stdout, err) = run(&[
        &"release",
        &"verify",
        &out,
        &"--release",
        &"d@2",
        &"--root",
        &root,
    ]);
    // Such a release is refused when it is loaded, naming the path, so nothing is ever verified,
    // imported or purged by it (`takedown purge` also leaves unsafe paths alone: veil-takedown
    // `requests.rs` unit tests).
    assert_eq!(code, 2, "{stdout}{err}");
    assert!(err.contains("unsafe item path"), "{err}");

    // 3. Imported into a ledger: refused too, and the decoys stay.
    let ledger = root.join("ledger.sqlite");
    let (code, stdout, err) = lv(&ledger, &[&"ledger", &"import", &"--root", &root]);
    assert_eq!(code, 2, "{stdout}{err}");
    assert!(err.contains("unsafe item path"), "{err}");
    assert_eq!(decoy_state(), decoys_before, "a decoy outside was touched");
    for name in ["a.png", "b.jpg", "c.jpg"] {
        assert!(out.join(name).is_file(), "{name} was removed");
    }
}

/// `veil check` must not read a file outside the output tree because a record names it.
#[test]
fn check_refuses_record_paths_that_leave_the_output() {
    let t = tempfile::tempdir().unwrap();
    let photos = sample_photos(t.path());
    let input = t.path().join("in");
    fs::create_dir_all(&input).unwrap();
    crop(&photos, 1, 96).save(input.join("a.png")).unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    // A decodable decoy outside, and the record pointed at it.
    fs::copy(out.join("a.png"), t.path().join("x.png")).unwrap();
    let text = fs::read_to_string(out.join("provenance.jsonl")).unwrap();
    fs::write(
        out.join("provenance.jsonl"),
        text.replace("\"path\":\"a.png\"", "\"path\":\"../x.png\""),
    )
    .unwrap();
    let (code, _, err) = run(&[&"check", &out, &"-q"]);
    assert_eq!(code, 1, "the outside file was checked: {err}");
    assert!(err.contains("../x.png"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Crash safety

/// What a killed `veil redact` may leave: every image under a final name is complete (decodes,
/// ends with its format's end marker) and, when a record names it, has the recorded size and
/// blake3; every complete record line parses and names an existing output with its hash; only the
/// last line may be torn; no path is recorded twice; veil-run.json, when present, is complete.
fn check_killed_tree(input: &Path, out: &Path) -> String {
    let prov = out.join("provenance.jsonl");
    let bytes = fs::read(&prov).unwrap_or_default();
    let mut segs: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let tail = segs.pop().unwrap_or_default(); // after the last newline: empty or torn
    let mut records: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (i, s) in segs.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_slice(s).unwrap_or_else(|e| {
            panic!(
                "line {} of provenance.jsonl is not a complete record ({e}): {}",
                i + 1,
                String::from_utf8_lossy(s)
            )
        });
        let p = v["path"].as_str().unwrap().to_string();
        assert!(input.join(&p).is_file(), "record for unknown {p}");
        assert!(records.insert(p.clone(), v).is_none(), "{p} recorded twice");
    }
    for (p, r) in &records {
        assert_ne!(r["status"], "failed", "{r}");
        let f = out.join(p);
        let data = fs::read(&f).unwrap_or_else(|e| panic!("recorded output {p} unreadable: {e}"));
        assert_eq!(r["output_blake3"].as_str().unwrap(), b3(&data), "{p}");
        assert_eq!(r["output_size"].as_u64().unwrap(), data.len() as u64, "{p}");
    }
    let mut images = 0;
    let mut partials = 0;
    for (p, e) in snapshot(out, &[]) {
        let rel = p.strip_prefix(out).unwrap().to_string_lossy().into_owned();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert_ne!(e.kind, "link", "{rel}");
        if e.kind == "dir" {
            continue;
        }
        if name.ends_with(".veil-partial") || name == "provenance.jsonl.partial" {
            partials += 1;
            continue;
        }
        match rel.as_str() {
            "provenance.jsonl" => continue,
            "veil-run.json" => {
                let v: Result<serde_json::Value, _> =
                    serde_json::from_slice(&fs::read(&p).unwrap());
                assert!(v.is_ok(), "veil-run.json is incomplete");
                continue;
            }
            _ => {}
        }
        images += 1;
        assert!(input.join(&rel).is_file(), "unexpected output {rel}");
        let data = fs::read(&p).unwrap();
        let complete = if rel.ends_with(".png") {
            data.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82])
        } else {
            data.ends_with(&[0xff, 0xd9])
        };
        assert!(complete, "{rel} has no end marker: a half-written file");
        image::load_from_memory(&data).unwrap_or_else(|e| panic!("{rel} does not decode: {e}"));
        if let Some(r) = records.get(&rel) {
            assert_eq!(r["output_blake3"].as_str().unwrap(), b3(&data), "{rel}");
        }
    }
    format!(
        "{} records, {images} outputs, {partials} partial files, torn tail {} bytes",
        records.len(),
        tail.len()
    )
}

/// Whether an output is being written: a temporary file exists in the output tree.
fn writing(out: &Path) -> bool {
    ["a", "b"].iter().any(|d| {
        fs::read_dir(out.join(d)).is_ok_and(|mut entries| {
            entries.any(|e| {
                e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".veil-partial"))
            })
        })
    })
}

/// `veil redact` over 120 photos killed with SIGKILL at 8 pseudo-random points from start-up to
/// the final sort of the records: after each kill the tree satisfies [`check_killed_tree`]; a last
/// run completes and equals an uninterrupted run byte for byte (outputs and provenance.jsonl).
#[test]
fn redact_killed_at_random_points_leaves_only_complete_files_and_records() {
    let t = tempfile::tempdir().unwrap();
    let photos = sample_photos(t.path());
    let n = 120;
    let input = t.path().join("in");
    many_images(&photos, &input, n, 200);
    let reference = t.path().join("reference");
    let t0 = Instant::now();
    let (code, _, err) = run(&[&"redact", &input, &reference, &"-q", &"--jobs", &"2"]);
    assert_eq!(code, 0, "{err}");
    let full_ms = t0.elapsed().as_millis() as u64;
    let expected = tree(&reference);

    let out = t.path().join("out");
    let records = out.join("provenance.jsonl");
    let mut rng = Rng(0x7e11_5eed_0000_0007);
    // Record-count targets, one in each fifth of the run; kills by time (start-up, model loading,
    // resume planning, records rewrite); one while an output is being written (a temporary file
    // exists); one at the very end (final sort, run summary).
    let fifth = n as u64 / 5;
    let targets: Vec<u64> = (0..5)
        .map(|k| k * fifth + 1 + rng.below(fifth - 1))
        .collect();
    let plan: Vec<(&str, u64)> = vec![
        ("ms", rng.below(400)),
        ("records", targets[0]),
        ("ms", 200 + rng.below(full_ms / 3)),
        ("records", targets[1]),
        ("records", targets[2]),
        ("partial", targets[3]),
        ("records", targets[4]),
        ("records", n as u64),
    ];
    for (i, (how, at)) in plan.into_iter().enumerate() {
        let extra = Duration::from_millis(if how == "partial" { 0 } else { rng.below(25) });
        let mut fired: Option<Duration> = None;
        let mut cmd = veil();
        cmd.args(["redact".as_ref(), input.as_os_str(), out.as_os_str()])
            .args(["-q", "--jobs", "2"]);
        let running = kill_when(&mut cmd, |elapsed| {
            if let Some(f) = fired {
                return elapsed >= f + extra;
            }
            let hit = match how {
                "ms" => elapsed >= Duration::from_millis(at),
                "partial" => count_lines(&records) as u64 >= at && writing(&out),
                _ => count_lines(&records) as u64 >= at,
            };
            if hit {
                fired = Some(elapsed);
            }
            false
        });
        let state = check_killed_tree(&input, &out);
        eprintln!(
            "kill {i} ({how} {at}, +{} ms): {}; {state}",
            extra.as_millis(),
            if running { "killed" } else { "had finished" }
        );
    }
    let (code, _, err) = run(&[&"redact", &input, &out, &"--jobs", &"2"]);
    assert_eq!(code, 0, "{err}");
    let got = tree(&out);
    assert_eq!(
        got.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        expected.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        "file lists differ (partial files left?)"
    );
    for ((p, a), (_, b)) in got.iter().zip(&expected) {
        assert!(a == b, "{p} differs from the uninterrupted run");
    }
}

/// `veil release build`, `veil ledger import` and `veil takedown apply` killed at pseudo-random
/// points: a release directory is absent or complete (and verifies); the ledger always passes
/// `veil ledger verify`; re-running the command completes the work (an interrupted apply's
/// release is adopted).
#[test]
fn release_import_and_apply_killed_at_random_points_leave_old_or_new_state() {
    let t = tempfile::tempdir().unwrap();
    let photos = sample_photos(t.path());
    let input = t.path().join("in");
    many_images(&photos, &input, 40, 96);
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    let mut rng = Rng(0x5eed_0000_0000_0b0b);
    let kills = 8;

    // Release build: each attempt into a fresh root.
    let build = |root: &Path| {
        let mut c = veil();
        c.arg("release")
            .arg("build")
            .arg(&out)
            .args(["--dataset", "d", "--version", "1", "--root"])
            .arg(root);
        c
    };
    let base = t.path().join("base");
    let t0 = Instant::now();
    assert!(build(&base).output().unwrap().status.success());
    let build_us = t0.elapsed().as_micros() as u64;
    let mut mid = 0;
    for i in 0..kills {
        let root = t.path().join(format!("build-{i}"));
        let at = Duration::from_micros(rng.below(build_us + build_us / 4));
        mid += usize::from(kill_when(&mut build(&root), |e| e >= at));
        if root.join("d/1").exists() {
            let (code, stdout, err) = run(&[
                &"release",
                &"verify",
                &out,
                &"--release",
                &"d@1",
                &"--root",
                &root,
            ]);
            assert_eq!(code, 0, "kill {i}: release left incomplete: {stdout}{err}");
        }
        // Building again completes it (or finds it complete).
        let (code, _, err) = release_build(&out, "d", "1", &root);
        assert!(
            code == 0 || err.contains("already exists"),
            "kill {i}: {err}"
        );
        let (code, stdout, err) = run(&[
            &"release",
            &"verify",
            &out,
            &"--release",
            &"d@1",
            &"--root",
            &root,
        ]);
        assert_eq!(code, 0, "kill {i}: {stdout}{err}");
    }
    eprintln!(
        "release build: {mid} of {kills} kills landed while running ({build_us} us per build)"
    );

    // Ledger import into an initialised ledger.
    let import = |ledger: &Path| {
        let mut c = veil();
        c.args(["ledger", "import", "--root"])
            .arg(&base)
            .arg("--ledger")
            .arg(ledger);
        c
    };
    let probe = t.path().join("probe.sqlite");
    assert_eq!(lv(&probe, &[&"ledger", &"init"]).0, 0);
    let t0 = Instant::now();
    assert!(import(&probe).output().unwrap().status.success());
    let import_us = t0.elapsed().as_micros() as u64;
    let mut mid = 0;
    for i in 0..kills {
        let ledger = t.path().join(format!("ledger-{i}.sqlite"));
        assert_eq!(lv(&ledger, &[&"ledger", &"init"]).0, 0);
        let at = Duration::from_micros(rng.below(import_us + import_us / 4));
        mid += usize::from(kill_when(&mut import(&ledger), |e| e >= at));
        let (code, stdout, err) = lv(&ledger, &[&"ledger", &"verify"]);
        assert_eq!(code, 0, "kill {i}: {stdout}{err}");
        let (code, stdout, err) = lv(&ledger, &[&"ledger", &"import", &"--root", &base]);
        assert_eq!(code, 0, "kill {i}: {stdout}{err}");
        assert!(
            stdout.contains("imported d@1: 40 items") || stdout.contains("already in the ledger"),
            "{stdout}"
        );
        let (code, stdout, err) = lv(&ledger, &[&"ledger", &"verify"]);
        assert_eq!(code, 0, "kill {i}: {stdout}{err}");
    }
    eprintln!(
        "ledger import: {mid} of {kills} kills landed while running ({import_us} us per import)"
    );

    // Takedown apply of a confirmed request: each attempt on a fresh copy of the catalogue.
    let ledger = base.join("ledger.sqlite");
    let (code, _, err) = lv(&ledger, &[&"ledger", &"import", &"--root", &base]);
    assert_eq!(code, 0, "{err}");
    let (code, stdout, err) = lv(
        &ledger,
        &[
            &"takedown",
            &"open",
            &"--dataset",
            &"d",
            &"--path",
            &"a/img_004.jpg",
            &"--requester",
            &"R",
            &"--contact",
            &"r@example.org",
            &"--basis",
            &"privacy",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = stdout.split('\t').next().unwrap().to_string();
    assert_eq!(lv(&ledger, &[&"takedown", &"match", &id]).0, 0);
    assert_eq!(
        lv(&ledger, &[&"takedown", &"confirm", &id, &"a/img_004.jpg"]).0,
        0
    );
    let apply = |root: &Path| {
        let mut c = veil();
        c.args(["takedown", "apply", id.as_str(), "--root"])
            .arg(root)
            .arg("--ledger")
            .arg(root.join("ledger.sqlite"));
        c
    };
    let probe = t.path().join("apply-probe");
    copy_tree(&base, &probe);
    let t0 = Instant::now();
    assert!(apply(&probe).output().unwrap().status.success());
    let apply_us = t0.elapsed().as_micros() as u64;
    let mut mid = 0;
    for i in 0..kills {
        let root = t.path().join(format!("apply-{i}"));
        copy_tree(&base, &root);
        let ledger = root.join("ledger.sqlite");
        let at = Duration::from_micros(rng.below(apply_us + apply_us / 4));
        mid += usize::from(kill_when(&mut apply(&root), |e| e >= at));
        let (code, stdout, err) = lv(&ledger, &[&"ledger", &"verify"]);
        assert_eq!(code, 0, "kill {i}: {stdout}{err}");
        let loads = || run(&[&"release", &"diff", &"d@1", &"d@2", &"--root", &root]);
        if root.join("d/2").exists() {
            let (code, stdout, err) = loads();
            assert_eq!(code, 0, "kill {i}: release d@2 incomplete: {stdout}{err}");
        }
        let (code, stdout, err) = lv(&ledger, &[&"takedown", &"apply", &id, &"--root", &root]);
        assert!(
            code == 0 || err.contains("already applied"),
            "kill {i}: apply cannot be completed: {stdout}{err}"
        );
        let (code, stdout, err) = loads();
        assert_eq!(code, 0, "kill {i}: {stdout}{err}");
        assert!(stdout.contains("0 added, 1 removed, 0 changed"), "{stdout}");
        let (code, shown, _) = lv(&ledger, &[&"takedown", &"show", &id]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(v["request"]["status"], "applied", "kill {i}");
        let (code, stdout, err) = lv(&ledger, &[&"ledger", &"verify"]);
        assert_eq!(code, 0, "kill {i}: {stdout}{err}");
    }
    eprintln!(
        "takedown apply: {mid} of {kills} kills landed while running ({apply_us} us per apply)"
    );
}

/// A ledger killed while it is being created (`ledger init`, or the first `ledger import`) is
/// absent or usable afterwards: running the command again succeeds.
#[test]
fn ledger_killed_while_being_created_is_absent_or_usable() {
    let t = tempfile::tempdir().unwrap();
    let mut broken = Vec::new();
    for i in 0..60u64 {
        let ledger = t.path().join(format!("l{i}.sqlite"));
        let at = Duration::from_micros(i * 150);
        let mut c = veil();
        c.args(["ledger", "init", "--ledger"]).arg(&ledger);
        kill_when(&mut c, |e| e >= at);
        let (code, _, err) = lv(&ledger, &[&"ledger", &"init"]);
        if code != 0 {
            broken.push(format!("kill after {at:?}: {}", err.trim()));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Escaping

/// A hostile file name (no `/`, which no name can hold): newline, ANSI escape, quotes, a script
/// tag, an HTML entity.
const HOSTILE: &str = "evil\n\u{1b}[31m\"q'<script>alert(1)&amp;";

/// File names with control characters are escaped wherever veil prints them and round-trip
/// exactly in provenance.jsonl and veil-run.json; requester names and notes in the ledger and the
/// unauthenticated fields of a proof are escaped on the terminal and exact in JSON.
#[test]
fn hostile_names_and_notes_are_escaped_on_the_terminal_and_exact_in_json() {
    let t = tempfile::tempdir().unwrap();
    let photos = sample_photos(t.path());
    let input = t.path().join("in");
    fs::create_dir_all(&input).unwrap();
    crop(&photos, 1, 96).save(input.join("good.png")).unwrap();
    let bad = format!("{HOSTILE}.jpg");
    fs::write(input.join(&bad), b"not an image at all").unwrap();
    let link = format!("link\u{1b}[2J\u{7}{HOSTILE}.png");
    symlink(t.path().join("sample/astronaut.png"), input.join(&link)).unwrap();
    let other = format!("notes\r\u{1b}]0;title\u{7}{HOSTILE}.txt");
    fs::write(input.join(&other), b"annotations").unwrap();
    let out = t.path().join("out");
    let (code, stdout, err) = run(&[&"redact", &input, &out]);
    assert_eq!(code, 1, "{err}");
    assert_no_raw_controls("redact stdout", &stdout);
    assert_no_raw_controls("redact stderr", &err);
    for name in [&bad, &link, &other] {
        assert!(
            err.contains(&name.escape_debug().to_string()),
            "{} not printed escaped:\n{}",
            name.escape_debug(),
            err.escape_debug()
        );
    }
    for l in err.lines().filter(|l| l.contains("<script>")) {
        assert!(l.contains("evil"), "a name was split across lines: {l:?}");
    }
    let recs = provenance(&out);
    let r = recs.iter().find(|r| r["path"] == bad.as_str()).unwrap();
    assert_eq!(r["status"], "failed");
    assert!(!out.join(&bad).exists());
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("veil-run.json")).unwrap()).unwrap();
    assert!(summary["skipped_links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s.as_str().unwrap().starts_with(&format!("{link}: "))));
    assert!(summary["other_files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s.as_str().unwrap() == other));

    // The ledger: a requester name, a note and a recipient with control characters.
    let root = t.path().join("manifests");
    let (code, _, err) = release_build(&out, "d", "1", &root);
    assert_eq!(code, 0, "{err}");
    let ledger = root.join("ledger.sqlite");
    assert_eq!(lv(&ledger, &[&"ledger", &"import", &"--root", &root]).0, 0);
    let requester = format!("Eve {HOSTILE}");
    let note = format!("note\r\n\u{1b}[2J\u{7}{HOSTILE}");
    let (code, stdout, err) = lv(
        &ledger,
        &[
            &"takedown",
            &"open",
            &"--dataset",
            &"d",
            &"--path",
            &"good.png",
            &"--requester",
            &requester,
            &"--contact",
            &format!("e@example.org{HOSTILE}"),
            &"--basis",
            &"privacy",
            &"--note",
            &note,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_no_raw_controls("takedown open", &(stdout.clone() + &err));
    let id = stdout.split('\t').next().unwrap().to_string();
    let (code, listed, err) = lv(&ledger, &[&"takedown", &"list"]);
    assert_eq!(code, 0, "{err}");
    assert_no_raw_controls("takedown list", &listed);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.contains(&requester.escape_debug().to_string()),
        "{listed}"
    );
    let (code, shown, err) = lv(&ledger, &[&"takedown", &"show", &id]);
    assert_eq!(code, 0, "{err}");
    assert_no_raw_controls("takedown show", &shown);
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["request"]["requester"], requester.as_str());
    assert_eq!(v["request"]["note"], note.as_str());
    let (code, stdout, err) = lv(
        &ledger,
        &[
            &"recipients",
            &"add",
            &"--release",
            &"d@1",
            &"--name",
            &requester,
            &"--contact",
            &note,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_no_raw_controls("recipients add", &stdout);
    let (code, stdout, _) = lv(&ledger, &[&"recipients", &"list"]);
    assert_eq!(code, 0);
    assert_no_raw_controls("recipients list", &stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let (code, stdout, err) = lv(&ledger, &[&"takedown", &"match", &id]);
    assert_eq!(code, 0, "{err}");
    assert_no_raw_controls("takedown match", &(stdout + &err));

    // A proof is a third party's file: its dataset, version and root are not covered by the
    // Merkle path, so a valid proof can carry anything there.
    let (code, proof, err) = run(&[
        &"release",
        &"prove",
        &"d@1",
        &"--item",
        &"good.png",
        &"--root",
        &root,
    ]);
    assert_eq!(code, 0, "{err}");
    let mut p: serde_json::Value = serde_json::from_str(&proof).unwrap();
    p["dataset"] = format!("d{HOSTILE}").into();
    p["version"] = "1\u{1b}]0;owned\u{7}".into();
    let file = t.path().join("proof.json");
    fs::write(&file, p.to_string()).unwrap();
    let (code, stdout, err) = run(&[&"release", &"check-proof", &file]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert_no_raw_controls("check-proof", &stdout);
    let (code, stdout, _) = run(&[&"release", &"check-proof", &file, &"--root-hash", &"00"]);
    assert_eq!(code, 1);
    assert_no_raw_controls("check-proof --root-hash", &stdout);
    p["merkle_root"] = format!("{HOSTILE}\u{1b}[2J").into();
    fs::write(&file, p.to_string()).unwrap();
    let (code, stdout, _) = run(&[&"release", &"check-proof", &file]);
    assert_eq!(code, 1, "{stdout}");
    assert_no_raw_controls("check-proof, bad root", &stdout);
    let (code, stdout, _) = run(&[&"release", &"check-proof", &file, &"--root-hash", &"00"]);
    assert_eq!(code, 1, "{stdout}");
    assert_no_raw_controls("check-proof, bad root, --root-hash", &stdout);
}

/// A failure reason that quotes the output path (a write failure) is escaped too.
#[test]
fn write_failure_reasons_naming_a_hostile_file_are_escaped() {
    let t = tempfile::tempdir().unwrap();
    let photos = sample_photos(t.path());
    let input = t.path().join("in");
    fs::create_dir_all(&input).unwrap();
    let name = format!("{HOSTILE}.png");
    crop(&photos, 1, 96).save(input.join(&name)).unwrap();
    let out = t.path().join("out");
    // A directory where the temporary file goes makes the write fail.
    fs::create_dir_all(out.join(format!(".{name}.veil-partial"))).unwrap();
    let (code, stdout, err) = run(&[&"redact", &input, &out]);
    assert_eq!(code, 1, "{err}");
    let r = &provenance(&out)[0];
    assert_eq!(r["error_stage"], "write", "{r}");
    assert_no_raw_controls("redact stdout", &stdout);
    assert_no_raw_controls("redact stderr", &err);
}

// ---------------------------------------------------------------------------------------------
// Integrity

/// A private cache (`VEIL_CACHE_DIR`) holding copies of the verified runtime and models.
fn private_cache(t: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (code, out, err) = run(&[&"models", &"verify"]);
    assert_eq!(
        code, 0,
        "models fetched before the tests (scripts/test.sh): {out}{err}"
    );
    let path_of = |label: &str| {
        PathBuf::from(
            out.lines()
                .find(|l| l.starts_with(&format!("ok       {label}: ")))
                .unwrap_or_else(|| panic!("{label} not in: {out}"))
                .split_once(": ")
                .unwrap()
                .1
                .trim(),
        )
    };
    let lib = path_of("runtime cpu");
    // Only the float face model: the INT8 one `--device cpu` runs by default is built from it
    // without any registry.
    let model = path_of("model centerface");
    let cache = t.join("cache");
    let rt_dir = lib.parent().unwrap();
    let rt_copy = cache.join("runtime").join(rt_dir.file_name().unwrap());
    copy_tree(rt_dir, &rt_copy);
    fs::create_dir_all(cache.join("models")).unwrap();
    fs::copy(&model, cache.join("models/centerface.onnx")).unwrap();
    (
        cache.clone(),
        rt_copy.join(lib.file_name().unwrap()),
        cache.join("models/centerface-int8.onnx"),
    )
}

fn flip_byte(path: &Path) -> (String, String) {
    let mut bytes = fs::read(path).unwrap();
    let before = b3(&bytes);
    let n = bytes.len() / 2;
    bytes[n] ^= 0x20;
    fs::write(path, &bytes).unwrap();
    (before, b3(&bytes))
}

/// One byte changed in the runtime library or the model of a private cache: `veil redact` exits 2
/// before processing anything, naming the file, the pinned blake3 and the one found. One byte
/// changed in a release's manifest or release.json: `veil release verify` exits 2, naming the file
/// (or the Merkle roots) and both values.
#[test]
fn altered_runtime_model_and_release_files_are_named_with_both_hashes() {
    let t = tempfile::tempdir().unwrap();
    let (cache, lib, model) = private_cache(t.path());
    let input = t.path().join("in");
    fs::create_dir_all(&input).unwrap();
    image::RgbImage::new(64, 64)
        .save(input.join("a.png"))
        .unwrap();
    let redact = |out: &Path| {
        let o = veil()
            .env("VEIL_CACHE_DIR", &cache)
            .env_remove("ORT_DYLIB_PATH")
            .env("VEIL_PYTHON", "/nonexistent/python-never-run")
            .args(["redact".as_ref(), input.as_os_str(), out.as_os_str()])
            .args(["-q", "--device", "cpu"])
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // The copies work as they are, offline (pip cannot run): the INT8 model is built from the
    // cached float one.
    let (code, err) = redact(&t.path().join("ok"));
    assert_eq!(code, Some(0), "{err}");
    assert!(model.exists(), "{err}");
    for file in [&lib, &model] {
        let (pinned, altered) = flip_byte(file);
        let out = t.path().join("out");
        let (code, err) = redact(&out);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains(&file.display().to_string())
                && err.contains(&format!("expected {pinned}"))
                && err.contains(&format!("found {altered}")),
            "{err}"
        );
        assert!(!out.join("a.png").exists());
        // Restored: accepted again.
        flip_byte(file);
    }

    // Releases.
    let out = t.path().join("ok");
    let root = t.path().join("manifests");
    let (code, _, err) = release_build(&out, "d", "1", &root);
    assert_eq!(code, 0, "{err}");
    let verify = || {
        run(&[
            &"release",
            &"verify",
            &out,
            &"--release",
            &"d@1",
            &"--root",
            &root,
        ])
    };
    assert_eq!(verify().0, 0);
    let manifest = root.join("d/1/manifest.jsonl");
    let info: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.join("d/1/release.json")).unwrap()).unwrap();
    let original = fs::read(&manifest).unwrap();
    let (_, altered) = flip_byte(&manifest);
    let (code, stdout, err) = verify();
    assert_eq!(code, 2, "{stdout}{err}");
    assert!(
        err.contains(&manifest.display().to_string())
            && err.contains("manifest_blake3")
            && err.contains(info["manifest_blake3"].as_str().unwrap())
            && err.contains(&altered),
        "{err}"
    );
    fs::write(&manifest, original).unwrap();
    assert_eq!(verify().0, 0);

    // release.json: one hex digit of the Merkle root.
    let info_file = root.join("d/1/release.json");
    let text = fs::read_to_string(&info_file).unwrap();
    let root_hex = info["merkle_root"].as_str().unwrap();
    let last = root_hex.chars().last().unwrap();
    let changed_root = format!("{}{}", &root_hex[..63], if last == '0' { '1' } else { '0' });
    fs::write(&info_file, text.replace(root_hex, &changed_root)).unwrap();
    let (code, stdout, err) = verify();
    assert_eq!(code, 2, "{stdout}{err}");
    assert!(
        err.contains(&info_file.display().to_string())
            && err.contains(root_hex)
            && err.contains(&changed_root),
        "{err}"
    );
    // ... and one in the item count: the file and the field are named.
    fs::write(&info_file, text.replace("\"items\": 1,", "\"items\": 2,")).unwrap();
    let (code, stdout, err) = verify();
    assert_eq!(code, 2, "{stdout}{err}");
    assert!(
        err.contains(&info_file.display().to_string()) && err.contains("items"),
        "{err}"
    );
}

/// A file name that is not UTF-8 cannot be recorded under its own name: the image fails closed
/// (reported, nothing written under any name, exit 1), and the other images are redacted.
#[test]
fn an_image_whose_name_is_not_utf8_fails_closed() {
    use std::os::unix::ffi::OsStrExt;
    let t = tempfile::tempdir().unwrap();
    let photos = sample_photos(t.path());
    let input = t.path().join("in");
    fs::create_dir_all(&input).unwrap();
    crop(&photos, 1, 96).save(input.join("good.png")).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
    fs::copy(t.path().join("sample/astronaut.png"), input.join(name)).unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not valid UTF-8"), "{err}");
    let records = provenance(&out);
    assert_eq!(records.len(), 2);
    let bad = records
        .iter()
        .find(|r| r["path"] == "caf\u{fffd}.png")
        .unwrap();
    assert_eq!(bad["status"], "failed", "{bad}");
    let good = records.iter().find(|r| r["path"] == "good.png").unwrap();
    assert_ne!(good["status"], "failed", "{good}");
    let written: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.as_bytes().ends_with(b".png"))
        .collect();
    assert_eq!(written, ["good.png"], "only the good image has an output");
}
