#!/usr/bin/env bash
# `make demo`: the main job on built-in defaults, on the DDSNet spec and the authors' GC checkpoint (seeded random
# weights, loudly flagged, when ../shared is absent):
#   1. check the spec (and one by its zoo name); classify the real GC image with the PyTorch lowering
#   2. an ONNX Runtime bundle, run
#   3. the headline: a Cortex-A7 (arm-a7) TVM bundle with its deployment kit, run here under qemu-arm
#   4. INT8: calibrate (KL + cosine) on crops of real histology, build the arm-a7 INT8 bundle (integer kernels, bit
#      for bit equal to the integer reference), run it; the same table for the Cortex-A55 (sdot) and this x86 host
#      (AMX tiles for the stem where the CPU has them); quantization-aware fine-tuning from that table (tcc qat,
#      distilled on the same crops) and the arm-a7 INT8 bundle of its weights and table
#   5. TFLite for a phone: FP32, and full INT8 calibrated under TFLite's rules (bit for bit equal to the integer
#      reference on LiteRT's reference kernels), and W8A16 (LiteRT's 16x8 mode), run in LiteRT
#   6. the paper's NPU: a kit for the AX620 (Pulsar v1) with the predicted per-layer table in Pulsar's shape, and an
#      AX650 kit (Pulsar2) carrying tcc's scales as QDQ ONNX; Axera's toolchains run in their Docker images
#   7. where two backends part: `tcc diff` layer by layer (TFLite INT8 vs the integer reference, and vs FP32), and
#      the golden-output suite (tests/golden) checking a few of its entries
#   8. tcc train in 2 processes (DistributedDataParallel) on crops of two real histology images, the trained
#      checkpoint built for ONNX Runtime and run; t-SNE of its features; the GC checkpoint fine-tuned to the two
#      classes (its head re-initialised, the backbone frozen); a slide's tumour map with the GC checkpoint
#      (tcc slide: FastNet's tissue mask and patch grid); Grad-CAM on the GC image (tcc explain)
#   9. bring your own model: torchvision's MobileNetV3-Small exported by torch.onnx.export, `tcc import`ed into a
#      spec and weights (checked against ONNX Runtime on the file), built INT8 for the Cortex-A7; a 2-class export
#      with a dynamic height and width trained directly (tcc train model.onnx --set size=64: imported in memory)
#  10. attention in YAML: timm's MobileViT-XXS as a zoo spec (multi-head attention, unfold / fold of patches written
#      with the tensor ops), built FP32 for ONNX Runtime and TVM host and run; INT8 at 128 x 128 for ONNX Runtime
#      TVM host and TFLite (matmul of two activations and slices as integer kinds, softmax and LayerNorm float
#      islands), TVM's integer ops and TFLite bit-exact with the integer reference, and W8A16 in LiteRT's 16x8 mode;
#      its ONNX and a narrow Swin's read
#      back by `tcc import` (Swin's folded relative position bias and window mask as the spec's ops); Pulsar v1
#      (AX620) refuses it
set -euo pipefail
cd "$(dirname "$0")/.."
TCC=.venv/bin/tcc
FIX=../shared/fixtures/ddsnet
OUT=out/demo
mkdir -p "$OUT"
$TCC check spec/ddsnet.yaml | tail -n 1
$TCC zoo | head -n 3                                     # the shipped specs: any command takes their names
$TCC check fastnet | tail -n 1
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
echo "== 1. PyTorch lowering"
$TCC predict spec/ddsnet.yaml "${WEIGHTS[@]}" "${INPUT[@]}" --json
echo "== 2. ONNX Runtime bundle"
$TCC build spec/ddsnet.yaml --target ort "${WEIGHTS[@]}" -o "$OUT/ddsnet-ort" --force | tail -n 2
$TCC predict --artifact "$OUT/ddsnet-ort" "${INPUT[@]}" --json
echo "== 3. Cortex-A7 bundle (TVM, NEON), run under qemu-arm with the kit's own runner"
$TCC build spec/ddsnet.yaml --target arm-a7 "${WEIGHTS[@]}" -o "$OUT/ddsnet-a7" --force --count-instructions \
  | tail -n 6
$TCC predict --artifact "$OUT/ddsnet-a7" "${INPUT[@]}" --json
echo "== 4. INT8 for the Cortex-A7: calibrate on 64 crops of real histology, build, run"
.venv/bin/python -c "from tcc.quant.collect.crops import make_crops; make_crops('$OUT/crops', 64, seed=0)"
$TCC calibrate spec/ddsnet.yaml "${WEIGHTS[@]}" --data "$OUT/crops" --target arm-a7 -o "$OUT/calib.json" \
  --no-compare | tail -n 12
$TCC build spec/ddsnet.yaml --target arm-a7 --precision int8 --calib "$OUT/calib.json" "${WEIGHTS[@]}" \
  -o "$OUT/ddsnet-a7-int8" --force --count-instructions | tail -n 7
$TCC predict --artifact "$OUT/ddsnet-a7-int8" "${INPUT[@]}" --json
echo "   executed instructions INT8 / FP32 (the 1 x 1 convs' tiles in assembly: docs/notes/arm-dot-microkernel.md):"
.venv/bin/python -c "import json; n = lambda d: json.load(open(f'$OUT/{d}/manifest.json'))['target_checks']\
['instructions_per_inference']['total']; print(f'   arm-a7 {n(\"ddsnet-a7-int8\") / n(\"ddsnet-a7\"):.3f}')"
echo "   the same table on the Cortex-A55 of the AX650 / AX620E (sdot), self-checked and counted under qemu-aarch64:"
$TCC build spec/ddsnet.yaml --target ax620e-a55 --precision int8 --calib "$OUT/calib.json" "${WEIGHTS[@]}" \
  -o "$OUT/ddsnet-a55-int8" --force --count-instructions 2>/dev/null | grep -E "^self-check|^executed" | cut -c 1-160
echo "   and on this x86 host (TVM host INT8; where the CPU has AMX-INT8 and the OS grants its tiles, the stem and its"
echo "   max pool run as one kernel on AMX tiles, tdpbusd: docs/notes/amx-stem.md; elsewhere on VNNI / AVX2):"
$TCC build spec/ddsnet.yaml --target host --precision int8 --calib "$OUT/calib.json" "${WEIGHTS[@]}" \
  -o "$OUT/ddsnet-host-int8" --force 2>/dev/null | grep -E "^self-check|^instruction mix" | cut -c 1-160
echo "   the transitions pool before their 1x1 conv (pass pool_before_conv: FP32 conv MACs 284.6 M -> 222.2 M); in INT8"
echo "   each is one pooled_conv, the conv on the exact window sums of its input's codes (never rounded to 8 bits):"
.venv/bin/python -c "import json; ops = json.load(open('$OUT/ddsnet-a7-int8/manifest.json'))['quantization']['integer_ops']; \
print('   integer ops:', ', '.join(f'{k} {v}' for k, v in sorted(ops.items())))"
if [ -f "$FIX/GC_DDS_0.0064.pth" ]; then
  echo "   quantization-aware fine-tuning from that table (tcc qat: distilled from the FP32 model on the same crops,"
  echo "   no labels; the table's integer graph fake-quantized), rebuilt for the Cortex-A7 with its weights and table"
  $TCC qat spec/ddsnet.yaml "${WEIGHTS[@]}" --calib "$OUT/calib.json" --data "$OUT/crops" --epochs 4 -o "$OUT/qat" \
    --force 2>&1 | grep -E "^qat: (epoch [04]|INT8)" | cut -c 1-160
  $TCC build spec/ddsnet.yaml --target arm-a7 --precision int8 --weights "$OUT/qat/weights.pt" \
    --calib "$OUT/qat/calib.json" -o "$OUT/ddsnet-a7-int8-qat" --force | grep -E "^self-check|^wrote" | cut -c 1-200
fi
echo "== 5. TFLite (LiteRT): FP32, and INT8 calibrated under TFLite's rules on the same crops"
$TCC build spec/ddsnet.yaml --target tflite "${WEIGHTS[@]}" -o "$OUT/ddsnet-tflite" --force 2>/dev/null | tail -n 2
$TCC calibrate spec/ddsnet.yaml "${WEIGHTS[@]}" --data "$OUT/crops" --target tflite -o "$OUT/calib-tflite.json" \
  --no-compare | tail -n 3
$TCC build spec/ddsnet.yaml --target tflite --precision int8 --calib "$OUT/calib-tflite.json" "${WEIGHTS[@]}" \
  -o "$OUT/ddsnet-tflite-int8" --force 2>/dev/null | tail -n 5
$TCC predict --artifact "$OUT/ddsnet-tflite-int8" "${INPUT[@]}" --json 2>/dev/null
echo "   W8A16 (int16 activations, LiteRT's 16x8 mode with int32 bias), calibrated on the same crops"
$TCC build spec/ddsnet.yaml --target tflite16-i32 --precision int8 --data "$OUT/crops" "${WEIGHTS[@]}" \
  -o "$OUT/ddsnet-tflite-w8a16" --force 2>/dev/null | grep -E "^self-check|^wrote"
$TCC predict --artifact "$OUT/ddsnet-tflite-w8a16" "${INPUT[@]}" --json 2>/dev/null
echo "== 6. Axera NPUs: an AX620 kit (Pulsar v1) with its predicted precision table, an AX650 kit (Pulsar2, QDQ)"
$TCC calibrate spec/ddsnet.yaml "${WEIGHTS[@]}" --data "$OUT/crops" --target ax620 -o "$OUT/calib-ax620.json" \
  --no-compare --report-samples 8 | tail -n 8
$TCC build spec/ddsnet.yaml --target ax620 --calib "$OUT/calib-ax620.json" --data "$OUT/crops" "${WEIGHTS[@]}" \
  -o "$OUT/ddsnet-ax620" --force | tail -n 5
$TCC build spec/ddsnet.yaml --target ax650 --data "$OUT/crops" "${WEIGHTS[@]}" -o "$OUT/ddsnet-ax650" --force \
  2>/dev/null | tail -n 3
echo "== 7. Where do two backends part? tcc diff, tensor by tensor; and the golden outputs"
$TCC diff reference "$OUT/ddsnet-tflite-int8" --spec spec/ddsnet.yaml "${WEIGHTS[@]}" --input "$DIFF_INPUT" | head -n 4
$TCC diff spec/ddsnet.yaml "$OUT/ddsnet-tflite-int8" "${WEIGHTS[@]}" --input "$DIFF_INPUT" --min-cosine 0.999 \
  --max-rel 0.05 | head -n 4
if [ -f "$FIX/GC_DDS_0.0064.pth" ]; then
  $TCC golden check tests/golden --model ddsnet --entry ort-int8 --entry tflite-int8 --entry reference-ax620 -q \
    2>/dev/null | tail -n 6
fi
echo "== 8. Train (2 processes, DDP), build and run what was trained; a slide's tumour map; Grad-CAM and t-SNE"
.venv/bin/python tools/demo_patches.py "$OUT/tfi"
MB=(spec/baselines/mobilenet_v2.yaml --set image_size=64 --set num_classes=2)
$TCC train "${MB[@]}" --data "$OUT/tfi/patches" --epochs 5 --batch-size 8 --optimizer sgd --lr 0.01 --nproc 2 \
  -o "$OUT/train" --force --no-progress 2>/dev/null | tail -n 2
$TCC build "${MB[@]}" --weights "$OUT/train/best.pt" --target ort -o "$OUT/trained-ort" --force | tail -n 1
for src in "$OUT"/tfi/sources/*.png; do
  echo "$(basename "$src"): $($TCC predict --artifact "$OUT/trained-ort" --image "$src" --json)"
done
$TCC explain "${MB[@]}" --weights "$OUT/train/best.pt" --tsne "$OUT/tfi/patches" -o "$OUT/tsne.png" | tail -n 2
if [ -f "$FIX/GC_DDS_0.0064.pth" ]; then  # fine-tuning to a new class count: GC's 6-class head re-initialised for 2
  $TCC train spec/ddsnet.yaml "${WEIGHTS[@]}" --set image_size=64 --data "$OUT/tfi/patches" --freeze backbone \
    --epochs 3 --batch-size 16 --optimizer adam --lr 0.01 -o "$OUT/finetune" --force --no-progress 2>&1 \
    | grep -E "^head:|^freeze:|^best:" | cut -c 1-160
fi
$TCC slide spec/ddsnet.yaml "${WEIGHTS[@]}" --image "$OUT/tfi/slide.png" --patch-size 128 --positive-class TUM \
  -o "$OUT/slide" --no-progress 2>/dev/null
GRADCAM_IMAGE="$FIX/GC.png"
[ -f "$GRADCAM_IMAGE" ] || GRADCAM_IMAGE="$OUT/tfi/slide.png"
$TCC explain spec/ddsnet.yaml "${WEIGHTS[@]}" --image "$GRADCAM_IMAGE" -o "$OUT/gradcam.png" 2>/dev/null
echo "== 9. Bring your own model: torchvision's MobileNetV3-Small as ONNX (torch.onnx.export), imported, INT8 on arm-a7"
.venv/bin/python tools/demo_export.py "$OUT/mobilenet_v3_small.onnx" 2>/dev/null
mkdir -p "$OUT/imported"
$TCC import "$OUT/mobilenet_v3_small.onnx" -o "$OUT/imported/mobilenet_v3_small.yaml" --mean 0.485 0.456 0.406 \
  --std 0.229 0.224 0.225 --force
$TCC build "$OUT/imported/mobilenet_v3_small.yaml" --weights "$OUT/imported/mobilenet_v3_small.pt" --target arm-a7 \
  --precision int8 --data "$OUT/crops" --calib-size 32 -o "$OUT/imported-a7-int8" --force 2>/dev/null \
  | grep -E "^self-check|^wrote" | cut -c 1-200
echo "   an ONNX file wherever a spec goes: a 2-class export with a dynamic height and width fine-tuned as it is"
.venv/bin/python tools/demo_export.py "$OUT/mnv3-2class.onnx" --classes 2 --size 64 --dynamic-size 2>/dev/null
$TCC train "$OUT/mnv3-2class.onnx" --set size=64 --set mean=[0.485,0.456,0.406] --set std=[0.229,0.224,0.225] \
  --data "$OUT/tfi/patches" --epochs 2 --batch-size 16 -o "$OUT/train-onnx" --force --no-progress 2>/dev/null \
  | tail -n 1 | cut -c 1-200
echo "== 10. Attention in YAML: timm's MobileViT-XXS (zoo spec mobilevit_xxs), FP32 on ONNX Runtime and TVM host"
$TCC check mobilevit_xxs | tail -n 1
$TCC build mobilevit_xxs --target ort -o "$OUT/mobilevit-ort" --force 2>/dev/null | grep -E "^self-check|^wrote" \
  | cut -c 1-200
$TCC build mobilevit_xxs --target host -o "$OUT/mobilevit-host" --force 2>/dev/null | grep -E "^vs_onnx|^wrote" \
  | cut -c 1-200
$TCC predict --artifact "$OUT/mobilevit-host" --image "$GRADCAM_IMAGE" --json
echo "   INT8 at 128 x 128 (matmul of two activations, slices; softmax integer on TVM's targets, a float island on"
echo "   ORT and TFLite; LayerNorm a float island everywhere; arm-a7's instruction counts at 256:"
echo "   docs/notes/tie-free-requantization.md)"
for target in ort host arm-a7 tflite; do
  $TCC build mobilevit_xxs --set image_size=128 --target $target --precision int8 --data "$OUT/crops" \
    --calib-size 32 -o "$OUT/mobilevit-$target-int8" --force 2>/dev/null | grep -E "^self-check|^wrote" \
    | cut -c 1-200
done
echo "   an accuracy floor (--min-cos 0.9999, above this INT8 build's 0.999) on TVM's targets widens activations to"
echo "   16 bits before it keeps any node in float: the model stays integer (docs/int8.md#the-placement-step)"
$TCC build mobilevit_xxs --set image_size=128 --target arm-a7 --precision int8 --data "$OUT/crops" --calib-size 32 \
  --min-cos 0.9999 --place-samples 8 -o "$OUT/mobilevit-arm-a7-int8-placed" --force 2>&1 \
  | grep -E "^precision placement|^self-check" | cut -c 1-320
echo "   and on TFLite in LiteRT's 16x8 mode (--activation-bits 16: int16 ADD, MUL, BATCH_MATMUL, LOGISTIC, each"
echo "   integer op bit-exact with LiteRT's kernel; softmax and LayerNorm float islands)"
$TCC build mobilevit_xxs --set image_size=128 --target tflite --precision int8 --data "$OUT/crops" --calib-size 32 \
  --activation-bits 16 -o "$OUT/mobilevit-tflite-w8a16" --force 2>/dev/null | grep -E "^self-check|^wrote" \
  | cut -c 1-200
echo "   int8 builtins only (--target tflite-int, for int8-only runtimes): DDSNet with no float op; a softmax there is"
echo "   LiteRT's int8 SOFTMAX, bit-exact with the reference; MobileViT's LayerNorms are refused before calibration"
$TCC build spec/ddsnet.yaml --target tflite-int --precision int8 --data "$OUT/crops" --calib-size 32 --method kl \
  "${WEIGHTS[@]}" -o "$OUT/ddsnet-tflite-int" --force 2>/dev/null | grep -E "^self-check|^wrote" | cut -c 1-200
{ $TCC build mobilevit_xxs --set image_size=128 --target tflite-int --precision int8 --data "$OUT/crops" \
  -o "$OUT/mobilevit-tflite-int" 2>&1 1>/dev/null || true; } | { grep -E "^error|^  node" || true; } | head -n 2 \
  | cut -c 1-160
echo "   tcc import reads that ONNX back into a spec: reshapes, permutes, q / k / v slices, the matmuls with their"
echo "   1 / sqrt(d), linear layers over tokens; checked against ONNX Runtime"
mkdir -p "$OUT/imported-mobilevit"
$TCC import "$OUT/mobilevit-ort/model.onnx" -o "$OUT/imported-mobilevit/mobilevit_xxs.yaml" --force 2>/dev/null \
  | head -n 1 | cut -c 1-200
echo "   and Swin (a narrow swin_t): the relative position bias and the shifted-window mask, folded into constants by"
echo "   the export, read back as relative_position_bias (its table recovered) and window_mask"
$TCC build swin_t --set embed_dim=24 --set "depths=[2,2,2,2]" --set "heads=[1,2,2,4]" --target ort \
  -o "$OUT/swin-ort" --force >/dev/null 2>&1
mkdir -p "$OUT/imported-swin"
$TCC import "$OUT/swin-ort/model.onnx" -o "$OUT/imported-swin/swin_t.yaml" --force 2>/dev/null | head -n 1 \
  | cut -c 1-200
grep -cE "op: (relative_position_bias|window_mask)" "$OUT/imported-swin/swin_t.yaml" \
  | sed 's/^/   window ops in the imported spec: /'
echo "   Pulsar v1 (AX620) has no rank-6 reshape or LayerNorm: refused before calibration, naming the nodes"
{ $TCC build mobilevit_xxs --set image_size=128 --target ax620 --precision int8 --data "$OUT/crops" \
  -o "$OUT/mobilevit-ax620-int8" 2>&1 1>/dev/null || true; } | { grep -E "^error|^  node" || true; } | head -n 3 \
  | cut -c 1-160
echo "bundles in $OUT/: copy ddsnet-a7/ (or ddsnet-a7-int8/) to the board and run kit/run.sh input.bin output.bin;"
echo "ddsnet-tflite/, ddsnet-tflite-int8/ and ddsnet-tflite-w8a16/ run in LiteRT on a phone (their README.md says how);"
echo "ddsnet-ax620/ and ddsnet-ax650/ are kits for Axera's toolchains: sh build.sh inside their Docker images;"
echo "train/ (best.pt, log.json, curves.png), slide/ (heatmap.png, mask.png, patches.json), tsne.png, gradcam.png"
