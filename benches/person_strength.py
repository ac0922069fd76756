#!/usr/bin/env python3
"""How much detail person obfuscation leaves, per mode and strength (issue 15, part 2).

    python3 benches/person_strength.py [--veil target/release/veil] [--divisors 6,5,4,3]

Runs `veil redact` on the shared face and person photos with `--detect faces,persons` for each
person mode (pixelate, blur, fill) and each strength divisor (`6s` = the old rule, short side / 6;
a number = long side / that number, through a policy file), and measures, in the core (central
50 % per axis) of every recorded person region and of every labelled non-hard person box, the
high-frequency energy of the output over the source's: the mean absolute second difference of
luma at a step of 2 px, as veil's validation measures it. Prints the worst and median ratio and
the number of images that failed. Needs Pillow and numpy, and YOLOX-Nano imported.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image, ImageOps

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")


def luma(path):
    im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    a = np.asarray(im, dtype=np.float64)
    return 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]


def hf(l, box, grid=None):
    """Mean |second difference| at a step of 2 px over the core; with grid = (ax, ay, side)
    only triplets inside one pixelation block count (block edges are not detail)."""
    x1, y1, x2, y2 = box
    qw, qh = (x2 - x1) * 0.25, (y2 - y1) * 0.25
    h, w = l.shape
    cx0, cx1 = max(0, int(np.ceil(x1 + qw))), min(w, int(np.floor(x2 - qw)))
    cy0, cy1 = max(0, int(np.ceil(y1 + qh))), min(h, int(np.floor(y2 - qh)))
    c = l[cy0:cy1, cx0:cx1]
    xs, ys = np.arange(cx0, cx1), np.arange(cy0, cy1)
    if grid:
        ax, ay, side, m = grid
        bx, by = (xs - ax) // side, (ys - ay) // side
        # pixels within m of a block edge never pair (ringing at block edges is not detail)
        px, py = (xs - ax) % side, (ys - ay) % side
        bx = np.where((px >= m) & (px + m < side), bx, -10**9 - xs)
        by = np.where((py >= m) & (py + m < side), by, -10**9 - ys)
    else:
        bx, by = np.zeros_like(xs), np.zeros_like(ys)
    vals = []
    if c.shape[1] > 4:
        keep = bx[:-4] == bx[4:]
        vals.append(np.abs(c[:, :-4] - 2 * c[:, 2:-2] + c[:, 4:])[:, keep].ravel())
    if c.shape[0] > 4:
        keep = by[:-4] == by[4:]
        vals.append(np.abs(c[:-4] - 2 * c[2:-2] + c[4:])[keep].ravel())
    vals = [v for v in vals if v.size]
    if not vals:
        return None
    return float(np.concatenate(vals).mean())


def ratio(src, dst, box, mode, div, grid_box=None):
    """Output over source energy, as veil validates it: for pixelation the better of all pairs
    and pairs inside one block of the grid of `grid_box` (the region as veil pixelated it: the
    detection grown by the person box_scale; default `box`)."""
    gb = grid_box or box
    o, n = hf(src, box), hf(dst, box)
    if not o or n is None or o < 2.0:
        return None
    if n < 2.0:
        return 0.0  # below the floor: no detail left to speak of (as veil validates)
    r = n / o
    if mode == "pixelate" and r > 0.0:
        side = max(4, int(np.ceil(np.floor(max(gb[2] - gb[0], gb[3] - gb[1])) / float(div))))
        grid = (int(np.floor(gb[0])), int(np.floor(gb[1])), side, 2 if side >= 12 else 0)
        o2, n2 = hf(src, box, grid), hf(dst, box, grid)
        if o2 and n2 is not None:
            r = min(r, n2 / o2)
    return r


def grow(b, scale, shape):
    """A detection grown about its centre by `scale` and clipped to the image, as veil does."""
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    hw, hh = (b[2] - b[0]) * scale / 2, (b[3] - b[1]) * scale / 2
    return [max(0.0, cx - hw), max(0.0, cy - hh), min(float(shape[1]), cx + hw), min(float(shape[0]), cy + hh)]


def overlap(a, b):
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--veil", default="target/release/veil")
    ap.add_argument("--divisors", default="6,5,4,3")
    ap.add_argument("--modes", default="pixelate,blur,fill")
    args = ap.parse_args()
    labels = json.load(open(os.path.join(SHARED, "labels", "persons.json")))
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "in")
        os.makedirs(inp)
        for sub in ["faces", "persons"]:
            d = os.path.join(SHARED, "images", sub)
            for f in os.listdir(d):
                shutil.copy(os.path.join(d, f), os.path.join(inp, f))
        print("| mode | strength | failed images | regions | worst ratio | median | labelled persons: worst | median |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for mode in args.modes.split(","):
            for div in args.divisors.split(","):
                out = os.path.join(tmp, f"out-{mode}-{div}")
                cmd = [args.veil, "redact", inp, out, "--detect", "faces,persons",
                       "--person-mode", mode, "--device", "cpu", "-q", "--fresh"]
                if div != "6s":
                    pol = os.path.join(tmp, f"p{div}.toml")
                    with open(pol, "w") as f:
                        f.write(f"[person]\nstrength_divisor = {div}\n")
                    cmd += ["--policy", pol]
                p = subprocess.run(cmd, capture_output=True, text=True)
                if p.returncode not in (0, 1):
                    sys.exit(p.stderr)
                recs = [json.loads(l) for l in open(os.path.join(out, "provenance.jsonl"))]
                failed = [r["path"] for r in recs if r["status"] == "failed"]
                ratios, lab = [], []
                for r in recs:
                    if r["status"] == "failed":
                        continue
                    src, dst = luma(os.path.join(inp, r["path"])), luma(os.path.join(out, r["path"]))
                    scale = r["params"]["policy"]["person"]["redact"]["box_scale"]
                    boxes = [grow([d["box"][k] for k in ("x1", "y1", "x2", "y2")], scale, src.shape)
                             for d in r["detections"] if d["class"] == "person"]
                    for b in boxes:
                        v = ratio(src, dst, b, mode, div)
                        if v is not None:
                            ratios.append(v)
                    for l in labels.get(r["path"], []):
                        if l.get("hard") or l.get("ignore"):
                            continue
                        cover = max(boxes, key=lambda b: overlap(b, l["box"]), default=None)
                        v = ratio(src, dst, l["box"], mode, div, cover)
                        if v is not None:
                            lab.append(v)
                ratios.sort()
                lab.sort()
                med = lambda v: v[len(v) // 2] if v else float("nan")
                print(f"| {mode} | {'short/6' if div == '6s' else 'long/' + div} | {len(failed)} "
                      f"| {len(ratios)} | {max(ratios, default=float('nan')):.3f} | {med(ratios):.3f} "
                      f"| {max(lab, default=float('nan')):.3f} | {med(lab):.3f} |", flush=True)
                for f in failed:
                    r = next(x for x in recs if x["path"] == f)
                    print(f"  failed {f}: {r['error']}", flush=True)


if __name__ == "__main__":
    main()
