#!/usr/bin/env python3
"""CUDA throughput at --batch 1, 8 and 32, and where the time goes (issue 6, benchmark 3).

Run on a machine with an NVIDIA GPU after `veil models fetch --gpu`:

    python3 benches/gpu_batch.py INPUT_DIR [--veil target/release/veil] [--jobs 4] [--batches 1,8,32]

For each batch size it runs `veil redact INPUT OUT --device cuda --batch N --fresh -q` once as a
warm-up and once timed, then prints images/s, peak RSS (from wait4, so no GNU time is needed) and
the share of worker time per stage from OUT/veil-run.json (`stage_seconds`). Results go to
benches/results/gpu_batch-*.json (or --results DIR). Standard library only.

On the device machine of this workplace (which can fetch nothing), see benches/README.md,
"Benchmark 3 on the device machine": scripts/device-bundle.sh and benches/gpu_device.sh.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time


def run(veil, inp, out, device, batch, jobs):
    cmd = [veil, "redact", inp, out, "--device", device,
           "--batch", str(batch), "--jobs", str(jobs), "--fresh", "-q"]
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if p.returncode not in (0, 1):
        sys.exit(f"veil failed ({p.returncode}):\n{stderr}")
    rss_kb = usage.ru_maxrss  # KB on Linux
    with open(os.path.join(out, "veil-run.json")) as f:
        summary = json.load(f)
    return summary, rss_kb


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("--veil", default="target/release/veil")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--results", default="benches/results")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for b in [int(x) for x in args.batches.split(",")]:
            out = os.path.join(tmp, f"out-{b}")
            run(args.veil, args.input, out, args.device, b, args.jobs)  # warm-up
            s, rss = run(args.veil, args.input, out, args.device, b, args.jobs)
            if s["device"] == "cpu" and args.device != "cpu":
                sys.exit("veil ran on CPU: is the CUDA runtime fetched (`veil models fetch --gpu`)?")
            stages = s.get("stage_seconds", {})
            total = sum(stages.values()) or 1.0
            row = {
                "batch": b, "device": s["device"], "workers": s["workers"], "images": s["images"],
                "seconds": round(s["seconds"], 2), "images_per_second": round(s["images_per_second"], 2),
                "peak_rss_mb": rss // 1024,
                "stage_share": {k: round(v / total, 3) for k, v in stages.items()},
            }
            rows.append(row)
            shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in row["stage_share"].items())
            print(f"batch {b:>3}: {row['images_per_second']:.2f} img/s, {row['peak_rss_mb']} MB, {shares}")
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, time.strftime("gpu_batch-%Y-%m-%dT%H%M%S.json"))
    with open(path, "w") as f:
        json.dump({"host": platform.node(), "input": args.input, "rows": rows}, f, indent=1)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
