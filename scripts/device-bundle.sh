#!/usr/bin/env bash
# Prepares .device/ (ignored by git) for the CUDA checks and benchmarks of benches/gpu_device.sh
# on this workplace's device machine, which can fetch nothing and receives at most 64 MiB per
# call. See benches/README.md, "CUDA on the device machine".
#
#   bash scripts/device-bundle.sh        # after `cargo build --release` and `veil models fetch`
#
# Makes:
#   .device/base/   the stripped veil binary and the compiled CUDA equality test (xz), the
#                   verified CenterFace model, and the shared photos and person model laid out
#                   as ../shared is (for VEIL_SHARED_DIR)
#   .device/pN/     the onnxruntime-gpu and onnxruntime files veil pins (one tar.xz: the CUDA
#                   provider alone is 284 MB), cut so that each device call stays under 64 MiB
# The NVIDIA CUDA 13 and cuDNN 9 libraries are not bundled: the device machine has them in its
# PyTorch environment, and benches/gpu_device.sh links them where veil looks for them.
set -euo pipefail
cd "$(dirname "$0")/.."
VEIL=${VEIL:-target/release/veil}
CACHE=${VEIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/veil}
CALL_BYTES=${CALL_BYTES:-66000000}   # under 64 MiB (67,108,864 bytes)
SHARED=../shared
[[ -x $VEIL ]] || { echo "device-bundle: build first: cargo build --release" >&2; exit 2; }
[[ -d $SHARED/images/faces ]] || { echo "device-bundle: needs $SHARED (the shared photos)" >&2; exit 2; }
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >>.git/info/exclude

rm -rf .device
mkdir -p .device/base/models .device/base/shared/images .device/base/shared/models .device/work
strip -o .device/base/veil "$VEIL"
xz -T0 -6 .device/base/veil
# The CUDA equality test (crates/veil/tests/cuda.rs), compiled here: the device has no Rust.
test_bin=$(cargo test --release -p veil --test cuda --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "cuda" and m.get("executable"):
        print(m["executable"])')
strip -o .device/base/cuda-test "$test_bin"
xz -T0 -6 .device/base/cuda-test
"$VEIL" models fetch >/dev/null
cp "$CACHE/models/centerface.onnx" "$CACHE/models/centerface-int8.onnx" .device/base/models/
cp -r "$SHARED/images/faces" "$SHARED/images/persons" .device/base/shared/images/
cp "$SHARED/models/yolox_nano.onnx" .device/base/shared/models/

# The CUDA runtime: exactly the files models.toml pins for [runtime.cuda], from the wheel pip
# fetches.
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
  --platform manylinux_2_28_x86_64 onnxruntime-gpu==1.31.1 -d .device/work
python3 - <<'PY'
import glob, os, zipfile
wheel = glob.glob(".device/work/onnxruntime_gpu-1.31.1-*.whl")[0]
out = ".device/work/rt/onnxruntime-gpu-1.31.1"
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in ["libonnxruntime.so.1.31.1", "libonnxruntime_providers_shared.so",
                 "libonnxruntime_providers_cuda.so"]:
        with z.open("onnxruntime/capi/" + name) as src, open(os.path.join(out, name), "wb") as dst:
            dst.write(src.read())
PY
# The CPU runtime too (verified by `veil models fetch` above), for the CPU side of the equality
# test and the CPU baseline on the same node.
cp -r "$CACHE/runtime/onnxruntime-1.31.1" .device/work/rt/
rm -rf .device/work/rt/onnxruntime-1.31.1/wheels
tar -C .device/work/rt -cf - . | xz -T0 -6 >.device/work/runtime.tar.xz
# Parts sized so that each call stays under 64 MiB with the working tree: the first travels
# with .device/base.
python3 - "$CALL_BYTES" <<'PY'
import os, subprocess, sys
call = int(sys.argv[1])
tree = sum(os.path.getsize(f) for f in subprocess.run(
    ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    capture_output=True, check=True).stdout.decode().split("\0") if f and os.path.isfile(f))
tree += 500_000
base = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(".device/base") for f in fs)
sizes = [call - tree - base] + [call - tree] * 99
with open(".device/work/runtime.tar.xz", "rb") as src:
    for n, size in enumerate(sizes, 1):
        chunk = src.read(size)
        if not chunk:
            break
        os.makedirs(f".device/p{n}", exist_ok=True)
        with open(f".device/p{n}/part-{n:02d}", "wb") as dst:
            dst.write(chunk)
PY
n=$(ls -d .device/p* | wc -l)
rm -rf .device/work
du -sh .device/base .device/p*
echo "device-bundle: $n runtime parts; carry .device/base and .device/p1 in the first call"
