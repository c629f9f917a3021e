"""Real integer INT8 lowering of a quantized graph (tcc.quant.intgraph.qgraph) to a TVM Relax IRModule.

    mod = lower_int8(onnx_model, table)        # main(x: float32 NCHW) -> float32 output
    ex = tvm.compile(mod, target=...)          # compiled exactly like the FP32 module

`RelaxLowering` is an interpreter over the QGraph with one method per kind of the integer op table (tcc.intops),
each a translation of the reference's method of the same name (tcc.quant.intgraph.reference.Reference) into Relax
ops, with the constants the QGraph holds (weight and bias codes, fixed-point multipliers, clamp bounds, lookup
tables): the module computes what the reference computes, bit for bit, and cannot drift from it.

- the graph input is quantized with equation (8) in float32 (x / s, round half to even, + zero point, clamp:
  `quantize_input_primfunc`);
- tensors between layers are int8 (signed) or uint8 (unsigned) codes, as the table says (int16 for a 16-bit
  table, W8A16: every kind below takes them in its generic form, the dot-product kernels 8-bit codes only), 4-D
  ones channels-last (NHWC, the layout of tcc's CPU schedules, backends/tvm/schedule/): the input codes are
  transposed once, and a tensor goes back to NCHW only where the graph's semantics need it (reshape / transpose /
  split across layouts, graph outputs);
- a dense conv (groups 1) on a target with an integer dot-product kernel (backends/tvm/int8/kernels.py: AVX2 /
  AVX-512 `vpmaddwd`, VNNI `vpdpbusd`, ARMv7 `vmull.s8` / `vpadal.s16`, AArch64 `sdot` or `smull` / `sadalp`) is
  one call of that kernel's conv, its codes converted to the kernel's type on the way, and so is a linear layer
  over rows of 8-bit codes (a 1 x 1 conv on one image row: attention's projections and MLPs); other convs
  (grouped / depthwise, or without a kernel) and gemm subtract the zero point, widen to int16 (exact for 8-bit
  codes) and accumulate int16 x int16 products in int32 (`out_dtype="int32"`); then the int32 bias;
- requantization is one TIR PrimFunc (`requantize_primfunc`, one per call, the layer's parameters one row per
  parameter, channels last): the exact int64 product acc * q, one arithmetic right shift by 31 - shift rounding
  half to even (without comparisons, so that it vectorizes everywhere), + zero point, clamp. Relax fuses it into
  the producing conv, whose schedule applies it to the register tile on its way out: the int32 accumulators
  never go to memory. The same result in cheaper arithmetic where the target's kernel allows it: ARM NEON (ARMv7,
  AArch64) in 32-bit lanes (`requantize_neon_primfunc`; one rounding shift where the conv's accumulator bound rules
  out ties: `requantize_neon_tie_free_primfunc`); x86 in float64 where the conv's accumulator bound makes it exact
  (`requantize_float64_primfunc`), else in int32 lanes (`requantize_int32_primfunc`);
- max pool pads with the lowest code; average pooling sums zero-point-free codes (a depthwise all-ones conv);
  lookup ops gather from their 256-entry table; softmax gathers its exp table and divides once per row; Mul
  multiplies zero-point-free codes in int32; a per-channel multiply (PReLU, layer scale) requantizes both sides and
  selects by the code's sign;
- a graph output is dequantized in float64 like numpy does: from the accumulator (acc * s_in * s_w) when a
  conv / gemm writes it, else from its codes ((q - zp) * scale);
- a float island (tcc.quant.table.placement) is its FP32 sub-model imported by TVM's ONNX frontend and inlined
  (`float_island`, `island_function`): its inputs dequantized to float32 NCHW, its outputs quantized as the graph
  input is where an integer node reads them.

This module holds the interpreter (`RelaxLowering`: the graph, and every kind but the weighted ones) and its entry
point (`lower_int8`). It is built in layers: emit.py's `RelaxEmitter` (the helpers, the requantization, the
dequantization), weighted.py's `WeightedLowering` (conv, pooled conv, gemm: each layer through its kernel variant,
variants/). The PrimFuncs they call are built in tir.py (input quantization, Add, the fixed-point multiply) and
requantize.py (the requantization forms; which one a layer takes: requantize_forms.py), the dot-product kernels'
convs in compute.py; a float island's import is islands.py's; which kernel a target and a layer get, choose.py's
(the kernels themselves: kernels.py).
"""

from __future__ import annotations

import numpy as np
import onnx

from tcc.errors import BuildError
from tcc.intops import TVM, Interpreter
from tcc.quant.intgraph.match import IntGraph, plan
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.qtypes import QGraph, QNode, QParams, storage_dtype
from tcc.quant.table.file import CalibrationTable

from ..isa import tvm_target
from . import quantize_rgb
from .choose import dot_kernel, reciprocal_division
from .codes import _Codes
from .islands import island_function
from .tir import _static, add_primfunc, quantize_input_primfunc
from .variants import amx_stem
from .variants.base import pooled_outputs
from .weighted import WeightedLowering


def _magnitude(p: QParams) -> int:
    """The largest |code - zero point| of a tensor's codes."""
    return max(p.hi - p.zp, p.zp - p.lo)


NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}  # an NCHW axis of a 4-D tensor -> its axis channels-last


class RelaxLowering(WeightedLowering, Interpreter):
    """The interpreter of tcc.intops' TVM lowering: one method per kind (the weighted ones inherited)."""

    lowering = TVM

    # ------------------------------------------------------------------------------------------ the graph
    def lower(self, qg: QGraph, expose=(), batch: int | None = None):
        relax = self.relax
        from tvm import tirx as tir  # deferred: TVM loads where a PrimFunc is built

        dims = []
        for k, d in enumerate(qg.input_shape):
            if k == 0 and batch is not None:
                dims.append(batch)
            else:
                dims.append(d if isinstance(d, int) else tir.Var(d or f"d{k}", "int64"))
        self.batch = dims[0]  # what a constant is repeated over (`broadcast`)
        x = relax.Var("x", relax.TensorType(dims, "float32"))
        env: dict[str, object] = {}
        with self.bb.function("main", [x]):
            with self.bb.dataflow():
                p = qg.input_q
                if p is None:  # only float islands read the input
                    env[qg.input] = x
                else:
                    env[qg.input] = self.quantize_input(x, dims, p)
                self.pool_readers = pooled_outputs(qg, self.kernel)
                self.pooled_accs = {}
                self.amx_pools = {}
                for node in qg.nodes:
                    env.update(zip(node.outputs, self.run_node(node, *(env[i] for i in node.inputs))))
                outs = [self.dequantize(env[o]) if isinstance(env[o], _Codes) else env[o] for o in qg.outputs]
                outs += [self.nchw(env[name].expr) for name in expose]
                result = outs[0] if len(outs) == 1 else self.emit(relax.Tuple(outs))
                gv = self.bb.emit_output(result)
            self.bb.emit_func_output(gv)
        mod = self.bb.get()
        if qg.islands:  # the islands' imported functions, inlined into main (and then dropped)
            mod = self.relax.transform.DeadCodeElimination(["main"])(self.relax.transform.InlinePrivateFunctions()(mod))
        return mod

    def quantize_input(self, x, dims, p: QParams) -> _Codes:
        """The graph input's codes, channels last: ARMv7's RGB kernel where it applies (quantize_rgb.py; the
        division by multiply-adds is ARMv7's), else `quantize_input_primfunc` and the transpose."""
        relax = self.relax
        if self.reciprocal and quantize_rgb.applies(dims, p):
            n, c, h, w = dims
            func = self.bb.add_func(quantize_rgb.quantize_rgb_primfunc(dims, p), "tcc_quantize_input")
            return _Codes(self.emit(relax.call_tir(func, [x], relax.TensorType([n, h, w, c], p.dtype))), p)
        func = self.bb.add_func(quantize_input_primfunc(dims, p, self.reciprocal), "tcc_quantize_input")
        return _Codes(self.nhwc(self.emit(relax.call_tir(func, [x], relax.TensorType(dims, p.dtype)))), p)

    # ------------------------------------------------------------------------------------------ elementwise
    def add(self, n: QNode, a: _Codes, b: _Codes) -> list:
        """reference.add_codes as one TIR kernel (`add_primfunc`): both inputs << 20, rescaled to 2 max(s_a, s_b),
        summed, requantized (a folded activation in the clamp)."""
        relax = self.relax
        out = n.qout[0]
        shape = [x if _static(y) == 1 else y for x, y in zip(a.expr.ty.shape, b.expr.ty.shape)]  # broadcast
        func = self.bb.add_func(add_primfunc(a, b, n.add, shape), f"tcc_add_{out.dtype}")
        y = self.emit(relax.call_tir(func, [a.expr, b.expr], relax.TensorType(shape, out.dtype)))
        return [_Codes(y, out)]

    def broadcast(self, n: QNode) -> list:
        """reference.broadcast: the constant's codes (channels last at rank 4) broadcast to the input's batch."""
        codes = n.weight.transpose(0, 2, 3, 1) if n.weight.ndim == 4 else n.weight
        out = n.qout[0]
        y = self.emit(self.relax.op.broadcast_to(self.const(codes, out.dtype), [self.batch, *codes.shape[1:]]))
        return [_Codes(y, out)]

    def add_constant(self, n: QNode, x: _Codes) -> list:
        """reference.add_constant: the constant's int8 codes (channels last where x is) as add_primfunc's second
        operand."""
        codes = n.weight.transpose(0, 2, 3, 1) if self.rank(x.expr) == 4 else n.weight
        c = _Codes(self.const(codes, "int8"), QParams(float(n.weight_scale[0]), 0, -127, 127))
        return self.add(n, x, c)

    def mul(self, n: QNode, a: _Codes, b: _Codes) -> list:
        prod = self.emit(self.relax.op.multiply(self.centered(a, "int32"), self.centered(b, "int32")))
        bound = np.int64(_magnitude(a.params)) * _magnitude(b.params)
        return [_Codes(self.requantize(prod, n.requant, bound=bound), n.qout[0])]

    def matmul(self, n: QNode, a: _Codes, b: _Codes) -> list:
        """reference.matmul: the zero-point-free codes (in the graph's NCHW order) multiplied and summed in int32,
        requantized per tensor."""
        op = self.relax.op
        wide = "int32" if "int32" in (self.operand_dtype(a), self.operand_dtype(b)) else "int16"
        left = self.nchw(self.centered(a, wide))
        acc = self.emit(op.matmul(left, self.nchw(self.centered(b, wide)), out_dtype="int32"))
        depth = _static(left.ty.shape[-1])
        bound = None if depth is None else np.int64(depth) * _magnitude(a.params) * _magnitude(b.params)
        return [_Codes(self.nhwc(self.requantize(acc, n.requant, bound=bound)), n.qout[0])]

    def lookup(self, n: QNode, x: _Codes) -> list:
        op = self.relax.op
        index = self.cast(x.expr, "int32")
        if n.qin[0].lo:
            index = self.emit(op.subtract(index, self.const(n.qin[0].lo, "int32")))
        out = n.qout[0]
        return [_Codes(self.emit(op.take(self.const(n.table, out.dtype), index, axis=0)), out)]

    def softmax(self, n: QNode, x: _Codes) -> list:
        """reference.softmax_codes in int32 along the graph's last axis (a 4-D tensor back in NCHW for it)."""
        if n.attrs.get("form") == "gemmlowp":
            raise BuildError(
                f"softmax {n.name!r}: a table made under LiteRT's rules (its int8 SOFTMAX); TVM's "
                "integer softmax takes tables of the tvm rules (`tcc calibrate --target host`)"
            )
        op = self.relax.op
        q = self.cast(self.nchw(x.expr), "int32")
        top = self.emit(op.max(q, axis=-1, keepdims=True))
        d = self.emit(op.minimum(self.emit(op.subtract(top, q)), self.const(len(n.table) - 1, "int32")))
        e = self.emit(op.take(self.const(n.table, "int32"), d, axis=0))
        r = self.emit(
            op.floor_divide(self.const(n.attrs["numerator"], "int32"), self.emit(op.sum(e, axis=-1, keepdims=True)))
        )
        k = n.attrs["shift"]
        y = self.emit(
            op.right_shift(
                self.emit(op.add(self.emit(op.multiply(e, r)), self.const(1 << (k - 1), "int32"))),
                self.const(k, "int32"),
            )
        )
        out = n.qout[0]
        y = self.clip(self.emit(op.add(y, self.const(out.zp, "int32"))) if out.zp else y, out.lo, out.hi, "int32")
        return [_Codes(self.nhwc(self.cast(y, out.dtype)), out)]

    def channel_scale(self, n: QNode, x: _Codes) -> list:
        """reference.channel_scale: both sides requantized (channels last), the one by the code's sign chosen. A
        tensor of another rank than 4 (stored in the graph's order, channels on axis 1) has its channel axis moved
        last for it and back."""
        op = self.relax.op
        d = self.centered(x, "int32")
        rank = self.rank(d)
        moved = rank > 2 and rank != 4
        if moved:
            d = self.emit(op.permute_dims(d, [0, *range(2, rank), 1]))
        above, below = (
            self.requantize(self.emit(op.multiply(d, self.const(k, "int32"))), rq)
            for k, rq in ((n.factors[0], n.requant), (n.factors[1], n.below))
        )
        y = self.emit(op.where(self.emit(op.greater_equal(d, self.const(0, "int32"))), above, below))
        if moved:
            y = self.emit(op.permute_dims(y, [0, rank - 1, *range(1, rank - 1)]))
        return [_Codes(y, n.qout[0])]

    def clamp(self, n: QNode, x: _Codes) -> list:
        y = self.moved(x, x.expr, n.rescale[0], n.qout[0])
        lo, hi = n.attrs["clamp"]
        out = n.qout[0]
        return [_Codes(self.cast(self.clip(self.cast(y.expr, "int32"), lo, hi, "int32"), out.dtype), out)]

    # ------------------------------------------------------------------------------------------ pools
    def max_pool(self, n: QNode, x: _Codes) -> list:
        op = self.relax.op
        g = n.attrs
        pt, pl, pb, pr = g["pads"]
        if n.inputs[0] in self.pooled_accs:
            # the conv's int32 accumulators pooled, then requantized: a requantization is non-decreasing (M > 0,
            # rounding and clamping monotone), so max(requant(a)) = requant(max(a)), and the window's padding (the
            # lowest int32) never wins. A quarter of the requantizations for a 3 x 3 / 2 pool
            # (docs/notes/x86-int8-zen5.md)
            acc, rq, bound = self.pooled_accs[n.inputs[0]]
            if n.inputs[0] in self.amx_pools:  # AMX: the accumulators pooled as the kernel computes them
                y = amx_stem.emit_pooled(self, g, self.amx_pools[n.inputs[0]])
            else:
                y = self.emit(
                    op.nn.max_pool2d(
                        acc, pool_size=g["kernel"], strides=g["strides"], padding=(pt, pl, pb, pr), layout="NHWC"
                    )
                )
            return [_Codes(self.requantize(y, rq, False, bound), n.qout[0])]
        expr, padding = x.expr, (pt, pl, pb, pr)
        if any(padding) and x.lo != np.iinfo(str(expr.ty.dtype)).min:
            # pad with the lowest code explicitly (the reference's pad value; it is a code of the tensor's own
            # type), then pool unpadded; where it is the type's minimum (a ReLU's u8 codes), max_pool2d's own
            # padding is that value and needs no pass of its own (a scalar pad pass cost: docs/notes/x86-int8-zen5.md)
            expr = self.emit(op.nn.pad(expr, [0, 0, pt, pb, pl, pr, 0, 0], pad_value=float(x.lo)))
            padding = (0, 0, 0, 0)
        y = self.emit(
            op.nn.max_pool2d(expr, pool_size=g["kernel"], strides=g["strides"], padding=padding, layout="NHWC")
        )
        y = self.cast(y, storage_dtype(x.lo, x.hi))
        return [self.moved(x, y, n.rescale[0], n.qout[0])]

    def global_max_pool(self, n: QNode, x: _Codes) -> list:
        y = self.emit(self.relax.op.max(x.expr, axis=[1, 2], keepdims=True))  # H, W of the channels-last codes
        return [self.moved(x, y, n.rescale[0], n.qout[0])]

    def avg_pool(self, n: QNode, x: _Codes) -> list:
        return [_Codes(self.requantize(self.sum_windows(x, n.attrs), n.requant), n.qout[0])]

    def global_avg_pool(self, n: QNode, x: _Codes) -> list:
        total = self.emit(self.relax.op.sum(self.centered(x, "int32"), axis=[1, 2], keepdims=True))
        return [_Codes(self.requantize(total, n.requant), n.qout[0])]

    # ------------------------------------------------------------------------------------------ moves
    def concat(self, n: QNode, *xs: _Codes) -> list:
        out = n.qout[0]
        parts = [self.cast(self.moved(x, x.expr, rs, out).expr, out.dtype) for x, rs in zip(xs, n.rescale)]
        axis = n.attrs["axis"]
        if self.rank(parts[0]) == 4:
            axis = NHWC_AXIS[axis]
        return [_Codes(self.emit(self.relax.op.concat(parts, axis=axis)), out)]

    def reshape(self, n: QNode, x: _Codes) -> list:
        # element order is the graph's: NCHW
        flat = self.nchw(x.expr)
        y = self.nhwc(self.emit(self.relax.op.reshape(flat, [-1, *n.attrs["shape"]])))  # -1: reference.reshape
        return [self.moved(x, y, n.rescale[0], n.qout[0])]

    def transpose(self, n: QNode, x: _Codes) -> list:
        y = self.nhwc(self.emit(self.relax.op.permute_dims(self.nchw(x.expr), n.attrs["perm"])))
        return [self.moved(x, y, n.rescale[0], n.qout[0])]

    def slice(self, n: QNode, x: _Codes) -> list:
        """reference.slice: each (axis, start, stop, step) a strided slice of the graph's axis (channels last
        where the codes are), a reversed range (negative step) as a take of its indices."""
        op = self.relax.op
        y = x.expr
        for axis, start, stop, step in n.attrs["ranges"]:
            at = NHWC_AXIS[axis] if self.rank(y) == 4 else axis
            if step > 0:
                y = self.emit(op.strided_slice(y, [at], [start], [stop], [step]))
            else:
                y = self.emit(op.take(y, self.const(np.arange(start, stop, step), "int32"), axis=at))
        return [self.moved(x, y, n.rescale[0], n.qout[0])]

    def resize_nearest(self, n: QNode, x: _Codes) -> list:
        """reference.resize_nearest: takes of the channels-last codes' rows and columns."""
        return [self.moved(x, self.gathered(x.expr, n.attrs), n.rescale[0], n.qout[0])]

    def resize_bilinear(self, n: QNode, x: _Codes) -> list:
        """reference.bilinear_codes on the channels-last codes: takes of the rows' and the columns' two taps times
        their weights, then |sum| + d_h d_w / 2 floor-divided by d_h d_w (a shift where it is a power of 2), its
        sign given back (no sign to keep where the codes are never negative). The sums in int16 where their bound
        fits (8-bit codes and a 2x resize's d_h d_w = 16: twice the lanes of int32), else int32: exact either
        way; the takes move the 8-bit codes, widened after."""
        op = self.relax.op
        rows, cols = n.attrs["rows"], n.attrs["cols"]
        dd = rows["d"] * cols["d"]
        acc = "int16" if max(abs(x.lo), abs(x.hi)) * dd + dd // 2 <= np.iinfo(np.int16).max else "int32"
        v = x.expr
        for axis, taps, shape in ((1, rows, (-1, 1, 1)), (2, cols, (-1, 1))):
            r = np.asarray(taps["r"]).reshape(shape)
            lo = self.emit(op.take(v, self.const(np.array(taps["i0"]), "int32"), axis=axis, mode="clip"))
            hi = self.emit(op.take(v, self.const(np.array(taps["i1"]), "int32"), axis=axis, mode="clip"))
            lo = self.emit(op.multiply(self.cast(lo, acc), self.const(taps["d"] - r, acc)))
            v = self.emit(op.add(lo, self.emit(op.multiply(self.cast(hi, acc), self.const(r, acc)))))
        nonnegative = x.lo >= 0  # the weights are too: so is every sum
        magnitude = self.emit(op.add(v if nonnegative else self.emit(op.abs(v)), self.const(dd // 2, acc)))
        if dd & (dd - 1) == 0:
            magnitude = self.emit(op.right_shift(magnitude, self.const(dd.bit_length() - 1, acc)))
        else:
            magnitude = self.emit(op.floor_divide(magnitude, self.const(dd, acc)))
        if not nonnegative:
            negative = self.emit(op.less(v, self.const(0, acc)))
            magnitude = self.emit(op.where(negative, self.emit(op.negative(magnitude)), magnitude))
        y = self.cast(magnitude, storage_dtype(x.lo, x.hi))
        return [self.moved(x, y, n.rescale[0], n.qout[0])]

    def pad(self, n: QNode, x: _Codes) -> list:
        """reference.pad: the constant's code around H and W of the channels-last codes, or takes (reflect, edge)."""
        a = n.attrs
        if a["mode"] != "constant":
            return [self.moved(x, self.gathered(x.expr, a), n.rescale[0], n.qout[0])]
        t, l, b, r = a["pads"]
        y = self.emit(self.relax.op.nn.pad(x.expr, [0, 0, t, b, l, r, 0, 0], pad_value=float(a["code"])))
        return [self.moved(x, y, n.rescale[0], n.qout[0])]

    def gathered(self, expr, attrs: dict):
        """NHWC codes at the rows attrs index_h and the columns index_w."""
        take = self.relax.op.take
        rows = self.emit(take(expr, self.const(np.array(attrs["index_h"]), "int32"), axis=1, mode="clip"))
        return self.emit(take(rows, self.const(np.array(attrs["index_w"]), "int32"), axis=2, mode="clip"))

    def split(self, n: QNode, x: _Codes) -> list:
        relax = self.relax
        axis = n.attrs["axis"]
        if self.rank(x.expr) == 4:
            axis = NHWC_AXIS[axis]
        cuts = [int(c) for c in np.cumsum(n.attrs["sizes"])[:-1]]
        parts = self.emit(relax.op.split(x.expr, cuts, axis=axis))
        return [
            self.moved(x, self.emit(relax.TupleGetItem(parts, k)), rs, q)
            for k, (rs, q) in enumerate(zip(n.rescale, n.qout))
        ]

    # ------------------------------------------------------------------------------------------ float islands
    def float_island(self, n: QNode, *xs) -> list:
        """reference.Reference.float_island: the island's FP32 sub-model (imported by TVM's ONNX frontend, a private
        function inlined after lowering) on float32 NCHW inputs ((q - zp) * s where quantized: one float32
        rounding, as numpy's); each output an integer node reads quantized by equation (8), rint(y / s) + zp."""
        relax, op = self.relax, self.relax.op
        ins = []
        for x in xs:
            if isinstance(x, _Codes):
                centered = self.cast(self.centered(x, "int32"), "float32")
                x = self.nchw(self.emit(op.multiply(centered, self.const(np.float32(x.scale), "float32"))))
            ins.append(x)
        func = island_function(self.bb, n, [[int(d) for d in v.ty.shape] for v in ins])
        result = self.emit(relax.Call(self.bb.add_func(func, "tcc_island"), ins))
        ys = (
            [self.emit(relax.TupleGetItem(result, k)) for k in range(len(n.outputs))]
            if len(n.outputs) > 1
            else [result]
        )
        out = []
        for y, q in zip(ys, n.qout):
            if q is None:
                out.append(y)
                continue
            if n.rounding == "half_even":  # the graph input's kernel: no libm rint per element on ARMv7
                shape = list(y.ty.shape)
                func = self.bb.add_func(quantize_input_primfunc(shape, q, self.reciprocal), "tcc_quantize_island")
                codes = self.emit(relax.call_tir(func, [y], relax.TensorType(shape, q.dtype)))
            else:
                codes = self.emit(
                    op.add(
                        op.round(op.divide(y, self.const(np.float32(q.scale), "float32"))),
                        self.const(np.float32(q.zp), "float32"),
                    )
                )
                codes = self.cast(
                    self.emit(op.minimum(op.maximum(codes, self.const(q.lo, "float32")), self.const(q.hi, "float32"))),
                    q.dtype,
                )
            out.append(_Codes(self.nhwc(codes), q))
        return out


def int8_graph(onnx_model: onnx.ModelProto, table: CalibrationTable) -> tuple[IntGraph, QGraph]:
    """The integer graph of `onnx_model` under the rules `table` was made for, planned for the TVM lowering, and
    quantized with `table` (what `lower_int8` lowers and explain.py reads)."""
    graph = plan(onnx_model, lowering=TVM, rules=table.rules)
    return graph, quantize_graph(graph, table)


def lowering_for(target: str | None) -> RelaxLowering:
    """The interpreter for a registry target: its integer dot-product kernel, whether its input's quantization
    divides by multiply-adds, whether its CPU takes AMX; None: the generic forms, which compile for any target."""
    compiled_for = None if target is None else tvm_target(target)
    return RelaxLowering(
        dot_kernel(target),
        compiled_for is not None and reciprocal_division(compiled_for),
        compiled_for is not None and amx_stem.available(compiled_for),
    )


def lower_int8(
    onnx_model: onnx.ModelProto,
    table: CalibrationTable,
    *,
    expose: tuple[str, ...] = (),
    batch: int | None = None,
    target: str | None = None,
):
    """The FP32 ONNX graph `onnx_model` (the graph `table` was calibrated on) as an integer Relax IRModule whose
    main(x: float32 NCHW) returns the float32 output equal to reference.run_reference(onnx_model, table, x).

    expose: quantized tensors whose codes (in their int8 / uint8 storage type) main also returns, after the graph
    output(s) -- for comparing every layer with the reference's `return_all` codes. batch: fix the input's batch
    dimension (the deployed module: static shapes, which tcc's CPU schedules need); None keeps the model's own.
    target: the registry target it is compiled for (`lowering_for`): its integer dot-product kernel takes the
    layers its kernel variants take (variants/); None: the generic form, which compiles for any target."""
    _, qg = int8_graph(onnx_model, table)
    return lowering_for(target).lower(qg, tuple(expose), batch)
