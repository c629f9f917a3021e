# Sourced by tools/demo.sh and tools/tour.sh: where they write, the DDSNet GC checkpoint and image (seeded random
# weights, loudly flagged, when ../shared is absent), and `section`, which times each section of the output.
set -euo pipefail
cd "$(dirname "$0")/.."
TCC=.venv/bin/tcc
FIX=../shared/fixtures/ddsnet
OUT=out/demo
mkdir -p "$OUT"
if [ -f "$FIX/GC_DDS_0.0064.pth" ]; then
  WEIGHTS=(--weights "$FIX/GC_DDS_0.0064.pth" --by-order)
  INPUT=(--image "$FIX/GC.png")
  DIFF_INPUT="$FIX/GC.png"
else
  WEIGHTS=()
  .venv/bin/python -c "import numpy as np; np.save('$OUT/input.npy', np.random.default_rng(0).standard_normal((1,3,224,224)).astype('float32'))"
  INPUT=(--input "$OUT/input.npy")
  DIFF_INPUT="$OUT/input.npy"
fi
GRADCAM_IMAGE="$FIX/GC.png"
[ -f "$GRADCAM_IMAGE" ] || GRADCAM_IMAGE="$OUT/tfi/slide.png"

RUN_START=$SECONDS
SECTION=""
SECTION_START=$SECONDS
# `section TITLE`: close the section before (its wall time) and open the next; `section` alone closes the last and
# prints the run's total
section() {
  if [ -n "$SECTION" ]; then
    echo "   [${SECTION%%.*}: $((SECONDS - SECTION_START)) s]"
  fi
  if [ $# -gt 0 ]; then
    SECTION="$1"
    SECTION_START=$SECONDS
    echo "== $1"
  else
    echo "$(basename "$0" .sh): $((SECONDS - RUN_START)) s in all"
  fi
}
