//! Untrusted image bytes through veil's per-image path: container scan, lossless metadata strip,
//! decode (pixel cap, contained panics, orientation), redaction of a region, encode, and decoding
//! the output again. Nothing may panic outside the decoder's containment, hang or allocate without
//! bound; a stripped JPEG must decode to the same pixels as its source.
#![no_main]

use image::ImageFormat;
use libfuzzer_sys::fuzz_target;
use veil_core::{BBox, RedactParams};
use veil_pipeline::container::{self, ContainerFormat};
use veil_pipeline::decode::{self, Working};

const MAX_PIXELS: u64 = 4_000_000;

fuzz_target!(|data: &[u8]| {
    // Decoder panics are contained by `decode` (catch_unwind) and turned into errors, as in a
    // run; only panics that escape would reach libFuzzer, so keep the default hook quiet.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));

    let info = container::scan(data);
    let format = match info.format {
        ContainerFormat::Jpeg => ImageFormat::Jpeg,
        ContainerFormat::Png => ImageFormat::Png,
        ContainerFormat::Webp => ImageFormat::WebP,
        _ => return,
    };
    let stripped = veil_pipeline::strip::strip_jpeg(data);
    let Ok(decoded) = decode::decode(data, format, MAX_PIXELS) else {
        return;
    };
    if let Some(s) = stripped {
        if let Ok(d2) = decode::decode(&s, format, MAX_PIXELS) {
            if decoded.orientation == 1 && d2.orientation == 1 {
                assert!(
                    d2.image.to_rgb() == decoded.image.to_rgb(),
                    "stripped JPEG decodes to other pixels"
                );
            }
        }
    }
    let mut image = decoded.image;
    let (w, h) = image.dimensions();
    let region = [BBox::new(w as f32 * 0.25, h as f32 * 0.25, w as f32 * 0.75, h as f32 * 0.75)];
    let params = RedactParams::default();
    let _ = match &mut image {
        Working::Rgb(i) => veil_redact::redact_rgb8(i, &region, &params),
        Working::Rgba(i) => veil_redact::redact_rgba8(i, &region, &params),
    };
    if let Ok(out) = veil_pipeline::encode::encode(
        &image,
        decoded.grayscale,
        format,
        decoded.icc_profile.as_deref(),
        90,
    ) {
        let again = decode::decode(&out, format, MAX_PIXELS).expect("veil's own output decodes");
        assert_eq!(again.image.dimensions(), (w, h));
        assert!(container::scan(&out).complete);
    }
});
