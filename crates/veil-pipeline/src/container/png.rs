//! PNG: the chunk walk, text and ICC chunks, APNG, and completeness at IEND.

use super::*;

pub(super) fn scan_png(b: &[u8], acc: &mut Acc) {
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

pub(super) fn png_chunk(typ: &[u8], data: &[u8], acc: &mut Acc) {
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
