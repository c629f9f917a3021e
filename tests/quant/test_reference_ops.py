"""The integer reference's residual Add (TFLite-style ADD): parameters, unit behaviour vs float, and in a graph."""

from __future__ import annotations

import numpy as np

from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.qtypes import QParams
from tcc.quant.intgraph.reference import ADD_LEFT_SHIFT, QTensor, add_int, add_params, run_reference
from tests.helpers.quant_models import residual_model


def _codes(q, zp: int, scale: float) -> QTensor:
    """An input of the add: its codes at (scale, zp) (its code range is not the add's business)."""
    return QTensor(np.asarray(q), QParams(scale, zp, -(1 << 15), (1 << 15) - 1))


def _float_add_codes(a: QTensor, b: QTensor, out: QParams):
    """What a float backend does: dequantize both, add in float64, quantize (round half to even)."""
    y = (a.q - a.zp) * np.float64(a.scale) + (b.q - b.zp) * np.float64(b.scale)
    return np.clip(np.rint(y / np.float64(out.scale)) + out.zp, out.lo, out.hi)


def test_add_params_are_tflite_style():
    p = add_params(0.02, 0.05, 0.04)
    assert p["left_shift"] == ADD_LEFT_SHIFT == 20
    for key, real in (("a", 0.02 / 0.1), ("b", 0.05 / 0.1), ("out", 0.1 / (2**20 * 0.04))):
        q, shift = p[key]
        assert 2**30 <= q < 2**31
        assert abs(q * 2.0 ** (shift - 31) / real - 1) < 1e-9
    assert p["b"] == (2**30, 0)  # the larger input is exactly 1/2 of twice_max


def test_add_int_within_one_lsb_of_float():
    rng = np.random.default_rng(0)
    worst = 0
    for _ in range(200):
        s_a, s_b = rng.uniform(1e-3, 0.2, 2)
        s_o = rng.uniform(0.5, 2.0) * max(s_a, s_b)
        a_signed, b_signed, o_signed = rng.integers(0, 2, 3).astype(bool)
        rng_a = (-128, 127) if a_signed else (0, 255)
        rng_b = (-128, 127) if b_signed else (0, 255)
        lo, hi = (-128, 127) if o_signed else (0, 255)
        a = rng.integers(rng_a[0], rng_a[1] + 1, 4096)
        b = rng.integers(rng_b[0], rng_b[1] + 1, 4096)
        args = _codes(a, 0, s_a), _codes(b, 0, s_b), QParams(s_o, 0, lo, hi)
        got, want = add_int(*args), _float_add_codes(*args)
        worst = max(worst, int(np.abs(got - want).max()))
    assert worst <= 1, worst


def test_add_int_zero_points_and_exact_cases():
    # equal scales: the sum is exact (no rounding): codes add
    a = np.arange(-60, 60)
    b = np.arange(60, -60, -1) // 2
    s8 = QParams(0.1, 0, -128, 127)
    np.testing.assert_array_equal(add_int(_codes(a, 0, 0.1), _codes(b, 0, 0.1), s8), a + b)
    # zero points are subtracted from the inputs and added to the output
    got = add_int(_codes([10, 70], 10, 0.1), _codes([-5, 5], -5, 0.1), QParams(0.1, 3, -128, 127))
    np.testing.assert_array_equal(got, [3, 3 + 60 + 10])
    # saturation at the output range
    one = QParams(1.0, 0, -128, 127)
    assert add_int(_codes([127], 0, 1.0), _codes([127], 0, 1.0), one).tolist() == [127]
    assert add_int(_codes([-128], 0, 1.0), _codes([-128], 0, 1.0), one).tolist() == [-128]


def test_reference_runs_residual_add_within_one_lsb():
    """In a graph: the Add's codes vs float addition of the reference's own (dequantized) input codes."""
    rng = np.random.default_rng(3)
    for fused in (True, False):
        m = residual_model(fused_relu=fused)
        t = calibrate_onnx(m, rng.standard_normal((16, 3, 12, 12)).astype(np.float32), method="minmax", target="tvm")
        _, q = run_reference(m, t, rng.standard_normal((4, 3, 12, 12)).astype(np.float32), return_all=True)
        out = q["res"]
        assert "c2" in q and "r1" in q
        a, b = q["c2"], q["r1"]
        want = _float_add_codes(a, b, out.params)
        if fused:  # the fused ReLU clamps at the zero point
            want = np.maximum(want, out.zp)
        diff = np.abs(out.q - want)
        assert diff.max() <= 1 and (diff == 0).mean() > 0.95, (diff.max(), (diff == 0).mean())
