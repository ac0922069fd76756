//! Pictures hidden inside other bytes: a JPEG pickled into a WebDataset `.pyd` sidecar, a PNG in
//! a msgpack blob, a `data:image/...;base64,` URI or bare base64 JPEG inside a JSON caption, a
//! raw pixel array saved as `.npy`. This module owns the one question "does this archive member
//! or table cell, which veil would otherwise pass through unchanged, carry a picture anywhere
//! inside it?" ([`find`] for bytes in memory, [`Scanner`] for a member read as a stream). A hit
//! is a short reason with the byte offset; callers refuse the member or table with it (fail
//! closed). Signatures are validated a few bytes further (a JPEG's first segment, a PNG's `IHDR`,
//! a GIF's first block, a TIFF's first directory entry) so that compressed or random data rarely
//! matches; a false hit refuses a member, never leaks one.

use memchr::{memchr_iter, memmem};

/// Bytes kept from one chunk to the next by [`Scanner`]: enough to check a JPEG's first segment
/// (64 KiB at most) and the marker after it, whatever the chunk boundaries.
const OVERLAP: usize = 66 * 1024;
/// Base64 characters that must follow a base64 image start for it to count.
const BASE64_RUN: usize = 40;
/// Smallest height and width of a `.npy` uint8 array that counts as a picture.
const NPY_MIN_SIDE: u64 = 16;

/// Why `bytes` (a whole member or cell) carries a picture, or `None`.
pub fn find(bytes: &[u8]) -> Option<String> {
    npy_picture(bytes).or_else(|| scan(bytes, bytes.len(), 0))
}

/// [`find`] over a stream fed chunk by chunk, holding at most a few hundred KiB.
#[derive(Debug, Default)]
pub struct Scanner {
    buf: Vec<u8>,
    /// Offset in the stream of `buf[0]`.
    base: u64,
    /// Whether the start of the stream has been looked at (a `.npy` header).
    started: bool,
    hit: Option<String>,
}

impl Scanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks at `chunk`, the next bytes of the stream; returns the reason once there is a hit
    /// (later chunks are then ignored).
    pub fn push(&mut self, chunk: &[u8]) -> Option<&str> {
        if self.hit.is_none() {
            self.buf.extend_from_slice(chunk);
            if self.buf.len() >= 4 * OVERLAP {
                self.look(false);
            }
        }
        self.hit.as_deref()
    }

    /// The reason, once the whole stream has been pushed.
    pub fn finish(mut self) -> Option<String> {
        if self.hit.is_none() {
            self.look(true);
        }
        self.hit
    }

    fn look(&mut self, last: bool) {
        if !self.started {
            self.started = true;
            self.hit = npy_picture(&self.buf);
        }
        let limit = if last {
            self.buf.len()
        } else {
            self.buf.len() - OVERLAP
        };
        if self.hit.is_none() {
            self.hit = scan(&self.buf, limit, self.base);
        }
        self.buf.drain(..limit);
        self.base += limit as u64;
    }
}

/// The first picture starting before `limit` in `b` (whose first byte is at `base` in its
/// stream); checks may read past `limit`, to the end of `b`.
fn scan(b: &[u8], limit: usize, base: u64) -> Option<String> {
    let at = |p: usize| base + p as u64;
    let starts =
        |needle: &'static [u8]| memmem::find_iter(b, needle).take_while(move |&p| p < limit);
    for (needle, check, what) in BINARY {
        if let Some(p) = starts(needle).find(|&p| check(b, p)) {
            return Some(format!("a {what} image at byte {}", at(p)));
        }
    }
    if let Some(p) = memchr_iter(b':', b)
        .take_while(|&p| p < limit)
        .find(|&p| data_uri_at(b, p))
    {
        return Some(format!(
            "an image as a `data:image/` URI at byte {}",
            at(p.saturating_sub(4))
        ));
    }
    for (needle, what) in BASE64 {
        if let Some(p) = starts(needle).find(|&p| base64_image_at(b, p, needle)) {
            return Some(format!("a base64-encoded {what} image at byte {}", at(p)));
        }
    }
    if let Some(p) = pickled_array_at(b, limit) {
        return Some(format!(
            "a pickled NumPy array at byte {} (veil cannot tell pixels from other numbers in \
             a pickle; save arrays as .npy, which it checks)",
            at(p)
        ));
    }
    None
}

/// Where a pickled NumPy array starts to be rebuilt: the name of the function a pickle calls for
/// one (`numpy.core.multiarray._reconstruct`, or `numpy.core.numeric._frombuffer` with
/// protocol 5, `_core` since NumPy 2), its module named at most 64 bytes before it. A decoded
/// image kept as an array (`pickle.dumps(np.asarray(img))`, a WebDataset `.pyd`) has no image
/// signature, and its pixels cannot be told from an embedding's numbers without unpickling.
fn pickled_array_at(b: &[u8], limit: usize) -> Option<usize> {
    [&b"_reconstruct"[..], b"_frombuffer"].iter().find_map(|f| {
        memmem::find_iter(b, f)
            .take_while(|&p| p < limit)
            .find(|&p| memmem::find(&b[p.saturating_sub(64)..p], b"numpy").is_some())
    })
}

type Check = fn(&[u8], usize) -> bool;

/// Binary signatures: the bytes each starts with, its check, its name.
const BINARY: &[(&[u8], Check, &str)] = &[
    (b"\xFF\xD8\xFF", jpeg_at, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", png_at, "PNG"),
    (b"GIF8", gif_at, "GIF"),
    (b"RIFF", webp_at, "WebP"),
    (b"II*\0", tiff_at, "TIFF"),
    (b"MM\0*", tiff_at, "TIFF"),
    (b"BM", bmp_at, "BMP"),
];

/// Base64 starts of JPEG (`FF D8 FF`, standard, URL-safe and JSON-escaped), PNG, GIF and WebP
/// (`RIFF`, checked for `WEBP` once decoded).
const BASE64: &[(&[u8], &str)] = &[
    (b"/9j/", "JPEG"),
    (b"_9j_", "JPEG"),
    (b"\\/9j\\/", "JPEG"),
    (b"iVBORw0KGgo", "PNG"),
    (b"R0lGOD", "GIF"),
    (b"UklGR", "WebP"),
];

fn u16be(b: &[u8], p: usize) -> Option<usize> {
    Some(u16::from_be_bytes(b.get(p..p + 2)?.try_into().ok()?) as usize)
}

fn u16le(b: &[u8], p: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(p..p + 2)?.try_into().ok()?) as usize)
}

fn u32le(b: &[u8], p: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(p..p + 4)?.try_into().ok()?))
}

fn u32be(b: &[u8], p: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(p..p + 4)?.try_into().ok()?))
}

/// `FF D8` and a first segment that is a JFIF or Exif header, or whose length leads to the next
/// marker.
fn jpeg_at(b: &[u8], p: usize) -> bool {
    let Some(&m) = b.get(p + 3) else {
        return false;
    };
    let plausible = matches!(m, 0xC0..=0xCF | 0xDB | 0xDD | 0xE0..=0xEF | 0xFE);
    let Some(len) = u16be(b, p + 4).filter(|&l| plausible && l >= 2) else {
        return false;
    };
    let ident = b.get(p + 6..p + 11).unwrap_or(&[]);
    if (m == 0xE0 && (ident == b"JFIF\0" || ident == b"JFXX\0"))
        || (m == 0xE1 && (ident == b"Exif\0" || ident.starts_with(b"http")))
    {
        return true;
    }
    let next = p + 4 + len;
    b.get(next) == Some(&0xFF) && b.get(next + 1).is_some_and(|&n| n != 0)
}

fn png_at(b: &[u8], p: usize) -> bool {
    b.get(p + 12..p + 16) == Some(b"IHDR")
}

/// `GIF87a`/`GIF89a`, a screen descriptor, its colour table, then an extension or an image.
fn gif_at(b: &[u8], p: usize) -> bool {
    let sig = b.get(p..p + 6);
    if sig != Some(b"GIF87a") && sig != Some(b"GIF89a") {
        return false;
    }
    let Some(&flags) = b.get(p + 10) else {
        return false;
    };
    let table = if flags & 0x80 != 0 {
        3usize << ((flags & 7) + 1)
    } else {
        0
    };
    matches!(b.get(p + 13 + table), Some(0x21 | 0x2C))
}

fn webp_at(b: &[u8], p: usize) -> bool {
    b.get(p + 8..p + 12) == Some(b"WEBP") && b.get(p + 12..p + 15) == Some(b"VP8")
}

/// A TIFF header whose first directory (within the bytes at hand) has a plausible entry count,
/// first tag and type.
fn tiff_at(b: &[u8], p: usize) -> bool {
    let le = b[p] == b'I';
    let r16 = |b: &[u8], p: usize| if le { u16le(b, p) } else { u16be(b, p) };
    let r32 = |b: &[u8], p: usize| if le { u32le(b, p) } else { u32be(b, p) };
    let Some(off) = r32(b, p + 4).filter(|&o| o >= 8) else {
        return false;
    };
    let ifd = p + off as usize;
    let count = r16(b, ifd);
    let tag = r16(b, ifd + 2);
    let kind = r16(b, ifd + 4);
    matches!(
        (count, tag, kind),
        (Some(1..=1000), Some(0xFE..=0x140), Some(1..=12))
    )
}

/// A BMP file header and a plausible DIB header after it.
fn bmp_at(b: &[u8], p: usize) -> bool {
    let reserved = u32le(b, p + 6);
    let pixels = u32le(b, p + 10);
    let dib = u32le(b, p + 14);
    if reserved != Some(0)
        || !pixels.is_some_and(|o| (26..=1 << 20).contains(&o))
        || !matches!(dib, Some(12 | 40 | 52 | 56 | 64 | 108 | 124))
    {
        return false;
    }
    if dib == Some(12) {
        return u16le(b, p + 18).is_some_and(|w| w > 0) && u16le(b, p + 20).is_some_and(|h| h > 0);
    }
    let w = u32le(b, p + 18).map(|w| w as i32);
    let h = u32le(b, p + 22).map(|h| h as i32);
    w.is_some_and(|w| (1..=65_535).contains(&w))
        && h.is_some_and(|h| h != 0 && h.unsigned_abs() <= 65_535)
}

/// `data:image/` (any case; `\/` as JSON may escape the slash) around the colon at `p`.
fn data_uri_at(b: &[u8], p: usize) -> bool {
    let before = p.checked_sub(4).and_then(|s| b.get(s..p));
    if !before.is_some_and(|w| w.eq_ignore_ascii_case(b"data")) {
        return false;
    }
    let after = b.get(p + 1..p + 6);
    if !after.is_some_and(|w| w.eq_ignore_ascii_case(b"image")) {
        return false;
    }
    matches!(b.get(p + 6), Some(b'/')) || b.get(p + 6..p + 8) == Some(b"\\/")
}

fn is_base64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_')
}

fn base64_value(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    })
}

/// A base64 image start `needle` at `p`: not inside a longer base64 run, followed by at least
/// [`BASE64_RUN`] base64 characters (`\/` counted as one), and, for `RIFF`, `WEBP` once decoded.
fn base64_image_at(b: &[u8], p: usize, needle: &[u8]) -> bool {
    // Inside a longer run (or a path such as `a/9j/`): not the start of an encoding.
    if p > 0 && is_base64(b[p - 1]) {
        return false;
    }
    let mut chars = Vec::with_capacity(BASE64_RUN);
    let mut i = p;
    while chars.len() < BASE64_RUN {
        match b.get(i) {
            Some(b'\\') if b.get(i + 1) == Some(&b'/') => {
                chars.push(b'/');
                i += 2;
            }
            Some(&c) if is_base64(c) => {
                chars.push(c);
                i += 1;
            }
            _ => return false,
        }
    }
    if needle != b"UklGR" {
        return true;
    }
    // Characters 8..16 encode bytes 6..12: `WEBP` is bytes 8..12.
    let mut bytes = Vec::with_capacity(12);
    for quad in chars[..16].chunks(4) {
        let v: Option<Vec<u8>> = quad.iter().map(|&c| base64_value(c)).collect();
        let Some(v) = v else {
            return false;
        };
        let n = (u32::from(v[0]) << 18)
            | (u32::from(v[1]) << 12)
            | (u32::from(v[2]) << 6)
            | u32::from(v[3]);
        bytes.extend_from_slice(&n.to_be_bytes()[1..]);
    }
    &bytes[8..12] == b"WEBP"
}

/// A `.npy` array that holds raw pixels: 8- or 16-bit integers of rank 2 to 4 with two
/// neighbouring dimensions of at least [`NPY_MIN_SIDE`] (HxW, HxWxC, CxHxW, NxHxWxC), or any
/// other number type (a normalised float image) of rank 3 or 4 whose last three dimensions are
/// HxWxC or CxHxW with C of 1, 3 or 4. Rank-2 float arrays (embeddings, `77x768`) are not
/// pictures.
fn npy_picture(b: &[u8]) -> Option<String> {
    if !b.starts_with(b"\x93NUMPY") {
        return None;
    }
    let (len, start) = match b.get(6)? {
        1 => (u16le(b, 8)?, 10),
        _ => (u32le(b, 8)? as usize, 12),
    };
    let header = String::from_utf8_lossy(
        b.get(start..start + len)
            .unwrap_or(&b[start.min(b.len())..]),
    );
    let descr = quoted_after(&header, "'descr'")?;
    let descr = descr.trim_start_matches(['|', '<', '>', '=']);
    let integer = matches!(descr, "u1" | "B" | "i1" | "b" | "u2" | "i2" | "H" | "h");
    let number = integer || matches!(descr, "f2" | "f4" | "f8" | "e" | "f" | "d");
    if !number {
        return None;
    }
    let shape = header
        .split_once("'shape'")
        .and_then(|(_, s)| s.split_once('('))
        .and_then(|(_, s)| s.split_once(')'))
        .map(|(s, _)| s);
    let Some(dims) = shape.and_then(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| d.trim_end_matches('L').parse::<u64>().ok())
            .collect::<Option<Vec<u64>>>()
    }) else {
        return Some(format!(
            "a NumPy array of {descr} values whose shape veil cannot read"
        ));
    };
    let side = |d: u64| d >= NPY_MIN_SIDE;
    let channels = |d: u64| matches!(d, 1 | 3 | 4);
    let picture = if integer {
        (2..=4).contains(&dims.len()) && dims.windows(2).any(|w| side(w[0]) && side(w[1]))
    } else {
        (3..=4).contains(&dims.len()) && {
            let [a, b, c] = [
                dims[dims.len() - 3],
                dims[dims.len() - 2],
                dims[dims.len() - 1],
            ];
            (side(a) && side(b) && channels(c)) || (channels(a) && side(b) && side(c))
        }
    };
    picture.then(|| {
        let shape: Vec<String> = dims.iter().map(u64::to_string).collect();
        format!(
            "a NumPy array of pixels ({} of {descr}), a raw picture",
            shape.join("x")
        )
    })
}

/// The single-quoted value after `key` in a `.npy` header dict.
fn quoted_after<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let (_, rest) = header.split_once(key)?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('\'')?;
    rest.split_once('\'').map(|(v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg() -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::from_fn(32, 24, |x, y| image::Rgb([x as u8 * 7, y as u8 * 9, 40]))
            .write_to(
                &mut std::io::Cursor::new(&mut out),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        out
    }

    /// An image of `format`: encoded by `image` (JPEG, PNG, WebP), or a minimal header of the
    /// others (veil's `image` has no encoder for them).
    fn encoded(format: image::ImageFormat) -> Vec<u8> {
        match format {
            image::ImageFormat::Gif => {
                return [
                    &b"GIF89a\x20\x00\x18\x00\x80\x00\x00"[..],
                    &[9; 6],
                    b",\0\0\0\0",
                    &[0; 64],
                ]
                .concat()
            }
            image::ImageFormat::Tiff => {
                return [
                    &b"II*\0\x08\0\0\0\x01\0\x00\x01\x03\0\x01\0\0\0\x20\0"[..],
                    &[0; 8],
                ]
                .concat()
            }
            image::ImageFormat::Bmp => {
                let mut b = b"BM\x00\x10\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0".to_vec();
                b.extend_from_slice(&32i32.to_le_bytes());
                b.extend_from_slice(&24i32.to_le_bytes());
                b.extend_from_slice(&[1, 0, 24, 0]);
                b.extend_from_slice(&[0; 64]);
                return b;
            }
            _ => {}
        }
        let mut out = Vec::new();
        image::RgbImage::from_fn(32, 24, |x, y| image::Rgb([x as u8 * 7, y as u8 * 9, 40]))
            .write_to(&mut std::io::Cursor::new(&mut out), format)
            .unwrap();
        out
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Pseudo-random bytes (xorshift), as compressed data looks.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn npy(descr: &str, shape: &str) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (header.len() + 11) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&[7u8; 64]);
        out
    }

    #[test]
    fn pictures_behind_other_bytes_are_found_in_every_format() {
        let pickled = [
            &b"\x80\x04\x95\x00\x00}\x94\x8c\x03jpg\x94C"[..],
            &jpeg(),
            b"\x94s.",
        ]
        .concat();
        assert!(find(&pickled).unwrap().contains("JPEG"), "a pickled JPEG");
        for (format, name) in [
            (image::ImageFormat::Png, "PNG"),
            (image::ImageFormat::Gif, "GIF"),
            (image::ImageFormat::WebP, "WebP"),
            (image::ImageFormat::Tiff, "TIFF"),
            (image::ImageFormat::Bmp, "BMP"),
        ] {
            let blob = [&b"\x81\xa5image\xc6\x00\x00\x10\x00"[..], &encoded(format)].concat();
            let why = find(&blob).unwrap_or_else(|| panic!("{name} not found"));
            assert!(why.contains(name) && why.contains("at byte 12"), "{why}");
        }
    }

    #[test]
    fn images_written_as_text_are_found_anywhere_in_a_caption() {
        let uri = format!(
            "{{\"caption\": \"x\", \"image\": \"data:image/jpeg;base64,{}\"}}",
            b64(&jpeg())
        );
        assert!(find(uri.as_bytes()).unwrap().contains("data:image/"));
        let escaped = "{\"thumb\": \"DATA:IMAGE\\/png;base64,AAAA\"}";
        assert!(find(escaped.as_bytes()).unwrap().contains("data:image/"));
        for (format, name) in [
            (image::ImageFormat::Jpeg, "JPEG"),
            (image::ImageFormat::Png, "PNG"),
            (image::ImageFormat::Gif, "GIF"),
            (image::ImageFormat::WebP, "WebP"),
        ] {
            let text = format!("{{\"id\": 3, \"pixels\": \"{}\"}}", b64(&encoded(format)));
            let why = find(text.as_bytes()).unwrap_or_else(|| panic!("base64 {name}"));
            assert!(why.contains(&format!("base64-encoded {name}")), "{why}");
        }
        // JSON that escapes slashes.
        let text = format!("[\"{}\"]", b64(&jpeg()).replace('/', "\\/"));
        assert!(find(text.as_bytes())
            .unwrap()
            .contains("base64-encoded JPEG"));
    }

    /// `pickle.dumps(np.zeros((64, 64, 3), np.uint8))` as protocols 2 and 5 start it (NumPy 1
    /// and 2 module names), followed by the array's bytes: no image signature anywhere.
    #[test]
    fn a_pickled_array_is_found_whatever_the_protocol() {
        for head in [
            &b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\n"[..],
            b"\x80\x05\x95\x00\x01\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct\x94\x93",
            b"\x80\x05\x95\x00\x01\x00\x00\x00\x00\x00\x00\x8c\x13numpy._core.numeric\x94\x8c\x0b_frombuffer\x94\x93",
        ] {
            let pickled = [head, &[7u8; 64 * 64 * 3][..], b"\x94t\x94R\x94."].concat();
            let why = find(&pickled).unwrap();
            assert!(why.contains("pickled NumPy array"), "{why}");
        }
        // A caption that names the function without the module is not one.
        assert_eq!(find(b"{\"caption\": \"call _reconstruct() later\"}"), None);
    }

    /// Base64 wrapped at 60 characters a line (some tools' default) is still found.
    #[test]
    fn base64_wrapped_at_sixty_columns_is_found() {
        let wrapped: String = b64(&jpeg())
            .as_bytes()
            .chunks(60)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!("<image>\n{wrapped}\n</image>");
        assert!(find(text.as_bytes())
            .unwrap()
            .contains("base64-encoded JPEG"));
    }

    #[test]
    fn a_pixel_array_is_found_and_other_arrays_pass() {
        assert!(find(&npy("|u1", "(720, 1280, 3)"))
            .unwrap()
            .contains("720x1280x3"));
        assert!(find(&npy("|u1", "(3, 64, 64)")).is_some());
        assert!(find(&npy("|u1", "(8, 32, 32, 3)")).is_some());
        assert!(find(&npy("|u1", "(64, 64)")).is_some());
        // Normalised float images and 16-bit ones are pictures too.
        assert!(find(&npy("<f4", "(720, 1280, 3)"))
            .unwrap()
            .contains("720x1280x3 of f4"));
        assert!(find(&npy("<f4", "(3, 180, 320)")).is_some());
        assert!(find(&npy("<f2", "(2, 3, 224, 224)")).is_some());
        assert!(find(&npy("<u2", "(180, 320)")).is_some());
        // Float embeddings and feature maps are not.
        assert_eq!(find(&npy("<f4", "(77, 768)")), None, "text embeddings");
        assert_eq!(find(&npy("<f4", "(512,)")), None, "an image embedding");
        assert_eq!(find(&npy("<f4", "(16, 16, 256)")), None, "feature map");
        assert_eq!(find(&npy("<i8", "(77,)")), None, "token ids");
        assert_eq!(find(&npy("|u1", "(512,)")), None, "a vector");
        assert_eq!(find(&npy("|u1", "(1000, 4)")), None, "boxes");
        assert_eq!(
            find(&npy("|u1", "(4, 8, 8)")),
            None,
            "too small to show a face"
        );
    }

    #[test]
    fn captions_text_and_random_bytes_pass() {
        let caption = "{\"caption\": \"a BMW near the GIF89a sign, see https://x.org/9j/abc, \
                       RIFF and II* in text\", \"url\": \"http://a/data:imagery\", \"key\": \
                       \"/9j/short\", \"sha\": \"iVBORw0KGgo\"}";
        assert_eq!(find(caption.as_bytes()), None);
        // A long base64 run that only contains `/9j/` in its middle.
        let mut long = "QUFB".repeat(40);
        long.insert_str(80, "/9j/");
        assert_eq!(find(long.as_bytes()), None);
        for seed in 1..5u64 {
            let bytes = noise(4 << 20, seed);
            assert_eq!(find(&bytes), None, "seed {seed}");
        }
    }

    #[test]
    fn the_stream_scanner_finds_a_picture_across_chunk_boundaries() {
        let img = jpeg();
        for split in [0usize, 1, 2, 3, 5, 100, 4 * OVERLAP - 2, 4 * OVERLAP + 1] {
            let mut bytes = noise(5 * OVERLAP, 9);
            let at = split.min(bytes.len());
            bytes.splice(at..at, img.iter().copied());
            let mut s = Scanner::new();
            let mut hit = None;
            for chunk in bytes.chunks(7919) {
                if let Some(w) = s.push(chunk) {
                    hit = Some(w.to_string());
                    break;
                }
            }
            let hit = hit
                .or_else(|| s.finish())
                .unwrap_or_else(|| panic!("at {split}"));
            assert!(hit.contains(&format!("JPEG image at byte {at}")), "{hit}");
        }
        let mut s = Scanner::new();
        s.push(&npy("|u1", "(64, 64, 3)"));
        assert!(s.finish().unwrap().contains("NumPy"));
        let mut s = Scanner::new();
        s.push(&noise(1 << 20, 3));
        assert_eq!(s.finish(), None);
    }
}
