"""Real integer INT8 lowering of a quantized graph (tcc.quant.intgraph.qgraph) to a TVM Relax IRModule.

    mod = lower_int8(onnx_model, table)        # main(x: float32 NCHW) -> float32 output
    ex = tvm.compile(mod, target=...)          # compiled exactly like the FP32 module

`RelaxLowering` is an interpreter over the QGraph with one method per kind of the integer op table (tcc.intops),
each a translation of the reference's method of the same name (tcc.quant.intgraph.reference.Reference) into Relax ops, with
the constants the QGraph holds (weight and bias codes, fixed-point multipliers, clamp bounds, lookup tables): the
module computes what the reference computes, bit for bit, and cannot drift from it.

- the graph input is quantized with equation (8) in float32 (x / s, round half to even, + zero point, clamp:
  `quantize_input_primfunc`);
- tensors between layers are int8 (signed) or uint8 (unsigned) codes, as the table says (int16 for a 16-bit
  table, W8A16: every kind below takes them in its generic form, the dot-product kernels 8-bit codes only), 4-D ones channels-last
  (NHWC, the layout of tcc's CPU schedules, backends/tvm_schedule.py): the input codes are transposed once, and a
  tensor goes back to NCHW only where the graph's semantics need it (reshape / transpose / split across layouts,
  graph outputs);
- a dense conv (groups 1) on a target with an integer dot-product kernel (backends/tvm_int8_kernels.py: AVX2 /
  AVX-512 `vpmaddwd`, VNNI `vpdpbusd`, ARMv7 `vmull.s8` / `vpadal.s16`) is one call of that kernel's conv,
  its codes converted to the kernel's type on the way; other convs (grouped / depthwise, or without a kernel)
  and gemm subtract the zero point, widen to int16 (exact for 8-bit codes) and accumulate int16 x int16
  products in int32 (`out_dtype="int32"`); then the int32 bias;
- requantization is one TIR PrimFunc (`requantize_primfunc`, one per call, the layer's parameters one row per
  parameter, channels last): the exact int64 product acc * q, one arithmetic right shift by 31 - shift rounding
  half to even (without comparisons, so that it vectorizes everywhere), + zero point, clamp. Relax fuses it into
  the producing conv, whose schedule applies it to the register tile on its way out: the int32 accumulators
  never go to memory. The same result in cheaper arithmetic where the target's kernel allows it: ARMv7 NEON in
  32-bit lanes (`requantize_neon_primfunc`); x86 in float64 where the conv's accumulator bound makes it exact
  (`requantize_float64_primfunc`), else in int32 lanes (`requantize_int32_primfunc`);
- max pool pads with the lowest code; average pooling sums zero-point-free codes (a depthwise all-ones conv);
  lookup ops gather from their 256-entry table; Mul multiplies zero-point-free codes in int32; a per-channel
  multiply (PReLU, layer scale) requantizes both sides and selects by the code's sign;
- a graph output is dequantized in float64 like numpy does: from the accumulator (acc * s_in * s_w) when a
  conv / gemm writes it, else from its codes ((q - zp) * scale);
- a float island (tcc.quant.table.placement) is its FP32 sub-model imported by TVM's ONNX frontend and inlined
  (`float_island`, `island_function`): its inputs dequantized to float32 NCHW, its outputs quantized as the graph
  input is where an integer node reads them.
"""
from __future__ import annotations

import numpy as np
import onnx

from tcc.intops import TVM, Interpreter
from tcc.quant.intgraph.plan import plan
from tcc.quant.intgraph.qgraph import (
    INT32_MAX,
    INT32_MIN,
    Multiplier,
    QGraph,
    QNode,
    QParams,
    Requant,
    accumulator_bound,
    quantize_graph,
    storage_dtype,
)
from tcc.quant.table.file import CalibrationTable

from ..compile import import_onnx, resolve_tvm_target
from . import kernels as kn
from .kernels import (
    QUANTIZE_BLOCK,
    ConvShape,
    depthwise_primfunc,
    kernel_for,
    narrow_kernel,
    reciprocal_division,
    supports,
)


class _Codes:
    """A quantized tensor in the Relax graph: the expression holding its codes and its quantization parameters."""

    __slots__ = ("expr", "params")

    def __init__(self, expr, params: QParams):
        self.expr, self.params = expr, params

    zp = property(lambda self: self.params.zp)
    lo = property(lambda self: self.params.lo)
    hi = property(lambda self: self.params.hi)
    scale = property(lambda self: self.params.scale)


def fixed_point(q, shift) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q, k, below_half) as int64 arrays for reference.multiply_by_quantized_multiplier(acc, q, shift): the
    product acc * q shifted right by k = 31 - shift, below_half = 2^(k - 1) - 1 (see `_half_even_mul`)."""
    q, shift = np.atleast_1d(np.asarray(q, np.int64)), np.atleast_1d(np.asarray(shift, np.int64))
    k = 31 - shift
    if np.any(k < 1):
        raise OverflowError("requantization multiplier >= 2^30 is not supported")
    k = np.minimum(k, 62)  # |acc * q| < 2^62: shifting 62 gives 0, as in the reference
    return q, k, (np.int64(1) << (k - 1)) - 1


NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}  # an NCHW axis of a 4-D tensor -> its axis channels-last


class RelaxLowering(Interpreter):
    lowering = TVM

    def __init__(self, kernel=None, reciprocal: bool = False):
        """kernel: the target's integer dot-product kernel (tvm_int8_kernels.DotKernel) for dense convs; None:
        the generic int16 form everywhere (compiles for any target). reciprocal: the input's x / s by
        multiply-adds (`quantize_input_primfunc`; tvm_int8_kernels.reciprocal_division)."""
        from tvm import relax

        self.relax = relax
        self.bb = relax.BlockBuilder()
        self.kernel = kernel
        self.reciprocal = reciprocal

    # ------------------------------------------------------------------------------------------ small helpers
    def const(self, value, dtype: str):
        return self.relax.const(np.asarray(value).astype(dtype), dtype)

    def emit(self, expr):
        return self.bb.emit(expr)

    def cast(self, expr, dtype: str):
        if getattr(expr.ty, "dtype", None) == dtype:
            return expr
        return self.emit(self.relax.op.astype(expr, dtype))

    def clip(self, expr, lo: int, hi: int, dtype: str):
        """min(max(expr, lo), hi) with bounds of expr's own dtype."""
        op = self.relax.op
        return self.emit(op.minimum(op.maximum(expr, self.const(lo, dtype)), self.const(hi, dtype)))

    @staticmethod
    def operand_dtype(c: _Codes) -> str:
        """The type the generic conv / gemm multiply q - zp in: int16 (8-bit codes minus an 8-bit zero point, or
        int16 codes with zero point 0), int32 for int16 codes with another zero point."""
        return "int32" if c.zp and c.params.dtype == "int16" else "int16"

    def centered(self, c: _Codes, dtype: str = "int16"):
        """q - zp, widened (exact in `operand_dtype`)."""
        x = self.cast(c.expr, dtype)
        if c.zp:
            x = self.emit(self.relax.op.subtract(x, self.const(c.zp, dtype)))
        return x

    @staticmethod
    def rank(expr) -> int:
        return len(expr.ty.shape)

    def nhwc(self, expr):
        """A 4-D NCHW tensor channels-last (other ranks unchanged)."""
        return self.emit(self.relax.op.permute_dims(expr, [0, 2, 3, 1])) if self.rank(expr) == 4 else expr

    def nchw(self, expr):
        """A 4-D channels-last tensor back in the graph's NCHW (other ranks unchanged)."""
        return self.emit(self.relax.op.permute_dims(expr, [0, 3, 1, 2])) if self.rank(expr) == 4 else expr

    # ------------------------------------------------------------------------------------------ requantization
    def requantize(self, acc, rq: Requant, in_kernel: bool = False, bound: np.ndarray | None = None):
        """reference.apply_requant(acc, rq) -> codes in the output's storage type; acc: an integer expression,
        channels on its last axis. One call of the requantization PrimFunc (`requantize_primfunc`). in_kernel:
        it is the epilogue of one of the dot-product kernels' convs, whose schedules apply it to vectors of
        channels: on ARMv7 it may then take the NEON form (`neon_requantize_params`). bound: |acc| <= bound per
        channel (a conv's, from its weights and input range), which on x86 may allow the float64 form
        (`float64_requantize_params`); else x86 takes the int32 form (`int32_requantize_params`)."""
        relax = self.relax
        shape = list(acc.ty.shape)
        if acc.ty.dtype != "int32":
            acc = self.cast(acc, "int32")
        dtype = rq.out.dtype
        channels = int(shape[-1])
        neon = self.kernel is not None and self.kernel.name.startswith("tcc_dot_neon")
        x86 = self.kernel is not None and not neon  # every requantization, in or out of a kernel
        rows = None
        multiplier = float64_requantize_params(rq, channels, bound) if x86 else None
        if multiplier is not None:
            rows, make = multiplier[1], requantize_float64_primfunc
        elif neon and in_kernel:
            rows, make = neon_requantize_params(rq, channels), requantize_neon_primfunc
        elif x86:
            rows, make = int32_requantize_params(rq, channels), requantize_int32_primfunc
        if rows is not None:
            varying = [k for k in range(len(rows)) if np.any(rows[k] != rows[k, 0])]
            params = [self.const(rows[varying] if varying else rows[:1], "int32")]
            uniform = {k: int(rows[k, 0]) for k in range(len(rows)) if k not in varying}
            if multiplier is not None:
                params.insert(0, self.const(multiplier[0][None], "float64"))
            func = make(dtype, shape, uniform)
        else:
            narrow, p32, p64 = requantize_params(rq, channels)
            params = [self.const(p32, "int32"), self.const(p64, "int64")]
            func = requantize_primfunc(dtype, shape, narrow)
        # one function per call: FuseTIR cannot map one function called twice inside a fused group
        func = self.bb.add_func(func, f"tcc_requantize_{dtype}")
        return self.emit(relax.call_tir(func, [acc, *params], relax.TensorType(shape, dtype)))

    def moved(self, c: _Codes, expr, rs: Requant | None, out: QParams):
        """reference._moved: codes `expr` (taken from c) at the output's parameters: a copy (clamped where the
        ranges differ) or a requantization of the zero-point-free codes."""
        if rs is None:
            dtype = out.dtype
            if c.lo >= out.lo and c.hi <= out.hi and storage_dtype(c.lo, c.hi) == dtype:
                return _Codes(expr, out)
            return _Codes(self.cast(self.clip(self.cast(expr, "int32"), out.lo, out.hi, "int32"), dtype), out)
        x = self.cast(expr, "int32")
        if c.zp:
            x = self.emit(self.relax.op.subtract(x, self.const(c.zp, "int32")))
        return _Codes(self.requantize(x, rs), out)

    def dequantize(self, c: _Codes):
        """QTensor.dequant: ((q - zp) * float32(scale)), computed by numpy in float64, rounded to float32."""
        x = self.centered(c, "int32")
        y = self.emit(self.relax.op.multiply(self.relax.op.astype(x, "float64"),
                                             self.const(np.float64(np.float32(c.scale)), "float64")))
        return self.nchw(self.cast(y, "float32"))

    # ------------------------------------------------------------------------------------------ the graph
    def lower(self, qg: QGraph, expose=(), batch: int | None = None):
        relax, op = self.relax, self.relax.op
        from tvm import tirx as tir

        dims = []
        for k, d in enumerate(qg.input_shape):
            if k == 0 and batch is not None:
                dims.append(batch)
            else:
                dims.append(d if isinstance(d, int) else tir.Var(d or f"d{k}", "int64"))
        x = relax.Var("x", relax.TensorType(dims, "float32"))
        env: dict[str, object] = {}
        with self.bb.function("main", [x]):
            with self.bb.dataflow():
                p = qg.input_q
                if p is None:  # only float islands read the input
                    env[qg.input] = x
                else:
                    func = self.bb.add_func(quantize_input_primfunc(dims, p, self.reciprocal), "tcc_quantize_input")
                    codes = self.emit(relax.call_tir(func, [x], relax.TensorType(dims, p.dtype)))
                    env[qg.input] = _Codes(self.nhwc(codes), p)
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

    # ------------------------------------------------------------------------------------------ weighted
    def _accumulated(self, n: QNode, acc, x: _Codes, correction: np.ndarray | None = None,
                     in_kernel: bool = False) -> list:
        """acc (+ the bias, + `correction`: what a dot-product kernel's shifted codes took away) requantized, or
        dequantized where it is a float graph output. x: the input, whose code range bounds acc."""
        op = self.relax.op
        ndim = self.rank(acc)
        ch = [1] * (ndim - 1) + [-1]
        bias = n.bias
        if correction is not None and np.any(correction):
            bias = correction if bias is None else np.asarray(bias, np.int64) + correction
        if bias is not None:
            acc = self.emit(op.add(acc, self.const(np.asarray(bias).reshape(ch), "int32")))
        if n.qout[0] is None:  # a float graph output: dequantize the accumulator
            y = self.emit(op.multiply(op.astype(acc, "float64"),
                                      self.const(n.acc_scale.astype(np.float64).reshape(ch), "float64")))
            if n.float_clamp is not None:
                lo, hi = n.float_clamp
                if lo is not None:
                    y = self.emit(op.maximum(y, self.const(lo, "float64")))
                if hi is not None:
                    y = self.emit(op.minimum(y, self.const(hi, "float64")))
            return [self.nchw(self.cast(y, "float32"))]
        bound = accumulator_bound(n.kind, n.weight, n.bias, x.params)
        return [_Codes(self.requantize(acc, n.requant, in_kernel, bound), n.qout[0])]

    def conv(self, n: QNode, x: _Codes) -> list:
        a = n.attrs
        shape = self._dot_shape(n, x)
        if shape is not None:
            return self._dot_conv(n, x, shape)
        shape = self._depthwise_shape(n, x)
        if shape is not None:
            func = self.bb.add_func(depthwise_primfunc(shape, x.expr.ty.dtype), "tcc_dw_conv")
            weights = np.ascontiguousarray(n.weight[:, 0].transpose(1, 2, 0))  # [kh, kw, c]
            acc = self.emit(self.relax.call_tir(func, [x.expr, self.const(weights, "int16")],
                                                self.relax.TensorType([shape.n, *shape.out_hw, shape.c], "int32")))
            return self._accumulated(n, acc, x, in_kernel=True)
        hwio = np.ascontiguousarray(n.weight.transpose(2, 3, 1, 0))
        wide = self.operand_dtype(x)
        acc = self.emit(self.relax.op.nn.conv2d(
            self.centered(x, wide), self.const(hwio, wide), strides=a["strides"], padding=a["pads"],
            dilation=a["dilations"], groups=a["group"], data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32"))
        return self._accumulated(n, acc, x)

    def _conv_shape(self, n: QNode, x: _Codes, int16: bool = False):
        """The conv's shape on 8-bit codes (`int16`: or int16 ones) with zero point 0 and static shapes (what tcc's
        integer kernels take), else None."""
        a = n.attrs
        dims = [_static(d) for d in x.expr.ty.shape]
        codes = ("int8", "uint8", "int16") if int16 else ("int8", "uint8")
        if x.zp or x.expr.ty.dtype not in codes or len(dims) != 4 or None in dims:
            return None
        kh, kw = n.weight.shape[2:]
        return ConvShape(*dims, int(n.weight.shape[0]), int(kh), int(kw), tuple(a["strides"]), tuple(a["pads"]),
                         tuple(a["dilations"]))

    def _depthwise_shape(self, n: QNode, x: _Codes):
        """A depthwise conv's shape (one input channel per output channel), when a dot-product kernel is in use (its
        int16 x int16 taps take int16 codes as they are)."""
        shape = self._conv_shape(n, x, int16=True) if self.kernel is not None else None
        if shape is None or n.attrs["group"] != shape.c or shape.co != shape.c or shape.c % 8:
            return None  # 8k channels: the schedule's vectors (tvm_schedule.Int8Depthwise)
        return shape

    def _dot_shape(self, n: QNode, x: _Codes):
        """The conv's shape when the target's dot-product kernel takes it (a dense conv), else None. int16 codes:
        the kernels that multiply int16 pairs (x86 `vpmaddwd`: each int16 x int16 pair summed into int32, exact for
        int8 weights); the u8 / s8 kernels (VNNI, ARM) leave them to the generic conv."""
        dense = self.kernel is not None and n.attrs["group"] == 1
        shape = self._conv_shape(n, x, int16=dense and self.kernel.act_dtype == "int16") if dense else None
        return shape if shape is not None and supports(shape, narrow_kernel(shape, self.kernel)) is None else None

    def _dot_conv(self, n: QNode, x: _Codes, shape) -> list:
        """The conv as one call of the kernel's PrimFunc (tvm_int8_kernels.conv_primfunc): the codes converted to
        the kernel's type (shifted where its signedness differs; Relax fuses the conversion into the producer),
        the weights packed, the shift's effect taken back in the bias."""
        op = self.relax.op
        offset = self.kernel.act_offset(x.expr.ty.dtype)
        codes = x.expr
        if self.kernel.act_dtype == "int16" or offset:
            codes = self.cast(codes, "int16")
            if offset:
                codes = self.cast(self.emit(op.add(codes, self.const(offset, "int16"))), self.kernel.act_dtype)
        kernel, im2col = kn.dot_form(shape, kn.narrow_kernel(shape, self.kernel))
        weights = n.weight
        if im2col:  # the windows of few input channels, copied out: the conv becomes 1 x 1 on them
            flat = kn.im2col_shape(shape, kernel)
            func = self.bb.add_func(kn.im2col_primfunc(shape, flat.c, kernel.act_dtype, offset), "tcc_im2col")
            codes = self.emit(self.relax.call_tir(func, [codes], self.relax.TensorType(
                [flat.n, flat.h, flat.w, flat.c], kernel.act_dtype)))
            shape, weights = flat, kn.im2col_weights(n.weight, flat.c)
        packed = kn.pack_weights(weights, shape, kernel)
        layer = kn.layer_kernel(kernel, packed)
        if layer is not kernel:
            packed = kn.pack_weights(weights, shape, layer)
        make = kn.dot_conv_primfunc if layer.form == "dot" else kn.conv_primfunc
        func = self.bb.add_func(make(shape, layer, pad_code=offset), "tcc_dot_conv")
        acc = self.emit(self.relax.call_tir(func, [codes, self.const(packed, layer.weight_dtype)],
                                            self.relax.TensorType([shape.n, *shape.out_hw, shape.co], "int32")))
        return self._accumulated(n, acc, x, kn.bias_correction(n.weight, offset), in_kernel=True)

    def gemm(self, n: QNode, x: _Codes) -> list:
        op = self.relax.op
        wide = self.operand_dtype(x)
        xi = self.centered(x, wide)
        if self.rank(xi) != 2:
            xi = self.emit(op.reshape(self.nchw(xi), [xi.ty.shape[0], -1]))
        acc = self.emit(op.matmul(xi, self.const(n.weight, wide), out_dtype="int32"))
        return self._accumulated(n, acc, x)

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

    def mul(self, n: QNode, a: _Codes, b: _Codes) -> list:
        prod = self.emit(self.relax.op.multiply(self.centered(a, "int32"), self.centered(b, "int32")))
        return [_Codes(self.requantize(prod, n.requant), n.qout[0])]

    def lookup(self, n: QNode, x: _Codes) -> list:
        op = self.relax.op
        index = self.cast(x.expr, "int32")
        if n.qin[0].lo:
            index = self.emit(op.subtract(index, self.const(n.qin[0].lo, "int32")))
        out = n.qout[0]
        return [_Codes(self.emit(op.take(self.const(n.table, out.dtype), index, axis=0)), out)]

    def channel_scale(self, n: QNode, x: _Codes) -> list:
        """reference.channel_scale: both sides requantized (channels last), the one by the code's sign chosen."""
        op = self.relax.op
        d = self.centered(x, "int32")
        above, below = (self.requantize(self.emit(op.multiply(d, self.const(k, "int32"))), rq)
                        for k, rq in ((n.factors[0], n.requant), (n.factors[1], n.below)))
        y = self.emit(op.where(self.emit(op.greater_equal(d, self.const(0, "int32"))), above, below))
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
        expr = x.expr
        if any((pt, pl, pb, pr)):
            # pad with the lowest code explicitly (the reference's pad value; it is a code of the tensor's own
            # type), then pool unpadded
            expr = self.emit(op.nn.pad(expr, [0, 0, pt, pb, pl, pr, 0, 0], pad_value=float(x.lo)))
        y = self.emit(op.nn.max_pool2d(expr, pool_size=g["kernel"], strides=g["strides"], layout="NHWC"))
        y = self.cast(y, storage_dtype(x.lo, x.hi))
        return [self.moved(x, y, n.rescale[0], n.qout[0])]

    def global_max_pool(self, n: QNode, x: _Codes) -> list:
        y = self.emit(self.relax.op.max(x.expr, axis=[1, 2], keepdims=True))  # H, W of the channels-last codes
        return [self.moved(x, y, n.rescale[0], n.qout[0])]

    def avg_pool(self, n: QNode, x: _Codes) -> list:
        g = n.attrs
        kh, kw = g["kernel"]
        c = int(x.expr.ty.shape[-1])
        # window sums (zero padding = the reference's pad value 0): a depthwise all-ones conv
        total = self.emit(self.relax.op.nn.conv2d(
            self.centered(x, "int32"), self.const(np.ones((kh, kw, 1, c)), "int32"), strides=g["strides"],
            padding=g["pads"], groups=c, data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32"))
        return [_Codes(self.requantize(total, n.requant), n.qout[0])]

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
        y = self.nhwc(self.emit(self.relax.op.reshape(flat, [flat.ty.shape[0], *n.attrs["shape"]])))
        return [self.moved(x, y, n.rescale[0], n.qout[0])]

    def transpose(self, n: QNode, x: _Codes) -> list:
        y = self.nhwc(self.emit(self.relax.op.permute_dims(self.nchw(x.expr), n.attrs["perm"])))
        return [self.moved(x, y, n.rescale[0], n.qout[0])]

    def split(self, n: QNode, x: _Codes) -> list:
        relax = self.relax
        axis = n.attrs["axis"]
        if self.rank(x.expr) == 4:
            axis = NHWC_AXIS[axis]
        cuts = [int(c) for c in np.cumsum(n.attrs["sizes"])[:-1]]
        parts = self.emit(relax.op.split(x.expr, cuts, axis=axis))
        return [self.moved(x, self.emit(relax.TupleGetItem(parts, k)), rs, q)
                for k, (rs, q) in enumerate(zip(n.rescale, n.qout))]


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
        ys = [self.emit(relax.TupleGetItem(result, k)) for k in range(len(n.outputs))] \
            if len(n.outputs) > 1 else [result]
        out = []
        for y, q in zip(ys, n.qout):
            if q is None:
                out.append(y)
                continue
            codes = self.emit(op.add(op.round(op.divide(y, self.const(np.float32(q.scale), "float32"))),
                                     self.const(np.float32(q.zp), "float32")))
            codes = self.emit(op.minimum(op.maximum(codes, self.const(q.lo, "float32")), self.const(q.hi, "float32")))
            out.append(_Codes(self.nhwc(self.cast(codes, q.dtype)), q))
        return out


def island_function(bb, n: QNode, shapes: list[list[int]]):
    """The island's sub-model (QNode.float_model) as a private Relax function: TVM's ONNX frontend with the given
    input shapes; the PrimFuncs it calls (call_tir) are added to `bb`'s module and the calls pointed at them."""
    import warnings

    from tvm.relax.expr_functor import PyExprMutator, mutator


    names = [i.name for i in n.float_model.graph.input]
    with warnings.catch_warnings():  # the frontend renames tensors with dots, loudly: names are not kept here
        warnings.simplefilter("ignore", UserWarning)
        imported = import_onnx(n.float_model, shape_dict=dict(zip(names, shapes)))
    moved = {gv: bb.add_func(f, f"tcc_island_{gv.name_hint}") for gv, f in imported.functions_items()
             if gv.name_hint != "main"}

    @mutator
    class Retarget(PyExprMutator):
        def visit_global_var_(self, gv):
            return moved.get(gv, gv)

    func = Retarget().visit_expr(imported["main"]) if moved else imported["main"]
    for key in ("global_symbol", "num_input", "params"):
        if func.attrs and key in func.attrs:
            func = func.without_attr(key)
    return func


def lower_int8(onnx_model: onnx.ModelProto, table: CalibrationTable, *, expose: tuple[str, ...] = (),
               batch: int | None = None, target: str | None = None):
    """The FP32 ONNX graph `onnx_model` (the graph `table` was calibrated on) as an integer Relax IRModule whose
    main(x: float32 NCHW) returns the float32 output equal to reference.run_reference(onnx_model, table, x).

    expose: quantized tensors whose codes (in their int8 / uint8 storage type) main also returns, after the graph
    output(s) -- for comparing every layer with the reference's `return_all` codes. batch: fix the input's batch
    dimension (the deployed module: static shapes, which tcc's CPU schedules need); None keeps the model's own.
    target: the registry target it is compiled for: its integer dot-product kernel (tvm_int8_kernels) takes the
    dense convs; None: the generic form, which compiles for any target."""
    graph = plan(onnx_model, lowering=TVM, rules=table.doc.get("target", "tvm"))

    lowering = RelaxLowering(dot_kernel(target), target is not None and reciprocal_division(_tvm_target(target)))
    return lowering.lower(quantize_graph(graph, table), tuple(expose), batch)


def _tvm_target(target: str):
    import tvm


    return tvm.target.Target(resolve_tvm_target(target))


def dot_kernel(target: str | None):
    """The integer dot-product kernel for a target of the registry (None: none, the generic form)."""
    return None if target is None else kernel_for(_tvm_target(target))


def _half_even_mul(x, q, k, below_half):
    """TIR: multiply_by_quantized_multiplier(x, q, shift) for int64 x (|x| < 2^31) with k = 31 - shift and
    below_half = 2^(k - 1) - 1: the exact product p = x * q divided by 2^k with one rounding, half to even, as in
    the reference: (p + 2^(k-1) - 1 + b) >> k with b = bit k of p (the floor's parity). With f = p >> k and the
    remainder r, that is f + 1 exactly where r + 2^(k-1) - 1 + b >= 2^k: r > 2^(k-1), or r = 2^(k-1) with f odd.
    No comparison: only multiplies, shifts, ands and adds, which vectorize on every target (ARMv7 NEON has no
    64-bit compare; the compare form ran as scalar code there)."""
    from tvm import tirx

    prod = x * q
    odd = (prod >> k) & tirx.const(1, "int64")
    return (prod + below_half + odd) >> k


def _static(d) -> int | None:
    try:
        return int(d)
    except TypeError:  # a symbolic dimension
        return None


def _dims(shape):
    """int64 extents, like Relax's shapes (int32 ones make FuseTIR see two different buffers); anything but an int
    (a symbolic batch) becomes a symbolic dimension."""
    from tvm import tirx

    return [tirx.IntImm("int64", int(d)) if isinstance(d, (int, tirx.IntImm)) else tirx.Var(f"d{i}", "int64")
            for i, d in enumerate(shape)]


def quantize_input_primfunc(shape, p: QParams, reciprocal: bool = False):
    """Equation (8) in float32 like the reference (reference.quantize_input): clamp(rint(x / s) + zp, lo, hi),
    computed as rint(clamp(x / s, lo - zp, hi - zp)) + zp (the same: rint is monotone and keeps integers), the
    rounding by the float32 adder itself: v + 1.5 * 2^23 lies in [2^23, 2^24), where float32 holds integers
    exactly and IEEE addition rounds half to even, so its bits minus those of 1.5 * 2^23 are rint(v), for
    |v| < 2^22. No call of libm's rint per element (ARMv7 has no rounding instruction); the reinterpretation
    keeps the simplifier from folding (v + c) - c to v.
    reciprocal: x / s as `exact_quotient` computes it, by multiply-adds (targets without a vector division,
    `reciprocal_division`); where its bounds do not hold for these parameters, the division."""
    from tvm import te, tirx


    dims = _dims(shape)
    x = te.placeholder(dims, "float32", name="x")
    magic = np.float32(1.5 * 2.0**23)
    bits = int(magic.view(np.int32))
    by_reciprocal = reciprocal and exact_quotient_applies(p)

    def fma(a, b, c):
        return tirx.call_llvm_pure_intrin("float32", "llvm.fma", a, b, c)

    def clamp(v, lo, hi):
        return tirx.min(tirx.max(v, tirx.const(lo, "float32")), tirx.const(hi, "float32"))

    def one(*idx):
        if by_reciprocal:
            v = exact_quotient(x[idx], p.scale, fma, clamp)
        else:
            v = x[idx] / tirx.const(np.float32(p.scale), "float32")
        v = clamp(v, float(p.lo - p.zp), float(p.hi - p.zp))
        r = tirx.reinterpret("int32", v + tirx.const(magic, "float32")) - tirx.const(bits - p.zp, "int32")
        return r.astype(p.dtype)

    out = te.compute(dims, one, name=QUANTIZE_BLOCK)
    return te.create_prim_func([x, out]).without_attr("global_symbol").with_attr("tcc.op_pattern", 0)


# x / s by `exact_quotient`: s within these powers of two (no reciprocal, product or residual leaves float32's
# normal range for the inputs that decide a code), codes within QUOTIENT_CLAMP of the zero point
QUOTIENT_SCALES = (2.0**-100, 2.0**100)
QUOTIENT_CLAMP = 1024


def exact_quotient_applies(p: QParams) -> bool:
    return (QUOTIENT_SCALES[0] <= p.scale <= QUOTIENT_SCALES[1]
            and max(abs(p.lo - p.zp), abs(p.hi - p.zp)) < QUOTIENT_CLAMP)


def exact_quotient(x, scale: float, fma, clamp):
    """fl(x / s) for float32 x (clamped to +-QUOTIENT_CLAMP * s first: the quotient past every code bound, as
    the division's, infinities included) without a division: r = fl(1 / s), y = fl(x r), then two Newton
    corrections q' = fma(fma(-q, s, x), r, q). The first makes q faithful (within one ulp of x / s; y alone is
    only within 1.5 ulps); from a faithful q the residual fma(-q, s, x) is exact and the second correction is
    the correctly rounded quotient (Markstein's theorem, round to nearest even; Muller et al., Handbook of
    Floating-Point Arithmetic, on division by fused multiply-adds). Generic in the arithmetic: fma(a, b, c) and
    clamp(v, lo, hi) are TIR calls in the kernel and float32 emulations in the tests
    (tests/test_tvm_int8_quantize.py). Where it differs from
    a division: NEON flushes subnormals to zero, so a subnormal x gives 0, which is the code zp as x / s
    (|x / s| < 1/2 for every s that `exact_quotient_applies` takes)."""
    s = np.float32(scale)
    r = np.float32(1) / s
    bound = s * np.float32(QUOTIENT_CLAMP)  # exact: a power of two
    x = clamp(x, -bound, bound)
    q = x * r
    for _ in range(2):
        q = fma(fma(-q, s, x), r, q)
    return q


def requantize_params(rq: Requant, channels: int) -> tuple[bool, np.ndarray, np.ndarray]:
    """(narrow, int32 [4, C], int64 [2, C]) for `requantize_primfunc`: one row per parameter, so that a vector of
    channels loads each with one instruction (a [C, 6] table measured 1.45x slower on x86).

    int32 rows: q (< 2^31: the product acc * q is a widening 32 x 32 -> 64 multiply, vmull.s32 / vpmuldq), and
    for the narrow form lo - zp, hi - zp (clipped to int32) and zp; int64 rows: k = 31 - shift, 2^(k-1) - 1.
    narrow: every k >= 31 (multipliers below 1, as a conv's s_in s_w / s_out), so that the rounded product
    |acc q / 2^k| <= 2^31 - 1 fits int32 and the clamp runs on int32 lanes: clamp(y + zp, lo, hi) = clamp(y,
    lo - zp, hi - zp) + zp, and clipping those bounds to int32 changes nothing for an int32 y. ARMv7 NEON has no
    64-bit min / max (the int64 clamp ran as scalar code there); the wide form keeps it, in int64."""
    q, k, below_half = fixed_point(rq.mult.q, rq.mult.shift)
    narrow = bool(np.all(k >= 31))
    p32 = np.empty((4, channels), np.int64)
    p32[0] = q
    if narrow:
        p32[1], p32[2] = rq.lo - np.int64(rq.zp), rq.hi - np.int64(rq.zp)
    else:
        p32[1], p32[2] = rq.lo, rq.hi
    p32[3] = rq.zp
    p64 = np.empty((2, channels), np.int64)
    p64[0], p64[1] = k, below_half
    return narrow, np.clip(p32, INT32_MIN, INT32_MAX).astype(np.int32), p64


def neon_requantize_params(rq: Requant, channels: int) -> np.ndarray | None:
    """int32 [8, C] for `requantize_neon_primfunc`, or None where that form does not apply: it needs every shift
    s = -shift in [1, 22] (multipliers below 1/2; every conv of the zoo's models) and an output within 16 bits.
    Rows: q, 2^(s-1) - 1, 2^s, 2^(31 - v) - 1 with v the number of trailing zero bits of q, -s, lo - zp,
    hi - zp, zp. Why these, see `requantize_neon_primfunc`."""
    q, shift = np.atleast_1d(np.asarray(rq.mult.q, np.int64)), np.atleast_1d(np.asarray(rq.mult.shift, np.int64))
    s = -np.broadcast_to(shift, (channels,))
    q = np.broadcast_to(q, (channels,))
    if np.any(s < 1) or np.any(s > 22) or rq.lo < -(1 << 15) or rq.hi > (1 << 15) or np.any(q <= 0):
        return None
    trailing = np.array([(int(v) & -int(v)).bit_length() - 1 for v in q], np.int64)
    rows = np.stack([q, (1 << (s - 1)) - 1, 1 << s, (1 << (31 - trailing)) - 1, -s,
                     np.full(channels, rq.lo - rq.zp), np.full(channels, rq.hi - rq.zp), np.full(channels, rq.zp)])
    return rows.astype(np.int32)


def requantize_neon_primfunc(dtype: str, shape, uniform: dict[int, int] | None = None):
    """The requantization as `requantize_primfunc` computes it, in 32-bit NEON lanes (ARMv7 has no 64-bit
    vector multiply, compare or min / max; the int64 form costs ~5 instructions per value there). With the
    exact product P = acc q and k = 31 + s:

        hi = floor(P / 2^31)                         vqdmulh.s32 (the doubling high half: exact floor)
        y = (hi + 2^(s-1) - 1 + m) >> s              rounds P / 2^k half to even, where
        m = [P mod 2^31 != 0] or [bit s of hi]       P mod 2^31 != 0  <=>  acc has a set bit below 31 - v
                                                     (v = trailing zero bits of q): no low product needed

    (hi = f 2^s + t: y = f + [t + m > 2^(s-1)], which is f + 1 exactly when the remainder t 2^31 + (P mod
    2^31) is above half, or is half (t = 2^(s-1), P mod 2^31 = 0) and f is odd.) The sums saturate
    (llvm.sadd.sat: vqadd.s32): a saturated sum is past every 16-bit clamp bound when s <= 22 (`neon_requantize_params`), and TIR's
    int32 arithmetic may not wrap. Then clamp(y, lo - zp, hi - zp) + zp as in the narrow form. Only for the
    epilogues of tcc's kernels, whose schedules vectorize it (the NEON intrinsics have no scalar form).
    uniform: rows of `neon_requantize_params` equal for every channel (row -> value), compiled in as constants
    (the bounds and zero point always; the shift where the layer has one): the params tensor holds the others,
    in order (at least one row)."""
    from tvm import te, tirx

    uniform = uniform or {}
    varying = [k for k in range(8) if k not in uniform]
    dims = _dims(shape)
    acc = te.placeholder(dims, "int32", name="acc")
    par = te.placeholder((tirx.IntImm("int64", max(1, len(varying))), dims[-1]), "int32", name="params")

    def intrin(name, *args):
        return tirx.call_llvm_pure_intrin("int32", name, *args)

    def one(*idx):
        c = idx[-1]
        q, below, bit, low_mask, neg_s, lo, hi, zp = (
            tirx.const(uniform[k], "int32") if k in uniform else par[varying.index(k), c] for k in range(8))
        x = acc[idx]
        high = intrin("llvm.arm.neon.vqdmulh", x, q)
        m = tirx.Or(tirx.NE(x & low_mask, 0), tirx.NE(high & bit, 0)).astype("int32")
        y = intrin("llvm.arm.neon.vshifts", intrin("llvm.sadd.sat", intrin("llvm.sadd.sat", high, below), m), neg_s)
        return (tirx.min(tirx.max(y, lo), hi) + zp).astype(dtype)

    out = te.compute(dims, one, name="requantize")
    func = te.create_prim_func([acc, par, out]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 0)  # as requantize_primfunc: fuses into the producing conv


FLOAT64_EXACT = 2**53  # |integer| below this: exact in float64


def float64_requantize_params(rq: Requant, channels: int, bound: np.ndarray | None) -> tuple | None:
    """(float64 [C], int32 [3, C]) for `requantize_float64_primfunc`, or None where that form does not apply:
    it needs multipliers below 1 (k = 31 - shift >= 31) and every product |acc q| <= bound q below 2^53, so that
    float64 holds it exactly (bound None: |acc| unknown). The float64 row: M = q / 2^k (exact: a 31-bit q times a
    power of two); the int32 rows: lo - zp, hi - zp, zp."""
    if bound is None:
        return None
    q, k, _ = fixed_point(rq.mult.q, rq.mult.shift)
    q, k = np.broadcast_to(q, (channels,)), np.broadcast_to(k, (channels,))
    if np.any(k < 31) or np.any(np.abs(q) * np.broadcast_to(bound, (channels,)) >= FLOAT64_EXACT):
        return None
    m = np.ldexp(q.astype(np.float64), -k.astype(np.int32))
    rows = np.stack([np.full(channels, rq.lo - rq.zp), np.full(channels, rq.hi - rq.zp), np.full(channels, rq.zp)])
    return m, np.clip(rows, INT32_MIN, INT32_MAX).astype(np.int32)


def requantize_float64_primfunc(dtype: str, shape, uniform: dict[int, int] | None = None):
    """The requantization as `requantize_primfunc` computes it, in float64 where that is exact
    (`float64_requantize_params`): acc M is the exact product acc q / 2^k (below 2^53, times a power of two),
    and rounding it to the nearest integer, ties to even (nearbyint: the default rounding mode, vroundpd), is
    the reference's rounding of acc q / 2^k. Then clamp(y, lo - zp, hi - zp) + zp in int32 as in the narrow
    form. Four conversions and a multiply per 8 values on AVX2, where the 64-bit integer product takes
    widening, shifts and shuffles (a light layer -- depthwise, a stem on 3 channels -- spends more on its
    requantization than on its products). Params: float64 [1, C] (M), int32 [rows, C]: the rows of
    `float64_requantize_params` not in `uniform` (row -> value, compiled in as constants; at least one row)."""
    from tvm import te, tirx

    uniform = uniform or {}
    varying = [k for k in range(3) if k not in uniform]
    dims = _dims(shape)
    acc = te.placeholder(dims, "int32", name="acc")
    mul = te.placeholder((tirx.IntImm("int64", 1), dims[-1]), "float64", name="multiplier")
    par = te.placeholder((tirx.IntImm("int64", max(1, len(varying))), dims[-1]), "int32", name="params")

    def one(*idx):
        c = idx[-1]
        lo, hi, zp = (tirx.const(uniform[k], "int32") if k in uniform else par[varying.index(k), c] for k in range(3))
        y = tirx.nearbyint(acc[idx].astype("float64") * mul[0, c]).astype("int32")
        return (tirx.min(tirx.max(y, lo), hi) + zp).astype(dtype)

    out = te.compute(dims, one, name="requantize")
    func = te.create_prim_func([acc, mul, par, out]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 0)  # as requantize_primfunc: fuses into the producing conv


def int32_requantize_params(rq: Requant, channels: int) -> np.ndarray | None:
    """int32 [9, C] for `requantize_int32_primfunc`, or None where that form does not apply: it needs every
    multiplier below 1/2 (s = -shift in [1, 30]) and q > 0. Rows: q, 2^(31 - v) - 1 with v the number of
    trailing zero bits of q, s, 2^s - 1, 2^(s-1), 2^s, lo - zp, hi - zp, zp."""
    q, shift = np.atleast_1d(np.asarray(rq.mult.q, np.int64)), np.atleast_1d(np.asarray(rq.mult.shift, np.int64))
    s = -np.broadcast_to(shift, (channels,))
    q = np.broadcast_to(q, (channels,))
    if np.any(s < 1) or np.any(s > 30) or np.any(q <= 0) or np.any(q > INT32_MAX):
        return None
    trailing = np.array([(int(v) & -int(v)).bit_length() - 1 for v in q], np.int64)
    rows = np.stack([q, (1 << (31 - trailing)) - 1, s, (1 << s) - 1, 1 << (s - 1), 1 << s,
                     np.full(channels, rq.lo - rq.zp), np.full(channels, rq.hi - rq.zp), np.full(channels, rq.zp)])
    return np.clip(rows, INT32_MIN, INT32_MAX).astype(np.int32)


def requantize_int32_primfunc(dtype: str, shape, uniform: dict[int, int] | None = None):
    """The requantization as `requantize_primfunc` computes it, with one 64-bit step: the high half of the
    product, the rest in int32 lanes (x86: AVX2 has no 64-bit arithmetic shift, min or max, and an int64 lane
    holds half as many values; the int64 form was most of a light layer's time, FastNet's stem 78%). With the
    exact product P = acc q (|P| < 2^62) and k = 31 + s:

        hi = floor(P / 2^31)                          (vpmuldq, the high half shifted: fits int32)
        y = (hi >> s) + (((hi & (2^s - 1)) + 2^(s-1) - z) >> s)
        z = [acc & (2^(31 - v) - 1) == 0] and [bit s of hi == 0]

    which is `requantize_neon_primfunc`'s (hi + 2^(s-1) - 1 + m) >> s with m = 1 - z (P mod 2^31 = 0 exactly
    where acc has no set bit below 31 - v, v the trailing zero bits of q; bit s of hi is the floor's parity),
    split so that no int32 sum can overflow: the second term is 0 or 1. Then clamp(y, lo - zp, hi - zp) + zp as
    in the narrow form. uniform: rows of `int32_requantize_params` equal for every channel, compiled in as
    constants; the params tensor holds the others, in order (at least one row)."""
    from tvm import te, tirx

    uniform = uniform or {}
    varying = [k for k in range(9) if k not in uniform]
    dims = _dims(shape)
    acc = te.placeholder(dims, "int32", name="acc")
    par = te.placeholder((tirx.IntImm("int64", max(1, len(varying))), dims[-1]), "int32", name="params")

    def one(*idx):
        c = idx[-1]
        q, low_mask, s, mask, half, bit, lo, hi, zp = (
            tirx.const(uniform[k], "int32") if k in uniform else par[varying.index(k), c] for k in range(9))
        x = acc[idx]
        high = ((x.astype("int64") * q.astype("int64")) >> tirx.const(31, "int64")).astype("int32")
        exact = tirx.And(tirx.EQ(x & low_mask, 0), tirx.EQ(high & bit, 0)).astype("int32")
        y = (high >> s) + (((high & mask) + half - exact) >> s)
        return (tirx.min(tirx.max(y, lo), hi) + zp).astype(dtype)

    out = te.compute(dims, one, name="requantize")
    func = te.create_prim_func([acc, par, out]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 0)  # as requantize_primfunc: fuses into the producing conv


def requantize_primfunc(dtype: str, shape, narrow: bool = True):
    """The requantization kernel for one output dtype and shape, fused by Relax into the producing conv. Channels
    last:

        out[..., c] = clamp(multiply_by_quantized_multiplier(acc[..., c], q[c], shift[c]) + zp[c], lo[c], hi[c])

    acc int32 [D0, .., C]; p32 int32 [4, C], p64 int64 [2, C] and `narrow` as `requantize_params` makes them;
    out `dtype`. (Sign and magnitude, for AVX2's missing arithmetic 64-bit shift, measured no faster.)"""
    from tvm import te, tirx

    dims = _dims(shape)
    acc = te.placeholder(dims, "int32", name="acc")
    p32 = te.placeholder((tirx.IntImm("int64", 4), dims[-1]), "int32", name="p32")
    p64 = te.placeholder((tirx.IntImm("int64", 2), dims[-1]), "int64", name="p64")

    def one(*idx):
        c = idx[-1]
        q, lo, hi, zp = (p32[p, c] for p in range(4))
        y = _half_even_mul(acc[idx].astype("int64"), q.astype("int64"), p64[0, c], p64[1, c])
        if narrow:
            return (tirx.min(tirx.max(y.astype("int32"), lo), hi) + zp).astype(dtype)
        y = y + zp.astype("int64")
        return tirx.min(tirx.max(y, lo.astype("int64")), hi.astype("int64")).astype(dtype)

    out = te.compute(dims, one, name="requantize")
    # op pattern kElemWise, as TVM's analysis rates a bias add (out[..., c] from acc[..., c] and constants of
    # channel c): Relax then fuses it into the conv that makes acc, like an activation. Its own analysis would say
    # "injective" (params[k, c]), which a conv does not take into its group; tvm_compile's pipeline applies this
    # declared pattern after that analysis
    func = te.create_prim_func([acc, p32, p64, out]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 0)


def add_primfunc(a: _Codes, b: _Codes, p, shape):
    """TFLite's integer ADD (reference.add_codes) on codes a, b of equal rank (broadcast where a dimension is 1),
    the fixed-point constants of `p` (qgraph.AddParams) baked in: per element, in int64,

        sa = mul((a - za) << 20, qa, shift_a); sb = mul((b - zb) << 20, qb, shift_b)
        out = clamp(mul(sa + sb, q_out, shift_out) + z_out, lo, hi)

    with mul the half-to-even fixed-point multiply (`_half_even_mul`). One kernel instead of ~20 int64 Relax ops:
    the same arithmetic, a tenth of the compile time (ResNet-34 INT8 at 64 x 64: 93 s -> 9 s)."""
    from tvm import te, tirx

    dims = _dims(shape)
    one_ = tirx.IntImm("int64", 1)
    c = lambda v: tirx.const(int(v), "int64")  # noqa: E731

    def operand(codes: _Codes, name: str):
        """The operand's placeholder (the output's dimensions, 1 where it broadcasts) and its broadcast axes."""
        bcast = [_static(d) == 1 and _static(o) != 1 for d, o in zip(codes.expr.ty.shape, shape)]
        return te.placeholder([one_ if b else d for b, d in zip(bcast, dims)], codes.params.dtype, name=name), bcast

    (ta, bcast_a), (tb, bcast_b) = operand(a, "a"), operand(b, "b")

    def scaled(t, bcast, zp, m, idx):
        index = tuple(tirx.IntImm("int64", 0) if bc else i for i, bc in zip(idx, bcast))
        q, k, below_half = fixed_point(m.q, m.shift)
        x = (t[index].astype("int64") - c(zp)) << c(p.left_shift)
        return _half_even_mul(x, c(q[0]), c(k[0]), c(below_half[0]))

    q, k, below_half = fixed_point(p.out.mult.q, p.out.mult.shift)

    def one(*idx):
        total = scaled(ta, bcast_a, a.zp, p.a, idx) + scaled(tb, bcast_b, b.zp, p.b, idx)
        y = _half_even_mul(total, c(q[0]), c(k[0]), c(below_half[0])) + c(p.out.zp)
        return tirx.min(tirx.max(y, c(p.out.lo)), c(p.out.hi)).astype(p.out.out.dtype)

    out = te.compute(dims, one, name="add")
    func = te.create_prim_func([ta, tb, out]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 1)  # broadcast: fuses with the elementwise ops around it


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
