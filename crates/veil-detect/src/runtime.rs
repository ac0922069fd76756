//! ONNX Runtime: locating and verifying the shared library, initialising it once per process,
//! choosing the execution provider (`--device`), and creating sessions from verified model bytes.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use ort::ep::ExecutionProvider;
use ort::session::Session;

use crate::manifest::Manifest;
use crate::provision::{self, Notify};
use crate::DetectError;

/// Where inference runs, as asked on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// CUDA when the loaded runtime has it and it works, else CPU with a warning.
    Auto,
    Cpu,
    Cuda(i32),
}

impl FromStr for DeviceRequest {
    type Err = DetectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || DetectError::BadDevice {
            value: s.to_string(),
        };
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => {
                let n = s.strip_prefix("cuda:").ok_or_else(bad)?;
                n.parse::<i32>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .map(Self::Cuda)
                    .ok_or_else(bad)
            }
        }
    }
}

/// The device a session actually uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "id")]
pub enum Device {
    Cpu,
    Cuda(i32),
}

impl From<Device> for DeviceRequest {
    /// The request that gets exactly this device again.
    fn from(d: Device) -> Self {
        match d {
            Device::Cpu => DeviceRequest::Cpu,
            Device::Cuda(k) => DeviceRequest::Cuda(k),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The initialised runtime: which library, and whether its hash was checked.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    pub library: PathBuf,
    /// `cpu`/`cuda` for a library from veil's cache (verified), or `ORT_DYLIB_PATH` (user-provided, not pinned).
    pub origin: String,
    pub blake3: String,
    pub build_info: String,
    pub cuda_available: bool,
    /// Directory with CUDA/cuDNN libraries provisioned beside the GPU runtime, if any.
    pub cuda_libs: Option<PathBuf>,
    /// Why preloading from `cuda_libs` stopped short, per group (`CUDA`, `cuDNN`), if it did: the
    /// CUDA provider then finds what is missing on the loader's path or fails to register.
    pub cuda_preload_problems: Vec<String>,
    /// The CUDA execution provider's settings sessions on a GPU use.
    pub cuda_tuning: CudaTuning,
}

/// How cuDNN picks a convolution algorithm (ONNX Runtime's `cudnn_conv_algo_search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvSearch {
    /// Benchmark every algorithm once per new input shape (ONNX Runtime's default).
    Exhaustive,
    /// cuDNN's heuristics: no per-shape benchmark.
    Heuristic,
}

/// The CUDA execution provider's settings. Chosen from measurements on an H200 (README,
/// "Devices"); `VEIL_CUDA_CONV_SEARCH=exhaustive|heuristic` and `VEIL_CUDA_TF32=0|1` override
/// them for tuning on other GPUs. None of them changes which detections are recorded beyond
/// the tolerance the CUDA equality test allows, so they are execution settings, not parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CudaTuning {
    pub conv_search: ConvSearch,
    /// TensorFloat-32 in convolutions: faster on Ampere and later, but scores move by up to
    /// about 1e-3 against the CPU. Off by default: the GPU gives the CPU's answers.
    pub tf32: bool,
}

impl CudaTuning {
    /// The defaults, overridden by `VEIL_CUDA_CONV_SEARCH` and `VEIL_CUDA_TF32`.
    pub fn from_env() -> Result<Self, DetectError> {
        let mut t = CudaTuning {
            conv_search: ConvSearch::Heuristic,
            tf32: false,
        };
        if let Some(v) = std::env::var_os("VEIL_CUDA_CONV_SEARCH").filter(|v| !v.is_empty()) {
            t.conv_search = match v.to_string_lossy().as_ref() {
                "exhaustive" => ConvSearch::Exhaustive,
                "heuristic" => ConvSearch::Heuristic,
                other => {
                    return Err(DetectError::Runtime {
                        reason: format!(
                            "VEIL_CUDA_CONV_SEARCH is `{other}`; set it to exhaustive or heuristic, or unset it"
                        ),
                    })
                }
            };
        }
        if let Some(v) = std::env::var_os("VEIL_CUDA_TF32").filter(|v| !v.is_empty()) {
            t.tf32 = match v.to_string_lossy().as_ref() {
                "1" => true,
                "0" => false,
                other => {
                    return Err(DetectError::Runtime {
                        reason: format!(
                            "VEIL_CUDA_TF32 is `{other}`; set it to 0 or 1, or unset it"
                        ),
                    })
                }
            };
        }
        Ok(t)
    }

    fn provider(&self, device_id: i32) -> ort::ep::CUDA {
        ort::ep::CUDA::default()
            .with_device_id(device_id)
            .with_conv_algorithm_search(match self.conv_search {
                ConvSearch::Exhaustive => ort::ep::cuda::ConvAlgorithmSearch::Exhaustive,
                ConvSearch::Heuristic => ort::ep::cuda::ConvAlgorithmSearch::Heuristic,
            })
            .with_tf32(self.tf32)
    }
}

impl std::fmt::Display for CudaTuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let search = match self.conv_search {
            ConvSearch::Exhaustive => "exhaustive",
            ConvSearch::Heuristic => "heuristic",
        };
        write!(
            f,
            "cuDNN conv search {search}, TF32 {}",
            if self.tf32 { "on" } else { "off" }
        )
    }
}

static RUNTIME: OnceLock<Result<(ort::environment::Environment, RuntimeInfo), String>> =
    OnceLock::new();

/// Picks the runtime library: `ORT_DYLIB_PATH` if set; else the provisioned CUDA runtime when the
/// request may use CUDA and it is in the cache; else the CPU runtime (fetched if missing).
fn choose_library(
    manifest: &Manifest,
    request: DeviceRequest,
    notify: Notify,
) -> Result<(PathBuf, String, Option<PathBuf>), DetectError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Ok((PathBuf::from(p), "ORT_DYLIB_PATH".into(), None));
    }
    if request != DeviceRequest::Cpu {
        let dir = provision::runtime_dir(manifest, "cuda")?;
        let lib = dir.join(&manifest.runtime("cuda")?.library);
        if !lib.exists() && matches!(request, DeviceRequest::Cuda(_)) {
            // Never start a 1.6 GB download implicitly: fetching the GPU runtime is a deliberate step.
            return Err(DetectError::Runtime {
                reason: format!(
                    "--device cuda needs the CUDA build of ONNX Runtime, which is not provisioned ({} missing); run `veil models fetch --gpu` first",
                    lib.display()
                ),
            });
        }
        // `auto` uses the CUDA runtime only when it was provisioned to the end, and never
        // finishes an interrupted GPU fetch by itself: it runs on the CPU and says so.
        let usable = match request {
            DeviceRequest::Auto => provision::cuda_runtime_complete(manifest, &dir)?,
            _ => lib.exists(),
        };
        if lib.exists() && !usable {
            notify(
                "the CUDA runtime in the cache is incomplete (an interrupted `veil models fetch \
                 --gpu`?): running on the CPU; run `veil models fetch --gpu` to finish it",
            );
        }
        if usable {
            let lib = provision::ensure_runtime(manifest, "cuda", notify)?;
            let libs = provision::cuda_lib_dir(&dir);
            return Ok((lib, "cuda".into(), libs.exists().then_some(libs)));
        }
    }
    let lib = provision::ensure_runtime(manifest, "cpu", notify)?;
    Ok((lib, "cpu".into(), None))
}

/// Initialises ONNX Runtime once for this process (later calls return the first result).
pub fn init(
    manifest: &Manifest,
    request: DeviceRequest,
    notify: Notify,
) -> Result<(&'static ort::environment::Environment, &'static RuntimeInfo), DetectError> {
    let r =
        RUNTIME.get_or_init(|| init_inner(manifest, request, notify).map_err(|e| e.to_string()));
    match r {
        Ok((env, info)) => Ok((env, info)),
        Err(reason) => Err(DetectError::Runtime {
            reason: reason.clone(),
        }),
    }
}

fn init_inner(
    manifest: &Manifest,
    request: DeviceRequest,
    notify: Notify,
) -> Result<(ort::environment::Environment, RuntimeInfo), DetectError> {
    let (library, origin, cuda_libs) = choose_library(manifest, request, notify)?;
    if !library.exists() {
        return Err(DetectError::Runtime {
            reason: format!("ONNX Runtime library {} does not exist", library.display()),
        });
    }
    // Verified again right before loading: the file in the cache may have changed since fetching.
    let blake3 = provision::blake3_file(&library)?;
    if origin != "ORT_DYLIB_PATH" {
        let rt = manifest.runtime(&origin)?;
        let pin = rt
            .files
            .iter()
            .find(|f| f.file_name() == rt.library)
            .map(|f| f.blake3.clone())
            .unwrap_or_default();
        if pin != blake3 {
            return Err(DetectError::HashMismatch {
                path: library,
                expected: pin,
                actual: blake3,
            });
        }
    }
    let env = ort::init_from(&library)
        .map_err(|e| DetectError::Runtime {
            reason: format!("cannot load ONNX Runtime from {}: {e}", library.display()),
        })?
        .with_name("veil")
        .with_telemetry(false)
        .build()
        .map_err(|e| DetectError::Runtime {
            reason: e.to_string(),
        })?;
    let cuda_tuning = CudaTuning::from_env()?;
    let mut cuda_preload_problems = Vec::new();
    if let Some(dir) = &cuda_libs {
        // After the runtime is loaded (ort would otherwise try an implicit load and panic), before
        // any session. Each group on its own: ort stops at the first library it cannot load, and
        // a missing CUDA library must not keep cuDNN from loading. A missing library is reported
        // by `veil doctor` and when the provider is registered.
        if let Err(e) = ort::ep::cuda::preload_dylibs(Some(dir), None) {
            cuda_preload_problems.push(format!("CUDA: {e}"));
        }
        if let Err(e) = ort::ep::cuda::preload_dylibs(None, Some(dir)) {
            cuda_preload_problems.push(format!("cuDNN: {e}"));
        }
    }
    let cuda_available = <ort::ep::CUDA as ExecutionProvider>::is_available().unwrap_or(false);
    let info = RuntimeInfo {
        library,
        origin,
        blake3,
        build_info: ort::info().to_string(),
        cuda_available,
        cuda_libs,
        cuda_preload_problems,
        cuda_tuning,
    };
    Ok((env, info))
}

/// Network inputs larger than this (in pixels) run with arena shrinkage: the memory a pass of a
/// large photo needed goes back to the system when it ends, so a long run of large photos does
/// not keep every worker's high-water mark (measured in benches/README, "memory at 12 MP").
pub const SHRINK_ABOVE_PIXELS: usize = 1_500_000;

/// Network inputs larger than this (in pixels) run on the shared session with one thread per
/// worker when there is one: a native 12 MP pass (`--scales single`) then uses every core while
/// the other workers decode and encode. The default 1920 px coarse pass (2.8 MP) stays below it:
/// on the shared session it cost ~140 MB more at 12 MP with two workers.
pub const SHARED_ABOVE_PIXELS: usize = 4_000_000;

/// Serialises large passes across all sessions of the process: two workers running the coarse
/// pass of a 12 MP photo at once is what set the peak memory. Tiles and small photos never wait.
/// A poisoned lock (a panic in another worker's pass) is still a valid gate.
pub fn large_pass_gate() -> std::sync::MutexGuard<'static, ()> {
    static GATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run options that shrink the CPU arena (and the GPU one on CUDA) once the run is done.
pub fn shrink_options() -> ort::Result<ort::session::RunOptions> {
    let mut o = ort::session::RunOptions::new()?;
    o.set("memory.enable_memory_arena_shrinkage", "cpu:0")?;
    Ok(o)
}

/// Resolves a device request against the runtime: `Auto` tries CUDA device 0 when the provider
/// exists, and falls back to CPU with a notice when it does not work.
pub fn create_session(
    env: &ort::environment::Environment,
    info: &RuntimeInfo,
    model_bytes: &[u8],
    request: DeviceRequest,
    intra_threads: usize,
    notify: Notify,
) -> Result<(Session, Device), DetectError> {
    let sess_err = |e: ort::Error| DetectError::Session {
        reason: e.to_string(),
    };
    let base = || -> Result<ort::session::builder::SessionBuilder, DetectError> {
        Session::builder(env)
            .map_err(sess_err)?
            .with_intra_threads(intra_threads)
            .map_err(|e| sess_err(e.into()))?
            .with_inter_threads(1)
            .map_err(|e| sess_err(e.into()))?
            // Input shapes change from image to image, so a memory pattern planned for one shape
            // is rarely reused, and each plan holds its own blocks. Off: 4 photos of 12 MP with
            // two workers peaked at 2.30 GB with it and 1.47 GB without (benches/README). The
            // arena stays on: without it every pass pays page faults (sys time 2 s -> 20 s).
            .with_memory_pattern(false)
            .map_err(|e| sess_err(e.into()))
    };
    let cuda_id = match request {
        DeviceRequest::Cpu => None,
        DeviceRequest::Cuda(n) => Some(n),
        DeviceRequest::Auto => info.cuda_available.then_some(0),
    };
    if let Some(id) = cuda_id {
        let attempt = (|| -> Result<Session, String> {
            if !info.cuda_available {
                return Err(format!(
                    "the loaded ONNX Runtime ({}) has no CUDA execution provider; run `veil models fetch --gpu`",
                    info.library.display()
                ));
            }
            let ep = info.cuda_tuning.provider(id).build().error_on_failure();
            let mut b = base()
                .map_err(|e| e.to_string())?
                .with_execution_providers([ep])
                .map_err(|e| e.to_string())?;
            b.commit_from_memory(model_bytes)
                .map_err(|e| e.to_string().trim().to_string())
        })()
        .map_err(|why| {
            // What preloading could not find is usually why the provider failed.
            let mut why = why;
            if let Some(dir) = &info.cuda_libs {
                for p in &info.cuda_preload_problems {
                    why.push_str(&format!("; preloading from {}: {p}", dir.display()));
                }
            }
            why
        });
        match attempt {
            Ok(s) => return Ok((s, Device::Cuda(id))),
            Err(reason) if request == DeviceRequest::Auto => {
                notify(&format!("CUDA not usable ({reason}); using CPU"));
            }
            Err(reason) => return Err(DetectError::CudaUnavailable { device: id, reason }),
        }
    }
    let s = base()?.commit_from_memory(model_bytes).map_err(sess_err)?;
    Ok((s, Device::Cpu))
}

/// Reads a model file and checks its blake3 against the pin, returning the verified bytes (the
/// same bytes are then handed to ONNX Runtime, so nothing can change between check and load).
pub fn read_verified_model(path: &Path, expected: &str) -> Result<Vec<u8>, DetectError> {
    let bytes = std::fs::read(path).map_err(|e| DetectError::io(path, e))?;
    let actual = provision::blake3_hex(&bytes);
    if actual != expected {
        return Err(DetectError::HashMismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_requests_parse() {
        assert_eq!(
            "auto".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Auto
        );
        assert_eq!("cpu".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cpu);
        assert_eq!(
            "cuda".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Cuda(0)
        );
        assert_eq!(
            "cuda:3".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Cuda(3)
        );
        for bad in ["gpu", "cuda:", "cuda:-1", "cuda:x", ""] {
            assert!(bad.parse::<DeviceRequest>().is_err(), "{bad}");
        }
    }
}
