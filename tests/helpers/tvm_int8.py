"""Test-only builders over the TVM INT8 lowering (tcc.backends.tvm.int8): a requantization (`requantize_module`) or
the fixed-point multiply (`multiplier_module`) on its own as a Relax module, for running them on edge cases, and
the Requant of given multipliers (`_requant`). Imported by tests/backends/tvm/test_int8.py and test_int8_kernels.py
(after they have skipped where TVM is missing)."""
from __future__ import annotations

import numpy as np

from tcc.backends.tvm.int8.lower import RelaxLowering
from tcc.backends.tvm.int8.tir import _half_even_mul, fixed_point
from tcc.quant.intgraph.fixed_point import INT32_MAX, INT32_MIN
from tcc.quant.intgraph.qtypes import Multiplier, QParams, Requant


def _requant(q, shift, zp: int, lo: int, hi: int, dtype: str) -> Requant:
    lo_t, hi_t = {"int8": (-128, 127), "uint8": (0, 255)}.get(dtype, (INT32_MIN, INT32_MAX))
    return Requant(Multiplier(np.atleast_1d(np.asarray(q, np.int64)), np.atleast_1d(np.asarray(shift, np.int64))),
                   int(zp), int(lo), int(hi), QParams(1.0, int(zp), lo_t, hi_t))


def requantize_module(q, shift, zp: int = 0, lo: int = INT32_MIN, hi: int = INT32_MAX, dtype: str = "int32",
                      kernel=None, bound: np.ndarray | None = None):
    """main(acc: int32[1, n]) -> clamp(multiply_by_quantized_multiplier(acc, q, shift) + zp, lo, hi) in `dtype`,
    with per-channel q, shift (arrays of length n): the requantization PrimFunc on its own, for tests; in the
    form `RelaxLowering(kernel).requantize(..., bound=bound)` chooses."""
    low = RelaxLowering(kernel)
    relax = low.relax
    n = len(np.atleast_1d(q))
    acc = relax.Var("acc", relax.TensorType([1, n], "int32"))
    with low.bb.function("main", [acc]):
        with low.bb.dataflow():
            gv = low.bb.emit_output(low.requantize(acc, _requant(q, shift, zp, lo, hi, dtype), bound=bound))
        low.bb.emit_func_output(gv)
    return low.bb.get()


def multiplier_module(q, shift):
    """main(acc: int32[n]) -> int64[n] = reference.multiply_by_quantized_multiplier(acc, q, shift) with per-element
    q, shift (arrays of length n): the fixed-point multiply (`_half_even_mul`) on its own, for testing it on edge
    cases."""
    from tvm import te

    low = RelaxLowering()
    relax = low.relax
    q = np.atleast_1d(np.asarray(q, np.int64))
    n = len(q)
    params = np.stack(fixed_point(q, np.broadcast_to(np.asarray(shift, np.int64), q.shape)))
    acc_t = te.placeholder((n,), "int32", name="acc")
    par_t = te.placeholder((3, n), "int64", name="params")
    out = te.compute((n,), lambda i: _half_even_mul(acc_t[i].astype("int64"), par_t[0, i], par_t[1, i], par_t[2, i]),
                     name="multiply")
    func = te.create_prim_func([acc_t, par_t, out]).without_attr("global_symbol")
    acc = relax.Var("acc", relax.TensorType([n], "int32"))
    with low.bb.function("main", [acc]):
        with low.bb.dataflow():
            gv = low.bb.emit_output(relax.call_tir(low.bb.add_func(func, "tcc_multiply"),
                                                   [acc, low.const(params, "int64")],
                                                   relax.TensorType([n], "int64")))
        low.bb.emit_func_output(gv)
    return low.bb.get()
