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
}

impl Default for RedactParams {
    fn default() -> Self {
        Self {
            mode: Mode::Blur,
            shape: Shape::Ellipse,
            box_scale: 1.3,
            feather: 0.08,
            fill_rgb: [0, 0, 0],
        }
    }
}
