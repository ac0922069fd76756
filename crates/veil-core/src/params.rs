use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// How a region is made unrecognisable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Strong blur whose radius grows with the region size.
    Blur,
    /// Coarse blocks (at least 8 across the short side... see veil-redact for the exact rule).
    Pixelate,
    /// Solid colour.
    Fill,
}

/// Outline of the obfuscated region inside the (scaled) detection box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Ellipse,
    Box,
}

/// Error for a value that names no variant.
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} `{value}` (expected one of: {expected})")]
pub struct ParseEnumError {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for Mode {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "blur" => Ok(Mode::Blur),
            "pixelate" => Ok(Mode::Pixelate),
            "fill" => Ok(Mode::Fill),
            _ => Err(ParseEnumError {
                kind: "mode",
                value: s.into(),
                expected: "blur, pixelate, fill",
            }),
        }
    }
}

impl FromStr for Shape {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ellipse" => Ok(Shape::Ellipse),
            "box" => Ok(Shape::Box),
            _ => Err(ParseEnumError {
                kind: "shape",
                value: s.into(),
                expected: "ellipse, box",
            }),
        }
    }
}

/// Which side of the (scaled) region sets the strength of blur and pixelation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrengthBasis {
    /// The short side: what identifies a face (a face box is about square).
    #[default]
    Short,
    /// The long side: what identifies a body (a standing person's height, not the width).
    Long,
}

fn default_divisor() -> f64 {
    6.0
}

fn default_max_hf_ratio() -> f64 {
    0.5
}

/// Parameters of the obfuscation step. Recorded verbatim in every provenance record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RedactParams {
    pub mode: Mode,
    pub shape: Shape,
    /// Factor by which a detection box is grown about its centre before obfuscation.
    pub box_scale: f64,
    /// Width of the soft edge as a fraction of the region's short side, added outside the shape
    /// so the fully covered core is never smaller than the shape itself.
    pub feather: f64,
    /// Colour used by `Mode::Fill` (RGB).
    pub fill_rgb: [u8; 3],
    /// Blur radius and pixelation block side are `max(4, ceil(side / strength_divisor))`, where
    /// `side` is the scaled box's short or long side (`strength_basis`). Records written before
    /// these fields existed used the short side over 6.
    #[serde(default)]
    pub strength_basis: StrengthBasis,
    #[serde(default = "default_divisor")]
    pub strength_divisor: f64,
    /// Validation: a blurred or pixelated core passes when its high-frequency energy is at most
    /// this fraction of the source's (see veil-redact's `verify_obfuscated`).
    #[serde(default = "default_max_hf_ratio")]
    pub max_hf_ratio: f64,
}

impl Default for RedactParams {
    fn default() -> Self {
        Self {
            mode: Mode::Blur,
            shape: Shape::Ellipse,
            box_scale: 1.3,
            feather: 0.08,
            fill_rgb: [0, 0, 0],
            strength_basis: StrengthBasis::Short,
            strength_divisor: default_divisor(),
            max_hf_ratio: default_max_hf_ratio(),
        }
    }
}
