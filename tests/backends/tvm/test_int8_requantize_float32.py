"""The requantization as one float32 multiply-add (backends/tvm/int8/requantize_float32.py): parameters checked at
the reference's rounding boundaries equal it on every accumulator of the range, the kernel run on this CPU is
bit-exact with it, and a layer whose multipliers are too fine for float32 keeps the float64 form."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.tvm_util import IEEE, needs_tvm


def _layer(rng, channels: int, out_dtype: str, low: float = 3e-3, high: float = 3e-2):
    """A depthwise conv's requantization as the quantizer makes it: per-channel multipliers in [low, high] (DDSNet's
    depthwise convs: about 1e-2), uint8 outputs clamped at a ReLU's zero point, or int8 ones over their range."""
    from tcc.quant.intgraph.fixed_point import quantize_multiplier
    from tcc.quant.intgraph.qtypes import Multiplier, QParams, Requant

    q, shift = quantize_multiplier(np.exp(rng.uniform(np.log(low), np.log(high), channels)))
    if out_dtype == "uint8":
        zp = int(rng.integers(0, 40))
        lo, hi = zp, 255
    else:
        zp, lo, hi = int(rng.integers(-20, 20)), -128, 127
    return Requant(Multiplier(q, shift), zp, lo, hi, QParams(0.05, zp, lo, hi))


def _every_accumulator(bound: int, channels: int) -> np.ndarray:
    return np.broadcast_to(np.arange(-bound, bound + 1, dtype=np.int64)[None, :], (channels, 2 * bound + 1))


@pytest.mark.parametrize("out_dtype", ["uint8", "int8"])
def test_the_boundary_check_proves_every_accumulator(out_dtype):
    """The parameters are checked at a few points per output code; the emulated kernel equals the reference on
    all 2 * bound + 1 accumulators of every channel."""
    from tcc.backends.tvm.int8.requantize_float32 import _float_codes, float32_requantize_params
    from tcc.quant.intgraph.reference import apply_requant

    channels, bound = 96, 30_000
    rq = _layer(np.random.default_rng(11), channels, out_dtype, low=9e-3)
    params = float32_requantize_params(rq, channels, np.full(channels, bound))
    assert params is not None
    acc = _every_accumulator(bound, channels)
    want = apply_requant(acc, rq, axis=0)
    assert all(len(np.unique(row)) > 200 for row in want)  # every channel spans the output's codes
    np.testing.assert_array_equal(_float_codes(acc, params[0], params[1], rq.lo, rq.hi), want)


def test_the_search_moves_the_channels_the_real_multiplier_misses(monkeypatch):
    """Some of 512 channels put an accumulator on the wrong side of a rounding boundary with float32(M) and the zero
    point: without the search the layer has no parameters; with it, a few channels move and all are exact."""
    from tcc.backends.tvm.int8 import requantize_float32 as f32
    from tcc.quant.intgraph.reference import apply_requant

    channels, bound = 512, 100_000
    rq = _layer(np.random.default_rng(5), channels, "uint8")
    params = f32.float32_requantize_params(rq, channels, np.full(channels, bound))
    assert params is not None
    real = np.asarray(rq.mult.q, np.float64) * np.exp2(np.asarray(rq.mult.shift, np.float64) - 31)
    moved = np.flatnonzero((params[0] != real.astype(np.float32)) | (params[1] != np.float32(rq.zp)))
    assert 0 < len(moved) < channels // 4
    acc = _every_accumulator(bound, len(moved))
    sub = type(rq)(type(rq.mult)(rq.mult.q[moved], rq.mult.shift[moved]), rq.zp, rq.lo, rq.hi, rq.out)
    np.testing.assert_array_equal(
        f32._float_codes(acc, params[0, moved], params[1, moved], rq.lo, rq.hi), apply_requant(acc, sub, axis=0)
    )
    monkeypatch.setattr(f32, "SCALE_STEPS", 0)
    monkeypatch.setattr(f32, "OFFSET_STEPS", 0)
    assert f32.float32_requantize_params(rq, channels, np.full(channels, bound)) is None


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_the_screened_search_picks_the_first_trial_exact_everywhere(seed):
    """The search screens trials on a few check points before checking one on all of them: the trial it picks is
    the first, in the search's order, that a check of every trial on every point picks."""
    from tcc.backends.tvm.int8 import requantize_float32 as f32
    from tcc.quant.intgraph.reference import apply_requant

    channels, bound = 64, 100_000
    rq = _layer(np.random.default_rng(seed), channels, "uint8")
    m = np.asarray(rq.mult.q, np.float64) * np.exp2(np.asarray(rq.mult.shift, np.float64) - 31)
    points = f32._check_points(rq, m, np.full(channels, bound))
    want = apply_requant(points, rq, axis=0)
    start = f32._float_codes(points, m.astype(np.float32), np.full(channels, rq.zp, np.float32), rq.lo, rq.hi)
    missed = [c for c in range(channels) if np.any(start[c] != want[c])]
    assert missed  # the layer needs the search
    rng = np.random.default_rng(seed)
    for c in missed:
        scales = f32.float32_ulps(np.full(400, m[c], np.float32), 0) + rng.integers(-8, 9, 400) * np.spacing(
            np.float32(m[c])
        )
        offsets = (rq.zp + rng.integers(-32, 33, 400) * f32.OFFSET_STEP).astype(np.float32)
        every = f32._float_codes(np.broadcast_to(points[c], (400, points.shape[1])), scales, offsets, rq.lo, rq.hi)
        exact = np.flatnonzero(np.all(every == want[c][None, :], axis=1))
        got = f32._first_exact_trial(points[c], want[c], scales, offsets, (rq.lo, rq.hi), start[c] != want[c])
        assert got == (int(exact[0]) if exact.size else None)


def test_too_fine_a_multiplier_or_too_wide_a_range_keeps_the_float64_form():
    """A transition's multipliers (about 1e-4 over accumulators up to 1.5e6: DDSNet's trans convs) leave no float32
    pair for some channel; an accumulator range of 2^24 or more, or an unknown one, is not tried."""
    from tcc.backends.tvm.int8.requantize_float32 import float32_requantize_params

    fine = _layer(np.random.default_rng(2), 64, "int8", 8e-5, 2e-4)
    assert float32_requantize_params(fine, 64, np.full(64, 1_500_000)) is None
    rq = _layer(np.random.default_rng(2), 8, "uint8")
    assert float32_requantize_params(rq, 8, None) is None
    assert float32_requantize_params(rq, 8, np.full(8, 2**24)) is None


@needs_tvm
@pytest.mark.parametrize("out_dtype", ["uint8", "int8"])
def test_the_kernel_equals_the_reference_on_every_accumulator(out_dtype, tmp_path):
    """The PrimFunc as an INT8 build compiles it (IEEE float, this CPU's vector width) on every accumulator of
    [-bound, bound] in every channel."""
    from tvm import relax

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import runner as tvm_run
    from tcc.backends.tvm.int8.requantize_float32 import float32_requantize_params, requantize_float32_primfunc
    from tcc.quant.intgraph.reference import apply_requant

    channels, bound = 48, 20_000
    rq = _layer(np.random.default_rng(9), channels, out_dtype)
    params = float32_requantize_params(rq, channels, np.full(channels, bound))
    assert params is not None
    shape = [1, 1, 2 * bound + 1, channels]
    bb = relax.BlockBuilder()
    x = relax.Var("acc", relax.TensorType(shape, "int32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            gv = bb.add_func(requantize_float32_primfunc(out_dtype, shape, rq.lo, rq.hi), "tcc_requantize")
            out = bb.emit_output(
                relax.call_tir(gv, [x, relax.const(params, "float32")], relax.TensorType(shape, out_dtype))
            )
        bb.emit_func_output(out)
    so = tvm_compile.compile_module(bb.get(), "host", tmp_path / "requantize.so", IEEE)
    acc = _every_accumulator(bound, channels)
    got = tvm_run.run_module(so, "host", acc.T.astype(np.int32).reshape(shape))[0][0].reshape(-1, channels)
    np.testing.assert_array_equal(got.T, apply_requant(acc, rq, axis=0))
