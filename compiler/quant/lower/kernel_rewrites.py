"""ONNX Runtime's kernel rewrites of a QDQ model (TargetRules.kernel_rewrites; tcc.quant.lower.qdq.to_qdq applies
them): exact graph rewrites, the same fake-quant values, that let ORT pick its fast integer kernels.

    pools_as_convs(...)        # an AveragePool as a depthwise conv of weights 1/area
    stem_space_to_depth(...)   # a stride-2 conv on the 3-channel input as SpaceToDepth + a stride-1 conv

Why each: the kernels they avoid (measured: docs/notes/quantizer-measurements.md).
"""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper, shape_inference

from ..intgraph.layers import find_layers


def pools_as_convs(model, g, rename, points, new_inits, islands=frozenset()) -> list:
    """A quantized AveragePool with a power-of-two window and no padding becomes a depthwise Conv with weights
    1/area (int8 64 at scale 64/area: exact, so fake-quant is unchanged). Why: ORT runs QLinearAveragePool
    (NHWC) about 10x slower than its float pool, while a depthwise QLinearConv takes the MLAS u8s8 depthwise
    kernel. Returns the weight DequantizeLinear nodes."""
    head: list = []
    pools = [
        n
        for n in g.node
        if n.op_type == "AveragePool"
        and n.input[0] in rename.values()
        and n.output[0] in points
        and (n.name or n.output[0]) not in islands
    ]
    if not pools:
        return head
    vi = {v.name: v for v in shape_inference.infer_shapes(model).graph.value_info}
    orig = {v: k for k, v in rename.items()}
    for n in pools:
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        k = list(a.get("kernel_shape", []))
        area = int(np.prod(k)) if k else 0
        t = vi.get(orig[n.input[0]])
        dims = t.type.tensor_type.shape.dim if t is not None else []
        if (
            len(k) != 2
            or area & (area - 1)
            or area > 64
            or any(a.get("pads", [0]))
            or a.get("ceil_mode", 0)
            or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or len(dims) != 4
            or not dims[1].HasField("dim_value")
        ):
            continue
        c = dims[1].dim_value
        w = f"{n.name or n.output[0]}/avg"
        new_inits += [
            numpy_helper.from_array(np.full((c, 1, *k), 64, np.int8), f"{w}/q"),
            numpy_helper.from_array(np.asarray(1.0 / (64 * area), np.float32), f"{w}/scale"),
        ]
        head.append(helper.make_node("DequantizeLinear", [f"{w}/q", f"{w}/scale"], [w], name=f"{w}/dequantize"))
        strides = list(a.get("strides", [1, 1]))
        del n.attribute[:]
        n.op_type = "Conv"
        n.input.append(w)
        n.attribute.extend(
            [
                helper.make_attribute("kernel_shape", k),
                helper.make_attribute("strides", strides),
                helper.make_attribute("group", c),
            ]
        )
    return head


def stem_space_to_depth(model, g, nodes_by_name, rename, new_nodes, islands=frozenset()) -> dict:
    """A stride-2 conv reading the graph input with C % 4 != 0 channels (DDSNet's 7x7 stem on RGB) reads
    SpaceToDepth(input) instead: a stride-1 conv with 4C channels and a ceil((k + p % 2) / 2) kernel, the
    weights rearranged (zeros where the kernel was padded). The same products and sums, so the fake-quant
    semantics are unchanged (up to float summation order). Why: ORT's symmetric u8s8 indirect-conv kernel
    (MlasConvSym, AVX2/AVX512-VNNI) needs input channels % 4 == 0; with 3 channels QLinearConv falls back to
    im2col + GEMM, slower than the rewritten stem and than FP32. The
    SpaceToDepth runs in float before the input QuantizeLinear (Q commutes with it).
    Returns {layer name: function rewriting its int8 weight}."""
    inputs = {i.name: i for i in model.graph.input}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for l in find_layers(model):
        src = inputs.get(l.input)
        node = nodes_by_name.get(l.name)
        if (
            l.op != "Conv"
            or src is None
            or len(consumers.get(l.input, [])) != 1
            or l.input not in rename
            or node is None
            or l.weight not in inits
            or l.name in islands
        ):
            continue
        wshape = list(inits[l.weight].dims)
        dims = src.type.tensor_type.shape.dim
        a = l.attrs
        k = list(a.get("kernel_shape", wshape[2:]))
        pads = list(a.get("pads", [0] * 4))
        if (
            len(wshape) != 4
            or wshape[1] % 4 == 0
            or a.get("group", 1) != 1
            or list(a.get("strides", [1, 1])) != [2, 2]
            or any(d != 1 for d in a.get("dilations", [1, 1]))
            or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or len(dims) != 4
            or not all(d.HasField("dim_value") and d.dim_value % 2 == 0 for d in dims[2:])
        ):
            continue
        size = [d.dim_value for d in dims[2:]]
        e = [p % 2 for p in pads[:2]]  # leading zero taps so that the window starts on an even row / column
        kk = [(k[i] + e[i] + 1) // 2 for i in range(2)]
        begin = [(pads[i] + e[i]) // 2 for i in range(2)]
        o = [(size[i] + pads[i] + pads[i + 2] - k[i]) // 2 + 1 for i in range(2)]
        end = [o[i] - 1 - begin[i] + kk[i] - size[i] // 2 for i in range(2)]
        if min(end) < 0:
            continue
        c = wshape[1]

        def rewrite(wq, c=c, e=e, kk=kk, k=k):
            wp = np.zeros((wq.shape[0], c, 2 * kk[0], 2 * kk[1]), wq.dtype)
            wp[:, :, e[0] : e[0] + k[0], e[1] : e[1] + k[1]] = wq
            # SpaceToDepth channel order: (row offset * 2 + column offset) * C + c
            return np.concatenate([wp[:, :, rh::2, rw::2] for rh in range(2) for rw in range(2)], axis=1)

        out[l.name] = rewrite
        del node.attribute[:]
        node.attribute.extend(
            [
                helper.make_attribute("kernel_shape", kk),
                helper.make_attribute("strides", [1, 1]),
                helper.make_attribute("pads", begin + end),
            ]
        )
        for name, pair in new_nodes:  # the input's QuantizeLinear reads SpaceToDepth(input)
            if name == l.input:
                pair[0].input[0] = f"{name}/s2d"
                pair.insert(
                    0, helper.make_node("SpaceToDepth", [name], [f"{name}/s2d"], name=f"{name}/s2d", blocksize=2)
                )
    return out
