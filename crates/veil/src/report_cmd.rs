//! `veil report` (the review page of an output tree), `veil redact --report`, and
//! `veil review import` (reviewer decisions into the provenance). All logic is in veil-report.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use veil_report::{ReportOptions, ReportSummary};

use crate::{exit, progress};

#[derive(Args)]
pub struct ReportArgs {
    /// An output tree written by `veil redact` (with its provenance.jsonl).
    output: PathBuf,
    /// Write the page here instead of OUTPUT/report (links to the outputs stay relative).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A detection scoring below its class's threshold plus this is listed as near the threshold.
    #[arg(long, default_value_t = veil_report::DEFAULT_NEAR_MARGIN)]
    margin: f64,
    /// Cards per page.
    #[arg(long, default_value_t = veil_report::DEFAULT_PAGE_SIZE)]
    page_size: usize,
    /// Make every thumbnail again instead of keeping those newer than their output.
    #[arg(long)]
    fresh: bool,
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Subcommand)]
pub enum ReviewCommand {
    /// Record the decisions of a review file exported by the review page in OUTPUT's provenance
    /// records. A decision applies only to the record with its path whose output still has the
    /// blake3 it was made on; stale and unknown decisions are listed and not applied (exit 1).
    Import {
        /// The output tree whose records get the decisions.
        output: PathBuf,
        /// The JSON file exported by the page ("export decisions").
        file: PathBuf,
    },
}

/// `veil report OUTPUT`: exit 0 when the page was written, 1 when some outputs could not be shown.
pub fn report(a: ReportArgs) -> Result<i32> {
    if !(a.margin >= 0.0 && a.margin < 1.0) {
        bail!("--margin must be at least 0 and below 1");
    }
    if a.page_size == 0 {
        bail!("--page-size must be at least 1");
    }
    let opts = ReportOptions {
        out_dir: a.out,
        near_margin: a.margin,
        page_size: a.page_size,
        reuse_thumbs: !a.fresh,
        containers: Some(containers()),
        ..ReportOptions::default()
    };
    let summary = write(&a.output, &opts, a.quiet)?;
    Ok(print_summary(&summary))
}

/// Access to the images inside shards, zips and Parquet tables, for their thumbnails.
fn containers() -> std::sync::Arc<dyn veil_ledger::Containers + Send + Sync> {
    std::sync::Arc::new(veil_pipeline::dataset_containers::DatasetContainers::default())
}

/// `veil redact --report`: the page of the run just finished (its failures included). A report
/// that cannot be written is a problem of the run (exit 1), not a usage error.
pub fn after_redact(output: &Path, quiet: bool) -> i32 {
    let opts = ReportOptions {
        containers: Some(containers()),
        ..ReportOptions::default()
    };
    match write(output, &opts, quiet) {
        Ok(s) => print_summary(&s),
        Err(e) => {
            eprintln!(
                "veil: error: review page not written: {}",
                escape_controls(&format!("{e:#}"))
            );
            exit::FAILURES
        }
    }
}

fn write(output: &Path, opts: &ReportOptions, quiet: bool) -> Result<ReportSummary> {
    let progress = progress::Progress::new(quiet).counting("thumbnails");
    let result = veil_report::write_report(output, opts, &progress);
    progress.finish();
    Ok(result?)
}

/// Messages can quote file names: control characters are escaped so they cannot forge lines.
fn escape_controls(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn print_summary(s: &ReportSummary) -> i32 {
    let c = &s.counts;
    eprintln!(
        "veil: review page of {} images: {} failed, {} unreadable outputs, {} with leaks, {} near the threshold, {} persons without face; {} thumbnails made, {} reused",
        c.images,
        c.failed,
        c.unreadable,
        c.leak_images,
        c.near_threshold,
        c.persons_without_face,
        s.thumbnails_made,
        s.thumbnails_reused
    );
    for (path, why) in &s.unreadable {
        eprintln!(
            "  UNREADABLE {}: {}",
            path.escape_debug(),
            escape_controls(why)
        );
    }
    println!("{}", s.index.display());
    if s.unreadable.is_empty() {
        exit::OK
    } else {
        exit::FAILURES
    }
}

/// `veil review import OUTPUT FILE`: exit 0 when every decision is recorded (now or before), 1
/// when some were stale or unknown (the others are recorded), 2 for an unusable file or tree.
pub fn review(cmd: ReviewCommand) -> Result<i32> {
    match cmd {
        ReviewCommand::Import { output, file } => {
            let s = veil_report::import_review(&output, &file)?;
            if let Some(note) = &s.run_mismatch {
                eprintln!("veil: note: {note}");
            }
            for (path, decided, now) in &s.stale {
                eprintln!(
                    "veil: STALE {}: decided on output {decided}, the record now has {now}; not applied",
                    path.escape_debug()
                );
            }
            for path in &s.unknown {
                eprintln!(
                    "veil: UNKNOWN {}: no record has this path; not applied",
                    path.escape_debug()
                );
            }
            eprintln!(
                "veil: {} decisions recorded, {} already recorded, {} stale, {} unknown ({})",
                s.applied.len(),
                s.unchanged.len(),
                s.stale.len(),
                s.unknown.len(),
                output.join(veil_ledger::PROVENANCE_FILE).display()
            );
            Ok(if s.is_complete() {
                exit::OK
            } else {
                exit::FAILURES
            })
        }
    }
}
