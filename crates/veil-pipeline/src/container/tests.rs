use super::jpeg::{ICC_SIG, XMP_EXT_SIG, XMP_SIG};
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
    0x12, 0x34, 0xFF, 0x00, 0x56, 0xFF, 0xD0, 0x78, 0x9A, 0xFF, 0x00, 0xFF, 0xD1, 0xBC, 0xFF, 0xFF,
    0x00, 0xDE,
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
