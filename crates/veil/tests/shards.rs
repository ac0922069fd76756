//! Sharded runs (as Slurm array tasks or Kubernetes indexed jobs would start them) and `veil merge`.

mod common;

use std::fs;

use common::*;

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

    // An input image that no shard processed is reported.
    fs::copy(input.join("coffee.png"), input.join("late-addition.png")).unwrap();
    let (code, _, err) = run(&[&"merge", &out, &"--input", &input]);
    assert_eq!(code, 1);
    assert!(err.contains("UNACCOUNTED late-addition.png"), "{err}");
}
