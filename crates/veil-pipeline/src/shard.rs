//! Sharding a run for cluster array jobs (Slurm job arrays, Kubernetes indexed jobs) and merging
//! the shards' records. An image belongs to shard `blake3(relative path) mod N`, so slices stay
//! stable when files are added elsewhere in the tree.

use std::collections::BTreeMap;
use std::path::Path;

use veil_ledger::{ProvenanceRecord, RunSummary, PROVENANCE_FILE, RUN_SUMMARY_FILE};

use crate::PipelineError;

/// Shard `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parses `K/N` (0 <= K < N).
    pub fn parse(s: &str) -> Result<Shard, PipelineError> {
        let bad =
            || PipelineError::Usage(format!("--shard must be K/N with 0 <= K < N, got `{s}`"));
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        Shard::new(index, count).ok_or_else(bad)
    }

    pub fn new(index: u32, count: u32) -> Option<Shard> {
        (count > 0 && index < count).then_some(Shard { index, count })
    }

    /// The shard from the environment of a cluster array job, with where it came from.
    ///
    /// - **Slurm job array**: shard `(SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) /
    ///   SLURM_ARRAY_TASK_STEP` of `SLURM_ARRAY_TASK_COUNT`, for an array that is one range
    ///   (`--array=0-15`, `--array=1-16`, `--array=0-30:10`). A list such as `--array=3,7` (tasks
    ///   re-submitted after a failure) is refused unless `VEIL_SHARD_COUNT` gives the full count:
    ///   then the task ID itself is the shard index.
    /// - **Kubernetes indexed Job**: shard `JOB_COMPLETION_INDEX` of `VEIL_SHARD_COUNT` (keep it
    ///   equal to the Job's `completions`).
    ///
    /// Half a setting is an error, never a silent whole-dataset run: a task ID without a count,
    /// or `VEIL_SHARD_COUNT` without a task ID or index.
    pub fn from_env(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<(Shard, &'static str)>, PipelineError> {
        let num = |k: &str| -> Result<Option<u32>, PipelineError> {
            match get(k) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| PipelineError::Usage(format!("{k}={v} is not a number"))),
            }
        };
        let usage = |m: String| PipelineError::Usage(m);
        let given = num("VEIL_SHARD_COUNT")?;
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            if let Some(count) = given {
                let shard = Shard::new(id, count).ok_or_else(|| {
                    usage(format!(
                        "SLURM_ARRAY_TASK_ID {id} is not below VEIL_SHARD_COUNT {count}"
                    ))
                })?;
                return Ok(Some((shard, "SLURM_ARRAY_TASK_ID/VEIL_SHARD_COUNT")));
            }
            let count = num("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                usage(
                    "SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_COUNT: pass --shard K/N, \
                     or set VEIL_SHARD_COUNT (task IDs are then the shard indices)"
                        .into(),
                )
            })?;
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let not_a_range = || {
                usage(format!(
                    "this Slurm array (task {id}, min {min}, step {step}, {count} tasks) is not \
                     one range of task IDs: to re-run chosen tasks of an array of N, set \
                     VEIL_SHARD_COUNT=N (task IDs are then the shard indices)"
                ))
            };
            if let Some(max) = num("SLURM_ARRAY_TASK_MAX")? {
                let span = max.checked_sub(min).ok_or_else(not_a_range)?;
                if span % step != 0 || span / step + 1 != count {
                    return Err(not_a_range());
                }
            }
            let offset = id.checked_sub(min).ok_or_else(not_a_range)?;
            if offset % step != 0 {
                return Err(not_a_range());
            }
            let shard = Shard::new(offset / step, count).ok_or_else(not_a_range)?;
            return Ok(Some((shard, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")));
        }
        if let Some(idx) = num("JOB_COMPLETION_INDEX")? {
            let count = given.ok_or_else(|| {
                usage("JOB_COMPLETION_INDEX is set: also set VEIL_SHARD_COUNT (the Job's completions)".into())
            })?;
            let shard = Shard::new(idx, count)
                .ok_or_else(|| usage(format!("JOB_COMPLETION_INDEX {idx} is not below {count}")))?;
            return Ok(Some((shard, "JOB_COMPLETION_INDEX/VEIL_SHARD_COUNT")));
        }
        if given.is_some() {
            return Err(usage(
                "VEIL_SHARD_COUNT is set but neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX \
                 is: pass --shard K/N"
                    .into(),
            ));
        }
        Ok(None)
    }

    /// Whether the image at this relative path belongs to the shard.
    pub fn contains(&self, rel: &str) -> bool {
        let h = blake3::hash(rel.as_bytes());
        let v = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8]));
        v % u64::from(self.count) == u64::from(self.index)
    }

    /// File name of this shard's records.
    pub fn provenance_file(&self) -> String {
        format!("provenance.shard-{}-of-{}.jsonl", self.index, self.count)
    }

    /// File name of this shard's run summary.
    pub fn summary_file(&self) -> String {
        format!("veil-run.shard-{}-of-{}.json", self.index, self.count)
    }
}

/// Outcome of `veil merge`.
#[derive(Debug, Default)]
pub struct MergeReport {
    pub shards: u32,
    pub records: usize,
    /// Records of images that failed (they have no output; the merge still stands).
    pub failed: usize,
    /// Shard indices with no records file.
    pub missing_shards: Vec<u32>,
    /// Shards whose records cannot be taken as final, and why (no run summary: killed, failed
    /// to start or still running; a summary that does not match the records; unreadable records).
    pub incomplete_shards: Vec<(u32, String)>,
    /// Shards run with other settings than shard 0 (veil version, models, parameters).
    pub mismatched: Vec<String>,
    /// Files named like shard records that no shard of a run can have written.
    pub stray_files: Vec<String>,
    /// Paths recorded by more than one shard.
    pub duplicated: Vec<String>,
    /// Input images (when the input was given) that no shard recorded.
    pub unaccounted: Vec<String>,
    /// Recorded paths that are not in the input.
    pub unknown: Vec<String>,
    /// Records of written images whose output is missing, not a regular file, or not of the
    /// recorded size.
    pub missing_outputs: Vec<String>,
}

impl MergeReport {
    pub fn is_complete(&self) -> bool {
        self.missing_shards.is_empty()
            && self.incomplete_shards.is_empty()
            && self.mismatched.is_empty()
            && self.stray_files.is_empty()
            && self.duplicated.is_empty()
            && self.unaccounted.is_empty()
            && self.unknown.is_empty()
            && self.missing_outputs.is_empty()
    }
}

/// The run summary of a finished shard (None when there is none or it cannot be read).
fn read_summary(path: &Path) -> Result<RunSummary, String> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "no {}: the shard was killed, failed to start or is still running (run it again: it \
             resumes)",
            path.file_name().unwrap_or_default().to_string_lossy()
        ),
        _ => format!("{}: {e}", path.display()),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The summary of the merged run: counts and step times summed, the earliest start and the
/// latest finish, the longest shard's seconds (shards run side by side) and the sum of their
/// rates.
fn merged_summary(parts: &[RunSummary]) -> Option<RunSummary> {
    let first = parts.first()?;
    let mut m = RunSummary {
        started_at: parts.iter().map(|p| p.started_at.clone()).min()?,
        finished_at: parts.iter().map(|p| p.finished_at.clone()).max()?,
        images: 0,
        redacted: 0,
        no_detections: 0,
        failed: 0,
        detections: 0,
        workers: 0,
        seconds: 0.0,
        images_per_second: 0.0,
        other_files: Vec::new(),
        copied_files: Vec::new(),
        skipped_links: Vec::new(),
        stage_seconds: veil_ledger::StageTimes::default(),
        ..first.clone()
    };
    let mut devices = std::collections::BTreeSet::new();
    for p in parts {
        m.images += p.images;
        m.redacted += p.redacted;
        m.no_detections += p.no_detections;
        m.failed += p.failed;
        m.detections += p.detections;
        m.workers += p.workers;
        m.seconds = m.seconds.max(p.seconds);
        m.images_per_second += p.images_per_second;
        m.other_files.extend(p.other_files.iter().cloned());
        m.copied_files.extend(p.copied_files.iter().cloned());
        m.skipped_links.extend(p.skipped_links.iter().cloned());
        m.stage_seconds.add(&p.stage_seconds);
        devices.insert(p.device.clone());
    }
    m.device = devices.into_iter().collect::<Vec<_>>().join(", ");
    m.other_files.sort();
    m.copied_files.sort();
    m.skipped_links.sort();
    Some(m)
}

/// How two shards' models differ: names, or names with blake3 prefixes when only the files
/// differ; with advice when the face models differ (`--face-model auto` picks the INT8 model on
/// CPU nodes and the float one on GPU nodes).
fn models_differ(a: &[veil_ledger::ModelRef], b: &[veil_ledger::ModelRef]) -> String {
    let same_names = a.iter().map(|m| &m.name).eq(b.iter().map(|m| &m.name));
    let list = |m: &[veil_ledger::ModelRef]| {
        m.iter()
            .map(|m| match same_names {
                true => format!("{} {}", m.name, m.blake3.get(..12).unwrap_or(&m.blake3)),
                false => m.name.clone(),
            })
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let face = |m: &[veil_ledger::ModelRef]| {
        m.iter()
            .find(|m| m.family == "centerface")
            .map(|m| m.name.clone())
    };
    let advice = match face(a) != face(b) {
        true => "; give every shard the same --face-model",
        false => "",
    };
    format!("models ({} vs {}{advice})", list(a), list(b))
}

/// Merges `provenance.shard-K-of-N.jsonl` files of `output` into `provenance.jsonl` (sorted) and
/// their summaries into `veil-run.json`, checking that all N shards are present and finished
/// (each has its run summary, whose image count matches its records), that they ran with the
/// same veil version, models and parameters, and that every path appears once; with `input`,
/// also that every image of the input is accounted for. Nothing is written unless the merge is
/// complete. The shard files stay (a release does not list them).
pub fn merge(output: &Path, input: Option<&Path>) -> Result<MergeReport, PipelineError> {
    let mut report = MergeReport::default();
    let mut counts = BTreeMap::new();
    for e in std::fs::read_dir(output).map_err(|e| PipelineError::io(output, e))? {
        let name = e
            .map_err(|e| PipelineError::io(output, e))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        let Some(rest) = name
            .strip_prefix("provenance.shard-")
            .and_then(|r| r.strip_suffix(".jsonl"))
        else {
            continue;
        };
        let parsed = rest
            .split_once("-of-")
            .and_then(|(k, n)| Some((k.parse::<u32>().ok()?, n.parse::<u32>().ok()?)))
            .and_then(|(k, n)| Shard::new(k, n));
        match parsed {
            Some(s) => counts.entry(s.count).or_insert_with(Vec::new).push(s.index),
            None => report.stray_files.push(name),
        }
    }
    report.stray_files.sort();
    if counts.len() != 1 {
        return Err(PipelineError::Usage(format!(
            "{}: expected shard records of one shard count, found counts {:?}",
            output.display(),
            counts.keys().collect::<Vec<_>>()
        )));
    }
    let (count, mut present) = counts.into_iter().next().unwrap_or_default();
    report.shards = count;
    report.missing_shards = (0..count).filter(|k| !present.contains(k)).collect();
    present.sort_unstable();
    let mut by_path: BTreeMap<String, ProvenanceRecord> = BTreeMap::new();
    let mut summaries: Vec<(u32, RunSummary)> = Vec::new();
    for k in present {
        let shard = Shard { index: k, count };
        let summary = match read_summary(&output.join(shard.summary_file())) {
            Ok(s) => s,
            Err(why) => {
                report.incomplete_shards.push((k, why));
                continue;
            }
        };
        let records = match veil_ledger::read_provenance(&output.join(shard.provenance_file())) {
            Ok(r) => r,
            Err(e) => {
                report.incomplete_shards.push((k, e.to_string()));
                continue;
            }
        };
        if summary.images != records.len() as u64 {
            report.incomplete_shards.push((
                k,
                format!(
                    "its summary counts {} images but its records file holds {}",
                    summary.images,
                    records.len()
                ),
            ));
            continue;
        }
        for r in records {
            // A member of an archive goes with its archive.
            if !shard.contains(r.archive.as_deref().unwrap_or(&r.path)) {
                report.unknown.push(format!(
                    "{} (recorded by shard {k}, belongs to another)",
                    r.path
                ));
            }
            if let Some(prev) = by_path.insert(r.path.clone(), r) {
                report.duplicated.push(prev.path);
            }
        }
        summaries.push((k, summary));
    }
    if let Some((k0, s0)) = summaries.first() {
        for (k, s) in &summaries[1..] {
            let mut differs = Vec::new();
            if s.tool_version != s0.tool_version {
                differs.push(format!("veil {} vs {}", s.tool_version, s0.tool_version));
            }
            if s.models != s0.models {
                differs.push(models_differ(&s.models, &s0.models));
            }
            if s.params_blake3 != s0.params_blake3 {
                differs.push("parameters".to_string());
            }
            if !differs.is_empty() {
                report.mismatched.push(format!(
                    "shard {k} ran with other {} than shard {k0}",
                    differs.join(", ")
                ));
            }
        }
    }
    if let Some(input) = input {
        let listing = crate::walk::walk(input)?;
        let wanted: std::collections::BTreeSet<String> = listing
            .images
            .iter()
            .map(|p| crate::walk::rel_string(p))
            .collect();
        report.unaccounted = wanted
            .iter()
            .filter(|p| !by_path.contains_key(*p))
            .cloned()
            .collect();
        // Other files of the input have a record only when they are archives or tables that
        // may hold images: redacted member by member (the archive's record and one per image
        // member), or failed as `not processed: container`.
        let others: std::collections::BTreeSet<String> = listing
            .others
            .iter()
            .map(|p| crate::walk::rel_string(p))
            .collect();
        report.unknown.extend(
            by_path
                .iter()
                .filter(|(p, r)| {
                    let container = others.contains(*p)
                        || r.archive.as_ref().is_some_and(|a| others.contains(a));
                    !wanted.contains(*p) && !container
                })
                .map(|(p, _)| p.clone()),
        );
    }
    // Every recorded output is there, as a regular file of the recorded size (a stat each; the
    // hashes are checked by `veil release build` and `verify`).
    report.missing_outputs = by_path
        .values()
        .filter(|r| r.status != veil_core::ImageStatus::Failed && !r.is_member())
        .filter(|r| {
            let rel = Path::new(&r.path);
            let meta = crate::process::output_dir(output, rel, false)
                .ok()
                .zip(rel.file_name())
                .and_then(|(dir, name)| std::fs::symlink_metadata(dir.join(name)).ok());
            !meta.is_some_and(|m| m.is_file() && Some(m.len()) == r.output_size)
        })
        .map(|r| r.path.clone())
        .collect();
    report.records = by_path.len();
    report.failed = by_path
        .values()
        .filter(|r| r.status == veil_core::ImageStatus::Failed)
        .count();
    if report.is_complete() {
        let mut records: Vec<ProvenanceRecord> = by_path.into_values().collect();
        veil_ledger::write_provenance_sorted(&output.join(PROVENANCE_FILE), &mut records)?;
        let parts: Vec<RunSummary> = summaries.into_iter().map(|(_, s)| s).collect();
        if let Some(m) = merged_summary(&parts) {
            let json = serde_json::to_vec_pretty(&m).unwrap_or_default();
            crate::process::write_output(output, Path::new(RUN_SUMMARY_FILE), &json).map_err(
                |reason| PipelineError::Write {
                    path: output.join(RUN_SUMMARY_FILE),
                    reason,
                },
            )?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_models_are_named_and_hashed_only_when_needed() {
        let m = |name: &str, family: &str, b3: &str| veil_ledger::ModelRef {
            name: name.into(),
            family: family.into(),
            blake3: b3.into(),
        };
        let int8 = [m("centerface-int8", "centerface", &"a".repeat(64))];
        let float = [m("centerface", "centerface", &"b".repeat(64))];
        assert_eq!(
            models_differ(&int8, &float),
            "models (centerface-int8 vs centerface; give every shard the same --face-model)"
        );
        // Same names, other files: the hashes tell them apart, and --face-model cannot help.
        let other = [m("centerface-int8", "centerface", &"c".repeat(64))];
        assert_eq!(
            models_differ(&int8, &other),
            "models (centerface-int8 aaaaaaaaaaaa vs centerface-int8 cccccccccccc)"
        );
        // Only the person model differs.
        let a = [float[0].clone(), m("nanodet-g", "nanodet", "1")];
        let b = [float[0].clone(), m("yolox-nano", "yolox", "2")];
        assert_eq!(
            models_differ(&a, &b),
            "models (centerface + nanodet-g vs centerface + yolox-nano)"
        );
    }

    #[test]
    fn shards_partition_paths_stably() {
        let paths: Vec<String> = (0..1000)
            .map(|i| format!("d{}/img{i}.jpg", i % 7))
            .collect();
        let n = 4;
        let mut seen = vec![0; paths.len()];
        for k in 0..n {
            let s = Shard::new(k, n).unwrap();
            for (i, p) in paths.iter().enumerate() {
                seen[i] += s.contains(p) as usize;
            }
        }
        assert!(
            seen.iter().all(|&c| c == 1),
            "every path in exactly one shard"
        );
        let first = Shard::new(1, n).unwrap();
        let sizes: Vec<usize> = (0..n)
            .map(|k| {
                paths
                    .iter()
                    .filter(|p| Shard::new(k, n).unwrap().contains(p))
                    .count()
            })
            .collect();
        assert!(sizes.iter().all(|&s| s > 200), "balanced: {sizes:?}");
        let _ = first;
    }

    #[test]
    fn parse_and_environment() {
        assert_eq!(Shard::parse("2/5").unwrap(), Shard { index: 2, count: 5 });
        for bad in ["5/5", "1", "a/2", "0/0", "-1/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            Shard::from_env(slurm).unwrap().unwrap().0,
            Shard { index: 2, count: 4 }
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "0"), ("VEIL_SHARD_COUNT", "3")]);
        assert_eq!(
            Shard::from_env(k8s).unwrap().unwrap().0,
            Shard { index: 0, count: 3 }
        );
        assert!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "0")])).is_err());
        assert!(Shard::from_env(env(&[])).unwrap().is_none());

        // A stepped array: --array=0-30:10 runs tasks 0, 10, 20, 30 as shards 0..3 of 4.
        let stepped = |id: &'static str| {
            env(Box::leak(Box::new([
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_MAX", "30"),
                ("SLURM_ARRAY_TASK_STEP", "10"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ])))
        };
        for (id, k) in [("0", 0), ("10", 1), ("20", 2), ("30", 3)] {
            assert_eq!(
                Shard::from_env(stepped(id)).unwrap().unwrap().0,
                Shard { index: k, count: 4 },
                "task {id}"
            );
        }
        assert!(Shard::from_env(stepped("15")).is_err(), "not on the step");
        // A list (tasks re-submitted: --array=3,7) is not one range: refused...
        let list = [
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "3"),
            ("SLURM_ARRAY_TASK_MAX", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ];
        assert!(Shard::from_env(env(Box::leak(Box::new(list)))).is_err());
        // ...unless VEIL_SHARD_COUNT gives the full count: the task ID is then the index.
        let with_count = [
            list[0],
            list[1],
            list[2],
            list[3],
            ("VEIL_SHARD_COUNT", "8"),
        ];
        assert_eq!(
            Shard::from_env(env(Box::leak(Box::new(with_count))))
                .unwrap()
                .unwrap(),
            (
                Shard { index: 7, count: 8 },
                "SLURM_ARRAY_TASK_ID/VEIL_SHARD_COUNT"
            )
        );
        // Half a setting is an error, not a run over the whole dataset.
        assert!(Shard::from_env(env(&[("SLURM_ARRAY_TASK_ID", "1")])).is_err());
        assert!(Shard::from_env(env(&[("VEIL_SHARD_COUNT", "4")])).is_err());
        assert!(Shard::from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4")
        ]))
        .is_err());
    }

    /// The shard of a path is part of the record format across versions: a run resumed or merged
    /// with a newer veil must put every path in the same shard. Pinned vectors: blake3 of the
    /// path's UTF-8 bytes, first 8 bytes little-endian, modulo N.
    #[test]
    fn shard_assignment_is_pinned() {
        let of = |p: &str, n: u32| (0..n).find(|&k| Shard::new(k, n).unwrap().contains(p));
        let got: Vec<Option<u32>> = ["a.jpg", "d3/img10.jpg", "val/2007_000027.jpg", "ü/ß.png"]
            .iter()
            .map(|p| of(p, 16))
            .collect();
        // Computed independently with Python's `blake3` package:
        // int.from_bytes(blake3(p.encode()).digest()[:8], "little") % 16
        assert_eq!(got, [Some(2), Some(4), Some(5), Some(9)]);
    }
}
