"""The Relax emission the INT8 lowering's interpreter (lower.py's `RelaxLowering`) is built on: the small helpers
(constants, casts, clamps, layouts), the requantization in the form the target's kernel allows (`requantize`; the
PrimFuncs are requantize.py's and requantize_float32.py's), moving codes to another tensor's parameters, the
dequantization of graph outputs, and pooled window sums. Subclassed by weighted.py (convs and gemm), then lower.py
(every other kind)."""

from __future__ import annotations

import functools

import numpy as np

from tcc.quant.intgraph.qtypes import QParams, Requant, storage_dtype

from .codes import _Codes
from .requantize import (
    float64_requantize_params,
    int32_requantize_params,
    neon_requantize_params,
    neon_tie_free_params,
    requantize_float64_primfunc,
    requantize_int32_primfunc,
    requantize_neon_primfunc,
    requantize_neon_tie_free_primfunc,
    requantize_params,
    requantize_primfunc,
    requantize_tie_free_primfunc,
    tie_free_params,
)
from .requantize_float32 import float32_requantize_params, requantize_float32_primfunc


class RelaxEmitter:
    """What every kind's Relax translation uses: the function being built (`bb`), the target's kernel, and the
    helpers below. RelaxLowering's methods emit through them."""

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
        ranges), which on x86 may allow the float32 form (`float32_requantize_params`: checked equal at every
        rounding boundary) or else the float64 one (`float64_requantize_params`), and may rule out ties: in
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
        fma_params = float32_requantize_params(rq, channels, bound) if x86 else None
        if fma_params is not None:
            func = self.bb.add_func(requantize_float32_primfunc(dtype, shape, rq.lo, rq.hi), f"tcc_requantize_{dtype}")
            return self.emit(
                relax.call_tir(func, [acc, self.const(fma_params, "float32")], relax.TensorType(shape, dtype))
            )
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
        y = self.emit(
            self.relax.op.multiply(
                self.relax.op.astype(x, "float64"), self.const(np.float64(np.float32(c.scale)), "float64")
            )
        )
        return self.nchw(self.cast(y, "float32"))

    def _window_sums(self, x: _Codes, g: dict):
        """int32 sums of x's zero-point-free codes over the windows of `g` (pool_geometry; zero padding = the
        reference's pad value 0): a depthwise all-ones conv."""
        kh, kw = g["kernel"]
        c = int(x.expr.ty.shape[-1])
        return self.emit(
            self.relax.op.nn.conv2d(
                self.centered(x, "int32"),
                self.const(np.ones((kh, kw, 1, c)), "int32"),
                strides=g["strides"],
                padding=g["pads"],
                groups=c,
                data_layout="NHWC",
                kernel_layout="HWIO",
                out_dtype="int32",
            )
        )
