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
//!
//! One file per format walks its container (`jpeg.rs`, `png.rs`, `webp.rs`, `gif.rs`); `tiff.rs`
//! parses the EXIF blocks they find. This file holds the API, the format sniffing and the
//! bounds-checked readers they share.

use std::collections::BTreeSet;

mod gif;
mod jpeg;
mod png;
#[cfg(test)]
mod tests;
mod tiff;
mod webp;

use gif::scan_gif;
use jpeg::scan_jpeg;
pub(crate) use jpeg::skip_entropy;
use png::scan_png;
use tiff::{parse_exif_payload, parse_tiff};
use webp::scan_webp;

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
