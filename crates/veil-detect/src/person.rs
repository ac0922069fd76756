//! The person detector a run uses, whichever family its model belongs to.

use image::RgbImage;
use veil_core::Detection;

use crate::nanodet::NanoDet;
use crate::yolox::{PersonPolicy, Yolox};
use crate::DetectError;

/// A loaded person detector (one inference session).
#[derive(Debug)]
pub enum PersonDetector {
    Yolox(Yolox),
    NanoDet(NanoDet),
}

impl PersonDetector {
    /// Persons in an upright RGB image following `policy`; boxes in image pixels.
    pub fn detect(
        &mut self,
        img: &RgbImage,
        policy: &PersonPolicy,
    ) -> Result<Vec<Detection>, DetectError> {
        match self {
            PersonDetector::Yolox(m) => m.detect(img, policy),
            PersonDetector::NanoDet(m) => m.detect(img, policy),
        }
    }
}
