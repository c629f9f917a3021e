"""A 1 x 1 depthwise conv as a float32 map (backends/tvm/int8/variants/affine_map.py): parameters that equal the integer
reference on every 8-bit code of every channel, the kernel run on this CPU bit-exact with it, a layer with no such
parameters left to the generic kernel."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.tvm_util import IEEE, needs_tvm

pytestmark = needs_tvm


def _layer(rng, channels: int, out_dtype: str):
    """Random batch norms as the quantizer makes them: int8 weights (a few zero, a few negative), int32 biases,
    per-channel multipliers; uint8 outputs clamped at a ReLU's zero point, or int8 ones over their whole range."""
    from tcc.quant.intgraph.fixed_point import quantize_multiplier
    from tcc.quant.intgraph.qtypes import Multiplier, QParams, Requant

    w = rng.integers(-127, 128, channels)
    w[:4] = 0
    b = rng.integers(-(2**15), 2**15, channels)
    q, shift = quantize_multiplier(np.exp(rng.uniform(np.log(1e-4), np.log(0.5), channels)))
    zp, lo, hi = (
        (int(rng.integers(0, 40)), None, 255) if out_dtype == "uint8" else (int(rng.integers(-20, 20)), -128, 127)
    )
    lo = zp if lo is None else lo
    out = QParams(0.05, zp, lo, hi)
    return w, b, Requant(Multiplier(q, shift), zp, lo, hi, out)


def _reference(w, b, rq, in_dtype):
    from tcc.quant.intgraph.reference import apply_requant

    info = np.iinfo(in_dtype)
    codes = np.arange(info.min, info.max + 1, dtype=np.int64)
    return codes, apply_requant(codes[:, None] * w[None, :] + b[None, :], rq, axis=1)


def _run(params, codes, in_dtype, out_dtype, rq, tmp_path):
    """The kernel (scheduled by tcc's rules) on a [1, 1, 256, C] tensor holding every code in every channel."""
    from tvm import relax

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import runner as tvm_run
    from tcc.backends.tvm.int8.variants.affine_map import affine_primfunc

    channels = len(params[0])
    shape = [1, 1, len(codes), channels]
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, in_dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            gv = bb.add_func(affine_primfunc(shape, in_dtype, out_dtype, rq.lo, rq.hi), "tcc_affine")
            out = bb.emit_output(
                relax.call_tir(
                    gv, [x, *(relax.const(p, "float32") for p in params)], relax.TensorType(shape, out_dtype)
                )
            )
        bb.emit_func_output(out)
    so = tvm_compile.compile_module(bb.get(), "host", tmp_path / "affine.so", IEEE)
    x = np.broadcast_to(codes[:, None], shape[2:]).astype(in_dtype).reshape(shape)
    return tvm_run.run_module(so, "host", x)[0][0].reshape(len(codes), channels)


@pytest.mark.parametrize("in_dtype, out_dtype", [("uint8", "uint8"), ("int8", "int8"), ("uint8", "int8")])
def test_the_kernel_equals_the_reference_on_every_code(in_dtype, out_dtype, tmp_path):
    from tcc.backends.tvm.int8.variants.affine_map import affine_params

    w, b, rq = _layer(np.random.default_rng(7), 64, out_dtype)
    params = affine_params(w, b, rq, in_dtype)
    assert params is not None
    codes, want = _reference(w, b, rq, in_dtype)
    assert len(np.unique(want)) > 100  # the layer spans the output's codes, not a few constants
    np.testing.assert_array_equal(_run(params, codes, in_dtype, out_dtype, rq, tmp_path), want)


def test_the_float32_neighbours_fix_the_channels_the_real_multiplier_misses(monkeypatch, tmp_path):
    """Among 2,048 random channels some land a code on the wrong side of a rounding boundary from the real
    multiplier's float32 (shift, scale): without the search over their neighbours the layer has no parameters;
    with it, the kernel is exact on those channels too."""
    from tcc.backends.tvm.int8.variants import affine_map

    w, b, rq = _layer(np.random.default_rng(3), 2048, "uint8")
    codes, want = _reference(w, b, rq, "uint8")
    params = affine_map.affine_params(w, b, rq, "uint8")
    assert params is not None
    monkeypatch.setattr(affine_map, "SCALE_STEPS", 0)
    monkeypatch.setattr(affine_map, "SHIFT_STEPS", 0)
    assert affine_map.affine_params(w, b, rq, "uint8") is None
    start = affine_map.start_params(w, b, rq)
    moved = np.flatnonzero((params[0] != start[0]) | (params[1] != start[1]))
    assert 0 < len(moved) < len(w) // 10
    pick = np.unique(np.concatenate([moved[:32], np.arange(8)]))  # the searched channels and the zero weights
    got = _run([p[pick] for p in params], codes, "uint8", "uint8", rq, tmp_path)
    np.testing.assert_array_equal(got, want[:, pick])
