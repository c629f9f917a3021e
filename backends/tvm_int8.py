"""Real integer INT8 lowering of an FP32 ONNX graph + calibration table to a TVM Relax IRModule.

    mod = lower_int8(onnx_model, table)        # main(x: float32 NCHW) -> float32 output
    ex = tvm.compile(mod, target=...)          # compiled exactly like the FP32 module

The module computes what compiler/quant/reference.py (`run_reference`, the golden INT8 model) computes, bit for
bit: it walks the graph the way the reference does and emits, per node, the same integer arithmetic as Relax ops.
Every constant (quantized weights, int32 biases, fixed-point multipliers and shifts, activation clamp bounds) is
computed here in numpy with the reference's own helpers, so the two cannot drift apart:

- the graph input is quantized with equation (8) in float32 (x / s, round half to even, + zero point, clamp);
- tensors between layers are int8 (signed) or uint8 (unsigned) codes, as the table says, 4-D ones channels-last
  (NHWC, the layout of tcc's CPU schedules, backends/tvm_schedule.py): the input codes are transposed once, and a
  tensor goes back to NCHW only where the graph's semantics need it (flatten / reshape, graph outputs);
- conv (grouped / depthwise too) and gemm / matmul subtract the zero point, widen to int16 (exact for 8-bit codes)
  and accumulate int16 x int16 products in int32 (`out_dtype="int32"`: TOPI casts both operands to int32 before
  multiplying), then add the int32 bias quantized at s_in * s_w;
- requantization is `reference.requantize` as a TIR PrimFunc (`requantize_primfunc`, one per call, with the
  layer's int64 parameters [6, C], channels last): the exact int64 product
  acc * q, one arithmetic right shift by 31 - shift, round half to even (remainder vs half), + zero point, clamp;
  a fused ReLU / ReLU6 narrows the clamp. Relax fuses it into the producing conv, whose schedule applies it to the
  register tile on its way out: the int32 accumulators never go to memory;
- max pool moves codes (padding with the lowest code, like the reference); average pooling sums zero-point-free
  codes (a depthwise all-ones conv / a spatial sum) and requantizes by s_in / (s_out * count);
- concat rescales every input whose (scale, zero point) differs from the output's; flatten / reshape move codes;
- residual Add rescales both inputs TFLite-style (`reference.add_int`);
- a graph output is dequantized in float64 like numpy does: from the accumulator (acc * s_in * s_w) when the
  table leaves it float, else from its codes ((q - zp) * scale).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tcc.quant.reference import (INT32_MAX, INT32_MIN, _act_range, add_params, bias_codes, fused_output,
                                  quantize_multiplier)
from tcc.quant.quantizer import qrange
from tcc.quant.stats import fused_away
from tcc.quant.table import CalibrationTable


class _Codes:
    """A quantized tensor in the Relax graph: the expression holding its codes and its quantization parameters."""

    __slots__ = ("expr", "scale", "zp", "lo", "hi")

    def __init__(self, expr, scale, zp, lo, hi):
        self.expr, self.scale, self.zp, self.lo, self.hi = expr, float(scale), int(zp), int(lo), int(hi)


def storage_dtype(lo: int, hi: int) -> str:
    """The narrowest integer type holding codes in [lo, hi]."""
    if -128 <= lo and hi <= 127:
        return "int8"
    if 0 <= lo and hi <= 255:
        return "uint8"
    return "int32"


def fixed_point(q, shift) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q, k, half) as int64 arrays for reference.multiply_by_quantized_multiplier(acc, q, shift): the product
    acc * q shifted right by k = 31 - shift, half = 2^(k - 1) the rounding threshold."""
    q, shift = np.atleast_1d(np.asarray(q, np.int64)), np.atleast_1d(np.asarray(shift, np.int64))
    k = 31 - shift
    if np.any(k < 1):
        raise OverflowError("requantization multiplier >= 2^30 is not supported")
    k = np.minimum(k, 62)  # |acc * q| < 2^62: shifting 62 gives 0, as in the reference
    return q, k, np.int64(1) << (k - 1)


class _Lowering:
    def __init__(self, model: onnx.ModelProto | None = None, table: CalibrationTable | None = None):
        from tvm import relax

        self.relax = relax
        self.model = model
        self.calibration = table
        self.table = table.tensors if table is not None else {}
        self.inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer} if model else {}
        self.bb = relax.BlockBuilder()

    # ------------------------------------------------------------------------------------------ small helpers
    def const(self, value, dtype: str):
        return self.relax.const(np.asarray(value).astype(dtype), dtype)

    def emit(self, expr):
        return self.bb.emit(expr)

    def qparams(self, name: str):
        e = self.table[name]
        lo, hi = qrange(e["bits"], e["signed"])
        return float(e["scale"]), int(e["zero_point"]), lo, hi

    def cast(self, expr, dtype: str):
        if getattr(expr.ty, "dtype", None) == dtype:
            return expr
        return self.emit(self.relax.op.astype(expr, dtype))

    def clamp(self, expr, lo: int, hi: int, dtype: str):
        """min(max(expr, lo), hi) with bounds of expr's own dtype."""
        op = self.relax.op
        return self.emit(op.minimum(op.maximum(expr, self.const(lo, dtype)), self.const(hi, dtype)))

    def centered(self, c: _Codes, dtype: str = "int16"):
        """q - zp, widened (exact: 8-bit codes minus an 8-bit zero point fit int16)."""
        x = self.cast(c.expr, dtype)
        if c.zp:
            x = self.emit(self.relax.op.subtract(x, self.const(c.zp, dtype)))
        return x

    def channel_shape(self, n: int, ndim: int, axis: int = 1) -> list[int]:
        shape = [1] * ndim
        shape[axis] = n
        return shape

    # ------------------------------------------------------------------------------------------ requantization
    def multiply(self, acc, q, shift, ndim: int = 0, axis: int = 1):
        """reference.multiply_by_quantized_multiplier(acc, q, shift) in int64 Relax ops (q, shift: scalars or
        per-channel arrays along `axis`): the exact product acc * q, an arithmetic shift right by k = 31 - shift
        (floor), plus one where the remainder is above half or exactly half with an odd floor (half to even)."""
        op = self.relax.op
        q, k, half = fixed_point(q, shift)
        shape = self.channel_shape(-1, ndim, axis) if len(q) > 1 else None
        q, k, half = (self.const(v.reshape(shape) if shape else v[0], "int64") for v in (q, k, half))
        a = self.clamp(self.cast(acc, "int64"), INT32_MIN, INT32_MAX, "int64")  # the reference clips to int32
        prod = self.emit(op.multiply(a, q))
        floor = self.emit(op.right_shift(prod, k))
        rem = self.emit(op.subtract(prod, op.left_shift(floor, k)))
        one = self.const(1, "int64")
        odd = op.equal(op.bitwise_and(floor, one), one)
        up = self.emit(op.logical_or(op.greater(rem, half), op.logical_and(op.equal(rem, half), odd)))
        return self.emit(op.add(floor, op.astype(up, "int64")))

    def requantize(self, acc, m, zp: int, lo: int, hi: int, act=None):
        """reference.requantize(acc, m, zp, lo, hi) per channel, then a fused activation's clamp [act[0], act[1]]
        -> codes in the storage dtype of [lo, hi]. acc: an integer expression, channels on its last axis."""
        q, shift = quantize_multiplier(m)
        c_lo, c_hi = (max(lo, act[0]), min(hi, act[1])) if act is not None else (lo, hi)
        return self.call_requantize(acc, q, shift, zp, c_lo, c_hi, storage_dtype(lo, hi))

    def call_requantize(self, acc, q, shift, zp: int, lo: int, hi: int, dtype: str):
        """One call of the requantization PrimFunc (see `requantize_primfunc`) on acc, channels on its last axis;
        q, shift: one value or one per channel."""
        relax = self.relax
        shape = list(acc.ty.shape)
        params = np.empty((6, int(shape[-1])), np.int64)  # one row per parameter: vector loads along channels
        params[0], params[1], params[2] = fixed_point(q, shift)
        params[3], params[4], params[5] = zp, lo, hi
        if acc.ty.dtype != "int32":
            acc = self.cast(acc, "int32")
        # one function per call: FuseTIR cannot map one function called twice inside a fused group
        func = self.bb.add_func(requantize_primfunc(dtype, shape), f"tcc_requantize_{dtype}")
        return self.emit(relax.call_tir(func, [acc, self.const(params, "int64")], relax.TensorType(shape, dtype)))

    def rescale(self, c: _Codes, s_o: float, zp_o: int, lo: int, hi: int):
        """reference._rescale: a clamp when (scale, zero point) agree, else an integer requantization."""
        dtype = storage_dtype(lo, hi)
        if np.float32(c.scale) == np.float32(s_o) and c.zp == zp_o:
            if c.lo >= lo and c.hi <= hi and storage_dtype(c.lo, c.hi) == dtype:
                return c.expr
            return self.cast(self.clamp(self.cast(c.expr, "int32"), lo, hi, "int32"), dtype)
        return self.requantize(self.centered(c, "int32"), c.scale / s_o, zp_o, lo, hi)

    def dequantize(self, c: _Codes):
        """QTensor.dequant: ((q - zp) * float32(scale)), computed by numpy in float64, rounded to float32."""
        x = self.centered(c, "int32")
        y = self.emit(self.relax.op.multiply(self.relax.op.astype(x, "float64"),
                                             self.const(np.float64(np.float32(c.scale)), "float64")))
        return self.nchw(self.cast(y, "float32"))

    # ------------------------------------------------------------------------------------------ layout
    def nhwc(self, expr):
        """A 4-D NCHW tensor channels-last (other ranks unchanged)."""
        return self.emit(self.relax.op.permute_dims(expr, [0, 2, 3, 1])) if len(expr.ty.shape) == 4 else expr

    def nchw(self, expr):
        """A 4-D channels-last tensor back in the graph's NCHW (other ranks unchanged)."""
        return self.emit(self.relax.op.permute_dims(expr, [0, 3, 1, 2])) if len(expr.ty.shape) == 4 else expr

    # ------------------------------------------------------------------------------------------ the graph
    def lower(self, expose=(), batch: int | None = None):
        relax, op = self.relax, self.relax.op
        from tvm import tirx as tir

        model, inits = self.model, self.inits
        gone = fused_away(model)
        consumers: dict[str, list] = {}
        for n in model.graph.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        inp = [i for i in model.graph.input if i.name not in inits][0]
        dims = []
        for k, d in enumerate(inp.type.tensor_type.shape.dim):
            if k == 0 and batch is not None:
                dims.append(batch)
            else:
                dims.append(d.dim_value if d.HasField("dim_value") else tir.Var(d.dim_param or f"d{k}", "int64"))
        x = relax.Var("x", relax.TensorType(dims, "float32"))
        outputs = [o.name for o in model.graph.output]
        env: dict[str, object] = {}
        with self.bb.function("main", [x]):
            with self.bb.dataflow():
                s, zp, lo, hi = self.qparams(inp.name)
                # equation (8) in float32 like the reference: rint(x / s) + zp, clamp
                qf = self.emit(op.add(op.round(op.divide(x, self.const(np.float32(s), "float32"))),
                                      self.const(np.float32(zp), "float32")))
                qf = self.emit(op.minimum(op.maximum(qf, self.const(lo, "float32")), self.const(hi, "float32")))
                env[inp.name] = _Codes(self.nhwc(self.cast(qf, storage_dtype(lo, hi))), s, zp, lo, hi)
                skip = set()
                for node in model.graph.node:
                    if node.name in skip:
                        continue
                    self.node(node, env, gone, consumers, outputs, skip)
                outs = []
                for o in outputs:
                    v = env[o]
                    outs.append(self.dequantize(v) if isinstance(v, _Codes) else v)
                outs += [self.nchw(env[name].expr) for name in expose]
                result = outs[0] if len(outs) == 1 else self.emit(relax.Tuple(outs))
                gv = self.bb.emit_output(result)
            self.bb.emit_func_output(gv)
        return self.bb.get()

    def node(self, node, env, gone, consumers, outputs, skip):
        op = self.relax.op
        t, inits = self.table, self.inits
        kind = node.op_type
        a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        ndim_of = lambda e: len(e.ty.shape)  # noqa: E731
        if kind in ("Conv", "Gemm", "MatMul"):
            xq: _Codes = env[node.input[0]]
            w = inits[node.input[1]]
            ws = self.calibration.weight_scale(node.input[1])
            wq = self.calibration.weight_codes(node.input[1], w).astype(np.int16)
            xi = self.centered(xq, "int16")
            if kind == "Conv":
                pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
                hwio = np.ascontiguousarray(wq.transpose(2, 3, 1, 0))
                acc = self.emit(op.nn.conv2d(xi, self.const(hwio, "int16"), strides=a.get("strides", [1, 1]),
                                             padding=[pt, pl, pb, pr], dilation=a.get("dilations", [1, 1]),
                                             groups=int(a.get("group", 1)), data_layout="NHWC",
                                             kernel_layout="HWIO", out_dtype="int32"))
            else:
                wm = wq.T if (kind == "Gemm" and a.get("transB", 0)) else wq  # [K, C_out]
                if ndim_of(xi) != 2:
                    xi = self.emit(op.reshape(self.nchw(xi), [xi.ty.shape[0], -1]))
                acc = self.emit(op.matmul(xi, self.const(np.ascontiguousarray(wm), "int16"), out_dtype="int32"))
            ndim = 4 if kind == "Conv" else 2
            s_acc = (np.float64(np.float32(xq.scale)) * ws.astype(np.float64)).astype(np.float32)
            bias_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
            if bias_name:
                bq = bias_codes(inits[bias_name], s_acc)
                acc = self.emit(op.add(acc, self.const(bq.reshape(self.channel_shape(-1, ndim, -1)), "int32")))
            out_name, act = fused_output(node, gone, consumers, skip)
            if out_name not in t or out_name in outputs:  # graph output left float: dequantize the accumulator
                y = op.multiply(op.astype(acc, "float64"),
                                self.const(s_acc.astype(np.float64).reshape(self.channel_shape(-1, ndim, -1)),
                                           "float64"))
                env[out_name] = self.nchw(self.cast(self.emit(y), "float32"))
                return
            s_o, zp_o, lo, hi = self.qparams(out_name)
            bounds = _act_range(act, s_o, zp_o, lo, hi, inits) if act is not None else None
            y = self.requantize(acc, s_acc.astype(np.float64) / s_o, zp_o, lo, hi, act=bounds)
            env[out_name] = _Codes(y, s_o, zp_o, lo, hi)
        elif kind in ("Relu", "Clip"):
            xq = env[node.input[0]]
            s_o, zp_o, lo, hi = self.qparams(node.output[0])
            y = self.rescale(xq, s_o, zp_o, lo, hi)
            lo_act, hi_act = _act_range(node, s_o, zp_o, lo, hi, inits)
            y = self.cast(self.clamp(self.cast(y, "int32"), lo_act, hi_act, "int32"), storage_dtype(lo, hi))
            env[node.output[0]] = _Codes(y, s_o, zp_o, lo, hi)
        elif kind == "MaxPool":
            xq = env[node.input[0]]
            if a.get("ceil_mode", 0):
                raise NotImplementedError("ceil_mode pooling")
            pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
            x = xq.expr
            if storage_dtype(xq.lo, xq.hi) == "int32" or any((pt, pl, pb, pr)):
                # pad with the lowest code explicitly (the reference's pad value), then pool unpadded
                x = self.cast(x, "int32")
                if any((pt, pl, pb, pr)):
                    x = self.emit(op.nn.pad(x, [0, 0, pt, pb, pl, pr, 0, 0], pad_value=float(xq.lo)))
            y = self.emit(op.nn.max_pool2d(x, pool_size=a["kernel_shape"], strides=a.get("strides", [1, 1]),
                                           layout="NHWC"))
            y = self.cast(y, storage_dtype(xq.lo, xq.hi))
            s_o, zp_o, lo, hi = self.qparams(node.output[0])
            env[node.output[0]] = _Codes(self.rescale(_Codes(y, xq.scale, xq.zp, xq.lo, xq.hi), s_o, zp_o, lo, hi),
                                         s_o, zp_o, lo, hi)
        elif kind in ("AveragePool", "GlobalAveragePool"):
            xq = env[node.input[0]]
            xi = self.centered(xq, "int32")
            if kind == "GlobalAveragePool":
                total = self.emit(op.sum(xi, axis=[1, 2], keepdims=True))
                shp = xq.expr.ty.shape
                count = int(shp[1]) * int(shp[2])
            else:
                if a.get("count_include_pad", 0) == 0 and any(a.get("pads", [0])):
                    raise NotImplementedError(f"{node.name}: padded AveragePool without count_include_pad")
                if a.get("ceil_mode", 0):
                    raise NotImplementedError("ceil_mode pooling")
                kh, kw = a["kernel_shape"]
                c = int(xq.expr.ty.shape[-1])
                pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
                # window sums (zero padding = the reference's pad value 0): a depthwise all-ones conv
                total = self.emit(op.nn.conv2d(xi, self.const(np.ones((kh, kw, 1, c)), "int32"),
                                               strides=a.get("strides", [1, 1]), padding=[pt, pl, pb, pr],
                                               groups=c, data_layout="NHWC", kernel_layout="HWIO",
                                               out_dtype="int32"))
                count = int(np.prod(a["kernel_shape"]))
            s_o, zp_o, lo, hi = self.qparams(node.output[0])
            y = self.requantize(total, xq.scale / (s_o * count), zp_o, lo, hi)
            env[node.output[0]] = _Codes(y, s_o, zp_o, lo, hi)
        elif kind == "Concat":
            s_o, zp_o, lo, hi = self.qparams(node.output[0])
            parts = []
            for i in node.input:
                c = env[i]
                parts.append(self.cast(self.rescale(c, s_o, zp_o, lo, hi), storage_dtype(lo, hi)))
            axis = a.get("axis", 1)
            if len(parts[0].ty.shape) == 4:  # NCHW axis -> NHWC axis
                axis = {0: 0, 1: 3, 2: 1, 3: 2}[axis % 4]
            y = self.emit(op.concat(parts, axis=axis))
            env[node.output[0]] = _Codes(y, s_o, zp_o, lo, hi)
        elif kind == "Add":
            out_name, act = fused_output(node, gone, consumers, skip)
            a_q, b_q = env[node.input[0]], env[node.input[1]]
            s_o, zp_o, lo, hi = self.qparams(out_name)
            bounds = _act_range(act, s_o, zp_o, lo, hi, inits) if act is not None else None
            y = self.add(a_q, b_q, s_o, zp_o, lo, hi, bounds)
            env[out_name] = _Codes(y, s_o, zp_o, lo, hi)
        elif kind in ("Flatten", "Reshape", "Identity"):
            xq = env[node.input[0]]
            if kind == "Identity":
                y = xq.expr
            else:  # element order is the graph's: NCHW
                x = self.nchw(xq.expr)
                shp = list(x.ty.shape)
                new = [shp[0], -1] if kind == "Flatten" else [d if d else shp[k]
                                                               for k, d in enumerate(inits[node.input[1]].tolist())]
                y = self.nhwc(self.emit(op.reshape(x, new)))
            s_o, zp_o, lo, hi = self.qparams(node.output[0])
            y = self.rescale(_Codes(y, xq.scale, xq.zp, xq.lo, xq.hi), s_o, zp_o, lo, hi)
            env[node.output[0]] = _Codes(y, s_o, zp_o, lo, hi)
        else:
            raise NotImplementedError(f"INT8 Relax lowering: op {kind} ({node.name}) is not supported")

    def add(self, a_q: _Codes, b_q: _Codes, s_o, zp_o, lo, hi, act):
        """reference.add_int: both inputs << 20, rescaled to 2 * max(s_a, s_b), summed, requantized to s_o."""
        op = self.relax.op
        p = add_params(a_q.scale, b_q.scale, s_o)
        terms = []
        for c, (q, shift) in ((a_q, p["a"]), (b_q, p["b"])):
            x = self.emit(op.left_shift(self.centered(c, "int32"), self.const(p["left_shift"], "int32")))
            terms.append(self.multiply(x, q, shift))
        y = self.multiply(self.emit(op.add(terms[0], terms[1])), *p["out"])
        if zp_o:
            y = self.emit(op.add(y, self.const(zp_o, "int64")))
        c_lo, c_hi = (max(lo, act[0]), min(hi, act[1])) if act is not None else (lo, hi)
        return self.cast(self.clamp(y, c_lo, c_hi, "int64"), storage_dtype(lo, hi))


def lower_int8(onnx_model: onnx.ModelProto, table: CalibrationTable, *, expose: tuple[str, ...] = (),
               batch: int | None = None):
    """The FP32 ONNX graph `onnx_model` (the graph `table` was calibrated on) as an integer Relax IRModule whose
    main(x: float32 NCHW) returns the float32 output equal to reference.run_reference(onnx_model, table, x).

    expose: quantized tensors whose codes (in their int8 / uint8 storage type) main also returns, after the graph output(s) -- for
    comparing every layer with the reference's `return_all` codes. batch: fix the input's batch dimension (the
    deployed module: static shapes, which tcc's CPU schedules need); None keeps the model's own."""
    return _Lowering(onnx_model, table).lower(tuple(expose), batch)


def requantize_primfunc(dtype: str, shape):
    """The requantization kernel for one output dtype and shape (ints; anything else, e.g. a symbolic batch,
    becomes a symbolic dimension), fused by Relax into the producing conv. Channels last:

        out[..., c] = clamp(multiply_by_quantized_multiplier(acc[..., c], q[c], shift[c]) + zp[c], lo[c], hi[c])

    acc int32 [D0, .., C]; params int64 [6, C] = (q, k = 31 - shift, 2^(k-1), zp, lo, hi), one row per parameter
    so that a vector of channels loads each with one instruction (a [C, 6] table measured 1.45x slower on x86);
    out `dtype`. The product acc * q is exact in int64, the arithmetic shift right by k is the floor, and one is
    added where the remainder is above half or exactly half with an odd floor: one rounding, half to even, as in
    the reference. (Sign and magnitude, for AVX2's missing arithmetic 64-bit shift, measured no faster.)"""
    from tvm import te, tirx

    # int64 extents, like Relax's shapes (int32 ones make FuseTIR see two different buffers)
    dims = [tirx.IntImm("int64", int(d)) if isinstance(d, (int, tirx.IntImm)) else tirx.Var(f"d{i}", "int64")
            for i, d in enumerate(shape)]
    acc = te.placeholder(dims, "int32", name="acc")
    params = te.placeholder((tirx.IntImm("int64", 6), dims[-1]), "int64", name="params")

    def one(*idx):
        q, k, half, zp, lo, hi = (params[p, idx[-1]] for p in range(6))
        prod = acc[idx].astype("int64") * q
        floor = prod >> k
        rem = prod - (floor << k)
        up = tirx.Or(rem > half, tirx.And(tirx.EQ(rem, half), tirx.EQ(floor & tirx.const(1, "int64"),
                                                                          tirx.const(1, "int64"))))
        y = floor + up.astype("int64") + zp
        return tirx.min(tirx.max(y, lo), hi).astype(dtype)

    out = te.compute(dims, one, name="requantize")
    # op pattern kElemWise, as TVM's analysis rates a bias add (out[..., c] from acc[..., c] and constants of
    # channel c): Relax then fuses it into the conv that makes acc, like an activation. Its own analysis would say
    # "injective" (params[k, c]), which a conv does not take into its group; tvm_runtime's pipeline applies this
    # declared pattern after that analysis
    func = te.create_prim_func([acc, params, out]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 0)


def requantize_module(q, shift, zp: int = 0, lo: int = INT32_MIN, hi: int = INT32_MAX, dtype: str = "int32"):
    """main(acc: int32[1, n]) -> clamp(multiply_by_quantized_multiplier(acc, q, shift) + zp, lo, hi) in `dtype`,
    with per-channel q, shift (arrays of length n): the requantization PrimFunc on its own, for tests."""
    low = _Lowering()
    relax = low.relax
    n = len(np.atleast_1d(q))
    acc = relax.Var("acc", relax.TensorType([1, n], "int32"))
    with low.bb.function("main", [acc]):
        with low.bb.dataflow():
            gv = low.bb.emit_output(low.call_requantize(acc, q, shift, zp, lo, hi, dtype))
        low.bb.emit_func_output(gv)
    return low.bb.get()


def multiplier_module(q, shift):
    """main(acc: int32[n]) -> int64[n] = reference.multiply_by_quantized_multiplier(acc, q, shift) with per-element
    q, shift (arrays of length n): the requantization core on its own, for testing it on edge cases."""
    low = _Lowering()
    relax = low.relax
    q = np.asarray(q, np.int64)
    acc = relax.Var("acc", relax.TensorType([len(q)], "int32"))
    with low.bb.function("main", [acc]):
        with low.bb.dataflow():
            gv = low.bb.emit_output(low.multiply(acc, q, shift, ndim=1, axis=0))
        low.bb.emit_func_output(gv)
    return low.bb.get()

