use serde::{Deserialize, Serialize};

/// An axis-aligned box in pixel coordinates of the upright (EXIF-oriented) image.
/// `(x1, y1)` is the top-left corner, `(x2, y2)` the bottom-right edge (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BBox {
    pub fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self { x1, y1, x2, y2 }
    }

    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    pub fn center(&self) -> (f32, f32) {
        ((self.x1 + self.x2) * 0.5, (self.y1 + self.y2) * 0.5)
    }

    /// Intersection over union; 0 for disjoint or empty boxes.
    pub fn iou(&self, other: &BBox) -> f32 {
        let ix = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let iy = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// The box grown (or shrunk) by `factor` about its centre.
    pub fn scaled(&self, factor: f32) -> BBox {
        let (cx, cy) = self.center();
        let hw = self.width() * 0.5 * factor;
        let hh = self.height() * 0.5 * factor;
        BBox::new(cx - hw, cy - hh, cx + hw, cy + hh)
    }

    /// The box with every coordinate multiplied by `(sx, sy)` (maps between image scales).
    pub fn rescaled(&self, sx: f32, sy: f32) -> BBox {
        BBox::new(self.x1 * sx, self.y1 * sy, self.x2 * sx, self.y2 * sy)
    }

    /// The box moved by `(dx, dy)`.
    pub fn translated(&self, dx: f32, dy: f32) -> BBox {
        BBox::new(self.x1 + dx, self.y1 + dy, self.x2 + dx, self.y2 + dy)
    }

    /// The box clipped to `[0, w] x [0, h]`.
    pub fn clipped(&self, w: f32, h: f32) -> BBox {
        BBox::new(
            self.x1.clamp(0.0, w),
            self.y1.clamp(0.0, h),
            self.x2.clamp(0.0, w),
            self.y2.clamp(0.0, h),
        )
    }

    /// Whether `(x, y)` lies inside the box.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x1 && x < self.x2 && y >= self.y1 && y < self.y2
    }

    /// Rounded to whole pixels with two decimals dropped, for stable records.
    pub fn rounded(&self) -> BBox {
        let r = |v: f32| (v * 100.0).round() / 100.0;
        BBox::new(r(self.x1), r(self.y1), r(self.x2), r(self.y2))
    }
}

/// What a detector looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectClass {
    Face,
    Person,
}

impl std::fmt::Display for ObjectClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectClass::Face => "face",
            ObjectClass::Person => "person",
        })
    }
}

/// One region found by a detector, in upright image pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    #[serde(rename = "box")]
    pub bbox: BBox,
    pub score: f32,
    pub class: ObjectClass,
    /// Name of the model (as in the model manifest) that produced it.
    pub model: String,
}

/// The order [`nms`] keeps detections in: descending score, ties broken by position and class,
/// so results never depend on input order.
pub fn by_score(a: &Detection, b: &Detection) -> std::cmp::Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.bbox.y1.total_cmp(&b.bbox.y1))
        .then(a.bbox.x1.total_cmp(&b.bbox.x1))
        .then(a.bbox.x2.total_cmp(&b.bbox.x2))
        .then(a.bbox.y2.total_cmp(&b.bbox.y2))
        .then(a.class.cmp(&b.class))
}

/// Greedy suppression in the order `priority`: a detection is dropped when one already kept
/// (same class) overlaps it with IoU above `iou_threshold`. The result is sorted [`by_score`].
pub fn suppress_by(
    mut dets: Vec<Detection>,
    iou_threshold: f32,
    priority: impl Fn(&Detection, &Detection) -> std::cmp::Ordering,
) -> Vec<Detection> {
    dets.sort_by(&priority);
    let mut kept: Vec<Detection> = Vec::with_capacity(dets.len());
    for d in dets {
        let suppressed = kept
            .iter()
            .any(|k| k.class == d.class && k.bbox.iou(&d.bbox) > iou_threshold);
        if !suppressed {
            kept.push(d);
        }
    }
    kept.sort_by(by_score);
    kept
}

/// Greedy non-maximum suppression: keeps the highest-scoring detection of every group whose
/// pairwise IoU exceeds `iou_threshold`, per class. Output is sorted by descending score, ties
/// broken by position so the result does not depend on input order.
pub fn nms(dets: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    suppress_by(dets, iou_threshold, by_score)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> Detection {
        Detection {
            bbox: BBox::new(x1, y1, x2, y2),
            score,
            class: ObjectClass::Face,
            model: "m".into(),
        }
    }

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = BBox::new(0.0, 0.0, 10.0, 10.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&BBox::new(20.0, 20.0, 30.0, 30.0)), 0.0);
        let b = BBox::new(5.0, 0.0, 15.0, 10.0);
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
    }

    #[test]
    fn nms_keeps_best_of_overlapping_and_all_disjoint() {
        let out = nms(
            vec![
                det(0.0, 0.0, 10.0, 10.0, 0.6),
                det(1.0, 1.0, 11.0, 11.0, 0.9),
                det(50.0, 50.0, 60.0, 60.0, 0.4),
            ],
            0.3,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        assert_eq!(out[1].score, 0.4);
    }

    #[test]
    fn nms_does_not_suppress_across_classes() {
        let mut p = det(0.0, 0.0, 10.0, 10.0, 0.5);
        p.class = ObjectClass::Person;
        let out = nms(vec![det(0.0, 0.0, 10.0, 10.0, 0.9), p], 0.3);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn nms_result_is_independent_of_input_order() {
        let a = vec![
            det(0.0, 0.0, 10.0, 10.0, 0.5),
            det(2.0, 0.0, 12.0, 10.0, 0.5),
            det(30.0, 0.0, 40.0, 10.0, 0.7),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(nms(a, 0.3), nms(b, 0.3));
    }

    #[test]
    fn scaled_grows_about_centre() {
        let b = BBox::new(10.0, 10.0, 20.0, 30.0).scaled(2.0);
        assert_eq!(b, BBox::new(5.0, 0.0, 25.0, 40.0));
    }
}
