"""The weighted kinds of the INT8 lowering (conv, pooled conv, gemm: tcc.intops' weighted producers) as Relax: each
layer takes the first kernel variant of variants.VARIANTS whose matcher takes it (its view: `layer`) and emits
through it (`weighted`); what the variants share is here: the bias and the vector a kernel's accumulators start
from (`bias`, `started`), the bias added and the requantization or dequantization (`accumulated`), a depthwise
kernel's call (`depthwise_call`). lower.py's `RelaxLowering` adds the other kinds."""

from __future__ import annotations

import numpy as np

from tcc.quant.intgraph.qtypes import QNode, QParams, accumulator_bound

from . import variants
from .codes import _Codes
from .emit import RelaxEmitter
from .kernels import ConvShape
from .tir import _static


class WeightedLowering(RelaxEmitter):
    """RelaxEmitter with the weighted kinds' methods (conv, pooled_conv, gemm) and the state a max pool reads
    after them: the accumulators it pools in place of the codes (`pooled_accs`), AMX's pooled stems."""

    def __init__(self, kernel=None, reciprocal: bool = False, amx: bool = False):
        super().__init__(kernel, reciprocal, amx)
        # a conv's int32 accumulator (bias added) and its requantization, by output name, where a max pool is its
        # only reader: the pool takes the accumulators (`max_pool`)
        self.pooled_accs: dict[str, tuple] = {}
        self.pool_readers: set[str] = set()
        self.amx_pools: dict[str, tuple] = {}  # a conv on AMX, by output name: (shape, pad code, its arguments)
        # the x86 1 x 1 depthwise convs as float32 maps (variants/affine_map.py): (output, its call's arguments, lo,
        # hi); a pooled conv reading one computes the map in its window sums (the call is left to dead-code
        # elimination)
        self.affine_maps: list[tuple] = []
        # what each weighted layer took, by node name: (variant, kernel, requantization form; "" where none ran)
        self.chosen: dict[str, tuple[str, str, str]] = {}

    def conv(self, n: QNode, x: _Codes) -> list:
        return self.weighted(n, x)

    def pooled_conv(self, n: QNode, x: _Codes) -> list:
        return self.weighted(n, x)

    def gemm(self, n: QNode, x: _Codes) -> list:
        return self.weighted(n, x)

    def layer(self, n: QNode, x: _Codes) -> variants.Layer:
        """What the layer's variant is chosen from (variants.Layer): its input's static shape and type as Relax
        has them, the target's kernel, whether a max pool alone reads its accumulators."""
        dims = tuple(_static(d) for d in x.expr.ty.shape)
        pooled = n.outputs[0] in self.pool_readers
        return variants.Layer(n, dims, str(x.expr.ty.dtype), x.params, self.kernel, self.amx, pooled)

    def weighted(self, n: QNode, x: _Codes) -> list:
        """The layer through the first variant that takes it; what it took kept in `chosen`."""
        variant, match = variants.choose(self.layer(n, x))
        self.last_form = ""
        out = variant.emit(self, n, x, match)
        self.chosen[n.name] = (variant.name, match.kernel, self.last_form)
        return out

    # ------------------------------------------------------------------------------------------ shared by the variants
    @staticmethod
    def bias(n: QNode, correction: np.ndarray | None = None) -> np.ndarray | None:
        """What the accumulator adds: the bias, + `correction` (what a dot-product kernel's shifted codes took
        away); None: nothing."""
        bias = n.bias
        if correction is not None and np.any(correction):
            bias = correction if bias is None else np.asarray(bias, np.int64) + correction
        return None if bias is None else np.asarray(bias)

    def start_args(self, bias: np.ndarray | None) -> list:
        """The arguments a kernel's PrimFunc takes after its weights: the vector its accumulators start from."""
        return [] if bias is None else [self.const(bias.reshape(-1), "int32")]

    def accumulated(
        self,
        n: QNode,
        acc,
        x: QParams,
        correction: np.ndarray | None = None,
        in_kernel: bool = False,
        started: bool = False,
    ) -> list:
        """acc (+ `bias(n, correction)`, unless the kernel `started` its accumulators from it) requantized, or
        dequantized where it is a float graph output. x: the input's parameters, whose code range bounds acc (a
        pooled conv's: its window sums')."""
        op = self.relax.op
        ndim = self.rank(acc)
        ch = [1] * (ndim - 1) + [-1]
        bias = None if started else self.bias(n, correction)
        if bias is not None:
            acc = self.emit(op.add(acc, self.const(bias.reshape(ch), "int32")))
        if n.qout[0] is None:  # a float graph output: dequantize the accumulator
            assert n.acc_scale is not None  # a weighted node's
            y = self.emit(
                op.multiply(
                    op.astype(acc, "float64"), self.const(n.acc_scale.astype(np.float64).reshape(ch), "float64")
                )
            )
            if n.float_clamp is not None:
                lo, hi = n.float_clamp
                if lo is not None:
                    y = self.emit(op.maximum(y, self.const(lo, "float64")))
                if hi is not None:
                    y = self.emit(op.minimum(y, self.const(hi, "float64")))
            return [self.nchw(self.cast(y, "float32"))]
        assert n.weight is not None and n.requant is not None  # a weighted node's
        bound = accumulator_bound(n.kind, n.weight, n.bias, x)
        if n.outputs[0] in self.pool_readers:
            self.pooled_accs[n.outputs[0]] = acc, n.requant, bound
        return [_Codes(self.requantize(acc, n.requant, in_kernel, bound), n.qout[0])]

    def kept_channels(self, out: list, channels: int) -> list:
        """A layer computed on more output channels than it has (variants.base.widened): its first `channels` (a
        strided slice, which Relax fuses into the kernel's write-back): of its NHWC codes, or of its float NCHW
        output where it is a graph output."""
        (y,) = out
        if not isinstance(y, _Codes):
            return [self.emit(self.relax.op.strided_slice(y, [1], [0], [channels]))]
        return [_Codes(self.emit(self.relax.op.strided_slice(y.expr, [3], [0], [channels])), y.params)]

    def depthwise_call(
        self, n: QNode, x: _Codes, shape: ConvShape, func, name: str, weights, bias, channels: int | None = None
    ) -> list:
        """A depthwise conv's PrimFunc `func` (added as `name`) called on x and its `weights` constant, its
        accumulators started from `bias` (None: from zero), requantized in its kernel; `channels` (default the
        shape's): the channels it computes."""
        call = self.relax.call_tir(
            self.bb.add_func(func, name),
            [x.expr, weights, *self.start_args(bias)],
            self.relax.TensorType([shape.n, *shape.out_hw, channels or shape.c], "int32"),
        )
        return self.accumulated(n, self.emit(call), x.params, in_kernel=True, started=True)
