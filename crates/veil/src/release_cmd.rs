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
    /// Write exactly a release's items from OUTPUT into PATH (a directory, or PATH.tar,
    /// PATH.tar.zst or PATH.zip), each checked against the manifest as it is written (a mismatch
    /// aborts and leaves nothing). Archives are deterministic: the same release packs to the
    /// same bytes.
    Pack {
        output: PathBuf,
        /// NAME@VERSION
        #[arg(long)]
        release: String,
        #[arg(long)]
        to: PathBuf,
        #[arg(long, default_value = "datasets-manifest")]
        root: PathBuf,
        /// Also pack the release's manifest and release.json (under veil-release/).
        #[arg(long)]
        manifest: bool,
        /// Also write a dataset card (README.md with YAML front matter) for a dataset hub.
        #[arg(long)]
        card: bool,
    },
    /// Check a directory or a pack (.tar, .tar.zst, .zip) against a release: every file present,
    /// every hash matching, no extra files, the Merkle root recomputed.
    Verify {
        /// An output tree or a pack of one (archives are not extracted: hashed as they stream).
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
        /// The item count published in release.json beside the root: binds the proof's tree
        /// size, and so the item's position (a path can fit a smaller tree with the same root).
        #[arg(long)]
        items: Option<u64>,
    },
}

fn split_release(s: &str) -> Result<(&str, &str)> {
    match s.split_once('@') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((n, v)),
        _ => bail!("release must be NAME@VERSION, got `{s}`"),
    }
}

/// Every recorded output (not failed) that is missing, not a regular file, or whose size or blake3
/// differs from its record.
fn changed_outputs(output: &Path) -> Result<Vec<(String, String)>> {
    let records = veil_ledger::read_provenance(&output.join(veil_ledger::PROVENANCE_FILE))?;
    let mut changed = Vec::new();
    for r in records
        .iter()
        .filter(|r| r.status != veil_core::ImageStatus::Failed && !r.is_member())
    {
        if !veil_ledger::safe_rel_path(&r.path) {
            continue;
        }
        let file = output.join(&r.path);
        let why = match std::fs::symlink_metadata(&file) {
            Err(e) => Some(format!("output missing ({e})")),
            Ok(m) if !m.is_file() => Some("not a regular file (links are not followed)".into()),
            Ok(m) if Some(m.len()) != r.output_size => Some(format!(
                "size {}, recorded {}",
                m.len(),
                r.output_size
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "none".into())
            )),
            Ok(_) => {
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let actual = blake3::hash(&bytes).to_hex().to_string();
                (r.output_blake3.as_deref() != Some(actual.as_str())).then(|| {
                    format!(
                        "blake3 {actual}, recorded {}",
                        r.output_blake3.as_deref().unwrap_or("none")
                    )
                })
            }
        };
        if let Some(why) = why {
            changed.push((r.path.clone(), why));
        }
    }
    Ok(changed)
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
            let built = veil_ledger::build_release(
                &output,
                &dataset,
                &version,
                parent.as_deref(),
                &root,
                created,
                licence,
            );
            let info = match built {
                Ok(info) => info,
                // The build stops at the first output that differs from its record: list them
                // all, so that one look shows everything to redo.
                Err(
                    e @ (veil_ledger::ReleaseError::HashMismatch { .. }
                    | veil_ledger::ReleaseError::SizeMismatch { .. }
                    | veil_ledger::ReleaseError::OutputMissing { .. }
                    | veil_ledger::ReleaseError::NotAFile { .. }),
                ) => {
                    let changed = changed_outputs(&output)?;
                    for (path, why) in &changed {
                        eprintln!(
                            "veil: CHANGED {}: {}",
                            path.escape_debug(),
                            crate::progress::escape_controls(why)
                        );
                    }
                    eprintln!(
                        "veil: {} outputs in {} differ from their records ({e}): no release built. Redact them again (veil redact INPUT {} re-does changed outputs) and build again",
                        changed.len().max(1),
                        output.display(),
                        output.display()
                    );
                    return Ok(exit::FAILURES);
                }
                Err(e) => return Err(e.into()),
            };
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
        ReleaseCommand::Pack {
            output,
            release,
            to,
            root,
            manifest,
            card,
        } => {
            let (name, version) = split_release(&release)?;
            let (info, items) = veil_ledger::load_release(&root, name, version)?;
            // A later release may have withdrawn some of these items: never publish them again.
            veil_ledger::refuse_withdrawn(
                name,
                items.iter().map(|i| {
                    (
                        i.path.as_str(),
                        Some(i.blake3.as_str()),
                        i.source_blake3.as_deref(),
                    )
                }),
                &veil_ledger::withdrawn_items(&root, name)?,
            )?;
            let mut extras = veil_ledger::Extras::new();
            if manifest {
                let dir = root.join(name).join(version);
                for file in [
                    veil_ledger::MANIFEST_FILE,
                    veil_ledger::RELEASE_FILE,
                    veil_ledger::WITHDRAWN_FILE,
                ] {
                    match std::fs::read(dir.join(file)) {
                        Ok(bytes) => extras.push((
                            format!("{}/{name}/{version}/{file}", veil_ledger::PACK_RELEASE_DIR),
                            bytes,
                        )),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(e).context(format!("reading {}", dir.join(file).display()))
                        }
                    }
                }
            }
            if card {
                let records =
                    veil_ledger::read_provenance(&output.join(veil_ledger::PROVENANCE_FILE))?;
                let policy = records
                    .iter()
                    .find(|r| {
                        items
                            .binary_search_by(|i| i.path.as_str().cmp(&r.path))
                            .is_ok()
                    })
                    .and_then(|r| r.params.get("policy").cloned())
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "null".into());
                drop(records);
                extras.push((
                    veil_ledger::PACK_CARD.to_string(),
                    veil_ledger::dataset_card(&info, &items, &policy).into_bytes(),
                ));
            }
            let bytes = veil_ledger::pack_release(&output, &items, &extras, &to)?;
            println!(
                "packed {}@{}: {} items, {} bytes (each checked against the manifest){} -> {}",
                info.dataset,
                info.version,
                items.len(),
                bytes,
                if extras.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", with {}",
                        extras
                            .iter()
                            .map(|e| e.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                to.display()
            );
            Ok(exit::OK)
        }
        ReleaseCommand::Verify { dir, release, root } => {
            let (name, version) = split_release(&release)?;
            let (info, items) = veil_ledger::load_release(&root, name, version)?;
            let access = veil_pipeline::dataset_containers::DatasetContainers::default();
            let release_dir = root.join(name).join(version);
            let r =
                veil_ledger::verify_pack(&dir, name, version, &items, &release_dir, Some(&access))?;
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
            let members = if r.members_ok + r.members_unchecked > 0
                || items.iter().any(|i| i.archive.is_some())
            {
                format!(
                    " ({} files, {} images inside dataset containers read back{})",
                    r.ok,
                    r.members_ok,
                    if r.members_unchecked > 0 {
                        format!(
                            "; {} covered only by their container's hash in this archived pack",
                            r.members_unchecked
                        )
                    } else {
                        String::new()
                    }
                )
            } else {
                String::new()
            };
            println!(
                "{}@{}: {} of {} items ok{members}; merkle root {} recomputed from the manifest",
                info.dataset,
                info.version,
                r.ok + r.members_ok,
                info.items,
                info.merkle_root
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
        ReleaseCommand::CheckProof {
            proof,
            root_hash,
            items,
        } => check_proof(&proof, root_hash.as_deref(), items),
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

/// True when `items` is given and differs from the proof's tree size (and says so).
fn wrong_size(proof_size: u64, items: Option<u64>) -> bool {
    match items {
        Some(n) if n != proof_size => {
            println!("INVALID: the proof is for a release of {proof_size} items, not {n}");
            true
        }
        _ => false,
    }
}

/// What a valid proof was checked against: the published root and count, or only itself.
fn against(root_hash: Option<&str>, items: Option<u64>) -> &'static str {
    match (root_hash, items) {
        (Some(_), Some(_)) => "checked against the published root and item count",
        (Some(_), None) => {
            "checked against the published root; pass --items from release.json to bind the \
             item count and position too"
        }
        _ => {
            "checked against the proof's own root only: pass --root-hash and --items from the \
             release's published release.json to check it against the release"
        }
    }
}

fn check_proof(path: &Path, root_hash: Option<&str>, items: Option<u64>) -> Result<i32> {
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
        return Ok(check_absence(&p, root_hash, items));
    }
    let p: veil_ledger::InclusionProof =
        serde_json::from_value(value).context("not a veil inclusion proof")?;
    if wrong_root(&p.merkle_root, root_hash) || wrong_size(p.size, items) {
        return Ok(exit::FAILURES);
    }
    if veil_ledger::check_proof(&p) {
        println!(
            "valid: item {} of {} is in {}@{} (root {}; {})",
            p.index,
            p.size,
            p.dataset.escape_debug(),
            p.version.escape_debug(),
            p.merkle_root.escape_debug(),
            against(root_hash, items)
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

fn check_absence(
    p: &veil_ledger::AbsenceProof,
    root_hash: Option<&str>,
    items: Option<u64>,
) -> i32 {
    if wrong_root(&p.merkle_root, root_hash) || wrong_size(p.size, items) {
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
        "valid: {} is not in {}@{} ({} items, root {}): {place} ({})",
        p.path.escape_debug(),
        p.dataset.escape_debug(),
        p.version.escape_debug(),
        p.size,
        p.merkle_root.escape_debug(),
        against(root_hash, items)
    );
    exit::OK
}
