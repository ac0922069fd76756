//! Lossless metadata removal for JPEG files in which nothing was detected: the compressed image
//! data is copied unchanged and only the segments that carry no pixels are dropped, so the
//! output decodes to exactly the source's pixels, without a second lossy encode.
//!
//! Kept: SOI, a minimal JFIF APP0 (density copied, thumbnail dropped), ICC profile chunks
//! (APP2 `ICC_PROFILE`), the Adobe APP14 colour-transform segment (it changes how the pixels
//! decode), tables (DQT, DHT, DAC, DRI), frame and scan headers with their entropy-coded data,
//! EOI. Dropped: EXIF (with its thumbnail, GPS, serials, maker notes), XMP, IPTC, other APPn,
//! comments, JFXX thumbnails, anything after EOI (e.g. MPF secondary images). Any other marker,
//! a frame that is not 1 or 3 components, or a malformed file: `None` (the caller re-encodes).
//!
//! Off by default (`--lossless-strip`): tables and entropy-coded data are copied as they are, and
//! a crafted file can carry bytes there that no decoder shows (tables no scan uses, bytes after
//! a scan's last block). Re-encoding from pixels is what guarantees none survive.

use crate::container::skip_entropy;

fn be16(b: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(pos)?, *b.get(pos + 1)?]))
}

/// A minimal JFIF APP0 segment (version 1.01, no thumbnail) with the source's density.
fn jfif(payload: &[u8]) -> Vec<u8> {
    let density = payload.get(7..12).unwrap_or(&[0, 0, 1, 0, 1]);
    let mut seg = vec![0xFF, 0xE0, 0x00, 16];
    seg.extend_from_slice(b"JFIF\0\x01\x01");
    seg.extend_from_slice(density);
    seg.extend_from_slice(&[0, 0]);
    seg
}

/// The JPEG without its metadata, or `None` when this file must be re-encoded instead.
pub fn strip_jpeg(b: &[u8]) -> Option<Vec<u8>> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut pos = 2usize;
    let mut frame = false;
    loop {
        if *b.get(pos)? != 0xFF {
            return None;
        }
        while b.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *b.get(pos)?;
        pos += 1;
        if marker == 0xD9 {
            out.extend_from_slice(&[0xFF, 0xD9]);
            return frame.then_some(out);
        }
        let len = usize::from(be16(b, pos)?);
        if len < 2 {
            return None;
        }
        let end = pos.checked_add(len)?;
        let payload = b.get(pos + 2..end)?;
        let segment = b.get(pos - 2..end)?;
        let keep = match marker {
            0xE0 if payload.starts_with(b"JFIF\0") => {
                out.extend_from_slice(&jfif(payload));
                false
            }
            0xE2 if payload.starts_with(b"ICC_PROFILE\0") => true,
            // The colour-transform segment is 12 bytes; anything after them is a payload no
            // decoder reads, so only those 12 are written.
            0xEE if payload.starts_with(b"Adobe") => {
                let fields = payload.get(..12)?;
                out.extend_from_slice(&[0xFF, 0xEE, 0x00, 14]);
                out.extend_from_slice(fields);
                false
            }
            0xE0..=0xEF | 0xFE => false,
            0xDB | 0xC4 | 0xCC | 0xDD => true,
            0xC0..=0xCF => {
                // SOFn: precision(1) height(2) width(2) components(1)
                if !matches!(payload.get(5), Some(1 | 3)) {
                    return None;
                }
                frame = true;
                true
            }
            0xDA => {
                if !frame {
                    return None;
                }
                out.extend_from_slice(segment);
                let next = skip_entropy(b, end)?;
                out.extend_from_slice(b.get(end..next)?);
                pos = next;
                continue;
            }
            _ => return None,
        };
        if keep {
            out.extend_from_slice(segment);
        }
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_with(extra: &[&[u8]]) -> Vec<u8> {
        let img = image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
        });
        let mut plain = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90)
            .encode_image(&img)
            .unwrap();
        // Insert the extra segments right after SOI.
        let mut v = plain[..2].to_vec();
        for s in extra {
            v.extend_from_slice(s);
        }
        v.extend_from_slice(&plain[2..]);
        v
    }

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    #[test]
    fn drops_metadata_and_keeps_pixels_bit_exact() {
        let exif = segment(0xE1, b"Exif\0\0MM\0*\0\0\0\x08\0\0GPS-and-serial");
        let xmp = segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>");
        let com = segment(0xFE, b"shot by Jane at 5th Avenue");
        let icc = segment(0xE2, b"ICC_PROFILE\0\x01\x01fake-profile");
        let mut src = jpeg_with(&[&exif, &xmp, &com, &icc]);
        src.extend_from_slice(b"trailing MPF image bytes");
        let out = strip_jpeg(&src).unwrap();
        for needle in [&b"GPS-and-serial"[..], b"xmpmeta", b"Jane", b"trailing"] {
            assert!(!out.windows(needle.len()).any(|w| w == needle));
        }
        assert!(out.windows(12).any(|w| w == b"ICC_PROFILE\0"));
        let a = image::load_from_memory(&src).unwrap().to_rgb8();
        let b = image::load_from_memory(&out).unwrap().to_rgb8();
        assert_eq!(a, b);
        let info = crate::container::scan(&out);
        assert!(info.complete);
        assert_eq!(
            info.metadata,
            vec![crate::container::MetadataKind::Icc],
            "only the ICC profile may remain"
        );
    }

    #[test]
    fn adobe_segment_keeps_its_twelve_bytes_and_drops_a_payload_after_them() {
        let mut adobe = b"Adobe\x00\x64\x00\x00\x00\x00\x01".to_vec();
        adobe.extend_from_slice(b"hidden face bytes");
        let src = jpeg_with(&[&segment(0xEE, &adobe)]);
        let out = strip_jpeg(&src).unwrap();
        assert!(!out.windows(6).any(|w| w == b"hidden"));
        assert!(out
            .windows(16)
            .any(|w| w == &segment(0xEE, &adobe[..12])[..]));
        let short = jpeg_with(&[&segment(0xEE, b"Adobe\x00\x64")]);
        assert!(strip_jpeg(&short).is_none(), "a short Adobe segment");
    }

    #[test]
    fn refuses_what_it_cannot_copy_safely() {
        let src = jpeg_with(&[]);
        assert!(strip_jpeg(&src[..src.len() - 40]).is_none(), "truncated");
        assert!(strip_jpeg(b"\xff\xd8\xff\xd9").is_none(), "no frame");
        let mut weird = src.clone();
        weird.splice(2..2, segment(0xF0, b"JPEG-XT?"));
        assert!(strip_jpeg(&weird).is_none(), "unknown marker");
    }
}
