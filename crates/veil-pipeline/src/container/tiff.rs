//! EXIF and TIFF: IFD chains (bounded, cycle-guarded), the sensitive tags, and the orientation.

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) enum ByteOrder {
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
pub(super) const MAX_IFDS: usize = 64;
/// Upper bound on the entries read from one IFD (the count field is a u16,
/// so this only documents the natural limit).
pub(super) const MAX_IFD_ENTRIES: usize = u16::MAX as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IfdRole {
    /// Position in the main chain (0 = IFD0, 1 = IFD1/thumbnail, ...).
    Main(usize),
    /// Exif private IFD (0x8769).
    Exif,
}

/// Classification of a tag found in IFD0, IFD1+ or the Exif IFD.
pub(super) fn classify_tag(tag: u16) -> Option<MetadataKind> {
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
pub(super) fn parse_tiff(tiff: &[u8], acc: &mut Acc) {
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
pub(super) fn parse_exif_payload(data: &[u8], acc: &mut Acc) {
    acc.add(MetadataKind::Exif);
    let tiff = if data.starts_with(b"Exif\0") {
        data.get(6..).unwrap_or(&[])
    } else {
        data
    };
    parse_tiff(tiff, acc);
}
