//! Measures the JPEG encoders veil could use, at 12 MP: `cargo run --release -p veil-pipeline
//! --example jpeg_encoders [PHOTO]`. The photo (default: a shared test photo, else a generated
//! image) is resized to 4000x3000 and encoded at quality 90 several times; medians are printed.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use image::{imageops::FilterType, ImageEncoder, RgbImage};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time<F: FnMut() -> usize>(runs: usize, mut f: F) -> (f64, usize) {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        size = f();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (median(times), size)
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/images/faces/t1.jpg".into());
    let img: RgbImage = match image::open(&path) {
        Ok(i) => image::imageops::resize(&i.to_rgb8(), 4000, 3000, FilterType::Triangle),
        Err(_) => RgbImage::from_fn(4000, 3000, |x, y| {
            image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
        }),
    };
    let (w, h) = img.dimensions();
    println!("input: {path} resized to {w}x{h}");
    let runs = 5;
    let (t, s) = time(runs, || {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        out.len()
    });
    println!(
        "image JpegEncoder (4:4:4)      q90: {t:7.1} ms  {:.2} MB",
        s as f64 / 1e6
    );
    for (name, f) in [
        ("4:2:0", jpeg_encoder::SamplingFactor::F_2_2),
        ("4:4:4", jpeg_encoder::SamplingFactor::F_1_1),
    ] {
        let (t, s) = time(runs, || {
            let mut out = Vec::new();
            let mut e = jpeg_encoder::Encoder::new(&mut out, 90);
            e.set_sampling_factor(f);
            e.encode(
                img.as_raw(),
                w as u16,
                h as u16,
                jpeg_encoder::ColorType::Rgb,
            )
            .unwrap();
            out.len()
        });
        println!(
            "jpeg-encoder simd ({name})      q90: {t:7.1} ms  {:.2} MB",
            s as f64 / 1e6
        );
    }
}
