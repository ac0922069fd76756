//! Per-class obfuscation policy: how faces and persons are obfuscated and at which detector
//! threshold, from built-in defaults, a per-dataset TOML policy file (recorded by blake3 in every
//! provenance record) and command-line overrides, in that order.
//!
//! ```toml
//! head_fallback = true      # cover the head of persons whose face was not found
//! person_confirm_below = 0.5 # a person box scoring less is kept only if a closer look finds it
//! [face]
//! mode = "blur"             # blur | pixelate | fill
//! shape = "ellipse"         # ellipse | box
//! box_scale = 1.3
//! feather = 0.08
//! threshold = 0.4
//! [person]
//! mode = "pixelate"
//! shape = "box"
//! box_scale = 1.1          # 5% more on every side: NanoDet's boxes are tight
//! threshold = 0.3
//! fill_rgb = [0, 0, 0]
//! strength_divisor = 4      # blur radius / block side = long side / this (faces: short side / 6)
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use veil_core::{Mode, ObjectClass, RedactParams, Shape, StrengthBasis};

/// Persons: blur radius and pixelation block side are the box's long side (a standing person's
/// height) over this; chosen so that the core of every person on the shared photos keeps at most
/// [`PERSON_MAX_HF_RATIO`] of its detail in every mode (README, "Persons").
pub const PERSON_STRENGTH_DIVISOR: f64 = 4.0;
/// Persons: the most high-frequency energy an obfuscated core may keep (faces: 0.5).
pub const PERSON_MAX_HF_RATIO: f64 = 0.35;
/// Persons: each box grows by this factor about its centre before it is obfuscated. NanoDet's
/// boxes hug the person; with 1.1, 75 of the 76 non-hard labelled persons of the shared photos
/// are at least 90% covered (74 with 1.0; README, "Persons").
pub const PERSON_BOX_SCALE: f64 = 1.1;

/// Persons: boxes scoring below this get a closer look before they count. On the shared photos
/// it removed 3 of NanoDet-g's 4 boxes on the 10 negative photos and left every labelled person
/// as covered as before (README, "Persons").
pub const PERSON_CONFIRM_BELOW: f64 = 0.5;

use crate::PipelineError;

/// Obfuscation and detection threshold for one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassPolicy {
    pub redact: RedactParams,
    pub threshold: f64,
}

/// The whole policy of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub face: ClassPolicy,
    pub person: ClassPolicy,
    /// Cover the head (top quarter) of every person box that contains no detected face.
    pub head_fallback: bool,
    /// A person box scoring below this is kept only if the detector finds it again in a crop
    /// around it ([`veil_detect::yolox::confirm_crop`]); 0 keeps them all. Records made before
    /// this setting existed ran without it, hence the serde default of 0.
    #[serde(default)]
    pub person_confirm_below: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            face: ClassPolicy {
                redact: RedactParams::default(),
                threshold: 0.4,
            },
            person: ClassPolicy {
                redact: RedactParams {
                    mode: Mode::Pixelate,
                    shape: Shape::Box,
                    box_scale: PERSON_BOX_SCALE,
                    feather: 0.02,
                    fill_rgb: [0, 0, 0],
                    strength_basis: StrengthBasis::Long,
                    strength_divisor: PERSON_STRENGTH_DIVISOR,
                    max_hf_ratio: PERSON_MAX_HF_RATIO,
                },
                threshold: 0.3,
            },
            head_fallback: true,
            person_confirm_below: PERSON_CONFIRM_BELOW,
        }
    }
}

impl Policy {
    pub fn class(&self, class: ObjectClass) -> &ClassPolicy {
        match class {
            ObjectClass::Face => &self.face,
            ObjectClass::Person => &self.person,
        }
    }

    /// Applies a policy file's settings; returns the blake3 of the file's bytes.
    pub fn apply_file(&mut self, path: &Path) -> Result<String, PipelineError> {
        let bytes = std::fs::read(path).map_err(|e| PipelineError::io(path, e))?;
        let text = String::from_utf8_lossy(&bytes);
        let file: PolicyFile = toml::from_str(&text)
            .map_err(|e| PipelineError::Usage(format!("policy file {}: {e}", path.display())))?;
        if let Some(h) = file.head_fallback {
            self.head_fallback = h;
        }
        if let Some(c) = file.person_confirm_below {
            self.person_confirm_below = c;
        }
        if let Some(o) = file.face {
            o.apply(&mut self.face);
        }
        if let Some(o) = file.person {
            o.apply(&mut self.person);
        }
        self.validate()?;
        Ok(blake3::hash(&bytes).to_hex().to_string())
    }

    /// Refuses values that would make obfuscation ineffective or meaningless.
    pub fn validate(&self) -> Result<(), PipelineError> {
        let c = self.person_confirm_below;
        if !(c.is_finite() && (0.0..=1.0).contains(&c)) {
            return Err(PipelineError::Usage(
                "person_confirm_below must be between 0 (off) and 1".into(),
            ));
        }
        for (name, c) in [("face", &self.face), ("person", &self.person)] {
            let r = &c.redact;
            if !(r.box_scale.is_finite() && (0.5..=4.0).contains(&r.box_scale)) {
                return Err(PipelineError::Usage(format!(
                    "{name} box_scale must be between 0.5 and 4"
                )));
            }
            if !(r.feather.is_finite() && (0.0..=1.0).contains(&r.feather)) {
                return Err(PipelineError::Usage(format!(
                    "{name} feather must be between 0 and 1"
                )));
            }
            if !(r.strength_divisor.is_finite() && (1.0..=12.0).contains(&r.strength_divisor)) {
                return Err(PipelineError::Usage(format!(
                    "{name} strength_divisor must be between 1 and 12"
                )));
            }
            if !(c.threshold > 0.0 && c.threshold < 1.0) {
                return Err(PipelineError::Usage(format!(
                    "{name} threshold must be between 0 and 1"
                )));
            }
        }
        Ok(())
    }
}

/// Settings that a policy file or the command line may override for one class.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassOverrides {
    pub mode: Option<Mode>,
    pub shape: Option<Shape>,
    pub box_scale: Option<f64>,
    pub feather: Option<f64>,
    pub threshold: Option<f64>,
    pub fill_rgb: Option<[u8; 3]>,
    /// Blur radius / pixelation block side = the class's side (short for faces, long for
    /// persons) over this: lower is stronger.
    pub strength_divisor: Option<f64>,
}

impl ClassOverrides {
    pub fn apply(&self, c: &mut ClassPolicy) {
        let r = &mut c.redact;
        r.mode = self.mode.unwrap_or(r.mode);
        r.shape = self.shape.unwrap_or(r.shape);
        r.box_scale = self.box_scale.unwrap_or(r.box_scale);
        r.feather = self.feather.unwrap_or(r.feather);
        r.fill_rgb = self.fill_rgb.unwrap_or(r.fill_rgb);
        r.strength_divisor = self.strength_divisor.unwrap_or(r.strength_divisor);
        c.threshold = self.threshold.unwrap_or(c.threshold);
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    head_fallback: Option<bool>,
    person_confirm_below: Option<f64>,
    face: Option<ClassOverrides>,
    person: Option<ClassOverrides>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_is_hashed() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("policy.toml");
        std::fs::write(
            &p,
            "head_fallback = false\n[person]\nmode = \"fill\"\nthreshold = 0.25\n",
        )
        .unwrap();
        let mut policy = Policy::default();
        let h = policy.apply_file(&p).unwrap();
        assert_eq!(h.len(), 64);
        assert!(!policy.head_fallback);
        assert_eq!(policy.person.redact.mode, Mode::Fill);
        assert_eq!(policy.person.threshold, 0.25);
        assert_eq!(policy.face, Policy::default().face);
    }

    #[test]
    fn person_confirmation_is_on_by_default_off_in_older_records_and_bounded() {
        assert_eq!(Policy::default().person_confirm_below, PERSON_CONFIRM_BELOW);
        // A record written before the setting existed ran without it.
        let mut old = serde_json::to_value(Policy::default()).unwrap();
        old.as_object_mut().unwrap().remove("person_confirm_below");
        let old: Policy = serde_json::from_value(old).unwrap();
        assert_eq!(old.person_confirm_below, 0.0);
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("policy.toml");
        std::fs::write(&p, "person_confirm_below = 0\n").unwrap();
        let mut policy = Policy::default();
        policy.apply_file(&p).unwrap();
        assert_eq!(policy.person_confirm_below, 0.0);
        std::fs::write(&p, "person_confirm_below = 1.5\n").unwrap();
        assert!(Policy::default().apply_file(&p).is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("policy.toml");
        std::fs::write(&p, "[face]\nblurriness = 3\n").unwrap();
        assert!(Policy::default().apply_file(&p).is_err());
        std::fs::write(&p, "[face]\nbox_scale = 0.1\n").unwrap();
        assert!(Policy::default().apply_file(&p).is_err());
    }
}
