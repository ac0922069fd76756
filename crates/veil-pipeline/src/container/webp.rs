//! WebP: the RIFF chunk walk, EXIF/XMP/ICCP chunks, animation, and the declared size.

use super::*;

pub(super) fn scan_webp(b: &[u8], acc: &mut Acc) {
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

pub(super) fn webp_chunk(fourcc: &[u8], data: &[u8], acc: &mut Acc, has_image: &mut bool) {
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
