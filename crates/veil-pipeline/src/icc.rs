//! ICC colour profiles kept in outputs, rebuilt from their colour tags only.
//!
//! A profile is an untrusted container: its description, copyright, device and private tags can
//! carry any text (a calibrated display's profile is often named after its owner) or any bytes (a
//! whole JPEG fits in a private tag, or in a "profile" that is not one). veil writes a profile only
//! after [`sanitize`] has rebuilt it: the 128-byte header with the device, creator and date fields
//! zeroed and the profile ID cleared, then only the tags that say how pixels map to colours
//! ([`COLOUR_TAGS`]), each copied once, then a generated description. Anything that does not parse
//! as a profile, is over [`MAX_ICC_BYTES`] or has no colour tag is dropped.
//!
//! Layout (ICC.1:2022, big-endian): header of 128 bytes (size at 0, `acsp` at 36), tag count at
//! 128, then 12-byte entries (signature, offset, size), tag data 4-byte aligned.

/// Largest profile kept (print profiles with large lookup tables reach a few MB).
pub const MAX_ICC_BYTES: usize = 4 << 20;

/// Most tags read from one profile.
const MAX_TAGS: usize = 100;

/// Tags kept: colorants, tone curves, white and black points, adaptation, lookup tables,
/// gamut and preview tables, and the coding-independent code points. Text, device, measurement
/// and private tags are dropped.
pub const COLOUR_TAGS: [&[u8; 4]; 32] = [
    b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC", b"kTRC", b"wtpt", b"bkpt", b"chad",
    b"chrm", b"lumi", b"A2B0", b"A2B1", b"A2B2", b"B2A0", b"B2A1", b"B2A2", b"D2B0", b"D2B1",
    b"D2B2", b"D2B3", b"B2D0", b"B2D1", b"B2D2", b"B2D3", b"gamt", b"pre0", b"pre1", b"pre2",
    b"cicp", b"tech",
];

/// The text of the generated description tag.
pub const DESCRIPTION: &str = "colour tags of the source profile (veil)";

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

/// A description tag of the profile's major version: `desc` (v2) or `mluc` (v4).
fn description(major: u8) -> Vec<u8> {
    let text = DESCRIPTION.as_bytes();
    let mut t = Vec::new();
    if major >= 4 {
        t.extend_from_slice(b"mluc\0\0\0\0");
        t.extend_from_slice(&1u32.to_be_bytes()); // one record
        t.extend_from_slice(&12u32.to_be_bytes()); // of 12 bytes
        t.extend_from_slice(b"enUS");
        t.extend_from_slice(&(text.len() as u32 * 2).to_be_bytes());
        t.extend_from_slice(&28u32.to_be_bytes()); // string offset from the tag's start
        for c in text {
            t.extend_from_slice(&[0, *c]);
        }
    } else {
        t.extend_from_slice(b"desc\0\0\0\0");
        t.extend_from_slice(&(text.len() as u32 + 1).to_be_bytes());
        t.extend_from_slice(text);
        t.push(0);
        t.extend_from_slice(&[0; 4 + 4 + 2 + 1 + 67]); // no Unicode or ScriptCode text
    }
    t
}

/// The profile rebuilt from its colour tags, or `None` when nothing of it can be kept.
pub fn sanitize(p: &[u8]) -> Option<Vec<u8>> {
    if p.len() < 132 || p.len() > MAX_ICC_BYTES || p.get(36..40)? != b"acsp" {
        return None;
    }
    let size = usize::try_from(be32(p, 0)?).ok()?;
    if size < 132 || size > p.len() {
        return None;
    }
    let p = &p[..size];
    let count = usize::try_from(be32(p, 128)?).ok()?;
    if count > MAX_TAGS || 132 + 12 * count > size {
        return None;
    }
    let mut tags = Vec::new();
    for i in 0..count {
        let e = 132 + 12 * i;
        let sig: [u8; 4] = p[e..e + 4].try_into().ok()?;
        let off = usize::try_from(be32(p, e + 4)?).ok()?;
        let len = usize::try_from(be32(p, e + 8)?).ok()?;
        if off < 132 + 12 * count || off.checked_add(len)? > size || len < 8 {
            return None;
        }
        if COLOUR_TAGS.contains(&&sig) && !tags.iter().any(|(s, _, _)| *s == sig) {
            tags.push((sig, off, len));
        }
    }
    if tags.is_empty() {
        return None;
    }
    let major = p[8];
    let desc = description(major);
    let n = tags.len() + 1;
    let mut header = p[..128].to_vec();
    header[24..36].fill(0); // creation date and time
    header[48..56].fill(0); // device manufacturer and model
    header[80..100].fill(0); // creator and profile ID (no longer the digest of these bytes)
    let mut table = Vec::with_capacity(4 + 12 * n);
    table.extend_from_slice(&(n as u32).to_be_bytes());
    let mut data: Vec<u8> = Vec::new();
    let base = 128 + 4 + 12 * n;
    // Tags sharing one data block in the source (three identical TRCs) share it here too.
    let mut placed: Vec<((usize, usize), usize)> = Vec::new();
    let mut entry = |sig: &[u8; 4], bytes: &[u8], key: Option<(usize, usize)>| {
        let at = match key.and_then(|k| placed.iter().find(|(pk, _)| *pk == k)) {
            Some((_, at)) => *at,
            None => {
                let at = base + data.len();
                data.extend_from_slice(bytes);
                pad4(&mut data);
                if let Some(k) = key {
                    placed.push((k, at));
                }
                at
            }
        };
        table.extend_from_slice(sig);
        table.extend_from_slice(&(at as u32).to_be_bytes());
        table.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    };
    for (sig, off, len) in &tags {
        entry(sig, &p[*off..off + len], Some((*off, *len)));
    }
    entry(b"desc", &desc, None);
    let mut out = header;
    out.extend_from_slice(&table);
    out.extend_from_slice(&data);
    let total = out.len() as u32;
    out[0..4].copy_from_slice(&total.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 RGB display profile with colour tags, a description naming a person, a private tag
    /// and a device model, and the three TRCs sharing one curve.
    fn profile_with(private: &[u8]) -> Vec<u8> {
        let xyz = |x: u32| {
            let mut t = b"XYZ \0\0\0\0".to_vec();
            for v in [x, 0x1_0000, 0x8000] {
                t.extend_from_slice(&v.to_be_bytes());
            }
            t
        };
        let curve = b"curv\0\0\0\0\0\0\0\x01\x02\x33\0\0".to_vec();
        let mut desc = b"desc\0\0\0\0\0\0\0\x15Jane Doe's MacBook\0\0\0".to_vec();
        desc.resize(desc.len() + 79, 0);
        let tags: Vec<(&[u8; 4], Vec<u8>)> = vec![
            (b"desc", desc),
            (b"wtpt", xyz(0xF351)),
            (b"rXYZ", xyz(0x6FA2)),
            (b"gXYZ", xyz(0x6299)),
            (b"bXYZ", xyz(0x24A0)),
            (b"rTRC", curve.clone()),
            (b"zzzz", private.to_vec()),
        ];
        let n = tags.len() + 2; // gTRC and bTRC share rTRC's data
        let mut data = Vec::new();
        let mut table = (n as u32).to_be_bytes().to_vec();
        let base = 128 + 4 + 12 * n;
        let mut trc_at = 0;
        for (sig, bytes) in &tags {
            let at = base + data.len();
            if *sig == b"rTRC" {
                trc_at = at;
            }
            table.extend_from_slice(*sig);
            table.extend_from_slice(&(at as u32).to_be_bytes());
            table.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            data.extend_from_slice(bytes);
            pad4(&mut data);
        }
        for sig in [b"gTRC", b"bTRC"] {
            table.extend_from_slice(sig);
            table.extend_from_slice(&(trc_at as u32).to_be_bytes());
            table.extend_from_slice(&(curve.len() as u32).to_be_bytes());
        }
        let mut h = vec![0u8; 128];
        h[8] = 2;
        h[12..16].copy_from_slice(b"mntr");
        h[16..20].copy_from_slice(b"RGB ");
        h[20..24].copy_from_slice(b"XYZ ");
        h[24..36].copy_from_slice(&[7; 12]);
        h[36..40].copy_from_slice(b"acsp");
        h[48..56].copy_from_slice(b"APPLMBP1");
        let mut p = h;
        p.extend_from_slice(&table);
        p.extend_from_slice(&data);
        let size = p.len() as u32;
        p[0..4].copy_from_slice(&size.to_be_bytes());
        p
    }

    fn tag<'a>(p: &'a [u8], sig: &[u8; 4]) -> Option<&'a [u8]> {
        let n = be32(p, 128)? as usize;
        (0..n).find_map(|i| {
            let e = 132 + 12 * i;
            (&p[e..e + 4] == sig).then(|| {
                let off = be32(p, e + 4).unwrap() as usize;
                &p[off..off + be32(p, e + 8).unwrap() as usize]
            })
        })
    }

    #[test]
    fn colour_tags_are_kept_and_text_device_and_private_tags_are_not() {
        let smuggled = b"\xFF\xD8\xFF\xE0 a whole JPEG of a face would fit here".to_vec();
        let src = profile_with(&smuggled);
        let out = sanitize(&src).unwrap();
        assert_eq!(be32(&out, 0).unwrap() as usize, out.len());
        for sig in [
            b"wtpt", b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC",
        ] {
            assert_eq!(
                tag(&out, sig),
                tag(&src, sig),
                "{}",
                String::from_utf8_lossy(sig)
            );
        }
        assert!(tag(&out, b"zzzz").is_none());
        let desc = tag(&out, b"desc").unwrap();
        assert!(desc
            .windows(DESCRIPTION.len())
            .any(|w| w == DESCRIPTION.as_bytes()));
        for needle in [&b"Jane Doe"[..], b"APPLMBP1", b"a whole JPEG"] {
            assert!(!out.windows(needle.len()).any(|w| w == needle));
        }
        assert_eq!(&out[24..36], &[0; 12]);
        // The shared curve is written once.
        assert_eq!(out.windows(4).filter(|w| w == b"curv").count(), 1);
        // Sanitizing twice changes nothing more.
        assert_eq!(sanitize(&out).unwrap(), out);
    }

    #[test]
    fn what_is_not_a_profile_is_dropped() {
        let jpeg_as_profile = [b"\xFF\xD8\xFF\xE0".as_slice(), &[0u8; 300]].concat();
        assert_eq!(sanitize(&jpeg_as_profile), None);
        let mut p = profile_with(b"ok");
        let last = p.len() - 1;
        p[0..4].copy_from_slice(&(last as u32 + 100).to_be_bytes()); // size beyond the data
        assert_eq!(sanitize(&p), None);
        let mut p = profile_with(b"ok");
        p[132 + 4..132 + 8].copy_from_slice(&u32::MAX.to_be_bytes()); // a tag beyond the end
        assert_eq!(sanitize(&p), None);
        assert_eq!(sanitize(&[0u8; MAX_ICC_BYTES + 1]), None);
    }
}
