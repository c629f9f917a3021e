"""The depthwise conv on x86's `vpmaddwd` (backends/tvm/int8/variants/depthwise_pairs.py): a window's
rows widened to int16 pairs, each channel's 2 rows one 32-bit lane, exact against numpy and the integer reference."""

from __future__ import annotations

import re

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tcc.backends.tvm import compile as tvm_compile
from tcc.backends.tvm.int8 import kernels as kn
from tcc.backends.tvm.int8.variants import depthwise_pairs, depthwise_rows
from tcc.backends.tvm.isa import target_has
from tests.helpers.tvm_int8 import depthwise_case
from tests.helpers.tvm_int8 import prim_scripts as _scripts
from tests.helpers.tvm_util import check_all, run_lowered

# (LLVM CPU, the host feature it needs to run here, the vector register its `vpmaddwd` takes)
CPUS = [("haswell", "avx2", "ymm"), ("skylake-avx512", "avx512bw", "zmm")]


def _host_has(feature: str) -> bool:
    return target_has(tvm.target.Target(tvm_compile.resolve_tvm_target("host")), feature)


def _numpy_depthwise(x: np.ndarray, weights: np.ndarray, shape: kn.ConvShape) -> np.ndarray:
    """int64 [n, oh, ow, c]: the conv of the zero-padded codes."""
    (oh, ow), s = shape.out_hw, shape.strides[0]
    pt, pl, pb, pr = shape.pads
    padded = np.pad(x.astype(np.int64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    return sum(
        padded[:, ky : ky + s * (oh - 1) + 1 : s, kx : kx + s * (ow - 1) + 1 : s] * weights[:, 0, ky, kx]
        for ky in range(shape.kh)
        for kx in range(shape.kw)
    )


@pytest.mark.parametrize("mcpu, feature, register", CPUS)
@pytest.mark.parametrize(
    "n, h, w, c, k, stride, pads, dtype",
    [
        (1, 9, 7, 32, 3, 1, (1, 1, 1, 1), "uint8"),  # 2 output rows a window, a width no pixel tile divides
        (2, 10, 9, 16, 3, 2, (1, 0, 0, 1), "int8"),  # strided, asymmetric pads, a batch of 2
        (1, 5, 6, 24, 3, 1, (0, 1, 1, 0), "int16"),  # int16 codes at their extremes; 24 channels: 8-lane vectors
        (1, 6, 6, 8, 2, 1, (1, 1, 1, 1), "uint8"),  # 2 x 2: 3 output rows a window; one vector of channels
    ],
)
def test_pairs_depthwise_is_exact(mcpu, feature, register, n, h, w, c, k, stride, pads, dtype):  # noqa: PLR0913
    """Every output equals numpy's conv of the padded codes, whatever the window's output rows, the pads (rows
    outside the image are zero pairs), the batch or the codes' type (u8, s8, int16 from -32768 to 32767: a pair's
    two products stay far inside int32), on `vpmaddwd` of the CPU's vectors (run where this CPU has them)."""
    if not _host_has(feature):
        pytest.skip(f"this CPU has no {feature}")
    target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu})
    shape = kn.ConvShape(n, h, w, c, c, k, k, (stride, stride), pads, (1, 1))
    sch = depthwise_pairs.Int8DepthwisePairs().apply(
        depthwise_pairs.depthwise_pairs_primfunc(shape, dtype).with_attr("global_symbol", "main"), target, False
    )
    assert sch is not None
    lib = tvm.compile(sch.mod, target=target)
    assert re.search(rf"vpmaddwd\s[^\n]*%{register if c % 16 == 0 else 'ymm'}", lib.mod.inspect_source("s"))
    rng = np.random.default_rng(h * 100 + c)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, int(info.max) + 1, (n, h, w, c)).astype(dtype)
    x.flat[:2] = (info.min, info.max)
    weights = rng.integers(-128, 128, (c, 1, k, k)).astype(np.int8)
    weights.flat[:2] = (-128, 127)
    got = tvm.runtime.tensor(np.zeros((n, *shape.out_hw, c), np.int32))
    lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(depthwise_pairs.depthwise_pairs_weights(weights, shape)), got)
    np.testing.assert_array_equal(got.numpy(), _numpy_depthwise(x, weights, shape))


def test_pairs_weights_are_the_rows_weights_in_pairs():
    """[J, kw, 2, c, 2] int16: pair p's two weights of channel ch are window rows 2p and 2p + 1 of
    depthwise_rows_weights' [J, kw, c, 4]."""
    shape = kn.ConvShape(1, 8, 8, 16, 16, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1))
    w = np.random.default_rng(0).integers(-128, 128, (16, 1, 3, 3)).astype(np.int8)
    rows, pairs = depthwise_rows.depthwise_rows_weights(w, shape), depthwise_pairs.depthwise_pairs_weights(w, shape)
    assert pairs.shape == (2, 3, 2, 16, 2) and pairs.dtype == np.int16
    for p in range(2):
        np.testing.assert_array_equal(pairs[:, :, p], rows[:, :, :, 2 * p : 2 * p + 2])
    np.testing.assert_array_equal(pairs[0, 1, 0, 5], [w[5, 0, 0, 1], w[5, 0, 1, 1]])  # output row 0: kernel rows 0, 1
    np.testing.assert_array_equal(pairs[1, 1, 0, 5], [0, w[5, 0, 0, 1]])  # output row 1: window row 0 unused


def test_pairs_depthwise_in_a_lowered_model_is_bit_exact(tmp_path):
    """The lowering on x86's `vpmaddwd` kernel (`tcc_dot_avx2_madd`, a CPU without VNNI) takes the depthwise convs
    whose window serves 2 output rows or more on pairs of rows (a 3 x 3 at 12 rows: 2; a 2 x 2 at 6: 3); the strided
    one, a 3 x 3 at 5 rows (one a window) and the 5 x 5 keep the int16 taps, the 1 x 1 the float32 map. Compiled for
    this CPU, every tensor equals the integer reference's."""
    x, ref_out, ref_codes, mod = depthwise_case(kn.KERNELS["tcc_dot_avx2_madd"])
    scripts = _scripts(mod)
    assert sum("tcc_dw_pairs" in s for s in scripts) == 2
    assert sum("tcc_dw_conv" in s for s in scripts) == 3 and sum("tcc_affine" in s for s in scripts) == 1
    check_all(run_lowered(mod, "host", x, tmp_path), ref_out, ref_codes, list(ref_codes))
