"""Editing PrimFuncs in their serialized form (backends/tvm/tir_json.py): a reduction started from a parameter."""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tcc.backends.tvm import tir_json


def test_a_reduction_starts_from_its_bias_parameter():
    """init_from: y[i, c] = bias[c] + sum_k x[i, k, c], computed (here, on the host); the update's reads stay those
    a TensorIntrin matches, and a parameter that is not there is an error."""
    from tvm import te

    x = te.placeholder((3, 8, 5), "int32", name="x")
    bias = te.placeholder((5,), "int32", name="bias")
    k = te.reduce_axis((0, 8), "k")
    y = te.compute((3, 5), lambda i, c: te.sum(x[i, k, c], axis=k), name="y")
    func = te.create_prim_func([x, bias, y])
    started = tir_json.init_from(func, "y", "bias")
    script = started.script()
    assert "y[v_i, v_c] = bias[v_c]" in script and "T.reads(x[v_i, v_k, v_c])" in script
    mod = tvm.compile(tvm.IRModule({"main": started.with_attr("global_symbol", "main")}), target="llvm")
    rng = np.random.default_rng(0)
    xa, ba = rng.integers(-1000, 1000, (3, 8, 5)).astype(np.int32), rng.integers(-99, 99, 5).astype(np.int32)
    out = tvm.runtime.tensor(np.zeros((3, 5), np.int32))
    mod["main"](tvm.runtime.tensor(xa), tvm.runtime.tensor(ba), out)
    np.testing.assert_array_equal(out.numpy(), xa.sum(1) + ba)
    with pytest.raises(KeyError):
        tir_json.init_from(func, "y", "no_such_parameter")
