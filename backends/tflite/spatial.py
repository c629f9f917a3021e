"""The TFLite lowering's spatial kinds: a nearest resize and a pad as GATHERs of rows and columns or a PAD (int8
and float alike: moves of codes), and the float-only kinds of dense prediction, a bilinear resize
(RESIZE_BILINEAR), a transposed convolution (TRANSPOSE_CONV, its full output cut by the pads) and instance
normalization. A mixin of TfliteLowering (backends/tflite/lower.py), which provides the tensors (`act`, `const`,
`out`, `float_weight`, layouts) and the normalizations (`normalized`, `affine`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tcc.errors import BuildError
from tcc.quant.intgraph.match import INode, IntGraph
from tcc.quant.intgraph.node_constants import pad_geometry, resize_sampling
from tcc.quant.intgraph.qtypes import QParams

from .model import Quant, TfliteModel, options
from .values import Value, code_type


class Spatial:
    if TYPE_CHECKING:  # what TfliteLowering (and its Normalizations) provide
        m: TfliteModel
        graph: IntGraph
        qnodes: dict[str, Any]
        onnx_nodes: dict[str, Any]
        inits: dict[str, np.ndarray]

        def act(self, name: str, shape: list[int], q: QParams | None, nhwc: bool) -> Value: ...
        def out(self, n: INode, k: int = 0, shape: list[int] | None = None) -> Value: ...
        def const(self, name: str, value: Any, dtype: str, quant: Quant | None = None) -> int: ...
        def float_weight(self, name: str, w: np.ndarray) -> int: ...
        def as_nhwc(self, v: Value, name: str) -> Value: ...
        def normalized(self, x: Value, ax: int | list[int], eps: float, name: str, y: Value | None = None) -> Value: ...
        def affine(self, y: Value, n: INode, along: list[int], out: Value) -> Value: ...

    def _attrs(self, n: INode, read) -> dict:
        """The quantized node's attributes where it is one, else the same read from its ONNX node (float)."""
        q = self.qnodes.get(n.name)
        if q is not None:
            return q.attrs
        shapes = self.graph.shapes
        return read(self.onnx_nodes[n.name], shapes[n.inputs[0]], shapes[n.outputs[0]], self.inits)

    def gathered(self, x: Value, attrs: dict, y: Value, name: str) -> Value:
        """NHWC x at the rows attrs index_h (GATHER along H), then the columns index_w (along W), into y."""
        s = self.m.shape(x.index)
        rows = self.act(f"{name}/rows", [s[0], len(attrs["index_h"]), s[2], s[3]], x.q, True)
        for src, dst, axis, key in ((x, rows, 1, "index_h"), (rows, y, 2, "index_w")):
            index = self.const(f"{name}/{key}", np.array(attrs[key], np.int32), "int32")
            self.m.operator("GATHER", [src.index, index], [dst.index], options("GatherOptions", axis=axis))
        return y

    def resize_nearest(self, n: INode, x: Value) -> list:
        a = self._attrs(n, resize_sampling)
        return [self.gathered(self.as_nhwc(x, f"{n.name}/nhwc"), a, self.out(n), n.name)]

    def resize_bilinear(self, n: INode, x: Value) -> list:
        """Float: RESIZE_BILINEAR (`resize`). INT8: LiteRT's int8 RESIZE_BILINEAR where it computes the reference's
        integers (an integer upsampling factor, half-pixel or asymmetric: its sums of the four codes times their
        weights, rounded half away from zero; XNNPACK's delegate rounds them half up), else those integers in int32
        builtins: GATHER, MUL, ADD per axis, then the sign, ABS, ADD d_h d_w / 2, FLOOR_DIV and MUL by the sign."""
        q = self.qnodes.get(n.name)
        if q is None:
            return self.resize(n, x)
        a, (_, _, h, w), (_, _, oh, ow) = q.attrs, self.graph.shapes[n.inputs[0]], self.graph.shapes[n.outputs[0]]
        upsampled = oh % h == 0 and ow % w == 0
        native = upsampled and a["coordinates"] in ("half_pixel", "pytorch_half_pixel", "asymmetric")
        if native and x.q is not None and x.q.bits == 8 and q.rescale[0] is None:
            return self.resize(n, x)
        x, y = self.as_nhwc(x, f"{n.name}/nhwc"), self.out(n)
        v = self.int32_tensor(f"{n.name}/int32", self.m.shape(x.index))
        self.m.operator("CAST", [x.index], [v.index])
        for axis, taps, along in ((1, a["rows"], (-1, 1, 1)), (2, a["cols"], (-1, 1))):
            r = np.asarray(taps["r"], np.int32).reshape(along)
            lo, hi = (self.int32_gather(v, taps[k], axis, f"{n.name}/{axis}/{k}") for k in ("i0", "i1"))
            lo = self.int32_binary("MUL", lo, taps["d"] - r, f"{n.name}/{axis}/low")
            hi = self.int32_binary("MUL", hi, r, f"{n.name}/{axis}/high")
            v = self.int32_binary("ADD", lo, hi, f"{n.name}/{axis}/sum")
        dd = a["rows"]["d"] * a["cols"]["d"]
        sign, magnitude = (self.int32_tensor(f"{n.name}/{k}", self.m.shape(v.index)) for k in ("sign", "abs"))
        self.m.operator("SIGN", [v.index], [sign.index])
        self.m.operator("ABS", [v.index], [magnitude.index])
        v = self.int32_binary("ADD", magnitude, np.int32(dd // 2), f"{n.name}/half")
        v = self.int32_binary("FLOOR_DIV", v, np.int32(dd), f"{n.name}/divided")
        v = self.int32_binary("MUL", v, sign, f"{n.name}/signed")
        self.m.operator("CAST", [v.index], [y.index])
        return [y]

    def int32_tensor(self, name: str, shape) -> Value:
        return Value(self.m.tensor(name, [int(d) for d in shape], "int32"), True, None)

    def int32_gather(self, v: Value, indices, axis: int, name: str) -> Value:
        shape = self.m.shape(v.index)
        shape[axis] = len(indices)
        y = self.int32_tensor(name, shape)
        index = self.const(f"{name}/index", np.array(indices, np.int32), "int32")
        self.m.operator("GATHER", [v.index, index], [y.index], options("GatherOptions", axis=axis))
        return y

    def int32_binary(self, op: str, a: Value, b, name: str) -> Value:
        """An int32 MUL / ADD / FLOOR_DIV of a and b (a Value, or constants broadcast against a)."""
        shape = self.m.shape(a.index)
        if isinstance(b, Value):
            index = b.index
        else:
            b = np.asarray(b, np.int32)
            index = self.const(f"{name}/constant", b, "int32")
            shape = list(np.broadcast_shapes(tuple(shape), b.shape))
        y = self.int32_tensor(name, shape)
        opts = {"MUL": options("MulOptions"), "ADD": options("AddOptions")}.get(op)
        self.m.operator(op, [a.index, index], [y.index], opts)
        return y

    def pad(self, n: INode, x: Value) -> list:
        """GATHERs (reflect, edge); PAD where the constant is 0 (int8: the zero point), else PADV2 with it."""
        a = self._attrs(n, lambda node, shape, out, inits: pad_geometry(node, shape, inits))
        x, y = self.as_nhwc(x, f"{n.name}/nhwc"), self.out(n)
        if a["mode"] != "constant":
            return [self.gathered(x, a, y, n.name)]
        t, l, b, r = a["pads"]
        paddings = self.const(f"{n.name}/paddings", np.array([[0, 0], [t, b], [l, r], [0, 0]], np.int32), "int32")
        value = a["code"] if x.q is not None else a["value"]
        if value == (x.q.zp if x.q is not None else 0.0):
            self.m.operator("PAD", [x.index, paddings], [y.index])
            return [y]
        quant = Quant((x.q.scale,), (x.q.zp,)) if x.q is not None else None
        constant = self.const(f"{n.name}/value", np.array(value, code_type(x.q)), code_type(x.q), quant)
        self.m.operator("PADV2", [x.index, paddings, constant], [y.index])
        return [y]

    # ------------------------------------------------------------------------------------------ float only
    def resize(self, n: INode, x: Value) -> list:
        """RESIZE_BILINEAR: its half-pixel centres are ONNX's half_pixel, align_corners its align_corners, neither
        asymmetric; it samples at in / out, so a stated scale that differs has no TFLite form (BuildError). A cubic
        resize (TFLite has none): `cubic`."""
        shapes = self.graph.shapes
        (_, _, h, w), (_, _, oh, ow) = shapes[n.inputs[0]], shapes[n.outputs[0]]
        a = resize_sampling(self.onnx_nodes[n.name], shapes[n.inputs[0]], shapes[n.outputs[0]], self.inits)
        if a["mode"] == "cubic":
            return [self.cubic(self.as_nhwc(x, f"{n.name}/nhwc"), a, self.out(n), n.name)]
        if any(abs(s - o / i) > 1e-6 * s for s, o, i in zip(a["scales"], (oh, ow), (h, w))):
            raise BuildError(
                f"TFLite: resize {n.name!r} states scales {a['scales']}, but RESIZE_BILINEAR samples at in / out "
                f"({h}x{w} -> {oh}x{ow}); resize to a size instead"
            )
        x, y = self.as_nhwc(x, f"{n.name}/nhwc"), self.out(n)
        size = self.const(f"{n.name}/size", np.array(a["out_hw"], np.int32), "int32")
        half = a["coordinates"] in ("half_pixel", "pytorch_half_pixel")
        opts = options("ResizeBilinearOptions", alignCorners=a["coordinates"] == "align_corners", halfPixelCenters=half)
        self.m.operator("RESIZE_BILINEAR", [x.index, size], [y.index], opts)
        return [y]

    def cubic(self, x: Value, a: dict, y: Value, name: str) -> Value:
        """A float cubic resize of NHWC x into y (tcc.ops.spatial.cubic_taps' tables), along H then W: per axis the
        four taps' rows (GATHER), each times its weights (MUL by a constant broadcast along the other axes), summed
        (ADD) in the taps' order."""
        shape = list(self.m.shape(x.index))
        for axis, key in ((1, "rows"), (2, "cols")):
            taps, weights = np.array(a[key]["taps"], np.int32), np.array(a[key]["weights"], np.float32)
            shape[axis] = len(taps)
            broadcast = [len(taps)] + [1] * (3 - axis)  # [out, 1, 1] along H, [out, 1] along W
            parts = []
            for k in range(4):
                tap, part = (self.act(f"{name}/{key}{k}{what}", shape, None, True) for what in ("", "/scaled"))
                index = self.const(f"{name}/{key}{k}/index", taps[:, k], "int32")
                self.m.operator("GATHER", [x.index, index], [tap.index], options("GatherOptions", axis=axis))
                weight = self.float_weight(f"{name}/{key}{k}/weight", weights[:, k].reshape(broadcast))
                self.m.operator("MUL", [tap.index, weight], [part.index], options("MulOptions"))
                parts.append(part)
            total = parts[0]
            for k, part in enumerate(parts[1:], 1):
                if k < 3:
                    summed = self.act(f"{name}/{key}{k}/sum", shape, None, True)
                else:  # the axis's result: the next axis's input, or y
                    summed = y if axis == 2 else self.act(f"{name}/{key}", shape, None, True)
                self.m.operator("ADD", [total.index, part.index], [summed.index], options("AddOptions"))
                total = summed
            x = total
        return y

    def conv_transpose(self, n: INode, x: Value) -> list:
        """TRANSPOSE_CONV (VALID) into its full output, output_padding's rows and columns included, then the window
        of the graph's output cut by the pads (STRIDED_SLICE) where there are any."""
        a = n.attrs
        if n.name in self.qnodes:  # the tflite rules compute it as the conv of its phases (tcc.passes.conv_transpose)
            raise BuildError(
                f"TFLite: transposed conv {n.name!r} is an integer node of a table made under other rules than "
                "TFLite's (the NPUs' keep it one node): calibrate for tflite"
            )
        if int(a.get("group", 1)) != 1 or any(d != 1 for d in a.get("dilations", [1, 1])):
            raise BuildError(
                f"TFLite: transposed conv {n.name!r} is grouped or dilated: TFLite's TRANSPOSE_CONV takes neither"
            )
        assert n.weight is not None  # a ConvTranspose's weight: the table's check
        w = self.inits[n.weight]  # [in, out, kh, kw]
        _, c_out, kh, kw = w.shape
        (sh, sw), (oph, opw) = a.get("strides", [1, 1]), a.get("output_padding", [0, 0])
        t, l, _, _ = a.get("pads", [0, 0, 0, 0])
        x, y = self.as_nhwc(x, f"{n.name}/nhwc"), self.out(n)
        _, h, wd, _ = self.m.shape(x.index)
        full = [1, (h - 1) * sh + kh + oph, (wd - 1) * sw + kw + opw, c_out]
        out_shape = self.m.shape(y.index)
        whole = y if full == out_shape else self.act(f"{n.name}/full", full, None, True)
        weight = self.float_weight(n.weight, np.ascontiguousarray(w.transpose(1, 2, 3, 0)))  # OHWI
        b = self.inits[n.bias] if n.bias else np.zeros(c_out, np.float32)
        bias = self.float_weight(n.bias or f"{n.name}/bias", b.astype(np.float32))
        shape = self.const(f"{n.name}/output_shape", np.array(full, np.int32), "int32")
        opts = options("TransposeConvOptions", padding="VALID", strideH=sh, strideW=sw)
        self.m.operator("TRANSPOSE_CONV", [shape, weight, x.index, bias], [whole.index], opts)
        if whole is y:
            return [y]
        begin = self.const(f"{n.name}/begin", np.array([0, t, l, 0], np.int32), "int32")
        size = self.const(f"{n.name}/size", np.array(out_shape, np.int32), "int32")
        self.m.operator("SLICE", [whole.index, begin, size], [y.index])
        return [y]

    conv_transpose_float = conv_transpose  # grouped or dilated: refused above, as TRANSPOSE_CONV takes neither

    def instancenorm(self, n: INode, x: Value) -> list:
        """`normalized` over the positions (NHWC: H and W; [N, C, L]: L), then the per-channel affine."""
        x = self.as_nhwc(x, f"{n.name}/nhwc")
        rank = len(self.m.shape(x.index))
        axes = [1, 2] if rank == 4 else [2]
        channels = self.m.shape(x.index)[-1 if rank == 4 else 1]
        y = self.normalized(x, axes, float(n.attrs.get("epsilon", 1e-5)), n.name)
        along = [channels] if rank == 4 else [channels, 1]
        return [self.affine(y, n, along, self.out(n))]
