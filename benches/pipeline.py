#!/usr/bin/env python3
"""Throughput, time per step and peak memory of `veil redact` on generated datasets.

Runs from the project root with the system Python 3 (stdlib only), after `cargo build --release`:

    python3 benches/pipeline.py                      # 1 000 and 10 000 images of 320 px
    python3 benches/pipeline.py --sizes 1000 --width 640

For each size N it generates N photos cut from veil's sample photos
(`cargo run --release -p veil-pipeline --example synth_dataset`), runs
`veil redact IN OUT -q --jobs J` under GNU time (`%e` wall seconds, `%M` peak RSS in KB), and
reads OUT/veil-run.json for the seconds spent in each step summed over the workers. It reports:

  * images/s and peak RSS per size (memory must stay flat as N grows: peak at 10 k within 10 %
    of peak at 1 k);
  * wall time against inference time: `wall / (detect seconds / workers)` (the rest of the
    pipeline should add at most 25 %).

Results go to benches/results/pipeline-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
VEIL = TARGET / "release" / "veil"
SYNTH = TARGET / "release" / "examples" / "synth_dataset"


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    args = ap.parse_args()
    sh(["cargo", "build", "--release", "-p", "veil", "-p", "veil-pipeline", "--example", "synth_dataset"], cwd=ROOT)
    work = Path(args.work or tempfile.mkdtemp(prefix="veil-pipeline-"))
    sample = work / "sample"
    if not sample.exists():
        sh([str(VEIL), "sample", str(sample)])
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        inp = work / f"in-{n}-{args.width}"
        if not inp.exists():
            sh([str(SYNTH), str(sample), str(inp), str(n), str(args.width)])
        out = work / f"out-{n}-{args.width}"
        shutil.rmtree(out, ignore_errors=True)
        r = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M", str(VEIL), "redact", str(inp), str(out), "-q", "--jobs", str(args.jobs)],
            text=True, capture_output=True,
        )
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        wall, rss_kb = r.stderr.strip().splitlines()[-1].split()
        summary = json.loads((out / "veil-run.json").read_text())
        st = summary["stage_seconds"]
        inference_wall = st["detect"] / summary["workers"]
        row = {
            "images": n,
            "width": args.width,
            "jobs": args.jobs,
            "wall_s": float(wall),
            "peak_rss_mb": int(rss_kb) / 1024,
            "images_per_s": n / float(wall),
            "processing_s": summary["seconds"],
            "stage_seconds": st,
            "detect_share": st["detect"] / sum(st.values()),
            "wall_over_inference": float(wall) / inference_wall if inference_wall else None,
        }
        rows.append(row)
        print(
            f"{n:>6} images: {row['wall_s']:.1f} s wall, {row['images_per_s']:.1f} img/s, "
            f"peak {row['peak_rss_mb']:.0f} MB, detect {100 * row['detect_share']:.0f} % of worker time, "
            f"wall / inference {row['wall_over_inference']:.2f}"
        )
        shutil.rmtree(out, ignore_errors=True)
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"peak RSS {b['images']} vs {a['images']}: {100 * (b['peak_rss_mb'] / a['peak_rss_mb'] - 1):+.1f} %")
    res = ROOT / "benches" / "results" / f"pipeline-{dt.date.today()}.json"
    res.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(), "runs": rows}, indent=2) + "\n")
    print(f"results in {res.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
