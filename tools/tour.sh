#!/usr/bin/env bash
# `make tour`: the long tour, after `make demo` (it reads the demo's crops and tables in out/demo/); each section's
# wall time is printed after it:
#   1. the demo's arm-a7 INT8 table on the Cortex-A55 of the AX650 / AX620E (sdot) and on this x86 host; the
#      pooled_conv kinds
#   2. quantization-aware fine-tuning (tcc qat) on the Skin checkpoint, judged on held-out crops against the
#      post-training table (tools/qat_quality.py: where QAT gains, and by how much)
#   3. W8A16 on TFLite (LiteRT's 16x8 mode); the AX650 kit (Pulsar2, QDQ)
#   4. t-SNE of the trained model's features; the GC checkpoint fine-tuned to two classes (its head re-initialised,
#      the backbone frozen)
#   5. bring your own model: torchvision's MobileNetV3-Small exported by torch.onnx.export, `tcc import`ed into a
#      spec and weights (checked against ONNX Runtime on the file), built INT8 for the Cortex-A7; a 2-class export
#      with a dynamic height and width trained directly (tcc train model.onnx --set size=64: imported in memory)
#   6. attention in YAML: timm's MobileViT-XXS as a zoo spec, FP32 on ONNX Runtime and TVM host; INT8 at 128 x 128
#      for ONNX Runtime, TVM host, arm-a7 and TFLite, W8A16 in LiteRT's 16x8 mode; its ONNX and a narrow Swin's
#      read back by `tcc import`; Pulsar v1 (AX620) refuses it
# shellcheck source=tools/demo_common.sh
source "$(dirname "$0")/demo_common.sh"
[ -f "$OUT/calib.json" ] && [ -d "$OUT/crops" ] && [ -f "$OUT/train/best.pt" ] \
  || { echo "tour: run make demo first (the tour reads its crops, tables and trained model in $OUT/)" >&2; exit 2; }
MB=(spec/baselines/mobilenet_v2.yaml --set image_size=64 --set num_classes=2)
section "1. The demo's INT8 table on the Cortex-A55 (instructions counted) and on this x86 host"
echo "   the demo's Cortex-A55 bundle again, its executed instructions counted under qemu-aarch64:"
$TCC build spec/ddsnet.yaml --target ax620e-a55 --precision int8 --calib "$OUT/calib.json" "${WEIGHTS[@]}" \
  -o "$OUT/ddsnet-a55-int8" --force --count-instructions 2>/dev/null | grep -E "^executed" | cut -c 1-160
echo "   and on this x86 host (TVM host INT8; where the CPU has AMX-INT8 and the OS grants its tiles, the stem and its"
echo "   max pool run as one kernel on AMX tiles, tdpbusd: docs/notes/amx-stem.md; elsewhere on VNNI / AVX2):"
$TCC build spec/ddsnet.yaml --target host --precision int8 --calib "$OUT/calib.json" "${WEIGHTS[@]}" \
  -o "$OUT/ddsnet-host-int8" --force 2>/dev/null | grep -E "^self-check|^instruction mix" | cut -c 1-160
echo "   the transitions pool before their 1x1 conv (pass pool_before_conv: FP32 conv MACs 284.6 M -> 222.2 M); in INT8"
echo "   each is one pooled_conv, the conv on the exact window sums of its input's codes (never rounded to 8 bits):"
.venv/bin/python -c "import json; ops = json.load(open('$OUT/ddsnet-a7-int8/manifest.json'))['quantization']['integer_ops']; \
print('   integer ops:', ', '.join(f'{k} {v}' for k, v in sorted(ops.items())))"
section "2. Quantization-aware fine-tuning (tcc qat) where it gains: the Skin checkpoint, on held-out crops"
if [ -f "$FIX/Skin_DDS_0.0064.pth" ]; then
  echo "   post-training (tcc calibrate's defaults) vs the same table after tcc qat, ORT INT8 vs the published FP32, on"
  echo "   32 held-out crops (docs/notes/qat.md: the worst crop gains; the mean moves within the run-to-run spread)"
  .venv/bin/python tools/qat_quality.py --checkpoints Skin -o "$OUT/qat-skin.json" 2>/dev/null | tail -n 3 \
    | cut -c 1-200
else
  echo "   (skipped: the DDSNet fixtures are not in $FIX)"
fi
section "3. W8A16 on TFLite (LiteRT's 16x8 mode); the AX650 kit (Pulsar2 with tcc's scales as QDQ ONNX)"
echo "   W8A16 (int16 activations, LiteRT's 16x8 mode with int32 bias), calibrated on the same crops"
$TCC build spec/ddsnet.yaml --target tflite16-i32 --precision int8 --data "$OUT/crops" "${WEIGHTS[@]}" \
  -o "$OUT/ddsnet-tflite-w8a16" --force 2>/dev/null | grep -E "^self-check|^wrote"
$TCC predict --artifact "$OUT/ddsnet-tflite-w8a16" "${INPUT[@]}" --json 2>/dev/null
$TCC build spec/ddsnet.yaml --target ax650 --data "$OUT/crops" "${WEIGHTS[@]}" -o "$OUT/ddsnet-ax650" --force \
  2>/dev/null | tail -n 3
section "4. t-SNE of the trained model's features; fine-tuning a checkpoint to a new class count"
$TCC explain "${MB[@]}" --weights "$OUT/train/best.pt" --tsne "$OUT/tfi/patches" -o "$OUT/tsne.png" --force | tail -n 2
if [ -f "$FIX/GC_DDS_0.0064.pth" ]; then  # fine-tuning to a new class count: GC's 6-class head re-initialised for 2
  $TCC train spec/ddsnet.yaml "${WEIGHTS[@]}" --set image_size=64 --data "$OUT/tfi/patches" --freeze backbone \
    --epochs 3 --batch-size 16 --optimizer adam --lr 0.01 -o "$OUT/finetune" --force --no-progress 2>&1 \
    | grep -E "^head:|^freeze:|^best:" | cut -c 1-160
fi
section "5. Bring your own model: torchvision's MobileNetV3-Small as ONNX (torch.onnx.export), imported, INT8 on arm-a7"
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
section "6. Attention in YAML: timm's MobileViT-XXS (zoo spec mobilevit_xxs), FP32 on ONNX Runtime and TVM host"
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
section
echo "more in $OUT/: ddsnet-a55-int8/ and ddsnet-host-int8/, ddsnet-tflite-w8a16/, ddsnet-ax650/ (sh build.sh in"
echo "Pulsar2's Docker image), imported-a7-int8/, mobilevit-*/; tsne.png, qat-skin.json"
