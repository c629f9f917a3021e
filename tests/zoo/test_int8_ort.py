"""INT8 for every zoo spec on ONNX Runtime (`tcc build --target ort --precision int8` at test sizes): the build's
self-check passes (every integer op within 1 LSB of the reference on ORT's own codes), and the bundle's quality vs
FP32 on held-out inputs stays at or above its recorded floor (tests/int8_zoo.json)."""

from __future__ import annotations

import pytest

from tests.helpers.int8_zoo import build_and_measure, recorded, zoo_names


# MaxViT's one kind the others lack, a constant added to the scores, is checked on every backend on a small graph in
# CI (quant/test_int8_ops.py, quant/test_attention_int8.py); MaxViT itself with the slow tests
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "maxvit_t" else n for n in zoo_names(int8=True)]
)
def test_int8_ort(name, tmp_path):
    manifest, cosine = build_and_measure(name, "ort", tmp_path)
    result = manifest["self_check"]["result"]
    assert result["passed"] and result["per_op"]["max_lsb"] <= 1.0
    islands = manifest["quantization"].get("float_islands", [])  # checked too (MobileViT's softmax, LayerNorm)
    assert result["per_op"]["ops_checked"] == sum(manifest["quantization"]["integer_ops"].values()) + len(islands)
    want = recorded(name, "ort")
    print(
        f"\n[int8 ort] {name}: cosine vs FP32 {cosine:.6f} (recorded {want['measured']}, floor {want['floor']}), "
        f"end to end {result['max_abs_lsb']} LSB from the reference"
    )
    assert cosine >= want["floor"]
