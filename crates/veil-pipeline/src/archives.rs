//! Dataset archives and tables recognised by content: tar and zip archives (whose members are
//! looked at), compressed streams, 7z and RAR archives, and Parquet tables (which are not). Not to
//! be confused with [`crate::container`], the scanner of an image file's own segments.
//!
//! veil does not read images inside archives yet, so an archive or table that holds images, or
//! that it cannot look inside, must never reach the output as it is: the run records it as
//! failed (`not processed: container`) and never copies it. An archive whose members are all
//! plainly not images (a zip of JSON annotations) is an ordinary file.

use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;

/// What kind of archive or table a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    Zip,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
    SevenZip,
    Rar,
    Parquet,
}

impl ArchiveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveKind::Tar => "tar archive",
            ArchiveKind::Zip => "zip archive",
            ArchiveKind::Gzip => "gzip-compressed file",
            ArchiveKind::Zstd => "zstd-compressed file",
            ArchiveKind::Xz => "xz-compressed file",
            ArchiveKind::Bzip2 => "bzip2-compressed file",
            ArchiveKind::SevenZip => "7z archive",
            ArchiveKind::Rar => "RAR archive",
            ArchiveKind::Parquet => "Parquet table",
        }
    }
}

/// Most members of a tar or zip archive looked at; past it the archive counts as holding images.
pub const MAX_MEMBERS: usize = 1_000_000;

/// The archive or table `bytes` (a whole file, or its first bytes) is, by content.
pub fn sniff(bytes: &[u8]) -> Option<ArchiveKind> {
    sniff_ends(bytes, bytes)
}

/// [`sniff`] from a file's first bytes and its last (a Parquet table ends as it begins).
fn sniff_ends(bytes: &[u8], tail: &[u8]) -> Option<ArchiveKind> {
    let tar_magic = bytes.get(257..262) == Some(b"ustar") || is_v7_tar_header(bytes);
    Some(if tar_magic {
        ArchiveKind::Tar
    } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        ArchiveKind::Zip
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        ArchiveKind::Gzip
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        ArchiveKind::Zstd
    } else if bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        ArchiveKind::Xz
    } else if bytes.starts_with(b"BZh") {
        ArchiveKind::Bzip2
    } else if bytes.starts_with(&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c]) {
        ArchiveKind::SevenZip
    } else if bytes.starts_with(b"Rar!\x1a\x07") {
        ArchiveKind::Rar
    } else if bytes.starts_with(b"PAR1") && tail.ends_with(b"PAR1") {
        ArchiveKind::Parquet
    } else {
        return None;
    })
}

/// A pre-POSIX (v7) tar header: no `ustar` magic, but a name, an octal size and a header
/// checksum that matches (the sum of the 512 bytes with the checksum field read as spaces).
fn is_v7_tar_header(b: &[u8]) -> bool {
    let Some(h) = b.get(..512) else {
        return false;
    };
    let field = &h[148..156];
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|c| *c == b' ')
        .take_while(|c| (b'0'..=b'7').contains(c))
        .collect();
    if h[0] == 0 || digits.is_empty() {
        return false;
    }
    let Ok(stored) = u32::from_str_radix(std::str::from_utf8(&digits).unwrap_or("x"), 8) else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*c)
            }
        })
        .sum();
    stored == sum
}

/// Whether `bytes` (the start of a file) are an image or a media container that may hold one:
/// what the input walk treats as an image, and what `image` cannot decode but a camera or
/// phone writes (HEIC/AVIF/MP4/MOV, Photoshop, JPEG 2000, RIFF, Matroska).
pub fn looks_like_image(bytes: &[u8]) -> bool {
    crate::container::scan(bytes).format != crate::container::ContainerFormat::Unknown
        || image::guess_format(bytes).is_ok()
        || bytes.get(4..8) == Some(b"ftyp")
        || bytes.starts_with(b"8BPS")
        || bytes.starts_with(b"\x00\x00\x00\x0cjP  ")
        || bytes.starts_with(b"\xff\x4f\xff\x51")
        || bytes.starts_with(b"RIFF")
        || bytes.starts_with(&[0x1a, 0x45, 0xdf, 0xa3])
}

/// Extensions of pictures and media that veil does not redact (it redacts JPEG, PNG and WebP,
/// recognised by content): a file or member named so is never passed through unchanged, whatever
/// its content looks like (a TGA has no signature; a JPEG with a damaged one is still shown by
/// some viewers).
pub const PICTURE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "pjpeg", "pjp", "png", "apng", "webp", "gif", "bmp", "dib",
    "tif", "tiff", "tga", "icb", "vda", "vst", "svg", "svgz", "jxl", "heic", "heif", "avif", "jp2",
    "j2k", "jpf", "jpx", "jpm", "ico", "cur", "psd", "psb", "xcf", "dng", "cr2", "cr3", "crw",
    "nef", "nrw", "arw", "srf", "sr2", "orf", "rw2", "raf", "pef", "srw", "x3f", "raw", "exr",
    "hdr", "pbm", "pgm", "ppm", "pnm", "pam", "qoi", "dds", "mp4", "m4v", "mov", "avi", "mkv",
    "webm", "mpg", "mpeg", "3gp",
];

/// Why a file or archive member that veil does not redact must not pass through either: its
/// content is an image or media container, an SVG or a JPEG XL codestream, or its name says it
/// is a picture. `head` is the start of its content.
pub fn picture_not_redacted(name: &str, head: &[u8]) -> Option<String> {
    let ext = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let what = if looks_like_image(head) {
        "its content is an image or a media container"
    } else if head.starts_with(&[0xFF, 0x0A]) || head.starts_with(b"\0\0\0\x0cJXL ") {
        "its content is a JPEG XL image"
    } else if is_svg(head) {
        "its content is an SVG drawing (which may embed pictures)"
    } else if ext
        .as_deref()
        .is_some_and(|e| PICTURE_EXTENSIONS.contains(&e))
    {
        "it is named as a picture but its content is not a JPEG, PNG or WebP veil can read"
    } else {
        return None;
    };
    Some(format!(
        "{what}; veil redacts JPEG, PNG and WebP only, so it is not passed through: convert it to \
         one of them (or rename it to its real type) and run again, or remove it"
    ))
}

/// [`picture_not_redacted`] of the file at `path`, from its name and first kilobyte.
pub fn file_picture_not_redacted(path: &Path) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let file = std::fs::File::open(path).ok()?;
    file.take(1024).read_to_end(&mut head).ok()?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    picture_not_redacted(name, &head)
}

/// An SVG document: `<svg` among the first kilobyte's tags (after an XML prolog or comments).
fn is_svg(head: &[u8]) -> bool {
    let head = &head[..head.len().min(1024)];
    head.windows(4).any(|w| w.eq_ignore_ascii_case(b"<svg"))
}

/// A zip archive with something before it (a self-extracting archive, or data prepended to
/// hide it): the end-of-central-directory record in the last 64 KiB.
pub(crate) fn zip_end_in(tail: &[u8]) -> bool {
    tail.windows(4).any(|w| w == b"PK\x05\x06")
}

/// Why an archive, table or picture must not pass through (`Some`), or `None` for a file that is
/// none, or an archive whose members are all plainly not images. `name` is the file's name.
pub fn holds_images(name: &str, bytes: &[u8]) -> Option<String> {
    holds_images_in(name, Cursor::new(bytes)).unwrap_or_else(|e| Some(format!("unreadable ({e})")))
}

/// [`holds_images`] of a file, read as a stream (a WebDataset shard of gigabytes is never held
/// in memory: only the first bytes of each member are read).
pub fn file_holds_images(path: &Path) -> std::io::Result<Option<String>> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    holds_images_in(name, std::io::BufReader::new(std::fs::File::open(path)?))
}

/// How [`holds_images`] starts its reason for a file that is no archive but carries a picture
/// inside (a data URI in JSON, a JPEG in a PDF).
pub const CARRIES: &str = "it carries ";

/// [`crate::embedded::find`] over a whole stream, a chunk at a time.
fn embedded_in(mut r: impl Read) -> std::io::Result<Option<String>> {
    let mut scanner = crate::embedded::Scanner::new();
    let mut chunk = vec![0u8; 256 << 10];
    loop {
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Ok(scanner.finish());
        }
        if let Some(what) = scanner.push(&chunk[..n]) {
            return Ok(Some(what.to_string()));
        }
    }
}

/// [`sniff`] of the file at `path`, from its first and last bytes.
pub fn file_kind(path: &std::path::Path) -> std::io::Result<Option<ArchiveKind>> {
    let mut r = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut head = Vec::with_capacity(512);
    (&mut r).take(512).read_to_end(&mut head)?;
    let mut tail = [0u8; 4];
    if r.seek(SeekFrom::End(0))? >= 8 {
        r.seek(SeekFrom::End(-4))?;
        r.read_exact(&mut tail)?;
    }
    Ok(sniff_ends(&head, &tail))
}

fn holds_images_in<R: Read + Seek>(name: &str, mut r: R) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(1024);
    (&mut r).take(1024).read_to_end(&mut head)?;
    let len = r.seek(SeekFrom::End(0))?;
    let back = len.min(65_557); // the largest end-of-central-directory record and its comment
    let mut tail = vec![0u8; back as usize];
    r.seek(SeekFrom::End(-(back as i64)))?;
    r.read_exact(&mut tail)?;
    r.seek(SeekFrom::Start(0))?;
    let last4 = if len >= 8 {
        &tail[tail.len() - 4..]
    } else {
        &[][..]
    };
    let Some(kind) = sniff_ends(&head, last4) else {
        if let Some(why) = picture_not_redacted(name, &head) {
            return Ok(Some(why));
        }
        if zip_end_in(&tail) {
            return Ok(Some(
                "a zip archive with other data before it (self-extracting, or hidden): veil \
                 cannot look inside it, so it may hold images"
                    .into(),
            ));
        }
        // Annotations and sidecars copied as they are (LabelMe's `imageData`, a data URI in an
        // HTML page, a JPEG wrapped in a PDF) may carry the very photo veil redacts.
        return Ok(embedded_in(r)?.map(|what| {
            format!(
                "{CARRIES}{what}, which veil would pass through unredacted: store the picture \
                 as an image file of its own (JPEG, PNG or WebP) or remove it, and run again"
            )
        }));
    };
    let members = match kind {
        ArchiveKind::Tar => tar_member_heads(r),
        ArchiveKind::Zip => zip_member_heads(r),
        other => {
            return Ok(Some(format!(
                "{}: veil cannot look inside it, so it may hold images",
                other.as_str()
            )))
        }
    };
    Ok(match members {
        Err(why) => Some(format!("{}: {why}, so it may hold images", kind.as_str())),
        Ok(None) => None,
        Ok(Some((name, None))) => Some(format!(
            "{} that holds images or archives ({name})",
            kind.as_str()
        )),
        Ok(Some((name, Some(why)))) => Some(format!(
            "{} that holds images or archives ({name}: {why})",
            kind.as_str()
        )),
    })
}

/// How many bytes of each member are looked at for a signature.
const HEAD: usize = 300;
/// How many bytes at the end of each member are looked at for a zip's end record.
const TAIL: usize = 65_557;

/// The first member that must not pass through: its name, and what it hides when its start does
/// not already say (see [`member_unsafe`]).
type Unsafe = Option<(String, Option<String>)>;

/// Whether a tar entry of type `kind` holds a file's bytes as they are: a regular or a
/// contiguous (`7`) file, which every reader extracts as a regular file.
pub(crate) fn tar_is_file(kind: tar::EntryType) -> bool {
    kind.is_file() || kind.is_contiguous()
}

/// Why a tar entry of type `kind` is refused whatever its content: a GNU sparse file (its bytes
/// on disk are not the file's), or a type veil does not know (readers extract those as regular
/// files).
pub(crate) fn tar_type_refused(kind: tar::EntryType) -> Option<String> {
    if kind.is_gnu_sparse() {
        return Some(
            "a GNU sparse file, which veil cannot rewrite faithfully: recreate the archive \
             without --sparse and run again"
                .into(),
        );
    }
    use tar::EntryType as T;
    let known = [
        T::Regular,
        T::Link,
        T::Symlink,
        T::Char,
        T::Block,
        T::Directory,
        T::Fifo,
        T::Continuous,
        T::GNULongName,
        T::GNULongLink,
        T::XGlobalHeader,
        T::XHeader,
    ];
    (!known.contains(&kind)).then(|| {
        format!(
            "an entry of unknown type `{}`, which other readers may extract as a file: \
             recreate the archive with regular files only and run again",
            kind.as_byte().escape_ascii()
        )
    })
}

/// Why a directory entry that holds `size` bytes is refused.
pub(crate) fn directory_with_data(size: u64) -> String {
    format!(
        "a directory entry that holds {size} bytes (readers may extract them as a file): \
         recreate the archive and run again"
    )
}

/// Checks what follows a tar archive's end: padding (zeros) only. Anything else is data no tar
/// reader shows and veil would not look at.
pub(crate) fn tar_end_is_clean(mut r: impl Read) -> Result<(), String> {
    let mut buf = vec![0u8; 64 << 10];
    let mut at = 0u64;
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| format!("data after the end of the archive that cannot be read ({e})"))?;
        if n == 0 {
            return Ok(());
        }
        if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
            let at = at + i as u64;
            return Err(format!(
                "data after the end of the archive (non-zero bytes from byte {at} past its end \
                 marker), which veil would not look at: remove it and run again"
            ));
        }
        at += n as u64;
    }
}

/// Reads a member to its end: why it must not pass through as it is (`Some`): a picture or an
/// archive at its start (`Some(None)`: the start says it), or a picture anywhere inside it, or a
/// zip archive behind other bytes (`Some(Some(why))`).
fn member_unsafe(name: &str, mut r: impl Read) -> std::io::Result<Option<Option<String>>> {
    let mut head = Vec::with_capacity(HEAD);
    let mut tail: Vec<u8> = Vec::new();
    let mut scanner = crate::embedded::Scanner::new();
    let mut chunk = vec![0u8; 256 << 10];
    let head_says =
        |head: &[u8]| sniff(head).is_some() || picture_not_redacted(name, head).is_some();
    loop {
        let n = r.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        let c = &chunk[..n];
        if head.len() < HEAD {
            let take = (HEAD - head.len()).min(n);
            head.extend_from_slice(&c[..take]);
            if head.len() == HEAD && head_says(&head) {
                return Ok(Some(None));
            }
        }
        if let Some(why) = scanner.push(c) {
            return Ok(Some(Some(why.to_string())));
        }
        tail.extend_from_slice(c);
        if tail.len() > 2 * TAIL {
            tail.drain(..tail.len() - TAIL);
        }
    }
    if head_says(&head) {
        return Ok(Some(None));
    }
    if let Some(why) = scanner.finish() {
        return Ok(Some(Some(why)));
    }
    Ok(zip_end_in(&tail[tail.len().saturating_sub(TAIL)..])
        .then(|| Some("a zip archive behind other bytes (self-extracting, or hidden)".to_string())))
}

/// The first member of a tar archive that must not pass through, reading every member to its
/// end; an entry type veil cannot read faithfully, or data after the archive's end, is an error.
fn tar_member_heads(r: impl Read) -> Result<Unsafe, String> {
    let mut archive = tar::Archive::new(r);
    let mut count = 0usize;
    let entries = archive.entries().map_err(|e| format!("unreadable ({e})"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("unreadable ({e})"))?;
        count += 1;
        if count > MAX_MEMBERS {
            return Err(format!("more than {MAX_MEMBERS} members"));
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if let Some(why) = tar_type_refused(kind) {
            return Err(format!("member {name}: {why}"));
        }
        if !tar_is_file(kind) {
            // Directories, links, devices and pax headers carry no file bytes; one that says it
            // does is refused (some readers would extract them).
            let size = entry.size();
            if size > 0 && kind.is_dir() {
                return Err(format!("member {name}: {}", directory_with_data(size)));
            }
            if size > 0 && !kind.is_pax_global_extensions() {
                return Err(format!(
                    "member {name}: an entry of type `{}` that holds {size} bytes (readers may \
                     extract them as a file): recreate the archive and run again",
                    kind.as_byte().escape_ascii()
                ));
            }
            continue;
        }
        if let Some(why) =
            member_unsafe(&name, entry).map_err(|e| format!("unreadable member {name} ({e})"))?
        {
            return Ok(Some((name, why)));
        }
    }
    tar_end_is_clean(archive.into_inner())?;
    Ok(None)
}

/// The first member of a zip archive that must not pass through, reading every member to its
/// end; a directory entry that holds data is an error.
fn zip_member_heads(r: impl Read + Seek) -> Result<Unsafe, String> {
    let mut archive = zip::ZipArchive::new(r).map_err(|e| format!("unreadable ({e})"))?;
    if archive.len() > MAX_MEMBERS {
        return Err(format!("more than {MAX_MEMBERS} members"));
    }
    for i in 0..archive.len() {
        let member = archive
            .by_index(i)
            .map_err(|e| format!("unreadable member {i} ({e})"))?;
        let name = member.name().to_string();
        if member.is_dir() {
            if member.size() > 0 {
                return Err(format!(
                    "member {name}: {}",
                    directory_with_data(member.size())
                ));
            }
            continue;
        }
        // Members are read to their end: a bomb is refused before (as the reader refuses it).
        let caps = crate::members::Caps::default();
        let (size, packed) = (member.size(), member.compressed_size().max(1));
        if size > caps.member_bytes || (size > 1 << 20 && size / packed > caps.zip_ratio) {
            return Err(format!(
                "member {name} expands to {size} bytes from {packed}, over veil's caps"
            ));
        }
        if let Some(why) =
            member_unsafe(&name, member).map_err(|e| format!("unreadable member {name} ({e})"))?
        {
            return Ok(Some((name, why)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn png() -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::new(4, 4)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
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
    fn archives_of_images_are_refused_and_archives_of_text_pass() {
        let img = png();
        let text: &[u8] = b"{\"caption\": \"a person\"}";
        let shard = tar_of(&[("000001.json", text), ("000001.jpg", &img)]);
        assert_eq!(sniff(&shard), Some(ArchiveKind::Tar));
        let why = holds_images("f", &shard).unwrap();
        assert!(why.contains("000001.jpg"), "{why}");
        assert_eq!(holds_images("f", &tar_of(&[("a.json", text)])), None);

        let z = zip_of(&[("notes.txt", text), ("photos/p.png", &img)]);
        assert!(holds_images("f", &z).unwrap().contains("photos/p.png"));
        assert_eq!(holds_images("f", &zip_of(&[("notes.txt", text)])), None);
        // An archive inside an archive may hold images.
        assert!(holds_images("f", &zip_of(&[("inner.tar", &shard)])).is_some());
    }

    #[test]
    fn what_cannot_be_looked_inside_is_refused() {
        for (bytes, kind) in [
            (vec![0x1f, 0x8b, 8, 0, 0, 0], "gzip"),
            (vec![0x28, 0xb5, 0x2f, 0xfd, 0], "zstd"),
            (b"PAR1 columns PAR1".to_vec(), "Parquet"),
            (b"Rar!\x1a\x07\x01\x00".to_vec(), "RAR"),
        ] {
            let why = holds_images("f", &bytes).unwrap();
            assert!(why.contains(kind), "{why}");
        }
        // A truncated tar: its header claims more than there is.
        let mut shard = tar_of(&[("000001.jpg", &png())]);
        shard.truncate(600);
        assert!(holds_images("f", &shard).is_some());
        assert_eq!(holds_images("f", b"plain text, no archive"), None);
    }

    #[test]
    fn pictures_veil_does_not_redact_are_refused_by_content_or_name() {
        let text: &[u8] = b"{\"caption\": \"a person\"}";
        // A TGA has no signature: its name is all there is.
        let tga = [
            &[0u8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2, 0, 24, 0][..],
            &[9; 12],
        ]
        .concat();
        assert!(holds_images("face.tga", &tga)
            .unwrap()
            .contains("named as a picture"));
        assert!(holds_images("face.jpg", b"\xFF\xD9 damaged signature").is_some());
        let svg = b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"><image href=\"data:image/png;base64,iVBOR\"/></svg>";
        assert!(holds_images("drawing.xml", svg).unwrap().contains("SVG"));
        assert!(holds_images("x.bin", b"\xFF\x0A\xFA\x7F")
            .unwrap()
            .contains("JPEG XL"));
        // A JPEG without an extension, a BMP under another name.
        let mut bmp = b"BM".to_vec();
        bmp.extend_from_slice(&[0; 60]);
        assert!(holds_images("photo", &bmp).is_some());
        assert_eq!(holds_images("notes.txt", text), None);
        // Members are judged the same way.
        let shard = tar_of(&[("000001.json", text), ("000001.tga", &tga)]);
        assert!(holds_images("s.tar", &shard)
            .unwrap()
            .contains("000001.tga"));
    }

    #[test]
    fn a_tar_without_magic_and_a_zip_behind_other_bytes_are_archives() {
        // A pre-POSIX header, as the `tar` crate writes it: no "ustar" magic, only a checksum.
        let img = png();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_old();
        h.set_size(img.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "photo.jpg", img.as_slice()).unwrap();
        let v7 = b.into_inner().unwrap();
        assert_ne!(&v7[257..262], b"ustar");
        assert_eq!(sniff(&v7), Some(ArchiveKind::Tar));
        assert!(holds_images("old.tar", &v7).unwrap().contains("photo.jpg"));
        let sfx = [
            &b"#!/bin/sh\nexit 0\n"[..],
            &zip_of(&[("photo.jpg", &png())]),
        ]
        .concat();
        assert!(holds_images("setup.bin", &sfx).unwrap().contains("zip"));
    }
}
