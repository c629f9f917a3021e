"""Per-channel affine steps into the average pool after them: Relax passes for x86 host FP32 modules (before
legalization).

A batch norm the graph cannot fold into a conv -- one after a ReLU, DDSNet's transitions: BN -> ReLU -> average
pool -> 1 x 1 conv -- reaches TVM as a depthwise conv with a 1 x 1 kernel, then a bias add and a ReLU. A conv is a
kernel of its own to FuseOps, and an average pool takes no producer either, so the steps wrote their whole output
(56 x 56 x 192 floats, 2.4 MB) for the pool to read back. `depthwise_1x1_to_multiply` turns the conv into the same
products as a multiply; `affine_into_avg_pool` then computes a chain of per-channel multiplies, adds and ReLUs in
the pool's own kernel, where the schedule inlines them into the window's reads (each input is read by one window
of a 2 x 2 / 2 pool). The same products, sums and order, except that LLVM may now fuse a product and the bias
add after it into one multiply-add (one rounding fewer): DDSNet's logits moved by at most 1.4e-6.
DDSNet host FP32 (Zen 4, interleaved): x 0.994 for the multiply alone, x 0.979 more with the pool.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, topi

from .concat import static_shape
from .relax_rewrite import OUT_ELEMWISE_FUSABLE, call_rewrite_pass


def depthwise_1x1_to_multiply():
    """The module pass: NHWC / HWIO 1 x 1 depthwise convs, unstrided, unpadded, with constant float32 weights,
    become `data * weights[c]`."""

    def rewrite(mutator_, call):
        a = call.attrs
        data, weight = call.args
        weight = _constant(mutator_, weight)
        if (
            (a.data_layout, a.kernel_layout, a.out_layout) != ("NHWC", "HWIO", "NHWC")
            or a.out_dtype not in (None, "", "float32")
            or weight is None
        ):
            return None
        w = weight.value.numpy()
        if (
            w.shape[:3] != (1, 1, 1)
            or int(a.groups) != w.shape[3]
            or any(int(s) != 1 for s in a.strides)
            or any(int(p) != 0 for p in a.padding)
        ):
            return None
        return relax.op.multiply(data, relax.const(np.ascontiguousarray(w.reshape(-1))))

    return call_rewrite_pass("relax.nn.conv2d", rewrite, "TccDepthwise1x1ToMultiply")


def _constant(mutator_, expr):
    """The float32 constant `expr` is or is bound to, else None."""
    expr = mutator_.lookup_binding(expr) if isinstance(expr, relax.Var) else expr
    return expr if isinstance(expr, tvm.ir.GenericConst) and str(expr.value.dtype) == "float32" else None


def _channel_steps(mutator_, expr):
    """The ReLUs and the multiplies and adds by a constant that produced `expr`, first step first, and the tensor
    the first one reads: ([], expr) where there are none."""
    steps = []
    while isinstance(expr, relax.Var):
        call = mutator_.lookup_binding(expr)
        name = getattr(getattr(call, "op", None), "name", None)
        if name == "relax.nn.relu":
            steps.append((name, None))
        elif name in ("relax.add", "relax.multiply") and _constant(mutator_, call.args[1]) is not None:
            steps.append((name, _constant(mutator_, call.args[1])))
        else:
            break
        expr = call.args[0]
    return steps[::-1], expr


def affine_into_avg_pool():
    """The module pass: an NHWC float32 average pool of static shape whose input is a chain of per-channel steps
    (`_channel_steps`) becomes one kernel computing both (`tcc_affine_avg_pool2d`)."""

    def rewrite(mutator_, call):
        a = call.attrs
        steps, source = _channel_steps(mutator_, call.args[0])
        shape, out = static_shape(source.ty), static_shape(call.ty)
        if (
            not steps
            or a.layout != "NHWC"
            or a.out_layout != "NHWC"
            or shape is None
            or out is None
            or source.ty.dtype != "float32"
        ):
            return None
        constants = [c for _, c in steps if c is not None]
        x = te.placeholder(shape, "float32", name="x")
        params = [
            te.placeholder([int(d) for d in c.value.shape], "float32", name=f"c{i}") for i, c in enumerate(constants)
        ]
        y, taken = x, iter(params)
        for name, _ in steps:
            y = (
                topi.nn.relu(y)
                if name == "relax.nn.relu"
                else (topi.add if name == "relax.add" else topi.multiply)(y, next(taken))
            )
        pooled = topi.nn.pool2d(
            y,
            kernel=a.pool_size,
            stride=a.strides,
            dilation=a.dilation,
            padding=a.padding,
            pool_type="avg",
            ceil_mode=a.ceil_mode,
            layout="NHWC",
            count_include_pad=a.count_include_pad,
        )
        func = te.create_prim_func([x, *params, pooled]).without_attr("global_symbol")
        func = func.with_attr("tcc.op_pattern", OUT_ELEMWISE_FUSABLE)  # no producer (a concat) fused into it
        gv = mutator_.builder_.add_func(func, "tcc_affine_avg_pool2d")
        return relax.call_tir(gv, [source, *constants], relax.TensorType(out, "float32"))

    return call_rewrite_pass(
        "relax.nn.avg_pool2d", rewrite, "TccAffineIntoAvgPool", cleanup=relax.transform.DeadCodeElimination()
    )
