//! Decoding untrusted image bytes: pixel cap checked from the header before any pixel buffer is
//! allocated, decoder panics contained, EXIF orientation applied so everything downstream works
//! on the upright image.
//!
//! JPEG is decoded strictly: the lenient decode `image` does fills what follows damaged
//! entropy-coded data with grey, while libjpeg-based viewers resynchronise at the next restart
//! marker and show the picture. Detecting on the grey and then keeping the source's compressed
//! data (the strip path) would publish a face nobody looked at, so damaged JPEG data fails the
//! image ([`check_jpeg_strict`]).

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{DynamicImage, ImageDecoder, ImageFormat, RgbImage, RgbaImage};

/// Pixels of the upright working image: RGB, or RGBA when the source has alpha.
#[derive(Debug)]
pub enum Working {
    Rgb(RgbImage),
    Rgba(RgbaImage),
}

impl Working {
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            Working::Rgb(i) => i.dimensions(),
            Working::Rgba(i) => i.dimensions(),
        }
    }

    /// The RGB view detectors see (for RGBA, the colour channels as stored: pixels hidden by
    /// alpha are still in the file, so they are searched too).
    pub fn to_rgb(&self) -> RgbImage {
        match self {
            Working::Rgb(i) => i.clone(),
            Working::Rgba(i) => DynamicImage::ImageRgba8(i.clone()).to_rgb8(),
        }
    }

    /// [`Working::to_rgb`] without a copy of an RGB image (a 12 MP copy is 36 MB per worker).
    pub fn into_rgb(self) -> RgbImage {
        match self {
            Working::Rgb(i) => i,
            Working::Rgba(i) => DynamicImage::ImageRgba8(i).to_rgb8(),
        }
    }
}

#[derive(Debug)]
pub struct Decoded {
    pub image: Working,
    /// The source had a single luma channel: write grayscale back.
    pub grayscale: bool,
    /// The source had 16 bits per channel (written back as 8 bits).
    pub sixteen_bit: bool,
    /// EXIF orientation that was applied (1 = none).
    pub orientation: u8,
    /// The source's ICC profile as [`crate::icc::sanitize`] rebuilt it (what an output carries).
    pub icc_profile: Option<Vec<u8>>,
    /// The source's profile is not [`Decoded::icc_profile`] byte for byte (rebuilt or dropped), so
    /// its bytes must not be copied to an output.
    pub icc_changed: bool,
}

/// Decodes `bytes` of a known format. Fails (never panics) on a malformed file, a decoder panic,
/// or an image above `max_pixels`.
pub fn decode(bytes: &[u8], format: ImageFormat, max_pixels: u64) -> Result<Decoded, String> {
    match catch_unwind(AssertUnwindSafe(|| decode_inner(bytes, format, max_pixels))) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("decoder crashed: {msg}"))
        }
    }
}

/// Pixels of the image as its header gives them (no pixel is decoded; panics contained).
pub fn header_pixels(bytes: &[u8], format: ImageFormat) -> Option<u64> {
    catch_unwind(AssertUnwindSafe(|| {
        let reader = image::ImageReader::with_format(Cursor::new(bytes), format);
        let (w, h) = reader.into_decoder().ok()?.dimensions();
        Some(w as u64 * h as u64)
    }))
    .ok()
    .flatten()
}

/// Decodes a JPEG's scans in strict mode and fails on any damage a lenient decoder would paper
/// over: a marker inside entropy-coded data, restart markers out of order, data ending before the
/// last MCU, stray bytes between segments. The pixels are dropped; this only says whether every
/// decoder can be expected to see the same picture.
pub fn check_jpeg_strict(bytes: &[u8], max_pixels: u64) -> Result<(), String> {
    let side = usize::try_from(max_pixels.min(u32::MAX as u64)).unwrap_or(usize::MAX);
    let options = zune_core::options::DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(side)
        .set_max_height(side);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        options,
    );
    decoder.decode().map(|_| ()).map_err(|e| {
        format!(
            "damaged JPEG data ({e}): viewers may show more of it than veil can decode, so it is \
             not processed; repair or re-export the file and run again"
        )
    })
}

fn decode_inner(bytes: &[u8], format: ImageFormat, max_pixels: u64) -> Result<Decoded, String> {
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    // Room for a 16-bit RGBA decode of the largest allowed image plus conversions.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    let pixels = w as u64 * h as u64;
    if pixels > max_pixels {
        return Err(format!(
            "image is {w}x{h} = {pixels} pixels, above the limit of {max_pixels} (--max-pixels); refused before decoding"
        ));
    }
    if pixels == 0 {
        return Err("image has no pixels".into());
    }
    if format == ImageFormat::Jpeg {
        check_jpeg_strict(bytes, max_pixels)?;
    }
    let orientation = decoder.orientation().map_err(|e| e.to_string())?;
    let raw_icc = decoder.icc_profile().ok().flatten();
    let icc_profile = raw_icc.as_deref().and_then(crate::icc::sanitize);
    let icc_changed = raw_icc.is_some() && icc_profile != raw_icc;
    let color = decoder.color_type();
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    img.apply_orientation(orientation);
    let grayscale = matches!(
        color,
        image::ColorType::L8
            | image::ColorType::L16
            | image::ColorType::La8
            | image::ColorType::La16
    );
    let sixteen_bit = matches!(
        color,
        image::ColorType::L16
            | image::ColorType::La16
            | image::ColorType::Rgb16
            | image::ColorType::Rgba16
    );
    let image = if color.has_alpha() {
        Working::Rgba(img.into_rgba8())
    } else {
        Working::Rgb(img.into_rgb8())
    };
    Ok(Decoded {
        image,
        grayscale,
        sixteen_bit,
        orientation: orientation.to_exif(),
        icc_profile,
        icc_changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops;

    /// A JPEG whose stored pixels are `stored`, tagged with EXIF orientation `o`.
    fn jpeg_with_orientation(stored: &RgbImage, o: u16) -> Vec<u8> {
        let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        tiff.extend_from_slice(&o.to_be_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 100);
        enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_1_1);
        enc.add_exif_metadata(&tiff).unwrap();
        let (w, h) = stored.dimensions();
        enc.encode(
            stored.as_raw(),
            w as u16,
            h as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .unwrap();
        out
    }

    /// EXIF orientations 1..8 as the specification defines them, from the stored pixels.
    fn upright(stored: &RgbImage, o: u16) -> RgbImage {
        match o {
            1 => stored.clone(),
            2 => imageops::flip_horizontal(stored),
            3 => imageops::rotate180(stored),
            4 => imageops::flip_vertical(stored),
            5 => imageops::flip_horizontal(&imageops::rotate90(stored)), // transpose
            6 => imageops::rotate90(stored),
            7 => imageops::flip_horizontal(&imageops::rotate270(stored)), // transverse
            8 => imageops::rotate270(stored),
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_exif_orientation_is_applied_before_anything_else() {
        // 4x2 blocks of 8 px, every block a different colour, so any wrong turn or flip shows.
        let stored = RgbImage::from_fn(32, 16, |x, y| {
            let b = (y / 8 * 4 + x / 8) as u8;
            image::Rgb([b * 30, 255 - b * 30, (b % 3) * 100])
        });
        for o in 1..=8u16 {
            let d = decode(
                &jpeg_with_orientation(&stored, o),
                ImageFormat::Jpeg,
                1 << 20,
            )
            .unwrap();
            assert_eq!(d.orientation as u16, o);
            let Working::Rgb(got) = d.image else {
                panic!("rgb expected")
            };
            let want = upright(&stored, o);
            assert_eq!(got.dimensions(), want.dimensions(), "orientation {o}");
            for (x, y) in [
                (4, 4),
                (12, 4),
                (4, 12),
                (12, 12),
                (4, 28),
                (12, 28),
                (28, 4),
            ] {
                if x >= want.width() || y >= want.height() {
                    continue;
                }
                let (g, w) = (got.get_pixel(x, y), want.get_pixel(x, y));
                for c in 0..3 {
                    assert!(
                        g[c].abs_diff(w[c]) <= 8,
                        "orientation {o} at ({x},{y}): {g:?} vs {w:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn header_above_the_pixel_cap_is_refused_before_decoding() {
        let img = RgbImage::new(300, 200);
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let err = decode(&png, ImageFormat::Png, 50_000).unwrap_err();
        assert!(err.contains("above the limit"), "{err}");
        assert!(decode(&png, ImageFormat::Png, 60_000).is_ok());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\xff\xd8\xff",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
            b"RIFF\0\0\0\0WEBP",
        ] {
            for f in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP] {
                assert!(decode(bytes, f, 1 << 20).is_err());
            }
        }
    }

    /// A 128x128 textured JPEG with a restart marker every MCU row (8 MCUs at 4:2:0).
    fn jpeg_with_restarts() -> Vec<u8> {
        let img = RgbImage::from_fn(128, 128, |x, y| {
            image::Rgb([(x * 2) as u8, (y * 2) as u8, ((x ^ y) * 3) as u8])
        });
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
        enc.set_restart_interval(8);
        enc.encode(img.as_raw(), 128, 128, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        out
    }

    /// Offset of the first byte of entropy-coded data (after the SOS segment).
    fn scan_start(jpeg: &[u8]) -> usize {
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        sos + 2 + u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]) as usize
    }

    #[test]
    fn an_intact_jpeg_with_restart_markers_decodes() {
        let jpeg = jpeg_with_restarts();
        assert!(check_jpeg_strict(&jpeg, 1 << 20).is_ok());
        assert!(decode(&jpeg, ImageFormat::Jpeg, 1 << 20).is_ok());
    }

    #[test]
    fn a_stray_restart_marker_in_the_scan_fails_the_jpeg() {
        // libjpeg resynchronises and shows the picture; a lenient decode shows grey.
        let mut jpeg = jpeg_with_restarts();
        let at = scan_start(&jpeg);
        jpeg.splice(at..at, [0xFF, 0xD3]);
        let err = decode(&jpeg, ImageFormat::Jpeg, 1 << 20).unwrap_err();
        assert!(err.contains("damaged JPEG data"), "{err}");
    }

    #[test]
    fn a_first_restart_interval_overwritten_with_stuffed_bytes_fails_the_jpeg() {
        let mut jpeg = jpeg_with_restarts();
        let at = scan_start(&jpeg);
        let rst = at
            + jpeg[at..]
                .windows(2)
                .position(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1]))
                .unwrap();
        for pair in jpeg[at..rst].chunks_exact_mut(2) {
            pair.copy_from_slice(&[0xFF, 0x00]);
        }
        let err = decode(&jpeg, ImageFormat::Jpeg, 1 << 20).unwrap_err();
        assert!(err.contains("damaged JPEG data"), "{err}");
    }

    #[test]
    fn a_truncated_jpeg_fails() {
        let jpeg = jpeg_with_restarts();
        let cut = &jpeg[..scan_start(&jpeg) + (jpeg.len() - scan_start(&jpeg)) / 2];
        assert!(decode(cut, ImageFormat::Jpeg, 1 << 20).is_err());
    }
}
