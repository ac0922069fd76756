//! JPEG: the segment walk, APPn metadata (EXIF, XMP, IPTC, ICC chunks reassembled in order), and completeness at EOI.

use super::*;

pub(super) const XMP_SIG: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
pub(super) const XMP_EXT_SIG: &[u8] = b"http://ns.adobe.com/xmp/extension/\0";
pub(super) const ICC_SIG: &[u8] = b"ICC_PROFILE\0";

/// Walks JPEG segments and entropy-coded data from SOI to EOI.
pub(super) fn scan_jpeg(b: &[u8], acc: &mut Acc) {
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

pub(super) fn jpeg_segment<'a>(
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
pub(super) fn assemble_icc(chunks: &[(u8, u8, &[u8])]) -> Option<Vec<u8>> {
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
