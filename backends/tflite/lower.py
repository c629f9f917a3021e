"""The integer graph (tcc.quant.intgraph.match) as a .tflite model: one method per kind of the integer op table.

    data, info = TfliteLowering(graph, "int8", qgraph, io="float").lower()

Precisions, the four TFLite deploys (the quantization case study's, ../shared/papers):
- fp32: float32 weights and activations;
- fp16: float16 weights, each behind a DEQUANTIZE to float32 (TFLite's float16 quantization);
- dynamic: int8 per-channel symmetric weights for CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, float
  activations (LiteRT's hybrid kernels quantize them per sample at run time);
- int8: full integer, every constant from the QGraph (tcc.quant.intgraph.qgraph: weight codes in [-127, 127], int32
bias at
  s_in s_w, each tensor's scale and zero point from the calibration table): a translation, never new math. The
  graph input is QUANTIZEd and the output DEQUANTIZEd (`io="float"`), or the model takes and gives int8 codes. A
  float island (tcc.quant.table.placement) is DEQUANTIZE, the kind's own float builtin, QUANTIZE (`float_island`).

Layout: NHWC inside, the layout of TFLite's kernels: the model's input is NHWC (a phone's image), once at the
boundary; a 4-D tensor goes to the graph's NCHW only where its semantics need it (a reshape or transpose across
the layouts, a 4-D graph output). TFLite's convolutions and pools pad SAME or VALID only: where the graph's pads are
not TFLite's SAME, an explicit PAD (zeros, the zero point) or PADV2 (max pooling: the lowest value) comes first.
Tensors are named after the graph's, so every quantized tensor can be read back by name (the per-op check).
"""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from tcc.errors import BuildError
from tcc.intops import TFLITE, TFLITE_LOOKUPS, Interpreter
from tcc.passes.base import infer_value_shapes
from tcc.quant.intgraph.match import INode, IntGraph
from tcc.quant.intgraph.node_constants import clamp_codes, clip_bounds, pool_geometry, slice_ranges
from tcc.quant.intgraph.qtypes import QGraph, QParams

from .model import Quant, TfliteModel, options
from .norms import Normalizations
from .spatial import Spatial
from .values import FLOAT_LOWEST, FUSED, NCHW, NHWC, PRECISIONS, Value, code_type, same_pads, to_nhwc


class TfliteLowering(Normalizations, Spatial, Interpreter):
    lowering = TFLITE

    def __init__(
        self, graph: IntGraph, precision: str, qgraph: QGraph | None = None, io: str = "float", description: str = "tcc"
    ):
        if precision not in PRECISIONS:
            raise BuildError(f"TFLite: unknown precision {precision!r} ({', '.join(PRECISIONS)})")
        if (precision == "int8") != (qgraph is not None):
            raise BuildError("TFLite: an int8 model needs the quantized graph (and only it)")
        self.graph, self.precision, self.io = graph, precision, io
        self.qnodes = {n.name: n for n in qgraph.nodes if n.integer} if qgraph else {}  # float: not listed
        self.islands = {n.name: n for n in qgraph.islands} if qgraph else {}
        self.qgraph = qgraph
        self.m = TfliteModel(description)
        self.inits = {t.name: numpy_helper.to_array(t) for t in graph.model.graph.initializer}
        for island in self.islands.values():  # an island's parameters as the table's steps left them (qgraph)
            self.inits.update({t.name: numpy_helper.to_array(t) for t in island.float_model.graph.initializer})
        self.onnx_nodes = {x.name: x for x in graph.model.graph.node}
        self.rounding = qgraph.input_rounding if qgraph else "half_away"
        self.batch_one = {k: dims for k, (_, dims) in infer_value_shapes(graph.model, batch=1).items()}

    # ------------------------------------------------------------------------------------------ tensors
    def shape(self, name: str) -> list[int]:
        """A graph tensor's shape, batch 1 (the model runs one image; the signature allows any batch): shape
        inference's with a batch of 1, where the first axis holds rows of several samples' tokens its number."""
        dims = self.batch_one.get(name)
        if dims is not None and all(isinstance(d, int) for d in dims):
            return [int(d) for d in dims]
        return [1] + [int(d) for d in list(self.graph.shapes[name])[1:]]

    def act(self, name: str, shape: list[int], q: QParams | None, nhwc: bool) -> Value:
        """A new activation tensor, `shape` in its own layout: int8 codes with q, else float32."""
        quant = Quant((q.scale,), (q.zp,)) if q is not None else None
        return Value(self.m.tensor(name, shape, code_type(q), quant=quant), nhwc, q)

    def out(self, n: INode, k: int = 0, shape: list[int] | None = None) -> Value:
        """The Value for output k of node n: its graph shape (NHWC when 4-D), int8 with its QNode's parameters."""
        name = n.outputs[k]
        s = shape if shape is not None else self.shape(name)
        q = self.qnodes[n.name].qout[k] if n.name in self.qnodes else None
        return self.act(name, to_nhwc(s), q, len(s) == 4)

    def const(self, name: str, value, dtype: str, quant: Quant | None = None) -> int:
        arr = np.asarray(value)
        return self.m.tensor(name, list(arr.shape), dtype, data=arr.astype(dtype), quant=quant)

    def float_weight(self, name: str, w: np.ndarray) -> int:
        """A float constant as this precision stores it: float32, or float16 behind a DEQUANTIZE (fp16)."""
        if self.precision != "fp16":
            return self.const(name, w, "float32")
        half = self.const(f"{name}/fp16", w.astype(np.float16), "float16")
        full = self.m.tensor(name, list(w.shape), "float32")
        self.m.operator("DEQUANTIZE", [half], [full])
        return full

    def hybrid_weight(self, name: str, w: np.ndarray, axis: int) -> int:
        """dynamic: int8 symmetric per-channel codes in [-127, 127] (the scale: max |w| / 127 per channel)."""
        moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        scale = np.maximum(np.abs(moved).max(axis=1), 1e-12).astype(np.float32) / np.float32(127)
        shape = [1] * w.ndim
        shape[axis] = -1
        codes = np.clip(np.rint(w / scale.reshape(shape)), -127, 127)
        return self.const(name, codes, "int8", Quant(tuple(scale), (0,) * len(scale), axis))

    # ------------------------------------------------------------------------------------------ layout
    def as_nchw(self, v: Value, name: str) -> Value:
        if not v.nhwc:
            return v
        return self.transpose_to(v, NCHW, name, False)

    def as_nhwc(self, v: Value, name: str) -> Value:
        if v.nhwc or len(self.m.shape(v.index)) != 4:
            return v
        return self.transpose_to(v, NHWC, name, True)

    def transpose_to(self, v: Value, perm: list[int], name: str, nhwc: bool) -> Value:
        s = self.m.shape(v.index)
        y = self.act(name, [s[p] for p in perm], v.q, nhwc)
        self.m.operator(
            "TRANSPOSE", [v.index, self.const(f"{name}/perm", np.array(perm, np.int32), "int32")], [y.index]
        )
        return y

    def padded(self, x: Value, pads, value, name: str) -> Value:
        """x (NHWC) with explicit spatial pads (t, l, b, r): PAD with zeros (the zero point), or PADV2 with
        `value` (max pooling's lowest value)."""
        t, l, b, r = pads
        s = self.m.shape(x.index)
        y = self.act(f"{name}/pad", [s[0], s[1] + t + b, s[2] + l + r, s[3]], x.q, True)
        paddings = self.const(f"{name}/paddings", np.array([[0, 0], [t, b], [l, r], [0, 0]], np.int32), "int32")
        if value is None:
            self.m.operator("PAD", [x.index, paddings], [y.index])
        else:
            code = np.array(value, code_type(x.q))
            lowest = self.const(
                f"{name}/pad_value", code, code_type(x.q), Quant((x.q.scale,), (x.q.zp,)) if x.q is not None else None
            )
            self.m.operator("PADV2", [x.index, paddings, lowest], [y.index])
        return y

    def window(self, x: Value, kernel, strides, dilations, pads, out_hw, name: str, pad_value=None):
        """(input, "SAME" | "VALID") for a sliding window with the graph's explicit pads: TFLite's SAME where the
        pads are its SAME pads, else an explicit pad first."""
        _, h, w, _ = self.m.shape(x.index)
        if not any(pads):
            return x, "VALID"
        same = [same_pads(n, k, s, d) for n, k, s, d in zip((h, w), kernel, strides, dilations)]
        if list(out_hw) == [same[0][0], same[1][0]] and list(pads) == [same[0][1], same[1][1], same[0][2], same[1][2]]:
            return x, "SAME"
        return self.padded(x, pads, pad_value, name), "VALID"

    def fused(self, n: INode) -> tuple[str, tuple | None]:
        """(TFLite's fused activation, the clamp still to apply) for a node's folded Relu / Clip."""
        if n.activation is None:
            return "NONE", None
        key = (n.activation.min, n.activation.max)
        if key in FUSED:
            return FUSED[key], None
        return "NONE", key

    def clamp_after(self, y: Value, bounds, name: str, final: Value | None = None, codes: bool = False) -> Value:
        """A clamp TFLite has no fused form for: MAXIMUM / MINIMUM with constants on y's own grid (the last one
        writes `final` when given); `bounds` real values, or codes (`codes`)."""
        lo, hi = bounds
        if y.q is not None and not codes:
            lo, hi = clamp_codes(y.q, lo, hi, self.rounding)
        steps = [
            (op, bound, tag) for op, bound, tag in (("MAXIMUM", lo, "min"), ("MINIMUM", hi, "max")) if bound is not None
        ]
        dtype = code_type(y.q)
        for k, (op, bound, tag) in enumerate(steps):
            c = self.const(
                f"{name}/{tag}",
                np.array(bound, dtype),
                dtype,
                Quant((y.q.scale,), (y.q.zp,)) if y.q is not None else None,
            )
            last = k == len(steps) - 1 and final is not None
            z = final if last else self.act(f"{name}/{op.lower()}", self.m.shape(y.index), y.q, y.nhwc)
            self.m.operator(op, [y.index, c], [z.index])
            y = z
        return y

    def grid_clamp(self, y: Value, lo: int, hi: int, fused: str, name: str) -> Value:
        """A 16-bit tensor on a narrowed grid (codes within +-2^(bits-1), tcc.quant.intgraph.widths.fit_accumulators:
        its readers' int32 accumulators are bounded by it): LiteRT clamps a requantized int16 output to the type and its
        fused activation only, the reference to the grid. MAXIMUM / MINIMUM with the grid's bounds where they are
        tighter than LiteRT's own, so the codes (and the accumulators after) are what the reference has."""
        if y.q is None or (y.q.lo, y.q.hi) == (-32768, 32767) or self.m.dtype(y.index) != "int16":
            return y
        low = lo if lo > -32768 and fused not in ("RELU", "RELU6") else None  # a fused ReLU's floor is zp = 0
        high = hi if hi < 32767 else None
        if low is None and high is None:
            return y
        return self.clamp_after(y, (low, high), f"{name}/grid", codes=True)

    # ------------------------------------------------------------------------------------------ the graph
    def lower(self) -> tuple[bytes, dict]:
        g = self.graph
        in_shape = to_nhwc(self.shape(g.input))
        signature = [-1, *in_shape[1:]]
        env: dict[str, Value] = {}
        if self.qgraph is None or self.qgraph.input_q is None:  # float, or only float islands read it
            if self.qgraph is not None and self.io == "int8":
                raise BuildError("--io int8: only float islands read the graph input, which stays float")
            x = Value(self.m.tensor(g.input, in_shape, "float32", signature=signature), True)
            inputs = [x.index]
        else:
            qi = self.qgraph.input_q
            if self.io == "int8":
                x = Value(
                    self.m.tensor(
                        g.input, in_shape, code_type(qi), quant=Quant((qi.scale,), (qi.zp,)), signature=signature
                    ),
                    True,
                    qi,
                )
                inputs = [x.index]
            else:
                f = self.m.tensor(f"{g.input}/float", in_shape, "float32", signature=signature)
                x = self.act(g.input, in_shape, qi, True)
                self.m.operator("QUANTIZE", [f], [x.index])
                x = self.grid_clamp(x, qi.lo, qi.hi, "NONE", g.input)
                inputs = [f]
        env[g.input] = x
        for node in g.nodes:
            env.update(zip(node.outputs, self.run_node(node, *(env[i] for i in node.inputs))))
        outputs = []
        for name in g.outputs:
            v = self.as_nchw(env[name], f"{name}/nchw")  # the graph's own layout at the boundary
            if v.q is not None and self.io == "float":
                f = self.m.tensor(f"{name}/float", self.m.shape(v.index), "float32")
                self.m.operator("DEQUANTIZE", [v.index], [f])
                v = Value(f, False)
            outputs.append(v.index)
        data = self.m.to_bytes(inputs, outputs)
        io = {
            "input_layout": "NHWC",
            "input_shape": in_shape,
            "input_dtype": self.m.dtype(inputs[0]),
            "output_dtype": self.m.dtype(outputs[0]),
            "tensors": {name: {"index": v.index, "nhwc": v.nhwc} for name, v in env.items()},
        }
        if self.qgraph is not None and self.io == "int8":
            qi, qo = self.qgraph.input_q, env[g.outputs[0]].q
            if qo is None:
                raise BuildError("--io int8: a float island computes the graph output, which stays float")
            io["input_quantization"] = {"scale": qi.scale, "zero_point": qi.zp}
            io["output_quantization"] = {"scale": qo.scale, "zero_point": qo.zp}
        return data, io

    # ------------------------------------------------------------------------------------------ float islands
    def float_island(self, n: INode, *xs: Value) -> list:
        """DEQUANTIZE the quantized inputs, the kind's own float lowering (the node is not among the integer ones),
        QUANTIZE each output an integer node reads (TFLite's QUANTIZE: x / s rounded half away, the reference's
        rounding under the tflite rules)."""
        ins = []
        for k, x in enumerate(xs):
            if x.q is not None:
                f = self.act(f"{n.name}/input{k}/float", self.m.shape(x.index), None, x.nhwc)
                self.m.operator("DEQUANTIZE", [x.index], [f.index])
                x = f
            ins.append(x)
        out = []
        for y, q, name in zip(getattr(self, n.kind)(n, *ins), self.islands[n.name].qout, n.outputs):
            if q is not None:
                z = self.act(f"{name}/quantized", self.m.shape(y.index), q, y.nhwc)
                self.m.operator("QUANTIZE", [y.index], [z.index])
                y = z
            out.append(y)
        return out

    # ------------------------------------------------------------------------------------------ weighted
    def conv(self, n: INode, x: Value) -> list:
        q = self.qnodes.get(n.name)
        a = n.attrs
        w = self.inits[n.weight]
        c_out, cg, kh, kw = w.shape
        group = int(a.get("group", 1))
        depthwise = group > 1 and cg == 1  # a grouped conv (cg > 1) is a CONV_2D whose filter has cg input channels
        strides, dil = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
        y = self.out(n)
        out_hw = self.m.shape(y.index)[1:3]
        x, padding = self.window(x, (kh, kw), strides, dil, list(a.get("pads", [0, 0, 0, 0])), out_hw, n.name)
        if q is not None:
            codes = q.weight.astype(np.int8)
            sw = tuple(float(v) for v in q.weight_scale)
            arranged = codes.transpose(1, 2, 3, 0) if depthwise else codes.transpose(0, 2, 3, 1)  # [1,H,W,O] / OHWI
            wt = self.const(f"{n.weight}", arranged, "int8", Quant(sw, (0,) * c_out, 3 if depthwise else 0))
            bt = self.bias_codes(n, q, c_out)
        else:
            arranged = w.transpose(1, 2, 3, 0) if depthwise else w.transpose(0, 2, 3, 1)
            if self.precision == "dynamic":
                wt = self.hybrid_weight(n.weight, arranged, 3 if depthwise else 0)
            else:
                wt = self.float_weight(n.weight, arranged)
            b = self.inits[n.bias] if n.bias else np.zeros(c_out, np.float32)
            bt = self.float_weight(n.bias or f"{n.name}/bias", b.astype(np.float32))
        act, clamp = self.fused(n)
        fields = dict(
            padding=padding,
            strideH=strides[0],
            strideW=strides[1],
            dilationHFactor=dil[0],
            dilationWFactor=dil[1],
            fusedActivationFunction=act,
        )
        if depthwise:
            opts = options("DepthwiseConv2DOptions", depthMultiplier=c_out // group, **fields)
            self.m.operator("DEPTHWISE_CONV_2D", [x.index, wt, bt], [y.index], opts)
        else:
            self.m.operator(
                "CONV_2D", [x.index, wt, bt], [y.index], options("Conv2DOptions", **fields, **self.bias_type(x, bt))
            )
        y = self.clamp_after(y, clamp, n.name) if clamp else y
        return [self.grid_clamp(y, q.requant.lo, q.requant.hi, act, n.name) if q is not None and q.requant else y]

    def bias_codes(self, n: INode, q, channels: int) -> int:
        """The QNode's bias codes at s_in s_w per channel: int32, or where the input is 16-bit as the rules' 16-bit
        conventions for this layer say (TFLite's 16x8 kernels: int64; `tflite16-i32`: int32 for CONV_2D and
        FULLY_CONNECTED; the quantizer checked the codes fit)."""
        bias = q.bias if q.bias is not None else np.zeros(channels, np.int64)
        wide = q.qin[0].bits > 8 and self.qgraph.rules.wide_for(n.kind, q.attrs, q.weight).bias_bits > 32
        return self.const(
            f"{n.name}/bias",
            bias,
            "int64" if wide else "int32",
            Quant(tuple(float(v) for v in q.acc_scale), (0,) * channels, 0),
        )

    def bias_type(self, x: Value, bias: int) -> dict:
        """CONV_2D's and FULLY_CONNECTED's `quantized_bias_type` at 16x8 (int16 input `x`): INT64, or INT32 for an
        int32 bias (`tflite16-i32`). LiteRT's 16x8 kernels dispatch on it, not on the bias tensor's type: without it
        an int32 bias is read as int64. TFLite's versioning gives such an operator version 8 / 11. Else nothing."""
        if self.m.dtype(x.index) != "int16" or self.m.dtype(bias) not in ("int32", "int64"):
            return {}
        return {"quantizedBiasType": getattr(self.m.s.TensorType, self.m.dtype(bias).upper())}

    def gemm(self, n: INode, x: Value) -> list:
        q = self.qnodes.get(n.name)
        if len(self.m.shape(x.index)) != 2:  # FULLY_CONNECTED flattens its input: in the graph's order
            x = self.reshape_value(self.as_nchw(x, f"{n.name}/nchw"), [1, -1], f"{n.name}/flat", q and x.q)
        w = self.inits[n.weight]
        nk = w if n.w_axis == 0 else w.T  # [N, K]
        if q is not None:
            codes = q.weight.T.astype(np.int8)  # QNode: [K, N]
            sw = tuple(float(v) for v in q.weight_scale)
            wt = self.const(n.weight, codes, "int8", Quant(sw, (0,) * len(sw), 0))
            bt = self.bias_codes(n, q, len(sw))
        else:
            wt = (
                self.hybrid_weight(n.weight, nk, 0)
                if self.precision == "dynamic"
                else self.float_weight(n.weight, np.ascontiguousarray(nk))
            )
            b = self.inits[n.bias] if n.bias else np.zeros(nk.shape[0], np.float32)
            bt = self.float_weight(n.bias or f"{n.name}/bias", b.astype(np.float32))
        y = self.out(n)
        act, clamp = self.fused(n)
        opts = options(
            "FullyConnectedOptions",
            fusedActivationFunction=act,
            asymmetricQuantizeInputs=self.precision == "dynamic",
            **self.bias_type(x, bt),
        )
        self.m.operator("FULLY_CONNECTED", [x.index, wt, bt], [y.index], opts)
        y = self.clamp_after(y, clamp, n.name) if clamp else y
        return [self.grid_clamp(y, q.requant.lo, q.requant.hi, act, n.name) if q is not None and q.requant else y]

    # ------------------------------------------------------------------------------------------ elementwise
    def add(self, n: INode, a: Value, b: Value) -> list:
        y = self.out(n)
        act, clamp = self.fused(n)
        # int16: LiteRT's general-scale ADD (the reference's); with pot_scale_int16 (the schema's default) scales
        # that happen to be powers of two would take its other arithmetic
        wide = {"potScaleInt16": False} if self.m.dtype(y.index) == "int16" else {}
        self.m.operator(
            "ADD", [a.index, b.index], [y.index], options("AddOptions", fusedActivationFunction=act, **wide)
        )
        return [self.clamp_after(y, clamp, n.name) if clamp else y]

    def broadcast(self, n: INode) -> list:
        """The constant itself: the model runs one sample (batch 1), which [1, ...] already is; int8: its codes."""
        q = self.qnodes.get(n.name)
        c = q.weight if q is not None else self.inits[n.weight]
        nhwc = c.ndim == 4
        c = c.transpose(NHWC) if nhwc else c
        if q is None:
            return [Value(self.float_weight(n.outputs[0], np.ascontiguousarray(c, np.float32)), nhwc)]
        out = q.qout[0]
        return [Value(self.const(n.outputs[0], c, code_type(out), Quant((out.scale,), (out.zp,))), nhwc, out)]

    def add_constant(self, n: INode, x: Value) -> list:
        """ADD with the constant as a second tensor in x's rank and layout: float32, or in int8 its codes at its
        scale (the QNode's: the operand the reference adds)."""
        q = self.qnodes.get(n.name)
        c = q.weight if q is not None else self.inits[n.factor]
        c = c.reshape((1,) * (len(self.m.shape(x.index)) - c.ndim) + c.shape)
        c = c.transpose(NHWC) if x.nhwc else c
        if q is None:
            operand = self.float_weight(n.factor, np.ascontiguousarray(c, np.float32))
        else:
            operand = self.const(n.factor, c, "int8", Quant((float(q.weight_scale[0]),), (0,)))
        y = self.out(n)
        self.m.operator("ADD", [x.index, operand], [y.index], options("AddOptions", fusedActivationFunction="NONE"))
        return [y]

    def mul(self, n: INode, a: Value, b: Value) -> list:
        y = self.out(n)
        self.m.operator("MUL", [a.index, b.index], [y.index], options("MulOptions"))
        return [y]

    def sub(self, n: INode, a: Value, b: Value) -> list:
        """SUB, float only (in an INT8 graph a float island)."""
        y = self.out(n)
        self.m.operator("SUB", [a.index, b.index], [y.index], options("SubOptions"))
        return [y]

    def div(self, n: INode, a: Value, b: Value) -> list:
        """DIV, float only (in an INT8 graph a float island)."""
        y = self.out(n)
        self.m.operator("DIV", [a.index, b.index], [y.index], options("DivOptions"))
        return [y]

    def matmul(self, n: INode, a: Value, b: Value) -> list:
        """BATCH_MATMUL in the graph's axis order (LiteRT's int8 kernel: zero-point-free codes summed in int32,
        requantized by s_a s_b / s_out with its rounding, as the reference under the tflite rules)."""
        a, b = self.as_nchw(a, f"{n.name}/a_nchw"), self.as_nchw(b, f"{n.name}/b_nchw")
        target = self.shape(n.outputs[0])
        q = self.qnodes[n.name].qout[0] if n.name in self.qnodes else None
        name = f"{n.outputs[0]}/nchw" if len(target) == 4 else n.outputs[0]
        y = self.act(name, target, q, False)
        self.m.operator(
            "BATCH_MATMUL", [a.index, b.index], [y.index], options("BatchMatMulOptions", adjX=False, adjY=False)
        )
        return [self.as_nhwc_named(y, n.outputs[0]) if len(target) == 4 else y]

    def lookup(self, n: INode, x: Value) -> list:
        if n.gate:  # x * gate(x) (float plans only: TFLite has no such op)
            g = self.unary(n.gate, n.attrs, x, f"{n.name}/gate")
            y = self.out(n)
            self.m.operator("MUL", [x.index, g.index], [y.index], options("MulOptions"))
            return [y]
        return [self.unary(n.lookup, n.attrs, x, n.outputs[0], self.out(n))]

    def unary(self, op: str, attrs: dict, x: Value, name: str, y: Value | None = None) -> Value:
        """TFLite's own op for an ONNX unary op (its int8 kernel where the plan allowed one:
        tcc.intops.TFLITE_LOOKUPS), or, float only, a few float ops: hard-sigmoid, an ELU with another alpha than 1."""
        shape = self.m.shape(x.index)
        y = y if y is not None else self.act(name, shape, None, x.nhwc)
        kernel = TFLITE_LOOKUPS.get(op)
        if op == "HardSwish":
            self.m.operator("HARD_SWISH", [x.index], [y.index])
        elif op == "HardSigmoid":  # float: clip(alpha x + beta, 0, 1)
            t = self.binary_const("MUL", x, float(attrs.get("alpha", 0.2)), f"{name}/scaled", f"{name}/alpha")
            u = self.binary_const("ADD", t, float(attrs.get("beta", 0.5)), f"{name}/shifted", f"{name}/beta")
            self.m.operator("RELU_0_TO_1", [u.index], [y.index])
        elif op == "Elu" and float(attrs.get("alpha", 1.0)) != 1.0:  # float: relu(x) + alpha min(elu(x), 0)
            e = self.act(f"{name}/elu", shape, None, x.nhwc)
            self.m.operator("ELU", [x.index], [e.index])
            negative = self.binary_const("MINIMUM", e, 0.0, f"{name}/negative")
            scaled = self.binary_const("MUL", negative, float(attrs["alpha"]), f"{name}/scaled")
            r = self.act(f"{name}/relu", shape, None, x.nhwc)
            self.m.operator("RELU", [x.index], [r.index])
            self.m.operator("ADD", [r.index, scaled.index], [y.index], options("AddOptions"))
        elif kernel is not None:
            opts = {
                "Gelu": lambda: options("GeluOptions", approximate=attrs.get("approximate", "none") == "tanh"),
                "LeakyRelu": lambda: options("LeakyReluOptions", alpha=float(attrs.get("alpha", 0.01))),
            }
            self.m.operator(kernel.builtin, [x.index], [y.index], opts[op]() if op in opts else None)
        else:
            raise BuildError(f"TFLite: no lowering for {op}")
        return y

    def binary_const(self, op: str, x: Value, value: float, name: str, const_name: str | None = None) -> Value:
        """op(x, a float32 scalar constant), float only: a new tensor `name`."""
        y = self.act(name, self.m.shape(x.index), None, x.nhwc)
        opts = {"MUL": "MulOptions", "ADD": "AddOptions", "SUB": "SubOptions"}.get(op)
        c = self.const(const_name or f"{name}/value", np.float32(value), "float32")
        self.m.operator(op, [x.index, c], [y.index], options(opts) if opts else None)
        return y

    def channel_scale(self, n: INode, x: Value) -> list:
        """PRELU (alpha along the channels); a layer scale: MUL by the factors in float, a 1x1 DEPTHWISE_CONV_2D
        with the factors as per-channel int8 weights in int8 (the QNode's codes and scales)."""
        q = self.qnodes.get(n.name)
        factor = self.inits[n.factor].reshape(-1).astype(np.float32)
        if n.op_type == "Mul" and factor.size == 1 and len(self.m.shape(x.index)) != 4:
            return [self.scalar_mul(n, x, factor, q)]
        x = self.as_nhwc(x, f"{n.name}/nhwc")  # channels last: [1, H, W, C] or [1, F]
        y = self.out(n)
        channels = self.m.shape(x.index)[-1]
        if n.op_type == "PRelu":
            if q is not None:
                alpha = self.const(n.factor, q.factors[1], "int8", Quant((float(q.weight_scale[0]),), (0,)))
            else:
                alpha = self.float_weight(n.factor, np.broadcast_to(factor, (channels,)).copy())
            self.m.operator("PRELU", [x.index, alpha], [y.index])
        elif q is None:
            factors = self.float_weight(n.factor, np.broadcast_to(factor, (channels,)).copy())
            self.m.operator("MUL", [x.index, factors], [y.index], options("MulOptions"))
        else:
            scales = tuple(float(v) for v in q.weight_scale)
            w = self.const(n.factor, q.factors[0].reshape(1, 1, 1, channels), "int8", Quant(scales, (0,) * channels, 3))
            b = self.const(
                f"{n.name}/bias",
                np.zeros(channels, np.int64),
                "int32",
                Quant(tuple(float(v) for v in q.acc_scale), (0,) * channels, 0),
            )
            opts = options(
                "DepthwiseConv2DOptions",
                padding="VALID",
                strideH=1,
                strideW=1,
                depthMultiplier=1,
                dilationHFactor=1,
                dilationWFactor=1,
                fusedActivationFunction="NONE",
            )
            self.m.operator("DEPTHWISE_CONV_2D", [x.index, w, b], [y.index], opts)
        return [y]

    def scalar_mul(self, n: INode, x: Value, factor: np.ndarray, q) -> Value:
        """One factor on a tensor of any rank (attention's scores times 1 / sqrt(d)): MUL by a float scalar, or in
        int8 by the factor's code at its scale (the QNode's: LiteRT's MUL requantizes the product of codes by
        s_in s_w / s_out in double, the reference's multiplier for the channel scale's one-channel weight)."""
        y = self.out(n)
        if q is None:
            c = self.float_weight(n.factor, factor.reshape(1))
        else:  # the int8 code; in the 16x8 mode as int16 (LiteRT's MUL takes operands of one type)
            c = self.const(
                n.factor, q.factors[0].reshape(-1)[:1], self.m.dtype(x.index), Quant((float(q.weight_scale[0]),), (0,))
            )
        self.m.operator("MUL", [x.index, c], [y.index], options("MulOptions"))
        return y

    def reduce_sum(self, n: INode, x: Value) -> list:
        """SUM over the constant axes (the tensor's own layout), float only."""
        return self._reduction(n, x, "SUM")

    def reduce_mean(self, n: INode, x: Value) -> list:
        """MEAN over the constant axes, float only."""
        return self._reduction(n, x, "MEAN")

    def _reduction(self, n: INode, x: Value, op: str) -> list:
        node = self.onnx_nodes[n.name]
        axes = self.inits[node.input[1]] if len(node.input) > 1 and node.input[1] else n.attrs["axes"]
        rank = len(self.m.shape(x.index))
        axes = [NHWC.index(int(a) % rank) if x.nhwc else int(a) % rank for a in np.asarray(axes).reshape(-1)]
        y = self.out(n)
        self.m.operator(
            op,
            [x.index, self.const(f"{n.name}/axes", np.array(axes, np.int32), "int32")],
            [y.index],
            options("ReducerOptions", keepDims=bool(n.attrs.get("keepdims", 1))),
        )
        return [y]

    def clamp(self, n: INode, x: Value) -> list:
        q = self.qnodes.get(n.name)
        bounds = clip_bounds(n, self.onnx_nodes, self.inits)
        y = self.out(n)
        if bounds in FUSED:  # RELU / RELU6 / RELU_N1_TO_1 (int8: requantize where the scales differ)
            self.m.operator(FUSED[bounds], [x.index], [y.index])
            return [y]
        if q is not None and q.rescale[0] is not None:
            raise BuildError(
                f"TFLite: Clip {n.name!r} with bounds {bounds} and different input and output "
                "scales has no int8 form; recalibrate with --target tflite"
            )
        return [self.clamp_after(x, bounds, n.name, final=y)]

    def softmax(self, n: INode, x: Value) -> list:
        """SOFTMAX over the graph's last axis: a 4-D tensor stored channels last (attention scores [N, heads, S, S])
        goes to the graph's order for it and back."""
        if not x.nhwc:
            y = self.out(n)
            self.m.operator("SOFTMAX", [x.index], [y.index], options("SoftmaxOptions", beta=1.0))
            return [y]
        x = self.as_nchw(x, f"{n.name}/nchw")
        q = self.qnodes[n.name].qout[0] if n.name in self.qnodes else None
        y = self.act(f"{n.outputs[0]}/nchw", self.shape(n.outputs[0]), q, False)
        self.m.operator("SOFTMAX", [x.index], [y.index], options("SoftmaxOptions", beta=1.0))
        return [self.as_nhwc_named(y, n.outputs[0])]

    # ------------------------------------------------------------------------------------------ pools
    def _geometry(self, n: INode) -> dict:
        q = self.qnodes.get(n.name)
        return q.attrs if q is not None else pool_geometry(n, self.graph.shapes)

    def max_pool(self, n: INode, x: Value) -> list:
        geo = self._geometry(n)
        lowest = x.q.lo if x.q is not None else FLOAT_LOWEST
        if x.q is not None and x.q.zp <= x.q.lo:
            # no code below the zero point (a ReLU's output): a PAD with it gives the same maxima as PADV2 with the
            # lowest code, and LiteRT's XNNPACK delegate takes a PAD, where a PADV2 runs on the reference kernel
            lowest = None
        x, padding = self.window(x, geo["kernel"], geo["strides"], (1, 1), geo["pads"], geo["out_hw"], n.name, lowest)
        y = self.out(n)
        self.pool("MAX_POOL_2D", x, y, geo["kernel"], geo["strides"], padding)
        return [y]

    def global_max_pool(self, n: INode, x: Value) -> list:
        q = self.qnodes.get(n.name)
        if q is not None and q.rescale[0] is not None:
            raise BuildError(
                f"TFLite: global max pool {n.name!r} has another scale than its input: TFLite's int8 "
                "MAX_POOL_2D keeps one; recalibrate with --target tflite"
            )
        x = self.as_nhwc(x, f"{n.name}/nhwc")
        _, h, w, _ = self.m.shape(x.index)
        y = self.out(n)
        self.pool("MAX_POOL_2D", x, y, (h, w), (1, 1), "VALID")
        return [y]

    def avg_pool(self, n: INode, x: Value) -> list:
        geo = self._geometry(n)
        if any(geo["pads"]):  # the padding counts (count_include_pad): zeros (the zero point) in the sum
            x = self.padded(x, geo["pads"], None, n.name)
        y = self.out(n)
        self.pool("AVERAGE_POOL_2D", x, y, geo["kernel"], geo["strides"], "VALID")
        return [y]

    def global_avg_pool(self, n: INode, x: Value) -> list:
        _, h, w, _ = self.m.shape(x.index)
        y = self.out(n)
        if x.q is not None:  # the rounded mean of codes on one grid, as the reference's divide
            self.pool("AVERAGE_POOL_2D", x, y, (h, w), (1, 1), "VALID")
        else:
            axes = self.const(f"{n.name}/axes", np.array([1, 2], np.int32), "int32")
            self.m.operator("MEAN", [x.index, axes], [y.index], options("ReducerOptions", keepDims=True))
        return [y]

    def pool(self, op: str, x: Value, y: Value, kernel, strides, padding: str) -> None:
        self.m.operator(
            op,
            [x.index],
            [y.index],
            options(
                "Pool2DOptions",
                padding=padding,
                strideH=strides[0],
                strideW=strides[1],
                filterHeight=kernel[0],
                filterWidth=kernel[1],
                fusedActivationFunction="NONE",
            ),
        )

    # ------------------------------------------------------------------------------------------ moves
    def concat(self, n: INode, *xs: Value) -> list:
        q = self.qnodes.get(n.name)
        if q is not None and any(rs is not None for rs in q.rescale):
            raise BuildError(
                f"TFLite: concat {n.name!r} has inputs at other scales than its output: TFLite's int8 "
                "CONCATENATION wants one; recalibrate with --target tflite"
            )
        rank = len(self.shape(n.outputs[0]))
        axis = int(n.attrs.get("axis", 1)) % rank
        ins = (
            xs
            if all(v.nhwc == xs[0].nhwc for v in xs)
            else [self.as_nchw(v, f"{n.name}/{k}") for k, v in enumerate(xs)]
        )
        nhwc = ins[0].nhwc
        y = (
            self.out(n)
            if nhwc or rank != 4
            else self.act(n.outputs[0], self.shape(n.outputs[0]), q.qout[0] if q else None, False)
        )
        if nhwc and rank == 4:
            axis = NHWC.index(axis)
        self.m.operator(
            "CONCATENATION",
            [v.index for v in ins],
            [y.index],
            options("ConcatenationOptions", axis=axis, fusedActivationFunction="NONE"),
        )
        return [y]

    def reshape_value(self, x: Value, shape: list[int], name: str, q) -> Value:
        y = self.act(
            name, [1 if d == -1 else d for d in shape] if -1 not in shape else self._resolve(x, shape), x.q, False
        )
        s = self.const(f"{name}/shape", np.array([-1, *shape[1:]], np.int32), "int32")
        self.m.operator("RESHAPE", [x.index, s], [y.index], options("ReshapeOptions", newShape=[-1, *shape[1:]]))
        return y

    def _resolve(self, x: Value, shape: list[int]) -> list[int]:
        total = int(np.prod(self.m.shape(x.index)))
        known = int(np.prod([d for d in shape if d != -1]))
        return [total // known if d == -1 else d for d in shape]

    def reshape(self, n: INode, x: Value) -> list:
        target = self.shape(n.outputs[0])
        src = self.m.shape(x.index)
        # a flatten of [N, H, W, C] with H = W = 1 (after global pooling) is the same element order in both layouts
        if x.nhwc and len(target) == 2 and src[1] == src[2] == 1:
            y = self.reshape_value(x, target, n.outputs[0], x.q)
            return [y]
        y = self.reshape_value(
            self.as_nchw(x, f"{n.name}/nchw"), target, f"{n.outputs[0]}/nchw" if len(target) == 4 else n.outputs[0], x.q
        )
        return [self.as_nhwc_named(y, n.outputs[0]) if len(target) == 4 else y]

    def as_nhwc_named(self, v: Value, name: str) -> Value:
        return self.transpose_to(v, NHWC, name, True)

    def transpose(self, n: INode, x: Value) -> list:
        perm = [int(p) for p in n.attrs.get("perm", [])]
        x = self.as_nchw(x, f"{n.name}/nchw")
        target = self.shape(n.outputs[0])
        name = f"{n.outputs[0]}/nchw" if len(target) == 4 else n.outputs[0]
        y = self.transpose_to(x, perm, name, False)
        return [self.as_nhwc_named(y, n.outputs[0]) if len(target) == 4 else y]

    def slice(self, n: INode, x: Value) -> list:
        """STRIDED_SLICE over every axis of the tensor's own layout (a range that runs to the first element: its
        end in end_mask)."""
        qn = self.qnodes.get(n.name)
        ranges = (
            qn.attrs["ranges"]
            if qn is not None
            else slice_ranges(self.onnx_nodes[n.name], self.graph.shapes[n.inputs[0]], self.inits)
        )
        shape = self.m.shape(x.index)
        begin, end, strides, end_mask = [0] * len(shape), list(shape), [1] * len(shape), 0
        for axis, start, stop, step in ranges:
            at = NHWC.index(axis) if x.nhwc else axis
            begin[at], end[at], strides[at] = start, stop, step
            if stop < 0:
                end_mask |= 1 << at
        y = self.out(n) if x.nhwc or len(shape) != 4 else self.act(n.outputs[0], self.shape(n.outputs[0]), x.q, False)
        self.m.operator(
            "STRIDED_SLICE",
            [
                x.index,
                *(
                    self.const(f"{n.name}/{k}", np.array(v, np.int32), "int32")
                    for k, v in (("begin", begin), ("end", end), ("strides", strides))
                ),
            ],
            [y.index],
            options("StridedSliceOptions", endMask=end_mask),
        )
        return [y]

    def split(self, n: INode, x: Value) -> list:
        rank = len(self.m.shape(x.index))
        axis = int(n.attrs.get("axis", 0)) % rank
        if x.nhwc:
            axis = NHWC.index(axis)
        sizes = [int(self.shape(o)[int(n.attrs.get("axis", 0)) % rank]) for o in n.outputs]
        ys = [
            self.out(n, k) if x.nhwc or rank != 4 else self.act(o, self.shape(o), x.q, False)
            for k, o in enumerate(n.outputs)
        ]
        self.m.operator(
            "SPLIT_V",
            [
                x.index,
                self.const(f"{n.name}/sizes", np.array(sizes, np.int32), "int32"),
                self.const(f"{n.name}/axis", np.array(axis, np.int32), "int32"),
            ],
            [y.index for y in ys],
            options("SplitVOptions", numSplits=len(sizes)),
        )
        return ys
