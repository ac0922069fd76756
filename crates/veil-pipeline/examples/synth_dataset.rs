//! Writes N photos cut from the photos of a folder (crops at varying offsets, resized to a given
//! width, JPEG q90) into `OUT/NNN/img_NNNNNN.jpg` (1000 per folder), for throughput and memory
//! benchmarks. Run:
//! `cargo run --release -p veil-pipeline --example synth_dataset -- SRC OUT N [WIDTH]`.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(args.len() >= 4, "usage: synth_dataset SRC OUT N [WIDTH]");
    let (src, out) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let n: usize = args[3].parse().expect("N");
    let width: u32 = args.get(4).map_or(320, |w| w.parse().expect("WIDTH"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
        .expect("SRC")
        .map(|e| e.expect("entry").path())
        .filter(|p| image::ImageFormat::from_path(p).is_ok())
        .collect();
    files.sort();
    let photos: Vec<image::RgbImage> = files
        .iter()
        .map(|p| image::open(p).expect("decodable photo").to_rgb8())
        .collect();
    assert!(!photos.is_empty(), "no photos in SRC");
    for i in 0..n {
        let img = &photos[i % photos.len()];
        let (w, h) = (img.width() * 3 / 4, img.height() * 3 / 4);
        let x = (i as u32 * 13) % (img.width() - w).max(1);
        let y = (i as u32 * 7) % (img.height() - h).max(1);
        let crop = image::imageops::crop_imm(img, x, y, w, h).to_image();
        let height = (u64::from(width) * u64::from(h) / u64::from(w)) as u32;
        let small =
            image::imageops::resize(&crop, width, height, image::imageops::FilterType::Triangle);
        let dir = out.join(format!("{:03}", i / 1000));
        std::fs::create_dir_all(&dir).expect("OUT");
        let mut f = std::fs::File::create(dir.join(format!("img_{i:06}.jpg"))).expect("create");
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut f, 90)
            .encode_image(&small)
            .expect("encode");
    }
    println!("{n} images of width {width} in {}", out.display());
}
