"""Softmax over the last axis, row by row: a Relax pass for x86 host FP32 modules (before FastMathTransform).

TOPI's softmax is four passes over the whole tensor (max, exp, sum, divide) with the exponentials stored in a
tensor as large as the input, and no CPU schedule takes it: MobileViT-XXS's first attention softmax (4 x 4 x 256
rows of 256) ran 1.04 ms a call in scalar loops. Here a softmax over the last axis of a float32 tensor of static
shape becomes one PrimFunc that schedule.float_rules.RowReduction computes one row at a time: the row's
maximum and sum in vectors of partial results, its exponentials (TVM's polynomial `fast_exp`, as FastMathTransform
would have used) in a row-sized buffer, and the output as the exponentials times the reciprocal of their sum.
FP32 only (the exponential and the reciprocal are within the FP32 rule, not bit-exact with TOPI's); INT8 modules
keep their softmax islands exact.
"""

from __future__ import annotations

from tvm import relax, te, tirx, topi

from .concat import static_shape
from .relax_rewrite import OPAQUE, call_rewrite_pass

SOFTMAX_MAX, SOFTMAX_DELTA, SOFTMAX_EXP = "tcc_softmax_max", "tcc_softmax_delta", "tcc_softmax_exp"
SOFTMAX_SUM, SOFTMAX_OUT = "tcc_softmax_sum", "tcc_softmax"


def row_softmax_primfunc(shape):
    """Softmax over the last axis of a float32 tensor of `shape`, in the form RowReduction schedules."""
    dims = [tirx.IntImm("int64", int(d)) for d in shape]  # Relax's extents are int64
    x = te.placeholder(dims, "float32", name="x")
    k1, k2 = (te.reduce_axis((tirx.IntImm("int64", 0), dims[-1]), name=n) for n in ("k1", "k2"))
    peak = te.compute(dims[:-1], lambda *i: te.max(x[(*i, k1)], axis=k1), name=SOFTMAX_MAX)
    delta = te.compute(dims, lambda *i: x[i] - peak[i[:-1]], name=SOFTMAX_DELTA)
    fast = topi.fast_exp(delta)  # TOPI's blocks, inlined into ours
    exp = te.compute(dims, lambda *i: fast[i], name=SOFTMAX_EXP)
    total = te.compute(dims[:-1], lambda *i: te.sum(exp[(*i, k2)], axis=k2), name=SOFTMAX_SUM)
    out = te.compute(dims, lambda *i: exp[i] * (tirx.const(1.0, "float32") / total[i[:-1]]), name=SOFTMAX_OUT)
    func = te.create_prim_func([x, out]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", OPAQUE)  # whole, as RowReduction expects it


def rows_softmax():
    """The module pass writing each float32 softmax over the last axis of a static shape as row_softmax_primfunc."""

    def rewrite(mutator_, call):
        shape = static_shape(call.ty) if getattr(call.ty, "dtype", None) == "float32" else None
        if shape is None or int(call.attrs.axis) not in (-1, len(shape) - 1):
            return None
        gv = mutator_.builder_.add_func(row_softmax_primfunc(shape), "tcc_row_softmax")
        return relax.call_tir(gv, [call.args[0]], relax.TensorType(shape, "float32"))

    return call_rewrite_pass("relax.nn.softmax", rewrite, "TccRowsSoftmax")
