#!/usr/bin/env bash
# The CUDA checks and benchmarks (issue 19) on this workplace's device machine, with the bundle
# of scripts/device-bundle.sh (see benches/README.md, "CUDA on the device machine").
#
#   bash benches/gpu_device.sh stash     # every call: keep the carried parts in /tmp/veil-device
#   bash benches/gpu_device.sh run       # the last call: assemble, check, test, benchmark
#
# Writes its log and results under $OUT (or ./device-out when OUT is unset). Needs python3 with
# Pillow (the device's PyTorch environment has it, and the CUDA 13 / cuDNN 9 libraries).
# To try the whole flow here first with the CPU standing in for the GPU:
#   DEVICE=cpu SMALL_COPIES=1 BIG_COPIES=1 BUDGET_S=60 bash benches/gpu_device.sh run
set -euo pipefail
STASH=/tmp/veil-device
OUT=${OUT:-$PWD/device-out}
DEVICE=${DEVICE:-cuda}
SMALL_COPIES=${SMALL_COPIES:-48}   # 20 photos each: 960 small photos
BIG_COPIES=${BIG_COPIES:-6}        # 16 photos each: 96 photos of 12 MP
BUDGET_S=${BUDGET_S:-330}          # for the benchmark matrix
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
  mkdir -p "$VEIL_CACHE_DIR/models" "$STASH/bin"
  python3 - "$STASH" "$VEIL_CACHE_DIR/runtime" <<'PY'
import glob, io, lzma, os, sys, tarfile
stash, runtimes = sys.argv[1], sys.argv[2]
for name in ["veil", "cuda-test"]:
    with open(os.path.join(stash, "base", name + ".xz"), "rb") as f:
        data = lzma.decompress(f.read())
    with open(os.path.join(stash, "bin", name), "wb") as f:
        f.write(data)
    os.chmod(os.path.join(stash, "bin", name), 0o755)
parts = sorted(glob.glob(os.path.join(stash, "part-*")))
blob = b"".join(open(p, "rb").read() for p in parts)
with tarfile.open(fileobj=io.BytesIO(lzma.decompress(blob))) as t:
    t.extractall(runtimes, filter="data")
print(f"runtimes from {len(parts)} parts: {sorted(os.listdir(runtimes))}")
PY
  cp "$STASH"/base/models/*.onnx "$VEIL_CACHE_DIR/models/"
  VEIL=$STASH/bin/veil
  "$VEIL" models add --family yolox --name yolox-nano \
    --file "$STASH/base/shared/models/yolox_nano.onnx" >/dev/null
  local rt=$VEIL_CACHE_DIR/runtime/onnxruntime-gpu-1.31.1
  if [[ -d $rt ]]; then
    # The NVIDIA libraries veil would fetch as onnxruntime-gpu[cuda,cudnn]: taken from the
    # device's Python environment (CUDA 13, cuDNN 9), linked where veil preloads them from.
    local libs=$rt/nvidia-libs site
    mkdir -p "$libs"
    site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    find "$site/nvidia" -path '*/lib/*.so*' \( -type f -o -type l \) \
      -exec ln -sf {} "$libs/" \; 2>/dev/null || true
    echo "$(ls "$libs" | wc -l) NVIDIA libraries linked from $site/nvidia"
    touch "$libs/.complete"
  fi
}

make_sets() {
  rm -rf /tmp/veil-small /tmp/veil-12mp
  mkdir -p /tmp/veil-small
  local src=$STASH/base/shared/images
  for k in $(seq 1 "$SMALL_COPIES"); do
    for f in "$src"/faces/* "$src"/persons/*; do
      b=$(basename "$f")
      cp "$f" "/tmp/veil-small/c${k}_${b}"
    done
  done
  # 12 MP versions of the face photos (Lanczos, JPEG quality 92), BIG_COPIES times each.
  python3 - "$src/faces" /tmp/veil-12mp "$BIG_COPIES" <<'PY'
import math, os, shutil, sys
from multiprocessing import Pool
from PIL import Image, ImageOps
src, dst, copies = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(dst, exist_ok=True)
def make(name):
    im = ImageOps.exif_transpose(Image.open(os.path.join(src, name))).convert("RGB")
    s = math.sqrt(12_000_000 / (im.width * im.height))
    base = os.path.splitext(name)[0]
    first = os.path.join(dst, f"c1_{base}.jpg")
    im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS).save(first, quality=92)
    for k in range(2, copies + 1):
        shutil.copy(first, os.path.join(dst, f"c{k}_{base}.jpg"))
with Pool() as p:
    p.map(make, sorted(os.listdir(src)))
print(f"12 MP set: {len(os.listdir(dst))} photos")
PY
  echo "small set: $(ls /tmp/veil-small | wc -l) photos"
  cat /tmp/veil-small/* /tmp/veil-12mp/* >/dev/null
}

run() {
  assemble
  {
    echo "== machine"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    echo "cores: $(nproc)"
    "$VEIL" --version
    echo "== veil models verify"
    "$VEIL" models verify || echo "MODELS VERIFY FAILED"
    echo "== veil doctor --device $DEVICE"
    if ! "$VEIL" doctor --device "$DEVICE"; then
      local rt=$VEIL_CACHE_DIR/runtime/onnxruntime-gpu-1.31.1
      echo "DOCTOR FAILED; libraries the CUDA provider cannot find on the loader's path:"
      ldd "$rt/libonnxruntime_providers_cuda.so" | grep 'not found' || true
      # Diagnostic fallback, so that the rest still measures CUDA: the linked libraries on the
      # loader's path. If this works where veil's own preloading did not, that is a bug to fix.
      export LD_LIBRARY_PATH=$rt/nvidia-libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
      echo "== veil doctor --device $DEVICE with LD_LIBRARY_PATH=$rt/nvidia-libs (fallback)"
      "$VEIL" doctor --device "$DEVICE" || echo "DOCTOR FAILED AGAIN"
    fi
    echo "== CUDA equality test (crates/veil/tests/cuda.rs)"
    local require=1
    [[ $DEVICE == cuda* ]] || require=0
    VEIL_TEST_BIN=$VEIL VEIL_SHARED_DIR=$STASH/base/shared VEIL_REQUIRE_CUDA=$require \
      VEIL_TEST_GPU_DEVICE=$DEVICE timeout 240 "$STASH/bin/cuda-test" --nocapture --test-threads 1 \
      2>&1 | grep -v '^veil: [0-9]*/[0-9]* images' || echo "CUDA TEST FAILED"
    echo "== sets"
    make_sets
    echo "== benchmark matrix"
    python3 benches/gpu_batch.py --set small=/tmp/veil-small --set 12mp=/tmp/veil-12mp \
      --veil "$VEIL" --device "$DEVICE" --jobs "$(nproc)" --budget-s "$BUDGET_S" --results "$OUT"
  } 2>&1 | tee "$OUT/gpu_device.log"
}

case ${1:-} in
  stash) stash ;;
  run) stash; run ;;
  assemble) stash; assemble; "$VEIL" models verify ;;
  *) echo "usage: $0 stash|run|assemble" >&2; exit 2 ;;
esac
