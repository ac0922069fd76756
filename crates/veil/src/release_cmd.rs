//! `veil release`: build, verify, diff and prove releases (all logic is in veil-ledger).
//! Releases without withdrawn items are cut by the takedown workflow (`cut_release_without`).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use crate::exit;

#[derive(Subcommand)]
pub enum ReleaseCommand {
    /// Write an immutable release NAME/V of a redacted output tree under the manifests root.
    Build {
        output: PathBuf,
        #[arg(long)]
        dataset: String,
        #[arg(long)]
        version: String,
        #[arg(long)]
        parent: Option<String>,
        /// Licence recorded for every item.
        #[arg(long)]
        licence: Option<String>,
        #[arg(long, default_value = "datasets-manifest")]
        root: PathBuf,
        /// Build even though the tree holds images, archives or tables that no record names
        /// (they are left out of the release, and listed).
        #[arg(long)]
        exclude_unrecorded: bool,
    },
    /// Check a directory or a tar archive against a release: every file present, every hash
    /// matching, no extra files, the Merkle root recomputed.
    Verify {
        /// An output tree, or a .tar of one (not extracted: hashed as it streams).
        dir: PathBuf,
        /// NAME@VERSION
        #[arg(long)]
        release: String,
        #[arg(long, default_value = "datasets-manifest")]
        root: PathBuf,
    },
    /// Items added, removed and changed between two releases (NAME@A NAME@B).
    Diff {
        a: String,
        b: String,
        #[arg(long, default_value = "datasets-manifest")]
        root: PathBuf,
    },
    /// Print a Merkle inclusion proof (JSON) that an item (path or output blake3) is in a release,
    /// or with --absent a proof that no item has path ITEM.
    Prove {
        release: String,
        #[arg(long)]
        item: String,
        /// Prove that no item has this path: the inclusion proofs of the two adjacent items that
        /// bracket it in the sorted manifest (exit 1 when the item is in the release).
        #[arg(long)]
        absent: bool,
        #[arg(long, default_value = "datasets-manifest")]
        root: PathBuf,
    },
    /// Check an inclusion or absence proof written by `veil release prove` (exit 0 valid, 1
    /// invalid).
    CheckProof {
        proof: PathBuf,
        /// The Merkle root to check against, as published in release.json (else the proof's own).
        #[arg(long)]
        root_hash: Option<String>,
    },
}

fn split_release(s: &str) -> Result<(&str, &str)> {
    match s.split_once('@') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((n, v)),
        _ => bail!("release must be NAME@VERSION, got `{s}`"),
    }
}

pub fn run(cmd: ReleaseCommand) -> Result<i32> {
    match cmd {
        ReleaseCommand::Build {
            output,
            dataset,
            version,
            parent,
            licence,
            root,
            exclude_unrecorded,
        } => {
            // What a maintainer uploads is the folder: an image or archive in it that no record
            // names would be published unredacted, outside the release.
            // (Records with unsafe paths are refused by the build itself, exit 2.)
            let records = veil_ledger::read_provenance(&output.join(veil_ledger::PROVENANCE_FILE))?;
            let unrecorded = if records.iter().all(|r| veil_ledger::safe_rel_path(&r.path)) {
                veil_pipeline::unrecorded_files(&output, &records)?
            } else {
                Vec::new()
            };
            drop(records);
            for (path, what) in &unrecorded {
                eprintln!(
                    "veil: {} {}: {} that no record names",
                    if exclude_unrecorded {
                        "LEFT OUT"
                    } else {
                        "NOT REDACTED BY VEIL"
                    },
                    path.escape_debug(),
                    crate::progress::escape_controls(what)
                );
            }
            if !unrecorded.is_empty() && !exclude_unrecorded {
                eprintln!(
                    "veil: {} files in {} were not redacted by veil: no release built. Redact them, remove them, or build with --exclude-unrecorded (they are then left out of the release; do not upload them)",
                    unrecorded.len(),
                    output.display()
                );
                return Ok(exit::FAILURES);
            }
            let created = veil_pipeline::now_rfc3339();
            let info = veil_ledger::build_release(
                &output,
                &dataset,
                &version,
                parent.as_deref(),
                &root,
                created,
                licence,
            )?;
            println!(
                "release {}@{}: {} items, {} bytes, merkle root {} -> {}",
                info.dataset,
                info.version,
                info.items,
                info.bytes,
                info.merkle_root,
                root.join(&dataset).join(&version).display()
            );
            Ok(exit::OK)
        }
        ReleaseCommand::Verify { dir, release, root } => {
            let (name, version) = split_release(&release)?;
            let (info, items) = veil_ledger::load_release(&root, name, version)?;
            let r = if dir.is_file() {
                veil_ledger::verify_archive(&dir, &items)?
            } else {
                veil_ledger::verify_tree(&dir, &items)
            };
            for p in &r.missing {
                println!("MISSING  {}", p.escape_debug());
            }
            for (p, want, got) in &r.changed {
                println!(
                    "CHANGED  {}: expected {}, found {}",
                    p.escape_debug(),
                    want.escape_debug(),
                    got.escape_debug()
                );
            }
            for p in &r.extra {
                println!("EXTRA    {}", p.escape_debug());
            }
            for p in &r.invalid {
                println!(
                    "INVALID  {} (unsafe path in the manifest; not read)",
                    p.escape_debug()
                );
            }
            println!(
                "{}@{}: {} of {} items ok; merkle root {} recomputed from the manifest",
                info.dataset, info.version, r.ok, info.items, info.merkle_root
            );
            Ok(if r.is_clean() {
                exit::OK
            } else {
                exit::FAILURES
            })
        }
        ReleaseCommand::Diff { a, b, root } => {
            let (na, va) = split_release(&a)?;
            let (nb, vb) = split_release(&b)?;
            let (_, ia) = veil_ledger::load_release(&root, na, va)?;
            let (_, ib) = veil_ledger::load_release(&root, nb, vb)?;
            let d = veil_ledger::diff(&ia, &ib);
            for p in &d.added {
                println!("+ {}", p.escape_debug());
            }
            for p in &d.removed {
                println!("- {}", p.escape_debug());
            }
            for p in &d.changed {
                println!("~ {}", p.escape_debug());
            }
            println!(
                "{} added, {} removed, {} changed",
                d.added.len(),
                d.removed.len(),
                d.changed.len()
            );
            Ok(exit::OK)
        }
        ReleaseCommand::Prove {
            release,
            item,
            absent: true,
            root,
        } => {
            let (name, version) = split_release(&release)?;
            let (info, items) = veil_ledger::load_release(&root, name, version)?;
            match veil_ledger::prove_absence(&items, &info, &item)? {
                Some(p) => {
                    println!("{}", serde_json::to_string_pretty(&p)?);
                    Ok(exit::OK)
                }
                None => {
                    eprintln!(
                        "veil: {} is in {name}@{version} (root {}); no absence proof exists",
                        item.escape_debug(),
                        info.merkle_root
                    );
                    Ok(exit::FAILURES)
                }
            }
        }
        ReleaseCommand::Prove {
            release,
            item,
            absent: false,
            root,
        } => {
            let (name, version) = split_release(&release)?;
            let (info, items) = veil_ledger::load_release(&root, name, version)?;
            match veil_ledger::prove(&items, &info, &item)? {
                Some(p) => {
                    println!("{}", serde_json::to_string_pretty(&p)?);
                    Ok(exit::OK)
                }
                None => {
                    eprintln!(
                        "veil: {} is not in {name}@{version} (root {})",
                        item.escape_debug(),
                        info.merkle_root
                    );
                    Ok(exit::FAILURES)
                }
            }
        }
        ReleaseCommand::CheckProof { proof, root_hash } => {
            check_proof(&proof, root_hash.as_deref())
        }
    }
}

/// True when `root_hash` is given and differs from the proof's root (and says so). A proof is a
/// third party's file: its dataset, version and root are printed escaped.
fn wrong_root(proof_root: &str, root_hash: Option<&str>) -> bool {
    match root_hash {
        Some(r) if r != proof_root => {
            println!(
                "INVALID: the proof is for root {}, not {}",
                proof_root.escape_debug(),
                r.escape_debug()
            );
            true
        }
        _ => false,
    }
}

fn check_proof(path: &Path, root_hash: Option<&str>) -> Result<i32> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).context("not a veil proof")?;
    // An absence proof has `left` and `right` (null at the edges); an inclusion proof has neither.
    let absence = value
        .as_object()
        .is_some_and(|o| o.contains_key("left") || o.contains_key("right"));
    if absence {
        let p: veil_ledger::AbsenceProof =
            serde_json::from_value(value).context("not a veil absence proof")?;
        return Ok(check_absence(&p, root_hash));
    }
    let p: veil_ledger::InclusionProof =
        serde_json::from_value(value).context("not a veil inclusion proof")?;
    if wrong_root(&p.merkle_root, root_hash) {
        return Ok(exit::FAILURES);
    }
    if veil_ledger::check_proof(&p) {
        println!(
            "valid: item {} of {} is in {}@{} (root {})",
            p.index,
            p.size,
            p.dataset.escape_debug(),
            p.version.escape_debug(),
            p.merkle_root
        );
        Ok(exit::OK)
    } else {
        println!(
            "INVALID: the proof does not lead to root {}",
            p.merkle_root.escape_debug()
        );
        Ok(exit::FAILURES)
    }
}

fn check_absence(p: &veil_ledger::AbsenceProof, root_hash: Option<&str>) -> i32 {
    if wrong_root(&p.merkle_root, root_hash) {
        return exit::FAILURES;
    }
    if !veil_ledger::check_absence(p) {
        println!(
            "INVALID: the proof does not show that {} is absent from root {}",
            p.path.escape_debug(),
            p.merkle_root.escape_debug()
        );
        return exit::FAILURES;
    }
    let place = match (&p.left, &p.right) {
        (Some(l), Some(r)) => format!("it would lie between items {} and {}", l.index, r.index),
        (None, Some(_)) => "it would come before item 0".to_string(),
        (Some(l), None) => format!("it would come after item {}, the last", l.index),
        (None, None) => "the release is empty".to_string(),
    };
    println!(
        "valid: {} is not in {}@{} ({} items, root {}): {place}",
        p.path.escape_debug(),
        p.dataset.escape_debug(),
        p.version.escape_debug(),
        p.size,
        p.merkle_root
    );
    exit::OK
}
