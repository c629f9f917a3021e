"""The golden set's other models (FastNet, ResNet-18, MobileNetV2, EfficientNet-B0 at 64 x 64, MobileViT-XXS at
128 x 128, the U-Net with transposed convs and with bilinear resizes at 32 x 32; seeded weights): each entry not
marked slow against its stored output. tools/golden.sh checks the slow ones too."""

from __future__ import annotations

import pytest

from tcc.golden import check, format_rows, load_plan
from tests.helpers import FIXTURES, GOLDEN
from tests.helpers.marks import needs_fixtures

pytestmark = needs_fixtures
MODELS = [m for m in load_plan(GOLDEN).models if m != "ddsnet"] if FIXTURES.is_dir() else []


# CI checks FastNet beside DDSNet; EfficientNet-B0's squeeze-excitation and SiLU lookups are checked against the
# integer reference on every backend in CI by zoo/test_int8_ort.py and quant/test_int8_ops.py, and ResNet-18 and
# MobileNetV2 add no op or backend those lack. MobileViT-XXS's attention (matmul, slices, float islands) is held to
# the integer reference in CI on ORT (zoo/test_int8_ort.py), TFLite (backends/test_tflite.py), TFLite 16x8
# (backends/test_tflite16.py) and QAT (train/test_qat.py); its golden entries, the longest CI test after DDSNet's,
# are with the three in tools/slow_tests.sh. The U-Nets' transposed convs (the integer conv of their phases) and
# bilinear resizes (exact integers) are held to the reference on every backend by quant/test_spatial_int8.py, and
# DDS-U-Net adds only DDSNet's layers (CI's golden DDSNet) to them
SLOW = ("resnet18", "mobilenet_v2", "efficientnet_b0", "mobilevit_xxs", "unet", "unet_bilinear", "dds_unet")


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW else m for m in MODELS])
def test_zoo_golden_outputs(model):
    rows = check(GOLDEN, models=[model])
    assert not [r for r in rows if r.failed], format_rows(rows)
    assert len(rows) >= 10
