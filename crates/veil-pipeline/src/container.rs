//! Container sniffing and metadata inventory for input images.
//!
//! [`scan`] walks the container structure of a JPEG, PNG, WebP or GIF file
//! (recognised from its magic bytes, never from the file name) *without*
//! decoding any pixels, and reports:
//!
//! * which kinds of potentially identifying metadata the file carries
//!   ([`MetadataKind`]: EXIF and the sensitive EXIF tags inside it such as
//!   GPS, serial numbers, owner/artist, embedded thumbnails; XMP; IPTC;
//!   comments; ICC profiles; PNG text chunks; unknown JPEG APPn segments),
//!   so that the pipeline can record in its provenance what was stripped;
//! * whether the container structure is *complete* (a JPEG reaches EOI after
//!   its last scan, a PNG reaches IEND, a WebP RIFF has a consistent size, a
//!   GIF reaches its trailer), so that truncated inputs can be rejected
//!   (fail closed) even when a lenient decoder would return a half-grey image;
//! * whether the file is animated (multi-frame GIF, animated WebP, APNG), so
//!   that the pipeline never anonymises only the first frame;
//! * the embedded ICC profile where it can be extracted without
//!   decompression (JPEG APP2 chunks reassembled in sequence order, WebP
//!   `ICCP`, GIF `ICCRGBG1012`; PNG `iCCP` is zlib-compressed and is only
//!   reported as [`MetadataKind::Icc`]).
//!
//! The parser is written for hostile input: every read goes through
//! bounds-checked accessors, all arithmetic on lengths and offsets is
//! checked, every loop strictly advances through the input or is bounded by a
//! fixed count, and TIFF/EXIF IFD chains are guarded against cycles and
//! out-of-range offsets. It never panics and never allocates more than a
//! small multiple of the input size.
//!
//! Data after the logical end of a container (bytes after a JPEG EOI, after a
//! PNG IEND, after the RIFF-declared WebP size, or after the GIF trailer) is
//! ignored: such a file is still reported as complete. Only the
//! structure is checked; checksums (PNG CRCs) and the compressed image data
//! itself are not validated — that is the decoder's job.

use std::collections::BTreeSet;

/// Container format, sniffed from the magic bytes at the start of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerFormat {
    /// JPEG / JFIF / EXIF (`FF D8 FF`).
    Jpeg,
    /// PNG (including APNG).
    Png,
    /// WebP (`RIFF....WEBP`).
    Webp,
    /// GIF87a / GIF89a.
    Gif,
    /// Anything else, including empty input.
    Unknown,
}

/// A kind of (potentially identifying) metadata found in a container.
///
/// The order of the variants is the sort order used in
/// [`ContainerInfo::metadata`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetadataKind {
    /// An EXIF block (JPEG APP1 `Exif`, PNG `eXIf`, WebP `EXIF`).
    Exif,
    /// EXIF GPS IFD pointer (tag 0x8825).
    ExifGps,
    /// EXIF IFD1 (thumbnail IFD), JPEGInterchangeFormat (0x0201/0x0202).
    ExifThumbnail,
    /// EXIF MakerNote (0x927C).
    ExifMakerNote,
    /// Body / lens serial number (0xA431, 0xA435) or ImageUniqueID (0xA420).
    ExifSerialNumber,
    /// Artist (0x013B), Copyright (0x8298), CameraOwnerName (0xA430),
    /// XPAuthor (0x9C9D).
    ExifOwnerOrArtist,
    /// ImageDescription (0x010E), XPTitle / XPKeywords / XPSubject.
    ExifDescription,
    /// UserComment (0x9286), XPComment (0x9C9C).
    ExifUserComment,
    /// DateTime (0x0132), DateTimeOriginal (0x9003), DateTimeDigitized
    /// (0x9004), OffsetTime* (0x9010..=0x9012).
    ExifDateTime,
    /// XMP packet (JPEG APP1 incl. extended XMP, PNG iTXt
    /// `XML:com.adobe.xmp`, WebP `XMP `, GIF `XMP DataXMP`, TIFF tag 0x02BC).
    Xmp,
    /// IPTC / Photoshop resources (JPEG APP13, TIFF tag 0x83BB, GIF
    /// ImageMagick 8BIM/IPTC extensions).
    Iptc,
    /// Free-text comment (JPEG COM, GIF comment extension).
    Comment,
    /// Embedded ICC colour profile.
    Icc,
    /// PNG text chunks (`tEXt`, `zTXt`, `iTXt` other than XMP).
    PngText,
    /// Any other JPEG APPn segment (everything except plain APP0 JFIF,
    /// APP2 ICC_PROFILE and APP14 Adobe; APP0 JFIF with an embedded
    /// thumbnail and APP0 JFXX are reported here because they carry a
    /// thumbnail of the original pixels), and unknown GIF application
    /// extensions.
    OtherAppSegment,
}

impl MetadataKind {
    /// Stable snake_case name, used in provenance records.
    pub fn as_str(&self) -> &'static str {
        match self {
            MetadataKind::Exif => "exif",
            MetadataKind::ExifGps => "exif_gps",
            MetadataKind::ExifThumbnail => "exif_thumbnail",
            MetadataKind::ExifMakerNote => "exif_maker_note",
            MetadataKind::ExifSerialNumber => "exif_serial_number",
            MetadataKind::ExifOwnerOrArtist => "exif_owner_or_artist",
            MetadataKind::ExifDescription => "exif_description",
            MetadataKind::ExifUserComment => "exif_user_comment",
            MetadataKind::ExifDateTime => "exif_date_time",
            MetadataKind::Xmp => "xmp",
            MetadataKind::Iptc => "iptc",
            MetadataKind::Comment => "comment",
            MetadataKind::Icc => "icc",
            MetadataKind::PngText => "png_text",
            MetadataKind::OtherAppSegment => "other_app_segment",
        }
    }
}

/// Result of [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Sniffed container format.
    pub format: ContainerFormat,
    /// Metadata kinds present, sorted and deduplicated.
    pub metadata: Vec<MetadataKind>,
    /// The container structure ends properly (see the module docs). Always
    /// `false` for [`ContainerFormat::Unknown`].
    pub complete: bool,
    /// Multi-frame GIF, animated WebP (ANIM/ANMF chunks or VP8X animation
    /// flag) or APNG (`acTL`).
    pub animated: bool,
    /// Reassembled ICC profile when it can be extracted without
    /// decompression (never for PNG, whose `iCCP` is zlib-compressed).
    pub icc_profile: Option<Vec<u8>>,
}

/// Sniffs the container format and inventories its metadata, completeness and
/// animation. Never panics.
pub fn scan(bytes: &[u8]) -> ContainerInfo {
    scan_full(bytes).0
}

/// EXIF orientation (tag 0x0112 in IFD0 of the first EXIF block) of a JPEG,
/// PNG or WebP file. Only values 1..=8 are returned; anything else (missing
/// tag, invalid value, no EXIF) gives `None`. A convenience: the decoder
/// reports the orientation as well.
pub fn jpeg_orientation(bytes: &[u8]) -> Option<u16> {
    scan_full(bytes).1.filter(|o| (1..=8).contains(o))
}

// ---------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------

/// Accumulator shared by the per-format walkers.
#[derive(Debug, Default)]
struct Acc {
    kinds: BTreeSet<MetadataKind>,
    /// Orientation from IFD0 of the first EXIF block that had an IFD0.
    orientation: Option<u16>,
    /// Set once an IFD0 has been parsed, so later EXIF blocks do not
    /// override the orientation.
    orientation_done: bool,
    complete: bool,
    animated: bool,
    icc: Option<Vec<u8>>,
}

impl Acc {
    fn add(&mut self, kind: MetadataKind) {
        self.kinds.insert(kind);
    }
}

fn sniff(bytes: &[u8]) -> ContainerFormat {
    const PNG_SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        ContainerFormat::Jpeg
    } else if bytes.starts_with(PNG_SIG) {
        ContainerFormat::Png
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP".as_slice()) {
        ContainerFormat::Webp
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        ContainerFormat::Gif
    } else {
        ContainerFormat::Unknown
    }
}

fn scan_full(bytes: &[u8]) -> (ContainerInfo, Option<u16>) {
    let format = sniff(bytes);
    let mut acc = Acc::default();
    match format {
        ContainerFormat::Jpeg => scan_jpeg(bytes, &mut acc),
        ContainerFormat::Png => scan_png(bytes, &mut acc),
        ContainerFormat::Webp => scan_webp(bytes, &mut acc),
        ContainerFormat::Gif => scan_gif(bytes, &mut acc),
        ContainerFormat::Unknown => {}
    }
    let info = ContainerInfo {
        format,
        metadata: acc.kinds.into_iter().collect(),
        complete: acc.complete,
        animated: acc.animated,
        icc_profile: acc.icc,
    };
    (info, acc.orientation)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_be_bytes(s))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(s))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(s))
}

/// `b[start..start + len]`, checked.
fn sub(b: &[u8], start: usize, len: usize) -> Option<&[u8]> {
    b.get(start..start.checked_add(len)?)
}

// ----------------------------- EXIF / TIFF ---------------------------------

#[derive(Debug, Clone, Copy)]
enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let s: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self {
            ByteOrder::Little => u16::from_le_bytes(s),
            ByteOrder::Big => u16::from_be_bytes(s),
        })
    }

    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(match self {
            ByteOrder::Little => u32::from_le_bytes(s),
            ByteOrder::Big => u32::from_be_bytes(s),
        })
    }
}

/// Upper bound on the number of IFDs visited in one EXIF block.
const MAX_IFDS: usize = 64;
/// Upper bound on the entries read from one IFD (the count field is a u16,
/// so this only documents the natural limit).
const MAX_IFD_ENTRIES: usize = u16::MAX as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IfdRole {
    /// Position in the main chain (0 = IFD0, 1 = IFD1/thumbnail, ...).
    Main(usize),
    /// Exif private IFD (0x8769).
    Exif,
}

/// Classification of a tag found in IFD0, IFD1+ or the Exif IFD.
fn classify_tag(tag: u16) -> Option<MetadataKind> {
    use MetadataKind as K;
    Some(match tag {
        0x8825 => K::ExifGps,
        0x013B | 0x8298 | 0xA430 | 0x9C9D => K::ExifOwnerOrArtist,
        0x010E | 0x9C9B | 0x9C9E | 0x9C9F => K::ExifDescription,
        0x0132 | 0x9003 | 0x9004 | 0x9010..=0x9012 => K::ExifDateTime,
        0x927C => K::ExifMakerNote,
        0xA431 | 0xA435 | 0xA420 => K::ExifSerialNumber,
        0x9286 | 0x9C9C => K::ExifUserComment,
        0x0201 | 0x0202 => K::ExifThumbnail,
        0x02BC => K::Xmp,
        0x83BB => K::Iptc,
        0x8773 => K::Icc,
        _ => return None,
    })
}

/// Parses a TIFF structure (the payload of an EXIF block) and records the
/// sensitive tags it contains. `Exif` itself is recorded by the caller.
fn parse_tiff(tiff: &[u8], acc: &mut Acc) {
    let order = match tiff.get(0..4) {
        Some(b"II*\0") => ByteOrder::Little,
        Some(b"MM\0*") => ByteOrder::Big,
        _ => return,
    };
    let Some(ifd0) = order.u32(tiff, 4) else {
        return;
    };
    let mut visited: Vec<usize> = Vec::new();
    // Work list of (offset, role). Both it and `visited` are capped at
    // MAX_IFDS entries, so memory and time stay bounded for hostile input.
    let mut work: Vec<(u32, IfdRole)> = vec![(ifd0, IfdRole::Main(0))];
    let push = |work: &mut Vec<(u32, IfdRole)>, item: (u32, IfdRole)| {
        if work.len() < MAX_IFDS {
            work.push(item);
        }
    };
    while let Some((offset, role)) = work.pop() {
        if visited.len() >= MAX_IFDS {
            break;
        }
        let Ok(off) = usize::try_from(offset) else {
            continue;
        };
        // Offsets below 8 would overlap the header; 0 means "none".
        if off < 8 || visited.contains(&off) {
            continue;
        }
        let Some(count) = order.u16(tiff, off) else {
            continue;
        };
        visited.push(off);
        if let IfdRole::Main(n) = role {
            if n >= 1 {
                acc.add(MetadataKind::ExifThumbnail);
            }
        }
        let count = usize::from(count).min(MAX_IFD_ENTRIES);
        let mut entries_complete = true;
        for i in 0..count {
            let Some(entry_at) = i
                .checked_mul(12)
                .and_then(|x| x.checked_add(off))
                .and_then(|x| x.checked_add(2))
            else {
                entries_complete = false;
                break;
            };
            let (Some(tag), Some(typ), Some(value)) = (
                order.u16(tiff, entry_at),
                entry_at.checked_add(2).and_then(|a| order.u16(tiff, a)),
                entry_at.checked_add(8).and_then(|a| order.u32(tiff, a)),
            ) else {
                entries_complete = false;
                break;
            };
            if let Some(kind) = classify_tag(tag) {
                acc.add(kind);
            }
            match tag {
                0x8769 => push(&mut work, (value, IfdRole::Exif)),
                0x0112 if role == IfdRole::Main(0) && !acc.orientation_done => {
                    // SHORT values are left-justified in the value field.
                    let v = match typ {
                        3 => entry_at.checked_add(8).and_then(|a| order.u16(tiff, a)),
                        4 => u16::try_from(value).ok(),
                        _ => None,
                    };
                    if acc.orientation.is_none() {
                        acc.orientation = v;
                    }
                }
                _ => {}
            }
        }
        if role == IfdRole::Main(0) {
            acc.orientation_done = true;
        }
        if let (IfdRole::Main(n), true) = (role, entries_complete) {
            let next_at = count
                .checked_mul(12)
                .and_then(|x| x.checked_add(off))
                .and_then(|x| x.checked_add(2));
            if let Some(next) = next_at.and_then(|a| order.u32(tiff, a)) {
                if next != 0 {
                    push(&mut work, (next, IfdRole::Main(n.saturating_add(1))));
                }
            }
        }
    }
}

/// EXIF payload as stored in PNG `eXIf` / WebP `EXIF`: normally a bare TIFF
/// structure, but some writers keep the JPEG-style `Exif\0\0` prefix.
fn parse_exif_payload(data: &[u8], acc: &mut Acc) {
    acc.add(MetadataKind::Exif);
    let tiff = if data.starts_with(b"Exif\0") {
        data.get(6..).unwrap_or(&[])
    } else {
        data
    };
    parse_tiff(tiff, acc);
}

// --------------------------------- JPEG ------------------------------------

const XMP_SIG: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const XMP_EXT_SIG: &[u8] = b"http://ns.adobe.com/xmp/extension/\0";
const ICC_SIG: &[u8] = b"ICC_PROFILE\0";

/// Walks JPEG segments and entropy-coded data from SOI to EOI.
fn scan_jpeg(b: &[u8], acc: &mut Acc) {
    let mut pos: usize = 2; // after SOI
    let mut saw_scan = false;
    let mut icc_chunks: Vec<(u8, u8, &[u8])> = Vec::new();
    let mut icc_seen = false;
    // Every iteration advances `pos` by at least one byte, so the loop is
    // bounded by the input length.
    loop {
        // A marker must start here: 0xFF, optionally followed by fill 0xFFs.
        if b.get(pos) != Some(&0xFF) {
            break; // garbage or end of data before EOI: incomplete
        }
        while b.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = b.get(pos) else {
            break;
        };
        pos += 1;
        match marker {
            0xD9 => {
                acc.complete = saw_scan;
                break;
            }
            // Nested SOI or a stuffed zero outside a scan: malformed.
            0xD8 | 0x00 => break,
            // Standalone markers without a length field.
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(len) = be16(b, pos) else {
            break;
        };
        let len = usize::from(len);
        if len < 2 {
            break;
        }
        let Some(end) = pos.checked_add(len) else {
            break;
        };
        let Some(payload) = b.get(pos + 2..end) else {
            // Segment length runs past the end of the file: truncated.
            // Still record what the partial segment is.
            if let Some(partial) = b.get(pos.saturating_add(2)..) {
                jpeg_segment(marker, partial, acc, &mut icc_chunks, &mut icc_seen);
            }
            break;
        };
        jpeg_segment(marker, payload, acc, &mut icc_chunks, &mut icc_seen);
        pos = end;
        if marker == 0xDA {
            saw_scan = true;
            match skip_entropy(b, pos) {
                Some(next) => pos = next,
                None => break, // data ended inside the scan: truncated
            }
        }
    }
    if icc_seen {
        acc.add(MetadataKind::Icc);
        acc.icc = assemble_icc(&icc_chunks);
    }
}

/// Skips entropy-coded data starting at `pos`. Returns the position of the
/// 0xFF that introduces the next (non-RST) marker, or `None` if the data
/// ends first.
pub(crate) fn skip_entropy(b: &[u8], mut pos: usize) -> Option<usize> {
    // Each iteration advances `pos` by at least two bytes.
    loop {
        let rel = b.get(pos..)?.iter().position(|&x| x == 0xFF)?;
        let ff = pos.checked_add(rel)?;
        let mut j = ff.checked_add(1)?;
        while b.get(j) == Some(&0xFF) {
            j += 1;
        }
        match *b.get(j)? {
            // Stuffed byte or restart marker: still inside the scan.
            0x00 | 0xD0..=0xD7 => pos = j.checked_add(1)?,
            _ => return Some(j - 1),
        }
    }
}

fn jpeg_segment<'a>(
    marker: u8,
    payload: &'a [u8],
    acc: &mut Acc,
    icc_chunks: &mut Vec<(u8, u8, &'a [u8])>,
    icc_seen: &mut bool,
) {
    match marker {
        0xE0 => {
            if payload.starts_with(b"JFIF\0") {
                // JFIF: version(2) units(1) xdens(2) ydens(2) xthumb(1) ythumb(1)
                let xt = payload.get(12).copied().unwrap_or(0);
                let yt = payload.get(13).copied().unwrap_or(0);
                if xt != 0 && yt != 0 {
                    acc.add(MetadataKind::OtherAppSegment);
                }
            } else {
                // JFXX (thumbnail extension) or anything else.
                acc.add(MetadataKind::OtherAppSegment);
            }
        }
        0xE1 => {
            if payload.starts_with(b"Exif\0") {
                acc.add(MetadataKind::Exif);
                parse_tiff(payload.get(6..).unwrap_or(&[]), acc);
            } else if payload.starts_with(XMP_SIG) || payload.starts_with(XMP_EXT_SIG) {
                acc.add(MetadataKind::Xmp);
            } else {
                acc.add(MetadataKind::OtherAppSegment);
            }
        }
        0xE2 => {
            if payload.starts_with(ICC_SIG) {
                *icc_seen = true;
                let seq = payload.get(12).copied();
                let count = payload.get(13).copied();
                if let (Some(seq), Some(count), Some(data)) = (seq, count, payload.get(14..)) {
                    icc_chunks.push((seq, count, data));
                }
            } else {
                acc.add(MetadataKind::OtherAppSegment);
            }
        }
        0xED => {
            if payload.starts_with(b"Photoshop 3.0\0") || payload.starts_with(b"Adobe_Photoshop2.5")
            {
                acc.add(MetadataKind::Iptc);
            } else {
                acc.add(MetadataKind::OtherAppSegment);
            }
        }
        // APP14 "Adobe" (colour transform flag) is harmless.
        0xEE if payload.starts_with(b"Adobe") => {}
        0xE3..=0xEC | 0xEE | 0xEF => acc.add(MetadataKind::OtherAppSegment),
        0xFE => acc.add(MetadataKind::Comment),
        _ => {}
    }
}

/// Reassembles APP2 ICC_PROFILE chunks: all chunks must agree on the count
/// and carry each sequence number 1..=count exactly once.
fn assemble_icc(chunks: &[(u8, u8, &[u8])]) -> Option<Vec<u8>> {
    let &(_, count, _) = chunks.first()?;
    if count == 0 || chunks.len() != usize::from(count) {
        return None;
    }
    let mut out = Vec::new();
    for seq in 1..=count {
        let mut matching = chunks.iter().filter(|c| c.0 == seq && c.1 == count);
        let (_, _, data) = matching.next()?;
        if matching.next().is_some() {
            return None;
        }
        out.extend_from_slice(data);
    }
    if out.is_empty() {
        None
    } else {
        Some(out)
    }
}

// --------------------------------- PNG -------------------------------------

fn scan_png(b: &[u8], acc: &mut Acc) {
    let mut pos: usize = 8;
    let mut first = true;
    let mut ihdr_first = false;
    let mut saw_idat = false;
    // Each iteration advances `pos` by at least 12 bytes.
    // Running out of data before IEND ends the loop with `complete == false`.
    while let (Some(len), Some(typ)) = (be32(b, pos), sub(b, pos.saturating_add(4), 4)) {
        if len > 0x7FFF_FFFF {
            break; // PNG spec limit; a lying length
        }
        let Ok(len) = usize::try_from(len) else {
            break;
        };
        let data_start = pos + 8;
        let data = sub(b, data_start, len);
        let chunk_end = data_start.checked_add(len).and_then(|x| x.checked_add(4));
        let Some(chunk_end) = chunk_end.filter(|&e| e <= b.len()) else {
            // Truncated chunk: record what it is, then stop (incomplete).
            png_chunk(
                typ,
                data.or_else(|| b.get(data_start..)).unwrap_or(&[]),
                acc,
            );
            break;
        };
        if first {
            ihdr_first = typ == b"IHDR";
            first = false;
        }
        match typ {
            b"IDAT" => saw_idat = true,
            b"IEND" => {
                acc.complete = ihdr_first && saw_idat;
                break;
            }
            _ => {}
        }
        png_chunk(typ, data.unwrap_or(&[]), acc);
        pos = chunk_end;
    }
}

fn png_chunk(typ: &[u8], data: &[u8], acc: &mut Acc) {
    match typ {
        b"tEXt" | b"zTXt" | b"iTXt" => {
            let keyword_end = data.iter().position(|&c| c == 0).unwrap_or(data.len());
            if data.get(..keyword_end) == Some(b"XML:com.adobe.xmp".as_slice()) {
                acc.add(MetadataKind::Xmp);
            } else {
                acc.add(MetadataKind::PngText);
            }
        }
        b"eXIf" => parse_exif_payload(data, acc),
        b"iCCP" => acc.add(MetadataKind::Icc),
        b"acTL" => acc.animated = true,
        _ => {}
    }
}

// --------------------------------- WebP ------------------------------------

fn scan_webp(b: &[u8], acc: &mut Acc) {
    let Some(riff_size) = le32(b, 4) else {
        return;
    };
    let riff_end = usize::try_from(riff_size)
        .ok()
        .and_then(|s| s.checked_add(8));
    let size_ok = riff_size >= 4 && riff_end.is_some_and(|e| e <= b.len());
    let end = riff_end.map_or(b.len(), |e| e.min(b.len()));
    let mut pos: usize = 12;
    let mut chunks_ok = true;
    let mut has_image = false;
    // Each iteration advances `pos` by at least 8 bytes.
    while pos < end {
        let (Some(fourcc), Some(size)) = (sub(b, pos, 4), le32(b, pos.saturating_add(4))) else {
            chunks_ok = false;
            break;
        };
        let data_start = pos + 8;
        let Ok(size) = usize::try_from(size) else {
            chunks_ok = false;
            break;
        };
        let data_end = data_start.checked_add(size).filter(|&e| e <= end);
        let Some(data_end) = data_end else {
            // Chunk runs past the RIFF end / file end: truncated.
            webp_chunk(
                fourcc,
                b.get(data_start..end).unwrap_or(&[]),
                acc,
                &mut has_image,
            );
            chunks_ok = false;
            break;
        };
        webp_chunk(
            fourcc,
            b.get(data_start..data_end).unwrap_or(&[]),
            acc,
            &mut has_image,
        );
        let padded_end = data_end.saturating_add(size & 1);
        if padded_end > end {
            // Missing pad byte after the final chunk: tolerated.
            break;
        }
        pos = padded_end;
    }
    acc.complete = size_ok && chunks_ok && has_image;
}

fn webp_chunk(fourcc: &[u8], data: &[u8], acc: &mut Acc, has_image: &mut bool) {
    match fourcc {
        b"VP8 " | b"VP8L" | b"ANMF" => {
            *has_image = true;
            if fourcc == b"ANMF" {
                acc.animated = true;
            }
        }
        b"VP8X" if data.first().is_some_and(|f| f & 0x02 != 0) => acc.animated = true,
        b"ANIM" => acc.animated = true,
        b"EXIF" => parse_exif_payload(data, acc),
        b"XMP " => acc.add(MetadataKind::Xmp),
        b"ICCP" => {
            acc.add(MetadataKind::Icc);
            if acc.icc.is_none() && !data.is_empty() {
                acc.icc = Some(data.to_vec());
            }
        }
        _ => {}
    }
}

// --------------------------------- GIF -------------------------------------

/// Skips a chain of GIF data sub-blocks starting at `pos` (a length byte).
/// Returns the position after the zero-length terminator, or `None` if the
/// data ends first. If `collect` is given, the sub-block payloads are
/// appended to it.
fn gif_sub_blocks(b: &[u8], mut pos: usize, mut collect: Option<&mut Vec<u8>>) -> Option<usize> {
    // Each iteration advances `pos` by at least one byte.
    loop {
        let size = usize::from(*b.get(pos)?);
        pos += 1;
        if size == 0 {
            return Some(pos);
        }
        if let Some(out) = collect.as_deref_mut() {
            out.extend_from_slice(b.get(pos..pos.checked_add(size)?)?);
        }
        pos = pos.checked_add(size)?;
    }
}

fn gif_color_table_len(packed: u8) -> usize {
    if packed & 0x80 != 0 {
        3usize << ((packed & 0x07) + 1)
    } else {
        0
    }
}

fn scan_gif(b: &[u8], acc: &mut Acc) {
    let Some(&lsd_packed) = b.get(10) else {
        return;
    };
    let mut pos: usize = 13 + gif_color_table_len(lsd_packed);
    let mut images: usize = 0;
    // Each iteration advances `pos` by at least one byte.
    loop {
        match b.get(pos) {
            Some(0x3B) => {
                acc.complete = images > 0;
                break;
            }
            Some(0x2C) => {
                let Some(&packed) = b.get(pos.saturating_add(9)) else {
                    break;
                };
                // descriptor (10) + local colour table + LZW min code size (1)
                pos = pos + 10 + gif_color_table_len(packed);
                if b.get(pos).is_none() {
                    break;
                }
                match gif_sub_blocks(b, pos + 1, None) {
                    Some(next) => pos = next,
                    None => break,
                }
                images = images.saturating_add(1);
            }
            Some(0x21) => {
                let Some(&label) = b.get(pos.saturating_add(1)) else {
                    break;
                };
                pos += 2;
                let next = match label {
                    0xFE => {
                        acc.add(MetadataKind::Comment);
                        gif_sub_blocks(b, pos, None)
                    }
                    0xFF => gif_app_extension(b, pos, acc),
                    _ => gif_sub_blocks(b, pos, None),
                };
                match next {
                    Some(next) => pos = next,
                    None => break,
                }
            }
            // End of data without trailer, or an unknown block: incomplete.
            _ => break,
        }
    }
    acc.animated = images > 1;
}

/// Application extension starting at `pos` (the first sub-block's size byte).
fn gif_app_extension(b: &[u8], pos: usize, acc: &mut Acc) -> Option<usize> {
    let id_len = usize::from(*b.get(pos)?);
    let id = b.get(pos + 1..(pos + 1).checked_add(id_len)?);
    let after_id = (pos + 1).checked_add(id_len)?;
    match id {
        Some(b"NETSCAPE2.0") | Some(b"ANIMEXTS1.0") => gif_sub_blocks(b, after_id, None),
        Some(b"XMP DataXMP") => {
            acc.add(MetadataKind::Xmp);
            gif_sub_blocks(b, after_id, None)
        }
        Some(b"ICCRGBG1012") => {
            acc.add(MetadataKind::Icc);
            let mut icc = Vec::new();
            let next = gif_sub_blocks(b, after_id, Some(&mut icc));
            if next.is_some() && acc.icc.is_none() && !icc.is_empty() {
                acc.icc = Some(icc);
            }
            next
        }
        Some(b"MGK8BIM0000") | Some(b"MGKIPTC0000") => {
            acc.add(MetadataKind::Iptc);
            gif_sub_blocks(b, after_id, None)
        }
        _ => {
            acc.add(MetadataKind::OtherAppSegment);
            gif_sub_blocks(b, after_id, None)
        }
    }
}

// --------------------------------- Tests -----------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use MetadataKind as K;

    // ---- builders ----

    /// IFD entry: (tag, type, count, value-or-offset).
    type Entry = (u16, u16, u32, u32);

    /// Builds a TIFF block with IFD0 (+ pointers to Exif/GPS IFDs when given)
    /// and an optional IFD1.
    fn build_tiff(
        big_endian: bool,
        ifd0: &[Entry],
        exif: Option<&[Entry]>,
        gps: bool,
        ifd1: Option<&[Entry]>,
    ) -> Vec<u8> {
        let w16 = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let w32 = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let ifd_size = |n: usize| (2 + 12 * n + 4) as u32;
        let mut ifd0: Vec<Entry> = ifd0.to_vec();
        let n0 = ifd0.len() + usize::from(exif.is_some()) + usize::from(gps);
        let mut next = 8 + ifd_size(n0);
        let exif_off = exif.map(|e| {
            let o = next;
            next += ifd_size(e.len());
            o
        });
        let gps_off = gps.then(|| {
            let o = next;
            next += ifd_size(1);
            o
        });
        let ifd1_off = ifd1.map(|e| {
            let o = next;
            next += ifd_size(e.len());
            o
        });
        if let Some(o) = exif_off {
            ifd0.push((0x8769, 4, 1, o));
        }
        if let Some(o) = gps_off {
            ifd0.push((0x8825, 4, 1, o));
        }
        let mut out = Vec::new();
        out.extend_from_slice(if big_endian { b"MM\0*" } else { b"II*\0" });
        out.extend_from_slice(&w32(8));
        let write_ifd = |out: &mut Vec<u8>, entries: &[Entry], next_ifd: u32| {
            out.extend_from_slice(&w16(entries.len() as u16));
            for &(tag, typ, count, value) in entries {
                out.extend_from_slice(&w16(tag));
                out.extend_from_slice(&w16(typ));
                out.extend_from_slice(&w32(count));
                if typ == 3 && count == 1 {
                    out.extend_from_slice(&w16(value as u16));
                    out.extend_from_slice(&[0, 0]);
                } else {
                    out.extend_from_slice(&w32(value));
                }
            }
            out.extend_from_slice(&w32(next_ifd));
        };
        write_ifd(&mut out, &ifd0, ifd1_off.unwrap_or(0));
        if let Some(e) = exif {
            write_ifd(&mut out, e, 0);
        }
        if gps {
            write_ifd(&mut out, &[(0x0000, 1, 4, 0x0000_0202)], 0);
        }
        if let Some(e) = ifd1 {
            write_ifd(&mut out, e, 0);
        }
        out
    }

    fn full_tiff(big_endian: bool) -> Vec<u8> {
        build_tiff(
            big_endian,
            &[
                (0x0112, 3, 1, 6),
                (0x013B, 2, 4, 0x0061_6200),
                (0x0132, 2, 4, 0),
            ],
            Some(&[(0x927C, 7, 4, 0), (0xA431, 2, 4, 0), (0x9286, 7, 4, 0)]),
            true,
            Some(&[(0x0201, 4, 1, 0), (0x0202, 4, 1, 0)]),
        )
    }

    fn seg(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, marker];
        v.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn app1_exif(tiff: &[u8]) -> Vec<u8> {
        let mut p = b"Exif\0\0".to_vec();
        p.extend_from_slice(tiff);
        seg(0xE1, &p)
    }

    fn icc_chunk(seq: u8, count: u8, data: &[u8]) -> Vec<u8> {
        let mut p = ICC_SIG.to_vec();
        p.push(seq);
        p.push(count);
        p.extend_from_slice(data);
        seg(0xE2, &p)
    }

    const SOS_HEADER: &[u8] = &[0x01, 0x01, 0x00, 0x00, 0x3F, 0x00];
    /// Entropy data containing stuffed FF00, RST markers and fill bytes.
    const ENTROPY: &[u8] = &[
        0x12, 0x34, 0xFF, 0x00, 0x56, 0xFF, 0xD0, 0x78, 0x9A, 0xFF, 0x00, 0xFF, 0xD1, 0xBC, 0xFF,
        0xFF, 0x00, 0xDE,
    ];

    fn jpeg_with(segments: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        for s in segments {
            v.extend_from_slice(s);
        }
        v
    }

    fn sample_jpeg() -> Vec<u8> {
        let mut xmp = XMP_SIG.to_vec();
        xmp.extend_from_slice(b"<x:xmpmeta/>");
        let mut sos = seg(0xDA, SOS_HEADER);
        sos.extend_from_slice(ENTROPY);
        jpeg_with(&[
            seg(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"),
            app1_exif(&full_tiff(true)),
            seg(0xE1, &xmp),
            seg(0xFE, b"hello"),
            icc_chunk(2, 2, b"WORLD"),
            icc_chunk(1, 2, b"HELLO"),
            seg(0xEE, b"Adobe\0\x64\0\0\0\0\0"),
            seg(0xDB, &[0u8; 65]),
            seg(0xC0, &[8, 0, 8, 0, 8, 1, 1, 0x11, 0]),
            seg(0xC4, &[0u8; 20]),
            sos,
            vec![0xFF, 0xD9],
        ])
    }

    fn png_chunk_bytes(typ: &[u8], data: &[u8]) -> Vec<u8> {
        let mut v = (data.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(typ);
        v.extend_from_slice(data);
        v.extend_from_slice(&[0, 0, 0, 0]); // CRC not checked
        v
    }

    fn sample_png(with_iend: bool, extra: &[Vec<u8>]) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        v.extend(png_chunk_bytes(
            b"IHDR",
            &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0],
        ));
        for e in extra {
            v.extend_from_slice(e);
        }
        v.extend(png_chunk_bytes(
            b"IDAT",
            &[0x78, 0x9C, 0x63, 0, 0, 0, 1, 0, 1],
        ));
        if with_iend {
            v.extend(png_chunk_bytes(b"IEND", &[]));
        }
        v
    }

    fn riff_chunk(fourcc: &[u8], data: &[u8]) -> Vec<u8> {
        let mut v = fourcc.to_vec();
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        if data.len() % 2 == 1 {
            v.push(0);
        }
        v
    }

    fn webp_with(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut v = b"RIFF".to_vec();
        v.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
        v.extend_from_slice(b"WEBP");
        v.extend_from_slice(&body);
        v
    }

    fn sample_webp() -> Vec<u8> {
        let mut vp8x = vec![0x02 | 0x04 | 0x08 | 0x20, 0, 0, 0];
        vp8x.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let frame = [riff_chunk(b"VP8L", &[0x2F, 0, 0, 0, 0]), Vec::new()].concat();
        let mut anmf = vec![0u8; 16];
        anmf.extend_from_slice(&frame);
        webp_with(&[
            riff_chunk(b"VP8X", &vp8x),
            riff_chunk(b"ICCP", b"ICCDATA"),
            riff_chunk(b"ANIM", &[0, 0, 0, 0, 0, 0]),
            riff_chunk(b"ANMF", &anmf),
            riff_chunk(b"ANMF", &anmf),
            riff_chunk(b"EXIF", &full_tiff(false)),
            riff_chunk(b"XMP ", b"<x:xmpmeta/>"),
        ])
    }

    fn sample_gif(frames: usize, trailer: bool) -> Vec<u8> {
        let mut v = b"GIF89a".to_vec();
        v.extend_from_slice(&[1, 0, 1, 0, 0x80, 0, 0]); // 1x1, GCT of 2 entries
        v.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
        // NETSCAPE looping extension
        v.extend_from_slice(&[0x21, 0xFF, 11]);
        v.extend_from_slice(b"NETSCAPE2.0");
        v.extend_from_slice(&[3, 1, 0, 0, 0]);
        // comment extension
        v.extend_from_slice(&[0x21, 0xFE, 5]);
        v.extend_from_slice(b"hello");
        v.push(0);
        for _ in 0..frames {
            v.extend_from_slice(&[0x21, 0xF9, 4, 0, 10, 0, 0, 0]); // GCE
            v.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
            v.extend_from_slice(&[2, 2, 0x44, 0x01, 0]); // LZW min 2, 2-byte block
        }
        if trailer {
            v.push(0x3B);
        }
        v
    }

    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *state >> 33
    }

    // ---- synthetic JPEG ----

    #[test]
    fn jpeg_kinds_and_completeness() {
        let j = sample_jpeg();
        let info = scan(&j);
        assert_eq!(info.format, ContainerFormat::Jpeg);
        assert!(info.complete);
        assert!(!info.animated);
        assert_eq!(
            info.metadata,
            vec![
                K::Exif,
                K::ExifGps,
                K::ExifThumbnail,
                K::ExifMakerNote,
                K::ExifSerialNumber,
                K::ExifOwnerOrArtist,
                K::ExifUserComment,
                K::ExifDateTime,
                K::Xmp,
                K::Comment,
                K::Icc,
            ]
        );
        assert_eq!(info.icc_profile.as_deref(), Some(b"HELLOWORLD".as_slice()));
        assert_eq!(jpeg_orientation(&j), Some(6));
    }

    #[test]
    fn jpeg_every_prefix_is_incomplete() {
        let j = sample_jpeg();
        for n in 0..j.len() {
            let info = scan(&j[..n]);
            assert!(!info.complete, "prefix {n} reported complete");
            let _ = jpeg_orientation(&j[..n]);
        }
    }

    #[test]
    fn jpeg_trailing_garbage_after_eoi_is_complete() {
        let mut j = sample_jpeg();
        j.extend_from_slice(b"\0\0garbage\xFF\xD8");
        assert!(scan(&j).complete);
    }

    #[test]
    fn jpeg_progressive_multiple_scans() {
        let mut s1 = seg(0xDA, SOS_HEADER);
        s1.extend_from_slice(ENTROPY);
        let mut s2 = seg(0xDA, SOS_HEADER);
        s2.extend_from_slice(&[0x01, 0xFF, 0x00, 0x02]);
        let j = jpeg_with(&[
            seg(0xC2, &[8, 0, 8, 0, 8, 1, 1, 0x11, 0]),
            seg(0xC4, &[0u8; 20]),
            s1.clone(),
            seg(0xC4, &[0u8; 20]),
            s2,
            vec![0xFF, 0xD9],
        ]);
        let info = scan(&j);
        assert!(info.complete);
        assert!(info.metadata.is_empty());
        // Cut inside the second scan.
        assert!(!scan(&j[..j.len() - 3]).complete);
        // EOI with no scan at all is not a complete image.
        let no_scan = jpeg_with(&[seg(0xDB, &[0u8; 65]), vec![0xFF, 0xD9]]);
        assert!(!scan(&no_scan).complete);
        // Fill bytes before a marker are fine.
        let fill = jpeg_with(&[vec![0xFF, 0xFF], s1, vec![0xFF, 0xFF, 0xFF, 0xD9]]);
        assert!(scan(&fill).complete);
    }

    #[test]
    fn jpeg_app_segments_classified() {
        let mut ext_xmp = XMP_EXT_SIG.to_vec();
        ext_xmp.extend_from_slice(&[0u8; 40]);
        let mut sos = seg(0xDA, SOS_HEADER);
        sos.extend_from_slice(&[1, 2, 3]);
        let j = jpeg_with(&[
            seg(0xE0, b"JFXX\0\x10"),
            seg(0xE1, &ext_xmp),
            seg(0xED, b"Photoshop 3.0\08BIM"),
            seg(0xE2, b"MPF\0II*\0"),
            icc_chunk(1, 2, b"half"), // incomplete ICC set
            sos,
            vec![0xFF, 0xD9],
        ]);
        let info = scan(&j);
        assert!(info.complete);
        assert_eq!(
            info.metadata,
            vec![K::Xmp, K::Iptc, K::Icc, K::OtherAppSegment]
        );
        assert_eq!(info.icc_profile, None);
        assert_eq!(jpeg_orientation(&j), None);
    }

    #[test]
    fn jpeg_lying_segment_length_is_incomplete() {
        let mut j = sample_jpeg();
        // Make the APP0 length huge.
        j[4] = 0xFF;
        j[5] = 0xF0;
        assert!(!scan(&j).complete);
        // Length < 2.
        let mut k = sample_jpeg();
        k[4] = 0;
        k[5] = 1;
        assert!(!scan(&k).complete);
    }

    // ---- EXIF / TIFF ----

    #[test]
    fn tiff_both_byte_orders() {
        for be in [false, true] {
            let mut acc = Acc::default();
            parse_tiff(&full_tiff(be), &mut acc);
            let kinds: Vec<_> = acc.kinds.into_iter().collect();
            assert_eq!(
                kinds,
                vec![
                    K::ExifGps,
                    K::ExifThumbnail,
                    K::ExifMakerNote,
                    K::ExifSerialNumber,
                    K::ExifOwnerOrArtist,
                    K::ExifUserComment,
                    K::ExifDateTime,
                ]
            );
            assert_eq!(acc.orientation, Some(6));
        }
    }

    #[test]
    fn tiff_exif_ifd_tags() {
        let t = build_tiff(
            false,
            &[(0x010E, 2, 4, 0)],
            Some(&[(0xA430, 2, 4, 0), (0xA435, 2, 4, 0), (0x9003, 2, 4, 0)]),
            false,
            None,
        );
        let mut acc = Acc::default();
        parse_tiff(&t, &mut acc);
        let kinds: Vec<_> = acc.kinds.into_iter().collect();
        assert_eq!(
            kinds,
            vec![
                K::ExifSerialNumber,
                K::ExifOwnerOrArtist,
                K::ExifDescription,
                K::ExifDateTime
            ]
        );
        assert_eq!(acc.orientation, None);
    }

    #[test]
    fn tiff_cycles_and_bad_offsets_terminate() {
        // IFD0's next pointer points at itself.
        let mut t = build_tiff(false, &[(0x0132, 2, 4, 0)], None, false, None);
        let next_at = 8 + 2 + 12;
        t[next_at..next_at + 4].copy_from_slice(&8u32.to_le_bytes());
        let mut acc = Acc::default();
        parse_tiff(&t, &mut acc);
        assert!(!acc.kinds.contains(&K::ExifThumbnail));

        // Exif pointer pointing back to IFD0, IFD1 pointing to IFD0.
        let mut t = build_tiff(true, &[(0x8769, 4, 1, 8)], None, false, Some(&[]));
        let ifd1_next = t.len() - 4;
        t[ifd1_next..].copy_from_slice(&8u32.to_be_bytes());
        let mut acc = Acc::default();
        parse_tiff(&t, &mut acc);
        assert!(acc.kinds.contains(&K::ExifThumbnail));

        // Huge offsets and a huge entry count.
        let mut t = b"II*\0".to_vec();
        t.extend_from_slice(&u32::MAX.to_le_bytes());
        parse_tiff(&t, &mut Acc::default());
        let mut t = b"II*\0\x08\0\0\0\xFF\xFF".to_vec();
        t.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        let mut acc = Acc::default();
        parse_tiff(&t, &mut acc);
        assert!(acc.kinds.contains(&K::ExifGps));

        // Long chain of distinct IFDs: bounded by MAX_IFDS.
        let mut t = b"II*\0\x08\0\0\0".to_vec();
        for i in 0..200u32 {
            t.extend_from_slice(&0u16.to_le_bytes());
            let next = 8 + (i + 1) * 6;
            t.extend_from_slice(&next.to_le_bytes());
        }
        parse_tiff(&t, &mut Acc::default());
    }

    // ---- PNG ----

    #[test]
    fn png_text_exif_and_iend() {
        let mut xmp = b"XML:com.adobe.xmp\0\0\0\0\0".to_vec();
        xmp.extend_from_slice(b"<x/>");
        let extra = vec![
            png_chunk_bytes(b"tEXt", b"Author\0someone"),
            png_chunk_bytes(b"eXIf", &full_tiff(false)),
            png_chunk_bytes(b"iTXt", &xmp),
            png_chunk_bytes(b"iCCP", b"sRGB\0\0\x78\x9c"),
        ];
        let p = sample_png(true, &extra);
        let info = scan(&p);
        assert_eq!(info.format, ContainerFormat::Png);
        assert!(info.complete);
        assert!(!info.animated);
        assert_eq!(info.icc_profile, None);
        assert_eq!(
            info.metadata,
            vec![
                K::Exif,
                K::ExifGps,
                K::ExifThumbnail,
                K::ExifMakerNote,
                K::ExifSerialNumber,
                K::ExifOwnerOrArtist,
                K::ExifUserComment,
                K::ExifDateTime,
                K::Xmp,
                K::Icc,
                K::PngText,
            ]
        );
        assert_eq!(jpeg_orientation(&p), Some(6));

        let missing = sample_png(false, &extra);
        assert!(!scan(&missing).complete);
        for n in 0..p.len() - 12 {
            assert!(!scan(&p[..n]).complete, "prefix {n}");
        }
        // Trailing data after IEND is ignored.
        let mut trailing = p.clone();
        trailing.extend_from_slice(b"junk");
        assert!(scan(&trailing).complete);
    }

    #[test]
    fn png_lying_length_and_apng() {
        let mut p = sample_png(true, &[png_chunk_bytes(b"tEXt", b"k\0v")]);
        // tEXt length field at 8 + 25.
        p[33..37].copy_from_slice(&0x7FFF_FFF0u32.to_be_bytes());
        let info = scan(&p);
        assert!(!info.complete);
        assert_eq!(info.metadata, vec![K::PngText]);

        let a = sample_png(true, &[png_chunk_bytes(b"acTL", &[0, 0, 0, 2, 0, 0, 0, 0])]);
        let info = scan(&a);
        assert!(info.animated && info.complete);
        // No IDAT: not a complete image.
        let mut no_idat = b"\x89PNG\r\n\x1a\n".to_vec();
        no_idat.extend(png_chunk_bytes(b"IHDR", &[0; 13]));
        no_idat.extend(png_chunk_bytes(b"IEND", &[]));
        assert!(!scan(&no_idat).complete);
    }

    // ---- WebP ----

    #[test]
    fn webp_extended_animated() {
        let w = sample_webp();
        let info = scan(&w);
        assert_eq!(info.format, ContainerFormat::Webp);
        assert!(info.complete);
        assert!(info.animated);
        assert_eq!(info.icc_profile.as_deref(), Some(b"ICCDATA".as_slice()));
        assert_eq!(
            info.metadata,
            vec![
                K::Exif,
                K::ExifGps,
                K::ExifThumbnail,
                K::ExifMakerNote,
                K::ExifSerialNumber,
                K::ExifOwnerOrArtist,
                K::ExifUserComment,
                K::ExifDateTime,
                K::Xmp,
                K::Icc,
            ]
        );
        assert_eq!(jpeg_orientation(&w), Some(6));
        for n in 0..w.len() {
            assert!(!scan(&w[..n]).complete, "prefix {n}");
        }
    }

    #[test]
    fn webp_simple_and_inconsistent_sizes() {
        let w = webp_with(&[riff_chunk(b"VP8 ", &[0u8; 11])]);
        let info = scan(&w);
        assert!(info.complete && !info.animated && info.metadata.is_empty());
        // RIFF size larger than the file.
        let mut big = w.clone();
        big[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert!(!scan(&big).complete);
        // Chunk size larger than the RIFF.
        let mut lying = w.clone();
        lying[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(!scan(&lying).complete);
        // No image chunk at all.
        let meta_only = webp_with(&[riff_chunk(b"XMP ", b"x")]);
        assert!(!scan(&meta_only).complete);
        // Trailing data after the RIFF is ignored.
        let mut trailing = w.clone();
        trailing.extend_from_slice(b"junk");
        assert!(scan(&trailing).complete);
    }

    // ---- GIF ----

    #[test]
    fn gif_two_frames() {
        let g = sample_gif(2, true);
        let info = scan(&g);
        assert_eq!(info.format, ContainerFormat::Gif);
        assert!(info.complete);
        assert!(info.animated);
        assert_eq!(info.metadata, vec![K::Comment]);
        let one = scan(&sample_gif(1, true));
        assert!(one.complete && !one.animated);
        assert!(!scan(&sample_gif(2, false)).complete);
        for n in 0..g.len() {
            assert!(!scan(&g[..n]).complete, "prefix {n}");
        }
    }

    #[test]
    fn gif_app_extensions() {
        let mut g = sample_gif(1, false);
        g.extend_from_slice(&[0x21, 0xFF, 11]);
        g.extend_from_slice(b"ICCRGBG1012");
        g.extend_from_slice(&[3, b'a', b'b', b'c', 2, b'd', b'e', 0]);
        g.extend_from_slice(&[0x21, 0xFF, 11]);
        g.extend_from_slice(b"XMP DataXMP");
        g.extend_from_slice(&[1, b'x', 0]);
        g.extend_from_slice(&[0x21, 0xFF, 11]);
        g.extend_from_slice(b"FOOBAR__1.0");
        g.push(0);
        g.push(0x3B);
        let info = scan(&g);
        assert!(info.complete);
        assert_eq!(
            info.metadata,
            vec![K::Xmp, K::Comment, K::Icc, K::OtherAppSegment]
        );
        assert_eq!(info.icc_profile.as_deref(), Some(b"abcde".as_slice()));
    }

    // ---- misc ----

    #[test]
    fn unknown_and_empty() {
        for b in [
            &b""[..],
            b"hello world",
            b"\xFF\xD8",
            b"RIFF\0\0\0\0WEBX",
            b"GIF8",
        ] {
            let info = scan(b);
            assert_eq!(info.format, ContainerFormat::Unknown);
            assert!(!info.complete && !info.animated && info.metadata.is_empty());
            assert_eq!(jpeg_orientation(b), None);
        }
    }

    #[test]
    fn as_str_names_are_stable_and_unique() {
        let all = [
            K::Exif,
            K::ExifGps,
            K::ExifThumbnail,
            K::ExifMakerNote,
            K::ExifSerialNumber,
            K::ExifOwnerOrArtist,
            K::ExifDescription,
            K::ExifUserComment,
            K::ExifDateTime,
            K::Xmp,
            K::Iptc,
            K::Comment,
            K::Icc,
            K::PngText,
            K::OtherAppSegment,
        ];
        let names: BTreeSet<_> = all.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(K::ExifGps.as_str(), "exif_gps");
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }

    #[test]
    fn fuzz_mutations_never_panic() {
        let seeds = [
            sample_jpeg(),
            sample_png(true, &[png_chunk_bytes(b"eXIf", &full_tiff(true))]),
            sample_webp(),
            sample_gif(3, true),
            app1_exif(&full_tiff(false)),
        ];
        let mut state = 0x5EED_u64;
        for seed in &seeds {
            for _ in 0..3000 {
                let mut m = seed.clone();
                let edits = 1 + lcg(&mut state) % 6;
                for _ in 0..edits {
                    if m.is_empty() {
                        break;
                    }
                    let at = (lcg(&mut state) as usize) % m.len();
                    match lcg(&mut state) % 6 {
                        0 => m[at] = lcg(&mut state) as u8,
                        1 => m[at] ^= 1 << (lcg(&mut state) % 8),
                        2 => m[at] = [0x00, 0xFF, 0x7F, 0x80][(lcg(&mut state) % 4) as usize],
                        3 => {
                            m.remove(at);
                        }
                        4 => m.insert(at, lcg(&mut state) as u8),
                        _ => m.truncate(at),
                    }
                }
                let _ = scan(&m);
                let _ = jpeg_orientation(&m);
                // The TIFF parser on its own, too.
                parse_tiff(&m, &mut Acc::default());
            }
        }
        // Pure noise behind each magic.
        let magics: [&[u8]; 4] = [
            b"\xFF\xD8\xFF",
            b"\x89PNG\r\n\x1a\n",
            b"RIFF\xFF\xFF\xFF\xFFWEBP",
            b"GIF89a",
        ];
        for magic in magics {
            for len in 0..300usize {
                let mut m = magic.to_vec();
                m.extend((0..len).map(|_| lcg(&mut state) as u8));
                let _ = scan(&m);
            }
        }
    }

    // ---- real files (shared test data) ----

    /// Reads `<CARGO_MANIFEST_DIR>/../../../shared/<rel>`; `None` (with a
    /// SKIPPED note) when the shared data is not present on this machine.
    #[allow(clippy::print_stderr)]
    fn shared_path(rel: &str) -> Option<std::path::PathBuf> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared")
            .join(rel);
        if path.exists() {
            Some(path)
        } else {
            eprintln!(
                "SKIPPED: {} not found (shared test data is only on developer/CI machines)",
                path.display()
            );
            None
        }
    }

    fn edge(name: &str) -> Option<Vec<u8>> {
        let path = shared_path(&format!("images/edge/{name}"))?;
        Some(std::fs::read(&path).expect("readable shared test file"))
    }

    #[test]
    fn real_exif_gps_thumbnail() {
        let Some(b) = edge("exif_gps_thumbnail.jpg") else {
            return;
        };
        let info = scan(&b);
        assert_eq!(info.format, ContainerFormat::Jpeg);
        assert!(info.complete);
        for k in [
            K::Exif,
            K::ExifGps,
            K::ExifThumbnail,
            K::ExifSerialNumber,
            K::ExifOwnerOrArtist,
            K::ExifDescription,
            K::ExifUserComment,
        ] {
            assert!(
                info.metadata.contains(&k),
                "missing {}: {:?}",
                k.as_str(),
                info.metadata
            );
        }
    }

    #[test]
    fn real_edge_structure() {
        if let Some(b) = edge("truncated.jpg") {
            let info = scan(&b);
            assert_eq!(info.format, ContainerFormat::Jpeg);
            assert!(!info.complete);
        }
        for name in [
            "progressive.jpg",
            "cmyk.jpg",
            "grayscale.jpg",
            "exif_orientation6.jpg",
        ] {
            if let Some(b) = edge(name) {
                let info = scan(&b);
                assert_eq!(info.format, ContainerFormat::Jpeg, "{name}");
                assert!(info.complete, "{name}");
                assert!(!info.animated, "{name}");
            }
        }
        if let Some(b) = edge("exif_orientation6.jpg") {
            assert_eq!(jpeg_orientation(&b), Some(6));
        }
        if let Some(b) = edge("animated.gif") {
            let info = scan(&b);
            assert_eq!(info.format, ContainerFormat::Gif);
            assert!(info.animated && info.complete);
        }
        for name in ["empty.jpg", "not_an_image.jpg"] {
            if let Some(b) = edge(name) {
                let info = scan(&b);
                assert_eq!(info.format, ContainerFormat::Unknown, "{name}");
                assert!(!info.complete);
            }
        }
        for name in ["rgb16.png", "rgba_face.png", "bomb_100000x100000.png"] {
            if let Some(b) = edge(name) {
                let info = scan(&b);
                assert_eq!(info.format, ContainerFormat::Png, "{name}");
                assert!(info.complete && !info.animated, "{name}");
            }
        }
        if let Some(b) = edge("face.webp") {
            let info = scan(&b);
            assert_eq!(info.format, ContainerFormat::Webp);
            assert!(info.complete && !info.animated);
        }
    }

    #[test]
    fn real_edge_prefixes_never_panic() {
        for name in ["exif_gps_thumbnail.jpg", "animated.gif", "face.webp"] {
            let Some(b) = edge(name) else {
                continue;
            };
            let step = (b.len() / 500).max(1);
            for n in (0..b.len()).step_by(step) {
                let info = scan(&b[..n]);
                assert!(!info.complete, "{name} prefix {n}");
            }
        }
    }

    #[test]
    fn real_dataset_jpegs_complete() {
        for dir in ["faces", "persons", "negatives"] {
            let Some(path) = shared_path(&format!("images/{dir}")) else {
                continue;
            };
            let entries = std::fs::read_dir(&path).expect("readable shared dir");
            let mut n = 0;
            for entry in entries {
                let p = entry.expect("dir entry").path();
                let ext = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase);
                let want = match ext.as_deref() {
                    Some("jpg" | "jpeg") => ContainerFormat::Jpeg,
                    Some("png") => ContainerFormat::Png,
                    _ => continue,
                };
                let b = std::fs::read(&p).expect("readable shared file");
                let info = scan(&b);
                assert_eq!(info.format, want, "{}", p.display());
                assert!(info.complete, "{} not complete", p.display());
                n += 1;
            }
            assert!(n > 0, "no images in {}", path.display());
        }
    }
}
