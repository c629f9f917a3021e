"""The Relax emission the INT8 lowering's interpreter (lower.py's `RelaxLowering`) is built on: the small helpers
(constants, casts, clamps, layouts), the requantization in the form the target's kernel allows (`requantize`; the
forms are requantize_forms.py's table), moving codes to another tensor's parameters, the dequantization of graph
outputs, and pooled window sums. Subclassed by weighted.py (convs and gemm, through the kernel variants), then
lower.py (every other kind)."""

from __future__ import annotations

import numpy as np

from tcc.quant.intgraph.qtypes import QParams, Requant, storage_dtype

from . import requantize_forms
from .codes import _Codes


class RelaxEmitter:
    """What every kind's Relax translation uses: the function being built (`bb`), the target's kernel, and the
    helpers below. RelaxLowering's methods emit through them."""

    def __init__(self, kernel=None, reciprocal: bool = False, amx: bool = False):
        """kernel: the target's integer dot-product kernel (int8.kernels.DotKernel) for dense convs; None:
        the generic int16 form everywhere (compiles for any target). reciprocal: the input's x / s by
        multiply-adds (`quantize_input_primfunc`; int8.choose.reciprocal_division). amx: the target's CPU
        has AMX-INT8 (variants/amx_stem.py), which takes a stem whose accumulators a max pool reads."""
        from tvm import relax  # deferred: TVM loads where a PrimFunc is built

        self.relax = relax
        self.bb = relax.BlockBuilder()
        self.kernel = kernel
        self.reciprocal = reciprocal
        self.amx = amx
        self.last_form = ""  # the requantization form of the last `requantize` (requantize_forms.FORMS)

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
        channels on its last axis. One call of the PrimFunc of the first form in requantize_forms.FORMS that applies
        (its name kept in `last_form`): in_kernel: it is the epilogue of one of the dot-product kernels' convs,
        whose schedules apply it to vectors of channels (on ARM the NEON forms); bound: |acc| <= bound per channel
        (a conv's, from its weights and input range; a matmul's or product's, from its inputs' code ranges), which
        may allow the float forms on x86 and rule out ties."""
        relax = self.relax
        shape = list(acc.ty.shape)
        if acc.ty.dtype != "int32":
            acc = self.cast(acc, "int32")
        dtype = rq.out.dtype
        form, found = requantize_forms.choose(rq, int(shape[-1]), bound, self.kernel, in_kernel)
        self.last_form = form.name
        # one function per call: FuseTIR cannot map one function called twice inside a fused group
        func = self.bb.add_func(found.make(dtype, shape), f"tcc_requantize_{dtype}")
        constants = [self.const(value, value_dtype) for value, value_dtype in found.constants]
        return self.emit(relax.call_tir(func, [acc, *constants], relax.TensorType(shape, dtype)))

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

    def sum_windows(self, x: _Codes, g: dict):
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
