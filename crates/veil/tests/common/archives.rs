//! Dataset archives for the end-to-end tests: WebDataset samples of the photos veil fetches,
//! tar, tar.gz and zip writers, and a reader of an archive's members.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use super::run;

pub fn tar_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn zip_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in members {
        z.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap().into_inner()
}

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// (name, bytes) of every file member, in order.
pub fn members_of(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    if bytes.starts_with(b"PK") {
        let mut z = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        return (0..z.len())
            .map(|i| {
                let mut m = z.by_index(i).unwrap();
                let mut d = Vec::new();
                m.read_to_end(&mut d).unwrap();
                (m.name().to_string(), d)
            })
            .collect();
    }
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut d = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut d)
            .unwrap();
        d
    } else {
        bytes
    };
    let mut a = tar::Archive::new(&raw[..]);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut d = Vec::new();
            e.read_to_end(&mut d).unwrap();
            (name, d)
        })
        .collect()
}

/// WebDataset samples from the sample photos veil fetches: `NNNNNN.png` + `.json` + `.txt`.
pub fn samples(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let input = dir.join("sample");
    let (code, _, err) = run(&[&"sample", &input]);
    assert_eq!(code, 0, "{err}");
    let mut names: Vec<_> = std::fs::read_dir(&input)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let key = format!("{i:06}");
        let ext = n.rsplit('.').next().unwrap();
        out.push((
            format!("{key}.{ext}"),
            std::fs::read(input.join(n)).unwrap(),
        ));
        out.push((
            format!("{key}.json"),
            format!("{{\"key\": \"{key}\", \"source\": \"{n}\"}}").into_bytes(),
        ));
        out.push((format!("{key}.txt"), format!("a photo, {n}").into_bytes()));
    }
    out
}
