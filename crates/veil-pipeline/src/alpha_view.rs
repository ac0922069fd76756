//! What the detectors see of an image with transparency.
//!
//! An RGBA file holds two pictures: the colour channels as stored (pixels under alpha 0 are still
//! in the file) and the picture a viewer shows, the colours composited over its background. A
//! face can be in either: hidden under alpha 0, or drawn by the alpha channel itself over flat
//! colour (then the colour channels show nothing). For an image with any pixel that is not
//! opaque, the detectors therefore see three panels side by side, [`GAP`] pixels apart: the
//! colour channels, the image over white, and the image over black; [`from_panels`] brings each
//! detection back to the image's coordinates (a box that spans two panels is kept in both,
//! clipped), and near-duplicates of one face found in several panels are merged. An opaque image
//! is seen as it is, at no extra cost.

use image::{Rgb, RgbImage, RgbaImage};
use veil_core::{BBox, Detection};

/// Grey pixels between panels, so that a box found near one panel's edge does not reach into the
/// next (wider than any detector's receptive field at a face's edge is not needed: boxes that do
/// cross are clipped to each panel and kept in both).
pub const GAP: u32 = 64;

/// Boxes of one face found in several panels with at least this overlap are merged (the higher
/// score kept); lower overlaps are all kept, erring towards obfuscating more.
pub const MERGE_IOU: f32 = 0.5;

/// The three-panel view of `img`, or `None` when every pixel is opaque.
pub fn panels(img: &RgbaImage) -> Option<RgbImage> {
    if img.pixels().all(|p| p[3] == 255) {
        return None;
    }
    let (w, h) = img.dimensions();
    let width = w.checked_mul(3)?.checked_add(2 * GAP)?;
    let mut out = RgbImage::from_pixel(width, h, Rgb([128, 128, 128]));
    for (x, y, p) in img.enumerate_pixels() {
        let [r, g, b, a] = p.0;
        let over = |bg: u8| {
            let mix = |c: u8| {
                ((u32::from(c) * u32::from(a) + u32::from(bg) * (255 - u32::from(a)) + 127) / 255)
                    as u8
            };
            Rgb([mix(r), mix(g), mix(b)])
        };
        out.put_pixel(x, y, Rgb([r, g, b]));
        out.put_pixel(x + w + GAP, y, over(255));
        out.put_pixel(x + 2 * (w + GAP), y, over(0));
    }
    Some(out)
}

/// Detections on the [`panels`] view of an image `w` pixels wide, in the image's coordinates.
pub fn from_panels(dets: Vec<Detection>, w: u32) -> Vec<Detection> {
    let w = w as f32;
    let mut out = Vec::with_capacity(dets.len());
    for d in dets {
        for k in 0..3 {
            let x0 = k as f32 * (w + GAP as f32);
            let (x1, x2) = (d.bbox.x1.max(x0), d.bbox.x2.min(x0 + w));
            if x2 > x1 {
                let mut local = d.clone();
                local.bbox = BBox::new(x1 - x0, d.bbox.y1, x2 - x0, d.bbox.y2);
                out.push(local);
            }
        }
    }
    veil_core::nms(out, MERGE_IOU)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;
    use veil_core::ObjectClass;

    fn det(x1: f32, x2: f32, score: f32) -> Detection {
        Detection {
            bbox: BBox::new(x1, 10.0, x2, 50.0),
            score,
            class: ObjectClass::Face,
            model: "m".into(),
        }
    }

    #[test]
    fn an_opaque_image_is_seen_as_it_is() {
        let img = RgbaImage::from_pixel(8, 8, Rgba([1, 2, 3, 255]));
        assert!(panels(&img).is_none());
    }

    #[test]
    fn a_picture_drawn_by_alpha_alone_shows_in_the_composites() {
        // Grey 0 everywhere; alpha draws a bright square over white, a dark one over black.
        let img = RgbaImage::from_fn(10, 10, |x, _| Rgba([0, 0, 0, if x < 5 { 0 } else { 255 }]));
        let v = panels(&img).unwrap();
        assert_eq!(v.dimensions(), (30 + 2 * GAP, 10));
        assert_eq!(
            v.get_pixel(2, 3),
            &Rgb([0, 0, 0]),
            "the colour channels as stored"
        );
        assert_eq!(
            v.get_pixel(10 + GAP + 2, 3),
            &Rgb([255, 255, 255]),
            "over white"
        );
        assert_eq!(v.get_pixel(10 + GAP + 7, 3), &Rgb([0, 0, 0]));
        assert_eq!(
            v.get_pixel(2 * (10 + GAP) + 2, 3),
            &Rgb([0, 0, 0]),
            "over black"
        );
        assert_eq!(v.get_pixel(10 + 1, 3), &Rgb([128, 128, 128]), "the gap");
    }

    #[test]
    fn detections_come_back_to_the_image_and_duplicates_merge() {
        let w = 100u32;
        let off = (w + GAP) as f32;
        // One face found in the colour panel and again over white; another only over black.
        let dets = vec![
            det(20.0, 40.0, 0.9),
            det(off + 20.0, off + 40.0, 0.8),
            det(2.0 * off + 60.0, 2.0 * off + 80.0, 0.7),
        ];
        let mut back = from_panels(dets, w);
        back.sort_by(|a, b| a.bbox.x1.total_cmp(&b.bbox.x1));
        assert_eq!(back.len(), 2, "{back:?}");
        assert_eq!(
            (back[0].bbox.x1, back[0].bbox.x2, back[0].score),
            (20.0, 40.0, 0.9)
        );
        assert_eq!((back[1].bbox.x1, back[1].bbox.x2), (60.0, 80.0));
        // A box across the gap is kept, clipped, in both panels it touches.
        let across = from_panels(vec![det(90.0, off + 10.0, 0.6)], w);
        let mut xs: Vec<_> = across.iter().map(|d| (d.bbox.x1, d.bbox.x2)).collect();
        xs.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(xs, vec![(0.0, 10.0), (90.0, 100.0)]);
    }
}
