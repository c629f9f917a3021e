"""The graph input's quantization without a division (backends/tvm/int8/lower.py: `exact_quotient`, the ARMv7 form of
`quantize_input_primfunc`): the quotient by multiply-adds equals float32's correctly rounded x / s, checked in a
float32 emulation of the fused multiply-add at every tie k + 1/2 (and a few ulps around it) for random scales,
and the compiled module (host, and arm-a7 under qemu where the toolchain is set up) gives the integer
reference's codes, infinities, subnormals and values past the clamp included."""

from __future__ import annotations

import numpy as np
import pytest

from tcc.backends.tvm.int8.tir import QUOTIENT_CLAMP, exact_quotient, exact_quotient_applies
from tcc.quant.intgraph.qtypes import QParams
from tcc.quant.intgraph.reference import quantize_input
from tests.helpers.tvm_util import IEEE, skip_unless_runtime


def fma32(a, b, c):
    """float32 fma(a, b, c) = RN32(a b + c), one rounding: the product is exact in float64, the sum's float64
    rounding error is recovered exactly (TwoSum) and, where the float64 sum lies on a float32 midpoint, moves
    it one float64 ulp the error's way, so that the conversion to float32 does not round twice."""
    a, b, c = (np.asarray(v, np.float32).astype(np.float64) for v in (a, b, c))
    p = a * b
    s = p + c
    back = s - p
    err = (p - (s - back)) + (c - back)
    t = np.ldexp(np.frexp(s)[0], 25)
    midpoint = (t == np.floor(t)) & (np.mod(t, 2) == 1)
    s = np.where(midpoint & (err != 0), np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(np.float32)


def clamp32(v, lo, hi):
    return np.minimum(np.maximum(v, np.float32(lo)), np.float32(hi)).astype(np.float32)


def near_ties(s: np.float32, k_max: int = 300, ulps: int = 6) -> np.ndarray:
    """float32 x nearest (k + 1/2) s for |k| <= k_max, and `ulps` neighbours on each side."""
    x0 = ((np.arange(-k_max, k_max) + 0.5) * np.float64(s)).astype(np.float32)
    xs, up, down = [x0], x0, x0
    for _ in range(ulps):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))
        xs += [up, down]
    return np.concatenate(xs)


def test_fma32_emulation_rounds_once():
    """The emulation where a float64 sum would land on a float32 midpoint: a a + 2^-60 must round up (the float64
    sum alone is the midpoint, which the conversion then rounds to even: down)."""
    a = np.float32(1 + 2.0**-12)  # a * a = 1 + 2^-11 + 2^-24: a float32 midpoint, plus 2^-60 from c
    assert fma32(a, a, np.float32(2.0**-60)) == np.float32(1 + 2.0**-11 + 2.0**-23)
    assert fma32(a, a, np.float32(0)) == np.float32(1 + 2.0**-11)  # the tie itself: to even


def test_exact_quotient_equals_division_at_ties():
    rng = np.random.default_rng(0)
    scales = np.concatenate([[1 / 255, 1 / 127, 2.0**-7, 1.0, 3.0, 0.1, 1e-3], 10 ** rng.uniform(-8, 4, 200)]).astype(
        np.float32
    )
    for s in scales:
        x = np.concatenate([near_ties(s), (rng.standard_normal(500) * s * 200).astype(np.float32)])
        want = x / s
        got = exact_quotient(x, float(s), fma32, clamp32)
        inside = np.abs(want) < QUOTIENT_CLAMP  # beyond it: clamped, past every code bound (below)
        np.testing.assert_array_equal(got[inside], want[inside], err_msg=f"scale {s!r}")
        assert np.all(np.sign(got[~inside]) == np.sign(want[~inside]))
        assert np.all(np.abs(got[~inside]) >= QUOTIENT_CLAMP * (1 - 2.0**-23))


def test_exact_quotient_bounds():
    assert exact_quotient_applies(QParams(1 / 255, 0, 0, 255))
    assert exact_quotient_applies(QParams(0.02, -3, -128, 127))
    assert not exact_quotient_applies(QParams(2.0**-110, 0, 0, 255))  # its residuals would be subnormal
    assert not exact_quotient_applies(QParams(0.1, 0, -(2**31), 2**31 - 1))  # codes past the clamp


# ---------------------------------------------------------------------------------------------------- compiled
def _inputs(p: QParams, width: int) -> np.ndarray:
    """NCHW [1, 3, rows, width]: ties around every code, values past both bounds, infinities, subnormals, zeros."""
    s = np.float32(p.scale)
    special = np.array([np.inf, -np.inf, 3e38, -3e38, 1e-40, -1e-40, 0.0, -0.0, 1e-38, s / 2, -s / 2], np.float32)
    x = np.concatenate([near_ties(s, k_max=p.hi - p.zp + 4, ulps=2), special])
    x = np.concatenate([x, np.zeros(-len(x) % (3 * width), np.float32)])
    return x.reshape(1, 3, -1, width)


def _module(shape, p: QParams, reciprocal: bool):
    """main(x) = the quantized input, channels last (the transpose fused behind it, as in a model)."""
    from tvm import relax

    from tcc.backends.tvm.int8.tir import quantize_input_primfunc

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            func = bb.add_func(quantize_input_primfunc(shape, p, reciprocal), "tcc_quantize_input")
            codes = bb.emit(relax.call_tir(func, [x], relax.TensorType(shape, p.dtype)))
            gv = bb.emit_output(bb.emit(relax.op.permute_dims(codes, [0, 2, 3, 1])))
        bb.emit_func_output(gv)
    return bb.get()


@pytest.mark.parametrize("target", ["host", "arm-a7", "aarch64-dotprod"])
@pytest.mark.parametrize("p", [QParams(1 / 255, 0, 0, 255), QParams(0.0173, 11, -128, 127)])
def test_compiled_quantize_matches_reference(target, p, tmp_path):
    """Compiled with the multiply-adds and with the division: both give the reference's codes, and a NaN's code
    (which the reference leaves undefined) is the same in both forms. (AArch64: LLVM's loop vectorizer, `st3`.)"""
    pytest.importorskip("tvm")
    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import runner as tvm_run

    skip_unless_runtime(target)
    x = _inputs(p, 16)
    with np.errstate(over="ignore"):  # 3e38 / s: infinite, clamped
        want = quantize_input(x, p).transpose(0, 2, 3, 1)
    forms = {"reciprocal": True, "division": False}
    nan = x.copy()
    nan.flat[-1] = np.nan
    got_nan = {}
    for name, reciprocal in forms.items():
        so = tvm_compile.compile_module(_module(list(x.shape), p, reciprocal), target, tmp_path / f"{name}.so", IEEE)
        outs, _ = tvm_run.run_module(so, target, [x])
        np.testing.assert_array_equal(outs[0].astype(np.int64), want, err_msg=f"{target} {name}")
        got_nan[name] = tvm_run.run_module(so, target, [nan])[0][0].reshape(-1)[-1]
    assert len(set(got_nan.values())) == 1, got_nan


# ---------------------------------------------------------------------------------------------- ARMv7 RGB kernel
def test_rgb_kernel_applies():
    """One static RGB image of whole 8-pixel passes, 8-bit codes clamped only to their type, the quotient's bounds;
    else the PrimFunc's form (a width of 12, a grey image, a batch of 2, a ReLU-like clamp, 16-bit codes)."""
    from tcc.backends.tvm.int8.quantize_rgb import applies

    u8, s8 = QParams(1 / 255, 0, 0, 255), QParams(0.0173, 11, -128, 127)
    assert applies([1, 3, 224, 224], u8) and applies([1, 3, 16, 8], s8)
    assert not applies([1, 3, 16, 12], u8)
    assert not applies([1, 1, 16, 16], u8)
    assert not applies([2, 3, 16, 16], u8)
    assert not applies([1, 3, 16, 16], QParams(1 / 255, 0, 10, 255))
    assert not applies([1, 3, 16, 16], QParams(0.01, 0, -32768, 32767))
    assert not applies([1, 3, 16, 16], QParams(2.0**-110, 0, 0, 255))


def _rgb_module(shape, p: QParams):
    """main(x) = ARMv7's RGB kernel's codes (channels last), as the lowering calls it."""
    from tvm import relax

    from tcc.backends.tvm.int8.quantize_rgb import quantize_rgb_primfunc

    n, c, h, w = shape
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            func = bb.add_func(quantize_rgb_primfunc(shape, p), "tcc_quantize_input")
            gv = bb.emit_output(bb.emit(relax.call_tir(func, [x], relax.TensorType([n, h, w, c], p.dtype))))
        bb.emit_func_output(gv)
    return bb.get()


@pytest.mark.parametrize(
    "p", [QParams(1 / 255, 0, 0, 255), QParams(0.0173, 11, -128, 127), QParams(0.05, -7, -128, 127)]
)
def test_rgb_kernel_matches_reference(p, tmp_path):
    """The assembly loop under qemu (Cortex-A7) gives the reference's codes at every tie, past both bounds, for
    infinities and subnormals, on several rows (the planes' pointers advance by rows); a NaN gives the zero point's
    code (the reference leaves it undefined)."""
    pytest.importorskip("tvm")
    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import runner as tvm_run

    skip_unless_runtime("arm-a7")
    x = _inputs(p, 16)
    with np.errstate(over="ignore"):  # 3e38 / s: infinite, clamped
        want = quantize_input(x, p).transpose(0, 2, 3, 1)
    so = tvm_compile.compile_module(_rgb_module(list(x.shape), p), "arm-a7", tmp_path / "rgb.so", IEEE)
    nan = x.copy()
    nan[0, 1, -1, 5] = np.nan
    outs, _ = tvm_run.run_module(so, "arm-a7", [x])
    np.testing.assert_array_equal(outs[0].astype(np.int64), want)
    got = tvm_run.run_module(so, "arm-a7", [nan])[0][0].astype(np.int64)
    assert got[0, -1, 5, 1] == p.zp
    got[0, -1, 5, 1] = want[0, -1, 5, 1]
    np.testing.assert_array_equal(got, want)
