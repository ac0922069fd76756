//! Archives and tables never pass through as they are: with `--copy-other`, a WebDataset-style
//! tar shard and a zip of photos (recognised by content, whatever their names) are redacted
//! member by member into the same format (`crates/veil/tests/archives.rs` has the details); a
//! Parquet table, which veil does not read yet, is recorded as failed (`not processed:
//! container`), never copied, and the run exits 1; an archive of text only is an ordinary file
//! and is copied.

mod common;

use std::io::{Cursor, Write};

use common::*;

fn png(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([seed, (x * 3) as u8, (y * 5) as u8])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in members {
        z.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap().into_inner()
}

#[test]
fn archives_of_photos_are_redacted_and_tables_failed_never_copied() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    std::fs::create_dir_all(input.join("shards")).unwrap();
    std::fs::write(input.join("loose.png"), png(1)).unwrap();
    let caption: &[u8] = b"{\"caption\": \"two people at a bus stop\"}";
    let (a, b) = (png(2), png(3));
    // Names that hide what they are: content decides.
    std::fs::write(
        input.join("shards/000000.tar"),
        tar_of(&[("000000.json", caption), ("000000.jpg", &a)]),
    )
    .unwrap();
    std::fs::write(input.join("more.dat"), zip_of(&[("p/b.png", &b)])).unwrap();
    // A Parquet file's framing (magic at both ends); veil does not read tables yet.
    std::fs::write(input.join("train.parquet"), b"PAR1 row groups PAR1").unwrap();
    std::fs::write(input.join("captions.zip"), zip_of(&[("c.json", caption)])).unwrap();
    std::fs::write(input.join("README.txt"), b"licence: CC-BY-4.0").unwrap();
    let out = t.path().join("out");
    let (code, _, err) = run(&[
        &"redact",
        &input,
        &out,
        &"--copy-other",
        &"--device",
        &"cpu",
        &"-q",
    ]);
    assert_eq!(code, 1, "not everything was handled: {err}");
    let records = provenance(&out);
    for (path, format, member) in [
        ("shards/000000.tar", "tar", "000000.jpg"),
        ("more.dat", "zip", "p/b.png"),
    ] {
        let r = records.iter().find(|r| r["path"] == path).unwrap();
        assert_eq!(
            (r["status"].as_str(), r["format"].as_str()),
            (Some("redacted"), Some(format))
        );
        let m = records
            .iter()
            .find(|r| r["path"] == format!("{path}#{member}").as_str())
            .unwrap_or_else(|| panic!("{path}#{member} has a record"));
        assert_eq!(m["archive"], path);
        assert_ne!(m["status"], "failed", "{m}");
        assert!(out.join(path).is_file(), "{path} is written");
    }
    {
        let (path, kind) = ("train.parquet", "Parquet table");
        let r = records
            .iter()
            .find(|r| r["path"] == path)
            .unwrap_or_else(|| panic!("{path} has a record"));
        assert_eq!(r["status"], "failed", "{path}");
        let why = r["error"].as_str().unwrap();
        assert!(why.starts_with("not processed: container"), "{why}");
        assert!(why.contains(kind), "{path}: {why}");
        assert!(!out.join(path).exists(), "{path} was copied");
        assert!(err.contains(path), "the failure is reported: {err}");
    }
    assert!(out.join("loose.png").exists());
    assert_eq!(
        std::fs::read(out.join("captions.zip")).unwrap(),
        zip_of(&[("c.json", caption)]),
        "an archive of text is an ordinary file"
    );
    assert!(out.join("README.txt").exists());
    // Without --copy-other nothing is copied, and the containers still fail the run.
    let (code, _, _) = run(&[
        &"redact",
        &input,
        &t.path().join("out2"),
        &"--device",
        &"cpu",
        &"-q",
    ]);
    assert_eq!(code, 1);
    assert!(!t.path().join("out2/train.parquet").exists());
}
