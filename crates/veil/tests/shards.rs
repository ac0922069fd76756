//! Sharded runs (as Slurm array tasks or Kubernetes indexed jobs would start them) and `veil merge`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use veil_pipeline::shard::Shard;

#[test]
fn shards_merged_equal_an_unsharded_run_and_gaps_are_reported() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    assert_eq!(run(&[&"sample", &input]).0, 0);
    let whole = t.path().join("whole");
    assert_eq!(run(&[&"redact", &input, &whole, &"-q"]).0, 0);

    let out = t.path().join("sharded");
    // Shard 0 by flag, shard 1 as Slurm array task 2 of tasks 1..3, shard 2 as a Kubernetes index.
    assert_eq!(
        run(&[&"redact", &input, &out, &"-q", &"--shard", &"0/3"]).0,
        0
    );
    let slurm = veil()
        .args([
            "redact".as_ref(),
            input.as_os_str(),
            out.as_os_str(),
            "-q".as_ref(),
        ])
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .output()
        .unwrap();
    assert_eq!(slurm.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&slurm.stderr).contains("shard 1/3 taken from SLURM"));
    // Before the last shard ran, merge reports it missing and writes nothing.
    let (code, _, err) = run(&[&"merge", &out, &"--input", &input]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("MISSING shard 2 of 3"), "{err}");
    assert!(!out.join("provenance.jsonl").exists());
    let k8s = veil()
        .args([
            "redact".as_ref(),
            input.as_os_str(),
            out.as_os_str(),
            "-q".as_ref(),
        ])
        .env("JOB_COMPLETION_INDEX", "2")
        .env("VEIL_SHARD_COUNT", "3")
        .output()
        .unwrap();
    assert_eq!(k8s.status.code(), Some(0));

    let (code, _, err) = run(&[&"merge", &out, &"--input", &input]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        fs::read_to_string(out.join("provenance.jsonl")).unwrap(),
        fs::read_to_string(whole.join("provenance.jsonl")).unwrap(),
        "merged records differ from an unsharded run"
    );
    for r in provenance(&whole) {
        let p = r["path"].as_str().unwrap();
        assert_eq!(
            fs::read(out.join(p)).unwrap(),
            fs::read(whole.join(p)).unwrap(),
            "{p}"
        );
    }

    // A recorded output that is gone (or changed size) is reported; the merge waits for it.
    let victim = provenance(&whole)
        .iter()
        .find(|r| r["status"] != "failed")
        .map(|r| r["path"].as_str().unwrap().to_string())
        .unwrap();
    let kept = fs::read(out.join(&victim)).unwrap();
    fs::write(out.join(&victim), b"truncated").unwrap();
    let (code, _, err) = run(&[&"merge", &out, &"--input", &input]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("OUTPUT MISSING {victim}")), "{err}");
    fs::write(out.join(&victim), kept).unwrap();

    // An input image that no shard processed is reported.
    fs::copy(input.join("coffee.png"), input.join("late-addition.png")).unwrap();
    let (code, _, err) = run(&[&"merge", &out, &"--input", &input]);
    assert_eq!(code, 1);
    assert!(err.contains("UNACCOUNTED late-addition.png"), "{err}");
}

/// The images of `input` (relative paths) that belong to shard K of N.
fn shard_images(input: &Path, k: u32, n: u32) -> Vec<String> {
    let shard = Shard::new(k, n).unwrap();
    let mut names: Vec<String> = fs::read_dir(input)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|p| shard.contains(p))
        .collect();
    names.sort();
    names
}

fn partial(out: &Path, name: &str) -> PathBuf {
    out.join(format!(".{name}.veil-partial"))
}

#[test]
fn a_shard_cleans_only_its_own_partial_files_and_merge_takes_only_finished_shards() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    assert_eq!(run(&[&"sample", &input]).0, 0);
    let (mine, theirs) = (shard_images(&input, 0, 2), shard_images(&input, 1, 2));
    assert!(
        !mine.is_empty() && !theirs.is_empty(),
        "{mine:?} {theirs:?}"
    );
    let out = t.path().join("out");
    fs::create_dir_all(&out).unwrap();
    // Left by a killed run of shard 0, and being written right now by shard 1.
    fs::write(partial(&out, &mine[0]), b"half").unwrap();
    fs::write(partial(&out, &theirs[0]), b"in progress").unwrap();
    let shard = |k: &str, extra: &[&str]| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"redact",
            &input,
            &out,
            &"-q",
            &"--device",
            &"cpu",
            &"--shard",
        ];
        args.push(&k);
        for e in extra {
            args.push(e);
        }
        run(&args)
    };
    let (code, _, err) = shard("0/2", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!partial(&out, &mine[0]).exists(), "own partial file kept");
    assert_eq!(
        fs::read(partial(&out, &theirs[0])).unwrap(),
        b"in progress",
        "a shard removed another shard's file"
    );
    assert!(err.contains("records in") && err.contains("provenance.shard-0-of-2.jsonl"));

    // Shard 1 killed before its end (no summary): merge refuses to take it as final.
    let (code, _, err) = shard("1/2", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!partial(&out, &theirs[0]).exists());
    fs::remove_file(out.join("veil-run.shard-1-of-2.json")).unwrap();
    let (code, _, err) = run(&[&"merge", &out, &"--input", &input]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("INCOMPLETE shard 1 of 2"), "{err}");
    assert!(!out.join("provenance.jsonl").exists());

    // Run again: it resumes (nothing redone) and writes its summary; the merge stands.
    let (code, _, err) = shard("1/2", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("0 redone"), "{err}");
    let (code, _, err) = run(&[&"merge", &out, &"--input", &input]);
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("veil-run.json")).unwrap()).unwrap();
    assert_eq!(
        summary["images"].as_u64(),
        Some((mine.len() + theirs.len()) as u64)
    );
    // The shard files stay, and a release of the merged tree verifies (they are not extra).
    let root = t.path().join("releases");
    let (code, _, err) = release_build(&out, "sample", "1", &root);
    assert_eq!(code, 0, "{err}");
    let (code, stdout, err) = run(&[
        &"release",
        &"verify",
        &out,
        &"--release",
        &"sample@1",
        &"--root",
        &root,
    ]);
    assert_eq!(code, 0, "{stdout}{err}");

    // A shard run with other parameters cannot be merged with the rest.
    let (code, _, err) = shard("1/2", &["--threshold", "0.6"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&[&"merge", &out]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("MISMATCHED shard 1 ran with other parameters than shard 0"),
        "{err}"
    );

    // Nor one whose face model differs (`auto` is INT8 on a CPU node, float on a GPU node):
    // the merge names both and says what to do.
    let (code, _, err) = shard("1/2", &["--face-model", "centerface"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&[&"merge", &out]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "models (centerface vs centerface-int8; give every shard the same --face-model)"
        ),
        "{err}"
    );

    // A file named like shard records that no run can have written is reported, not a panic.
    let (code, _, err) = shard("1/2", &[]);
    assert_eq!(code, 0, "{err}");
    fs::write(out.join("provenance.shard-0-of-0.jsonl"), b"").unwrap();
    let (code, _, err) = run(&[&"merge", &out]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("STRAY provenance.shard-0-of-0.jsonl"), "{err}");
}

#[test]
fn shards_running_at_the_same_time_merge_into_the_unsharded_result() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    assert_eq!(run(&[&"sample", &input]).0, 0);
    let whole = t.path().join("whole");
    assert_eq!(
        run(&[&"redact", &input, &whole, &"-q", &"--jobs", &"1"]).0,
        0
    );
    let out = t.path().join("out");
    let children: Vec<_> = (0..3)
        .map(|k| {
            veil()
                .args(["redact".as_ref(), input.as_os_str(), out.as_os_str()])
                .args(["-q", "--jobs", "1"])
                .env("JOB_COMPLETION_INDEX", k.to_string())
                .env("VEIL_SHARD_COUNT", "3")
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert_eq!(c.wait().unwrap().code(), Some(0));
    }
    let (code, _, err) = run(&[&"merge", &out, &"--input", &input]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        fs::read_to_string(out.join("provenance.jsonl")).unwrap(),
        fs::read_to_string(whole.join("provenance.jsonl")).unwrap()
    );
}

#[test]
fn half_a_cluster_setting_is_refused_and_shard_off_ignores_the_environment() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    assert_eq!(run(&[&"sample", &input]).0, 0);
    let out = t.path().join("out");
    let redact = |extra: &[&str], env: &[(&str, &str)]| {
        let mut c = veil();
        c.args(["redact".as_ref(), input.as_os_str(), out.as_os_str()])
            .arg("-q")
            .args(extra);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // A task ID without a count would run the whole dataset in every task: refused.
    let o = redact(&[], &[("SLURM_ARRAY_TASK_ID", "1")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("without SLURM_ARRAY_TASK_COUNT"));
    assert!(!out.join("provenance.jsonl").exists());
    // `--shard off`: one whole run even inside an array task.
    let o = redact(
        &["--shard", "off"],
        &[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(provenance(&out).len(), 5);
    assert!(!out.join("provenance.shard-1-of-4.jsonl").exists());
}

/// The project root (the tests run in the crate's directory).
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_slurm_array_script_runs_every_task_and_the_merge_stands() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in");
    assert_eq!(run(&[&"sample", &input]).0, 0);
    let out = t.path().join("out");
    let script = project_root().join("scripts/slurm-redact.sbatch");
    // As `sbatch --array=1-3` would start it: task IDs 1..3.
    for id in ["1", "2", "3"] {
        let o = std::process::Command::new("bash")
            .arg(&script)
            .arg(&input)
            .arg(&out)
            .env("VEIL", env!("CARGO_BIN_EXE_veil"))
            .env("SLURM_ARRAY_TASK_ID", id)
            .env("SLURM_ARRAY_TASK_MIN", "1")
            .env("SLURM_ARRAY_TASK_MAX", "3")
            .env("SLURM_ARRAY_TASK_COUNT", "3")
            .env("SLURM_CPUS_PER_TASK", "1")
            .env("VEIL_DEVICE", "cpu")
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "task {id}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (code, _, err) = run(&[&"merge", &out, &"--input", &input]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(provenance(&out).len(), 5);
    // Not an array task: the script refuses rather than run the whole dataset.
    let o = std::process::Command::new("bash")
        .arg(&script)
        .arg(&input)
        .arg(t.path().join("other"))
        .env("VEIL", env!("CARGO_BIN_EXE_veil"))
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_kubernetes_job_command_runs_as_each_index() {
    let manifest = fs::read_to_string(project_root().join("scripts/k8s-redact-job.yaml")).unwrap();
    let field = |key: &str| {
        manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix(key).map(str::trim))
            .unwrap_or_else(|| panic!("no `{key}` in the manifest"))
            .to_string()
    };
    let command: Vec<String> = serde_json::from_str(&field("command:")).unwrap();
    let completions: u32 = field("completions:").parse().unwrap();
    let count_line = manifest
        .lines()
        .skip_while(|l| !l.contains("name: VEIL_SHARD_COUNT"))
        .nth(1)
        .unwrap();
    let count = count_line
        .trim()
        .trim_start_matches("value:")
        .trim()
        .trim_matches('"');
    assert_eq!(
        count,
        completions.to_string(),
        "VEIL_SHARD_COUNT must equal completions"
    );
    assert_eq!(command[..2], ["veil", "redact"]);

    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("photos");
    assert_eq!(run(&[&"sample", &input]).0, 0);
    let out = t.path().join("public");
    for index in 0..completions {
        let args: Vec<String> = command[1..]
            .iter()
            .map(|a| {
                a.replace("/data/photos", &input.to_string_lossy())
                    .replace("/data/public", &out.to_string_lossy())
            })
            .map(|a| if a == "auto" { "cpu".into() } else { a })
            .collect();
        let o = veil()
            .args(&args)
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .env("VEIL_SHARD_COUNT", count)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "index {index}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (code, _, err) = run(&[&"merge", &out, &"--input", &input]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(provenance(&out).len(), 5);
}
