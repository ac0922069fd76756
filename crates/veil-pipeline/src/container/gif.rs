//! GIF: the block walk, comment and application extensions (XMP, ICC), frames, and the trailer.

use super::*;

/// Skips a chain of GIF data sub-blocks starting at `pos` (a length byte).
/// Returns the position after the zero-length terminator, or `None` if the
/// data ends first. If `collect` is given, the sub-block payloads are
/// appended to it.
pub(super) fn gif_sub_blocks(
    b: &[u8],
    mut pos: usize,
    mut collect: Option<&mut Vec<u8>>,
) -> Option<usize> {
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

pub(super) fn gif_color_table_len(packed: u8) -> usize {
    if packed & 0x80 != 0 {
        3usize << ((packed & 0x07) + 1)
    } else {
        0
    }
}

pub(super) fn scan_gif(b: &[u8], acc: &mut Acc) {
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
pub(super) fn gif_app_extension(b: &[u8], pos: usize, acc: &mut Acc) -> Option<usize> {
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
