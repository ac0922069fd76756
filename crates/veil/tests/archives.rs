//! Datasets as they ship: WebDataset shards (tar), tar.gz and zip archives of real photos are redacted into the same format, member by member, with sidecars unchanged; hostile
//! and broken archives fail closed; `veil check` finds a member changed after redaction.

mod common;

use std::io::Cursor;
use std::path::Path;

use common::archives::*;
use common::*;

fn record<'a>(records: &'a [serde_json::Value], path: &str) -> &'a serde_json::Value {
    records
        .iter()
        .find(|r| r["path"] == path)
        .unwrap_or_else(|| panic!("no record for {path}"))
}

#[test]
fn webdataset_tar_gz_and_zip_come_out_in_the_same_format_with_faces_hidden() {
    let t = tempfile::tempdir().unwrap();
    let members = samples(t.path());
    let input = t.path().join("in");
    std::fs::create_dir_all(input.join("shards")).unwrap();
    std::fs::write(input.join("shards/000000.tar"), tar_of(&members)).unwrap();
    std::fs::write(input.join("shards/000001.tgz"), gz(&tar_of(&members))).unwrap();
    std::fs::write(input.join("photos.zip"), zip_of(&members)).unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    let records = provenance(&out);
    for (archive, format) in [
        ("shards/000000.tar", "tar"),
        ("shards/000001.tgz", "tar.gz"),
        ("photos.zip", "zip"),
    ] {
        let got = members_of(&out.join(archive));
        // Same members, same order; sidecars byte-identical.
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        let want: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, want, "{archive}");
        for ((name, data), (_, source)) in got.iter().zip(&members) {
            if name.ends_with(".json") || name.ends_with(".txt") {
                assert_eq!(data, source, "{archive}#{name} is unchanged");
            }
        }
        let rec = record(&records, archive);
        assert_eq!(rec["status"], "redacted");
        assert_eq!(rec["format"], format);
        let written = std::fs::read(out.join(archive)).unwrap();
        assert_eq!(
            rec["output_blake3"].as_str().unwrap(),
            blake3_hex(&written),
            "{archive}: the record names the archive written"
        );
        // Every image member has its record, hashes matching the bytes inside the archive.
        for (name, data) in &got {
            if name.ends_with(".json") || name.ends_with(".txt") {
                continue;
            }
            let m = record(&records, &format!("{archive}#{name}"));
            assert_eq!(m["archive"], archive);
            assert_eq!(m["output_blake3"].as_str().unwrap(), blake3_hex(data));
        }
        // The astronaut's face: detected and hidden inside the archive.
        let (astro_name, astro_out) = got
            .iter()
            .find(|(n, _)| {
                let r = record(&records, &format!("{archive}#{n}"));
                r["detections"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|d| d["class"] == "face"))
                    && n.starts_with("000000")
            })
            .unwrap_or_else(|| panic!("{archive}: no face found in the astronaut"));
        let r = record(&records, &format!("{archive}#{astro_name}"));
        let face = r["detections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["class"] == "face")
            .unwrap();
        let b = &face["box"];
        let bbox = [
            b["x1"].as_f64().unwrap(),
            b["y1"].as_f64().unwrap(),
            b["x2"].as_f64().unwrap(),
            b["y2"].as_f64().unwrap(),
        ];
        let source = members.iter().find(|(n, _)| n == astro_name).unwrap();
        let before = image::load_from_memory(&source.1).unwrap().to_rgb8();
        let after = image::load_from_memory(astro_out).unwrap().to_rgb8();
        let (v0, v1) = (
            laplacian_variance(&before, bbox),
            laplacian_variance(&after, bbox),
        );
        assert!(
            v1 < v0 * 0.2,
            "{archive}#{astro_name}: face sharpness {v0} -> {v1}"
        );
    }

    // The check reads the archives: clean now, and a member swapped back to its source is found.
    let (code, _, err) = run(&[&"check", &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    let tampered: Vec<(String, Vec<u8>)> = members_of(&out.join("shards/000000.tar"))
        .into_iter()
        .zip(&members)
        .map(|((n, d), (_, src))| {
            if n == "000000.png" {
                (n, src.clone())
            } else {
                (n, d)
            }
        })
        .collect();
    std::fs::write(out.join("shards/000000.tar"), tar_of(&tampered)).unwrap();
    let (code, _, err) = run(&[&"check", &out, &"-q"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("shards/000000.tar#000000.png")
            && err.contains("CHANGED")
            && err.contains("LEAK"),
        "{err}"
    );
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[test]
fn broken_and_hostile_archives_fail_closed() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let png = {
        let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([9, (x * 3) as u8, y as u8]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    };
    let ok = |n: &str| (n.to_string(), png.clone());
    // Truncated: cut in the middle of the second member.
    let whole = tar_of(&[ok("a.png"), ok("b.png")]);
    std::fs::write(input.join("truncated.tar"), &whole[..1800]).unwrap();
    // A member that climbs out, written by hand (the tar crate refuses to).
    let mut evil = tar_of(&[ok("a.png"), ok("xxxxxxxxxx.png")]);
    let at = evil
        .windows(14)
        .position(|w| w == b"xxxxxxxxxx.png")
        .unwrap();
    evil[at..at + 14].copy_from_slice(b"../../evil.png");
    let header = at - (at % 512);
    let sum: u32 = evil[header..header + 512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum();
    evil[header + 148..header + 156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    std::fs::write(input.join("traversal.tar"), evil).unwrap();
    // An archive inside an archive, and a member that is no image at all though it says so.
    let inner = zip_of(&[ok("inner.png")]);
    std::fs::write(
        input.join("nested.tar"),
        tar_of(&[
            ok("a.png"),
            ("inner.zip".into(), inner),
            ("c.json".into(), b"{}".to_vec()),
        ]),
    )
    .unwrap();
    let mut cut = png.clone();
    cut.truncate(png.len() / 2);
    std::fs::write(
        input.join("badmember.zip"),
        zip_of(&[ok("a.png"), ("b.png".into(), cut)]),
    )
    .unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 1, "{err}");
    let records = provenance(&out);

    for (archive, why) in [
        ("truncated.tar", "unreadable"),
        ("traversal.tar", "../../evil.png"),
    ] {
        let r = record(&records, archive);
        assert_eq!(r["status"], "failed", "{archive}");
        assert!(r["error"].as_str().unwrap().contains(why), "{r}");
        assert!(!out.join(archive).exists(), "{archive} has no output");
        // No member record of a failed archive claims an output.
        for m in records.iter().filter(|m| m["archive"] == archive) {
            assert_eq!(m["status"], "failed", "{m}");
        }
    }
    assert!(!t.path().join("evil.png").exists() && !out.join("../evil.png").exists());
    let names = |a: &str| -> Vec<String> {
        members_of(&out.join(a))
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    // The nested archive and the broken image are left out; the rest is there.
    assert_eq!(names("nested.tar"), ["a.png", "c.json"]);
    let r = record(&records, "nested.tar#inner.zip");
    assert_eq!(r["status"], "failed");
    assert!(r["error"].as_str().unwrap().contains("one level"), "{r}");
    assert_eq!(names("badmember.zip"), ["a.png"]);
    assert_eq!(record(&records, "badmember.zip#b.png")["status"], "failed");
    assert_eq!(record(&records, "badmember.zip")["status"], "redacted");
}

/// A run resumes archive by archive: an archive whose output and record stand is kept with its
/// member records; one whose output is gone (a killed run leaves only a partial file) is redone,
/// and the partial file is removed.
#[test]
fn a_rerun_keeps_finished_archives_and_redoes_the_rest() {
    let t = tempfile::tempdir().unwrap();
    let members = samples(t.path());
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.tar"), tar_of(&members[..6])).unwrap();
    std::fs::write(input.join("b.tar"), tar_of(&members[6..])).unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 0, "{err}");
    let first = provenance(&out);
    let a_record = record(&first, "a.tar").clone();
    std::fs::remove_file(out.join("b.tar")).unwrap();
    std::fs::write(out.join(".b.tar.veil-partial"), b"half an archive").unwrap();
    let (code, _, err) = run(&[&"redact", &input, &out]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 redone"), "{err}");
    assert!(!out.join(".b.tar.veil-partial").exists());
    assert!(out.join("b.tar").is_file());
    let second = provenance(&out);
    assert_eq!(second.len(), first.len(), "every record once");
    assert_eq!(record(&second, "a.tar"), &a_record, "kept as it was");
    let a_members = |recs: &[serde_json::Value]| {
        recs.iter()
            .filter(|r| r["archive"] == "a.tar")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(a_members(&second), a_members(&first));
    assert!(!a_members(&second).is_empty());
}

/// Every file under `dir` except the run summary, by relative path.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                if rel != "veil-run.json" {
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
    }
    out.sort();
    out
}

/// Runs killed with SIGKILL while archives are being written (a partial archive on disk) resume
/// to exactly the files of an uninterrupted run: no partial archive left, every finished archive
/// kept, the same bytes and records.
#[test]
fn runs_killed_inside_archives_resume_to_the_same_outputs() {
    let t = tempfile::tempdir().unwrap();
    let members = samples(t.path());
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    // Six shards of 15 samples each (the sample photos, each downscaled differently).
    for s in 0..6 {
        let mut shard = Vec::new();
        for i in 0..15 {
            let (name, data) = &members[(i * 3) % members.len()];
            let key = format!("{:06}", s * 100 + i);
            if name.ends_with(".json") || name.ends_with(".txt") {
                let ext = name.rsplit('.').next().unwrap();
                shard.push((format!("{key}.{ext}"), data.clone()));
                continue;
            }
            let img = image::load_from_memory(data).unwrap().to_rgb8();
            let side = 160 + ((s * 15 + i) as u32 % 7) * 16;
            let small = image::imageops::resize(
                &img,
                side,
                side * img.height() / img.width(),
                image::imageops::FilterType::Triangle,
            );
            let mut png = Vec::new();
            small
                .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                .unwrap();
            shard.push((format!("{key}.png"), png));
        }
        std::fs::write(input.join(format!("{s:06}.tar")), tar_of(&shard)).unwrap();
    }
    let reference = t.path().join("reference");
    let (code, _, err) = run(&[&"redact", &input, &reference, &"-q", &"--jobs", &"2"]);
    assert_eq!(code, 0, "{err}");
    let expected = tree(&reference);

    let out = t.path().join("out");
    let mut saw_partial = false;
    // Kill while the first archives are being written, then again later.
    for finished in [0usize, 2, 4] {
        let mut child = veil()
            .args(["redact".as_ref(), input.as_os_str(), out.as_os_str()])
            .args(["-q", "--jobs", "2"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let names: Vec<String> = std::fs::read_dir(&out)
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let done = names.iter().filter(|n| n.ends_with(".tar")).count();
            let partial = names.iter().any(|n| n.ends_with(".veil-partial"));
            if (done >= finished && partial) || t0.elapsed().as_secs() > 60 {
                saw_partial |= partial;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    assert!(saw_partial, "no run was killed while writing an archive");
    let (code, _, err) = run(&[&"redact", &input, &out, &"--jobs", &"2"]);
    assert_eq!(code, 0, "{err}");
    let got = tree(&out);
    assert_eq!(
        got.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        expected.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        "file lists differ (partial archives left?)"
    );
    for ((p, a), (_, b)) in got.iter().zip(&expected) {
        assert!(a == b, "{p} differs from the uninterrupted run");
    }
}

/// A file named like a member of an archive beside it would share the member's record path
/// (`x.tar#y.png`): the run is refused (exit 2) before any image is processed, naming both.
#[test]
fn a_file_named_like_an_archive_member_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let png = {
        let img =
            image::RgbImage::from_fn(40, 40, |x, y| image::Rgb([x as u8 * 5, y as u8 * 5, 9]));
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    };
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(png.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "y.png", png.as_slice()).unwrap();
    std::fs::write(input.join("x.tar"), b.into_inner().unwrap()).unwrap();
    std::fs::write(input.join("x.tar#y.png"), &png).unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("x.tar#y.png is named like a member of the archive x.tar"),
        "{err}"
    );
    assert!(!out.join("x.tar").exists() && !out.join("x.tar#y.png").exists());
}

fn tiny_png(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([seed, (x * 3) as u8, y as u8]));
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A tar of `members`, each with its own entry type byte.
fn tar_typed(members: &[(&str, u8, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::new(*kind));
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Redacts `input` (exit 1 expected) and returns the records.
fn redact_failing(input: &Path, out: &Path) -> Vec<serde_json::Value> {
    let (code, _, err) = run(&[&"redact", &input, &out, &"-q"]);
    assert_eq!(code, 1, "{err}");
    provenance(out)
}

fn assert_archive_refused(records: &[serde_json::Value], out: &Path, archive: &str, why: &[&str]) {
    let r = record(records, archive);
    assert_eq!(r["status"], "failed", "{archive}: {r}");
    let error = r["error"].as_str().unwrap();
    for w in why {
        assert!(error.contains(w), "{archive}: `{w}` not in {error}");
    }
    assert!(!out.join(archive).exists(), "{archive} has no output");
}

/// Entries that other readers extract as files but veil did not look at: a zip entry named like
/// a directory that holds a picture, and a tar entry of an unknown type; both refuse the whole
/// archive (the zip of text beside such an entry was copied as an ordinary file before). A tar
/// member of type `7` (contiguous) is a regular file: its picture is redacted, not passed through.
#[test]
fn entries_other_readers_extract_as_files_are_redacted_or_refuse_the_archive() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let png = tiny_png(1);
    let zip_with_dir = |first: (&str, &[u8])| {
        let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        for (name, data) in [first, ("hidden.png/", png.as_slice())] {
            z.start_file(name, opts).unwrap();
            std::io::Write::write_all(&mut z, data).unwrap();
        }
        z.finish().unwrap().into_inner()
    };
    std::fs::write(input.join("dir_entry.zip"), zip_with_dir(("a.png", &png))).unwrap();
    std::fs::write(
        input.join("dir_entry_text.zip"),
        zip_with_dir(("a.txt", b"a caption")),
    )
    .unwrap();
    std::fs::write(
        input.join("unknown_type.tar"),
        tar_typed(&[("a.txt", b'0', b"caption"), ("b.png", b'Z', &png)]),
    )
    .unwrap();
    std::fs::write(
        input.join("contiguous.tar"),
        tar_typed(&[("a.txt", b'0', b"caption"), ("b.png", b'7', &png)]),
    )
    .unwrap();
    let out = t.path().join("out");
    let records = redact_failing(&input, &out);
    for archive in ["dir_entry.zip", "dir_entry_text.zip"] {
        assert_archive_refused(&records, &out, archive, &["hidden.png/", "directory entry"]);
    }
    assert_archive_refused(
        &records,
        &out,
        "unknown_type.tar",
        &["b.png", "unknown type `Z`"],
    );
    assert_eq!(record(&records, "contiguous.tar")["status"], "redacted");
    let m = record(&records, "contiguous.tar#b.png");
    assert_ne!(m["status"], "failed", "{m}");
    let got = members_of(&out.join("contiguous.tar"));
    assert_eq!(got[0], ("a.txt".to_string(), b"caption".to_vec()));
    assert_eq!(got[1].0, "b.png");
    assert_eq!(m["output_blake3"].as_str().unwrap(), blake3_hex(&got[1].1));
}

/// A `.npy` header for a uint8 array of `shape`, and its pixels.
fn npy_u8(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let mut header = format!(
        "{{'descr': '|u1', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (header.len() + 11) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend((0..shape.iter().product::<usize>()).map(|i| (i * 7) as u8));
    out
}

/// Members that are no image at their start but carry one: a zip behind a shell script, and
/// WebDataset sidecars holding the photo (a `data:image/` URI in the JSON, a pickled PNG, a
/// msgpack blob, a pixel array). Each is left out and recorded as failed, naming the member and
/// what it carries; the image and the plain caption are written. A tar of text only whose JSON
/// carries a picture is no longer copied as an ordinary file.
#[test]
fn members_that_carry_a_picture_inside_are_left_out() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let png = tiny_png(2);
    let sfx = [
        &b"#!/bin/sh\nexit 0\n"[..],
        &zip_of(&[("face.png".to_string(), png.clone())]),
    ]
    .concat();
    let base64_png = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&png)
    };
    let json = format!("{{\"caption\": \"x\", \"image\": \"data:image/png;base64,{base64_png}\"}}");
    let pickled = [
        &b"\x80\x04\x95\x20\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x03png\x94C"[..],
        &png,
        b"\x94s.",
    ]
    .concat();
    let msgpack = [&b"\x81\xa5image\xc6\x00\x00\x10\x00"[..], &png].concat();
    let members = vec![
        ("000001.png".to_string(), png.clone()),
        ("000001.txt".to_string(), b"a caption".to_vec()),
        ("000001.json".to_string(), json.clone().into_bytes()),
        ("000001.pyd".to_string(), pickled),
        ("000001.mp".to_string(), msgpack),
        ("000001.npy".to_string(), npy_u8(&[32, 32, 3])),
        ("000001.bin".to_string(), sfx),
    ];
    std::fs::write(input.join("sidecars.tar"), tar_of(&members)).unwrap();
    std::fs::write(
        input.join("text_only.tar"),
        tar_of(&[
            ("000002.txt".to_string(), b"a caption".to_vec()),
            ("000002.json".to_string(), json.into_bytes()),
        ]),
    )
    .unwrap();
    let out = t.path().join("out");
    let records = redact_failing(&input, &out);
    let names: Vec<String> = members_of(&out.join("sidecars.tar"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["000001.png", "000001.txt"]);
    for (member, why) in [
        ("000001.json", "data:image/"),
        ("000001.pyd", "PNG image at byte"),
        ("000001.mp", "PNG image at byte 12"),
        ("000001.npy", "NumPy array of pixels (32x32x3 of u1)"),
        ("000001.bin", "zip archive behind other bytes"),
    ] {
        let r = record(&records, &format!("sidecars.tar#{member}"));
        assert_eq!(r["status"], "failed", "{r}");
        assert!(r["error"].as_str().unwrap().contains(why), "{r}");
    }
    assert_eq!(record(&records, "sidecars.tar")["status"], "redacted");
    // The text-only shard is read member by member now: its JSON is left out, its caption kept.
    let names: Vec<String> = members_of(&out.join("text_only.tar"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["000002.txt"]);
    assert_eq!(
        record(&records, "text_only.tar#000002.json")["status"],
        "failed"
    );
}

/// A tar.gz of several gzip members (bgzip, pigz) is read to its end: every member is redacted,
/// none is dropped. Data after a tar's end (a second gzip stream that is no gzip, a picture
/// after the end marker of a tar of text) fails the archive instead of passing.
#[test]
fn multi_member_gzip_is_read_whole_and_data_after_the_end_fails() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let members: Vec<(String, Vec<u8>)> = vec![
        ("000001.png".into(), tiny_png(3)),
        ("000001.txt".into(), b"one".to_vec()),
        ("000002.png".into(), tiny_png(4)),
        ("000002.txt".into(), b"two".to_vec()),
    ];
    let tar = tar_of(&members);
    let half = tar_of(&members[..2]);
    // The second gzip member starts at the header of 000002.png (the first part without its
    // end-of-archive blocks).
    let split = half.len() - 1024;
    assert_eq!(&tar[..split], &half[..split]);
    std::fs::write(
        input.join("multi.tar.gz"),
        [gz(&tar[..split]), gz(&tar[split..])].concat(),
    )
    .unwrap();
    std::fs::write(
        input.join("trailing.tar.gz"),
        [gz(&tar), b"not a gzip stream".to_vec()].concat(),
    )
    .unwrap();
    let text_only = tar_of(&[("a.txt".to_string(), b"caption".to_vec())]);
    std::fs::write(
        input.join("after_end.tar"),
        [text_only, tiny_png(5)].concat(),
    )
    .unwrap();
    let out = t.path().join("out");
    let records = redact_failing(&input, &out);
    let got: Vec<String> = members_of(&out.join("multi.tar.gz"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let want: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(got, want);
    assert_eq!(record(&records, "multi.tar.gz")["status"], "redacted");
    assert_ne!(
        record(&records, "multi.tar.gz#000002.png")["status"],
        "failed"
    );
    assert_archive_refused(&records, &out, "trailing.tar.gz", &["unreadable"]);
    assert_archive_refused(
        &records,
        &out,
        "after_end.tar",
        &["data after the end of the archive"],
    );
}
