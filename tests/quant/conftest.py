"""Fixtures the quantization tests share: the small FP32 model most of them calibrate and its calibration data."""

from __future__ import annotations

import pytest

from tests.helpers.quant_models import tiny_cnn, tiny_data


@pytest.fixture(scope="module")
def model():
    """quant_models.tiny_cnn(): conv, depthwise, pointwise, concat, pools and a gemm."""
    return tiny_cnn()


@pytest.fixture(scope="module")
def data():
    """24 calibration inputs for `model`."""
    return tiny_data(24)
