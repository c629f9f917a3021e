#!/usr/bin/env bash
# `make demo`: the main job on built-in defaults. Checks the DDSNet spec, classifies the real GC image with the
# authors' checkpoint (seeded random weights, loudly flagged, when ../shared is absent), builds an ONNX Runtime
# bundle and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
TCC=.venv/bin/tcc
FIX=../shared/fixtures/ddsnet
$TCC check spec/ddsnet.yaml | tail -n 3
if [ -f "$FIX/GC_DDS_0.0064.pth" ]; then
  WEIGHTS=(--weights "$FIX/GC_DDS_0.0064.pth" --by-order)
  INPUT=(--image "$FIX/GC.png")
else
  WEIGHTS=()
  .venv/bin/python -c "import numpy as np; np.save('/tmp/tcc-demo-input.npy', np.random.default_rng(0).standard_normal((1,3,224,224)).astype('float32'))"
  INPUT=(--input /tmp/tcc-demo-input.npy)
fi
echo "== PyTorch lowering"
$TCC predict spec/ddsnet.yaml "${WEIGHTS[@]}" "${INPUT[@]}" --json
echo "== ONNX Runtime bundle"
$TCC build spec/ddsnet.yaml --target ort "${WEIGHTS[@]}" -o out/ddsnet-ort --force
$TCC predict --artifact out/ddsnet-ort "${INPUT[@]}" --json
