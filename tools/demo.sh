#!/usr/bin/env bash
# `make demo`: the main job on built-in defaults (about 4 minutes on 2 idle cores after `make setup-arm` before
# section 9, which adds ~110 s), on the DDSNet spec and the authors' GC checkpoint (seeded random weights, loudly
# flagged, when ../shared is absent); each section's wall time is printed after it:
#   1. check the spec (and one by its zoo name); classify the real GC image with the PyTorch lowering
#   2. an ONNX Runtime bundle, run
#   3. the headline: a Cortex-A7 (arm-a7) TVM bundle with its deployment kit, run here under qemu-arm
#   4. INT8: calibrate (KL + cosine) on crops of real histology, build the arm-a7 INT8 bundle (integer kernels, bit
#      for bit equal to the integer reference), run it; the same table on the Cortex-A55 of the AX650 / AX620E
#   5. TFLite for a phone: FP32, and full INT8 calibrated under TFLite's rules (bit for bit equal to the integer
#      reference on LiteRT's reference kernels), run in LiteRT
#   6. the paper's NPU: a kit for the AX620 (Pulsar v1) with the predicted per-layer table in Pulsar's shape
#   7. where two backends part: `tcc diff` layer by layer, and the golden-output suite checking a few entries
#   8. tcc train in 2 processes (DistributedDataParallel) on crops of two real histology images, the trained
#      checkpoint built for ONNX Runtime and run; a slide's tumour map with the GC checkpoint (tcc slide: FastNet's
#      tissue mask and patch grid); Grad-CAM on the GC image (tcc explain)
#   9. segmentation: DDS-U-Net (tcc's light U-Net) trained on tiles of a real IHC image whose mask is the DAB stain
#      above Otsu's threshold, built INT8 for the Cortex-A7 (self-checked under qemu) and TFLite, judged by the mask;
#      its mask and overlay of a tile, and a slide's mask from tiles that stitch without seams
# `make tour` (tools/tour.sh) continues from here with the long tour: the Cortex-A55 and x86 INT8 twins, QAT, W8A16,
# the AX650 kit, t-SNE and fine-tuning, bringing your own ONNX model, attention in YAML.
# shellcheck source=tools/demo_common.sh
source "$(dirname "$0")/demo_common.sh"
$TCC check spec/ddsnet.yaml | tail -n 1
$TCC zoo | head -n 3                                     # the shipped specs: any command takes their names
$TCC check fastnet | tail -n 1
section "1. PyTorch lowering"
$TCC predict spec/ddsnet.yaml "${WEIGHTS[@]}" "${INPUT[@]}" --json
section "2. ONNX Runtime bundle"
$TCC build spec/ddsnet.yaml --target ort "${WEIGHTS[@]}" -o "$OUT/ddsnet-ort" --force | tail -n 2
$TCC predict --artifact "$OUT/ddsnet-ort" "${INPUT[@]}" --json
section "3. Cortex-A7 bundle (TVM, NEON), run under qemu-arm with the kit's own runner"
$TCC build spec/ddsnet.yaml --target arm-a7 "${WEIGHTS[@]}" -o "$OUT/ddsnet-a7" --force --count-instructions \
  | tail -n 6
$TCC predict --artifact "$OUT/ddsnet-a7" "${INPUT[@]}" --json
section "4. INT8 for the Cortex-A7: calibrate on 64 crops of real histology, build, run"
.venv/bin/python -c "import tcc; tcc.make_crops('$OUT/crops', 64, seed=0)"
$TCC calibrate spec/ddsnet.yaml "${WEIGHTS[@]}" --data "$OUT/crops" --target arm-a7 -o "$OUT/calib.json" \
  --force --no-compare | tail -n 12
$TCC build spec/ddsnet.yaml --target arm-a7 --precision int8 --calib "$OUT/calib.json" "${WEIGHTS[@]}" \
  -o "$OUT/ddsnet-a7-int8" --force --count-instructions | tail -n 7
$TCC predict --artifact "$OUT/ddsnet-a7-int8" "${INPUT[@]}" --json
echo "   executed instructions INT8 / FP32 (the 1 x 1 convs' tiles in assembly: docs/notes/arm-dot-microkernel.md):"
.venv/bin/python -c "import json; n = lambda d: json.load(open(f'$OUT/{d}/manifest.json'))['target_checks']\
['instructions_per_inference']['total']; print(f'   arm-a7 {n(\"ddsnet-a7-int8\") / n(\"ddsnet-a7\"):.3f}')"
echo "   the same table on the Cortex-A55 of the AX650 / AX620E (sdot), self-checked under qemu-aarch64:"
$TCC build spec/ddsnet.yaml --target ax620e-a55 --precision int8 --calib "$OUT/calib.json" "${WEIGHTS[@]}" \
  -o "$OUT/ddsnet-a55-int8" --force 2>/dev/null | grep -E "^self-check" | cut -c 1-160
section "5. TFLite (LiteRT): FP32, and INT8 calibrated under TFLite's rules on the same crops"
$TCC build spec/ddsnet.yaml --target tflite "${WEIGHTS[@]}" -o "$OUT/ddsnet-tflite" --force 2>/dev/null | tail -n 2
$TCC calibrate spec/ddsnet.yaml "${WEIGHTS[@]}" --data "$OUT/crops" --target tflite -o "$OUT/calib-tflite.json" \
  --force --no-compare | tail -n 3
$TCC build spec/ddsnet.yaml --target tflite --precision int8 --calib "$OUT/calib-tflite.json" "${WEIGHTS[@]}" \
  -o "$OUT/ddsnet-tflite-int8" --force 2>/dev/null | tail -n 5
$TCC predict --artifact "$OUT/ddsnet-tflite-int8" "${INPUT[@]}" --json 2>/dev/null
section "6. Axera NPUs: an AX620 kit (Pulsar v1) with its predicted precision table"
echo "   every calibration and INT8 build from data ends with its fidelity line; below the floor (mean cosine 0.99,"
echo "   or a top-1 class changed on a judged sample) a WARNING names the fix, and --require-cos makes it an error"
$TCC calibrate spec/ddsnet.yaml "${WEIGHTS[@]}" --data "$OUT/crops" --target ax620 -o "$OUT/calib-ax620.json" \
  --force --no-compare --report-samples 8 | tail -n 8
$TCC build spec/ddsnet.yaml --target ax620 --calib "$OUT/calib-ax620.json" --data "$OUT/crops" "${WEIGHTS[@]}" \
  -o "$OUT/ddsnet-ax620" --force | tail -n 5
section "7. Where do two backends part? tcc diff, tensor by tensor; and the golden outputs"
$TCC diff reference "$OUT/ddsnet-tflite-int8" --spec spec/ddsnet.yaml "${WEIGHTS[@]}" --input "$DIFF_INPUT" | head -n 4
$TCC diff spec/ddsnet.yaml "$OUT/ddsnet-tflite-int8" "${WEIGHTS[@]}" --input "$DIFF_INPUT" --min-cosine 0.999 \
  --max-rel 0.05 | head -n 4
if [ -f "$FIX/GC_DDS_0.0064.pth" ]; then
  $TCC golden check tests/golden --model ddsnet --entry ort-int8 --entry tflite-int8 --entry reference-ax620 -q \
    2>/dev/null | tail -n 6
fi
section "8. Train (2 processes, DDP), build and run what was trained; a slide's tumour map; Grad-CAM"
.venv/bin/python tools/demo_patches.py "$OUT/tfi"
MB=(spec/baselines/mobilenet_v2.yaml --set image_size=64 --set num_classes=2)
$TCC train "${MB[@]}" --data "$OUT/tfi/patches" --epochs 5 --batch-size 8 --optimizer sgd --lr 0.01 --nproc 2 \
  -o "$OUT/train" --force --no-progress 2>/dev/null | tail -n 2
$TCC build "${MB[@]}" --weights "$OUT/train/best.pt" --target ort -o "$OUT/trained-ort" --force | tail -n 1
for src in "$OUT"/tfi/sources/*.png; do
  echo "$(basename "$src"): $($TCC predict --artifact "$OUT/trained-ort" --image "$src" --json)"
done
echo "   the heat map scores the patches at least half tissue (FastNet's eq. 4); the rest stay blank"
$TCC slide spec/ddsnet.yaml "${WEIGHTS[@]}" --image "$OUT/tfi/slide.png" --patch-size 128 --positive-class TUM \
  -o "$OUT/slide" --force --no-progress 2>/dev/null
$TCC explain spec/ddsnet.yaml "${WEIGHTS[@]}" --image "$GRADCAM_IMAGE" -o "$OUT/gradcam.png" --force 2>/dev/null
section "9. Segmentation: DDS-U-Net learns a stain's mask; INT8 for the Cortex-A7 and TFLite; a tile's and a slide's mask"
.venv/bin/python tools/demo_masks.py "$OUT/seg"   # IHC tiles; the mask: DAB stain above Otsu's threshold
DU=(spec/dds_unet.yaml --set image_size=64)
$TCC check "${DU[@]}" | tail -n 1
$TCC train "${DU[@]}" --data "$OUT/seg/tiles" --epochs 6 --batch-size 8 --optimizer adam --lr 0.01 \
  -o "$OUT/seg/train" --force --no-progress 2>/dev/null | tail -n 2
for target in arm-a7 tflite; do
  $TCC build "${DU[@]}" --weights "$OUT/seg/train/best.pt" --target $target --precision int8 \
    --data "$OUT/seg/tiles/images" -o "$OUT/seg/$target-int8" --force 2>/dev/null | grep -E "^(self-check|INT8 fid)"
done
$TCC predict --artifact "$OUT/seg/arm-a7-int8" --image "$OUT/seg/tiles/images/t27.jpg" --masks "$OUT/seg/masks" \
  --force 2>/dev/null
$TCC slide spec/dds_unet.yaml --set image_size=512 --weights "$OUT/seg/train/best.pt" --image "$OUT/seg/slide.png" \
  --segment -o "$OUT/seg/slide" --force --no-progress 2>&1 | grep -v "^WARNING"
section
echo "bundles in $OUT/: copy ddsnet-a7/ (or ddsnet-a7-int8/) to the board and run kit/run.sh input.bin output.bin;"
echo "ddsnet-tflite/ and ddsnet-tflite-int8/ run in LiteRT on a phone (their README.md says how); ddsnet-ax620/ is a"
echo "kit for Axera's toolchain: sh build.sh inside its Docker image; train/ (best.pt, log.json, curves.png), slide/"
echo "(heatmap.png, mask.png, patches.json), gradcam.png; seg/ (the U-Net's run, its arm-a7 and TFLite INT8 bundles,"
echo "masks/ of a tile, slide/segmentation.tiff). \`make tour\` shows the rest."
