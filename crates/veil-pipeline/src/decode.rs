//! Decoding untrusted image bytes: pixel cap checked from the header before any pixel buffer is
//! allocated, decoder panics contained, EXIF orientation applied so everything downstream works
//! on the upright image.

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
    pub icc_profile: Option<Vec<u8>>,
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
    let orientation = decoder.orientation().map_err(|e| e.to_string())?;
    let icc_profile = decoder.icc_profile().ok().flatten();
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
    })
}
