#!/usr/bin/env bash
# Benchmark 3 (issue 6) on this workplace's device machine: CUDA at --batch 1, 8 and 32 and where
# the time goes, with the bundle of scripts/device-bundle.sh (see benches/README.md, "Benchmark 3
# on the device machine").
#
#   bash benches/gpu_device.sh stash     # every call: keep the carried parts in /tmp/veil-device
#   bash benches/gpu_device.sh run       # the last call: assemble, check, smoke test, benchmark
#
# Writes its log and results under $OUT (or ./device-out when OUT is unset). Needs python3 (the
# device's PyTorch environment supplies it, and the CUDA 13 / cuDNN 9 libraries).
set -euo pipefail
STASH=/tmp/veil-device
OUT=${OUT:-$PWD/device-out}
# Overridable to try the flow without a GPU: DEVICE=cpu BATCHES=1 LIMIT=2.
DEVICE=${DEVICE:-cuda}
BATCHES=${BATCHES:-1,8,32}
LIMIT=${LIMIT:-16}
mkdir -p "$STASH" "$OUT"

stash() {
  [[ -d .device/base ]] && { rm -rf "$STASH/base"; cp -r .device/base "$STASH/base"; }
  for p in .device/p*/part-*; do
    [[ -e $p ]] && cp "$p" "$STASH/"
  done
  ls -la "$STASH"
}

assemble() {
  export VEIL_CACHE_DIR=$STASH/cache
  local rt=$VEIL_CACHE_DIR/runtime/onnxruntime-gpu-1.31.1
  mkdir -p "$rt" "$VEIL_CACHE_DIR/models" "$STASH/bin"
  python3 - "$STASH" "$VEIL_CACHE_DIR/runtime" <<'PY'
import glob, io, lzma, os, sys, tarfile
stash, runtimes = sys.argv[1], sys.argv[2]
with open(os.path.join(stash, "base", "veil.xz"), "rb") as f:
    data = lzma.decompress(f.read())
with open(os.path.join(stash, "bin", "veil"), "wb") as f:
    f.write(data)
os.chmod(os.path.join(stash, "bin", "veil"), 0o755)
parts = sorted(glob.glob(os.path.join(stash, "part-*")))
blob = b"".join(open(p, "rb").read() for p in parts)
with tarfile.open(fileobj=io.BytesIO(lzma.decompress(blob))) as t:
    t.extractall(runtimes, filter="data")
print(f"runtimes from {len(parts)} parts: {sorted(os.listdir(runtimes))}")
PY
  cp "$STASH"/base/models/*.onnx "$VEIL_CACHE_DIR/models/"
  # The NVIDIA libraries veil would fetch as onnxruntime-gpu[cuda,cudnn]: taken from the device's
  # Python environment (CUDA 13, cuDNN 9), linked where veil preloads them from.
  local libs=$rt/nvidia-libs
  mkdir -p "$libs"
  local site
  site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  find "$site/nvidia" -path '*/lib/*.so*' -type f -exec ln -sf {} "$libs/" \; 2>/dev/null || true
  echo "$(ls "$libs" | wc -l) NVIDIA libraries linked from $site/nvidia"
  touch "$libs/.complete"
  VEIL=$STASH/bin/veil
}

run() {
  assemble
  {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    "$VEIL" --version
    "$VEIL" models verify
    # Smoke: the CUDA provider must be used, not the CPU fallback of --device auto.
    rm -rf /tmp/veil-smoke
    "$VEIL" redact "$STASH/base/photos" /tmp/veil-smoke --device "$DEVICE" --jobs 8 || {
      echo "CUDA smoke run failed; libraries the provider cannot find:"
      ldd "$VEIL_CACHE_DIR/runtime/onnxruntime-gpu-1.31.1/libonnxruntime_providers_cuda.so" \
        | grep 'not found' || true
      exit 1
    }
    python3 - "$STASH/base/photos" /tmp/veil-12mp-dev "$LIMIT" <<'PY'
import math, os, sys
from PIL import Image, ImageOps
src, dst, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(dst, exist_ok=True)
for name in sorted(os.listdir(src))[:limit]:
    im = ImageOps.exif_transpose(Image.open(os.path.join(src, name))).convert("RGB")
    s = math.sqrt(12_000_000 / (im.width * im.height))
    im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS).save(
        os.path.join(dst, os.path.splitext(name)[0] + ".jpg"), quality=92)
print(f"12 MP set: {len(os.listdir(dst))} photos")
PY
    python3 benches/gpu_batch.py "$STASH/base/photos" --veil "$VEIL" --jobs 8 \
      --device "$DEVICE" --batches "$BATCHES" --results "$OUT"
    python3 benches/gpu_batch.py /tmp/veil-12mp-dev --veil "$VEIL" --jobs 8 \
      --device "$DEVICE" --batches "$BATCHES" --results "$OUT"
    # The same node's 16 cores without the GPU, for comparison.
    python3 benches/gpu_batch.py /tmp/veil-12mp-dev --veil "$VEIL" --jobs 16 --batches 1 \
      --device cpu --results "$OUT"
  } 2>&1 | tee "$OUT/gpu_device.log"
}

case ${1:-} in
  stash) stash ;;
  run) stash; run ;;
  assemble) stash; assemble; "$VEIL" models verify ;;
  *) echo "usage: $0 stash|run|assemble" >&2; exit 2 ;;
esac
