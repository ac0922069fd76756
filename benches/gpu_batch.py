#!/usr/bin/env python3
"""CUDA throughput and where the time goes, against the CPU floor of the same machine (issue 19).

    python3 benches/gpu_batch.py --set small=DIR --set 12mp=DIR [--veil target/release/veil]
        [--device cuda] [--jobs 16] [--budget-s 300] [--results DIR]

Runs, in this order, as many of these as the time budget allows (each result is written as soon
as it is measured, so a run cut short still reports what it did):

1. per set: the default policy at --batch 8 (its records feed the floor), then the floor:
   `--replay-detections` of those records, which decodes, hashes, redacts, encodes, validates
   and writes exactly as the GPU run does but replays the detections instead of inferring them;
   then the same GPU run without sessions by input shape (VEIL_CUDA_SHAPE_SESSIONS=0);
2. per set: the default policy at --batch 1 and 32, and `--scales single` at --batch 1, 8, 32;
3. per set: --jobs 8, 24 and 32 at --batch 8 (how many decode and finish workers keep the GPU
   busy: half of --jobs decode, half finish);
4. per set: 1, 4 and 8 inference sessions (VEIL_CUDA_SESSIONS; 2 by default) at --batch 8;
   cuDNN's exhaustive convolution search and TF32 (VEIL_CUDA_CONV_SEARCH, VEIL_CUDA_TF32)
   against veil's defaults, at --batch 8;
5. the 12 MP set on the CPU alone (--device cpu, all cores), on its first 16 photos.

Each row: images/s (veil-run.json, processing only) and the whole process's wall time, the
share of worker time per stage (decode, detect, finish = redact + encode + verify + phash +
write), CPU utilisation ((user + sys) / wall / cores, from wait4), peak RSS, and with nvidia-smi
the peak GPU memory and mean GPU utilisation sampled every 100 ms. Standard library only.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time


class GpuSampler:
    """nvidia-smi every 100 ms while a run lasts: peak memory used (MiB), mean utilisation (%)."""

    def __init__(self):
        self.proc = None
        self.lines = []
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=memory.used,utilization.gpu",
                 "--format=csv,noheader,nounits", "-lms", "100"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def stop(self):
        if not self.proc:
            return None
        self.proc.terminate()
        self.proc.wait()
        self.thread.join(timeout=2)
        vals = []
        for line in self.lines:
            try:
                mem, util = (float(x) for x in line.split(","))
                vals.append((mem, util))
            except ValueError:
                pass
        if not vals:
            return None
        return {"gpu_mem_peak_mib": max(v[0] for v in vals),
                "gpu_util_mean_pct": round(sum(v[1] for v in vals) / len(vals), 1),
                "gpu_samples": len(vals)}


def run(veil, inp, out, args, env_extra=None, timeout=240):
    cmd = [veil, "redact", inp, out, "--fresh", "-q"] + args
    env = dict(os.environ, **(env_extra or {}))
    sampler = GpuSampler()
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        _, status, usage = os.wait4(p.pid, 0)
        timer.cancel()
        wall = time.monotonic() - t0
        code = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    gpu = sampler.stop()
    if code not in (0, 1):
        return {"error": f"exit {code}", "stderr": stderr[-2000:], "cmd": " ".join(cmd)}
    with open(os.path.join(out, "veil-run.json")) as f:
        s = json.load(f)
    stages = s.get("stage_seconds", {})
    finish = sum(stages.get(k, 0.0) for k in ("redact", "encode", "verify", "phash", "write"))
    split = {"decode": stages.get("decode", 0.0), "detect": stages.get("detect", 0.0),
             "finish": finish}
    total = sum(split.values()) or 1.0
    row = {
        "cmd": " ".join(cmd[:1] + ["redact", "IN", "OUT"] + cmd[4:]),
        "env": env_extra or {}, "device": s["device"], "workers": s["workers"],
        "images": s["images"], "failed": s["failed"],
        "images_per_second": round(s["images_per_second"], 2),
        "seconds": round(s["seconds"], 2), "process_wall_s": round(wall, 2),
        "cpu_util_pct": round(100 * (usage.ru_utime + usage.ru_stime) / wall / os.cpu_count(), 1),
        "peak_rss_mb": usage.ru_maxrss // 1024,
        "stage_share": {k: round(v / total, 3) for k, v in split.items()},
        "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
    }
    if gpu:
        row.update(gpu)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", required=True, metavar="NAME=DIR")
    ap.add_argument("--veil", default="target/release/veil")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--sweep-jobs", default="8,24,32")
    ap.add_argument("--budget-s", type=float, default=300)
    ap.add_argument("--results", default="benches/results")
    args = ap.parse_args()
    sets = dict(s.split("=", 1) for s in args.set)
    batches = [int(b) for b in args.batches.split(",")]
    deadline = time.monotonic() + args.budget_s
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, time.strftime("gpu_batch-%Y-%m-%dT%H%M%S.json"))
    rows = []
    tmp = tempfile.mkdtemp(prefix="veil-gpu-bench-")
    dev = ["--device", args.device]

    def measure(name, set_name, inp, extra, env=None, out=None):
        left = deadline - time.monotonic()
        if left < 15:
            print(f"skipped (time budget): {set_name} {name}", flush=True)
            return None
        out = out or os.path.join(tmp, "out")
        row = run(args.veil, inp, out, extra, env, timeout=min(240, left))
        row.update({"set": set_name, "name": name})
        rows.append(row)
        with open(path, "w") as f:
            json.dump({"host": platform.node(), "cores": os.cpu_count(), "sets": sets,
                       "rows": rows}, f, indent=1)
        if "error" in row:
            print(f"{set_name:>5} {name:<28} FAILED {row['error']}: {row['stderr'][-500:]}",
                  flush=True)
            return row
        gpu = (f", GPU {row['gpu_mem_peak_mib']:.0f} MiB peak, {row['gpu_util_mean_pct']}% busy"
               if "gpu_mem_peak_mib" in row else "")
        shares = " ".join(f"{k} {100 * v:.0f}%" for k, v in row["stage_share"].items())
        print(f"{set_name:>5} {name:<28} {row['images_per_second']:8.2f} img/s "
              f"({row['images']} in {row['seconds']} s, process {row['process_wall_s']} s), "
              f"CPU {row['cpu_util_pct']}%, {row['peak_rss_mb']} MB; {shares}{gpu}", flush=True)
        return row

    jobs = ["--jobs", str(args.jobs)]
    # 1. The default policy at batch 8, and the floor replaying its detections.
    for name, inp in sets.items():
        keep = os.path.join(tmp, f"records-{name}")
        r = measure("default b8", name, inp, dev + jobs + ["--batch", "8"], out=keep)
        if r and "error" not in r:
            measure(f"floor (replay, jobs {args.jobs})", name, inp,
                    jobs + ["--replay-detections", os.path.join(keep, "provenance.jsonl")])
    # 1b. Sessions by input shape off (every detect thread re-plans on each shape change).
    if args.device != "cpu":
        for name, inp in sets.items():
            measure("default b8 shape-sessions 0", name, inp, dev + jobs + ["--batch", "8"],
                    {"VEIL_CUDA_SHAPE_SESSIONS": "0"})
    # 2. Batches and scales.
    for name, inp in sets.items():
        for scales in ["multi", "single"]:
            for b in batches:
                if scales == "multi" and b == 8:
                    continue
                label = "default" if scales == "multi" else "single"
                measure(f"{label} b{b}", name, inp,
                        dev + jobs + ["--batch", str(b), "--scales", scales])
    # 3. Workers.
    for name, inp in sets.items():
        for j in [int(x) for x in args.sweep_jobs.split(",") if x]:
            measure(f"default b8 jobs {j}", name, inp, dev + ["--jobs", str(j), "--batch", "8"])
    # 4. Sessions, cuDNN search and TF32 (with --device auto they run where auto lands).
    if args.device != "cpu":
        for name, inp in sets.items():
            for n in [1, 4, 8]:
                measure(f"default b8 sessions {n}", name, inp, dev + jobs + ["--batch", "8"],
                        {"VEIL_CUDA_SESSIONS": str(n)})
        for name, inp in sets.items():
            measure("default b8 exhaustive", name, inp, dev + jobs + ["--batch", "8"],
                    {"VEIL_CUDA_CONV_SEARCH": "exhaustive"})
            measure("default b8 tf32", name, inp, dev + jobs + ["--batch", "8"],
                    {"VEIL_CUDA_TF32": "1"})
    # 5. The CPU alone on 16 photos of 12 MP.
    big = sets.get("12mp")
    if big:
        sub = os.path.join(tmp, "12mp-16")
        os.makedirs(sub, exist_ok=True)
        for f in sorted(os.listdir(big))[:16]:
            os.link(os.path.join(big, f), os.path.join(sub, f))
        measure("cpu default", "12mp16", sub, ["--device", "cpu"] + jobs)
        if args.device != "cpu":
            measure("default b8", "12mp16", sub, dev + jobs + ["--batch", "8"])
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
