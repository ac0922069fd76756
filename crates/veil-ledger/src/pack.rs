//! Packing a release for upload: exactly the release's items, nothing else, read from the output
//! tree and checked against the manifest as they are written (a mismatch aborts and removes the
//! partial pack), into a directory, a `.tar`, a `.tar.zst` or a `.zip`.
//!
//! Archives are deterministic: members in manifest (path) order, every mtime 0 (tar) or
//! 1980-01-01 00:00 (zip, its earliest), owner 0:0 without names, mode 0644, zip members stored
//! (the images are compressed already), zstd at level 19 on one thread. Packing the same release
//! twice gives the same bytes. Optional extras: the release's own files under `veil-release/`
//! and a dataset card `README.md` (YAML front matter: licence, release, Merkle root, veil version,
//! models, policy, counts), so the pack can go to a dataset hub as it is.

use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::release::{
    safe_rel_path, ManifestItem, ReleaseError, ReleaseInfo, VerifyReport, MANIFEST_FILE,
    RELEASE_FILE, WITHDRAWN_FILE,
};

/// Folder of a pack that holds the release's own files (with `--manifest`).
pub const PACK_RELEASE_DIR: &str = "veil-release";
/// The dataset card of a pack (with `--card`).
pub const PACK_CARD: &str = "README.md";

/// What a pack is written as, from its path's ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackFormat {
    Dir,
    Tar,
    TarZst,
    Zip,
}

impl PackFormat {
    /// `.tar`, `.tar.zst` (or `.tzst`), `.zip`; anything else is a directory.
    pub fn from_path(path: &Path) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
            PackFormat::TarZst
        } else if name.ends_with(".tar") {
            PackFormat::Tar
        } else if name.ends_with(".zip") {
            PackFormat::Zip
        } else {
            PackFormat::Dir
        }
    }
}

/// Extra files that go into a pack besides the items (path inside the pack, bytes).
pub type Extras = Vec<(String, Vec<u8>)>;

/// Writes `items` from `tree` into a new pack at `dest` (which must not exist), each checked
/// against its size and blake3 while it is written, plus `extras`. Returns the number of bytes
/// of items written. On any error nothing is left at `dest`.
pub fn pack_release(
    tree: &Path,
    items: &[ManifestItem],
    extras: &Extras,
    dest: &Path,
) -> Result<u64, ReleaseError> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(ReleaseError::AlreadyExists {
            path: dest.to_path_buf(),
        });
    }
    let partial = partial_path(dest);
    let _ = fs::remove_dir_all(&partial);
    let _ = fs::remove_file(&partial);
    let format = PackFormat::from_path(dest);
    let result = write_pack(tree, items, extras, &partial, format);
    match result {
        Ok(bytes) => {
            fs::rename(&partial, dest).map_err(io_at(dest))?;
            Ok(bytes)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&partial);
            let _ = fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".veil-partial");
    dest.with_file_name(name)
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> ReleaseError + '_ {
    move |source| ReleaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
    read: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Opens an item of the tree as a regular file (no link followed) of the manifest's size.
fn open_item(tree: &Path, item: &ManifestItem) -> Result<Hashing<fs::File>, ReleaseError> {
    if !safe_rel_path(&item.path) {
        return Err(ReleaseError::UnsafePath {
            path: item.path.clone(),
        });
    }
    let path = tree.join(&item.path);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ReleaseError::OutputMissing { path })
        }
        Err(e) => return Err(io_at(&path)(e)),
    };
    if !meta.is_file() {
        return Err(ReleaseError::NotAFile { path });
    }
    if meta.len() != item.size {
        return Err(ReleaseError::SizeMismatch {
            path,
            expected: item.size,
            actual: meta.len(),
        });
    }
    let file = fs::File::open(&path).map_err(io_at(&path))?;
    Ok(Hashing {
        inner: file,
        hasher: blake3::Hasher::new(),
        read: 0,
    })
}

/// After an item was written: it must have been exactly the manifest's bytes.
fn check_item(tree: &Path, item: &ManifestItem, h: Hashing<fs::File>) -> Result<(), ReleaseError> {
    let actual = h.hasher.finalize().to_hex().to_string();
    if h.read != item.size {
        return Err(ReleaseError::SizeMismatch {
            path: tree.join(&item.path),
            expected: item.size,
            actual: h.read,
        });
    }
    if actual != item.blake3 {
        return Err(ReleaseError::HashMismatch {
            path: tree.join(&item.path),
            expected: item.blake3.clone(),
            actual,
        });
    }
    Ok(())
}

fn write_pack(
    tree: &Path,
    items: &[ManifestItem],
    extras: &Extras,
    partial: &Path,
    format: PackFormat,
) -> Result<u64, ReleaseError> {
    let io = io_at(partial);
    let mut bytes = 0;
    // Member items travel inside their containers.
    let items: Vec<&ManifestItem> = items.iter().filter(|i| i.archive.is_none()).collect();
    match format {
        PackFormat::Dir => {
            fs::create_dir(partial).map_err(&io)?;
            for &item in &items {
                let mut h = open_item(tree, item)?;
                let dst = partial.join(&item.path);
                if let Some(parent) = dst.parent() {
                    fs::create_dir_all(parent).map_err(&io)?;
                }
                let mut out = fs::File::create(&dst).map_err(&io)?;
                io::copy(&mut h, &mut out).map_err(&io)?;
                out.sync_all().map_err(&io)?;
                check_item(tree, item, h)?;
                bytes += item.size;
            }
            for (name, data) in extras {
                let dst = partial.join(name);
                if let Some(parent) = dst.parent() {
                    fs::create_dir_all(parent).map_err(&io)?;
                }
                fs::write(&dst, data).map_err(&io)?;
            }
        }
        PackFormat::Tar | PackFormat::TarZst => {
            let file = BufWriter::new(fs::File::create(partial).map_err(&io)?);
            let sink: Box<dyn Write> = if format == PackFormat::TarZst {
                let mut enc = zstd::Encoder::new(file, 19).map_err(&io)?;
                enc.include_checksum(true).map_err(&io)?;
                Box::new(enc.auto_finish())
            } else {
                Box::new(file)
            };
            let mut tar = tar::Builder::new(sink);
            let header = |size: u64| {
                let mut h = tar::Header::new_ustar();
                h.set_size(size);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                h.set_entry_type(tar::EntryType::Regular);
                h
            };
            for &item in &items {
                let mut h = open_item(tree, item)?;
                let mut hd = header(item.size);
                tar.append_data(&mut hd, &item.path, &mut h).map_err(&io)?;
                check_item(tree, item, h)?;
                bytes += item.size;
            }
            for (name, data) in extras {
                let mut hd = header(data.len() as u64);
                tar.append_data(&mut hd, name, data.as_slice())
                    .map_err(&io)?;
            }
            let mut sink = tar.into_inner().map_err(&io)?;
            sink.flush().map_err(&io)?;
            drop(sink);
        }
        PackFormat::Zip => {
            let file = BufWriter::new(fs::File::create(partial).map_err(&io)?);
            let mut zip = zip::ZipWriter::new(file);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .last_modified_time(zip::DateTime::default())
                .unix_permissions(0o644)
                .large_file(false);
            let zerr = |e: zip::result::ZipError| ReleaseError::Io {
                path: partial.to_path_buf(),
                source: io::Error::other(e),
            };
            for &item in &items {
                let mut h = open_item(tree, item)?;
                let opts = opts.large_file(item.size >= u32::MAX as u64);
                zip.start_file(item.path.as_str(), opts).map_err(zerr)?;
                io::copy(&mut h, &mut zip).map_err(&io)?;
                check_item(tree, item, h)?;
                bytes += item.size;
            }
            for (name, data) in extras {
                zip.start_file(name.as_str(), opts).map_err(zerr)?;
                zip.write_all(data).map_err(&io)?;
            }
            let mut file = zip.finish().map_err(zerr)?;
            file.flush().map_err(&io)?;
        }
    }
    Ok(bytes)
}

/// The dataset card: YAML front matter a dataset hub reads, then what was done and how to check.
pub fn dataset_card(info: &ReleaseInfo, items: &[ManifestItem], policy: &str) -> String {
    let licence = items
        .iter()
        .find_map(|i| i.licence.clone())
        .unwrap_or_else(|| "other".into());
    let mut models: Vec<(String, String)> = items
        .iter()
        .flat_map(|i| i.models.iter().map(|m| (m.name.clone(), m.blake3.clone())))
        .collect();
    models.sort();
    models.dedup();
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = String::new();
    out.push_str("---\n");
    out.push_str(&format!("license: {}\n", q(&licence.to_ascii_lowercase())));
    out.push_str(&format!("pretty_name: {}\n", q(&info.dataset)));
    out.push_str("tags:\n- de-identified\n- veil\n");
    out.push_str("veil:\n");
    out.push_str(&format!(
        "  release: {}\n",
        q(&format!("{}@{}", info.dataset, info.version))
    ));
    out.push_str(&format!("  merkle_root: {}\n", q(&info.merkle_root)));
    out.push_str(&format!(
        "  manifest_blake3: {}\n",
        q(&info.manifest_blake3)
    ));
    out.push_str(&format!("  veil_version: {}\n", q(&info.tool_version)));
    out.push_str(&format!("  created_at: {}\n", q(&info.created_at)));
    out.push_str(&format!(
        "  items: {}\n  bytes: {}\n",
        info.items, info.bytes
    ));
    if info.withdrawn > 0 {
        out.push_str(&format!("  withdrawn: {}\n", info.withdrawn));
    }
    out.push_str("  models:\n");
    for (name, blake3) in &models {
        out.push_str(&format!(
            "  - name: {}\n    blake3: {}\n",
            q(name),
            q(blake3)
        ));
    }
    out.push_str(&format!(
        "  policy_blake3: {}\n",
        info.policy_blake3
            .as_deref()
            .map(q)
            .unwrap_or_else(|| "null".into())
    ));
    // JSON is YAML: the de-identification policy as recorded.
    out.push_str(&format!("  policy: {policy}\n"));
    out.push_str("---\n\n");
    out.push_str(&format!(
        "# {} {}\n\nEvery image was de-identified with veil {} (faces and, where the policy says so, \
         persons obfuscated; identifying metadata removed) and checked before it was written. \
         The release holds {} images ({} bytes); its manifest's Merkle root is `{}`.\n\n\
         To check this copy: `veil release verify THIS-PACK --release {}@{}` with the release's \
         manifest (in `{PACK_RELEASE_DIR}/` when packed with it).\n",
        info.dataset,
        info.version,
        info.tool_version,
        info.items,
        info.bytes,
        info.merkle_root,
        info.dataset,
        info.version
    ));
    out
}

/// Checks a pack (a directory, `.tar`, `.tar.zst` or `.zip`, told apart by content) against the
/// manifest `items` of release `dataset`@`version`, reading archives as streams. Only the files
/// veil packs beside the items are not counted as extra: the card `README.md` at the top and
/// `veil-release/DATASET/VERSION/{manifest.jsonl,release.json,withdrawn.jsonl}` of this release;
/// anything else there (`veil-release/secret/face.jpg`) is extra. Those files are not extra by
/// their names alone: the release's files must be byte for byte those in `release_dir` (the
/// release's directory under its root), and the card and any record file must be text without a
/// picture inside; otherwise they are reported as changed. With `containers`, the member items
/// of a directory's dataset containers are read back one by one; in an archived pack they are
/// covered by their container's hash (`members_unchecked`).
pub fn verify_pack(
    pack: &Path,
    dataset: &str,
    version: &str,
    items: &[ManifestItem],
    release_dir: &Path,
    containers: Option<&dyn crate::Containers>,
) -> Result<VerifyReport, ReleaseError> {
    let io = io_at(pack);
    let mut report = if pack.is_dir() {
        crate::verify::verify_tree(pack, items, containers)
    } else {
        let mut head = [0u8; 4];
        let n = fs::File::open(pack)
            .and_then(|mut f| f.read(&mut head))
            .map_err(&io)?;
        let head = &head[..n];
        if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            let file = io::BufReader::new(fs::File::open(pack).map_err(&io)?);
            let dec = zstd::Decoder::new(file).map_err(&io)?;
            crate::verify::verify_tar_stream(dec, pack, items)?
        } else if head.starts_with(b"PK") {
            verify_zip(pack, items)?
        } else {
            crate::verify::verify_archive(pack, items)?
        }
    };
    // (path in the pack, the release's own copy when it is one of the release's files)
    let own: Vec<(String, Option<PathBuf>)> = [MANIFEST_FILE, RELEASE_FILE, WITHDRAWN_FILE]
        .iter()
        .map(|f| {
            (
                format!("{PACK_RELEASE_DIR}/{dataset}/{version}/{f}"),
                Some(release_dir.join(f)),
            )
        })
        .chain([(PACK_CARD.to_string(), None)])
        .collect();
    report.extra.retain(|p| !own.iter().any(|(o, _)| o == p));
    for (path, original) in &own {
        let Some(found) = report.reserved.get(path) else {
            continue;
        };
        let changed = if let Some(problem) = &found.problem {
            Some(("a file veil packs".to_string(), problem.clone()))
        } else if let Some(original) = original {
            match crate::release::hash_file(original) {
                Ok(want) if want == found.blake3 => None,
                Ok(want) => Some((want, found.blake3.clone())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Some((
                    format!("absent (the release has no {})", original.display()),
                    found.blake3.clone(),
                )),
                Err(e) => return Err(io_at(original)(e)),
            }
        } else {
            None
        };
        if let Some((want, got)) = changed {
            report.changed.push((path.clone(), want, got));
        }
    }
    report.changed.sort();
    Ok(report)
}

fn verify_zip(pack: &Path, items: &[ManifestItem]) -> Result<VerifyReport, ReleaseError> {
    let io = io_at(pack);
    let zerr = |e: zip::result::ZipError| ReleaseError::Io {
        path: pack.to_path_buf(),
        source: io::Error::other(e),
    };
    let file = io::BufReader::new(fs::File::open(pack).map_err(&io)?);
    let mut zip = zip::ZipArchive::new(file).map_err(zerr)?;
    let mut found = std::collections::BTreeMap::new();
    let mut reserved = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(zerr)?;
        if member.is_dir() {
            continue;
        }
        let name = member.name().trim_start_matches("./").to_string();
        let hash = if member.is_file() && crate::verify::is_reserved(&name) {
            let f = crate::verify::read_reserved(&mut member).map_err(&io)?;
            let h = f.blake3.clone();
            reserved.insert(name.clone(), f);
            Some(h)
        } else if member.is_file() {
            let mut h = blake3::Hasher::new();
            io::copy(&mut member, &mut h).map_err(&io)?;
            Some(h.finalize().to_hex().to_string())
        } else {
            None
        };
        found.insert(name, hash);
    }
    Ok(crate::verify::compare_found(items, found, reserved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_files_veil_packs_are_not_extra() {
        let t = tempfile::tempdir().unwrap();
        let put = |p: &str| {
            let f = t.path().join(p);
            fs::create_dir_all(f.parent().unwrap()).unwrap();
            fs::write(f, p).unwrap();
        };
        let item: ManifestItem = serde_json::from_value(serde_json::json!({
            "path": "a.jpg", "size": 5, "blake3": blake3::hash(b"a.jpg").to_hex().to_string(),
            "source_blake3": null,
            "provenance": {"file": "provenance.jsonl", "params_blake3": "p"},
            "models": [], "licence": null, "split": null
        }))
        .unwrap();
        for p in [
            "a.jpg",
            "README.md",
            "veil-release/faces/1/manifest.jsonl",
            "veil-release/faces/1/release.json",
            "veil-release/faces/1/withdrawn.jsonl",
            "veil-release/secret/face.jpg",
            "veil-release/faces/0/manifest.jsonl",
            "veil-release/faces/1/face.jpg",
            "sub/README.md",
        ] {
            put(p);
        }
        // The release the pack was made from: the same three files.
        let rel = tempfile::tempdir().unwrap();
        for f in [MANIFEST_FILE, RELEASE_FILE, WITHDRAWN_FILE] {
            let packed = t.path().join("veil-release/faces/1").join(f);
            fs::copy(packed, rel.path().join(f)).unwrap();
        }
        let verify = || {
            verify_pack(
                t.path(),
                "faces",
                "1",
                std::slice::from_ref(&item),
                rel.path(),
                None,
            )
            .unwrap()
        };
        let r = verify();
        assert!(r.missing.is_empty() && r.changed.is_empty(), "{r:?}");
        assert_eq!(
            r.extra,
            [
                "sub/README.md",
                "veil-release/faces/0/manifest.jsonl",
                "veil-release/faces/1/face.jpg",
                "veil-release/secret/face.jpg",
            ]
        );

        // Their names alone do not make them veil's: a photo saved as the card, a release.json
        // that is not the release's, and a card carrying a picture as a data URI are changed.
        let jpeg = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xFF\xDB";
        fs::write(t.path().join("README.md"), jpeg).unwrap();
        fs::write(t.path().join("veil-release/faces/1/release.json"), "{}").unwrap();
        let r = verify();
        let changed: Vec<&str> = r.changed.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            changed,
            ["README.md", "veil-release/faces/1/release.json"],
            "{r:?}"
        );
        assert!(r.changed[0].2.contains("not the text"), "{r:?}");
        assert!(!r.is_clean());
        let b64 = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/";
        fs::write(
            t.path().join("README.md"),
            format!("# faces\n![crew](data:image/jpeg;base64,{b64})\n"),
        )
        .unwrap();
        let r = verify();
        assert_eq!(r.changed[0].0, "README.md", "{r:?}");
        assert!(r.changed[0].2.contains("carries"), "{r:?}");
    }
}
