"""Test-only builders over the TVM INT8 lowering (tcc.backends.tvm.int8): a requantization (`requantize_module`) or
the fixed-point multiply (`multiplier_module`) on its own as a Relax module, for running them on edge cases, the
Requant of given multipliers (`_requant`), a model lowered on a given kernel (`lowered`, its PrimFuncs' scripts
`prim_scripts`) and the depthwise convs' model (`depthwise_model`, `depthwise_case`). Imported by the INT8 tests of
tests/backends/tvm/ after they have skipped where TVM is missing."""

from __future__ import annotations

import numpy as np
import tvm
from onnx import helper, numpy_helper

from tcc.backends.tvm.int8 import kernels as kn
from tcc.backends.tvm.int8.lower import RelaxLowering
from tcc.backends.tvm.int8.tir import _half_even_mul, fixed_point
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.fixed_point import INT32_MAX, INT32_MIN
from tcc.quant.intgraph.match import plan
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.qtypes import Multiplier, QParams, Requant
from tcc.quant.intgraph.reference import run_reference

from .onnx_util import make_model


def _requant(q, shift, zp: int, lo: int, hi: int, dtype: str) -> Requant:
    lo_t, hi_t = {"int8": (-128, 127), "uint8": (0, 255)}.get(dtype, (INT32_MIN, INT32_MAX))
    return Requant(
        Multiplier(np.atleast_1d(np.asarray(q, np.int64)), np.atleast_1d(np.asarray(shift, np.int64))),
        int(zp),
        int(lo),
        int(hi),
        QParams(1.0, int(zp), lo_t, hi_t),
    )


def requantize_module(
    q,
    shift,
    zp: int = 0,
    lo: int = INT32_MIN,
    hi: int = INT32_MAX,
    dtype: str = "int32",
    kernel=None,
    bound: np.ndarray | None = None,
):
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
    out = te.compute(
        (n,), lambda i: _half_even_mul(acc_t[i].astype("int64"), par_t[0, i], par_t[1, i], par_t[2, i]), name="multiply"
    )
    func = te.create_prim_func([acc_t, par_t, out]).without_attr("global_symbol")
    acc = relax.Var("acc", relax.TensorType([n], "int32"))
    with low.bb.function("main", [acc]):
        with low.bb.dataflow():
            gv = low.bb.emit_output(
                relax.call_tir(
                    low.bb.add_func(func, "tcc_multiply"),
                    [acc, low.const(params, "int64")],
                    relax.TensorType([n], "int64"),
                )
            )
        low.bb.emit_func_output(gv)
    return low.bb.get()


def lowered(model, table, kernel, names):
    """`model` quantized with `table` and lowered on the dot-product `kernel`, the tensors `names` exposed."""
    qg = quantize_graph(plan(model, lowering="tvm", rules="tvm"), table)
    return RelaxLowering(kernel).lower(qg, tuple(names), batch=1)


def prim_scripts(mod) -> list[str]:
    """The TVMScript of every PrimFunc of a lowered module."""
    return [f.script() for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]


def depthwise_model(seed: int = 0):
    """Depthwise convs of 32 channels (two blocks of 16 for AArch64's `sdot` form), after a 3x3 stem + ReLU (u8
    codes): 3x3 s1 (2 output rows a window), 3x3 s2 with asymmetric pads on signed codes (1 row), 3x3 on a height
    of 5 (odd: 1 row), 2x2 on a height of 6 (3 rows), then a 5x5 and a 1x1 (int16 taps: taller than 4 rows, and a
    quarter of each sdot), GAP, gemm."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "input"
    for name, ci, k, stride, pads, group, relu in (
        ("stem", 3, 3, 1, (1, 1, 1, 1), 1, True),
        ("dw1", 32, 3, 1, (1, 1, 1, 1), 32, False),
        ("dw2", 32, 3, 2, (1, 0, 0, 1), 32, True),
        ("dw3", 32, 3, 1, (1, 1, 0, 1), 32, False),
        ("dw4", 32, 2, 1, (1, 1, 1, 1), 32, True),
        ("dw5", 32, 5, 1, (2, 2, 2, 2), 32, False),
        ("dw6", 32, 1, 1, (0, 0, 0, 0), 32, False),
    ):
        w = numpy_helper.from_array(
            (rng.standard_normal((32, ci // group, k, k)) * 0.4).astype(np.float32), f"{name}.w"
        )
        b = numpy_helper.from_array((rng.standard_normal(32) * 0.2).astype(np.float32), f"{name}.b")
        nodes.append(
            helper.make_node(
                "Conv",
                [x, w.name, b.name],
                [name],
                name=name,
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=list(pads),
                group=group,
            )
        )
        inits += [w, b]
        x = name
        if relu:
            nodes.append(helper.make_node("Relu", [name], [f"{name}.relu"], name=f"{name}.relu"))
            x = f"{name}.relu"
    wf = numpy_helper.from_array((rng.standard_normal((3, 32)) * 0.5).astype(np.float32), "fc.w")
    bf = numpy_helper.from_array(np.zeros(3, np.float32), "fc.b")
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["output"], name="fc", transB=1),
    ]
    return make_model(
        nodes, {"input": ["N", 3, 12, 11]}, {"output": ["N", 3]}, inits + [wf, bf], name="dw", ir_version=8
    )


def depthwise_case(k: kn.DotKernel):
    """depthwise_model calibrated (16 seeded inputs), an input, the integer reference's output and codes of every
    tensor, and the model lowered on kernel `k` with every tensor an output."""
    m = depthwise_model()
    rng = np.random.default_rng(1)
    table = calibrate_onnx(m, rng.standard_normal((16, 3, 12, 11)).astype(np.float32), method="kl", target="tvm")
    x = rng.standard_normal((1, 3, 12, 11)).astype(np.float32) * 1.5
    ref_out, ref_codes = run_reference(m, table, x, return_all=True)
    return x, ref_out, ref_codes, lowered(m, table, k, list(ref_codes))
