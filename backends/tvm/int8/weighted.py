"""The weighted kinds of the INT8 lowering (conv, pooled conv, gemm: tcc.intops' weighted producers) as Relax, and
which kernel each layer takes: the two-digit form (`_digits_conv`), the dot-product kernels' conv (`_dot_conv`,
with im2col for few input channels), AMX for a pooled stem (`_amx_conv`), the depthwise row kernels, or the generic
int16 conv; then the bias and the requantization (`_accumulated`). lower.py's `RelaxLowering` adds the other
kinds."""

from __future__ import annotations

import numpy as np

from tcc.quant.intgraph.fixed_point import INT32_MAX
from tcc.quant.intgraph.qtypes import QNode, QParams, accumulator_bound, window_sums

from . import affine, amx, choose, compute
from .choose import narrow_kernel, supports
from .codes import _Codes
from .compute import depthwise_primfunc
from .emit import RelaxEmitter
from .kernels import ConvShape
from .tir import _static


def _digits_fit(weight: np.ndarray, bias) -> bool:
    """Whether a layer of OIHW `weight` codes (and `bias`) keeps every partial sum of its two-digit form in int32
    (RelaxLowering._digits_conv): per output channel sum |w| (2^15 + 256) + |bias| (the high digit's products << 8,
    the low digit's, the kernel's shift and the bias)."""
    sums = np.abs(weight.astype(np.int64)).reshape(len(weight), -1).sum(axis=1)
    extra = np.abs(np.asarray(bias, np.int64)) if bias is not None else 0
    return bool(np.max(sums * (2**15 + 256) + extra) <= INT32_MAX)


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
        # the x86 1 x 1 depthwise convs as float32 maps (int8.affine): (output, its call's arguments, lo, hi); a
        # pooled conv reading one computes the map in its window sums (the call is left to dead-code elimination)
        self.affine_maps: list[tuple] = []

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

    def _accumulated(
        self,
        n: QNode,
        acc,
        x: QParams,
        correction: np.ndarray | None = None,
        in_kernel: bool = False,
        started: bool = False,
    ) -> list:
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
            func = compute.depthwise_rows_primfunc(
                shape,
                offset,
                self.kernel.act_dtype,
                bias is not None,
                direct=self.kernel.arch == "x86_64" and compute.reads_rows_directly(shape),
            )
            weights = self.const(compute.depthwise_rows_weights(n.weight, shape), "int8")
            return self._depthwise(n, x, shape, func, "tcc_dw_dot", weights, bias)
        shape = self._depthwise_pairs_shape(n, x)
        if shape is not None:  # x86 `vpmaddwd`: 2 rows of a channel in one lane
            bias = self._bias(n)
            func = compute.depthwise_pairs_primfunc(shape, x.expr.ty.dtype, bias is not None)
            weights = self.const(compute.depthwise_pairs_weights(n.weight, shape), "int16")
            return self._depthwise(n, x, shape, func, "tcc_dw_madd", weights, bias)
        shape = self._affine_shape(n, x)
        params = (
            affine.affine_params(n.weight[:, 0, 0, 0], n.bias, n.requant, str(x.expr.ty.dtype))
            if shape is not None
            else None
        )
        if params is not None:  # a 1 x 1 depthwise conv on x86: float32, checked against the reference's table
            out, dims = n.qout[0], [shape.n, shape.h, shape.w, shape.c]
            func = self.bb.add_func(
                affine.affine_primfunc(dims, str(x.expr.ty.dtype), out.dtype, n.requant.lo, n.requant.hi), "tcc_affine"
            )
            args = [x.expr, *(self.const(p, "float32") for p in params)]
            y = self.emit(self.relax.call_tir(func, args, self.relax.TensorType(dims, out.dtype)))
            self.affine_maps.append((y, args, n.requant.lo, n.requant.hi))
            return [_Codes(y, out)]
        shape = self._depthwise_shape(n, x)
        if shape is not None:
            bias = self._bias(n)
            weights = np.ascontiguousarray(n.weight[:, 0].transpose(1, 2, 0))  # [kh, kw, c]
            return self._depthwise(
                n,
                x,
                shape,
                depthwise_primfunc(shape, x.expr.ty.dtype, bias is not None),
                "tcc_dw_conv",
                self.const(weights, "int16"),
                bias,
            )
        hwio = np.ascontiguousarray(n.weight.transpose(2, 3, 1, 0))
        wide = self.operand_dtype(x)
        acc = self.emit(
            self.relax.op.nn.conv2d(
                self.centered(x, wide),
                self.const(hwio, wide),
                strides=a["strides"],
                padding=a["pads"],
                dilation=a["dilations"],
                groups=a["group"],
                data_layout="NHWC",
                kernel_layout="HWIO",
                out_dtype="int32",
            )
        )
        return self._accumulated(n, acc, x.params)

    def _depthwise(self, n: QNode, x: _Codes, shape: ConvShape, func, name: str, weights, bias) -> list:
        """A depthwise conv's PrimFunc `func` (added as `name`) called on x and its `weights` constant, its
        accumulators started from `bias` (None: from zero), requantized in its kernel."""
        call = self.relax.call_tir(
            self.bb.add_func(func, name),
            [x.expr, weights, *self._started(bias)],
            self.relax.TensorType([shape.n, *shape.out_hw, shape.c], "int32"),
        )
        return self._accumulated(n, self.emit(call), x.params, in_kernel=True, started=True)

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
        shape = (
            ConvShape(dims[0], oh, ow, dims[3], int(n.weight.shape[0]), 1, 1, (1, 1), (0, 0, 0, 0), (1, 1))
            if self.kernel is not None
            and area & (area - 1) == 0
            and x.params.bits == 8
            and not x.zp
            and n.attrs["group"] == 1
            and None not in dims
            else None
        )
        if shape is not None and supports(shape, narrow_kernel(shape, self.kernel)) is None:
            dtype = x.expr.ty.dtype
            source = next((m for m in self.affine_maps if m[0].same_as(x.expr)), None)
            mapped = None if source is None else (str(source[1][0].ty.dtype), source[2], source[3])
            func = self.bb.add_func(
                compute.window_digits_primfunc(dims, (kh, kw), g["strides"], dtype, mapped), "tcc_window_digits"
            )
            digit = self.relax.TensorType([dims[0], oh, ow, dims[3]], dtype)
            pair = self.emit(self.relax.call_tir(func, [x.expr] if source is None else source[1], [digit, digit]))
            high, low = (self.emit(self.relax.TupleGetItem(pair, k)) for k in (0, 1))
            high, c_high, _ = self._dot_acc(x, shape, high, n.weight)
            # (high << k) + low: the low digit's accumulators start from the bias
            low, c_low, started = self._dot_acc(x, shape, low, n.weight, lambda c: self._bias(n, c_high * area + c))
            acc = self.emit(op.add(self.emit(op.left_shift(high, self.const(area.bit_length() - 1, "int32"))), low))
            return self._accumulated(n, acc, sums, c_high * area + c_low, in_kernel=True, started=started)
        total = self._window_sums(x, g)
        hwio = np.ascontiguousarray(n.weight.transpose(2, 3, 1, 0))
        wide = "int16" if sums.dtype in ("int8", "uint8", "int16") else "int32"
        acc = self.emit(
            op.nn.conv2d(
                self.cast(total, wide),
                self.const(hwio, wide),
                strides=n.attrs["strides"],
                padding=n.attrs["pads"],
                dilation=n.attrs["dilations"],
                groups=n.attrs["group"],
                data_layout="NHWC",
                kernel_layout="HWIO",
                out_dtype="int32",
            )
        )
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
        return ConvShape(
            *dims,
            int(n.weight.shape[0]),
            int(kh),
            int(kw),
            tuple(a["strides"]),
            tuple(a["pads"]),
            tuple(a["dilations"]),
        )

    def _depthwise_shape(self, n: QNode, x: _Codes):
        """A depthwise conv's shape (one input channel per output channel), when a dot-product kernel is in use (its
        int16 x int16 taps take int16 codes as they are)."""
        shape = self._conv_shape(n, x, int16=True) if self.kernel is not None else None
        if shape is None or n.attrs["group"] != shape.c or shape.co != shape.c or shape.c % 8:
            return None  # 8k channels: the schedule's vectors (schedule.int8_rules.Int8Depthwise)
        return shape

    def _affine_shape(self, n: QNode, x: _Codes):
        """A 1 x 1 depthwise conv's shape where x86 takes it as a per-channel float32 map (int8.affine): 8-bit codes
        in, codes out, not strided or padded; else None."""
        if self.kernel is None or self.kernel.arch != "x86_64" or n.qout[0] is None:
            return None
        shape = self._conv_shape(n, x)
        if (
            shape is None
            or n.attrs["group"] != shape.c
            or shape.co != shape.c
            or (shape.kh, shape.kw) != (1, 1)
            or shape.strides != (1, 1)
            or any(shape.pads)
        ):
            return None
        return shape

    def _depthwise_rows_shape(self, n: QNode, x: _Codes):
        """A depthwise conv's shape where AArch64's `sdot` or AVX-512's `vpdpbusd` takes it
        (compute.depthwise_rows_primfunc): 8-bit codes, 16k channels (a tile of 4 `sdot` lanes of 4 channels, one
        zmm), a kernel of 2 to 4 rows, not dilated. (A 1 x 1 one, a BN after a ReLU, uses a quarter of each
        instruction: DDSNet's three executed 4% more than on int16 taps.)"""
        if self.kernel is None or not self.kernel.depthwise_rows:
            return None
        shape = self._conv_shape(n, x)
        if (
            shape is None
            or n.attrs["group"] != shape.c
            or shape.co != shape.c
            or shape.c % 16
            or shape.kh < 2
            or compute.rows_per_window(shape) == 0
        ):
            return None
        return shape

    def _depthwise_pairs_shape(self, n: QNode, x: _Codes):
        """A depthwise conv's shape where x86's `vpmaddwd` takes it on pairs of rows
        (compute.depthwise_pairs_primfunc): a layer `_depthwise_rows_shape` leaves (no VNNI, int16 codes, or
        channels not a multiple of 16), 8k channels, a kernel of 2 or 3 rows whose window of 4 serves 2 output rows
        or more (stride 1), not dilated. Strided ones keep the int16 taps: DDSNet's 3 x 3 / 2 at 56 x 56 x 64 took
        25 us on pairs against 16 (one output row a window: each row interleaved twice for 3 taps of 4 products)."""
        if self.kernel is None or self.kernel.arch != "x86_64":
            return None
        shape = self._depthwise_shape(n, x)
        if shape is None or shape.kh < 2 or compute.rows_per_window(shape) < 2:
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
        acc, correction, started = self._dot_acc(
            x, shape, x.expr if codes is None else codes, n_weight, lambda c: self._bias(n, c)
        )
        return self._accumulated(n, acc, x.params, correction, in_kernel=True, started=started)

    def _takes_amx(self, n: QNode, x: _Codes, shape) -> bool:
        """AMX takes a conv on few input channels (a stem) whose int32 accumulators a max pool alone reads (no
        requantization fuses into its kernel), on 8-bit codes."""
        return (
            self.amx
            and n.outputs[0] in self.pool_readers
            and shape.c <= choose.IM2COL_MAX_CHANNELS
            and shape.kh * shape.kw > 1
            and str(x.expr.ty.dtype) in ("int8", "uint8")
            and self.kernel.act_dtype == "uint8"
            and amx.supports(shape) is None
        )

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
        args = [
            codes,
            self.const(amx.pack_weights(n.weight, shape), "int8"),
            self.const((np.zeros(shape.co, np.int64) if bias is None else bias).reshape(-1), "int32"),
        ]
        self.amx_pools[n.outputs[0]] = shape, offset, args
        func = self.bb.add_func(amx.conv_primfunc(shape, offset), "tcc_amx_conv")
        acc = self.emit(
            self.relax.call_tir(func, args, self.relax.TensorType([shape.n, *shape.out_hw, shape.co], "int32"))
        )
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
            func = self.bb.add_func(
                compute.im2col_primfunc(shape, flat.c, kernel.act_dtype, offset, flat.w), "tcc_im2col"
            )
            codes = self.emit(
                self.relax.call_tir(
                    func, [codes], self.relax.TensorType([flat.n, flat.h, flat.w, flat.c], kernel.act_dtype)
                )
            )
            shape, weights = flat, compute.im2col_weights(n_weight, flat.c)
        packed = compute.pack_weights(weights, shape, kernel)
        layer = choose.layer_kernel(kernel, packed)
        if layer is not kernel:
            packed = compute.pack_weights(weights, shape, layer)
        correction = compute.bias_correction(n_weight, offset)
        bias = None if start is None else start(correction)
        func, packed, started = compute.dense_conv(shape, layer, offset, packed, bias is not None, out_hw[1])
        func = self.bb.add_func(func, "tcc_dot_conv")
        acc = self.emit(
            self.relax.call_tir(
                func,
                [codes, self.const(packed, layer.weight_dtype), *self._started(bias if started else None)],
                self.relax.TensorType([shape.n, *out_hw, shape.co], "int32"),
            )
        )
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
