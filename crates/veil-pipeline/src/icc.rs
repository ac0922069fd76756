//! ICC colour profiles kept in outputs, rebuilt from parsed, validated colour data.
//!
//! A profile is an untrusted container: its description, copyright, device and private tags can
//! carry any text (a calibrated display's profile is often named after its owner) and any tag can
//! carry any bytes (a whole JPEG fits in a `tech` tag, after a tone curve's last point, or in a
//! lookup table's grid). veil never copies a profile's bytes. [`sanitize`] parses the few tags
//! that say how pixels map to colours, checks each one's type and exact size, and writes a new
//! profile from the parsed values: a fresh 128-byte header (class, colour space, connection
//! space, version and rendering intent kept; CMM, date, platform, flags, device, attributes,
//! creator and profile ID zeroed; the D50 illuminant written), a fresh tag table, the tags in a
//! fixed order with no slack between them (identical tags share one block), and a generated
//! description.
//!
//! Kept ([`KEPT_TAGS`]), and only for matrix/TRC profiles (`RGB ` with an XYZ connection space,
//! `GRAY` with XYZ or Lab; display, input or colour-space class; version 2 or 4):
//! * `rXYZ` `gXYZ` `bXYZ` `wtpt` `bkpt`: `XYZ ` with one value (20 bytes);
//! * `rTRC` `gTRC` `bTRC` `kTRC`: `curv` (12 + 2n bytes, n <= [`MAX_CURVE_POINTS`], written
//!   as at most [`CURVE_POINTS_WRITTEN`] points read off it, a gamma
//!   above zero when n = 1, non-decreasing when n > 1) or `para` (12 + 4 x the parameter count of
//!   function type 0 to 4);
//! * `chad`: `sf32` with 9 values (44 bytes);
//! * `cicp`: 12 bytes, range flag 0 or 1.
//!
//! A tag's recorded size must be its exact size, or that rounded up to a multiple of 4; a tag of
//! another type or size is dropped. Everything else is dropped: text (`desc`, `cprt`, `dmnd`,
//! `dmdd`, `vued`), `tech`, `meas`, `view`, `targ`, `ciis`, `chrm`, `lumi`, private tags, and
//! the lookup tables (`A2B*`, `B2A*`, `D2B*`, `B2D*`, `gamt`, `pre0-2`): a table's grid is
//! arbitrary bytes of a size the profile chooses, so an exact size would not stop it from holding
//! a picture. When what is left does not describe colour (an RGB profile without all three
//! colorants and curves, a gray one without `kTRC`, a CMYK, Lab or LUT-only profile), no profile
//! is written and viewers treat the pixels as sRGB, as for any image without a profile. So do
//! profiles that do not parse, are over [`MAX_ICC_BYTES`], or are of another class or version.
//!
//! Layout (ICC.1:2022, big-endian): header of 128 bytes (size at 0, `acsp` at 36), tag count at
//! 128, then 12-byte entries (signature, offset, size), tag data 4-byte aligned.

/// Largest profile read (print profiles with large lookup tables reach a few MB).
pub const MAX_ICC_BYTES: usize = 4 << 20;

/// Most tags read from one profile.
const MAX_TAGS: usize = 100;

/// Most points in a kept `curv` tone curve (tabulated curves usually have 256 to 4096).
pub const MAX_CURVE_POINTS: usize = 4096;

/// Most points of a `curv` tone curve written: a longer curve is resampled to this many points
/// (linear interpolation, rounded), which keeps tone curves within 1e-4 of smooth curves such as
/// sRGB's and leaves no room in them for hidden data worth the name (under 100 bytes a curve).
pub const CURVE_POINTS_WRITTEN: usize = 64;

/// `points` (at least 2, non-decreasing) read at `n` evenly spaced positions, linearly
/// interpolated: the result is non-decreasing and keeps both ends.
fn resampled(points: &[u16], n: usize) -> Vec<u16> {
    let last = (points.len() - 1) as f64;
    (0..n)
        .map(|i| {
            let x = i as f64 * last / (n - 1) as f64;
            let k = (x.floor() as usize).min(points.len() - 2);
            let f = x - k as f64;
            let y = f64::from(points[k]) * (1.0 - f) + f64::from(points[k + 1]) * f;
            y.round().clamp(0.0, 65535.0) as u16
        })
        .collect()
}

/// Tags kept, in the order they are written (see the module documentation for their types).
pub const KEPT_TAGS: [&[u8; 4]; 11] = [
    b"wtpt", b"bkpt", b"chad", b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC", b"kTRC",
    b"cicp",
];

/// The text of the generated description tag.
pub const DESCRIPTION: &str = "colour tags of the source profile (veil)";

/// The profile connection space illuminant every profile states (D50 in s15Fixed16).
const D50: [u8; 12] = [0, 0, 0xF6, 0xD6, 0, 1, 0, 0, 0, 0, 0xD3, 0x2D];

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
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

/// The tag's first `size` bytes when it is of type `ty` and its recorded length is `size` or
/// `size` rounded up to a multiple of 4 (writers differ on counting the alignment padding).
fn typed<'a>(t: &'a [u8], ty: &[u8; 4], size: usize) -> Option<&'a [u8]> {
    (t.get(..4)? == ty && (t.len() == size || t.len() == size.next_multiple_of(4)))
        .then(|| &t[..size])
}

/// A tag written from its type and big-endian values, reserved bytes zero.
fn written(ty: &[u8; 4], values: impl IntoIterator<Item = u8>) -> Vec<u8> {
    let mut o = ty.to_vec();
    o.extend_from_slice(&[0; 4]);
    o.extend(values);
    o
}

/// `XYZ ` with one value (20 bytes).
fn xyz(t: &[u8]) -> Option<Vec<u8>> {
    let t = typed(t, b"XYZ ", 20)?;
    Some(written(b"XYZ ", t[8..20].iter().copied()))
}

/// `sf32` with the 9 values of a 3x3 matrix (44 bytes).
fn sf32_matrix(t: &[u8]) -> Option<Vec<u8>> {
    let t = typed(t, b"sf32", 44)?;
    Some(written(b"sf32", t[8..44].iter().copied()))
}

/// `cicp`: colour primaries, transfer, matrix (one byte each) and a full-range flag.
fn cicp(t: &[u8]) -> Option<Vec<u8>> {
    let t = typed(t, b"cicp", 12)?;
    (t[11] <= 1).then(|| written(b"cicp", t[8..12].iter().copied()))
}

/// A tone curve: `curv` (identity, a gamma or a non-decreasing table of at most
/// [`MAX_CURVE_POINTS`]) or `para` (function types 0 to 4).
fn tone_curve(t: &[u8]) -> Option<Vec<u8>> {
    match t.get(..4)? {
        b"curv" => {
            let n = usize::try_from(be32(t, 8)?).ok()?;
            if n > MAX_CURVE_POINTS {
                return None;
            }
            let t = typed(t, b"curv", 12 + 2 * n)?;
            let points: Vec<u16> = (0..n).map(|i| be16(t, 12 + 2 * i)).collect::<Option<_>>()?;
            let valid = match n {
                0 => true,
                1 => points[0] > 0,
                _ => points.windows(2).all(|w| w[0] <= w[1]),
            };
            // Every point of a long curve is a free choice (the steps between 4096 points hold
            // about 4 bits each: a face JPEG fits in three curves), so a long curve is written
            // as CURVE_POINTS_WRITTEN points read off it, which is what bounds that channel.
            let points = if n > CURVE_POINTS_WRITTEN {
                resampled(&points, CURVE_POINTS_WRITTEN)
            } else {
                points
            };
            let n = points.len();
            valid.then(|| {
                let values = (n as u32).to_be_bytes().into_iter();
                written(
                    b"curv",
                    values.chain(points.iter().flat_map(|p| p.to_be_bytes())),
                )
            })
        }
        b"para" => {
            let function = be16(t, 8)?;
            let params = *[1usize, 3, 4, 5, 7].get(usize::from(function))?;
            let t = typed(t, b"para", 12 + 4 * params)?;
            let values = function.to_be_bytes().into_iter().chain([0, 0]);
            Some(written(b"para", values.chain(t[12..].iter().copied())))
        }
        _ => None,
    }
}

/// The tag rebuilt from its parsed values, or `None` when its type or size is not one allowed
/// for its signature (or the signature is not kept).
fn rebuilt(sig: &[u8; 4], t: &[u8]) -> Option<Vec<u8>> {
    match sig {
        b"wtpt" | b"bkpt" | b"rXYZ" | b"gXYZ" | b"bXYZ" => xyz(t),
        b"rTRC" | b"gTRC" | b"bTRC" | b"kTRC" => tone_curve(t),
        b"chad" => sf32_matrix(t),
        b"cicp" => cicp(t),
        _ => None,
    }
}

/// The profile rebuilt from its validated colour tags, or `None` when nothing of it can be kept
/// (the pixels are then treated as sRGB).
pub fn sanitize(p: &[u8]) -> Option<Vec<u8>> {
    if p.len() < 132 || p.len() > MAX_ICC_BYTES || p.get(36..40)? != b"acsp" {
        return None;
    }
    let size = usize::try_from(be32(p, 0)?).ok()?;
    if size < 132 || size > p.len() {
        return None;
    }
    let p = &p[..size];
    let major = p[8];
    if major != 2 && major != 4 {
        return None;
    }
    if !matches!(&p[12..16], b"mntr" | b"scnr" | b"spac") {
        return None;
    }
    // The tags that must all be kept for the profile to describe colour, and those it may keep.
    let (required, allowed): (&[&[u8; 4]], &[&[u8; 4]]) = match (&p[16..20], &p[20..24]) {
        (b"RGB ", b"XYZ ") => (
            &[b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC"],
            &[b"wtpt", b"bkpt", b"chad", b"cicp"],
        ),
        (b"GRAY", b"XYZ " | b"Lab ") => (&[b"kTRC"], &[b"wtpt", b"bkpt", b"chad", b"cicp"]),
        _ => return None,
    };
    let count = usize::try_from(be32(p, 128)?).ok()?;
    if count > MAX_TAGS || 132 + 12 * count > size {
        return None;
    }
    let mut source: Vec<([u8; 4], &[u8])> = Vec::new();
    for i in 0..count {
        let e = 132 + 12 * i;
        let sig: [u8; 4] = p[e..e + 4].try_into().ok()?;
        let off = usize::try_from(be32(p, e + 4)?).ok()?;
        let len = usize::try_from(be32(p, e + 8)?).ok()?;
        if off < 132 + 12 * count || off.checked_add(len)? > size || len < 8 {
            return None;
        }
        if !source.iter().any(|(s, _)| *s == sig) {
            source.push((sig, &p[off..off + len]));
        }
    }
    let mut tags: Vec<(&[u8; 4], Vec<u8>)> = Vec::new();
    for sig in KEPT_TAGS {
        if !required.contains(&sig) && !allowed.contains(&sig) {
            continue;
        }
        let kept = source
            .iter()
            .find(|(s, _)| s == sig)
            .and_then(|(_, t)| rebuilt(sig, t));
        match kept {
            Some(t) => tags.push((sig, t)),
            None if required.contains(&sig) => return None,
            None => {}
        }
    }
    tags.push((b"desc", description(major)));

    let mut header = vec![0u8; 128];
    header[8] = major;
    header[9] = p[9]; // minor and bug-fix version
    header[12..24].copy_from_slice(&p[12..24]); // class, colour space, connection space
    header[36..40].copy_from_slice(b"acsp");
    let intent = be32(p, 64)?;
    header[64..68].copy_from_slice(&(if intent <= 3 { intent } else { 0 }).to_be_bytes());
    header[68..80].copy_from_slice(&D50);

    let n = tags.len();
    let base = 128 + 4 + 12 * n;
    let mut table = (n as u32).to_be_bytes().to_vec();
    let mut data: Vec<u8> = Vec::new();
    // Identical tags (three identical TRCs) share one block.
    let mut placed: Vec<(usize, &[u8])> = Vec::new();
    for (sig, bytes) in &tags {
        let at = match placed.iter().find(|(_, b)| b == bytes) {
            Some((at, _)) => *at,
            None => {
                pad4(&mut data);
                let at = base + data.len();
                data.extend_from_slice(bytes);
                placed.push((at, bytes));
                at
            }
        };
        table.extend_from_slice(*sig);
        table.extend_from_slice(&(at as u32).to_be_bytes());
        table.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    }
    pad4(&mut data);
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

    fn xyz_tag(x: u32, y: u32, z: u32) -> Vec<u8> {
        let mut t = b"XYZ \0\0\0\0".to_vec();
        for v in [x, y, z] {
            t.extend_from_slice(&v.to_be_bytes());
        }
        t
    }

    fn curv(points: &[u16]) -> Vec<u8> {
        let mut t = b"curv\0\0\0\0".to_vec();
        t.extend_from_slice(&(points.len() as u32).to_be_bytes());
        for p in points {
            t.extend_from_slice(&p.to_be_bytes());
        }
        t
    }

    /// A profile of `space` (`RGB ` or `GRAY`) holding `tags` in that order; tags with identical
    /// bytes share one data block, as the three TRCs of many display profiles do.
    fn profile(major: u8, space: &[u8; 4], tags: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
        let n = tags.len();
        let base = 128 + 4 + 12 * n;
        let mut table = (n as u32).to_be_bytes().to_vec();
        let mut data = Vec::new();
        let mut placed: Vec<(usize, &[u8])> = Vec::new();
        for (sig, bytes) in tags {
            let at = match placed.iter().find(|(_, b)| b == bytes) {
                Some((at, _)) => *at,
                None => {
                    let at = base + data.len();
                    data.extend_from_slice(bytes);
                    pad4(&mut data);
                    placed.push((at, bytes));
                    at
                }
            };
            table.extend_from_slice(*sig);
            table.extend_from_slice(&(at as u32).to_be_bytes());
            table.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        }
        let mut h = vec![0u8; 128];
        h[4..8].copy_from_slice(b"appl");
        h[8] = major;
        h[9] = 0x10;
        h[12..16].copy_from_slice(b"mntr");
        h[16..20].copy_from_slice(space);
        h[20..24].copy_from_slice(b"XYZ ");
        h[24..36].copy_from_slice(&[7; 12]);
        h[36..40].copy_from_slice(b"acsp");
        h[40..44].copy_from_slice(b"APPL");
        h[48..56].copy_from_slice(b"APPLMBP1");
        h[68..80].copy_from_slice(&D50);
        h[80..100].copy_from_slice(b"JaneJaneJaneJaneJane");
        let mut p = h;
        p.extend_from_slice(&table);
        p.extend_from_slice(&data);
        let size = p.len() as u32;
        p[0..4].copy_from_slice(&size.to_be_bytes());
        p
    }

    /// A v2 RGB display profile with a description naming a person, the three TRCs sharing one
    /// gamma curve, and `extra` tags.
    fn rgb_with(trc: Vec<u8>, extra: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
        let mut desc = b"desc\0\0\0\0\0\0\0\x15Jane Doe's MacBook\0\0\0".to_vec();
        desc.resize(desc.len() + 79, 0);
        let mut tags: Vec<(&[u8; 4], Vec<u8>)> = vec![
            (b"desc", desc),
            (b"wtpt", xyz_tag(0xF351, 0x1_0000, 0x1_16CC)),
            (b"rXYZ", xyz_tag(0x6FA2, 0x38F5, 0x390)),
            (b"gXYZ", xyz_tag(0x6299, 0xB785, 0x18DA)),
            (b"bXYZ", xyz_tag(0x24A0, 0xF84, 0xB6CF)),
            (b"rTRC", trc.clone()),
            (b"gTRC", trc.clone()),
            (b"bTRC", trc),
        ];
        tags.extend(extra.iter().cloned());
        profile(2, b"RGB ", &tags)
    }

    fn gamma() -> Vec<u8> {
        curv(&[0x0233])
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

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// Bytes that look like the start of a JPEG of a face, long enough to be recognised.
    fn payload() -> Vec<u8> {
        let mut b = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0 a whole JPEG of a face would fit here ".to_vec();
        b.extend((0..600u32).map(|i| (i * 7 % 251) as u8));
        b
    }

    /// Every tag and header field of a rebuilt profile is one veil wrote: a fresh table with no
    /// slack, the data right after it, nothing but kept tags and the description.
    fn assert_rebuilt(out: &[u8]) {
        assert_eq!(be32(out, 0).unwrap() as usize, out.len());
        assert_eq!(&out[4..8], &[0; 4], "CMM");
        assert_eq!(&out[24..36], &[0; 12], "date");
        assert_eq!(
            &out[40..64],
            &[0; 24],
            "platform, flags, device, attributes"
        );
        assert_eq!(&out[80..128], &[0; 48], "creator, profile ID, reserved");
        assert_eq!(&out[68..80], &D50);
        let n = be32(out, 128).unwrap() as usize;
        let mut end = 128 + 4 + 12 * n;
        for i in 0..n {
            let e = 132 + 12 * i;
            let sig: &[u8; 4] = out[e..e + 4].try_into().unwrap();
            assert!(sig == b"desc" || KEPT_TAGS.contains(&sig), "{sig:?}");
            let (off, len) = (
                be32(out, e + 4).unwrap() as usize,
                be32(out, e + 8).unwrap(),
            );
            if off >= end {
                assert_eq!(off, end.next_multiple_of(4), "no slack before {sig:?}");
                end = off + len as usize;
            }
        }
        assert_eq!(end.next_multiple_of(4), out.len());
        // Sanitizing twice changes nothing more, so the lossless strip path sees it as clean.
        assert_eq!(sanitize(out).as_deref(), Some(out));
    }

    #[test]
    fn colour_tags_are_kept_and_text_device_and_private_tags_are_not() {
        let src = rgb_with(gamma(), &[(b"zzzz", payload())]);
        let out = sanitize(&src).unwrap();
        assert_rebuilt(&out);
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
        assert!(contains(desc, DESCRIPTION.as_bytes()));
        for needle in [&b"Jane"[..], b"APPLMBP1", b"appl", b"a whole JPEG"] {
            assert!(!contains(&out, needle));
        }
        assert_eq!(&out[8..12], &[2, 0x10, 0, 0]);
        // The shared curve is written once.
        assert_eq!(out.windows(4).filter(|w| w == b"curv").count(), 1);
    }

    #[test]
    fn a_payload_in_tech_is_gone() {
        let tech = [b"sig \0\0\0\0".as_slice(), &payload()].concat();
        let src = rgb_with(gamma(), &[(b"tech", tech)]);
        let out = sanitize(&src).unwrap();
        assert!(tag(&out, b"tech").is_none());
        assert!(!contains(&out, &payload()[..16]));
        assert!(tag(&out, b"rXYZ").is_some());
        assert_rebuilt(&out);
    }

    #[test]
    fn lookup_gamut_and_preview_tables_are_dropped() {
        // mft2: 3 inputs, 3 outputs, 17 grid points: the grid alone is 29 kB of free bytes.
        let mut lut = b"mft2\0\0\0\0\x03\x03\x11\0".to_vec();
        lut.resize(52 + 2 * (2 * 3 + 17 * 17 * 17 * 3 + 2 * 3), 0);
        let at = lut.len() / 2;
        lut[at..at + payload().len()].copy_from_slice(&payload());
        let extra: Vec<(&[u8; 4], Vec<u8>)> = [b"A2B0", b"B2A0", b"gamt", b"pre0", b"D2B0"]
            .into_iter()
            .map(|s| (s, lut.clone()))
            .collect();
        let out = sanitize(&rgb_with(gamma(), &extra)).unwrap();
        assert!(!contains(&out, &payload()[..16]));
        assert!(!contains(&out, b"mft2"));
        assert_rebuilt(&out);
        // A profile that only has tables (print, CMYK) describes no colour veil can keep.
        let mut cmyk = profile(2, b"CMYK", &[(b"A2B0", lut.clone()), (b"B2A0", lut)]);
        cmyk[12..16].copy_from_slice(b"prtr");
        assert_eq!(sanitize(&cmyk), None);
    }

    #[test]
    fn a_curve_with_bytes_beyond_12_plus_2n_is_refused() {
        // A curve carrying something after its points is refused, and an RGB profile without
        // its curves no longer describes colour.
        let stuffed = [gamma(), payload()].concat();
        assert_eq!(sanitize(&rgb_with(stuffed.clone(), &[])), None);
        // Alignment padding counted in the size (14 recorded as 16) is accepted, and trimmed.
        let mut padded = gamma();
        padded.extend_from_slice(&[0, 0]);
        let out = sanitize(&rgb_with(padded, &[])).unwrap();
        assert_eq!(tag(&out, b"rTRC").unwrap(), &gamma()[..]);
        assert_rebuilt(&out);
        let gray = profile(4, b"GRAY", &[(b"kTRC", stuffed)]);
        assert_eq!(sanitize(&gray), None);
    }

    #[test]
    fn a_tag_type_not_allowed_for_its_signature_is_dropped() {
        let data = [b"data\0\0\0\0".as_slice(), &payload()].concat();
        let text = [b"text\0\0\0\0".as_slice(), &payload()].concat();
        // An optional tag of the wrong type goes alone.
        let src = rgb_with(
            gamma(),
            &[
                (b"bkpt", data.clone()),
                (b"chad", text.clone()),
                (b"cicp", data),
            ],
        );
        let out = sanitize(&src).unwrap();
        for sig in [b"bkpt", b"chad", b"cicp"] {
            assert!(tag(&out, sig).is_none());
        }
        assert!(!contains(&out, &payload()[..16]));
        // A colorant that is not an XYZ value takes the profile with it.
        let mut bad = rgb_with(gamma(), &[]);
        let n = be32(&bad, 128).unwrap() as usize;
        let e = (0..n)
            .map(|i| 132 + 12 * i)
            .find(|e| &bad[*e..e + 4] == b"rXYZ");
        let off = be32(&bad, e.unwrap() + 4).unwrap() as usize;
        bad[off..off + 4].copy_from_slice(b"text");
        assert_eq!(sanitize(&bad), None);
        // An XYZ tag longer than one value is not one.
        let mut long = xyz_tag(1, 2, 3);
        long.extend_from_slice(&payload());
        let out = sanitize(&rgb_with(gamma(), &[(b"bkpt", long)])).unwrap();
        assert!(tag(&out, b"bkpt").is_none());
        assert_rebuilt(&out);
    }

    /// The largest difference, in 1/65535, between two `curv` tags read as functions of
    /// 0..=1 at 1024 inputs (linear interpolation between points, as a CMM reads them).
    fn curve_distance(a: &[u8], b: &[u8]) -> u32 {
        let points = |t: &[u8]| -> Vec<f64> {
            let n = be32(t, 8).unwrap() as usize;
            (0..n)
                .map(|i| f64::from(be16(t, 12 + 2 * i).unwrap()))
                .collect()
        };
        let at = |p: &[f64], x: f64| {
            let pos = x * (p.len() - 1) as f64;
            let k = (pos.floor() as usize).min(p.len() - 2);
            p[k] + (p[k + 1] - p[k]) * (pos - k as f64)
        };
        let (pa, pb) = (points(a), points(b));
        (0..=1023)
            .map(|i| {
                (at(&pa, i as f64 / 1023.0) - at(&pb, i as f64 / 1023.0))
                    .abs()
                    .round() as u32
            })
            .max()
            .unwrap()
    }

    /// Steps of 0 to 15 between 4096 points hide 4 bits each, about 2 KB a curve (a face JPEG
    /// in three); read off at 64 points the steps are gone.
    #[test]
    fn data_hidden_in_a_long_curves_steps_does_not_survive() {
        let bytes = payload();
        let mut points = Vec::with_capacity(MAX_CURVE_POINTS);
        let mut v = 0u16;
        for i in 0..MAX_CURVE_POINTS {
            let b = bytes[(i / 2) % bytes.len()];
            v += u16::from(if i % 2 == 0 { b >> 4 } else { b & 15 });
            points.push(v);
        }
        let src = rgb_with(curv(&points), &[]);
        let out = sanitize(&src).unwrap();
        for sig in [b"rTRC", b"gTRC", b"bTRC"] {
            let t = tag(&out, sig).unwrap();
            assert_eq!(be32(t, 8), Some(CURVE_POINTS_WRITTEN as u32));
            let steps: Vec<u8> = (1..CURVE_POINTS_WRITTEN)
                .map(|i| (be16(t, 12 + 2 * i).unwrap() - be16(t, 10 + 2 * i).unwrap()) as u8)
                .collect();
            let hidden: Vec<u8> = bytes
                .iter()
                .flat_map(|b| [b >> 4, b & 15])
                .take(64)
                .collect();
            assert_ne!(
                &steps[..16],
                &hidden[1..17],
                "{}",
                String::from_utf8_lossy(sig)
            );
        }
        assert!(!out.windows(8).any(|w| bytes.windows(8).any(|p| p == w)));
    }

    #[test]
    fn a_large_non_monotonic_curve_is_dropped() {
        // The payload as curve points: a table that goes up and down carries it verbatim.
        let bytes = payload();
        let points: Vec<u16> = bytes
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
            .collect();
        assert_eq!(sanitize(&rgb_with(curv(&points), &[])), None);
        // A non-decreasing table is a tone curve and is kept: as it is when it is short...
        let short: Vec<u16> = (0..CURVE_POINTS_WRITTEN as u32)
            .map(|i| (i * i * 16) as u16)
            .collect();
        let out = sanitize(&rgb_with(curv(&short), &[])).unwrap();
        assert_eq!(tag(&out, b"gTRC").unwrap(), &curv(&short)[..]);
        // ...read off at CURVE_POINTS_WRITTEN points when it is long.
        let ramp: Vec<u16> = (0..1024u32).map(|i| (i * i / 16) as u16).collect();
        let out = sanitize(&rgb_with(curv(&ramp), &[])).unwrap();
        let written = tag(&out, b"gTRC").unwrap();
        assert_eq!(written, &curv(&resampled(&ramp, CURVE_POINTS_WRITTEN))[..]);
        assert!(
            curve_distance(&curv(&ramp), written) <= 70,
            "within 1e-3 of the source"
        );
        assert_rebuilt(&out);
        // ...up to MAX_CURVE_POINTS.
        let long = vec![7u16; MAX_CURVE_POINTS + 1];
        assert_eq!(sanitize(&rgb_with(curv(&long), &[])), None);
        // A zero gamma is not a curve either.
        assert_eq!(sanitize(&rgb_with(curv(&[0]), &[])), None);
    }

    #[test]
    fn v4_parametric_curves_adaptation_cicp_and_gray_profiles_are_kept() {
        // sRGB as littleCMS writes it: para type 3 curves and a chad matrix.
        let mut para = b"para\0\0\0\0\0\x03\0\0".to_vec();
        for v in [0x2_6666u32, 0xF2A7, 0xD59, 0x13D0, 0xA3D] {
            para.extend_from_slice(&v.to_be_bytes());
        }
        let mut chad = b"sf32\0\0\0\0".to_vec();
        for v in [
            0x1_0C42u32,
            0x5DE,
            0xFFFF_F325,
            0x7A9,
            0xFD90,
            0xFFFF_FBA1,
            0xFFFF_FDA2,
            0x3DC,
            0xC06E,
        ] {
            chad.extend_from_slice(&v.to_be_bytes());
        }
        let cicp = b"cicp\0\0\0\0\x01\x0D\0\x01".to_vec();
        let src = profile(
            4,
            b"RGB ",
            &[
                (b"wtpt", xyz_tag(0xF6D6, 0x1_0000, 0xD32D)),
                (b"chad", chad),
                (b"rXYZ", xyz_tag(0x6FA2, 0x38F5, 0x390)),
                (b"gXYZ", xyz_tag(0x6299, 0xB785, 0x18DA)),
                (b"bXYZ", xyz_tag(0x24A0, 0xF84, 0xB6CF)),
                (b"rTRC", para.clone()),
                (b"gTRC", para.clone()),
                (b"bTRC", para),
                (b"cicp", cicp),
            ],
        );
        let out = sanitize(&src).unwrap();
        assert_rebuilt(&out);
        for sig in [b"chad", b"rTRC", b"bTRC", b"cicp", b"wtpt"] {
            assert_eq!(tag(&out, sig), tag(&src, sig));
        }
        assert_eq!(&tag(&out, b"desc").unwrap()[..4], b"mluc");
        // A para function type beyond 4, or one with the size of another type, is not kept.
        let mut bad = src.clone();
        let at = src.windows(4).position(|w| w == b"para").unwrap();
        bad[at + 9] = 5;
        assert_eq!(sanitize(&bad), None);

        let gray = profile(
            2,
            b"GRAY",
            &[
                (b"wtpt", xyz_tag(0xF6D6, 0x1_0000, 0xD32D)),
                (b"kTRC", curv(&[0x01CD])),
                (b"rXYZ", xyz_tag(1, 2, 3)), // not a gray profile's tag
            ],
        );
        let out = sanitize(&gray).unwrap();
        assert_rebuilt(&out);
        assert_eq!(tag(&out, b"kTRC"), tag(&gray, b"kTRC"));
        assert!(tag(&out, b"rXYZ").is_none());
    }

    /// The profiles of the shared photos (HP's sRGB with 1024-point curves, an Adobe RGB
    /// profile) keep every colour tag's value.
    #[test]
    #[allow(clippy::print_stderr)] // says which shared files were absent
    fn real_profiles_keep_their_colour_values() {
        use image::ImageDecoder;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images");
        let mut seen = 0;
        for name in ["faces/astronaut.png", "negatives/rocket.jpg"] {
            let Ok(reader) = image::ImageReader::open(dir.join(name)) else {
                eprintln!("SKIPPED: {name} not found (shared test data)");
                continue;
            };
            let mut decoder = reader
                .with_guessed_format()
                .unwrap()
                .into_decoder()
                .unwrap();
            let src = decoder.icc_profile().unwrap().unwrap();
            let out = sanitize(&src).unwrap();
            assert_rebuilt(&out);
            for sig in [b"wtpt", b"bkpt", b"rXYZ", b"gXYZ", b"bXYZ"] {
                let (s, o) = (tag(&src, sig).unwrap(), tag(&out, sig).unwrap());
                assert_eq!(&s[..o.len()], o, "{name} {}", String::from_utf8_lossy(sig));
            }
            // Tone curves: the same function, long tables read off at 64 points.
            for sig in [b"rTRC", b"gTRC", b"bTRC"] {
                let (s, o) = (tag(&src, sig).unwrap(), tag(&out, sig).unwrap());
                if s.starts_with(b"curv") && be32(s, 8).unwrap() > 1 {
                    let d = curve_distance(s, o);
                    assert!(d <= 20, "{name} {}: {d}", String::from_utf8_lossy(sig));
                } else {
                    assert_eq!(&s[..o.len()], o, "{name} {}", String::from_utf8_lossy(sig));
                }
            }
            for sig in [
                b"cprt", b"dmnd", b"dmdd", b"tech", b"meas", b"view", b"vued",
            ] {
                assert!(tag(&out, sig).is_none());
            }
            seen += 1;
        }
        eprintln!("{seen} shared profiles checked");
    }

    #[test]
    fn what_is_not_a_profile_is_dropped() {
        let jpeg_as_profile = [b"\xFF\xD8\xFF\xE0".as_slice(), &[0u8; 300]].concat();
        assert_eq!(sanitize(&jpeg_as_profile), None);
        let mut p = rgb_with(gamma(), &[]);
        let last = p.len() - 1;
        p[0..4].copy_from_slice(&(last as u32 + 100).to_be_bytes()); // size beyond the data
        assert_eq!(sanitize(&p), None);
        let mut p = rgb_with(gamma(), &[]);
        p[132 + 4..132 + 8].copy_from_slice(&u32::MAX.to_be_bytes()); // a tag beyond the end
        assert_eq!(sanitize(&p), None);
        let mut p = rgb_with(gamma(), &[]);
        p[8] = 5; // iccMAX
        assert_eq!(sanitize(&p), None);
        let mut p = rgb_with(gamma(), &[]);
        p[12..16].copy_from_slice(b"link"); // a device link holds no colorants
        assert_eq!(sanitize(&p), None);
        assert_eq!(sanitize(&[0u8; MAX_ICC_BYTES + 1]), None);
    }
}
