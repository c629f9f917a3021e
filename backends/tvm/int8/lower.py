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

This module holds the interpreter (`RelaxLowering`) and its entry point (`lower_int8`). The PrimFuncs it calls are
built in tir.py (input quantization, Add, the fixed-point multiply) and requantize.py (the requantization forms),
the dot-product kernels' convs in compute.py; a float island's import is islands.py's; which kernel a target and
a layer get, choose.py's (the kernels themselves: kernels.py).
"""
from __future__ import annotations

import functools

import numpy as np
import onnx

from tcc.errors import BuildError
from tcc.intops import TVM, Interpreter
from tcc.quant.intgraph.fixed_point import INT32_MAX
from tcc.quant.intgraph.plan import plan
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.qtypes import QGraph, QNode, QParams, Requant, accumulator_bound, storage_dtype, window_sums
from tcc.quant.table.file import CalibrationTable

from . import amx, choose, compute
from .choose import _tvm_target, dot_kernel, narrow_kernel, reciprocal_division, supports
from .codes import _Codes
from .compute import depthwise_primfunc
from .islands import island_function
from .kernels import DEPTHWISE_DOT_KERNELS, ConvShape
from .requantize import (
    float64_requantize_params,
    int32_requantize_params,
    neon_requantize_params,
    neon_tie_free_params,
    tie_free_params,
    requantize_float64_primfunc,
    requantize_int32_primfunc,
    requantize_neon_primfunc,
    requantize_neon_tie_free_primfunc,
    requantize_tie_free_primfunc,
    requantize_params,
    requantize_primfunc,
)
from .tir import _static, add_primfunc, quantize_input_primfunc


def _digits_fit(weight: np.ndarray, bias) -> bool:
    """Whether a layer of OIHW `weight` codes (and `bias`) keeps every partial sum of its two-digit form in int32
    (RelaxLowering._digits_conv): per output channel sum |w| (2^15 + 256) + |bias| (the high digit's products << 8,
    the low digit's, the kernel's shift and the bias)."""
    sums = np.abs(weight.astype(np.int64)).reshape(len(weight), -1).sum(axis=1)
    extra = np.abs(np.asarray(bias, np.int64)) if bias is not None else 0
    return bool(np.max(sums * (2 ** 15 + 256) + extra) <= INT32_MAX)


def _magnitude(p: QParams) -> int:
    """The largest |code - zero point| of a tensor's codes."""
    return max(p.hi - p.zp, p.zp - p.lo)


NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}  # an NCHW axis of a 4-D tensor -> its axis channels-last


class RelaxLowering(Interpreter):
    lowering = TVM

    def __init__(self, kernel=None, reciprocal: bool = False, amx: bool = False):
        """kernel: the target's integer dot-product kernel (int8.kernels.DotKernel) for dense convs; None:
        the generic int16 form everywhere (compiles for any target). reciprocal: the input's x / s by
        multiply-adds (`quantize_input_primfunc`; int8.choose.reciprocal_division). amx: the target's CPU
        has AMX-INT8 (amx.py), which takes a stem whose accumulators a max pool reads."""
        from tvm import relax

        self.relax = relax
        self.bb = relax.BlockBuilder()
        self.kernel = kernel
        self.reciprocal = reciprocal
        self.amx = amx
        # a conv's int32 accumulator (bias added) and its requantization, by output name, where a max pool is its
        # only reader: the pool takes the accumulators (`max_pool`)
        self.pooled_accs: dict[str, tuple] = {}
        self.pool_readers: set[str] = set()
        self.amx_pools: dict[str, tuple] = {}  # a conv on AMX, by output name: (shape, pad code, its arguments)

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
        channels: on ARM it may then take the NEON form (`neon_requantize_params`). bound: |acc| <= bound per
        channel (a conv's, from its weights and input range; a matmul's or product's, from its inputs' code
        ranges), which on x86 may allow the float64 form (`float64_requantize_params`), and may rule out ties: in
        a kernel on ARM the NEON form's (`neon_tie_free_params`), elsewhere `tie_free_params`' plain int32 form;
        else x86 takes the int32 form (`int32_requantize_params`), ARM outside its kernels the int64 one."""
        relax = self.relax
        shape = list(acc.ty.shape)
        if acc.ty.dtype != "int32":
            acc = self.cast(acc, "int32")
        dtype = rq.out.dtype
        channels = int(shape[-1])
        neon = self.kernel is not None and self.kernel.arch != "x86_64"
        x86 = self.kernel is not None and not neon  # every requantization, in or out of a kernel
        multiplier = float64_requantize_params(rq, channels, bound) if x86 else None
        if multiplier is not None:
            rows, make = multiplier[1], requantize_float64_primfunc
        elif neon and in_kernel:
            rows = neon_tie_free_params(rq, channels, bound)
            make = functools.partial(requantize_neon_tie_free_primfunc, arch=self.kernel.arch)
            if rows is None:
                rows = neon_requantize_params(rq, channels)
                make = functools.partial(requantize_neon_primfunc, arch=self.kernel.arch)
        else:  # fewer steps than the int32 form; the int64 form runs as scalar code on ARMv7
            rows, make = tie_free_params(rq, channels, bound), requantize_tie_free_primfunc
            if rows is None and x86:
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
        relax = self.relax
        from tvm import tirx as tir

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
                    func = self.bb.add_func(quantize_input_primfunc(dims, p, self.reciprocal), "tcc_quantize_input")
                    codes = self.emit(relax.call_tir(func, [x], relax.TensorType(dims, p.dtype)))
                    env[qg.input] = _Codes(self.nhwc(codes), p)
                # x86 only: on ARM it executed 0.3-1% fewer instructions (DDSNet), but LLVM 22 aborted compiling an
                # ARMv7 module that also exposes the conv's codes, as the self-check's does ("Do not know how to
                # widen the result of this operator")
                self.pool_readers = _pooled_outputs(qg) if self.kernel is not None and self.kernel.arch == "x86_64" \
                    else set()
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

    # ------------------------------------------------------------------------------------------ weighted
    @staticmethod
    def _bias(n: QNode, correction: np.ndarray | None = None) -> np.ndarray | None:
        """What the accumulator adds: the bias, + `correction` (what a dot-product kernel's shifted codes took
        away); None: nothing."""
        bias = n.bias
        if correction is not None and np.any(correction):
            bias = correction if bias is None else np.asarray(bias, np.int64) + correction
        return None if bias is None else np.asarray(bias)

    def _started(self, bias: np.ndarray | None) -> list:
        """The arguments a kernel's PrimFunc takes after its weights: the vector its accumulators start from."""
        return [] if bias is None else [self.const(bias.reshape(-1), "int32")]

    def _accumulated(self, n: QNode, acc, x: QParams, correction: np.ndarray | None = None,
                     in_kernel: bool = False, started: bool = False) -> list:
        """acc (+ `_bias(n, correction)`, unless the kernel `started` its accumulators from it) requantized, or
        dequantized where it is a float graph output. x: the input's parameters, whose code range bounds acc (a
        pooled conv's: its window sums')."""
        op = self.relax.op
        ndim = self.rank(acc)
        ch = [1] * (ndim - 1) + [-1]
        bias = None if started else self._bias(n, correction)
        if bias is not None:
            acc = self.emit(op.add(acc, self.const(bias.reshape(ch), "int32")))
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
        bound = accumulator_bound(n.kind, n.weight, n.bias, x)
        if n.outputs[0] in self.pool_readers:
            self.pooled_accs[n.outputs[0]] = acc, n.requant, bound
        return [_Codes(self.requantize(acc, n.requant, in_kernel, bound), n.qout[0])]

    def conv(self, n: QNode, x: _Codes) -> list:
        a = n.attrs
        shape = self._digits_shape(n, x)
        if shape is not None:
            return self._digits_conv(n, x, shape)
        shape = self._dot_shape(n, x)
        if shape is not None:
            return self._dot_conv(n, x, shape)
        shape = self._depthwise_rows_shape(n, x)
        if shape is not None:  # `sdot` / `vpdpbusd`: 4 rows of a channel in one lane
            offset = self.kernel.act_offset(x.expr.ty.dtype)
            bias = self._bias(n, compute.bias_correction(n.weight, offset))
            func = self.bb.add_func(compute.depthwise_rows_primfunc(shape, offset, self.kernel.act_dtype,
                                                                    bias is not None,
                                                                    blocked=self.kernel.arch == "x86_64"),
                                    "tcc_dw_dot")
            weights = compute.depthwise_rows_weights(n.weight, shape)
            acc = self.emit(self.relax.call_tir(func, [x.expr, self.const(weights, "int8"), *self._started(bias)],
                                                self.relax.TensorType([shape.n, *shape.out_hw, shape.c], "int32")))
            return self._accumulated(n, acc, x.params, in_kernel=True, started=True)
        shape = self._depthwise_shape(n, x)
        if shape is not None:
            bias = self._bias(n)
            func = self.bb.add_func(depthwise_primfunc(shape, x.expr.ty.dtype, bias is not None), "tcc_dw_conv")
            weights = np.ascontiguousarray(n.weight[:, 0].transpose(1, 2, 0))  # [kh, kw, c]
            acc = self.emit(self.relax.call_tir(func, [x.expr, self.const(weights, "int16"), *self._started(bias)],
                                                self.relax.TensorType([shape.n, *shape.out_hw, shape.c], "int32")))
            return self._accumulated(n, acc, x.params, in_kernel=True, started=True)
        hwio = np.ascontiguousarray(n.weight.transpose(2, 3, 1, 0))
        wide = self.operand_dtype(x)
        acc = self.emit(self.relax.op.nn.conv2d(
            self.centered(x, wide), self.const(hwio, wide), strides=a["strides"], padding=a["pads"],
            dilation=a["dilations"], groups=a["group"], data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32"))
        return self._accumulated(n, acc, x.params)

    def pooled_conv(self, n: QNode, x: _Codes) -> list:
        """reference.pooled_conv. On a dot-product kernel, with 8-bit codes and a window of A = 2^k pixels: the
        window sums S as two 8-bit digits, S >> k and S & (A - 1) (compute.window_digits_primfunc), each a call of
        the kernel on the pooled pixels, (acc_high << k) + acc_low, exact: 2 / A of the multiply-adds of the conv
        before the pool. Else the generic conv on the sums (int32, a depthwise all-ones conv)."""
        op, g = self.relax.op, n.attrs["pool"]
        kh, kw = g["kernel"]
        area = kh * kw
        sums = window_sums(x.params, area)
        dims = [_static(d) for d in x.expr.ty.shape]
        oh, ow = g["out_hw"]
        shape = (ConvShape(dims[0], oh, ow, dims[3], int(n.weight.shape[0]), 1, 1, (1, 1), (0, 0, 0, 0), (1, 1))
                 if self.kernel is not None and area & (area - 1) == 0 and x.params.bits == 8 and not x.zp
                 and n.attrs["group"] == 1 and None not in dims else None)
        if shape is not None and supports(shape, narrow_kernel(shape, self.kernel)) is None:
            dtype = x.expr.ty.dtype
            func = self.bb.add_func(compute.window_digits_primfunc(dims, (kh, kw), g["strides"], dtype),
                                    "tcc_window_digits")
            digit = self.relax.TensorType([dims[0], oh, ow, dims[3]], dtype)
            pair = self.emit(self.relax.call_tir(func, [x.expr], [digit, digit]))
            high, low = (self.emit(self.relax.TupleGetItem(pair, k)) for k in (0, 1))
            high, c_high, _ = self._dot_acc(x, shape, high, n.weight)
            # (high << k) + low: the low digit's accumulators start from the bias
            low, c_low, started = self._dot_acc(x, shape, low, n.weight, lambda c: self._bias(n, c_high * area + c))
            acc = self.emit(op.add(self.emit(op.left_shift(high, self.const(area.bit_length() - 1, "int32"))), low))
            return self._accumulated(n, acc, sums, c_high * area + c_low, in_kernel=True, started=started)
        total = self._window_sums(x, g)
        hwio = np.ascontiguousarray(n.weight.transpose(2, 3, 1, 0))
        wide = "int16" if sums.dtype in ("int8", "uint8", "int16") else "int32"
        acc = self.emit(op.nn.conv2d(self.cast(total, wide), self.const(hwio, wide), strides=n.attrs["strides"],
                                     padding=n.attrs["pads"], dilation=n.attrs["dilations"], groups=n.attrs["group"],
                                     data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32"))
        return self._accumulated(n, acc, sums)

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
            return None  # 8k channels: the schedule's vectors (schedule.int8_rules.Int8Depthwise)
        return shape

    def _depthwise_rows_shape(self, n: QNode, x: _Codes):
        """A depthwise conv's shape where AArch64's `sdot` or AVX-512's `vpdpbusd` takes it
        (compute.depthwise_rows_primfunc): 8-bit codes, 16k channels (a tile of 4 `sdot` lanes of 4 channels, one
        zmm), a kernel of 2 to 4 rows, not dilated. (A 1 x 1 one, a BN after a ReLU, uses a quarter of each
        instruction: DDSNet's three executed 4% more than on int16 taps.)"""
        if self.kernel is None or self.kernel.name not in DEPTHWISE_DOT_KERNELS.values():
            return None
        shape = self._conv_shape(n, x)
        if (shape is None or n.attrs["group"] != shape.c or shape.co != shape.c or shape.c % 16 or shape.kh < 2
                or compute.rows_per_window(shape) == 0):
            return None
        return shape

    def _dot_shape(self, n: QNode, x: _Codes):
        """The conv's shape when the target's dot-product kernel takes it (a dense conv), else None. int16 codes:
        the kernels that multiply int16 pairs (x86 `vpmaddwd`: each int16 x int16 pair summed into int32, exact for
        int8 weights; a VNNI target's twin, choose.codes_kernel); ARM's s8 kernels leave them to the generic conv."""
        kernel = choose.codes_kernel(self.kernel, x.expr.ty.dtype) if n.attrs["group"] == 1 else None
        shape = self._conv_shape(n, x, int16=kernel.act_dtype == "int16") if kernel is not None else None
        return shape if shape is not None and supports(shape, narrow_kernel(shape, kernel)) is None else None

    def _digits_shape(self, n: QNode, x: _Codes):
        """A dense conv's shape where its int16 codes go to the target's 8-bit kernel as two digits (`_digits_conv`):
        AArch64's kernels (x86 has its int16-pair twin, choose.codes_kernel), and weights and bias that keep every
        partial sum inside int32 (|256 hi + lo| products by the weights, the bias and the kernels' shift:
        sum |w| (2^15 + 256) + |bias|). Else None. Measured on MobileViT-XXS with 111 of its 178 activations
        widened, the convs (and the linear layers over rows, _dot_rows): aarch64-dotprod 26.6 M -> 24.4 M (22.3 M)
        executed instructions, aarch64 35.2 M -> 34.5 M (33.9 M); arm-a7 44.0 M -> 44.4 M with the convs (its dot
        form twice costs what LLVM's `vmlal.s16` does once), so ARMv7 keeps the generic conv."""
        if not self._takes_digits(x.expr.ty.dtype) or n.attrs["group"] != 1:
            return None
        shape = self._conv_shape(n, x, int16=True)
        if shape is None or supports(shape, narrow_kernel(shape, self.kernel)) is not None:
            return None
        return shape if _digits_fit(n.weight, n.bias) else None

    def _takes_digits(self, dtype: str) -> bool:
        """Whether codes of `dtype` go to the target's kernel as two 8-bit digits: int16 codes on AArch64."""
        return dtype == "int16" and self.kernel is not None and self.kernel.arch == "aarch64"

    def _digits_conv(self, n: QNode, x: _Codes, shape, codes=None, weight: np.ndarray | None = None) -> list:
        """reference.conv on int16 codes as two calls of an 8-bit kernel: x = 256 hi + lo with hi = x >> 8 (int8)
        and lo = x & 255 (uint8, shifted to s8 by the kernel's offset), acc = (acc_hi << 8) + acc_lo, exact. On
        AArch64 `sdot` has no 16-bit form: the generic conv's `smlal` did a quarter of its products per
        instruction."""
        op = self.relax.op
        codes = x.expr if codes is None else codes
        high = self.cast(self.emit(op.right_shift(codes, self.const(8, "int16"))), "int8")
        low = self.cast(self.emit(op.bitwise_and(codes, self.const(255, "int16"))), "uint8")
        n_weight = n.weight if weight is None else weight
        acc_high, c_high, _ = self._dot_acc(x, shape, high, n_weight)
        # (acc_high << 8) + acc_low: the low digit's accumulators start from the bias
        acc_low, c_low, started = self._dot_acc(x, shape, low, n_weight, lambda c: self._bias(n, c_high * 256 + c))
        acc = self.emit(op.add(self.emit(op.left_shift(acc_high, self.const(8, "int32"))), acc_low))
        return self._accumulated(n, acc, x.params, c_high * 256 + c_low, in_kernel=True, started=started)

    def _dot_conv(self, n: QNode, x: _Codes, shape, codes=None, weight: np.ndarray | None = None) -> list:
        """The conv as one call of the kernel's PrimFunc (int8.compute.conv_primfunc): the codes converted to
        the kernel's type (shifted where its signedness differs; Relax fuses the conversion into the producer),
        the weights packed, the shift's effect taken back in the bias. codes, weight: the conv's NHWC input and
        OIHW weight codes where they are not x's and the node's (a linear layer as a 1 x 1 conv)."""
        n_weight = n.weight if weight is None else weight
        if codes is None and self._takes_amx(n, x, shape):
            return self._amx_conv(n, x, shape)
        acc, correction, started = self._dot_acc(x, shape, x.expr if codes is None else codes, n_weight,
                                                 lambda c: self._bias(n, c))
        return self._accumulated(n, acc, x.params, correction, in_kernel=True, started=started)

    def _takes_amx(self, n: QNode, x: _Codes, shape) -> bool:
        """AMX takes a conv on few input channels (a stem) whose int32 accumulators a max pool alone reads (no
        requantization fuses into its kernel), on 8-bit codes."""
        return self.amx and n.outputs[0] in self.pool_readers and shape.c <= choose.IM2COL_MAX_CHANNELS \
            and shape.kh * shape.kw > 1 and str(x.expr.ty.dtype) in ("int8", "uint8") \
            and self.kernel.act_dtype == "uint8" and amx.supports(shape) is None

    def _amx_conv(self, n: QNode, x: _Codes, shape) -> list:
        """The conv on AMX tiles (amx.conv_primfunc) of u8 codes (s8 shifted by +128, the bias taking it back).
        Its max pool (`max_pool`) calls the kernel that pools the accumulators as it computes them; the conv's own
        call stays only where something else reads its codes (the self-check's exposed layers)."""
        op, dtype = self.relax.op, str(x.expr.ty.dtype)
        offset = self.kernel.act_offset(dtype)
        codes = x.expr
        if offset:
            codes = self.cast(self.emit(op.add(self.cast(codes, "int16"), self.const(offset, "int16"))), "uint8")
        bias = self._bias(n, compute.bias_correction(n.weight, offset))
        args = [codes, self.const(amx.pack_weights(n.weight, shape), "int8"),
                self.const((np.zeros(shape.co, np.int64) if bias is None else bias).reshape(-1), "int32")]
        self.amx_pools[n.outputs[0]] = shape, offset, args
        func = self.bb.add_func(amx.conv_primfunc(shape, offset), "tcc_amx_conv")
        acc = self.emit(self.relax.call_tir(func, args, self.relax.TensorType([shape.n, *shape.out_hw, shape.co],
                                                                              "int32")))
        return self._accumulated(n, acc, x.params, started=True)

    def _dot_acc(self, x: _Codes, shape, codes, n_weight: np.ndarray, start=None):
        """(acc, correction, started): _dot_conv's accumulator (int32 NHWC), what the bias must add back (the
        kernel's shifted codes) and whether the accumulators started from `start(correction)` (the vector a
        caller's `_bias` makes; None: from 0), which the kernel's form may decline (the dot form)."""
        op = self.relax.op
        dtype = codes.ty.dtype  # x's, or one of its digits' (_digits_conv)
        base = choose.codes_kernel(self.kernel, dtype)
        offset = base.act_offset(dtype)
        if base.act_dtype == "int16" or offset:
            codes = self.cast(codes, "int16")
            if offset:
                codes = self.cast(self.emit(op.add(codes, self.const(offset, "int16"))), base.act_dtype)
        kernel, im2col = choose.dot_form(shape, choose.narrow_kernel(shape, base))
        weights, out_hw = n_weight, shape.out_hw
        if im2col:  # the windows of few input channels, copied out: the conv becomes 1 x 1 on them
            flat = compute.im2col_shape(shape, kernel)
            func = self.bb.add_func(compute.im2col_primfunc(shape, flat.c, kernel.act_dtype, offset, flat.w),
                                    "tcc_im2col")
            codes = self.emit(self.relax.call_tir(func, [codes], self.relax.TensorType(
                [flat.n, flat.h, flat.w, flat.c], kernel.act_dtype)))
            shape, weights = flat, compute.im2col_weights(n_weight, flat.c)
        packed = compute.pack_weights(weights, shape, kernel)
        layer = choose.layer_kernel(kernel, packed)
        if layer is not kernel:
            packed = compute.pack_weights(weights, shape, layer)
        correction = compute.bias_correction(n_weight, offset)
        bias = None if start is None else start(correction)
        func, packed, started = compute.dense_conv(shape, layer, offset, packed, bias is not None, out_hw[1])
        func = self.bb.add_func(func, "tcc_dot_conv")
        acc = self.emit(self.relax.call_tir(func, [codes, self.const(packed, layer.weight_dtype),
                                                   *self._started(bias if started else None)],
                                            self.relax.TensorType([shape.n, *out_hw, shape.co], "int32")))
        return acc, correction, started

    def gemm(self, n: QNode, x: _Codes) -> list:
        op = self.relax.op
        rows = self._dot_rows(n, x)
        if rows is not None:
            return rows
        wide = self.operand_dtype(x)
        xi = self.centered(x, wide)
        if self.rank(xi) != 2:
            xi = self.emit(op.reshape(self.nchw(xi), [xi.ty.shape[0], -1]))
        acc = self.emit(op.matmul(xi, self.const(n.weight, wide), out_dtype="int32"))
        return self._accumulated(n, acc, x.params)

    def _dot_rows(self, n: QNode, x: _Codes) -> list | None:
        """A linear layer over rows of codes ([R, K] @ [K, F]: attention's projections and MLPs over tokens) as a
        1 x 1 conv on one image row of R pixels, on the target's dot-product kernel (ARMv7 `vmull.s8`, VNNI), where
        it takes the layer: 8-bit codes (int16: x86's int16-pair twin, choose.codes_kernel; AArch64's two digits,
        _digits_conv) at zero point 0, static shapes. None: the generic int16 form."""
        dims = [_static(d) for d in x.expr.ty.shape]
        dtype = x.expr.ty.dtype
        digits = self._takes_digits(dtype)
        kernel = self.kernel if digits else choose.codes_kernel(self.kernel, dtype)
        if kernel is None or x.zp or dtype not in ("int8", "uint8", "int16") or len(dims) != 2 or None in dims:
            return None
        (r, k), f = dims, int(n.weight.shape[1])
        shape = ConvShape(1, 1, r, k, f, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1))
        weight = np.ascontiguousarray(n.weight.T)[:, :, None, None]  # OIHW
        if supports(shape, narrow_kernel(shape, kernel)) is not None or (digits and not _digits_fit(weight, n.bias)):
            return None
        codes = self.emit(self.relax.op.reshape(x.expr, [1, 1, r, k]))
        (y,) = (self._digits_conv if digits else self._dot_conv)(n, x, shape, codes, weight)
        if not isinstance(y, _Codes):  # a float graph output (dequantized, in NCHW): [1, F, 1, R]
            return [self.emit(self.relax.op.reshape(self.emit(self.relax.op.permute_dims(y, [0, 3, 2, 1])), [r, f]))]
        return [_Codes(self.emit(self.relax.op.reshape(y.expr, [r, f])), y.params)]

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
            raise BuildError(f"softmax {n.name!r}: a table made under LiteRT's rules (its int8 SOFTMAX); TVM's "
                             "integer softmax takes tables of the tvm rules (`tcc calibrate --target host`)")
        op = self.relax.op
        q = self.cast(self.nchw(x.expr), "int32")
        top = self.emit(op.max(q, axis=-1, keepdims=True))
        d = self.emit(op.minimum(self.emit(op.subtract(top, q)), self.const(len(n.table) - 1, "int32")))
        e = self.emit(op.take(self.const(n.table, "int32"), d, axis=0))
        r = self.emit(op.floor_divide(self.const(n.attrs["numerator"], "int32"),
                                      self.emit(op.sum(e, axis=-1, keepdims=True))))
        k = n.attrs["shift"]
        y = self.emit(op.right_shift(self.emit(op.add(self.emit(op.multiply(e, r)), self.const(1 << (k - 1), "int32"))),
                                     self.const(k, "int32")))
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
        above, below = (self.requantize(self.emit(op.multiply(d, self.const(k, "int32"))), rq)
                        for k, rq in ((n.factors[0], n.requant), (n.factors[1], n.below)))
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
            # lowest int32) never wins. A quarter of the requantizations for a 3 x 3 / 2 pool (DDSNet's stem: 802 K
            # -> 200 K)
            acc, rq, bound = self.pooled_accs[n.inputs[0]]
            if n.inputs[0] in self.amx_pools:  # AMX: the accumulators pooled as the kernel computes them
                shape, offset, args = self.amx_pools[n.inputs[0]]
                func = self.bb.add_func(amx.conv_primfunc(shape, offset, g), "tcc_amx_conv_max_pool")
                y = self.emit(self.relax.call_tir(func, args, self.relax.TensorType(
                    [shape.n, *g["out_hw"], shape.co], "int32")))
            else:
                y = self.emit(op.nn.max_pool2d(acc, pool_size=g["kernel"], strides=g["strides"],
                                               padding=(pt, pl, pb, pr), layout="NHWC"))
            return [_Codes(self.requantize(y, rq, False, bound), n.qout[0])]
        expr, padding = x.expr, (pt, pl, pb, pr)
        if any(padding) and x.lo != np.iinfo(str(expr.ty.dtype)).min:
            # pad with the lowest code explicitly (the reference's pad value; it is a code of the tensor's own
            # type), then pool unpadded; where it is the type's minimum (a ReLU's u8 codes), max_pool2d's own
            # padding is that value and needs no pass of its own (DDSNet's stem: a scalar 20 us pad, Zen 5)
            expr = self.emit(op.nn.pad(expr, [0, 0, pt, pb, pl, pr, 0, 0], pad_value=float(x.lo)))
            padding = (0, 0, 0, 0)
        y = self.emit(op.nn.max_pool2d(expr, pool_size=g["kernel"], strides=g["strides"], padding=padding,
                                       layout="NHWC"))
        y = self.cast(y, storage_dtype(x.lo, x.hi))
        return [self.moved(x, y, n.rescale[0], n.qout[0])]

    def global_max_pool(self, n: QNode, x: _Codes) -> list:
        y = self.emit(self.relax.op.max(x.expr, axis=[1, 2], keepdims=True))  # H, W of the channels-last codes
        return [self.moved(x, y, n.rescale[0], n.qout[0])]

    def _window_sums(self, x: _Codes, g: dict):
        """int32 sums of x's zero-point-free codes over the windows of `g` (pool_geometry; zero padding = the
        reference's pad value 0): a depthwise all-ones conv."""
        kh, kw = g["kernel"]
        c = int(x.expr.ty.shape[-1])
        return self.emit(self.relax.op.nn.conv2d(
            self.centered(x, "int32"), self.const(np.ones((kh, kw, 1, c)), "int32"), strides=g["strides"],
            padding=g["pads"], groups=c, data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32"))

    def avg_pool(self, n: QNode, x: _Codes) -> list:
        return [_Codes(self.requantize(self._window_sums(x, n.attrs), n.requant), n.qout[0])]

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
            if n.rounding == "half_even":  # the graph input's kernel: no libm rint per element on ARMv7
                shape = list(y.ty.shape)
                func = self.bb.add_func(quantize_input_primfunc(shape, q, self.reciprocal), "tcc_quantize_island")
                codes = self.emit(relax.call_tir(func, [y], relax.TensorType(shape, q.dtype)))
            else:
                codes = self.emit(op.add(op.round(op.divide(y, self.const(np.float32(q.scale), "float32"))),
                                         self.const(np.float32(q.zp), "float32")))
                codes = self.cast(self.emit(op.minimum(op.maximum(codes, self.const(q.lo, "float32")),
                                                       self.const(q.hi, "float32"))), q.dtype)
            out.append(_Codes(self.nhwc(codes), q))
        return out


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

    tvm_target = None if target is None else _tvm_target(target)
    lowering = RelaxLowering(dot_kernel(target), tvm_target is not None and reciprocal_division(tvm_target),
                             tvm_target is not None and amx.available(tvm_target))
    return lowering.lower(quantize_graph(graph, table), tuple(expose), batch)


def _pooled_outputs(qg: QGraph) -> set[str]:
    """The outputs of conv / gemm nodes whose only reader is a max pool that keeps their quantization (no rescale),
    not graph outputs: RelaxLowering.max_pool pools their accumulators instead."""
    readers: dict[str, list[QNode]] = {}
    for node in qg.nodes:
        for i in node.inputs:
            readers.setdefault(i, []).append(node)
    out = set()
    for node in qg.nodes:
        if node.kind not in ("conv", "gemm") or node.qout[0] is None or node.outputs[0] in qg.outputs:
            continue
        r = readers.get(node.outputs[0], [])
        pool = r[0] if len(r) == 1 and r[0].kind == "max_pool" else None
        if pool is not None and not (pool.rescale or (None,))[0] and pool.qout[0] == node.qout[0]:
            out.add(node.outputs[0])
    return out
