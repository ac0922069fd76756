//! Dataset archives as streams of members: a reader that hands over one member at a time and a
//! writer that builds the same kind of archive from members, for tar (WebDataset shards), tar.gz,
//! tar.zst and zip. The pipeline ([`crate::shards`]) consumes members like files and never needs
//! to know the format; neither side ever holds more than one member in memory.
//!
//! What is refused, with the member's name in the error (the whole archive fails, closed): a name
//! that is absolute or climbs out (`..`), or is not UTF-8; a link (symbolic or hard); two members
//! of the same name; a member over [`Caps::member_bytes`]; a zip member that expands more than
//! [`Caps::zip_ratio`] times; more than [`Caps::members`] members or [`Caps::total_bytes`] in all.
//! Unchanged members are written back with their content byte-identical (zip members are copied
//! raw, still compressed); tar headers keep their mode, owner, times and type.

use std::collections::HashSet;
use std::fs;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Component, Path};

/// The archive formats veil reads and writes member by member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarGz,
    TarZst,
    Zip,
}

impl Format {
    /// The name records use (`format` of a container record).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::TarGz => "tar.gz",
            Format::TarZst => "tar.zst",
            Format::Zip => "zip",
        }
    }

    /// The format of the file at `path`, by content (`None`: not one veil reads member by member).
    /// A gzip or zstd stream counts when what it decompresses to starts as a tar archive.
    pub fn sniff(path: &Path) -> std::io::Result<Option<Format>> {
        let mut head = Vec::with_capacity(512);
        fs::File::open(path)?.take(512).read_to_end(&mut head)?;
        let inner_is_tar = |r: &mut dyn Read| -> bool {
            let mut block = Vec::with_capacity(512);
            r.take(512).read_to_end(&mut block).is_ok() && block.get(257..262) == Some(b"ustar")
        };
        Ok(match crate::archives::sniff(&head) {
            Some(crate::archives::ArchiveKind::Tar) => Some(Format::Tar),
            Some(crate::archives::ArchiveKind::Zip) => Some(Format::Zip),
            Some(crate::archives::ArchiveKind::Gzip) => {
                let mut d = flate2::read::MultiGzDecoder::new(fs::File::open(path)?);
                inner_is_tar(&mut d).then_some(Format::TarGz)
            }
            Some(crate::archives::ArchiveKind::Zstd) => {
                let mut d = zstd::stream::read::Decoder::new(fs::File::open(path)?)?;
                inner_is_tar(&mut d).then_some(Format::TarZst)
            }
            _ => None,
        })
    }
}

/// Limits on what an archive may hold (hostile archives: bombs, floods).
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Largest member, uncompressed.
    pub member_bytes: u64,
    /// Most members.
    pub members: usize,
    /// Most bytes of all members together, uncompressed.
    pub total_bytes: u64,
    /// Largest expansion of a zip member (uncompressed over compressed size) past 1 MiB.
    pub zip_ratio: u64,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            member_bytes: 1 << 30,
            members: 10_000_000,
            total_bytes: 1 << 40,
            zip_ratio: 200,
        }
    }
}

/// Why an archive cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("unreadable ({0})")]
    Read(String),
    #[error("member `{member}`: {reason}")]
    Refused { member: String, reason: String },
    #[error("cannot write the output archive ({0})")]
    Write(String),
}

fn read_err(e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Read(e.to_string())
}

fn write_err(e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Write(e.to_string())
}

/// How a member is written back: the format's own header.
#[derive(Debug, Clone)]
enum Raw {
    Tar(Box<tar::Header>),
    Zip { index: usize },
}

/// One member: its name, whether it is a directory, and (for files) its bytes.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub is_dir: bool,
    pub data: Vec<u8>,
    raw: Raw,
}

/// Checks a member name: relative, no `..`, not empty.
fn check_name(name: &str) -> Result<(), String> {
    let p = Path::new(name);
    if name.is_empty() {
        return Err("empty name".into());
    }
    if p.is_absolute() || name.starts_with('/') || name.starts_with('\\') {
        return Err("absolute path".into());
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err("path leaves the archive (`..` or a root)".into()),
        }
    }
    if name.contains('\\') && name.split('\\').any(|s| s == "..") {
        return Err("path leaves the archive (`..`)".into());
    }
    Ok(())
}

struct Guard {
    caps: Caps,
    names: HashSet<String>,
    total: u64,
}

impl Guard {
    fn new(caps: Caps) -> Self {
        Self {
            caps,
            names: HashSet::new(),
            total: 0,
        }
    }

    fn admit(&mut self, name: &str, size: u64) -> Result<(), ArchiveError> {
        let refuse = |reason: String| ArchiveError::Refused {
            member: name.to_string(),
            reason,
        };
        check_name(name).map_err(refuse)?;
        if self.names.len() >= self.caps.members {
            return Err(refuse(format!("more than {} members", self.caps.members)));
        }
        let key = name
            .trim_end_matches('/')
            .trim_start_matches("./")
            .to_string();
        if !self.names.insert(key) {
            return Err(refuse("a second member of the same name".into()));
        }
        if size > self.caps.member_bytes {
            return Err(refuse(format!(
                "{size} bytes, over the cap of {} per member",
                self.caps.member_bytes
            )));
        }
        self.total += size;
        if self.total > self.caps.total_bytes {
            return Err(refuse(format!(
                "the members pass {} bytes in all",
                self.caps.total_bytes
            )));
        }
        Ok(())
    }
}

/// Reads the archive at `path` member by member, in order, handing each to `f`; stops at the
/// first error (`f`'s own, or the archive's).
pub fn read_members(
    path: &Path,
    format: Format,
    caps: Caps,
    f: &mut dyn FnMut(Member) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    let file = BufReader::new(fs::File::open(path).map_err(read_err)?);
    match format {
        Format::Tar => read_tar(file, caps, f),
        // Every gzip member in turn (bgzip and pigz write several).
        Format::TarGz => read_tar(flate2::read::MultiGzDecoder::new(file), caps, f),
        Format::TarZst => read_tar(
            zstd::stream::read::Decoder::with_buffer(file).map_err(read_err)?,
            caps,
            f,
        ),
        Format::Zip => read_zip(file, caps, f),
    }
}

fn read_tar(
    r: impl Read,
    caps: Caps,
    f: &mut dyn FnMut(Member) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(r);
    let mut guard = Guard::new(caps);
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let name = std::str::from_utf8(&entry.path_bytes())
            .map_err(|_| ArchiveError::Refused {
                member: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                reason: "name is not UTF-8".into(),
            })?
            .to_string();
        let kind = entry.header().entry_type();
        let refuse = |reason: &str| ArchiveError::Refused {
            member: name.clone(),
            reason: reason.into(),
        };
        if kind.is_symlink() || kind.is_hard_link() {
            return Err(refuse("a link (links are not followed or copied)"));
        }
        if let Some(why) = crate::archives::tar_type_refused(kind) {
            return Err(refuse(&why));
        }
        let is_dir = kind.is_dir();
        let size = entry.size();
        if is_dir && size > 0 {
            return Err(refuse(&crate::archives::directory_with_data(size)));
        }
        if !is_dir && !crate::archives::tar_is_file(kind) {
            return Err(refuse("not a regular file or directory"));
        }
        guard.admit(&name, size)?;
        let mut data = Vec::with_capacity(size.min(caps.member_bytes) as usize);
        if !is_dir {
            (&mut entry)
                .take(caps.member_bytes + 1)
                .read_to_end(&mut data)
                .map_err(|e| ArchiveError::Read(format!("member `{name}`: {e}")))?;
            if data.len() as u64 != size {
                return Err(ArchiveError::Read(format!(
                    "member `{name}` is truncated ({} of {size} bytes)",
                    data.len()
                )));
            }
        }
        let header = entry.header().clone();
        f(Member {
            name,
            is_dir,
            data,
            raw: Raw::Tar(Box::new(header)),
        })?;
    }
    crate::archives::tar_end_is_clean(archive.into_inner()).map_err(ArchiveError::Read)
}

fn read_zip(
    r: impl Read + Seek,
    caps: Caps,
    f: &mut dyn FnMut(Member) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    let mut archive = zip::ZipArchive::new(r).map_err(read_err)?;
    let mut guard = Guard::new(caps);
    for index in 0..archive.len() {
        let mut m = archive.by_index(index).map_err(read_err)?;
        let name = m.name().to_string();
        let refuse = |reason: String| ArchiveError::Refused {
            member: name.clone(),
            reason,
        };
        if m.is_symlink() {
            return Err(refuse("a link (links are not followed or copied)".into()));
        }
        let is_dir = m.is_dir();
        let size = m.size();
        if is_dir && size > 0 {
            return Err(refuse(crate::archives::directory_with_data(size)));
        }
        guard.admit(&name, size)?;
        let packed = m.compressed_size().max(1);
        if size > 1 << 20 && size / packed > caps.zip_ratio {
            return Err(refuse(format!(
                "expands {} times ({packed} to {size} bytes), over the cap of {} (a zip bomb?)",
                size / packed,
                caps.zip_ratio
            )));
        }
        let mut data = Vec::with_capacity(size.min(caps.member_bytes) as usize);
        if !is_dir {
            (&mut m)
                .take(caps.member_bytes + 1)
                .read_to_end(&mut data)
                .map_err(|e| ArchiveError::Read(format!("member `{name}`: {e}")))?;
            if data.len() as u64 != size {
                return Err(ArchiveError::Read(format!(
                    "member `{name}` does not hold its declared {size} bytes"
                )));
            }
        }
        drop(m);
        f(Member {
            name,
            is_dir,
            data,
            raw: Raw::Zip { index },
        })?;
    }
    Ok(())
}

/// Writes an archive of the same format as its source, member by member.
pub trait MemberWriter: Send {
    /// Appends `member`; with `replacement`, its bytes are those instead of the member's own
    /// (a redacted image); otherwise the member is written back unchanged.
    fn put(&mut self, member: &Member, replacement: Option<&[u8]>) -> Result<(), ArchiveError>;
    /// Completes the archive and flushes it to disk.
    fn finish(self: Box<Self>) -> Result<(), ArchiveError>;
}

/// A writer for `dest` (a new file) in `format`; `source` is the archive being rewritten (a zip
/// writer copies unchanged members from it raw).
pub fn create_writer(
    dest: &Path,
    source: &Path,
    format: Format,
) -> Result<Box<dyn MemberWriter>, ArchiveError> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(write_err)?;
    let out = BufWriter::with_capacity(1 << 20, file);
    Ok(match format {
        Format::Tar => Box::new(TarWriter {
            b: tar::Builder::new(Finishing::Plain(out)),
        }),
        Format::TarGz => Box::new(TarWriter {
            b: tar::Builder::new(Finishing::Gz(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            ))),
        }),
        Format::TarZst => Box::new(TarWriter {
            b: tar::Builder::new(Finishing::Zst(
                zstd::stream::write::Encoder::new(out, 3).map_err(write_err)?,
            )),
        }),
        Format::Zip => {
            let src =
                zip::ZipArchive::new(BufReader::new(fs::File::open(source).map_err(read_err)?))
                    .map_err(read_err)?;
            Box::new(ZipWriter {
                w: zip::ZipWriter::new(out),
                src,
            })
        }
    })
}

/// The byte sink under a tar builder, finished (compressed stream closed) and fsynced at the end.
enum Finishing {
    Plain(BufWriter<fs::File>),
    Gz(flate2::write::GzEncoder<BufWriter<fs::File>>),
    Zst(zstd::stream::write::Encoder<'static, BufWriter<fs::File>>),
}

impl Write for Finishing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Finishing::Plain(w) => w.write(buf),
            Finishing::Gz(w) => w.write(buf),
            Finishing::Zst(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Finishing::Plain(w) => w.flush(),
            Finishing::Gz(w) => w.flush(),
            Finishing::Zst(w) => w.flush(),
        }
    }
}

impl Finishing {
    fn close(self) -> std::io::Result<()> {
        let buffered = match self {
            Finishing::Plain(w) => w,
            Finishing::Gz(w) => w.finish()?,
            Finishing::Zst(w) => w.finish()?,
        };
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }
}

struct TarWriter {
    b: tar::Builder<Finishing>,
}

impl MemberWriter for TarWriter {
    fn put(&mut self, member: &Member, replacement: Option<&[u8]>) -> Result<(), ArchiveError> {
        let Raw::Tar(header) = &member.raw else {
            return Err(write_err("internal: a zip member given to a tar writer"));
        };
        let mut header = (**header).clone();
        let data = replacement.unwrap_or(&member.data);
        header.set_size(data.len() as u64);
        self.b
            .append_data(&mut header, &member.name, data)
            .map_err(write_err)
    }

    fn finish(self: Box<Self>) -> Result<(), ArchiveError> {
        let sink = self.b.into_inner().map_err(write_err)?;
        sink.close().map_err(write_err)
    }
}

struct ZipWriter {
    w: zip::ZipWriter<BufWriter<fs::File>>,
    src: zip::ZipArchive<BufReader<fs::File>>,
}

impl MemberWriter for ZipWriter {
    fn put(&mut self, member: &Member, replacement: Option<&[u8]>) -> Result<(), ArchiveError> {
        let Raw::Zip { index } = member.raw else {
            return Err(write_err("internal: a tar member given to a zip writer"));
        };
        let original = self.src.by_index_raw(index).map_err(read_err)?;
        match replacement {
            None => self.w.raw_copy_file(original).map_err(write_err),
            Some(bytes) => {
                let mut opts = zip::write::SimpleFileOptions::default()
                    .compression_method(original.compression())
                    .large_file(bytes.len() as u64 >= u32::MAX as u64);
                if let Some(t) = original.last_modified() {
                    opts = opts.last_modified_time(t);
                }
                if let Some(mode) = original.unix_mode() {
                    opts = opts.unix_permissions(mode);
                }
                drop(original);
                self.w.start_file(&member.name, opts).map_err(write_err)?;
                self.w.write_all(bytes).map_err(write_err)
            }
        }
    }

    fn finish(self: Box<Self>) -> Result<(), ArchiveError> {
        let buffered = self.w.finish().map_err(write_err)?;
        let file = buffered
            .into_inner()
            .map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_bytes(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o640);
            h.set_mtime(1_700_000_000);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn names_and_data(path: &Path, format: Format) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        read_members(path, format, Caps::default(), &mut |m| {
            out.push((m.name.clone(), m.data.clone()));
            Ok(())
        })
        .unwrap();
        out
    }

    fn rewrite(src: &Path, dest: &Path, format: Format, replace: &str, with: &[u8]) {
        let mut w = create_writer(dest, src, format).unwrap();
        read_members(src, format, Caps::default(), &mut |m| {
            let r = (m.name == replace).then_some(with);
            w.put(&m, r)
        })
        .unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn every_format_round_trips_members_in_order_with_one_replaced() {
        let t = tempfile::tempdir().unwrap();
        let members: [(&str, &[u8]); 3] = [
            ("000001.jpg", b"old image bytes"),
            ("000001.json", b"{\"caption\": 1}"),
            ("000002.txt", b"a caption"),
        ];
        let tar = tar_bytes(&members);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in members {
            zip.start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(data).unwrap();
        }
        let zip = zip.finish().unwrap().into_inner();
        for (format, bytes) in [
            (Format::Tar, tar.clone()),
            (Format::TarGz, gz.finish().unwrap()),
            (Format::TarZst, zst),
            (Format::Zip, zip),
        ] {
            let src = t.path().join(format!("in.{}", format.as_str()));
            fs::write(&src, &bytes).unwrap();
            assert_eq!(Format::sniff(&src).unwrap(), Some(format));
            let dest = t.path().join(format!("out.{}", format.as_str()));
            rewrite(&src, &dest, format, "000001.jpg", b"NEW");
            assert_eq!(Format::sniff(&dest).unwrap(), Some(format), "same format");
            let got = names_and_data(&dest, format);
            let want: Vec<(String, Vec<u8>)> = members
                .iter()
                .map(|(n, d)| {
                    let d: &[u8] = if *n == "000001.jpg" { b"NEW" } else { d };
                    (n.to_string(), d.to_vec())
                })
                .collect();
            assert_eq!(got, want, "{format:?}");
        }
    }

    #[test]
    fn tar_headers_keep_mode_and_time() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("a.tar");
        fs::write(&src, tar_bytes(&[("x.txt", b"x")])).unwrap();
        let dest = t.path().join("b.tar");
        rewrite(&src, &dest, Format::Tar, "x.txt", b"yy");
        let mut a = tar::Archive::new(fs::File::open(&dest).unwrap());
        let e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().mode().unwrap(), 0o640);
        assert_eq!(e.header().mtime().unwrap(), 1_700_000_000);
        assert_eq!(e.size(), 2);
    }

    fn refused(members: &[(&str, &[u8])]) -> String {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("a.tar");
        fs::write(&src, tar_bytes(members)).unwrap();
        read_members(&src, Format::Tar, Caps::default(), &mut |_| Ok(()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn hostile_names_and_duplicates_are_refused_by_name() {
        assert!(check_name("../x.jpg").is_err());
        assert!(check_name("a/../../x.jpg").is_err());
        assert!(check_name("/etc/passwd").is_err());
        assert!(check_name("a\\..\\x.jpg").is_err());
        assert!(check_name("shards/000001.jpg").is_ok());
        let e = refused(&[("a.jpg", b"1"), ("./a.jpg", b"2")]);
        assert!(e.contains("`a.jpg`") && e.contains("same name"), "{e}");
    }

    #[test]
    fn links_and_oversized_members_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "evil.jpg", "/etc/shadow").unwrap();
        let src = t.path().join("l.tar");
        fs::write(&src, b.into_inner().unwrap()).unwrap();
        let e = read_members(&src, Format::Tar, Caps::default(), &mut |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`evil.jpg`") && e.contains("link"), "{e}");

        fs::write(&src, tar_bytes(&[("big.bin", &[0u8; 100])])).unwrap();
        let caps = Caps {
            member_bytes: 99,
            ..Caps::default()
        };
        let e = read_members(&src, Format::Tar, caps, &mut |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`big.bin`") && e.contains("over the cap"), "{e}");
    }

    #[test]
    fn a_zip_bomb_member_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file(
            "zeros.bin",
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
        zip.write_all(&vec![0u8; 8 << 20]).unwrap();
        let src = t.path().join("bomb.zip");
        fs::write(&src, zip.finish().unwrap().into_inner()).unwrap();
        let e = read_members(&src, Format::Zip, Caps::default(), &mut |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("zip bomb"), "{e}");
    }

    #[test]
    fn sparse_and_unknown_entry_types_are_refused_and_contiguous_files_read() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("a.tar");
        let typed = |kind: u8| {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(4);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::new(kind));
            h.set_cksum();
            b.append_data(&mut h, "x.jpg", &b"data"[..]).unwrap();
            b.into_inner().unwrap()
        };
        for (kind, why) in [(b'S', "sparse"), (b'Z', "unknown type `Z`")] {
            fs::write(&src, typed(kind)).unwrap();
            let e = read_members(&src, Format::Tar, Caps::default(), &mut |_| Ok(()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why) || e.contains("unreadable"), "{e}");
            assert!(crate::archives::holds_images("a.tar", &typed(kind)).is_some());
        }
        fs::write(&src, typed(b'7')).unwrap();
        assert_eq!(
            names_and_data(&src, Format::Tar),
            [("x.jpg".to_string(), b"data".to_vec())]
        );
    }

    #[test]
    fn a_truncated_tar_is_unreadable() {
        let t = tempfile::tempdir().unwrap();
        let bytes = tar_bytes(&[("a.bin", &[7u8; 3000])]);
        let src = t.path().join("t.tar");
        fs::write(&src, &bytes[..1500]).unwrap();
        assert!(
            read_members(&src, Format::Tar, Caps::default(), &mut |_| Ok(())).is_err(),
            "a member cut short must not pass"
        );
    }
}
