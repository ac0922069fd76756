//! Sharding a run for cluster array jobs (Slurm job arrays, Kubernetes indexed jobs) and merging
//! the shards' records. An image belongs to shard `blake3(relative path) mod N`, so slices stay
//! stable when files are added elsewhere in the tree.

use std::collections::BTreeMap;
use std::path::Path;

use veil_ledger::{ProvenanceRecord, PROVENANCE_FILE};

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

    /// The shard from the environment of a cluster array job, with where it came from:
    /// Slurm (`SLURM_ARRAY_TASK_ID` minus `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`) or a
    /// Kubernetes indexed Job (`JOB_COMPLETION_INDEX`, of `VEIL_SHARD_COUNT`).
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
        if let (Some(id), Some(count)) =
            (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?)
        {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let shard = id
                .checked_sub(min)
                .and_then(|k| Shard::new(k, count))
                .ok_or_else(|| {
                    PipelineError::Usage(format!(
                        "Slurm array task {id} (min {min}) is not one of {count} tasks"
                    ))
                })?;
            return Ok(Some((shard, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")));
        }
        if let Some(idx) = num("JOB_COMPLETION_INDEX")? {
            let count = num("VEIL_SHARD_COUNT")?.ok_or_else(|| {
                PipelineError::Usage("JOB_COMPLETION_INDEX is set: also set VEIL_SHARD_COUNT (the Job's completions)".into())
            })?;
            let shard = Shard::new(idx, count).ok_or_else(|| {
                PipelineError::Usage(format!("JOB_COMPLETION_INDEX {idx} is not below {count}"))
            })?;
            return Ok(Some((shard, "JOB_COMPLETION_INDEX/VEIL_SHARD_COUNT")));
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
    /// Shard indices with no records file.
    pub missing_shards: Vec<u32>,
    /// Paths recorded by more than one shard.
    pub duplicated: Vec<String>,
    /// Input images (when the input was given) that no shard recorded.
    pub unaccounted: Vec<String>,
    /// Recorded paths that are not in the input.
    pub unknown: Vec<String>,
}

impl MergeReport {
    pub fn is_complete(&self) -> bool {
        self.missing_shards.is_empty()
            && self.duplicated.is_empty()
            && self.unaccounted.is_empty()
            && self.unknown.is_empty()
    }
}

/// Merges `provenance.shard-K-of-N.jsonl` files of `output` into `provenance.jsonl` (sorted),
/// checking that all N shards are present and every path appears once; with `input`, also that
/// every image of the input is accounted for. Nothing is written unless the merge is complete.
pub fn merge(output: &Path, input: Option<&Path>) -> Result<MergeReport, PipelineError> {
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
        if let Some((k, n)) = rest.split_once("-of-") {
            if let (Ok(k), Ok(n)) = (k.parse::<u32>(), n.parse::<u32>()) {
                counts.entry(n).or_insert_with(Vec::new).push(k);
            }
        }
    }
    if counts.len() != 1 {
        return Err(PipelineError::Usage(format!(
            "{}: expected shard records of one shard count, found counts {:?}",
            output.display(),
            counts.keys().collect::<Vec<_>>()
        )));
    }
    let (count, present) = counts.into_iter().next().unwrap_or_default();
    let mut report = MergeReport {
        shards: count,
        ..MergeReport::default()
    };
    report.missing_shards = (0..count).filter(|k| !present.contains(k)).collect();
    let mut by_path: BTreeMap<String, ProvenanceRecord> = BTreeMap::new();
    let mut present = present;
    present.sort_unstable();
    for k in present {
        let shard = Shard { index: k, count };
        for r in veil_ledger::read_provenance(&output.join(shard.provenance_file()))? {
            if !shard.contains(&r.path) {
                report.unknown.push(format!(
                    "{} (recorded by shard {k}, belongs to another)",
                    r.path
                ));
            }
            if let Some(prev) = by_path.insert(r.path.clone(), r) {
                report.duplicated.push(prev.path);
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
        report
            .unknown
            .extend(by_path.keys().filter(|p| !wanted.contains(*p)).cloned());
    }
    report.records = by_path.len();
    if report.is_complete() {
        let mut records: Vec<ProvenanceRecord> = by_path.into_values().collect();
        veil_ledger::write_provenance_sorted(&output.join(PROVENANCE_FILE), &mut records)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // Stable under additions elsewhere: membership depends on the path alone.
        assert_eq!(
            first.contains("d3/img10.jpg"),
            Shard::new(1, 4).unwrap().contains("d3/img10.jpg")
        );
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
    }
}
