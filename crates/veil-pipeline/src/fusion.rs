//! Fusing detections of several models into the regions to obfuscate: per-class NMS, and the
//! head fallback that covers the head of every person whose face the face model missed.

use veil_core::{nms, BBox, Detection, ObjectClass};

/// Name recorded as the `model` of a head-fallback region.
pub const HEAD_FALLBACK: &str = "head-fallback";

/// The head region assumed for a person box: the full width, the top quarter of the height
/// (at most 1.2x the width, so a crouching person's box does not yield a huge "head").
pub fn head_of(person: &BBox) -> BBox {
    let h = (person.height() * 0.25).min(person.width() * 1.2);
    BBox::new(person.x1, person.y1, person.x2, person.y1 + h)
}

/// Merges detections of all models per class (NMS at `face_iou` for faces and `person_iou` for
/// persons) and, when `head_fallback` is on, adds a face-class region over the head of every
/// person with no detected face whose centre lies inside that person's box.
///
/// Every box suppressed here is area that may go unobfuscated, so the person IoU is the person
/// detector's own NMS IoU: people in a crowd overlap far more than faces do, and a second,
/// stricter NMS would drop whole people the detector found.
pub fn fuse(
    dets: Vec<Detection>,
    face_iou: f32,
    person_iou: f32,
    head_fallback: bool,
) -> Vec<Detection> {
    let (faces, persons): (Vec<Detection>, Vec<Detection>) =
        dets.into_iter().partition(|d| d.class == ObjectClass::Face);
    let mut merged = nms(faces, face_iou);
    merged.extend(nms(persons, person_iou));
    if head_fallback {
        let heads: Vec<Detection> = merged
            .iter()
            .filter(|p| p.class == ObjectClass::Person)
            .filter(|p| {
                !merged.iter().any(|f| {
                    let (cx, cy) = f.bbox.center();
                    f.class == ObjectClass::Face && p.bbox.contains(cx, cy)
                })
            })
            .map(|p| Detection {
                bbox: head_of(&p.bbox).rounded(),
                score: p.score,
                class: ObjectClass::Face,
                model: HEAD_FALLBACK.to_string(),
            })
            .collect();
        merged.extend(heads);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: ObjectClass, b: [f32; 4], score: f32, model: &str) -> Detection {
        Detection {
            bbox: BBox::new(b[0], b[1], b[2], b[3]),
            score,
            class,
            model: model.into(),
        }
    }

    #[test]
    fn person_without_a_face_gets_a_head_region_and_one_with_a_face_does_not() {
        let dets = vec![
            det(ObjectClass::Person, [0.0, 0.0, 40.0, 160.0], 0.9, "yolox"),
            det(
                ObjectClass::Person,
                [100.0, 0.0, 140.0, 160.0],
                0.8,
                "yolox",
            ),
            det(
                ObjectClass::Face,
                [110.0, 5.0, 130.0, 30.0],
                0.95,
                "centerface",
            ),
        ];
        let out = fuse(dets, 0.3, 0.45, true);
        let heads: Vec<_> = out.iter().filter(|d| d.model == HEAD_FALLBACK).collect();
        assert_eq!(heads.len(), 1);
        assert_eq!(heads[0].class, ObjectClass::Face);
        assert_eq!(heads[0].bbox, BBox::new(0.0, 0.0, 40.0, 40.0));
        assert_eq!(fuse(out.clone(), 0.3, 0.45, false).len(), out.len());
    }

    #[test]
    fn without_fallback_only_nms_happens_per_class() {
        let dets = vec![
            det(ObjectClass::Face, [0.0, 0.0, 10.0, 10.0], 0.9, "a"),
            det(ObjectClass::Face, [1.0, 0.0, 11.0, 10.0], 0.8, "b"),
            det(ObjectClass::Person, [0.0, 0.0, 10.0, 10.0], 0.7, "c"),
        ];
        let out = fuse(dets, 0.3, 0.45, false);
        assert_eq!(out.len(), 2);
        assert!(out.iter().any(|d| d.class == ObjectClass::Person));
    }

    /// Two people side by side whose boxes overlap at IoU 0.4: faces at that overlap merge,
    /// persons stay two regions.
    #[test]
    fn overlapping_people_below_the_person_iou_both_stay() {
        let a = [0.0, 0.0, 100.0, 200.0];
        let b = [43.0, 0.0, 143.0, 200.0];
        let dets = vec![
            det(ObjectClass::Person, a, 0.9, "p"),
            det(ObjectClass::Person, b, 0.8, "p"),
            det(ObjectClass::Face, a, 0.9, "f"),
            det(ObjectClass::Face, b, 0.8, "f"),
        ];
        let iou = BBox::new(a[0], a[1], a[2], a[3]).iou(&BBox::new(b[0], b[1], b[2], b[3]));
        assert!((0.39..0.41).contains(&iou), "{iou}");
        let out = fuse(dets, 0.3, 0.45, false);
        let count = |c| out.iter().filter(|d| d.class == c).count();
        assert_eq!(
            (count(ObjectClass::Person), count(ObjectClass::Face)),
            (2, 1)
        );
    }

    #[test]
    fn head_of_a_wide_short_box_is_capped() {
        let h = head_of(&BBox::new(0.0, 0.0, 10.0, 400.0));
        assert_eq!(h.height(), 12.0);
    }
}
