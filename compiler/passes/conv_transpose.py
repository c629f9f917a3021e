"""A transposed convolution as a convolution and a pixel shuffle, for INT8 graphs (tcc.quant.intgraph.match's
quantized_form): every integer backend then computes it with its integer conv, per output channel, exactly.

With stride s, the full output's position u = s q + p (phase p < s) sums x[q - t] w[s t + p] over the taps t with
s t + p < k: for each phase a correlation of x with the kernel's taps of that phase, flipped. One Conv computes all
s_h s_w phases as channels (channel o s_h s_w + p_h s_w + p_w; ceil(k / s) taps each, a phase with fewer taps padded
with zero weights), then Reshape [N, C, s_h, s_w, Q_h, Q_w] -> Transpose -> Reshape [N, C, Q_h s_h, Q_w s_w]
interleaves them, and a Slice cuts the pads and keeps output_padding's rows (which only the bias reaches). The same
sums as ConvTranspose in real arithmetic; MACs grow where k is not a multiple of s (zero taps: 16 / 9 for MONAI's
3 x 3 / 2), by nothing for U-Net's 2 x 2 / 2. Grouped (depthwise) convs too; a dilated one is left as it is.

    conv_transpose_as_conv(model)   # what quantized_form applies under rules with TargetRules.transposed_conv_as_conv
"""

from __future__ import annotations

import math

import numpy as np
import onnx_graphsurgeon as gs

from .base import Rule, const, fresh_name, rewrite_pass


def _match(node: gs.Node, graph: gs.Graph) -> dict | None:
    w = const(node.inputs[1]) if len(node.inputs) > 1 else None
    x_shape = node.inputs[0].shape
    if (
        w is None
        or w.ndim != 4
        or x_shape is None
        or len(x_shape) != 4
        or not all(isinstance(d, int) for d in x_shape[2:])
    ):
        return None
    if any(d != 1 for d in node.attrs.get("dilations", [1, 1])) or "output_shape" in node.attrs:
        return None
    if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
        return None
    bias = const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    if len(node.inputs) > 2 and node.inputs[2] is not None and bias is None:
        return None
    return {"node": node, "weight": w, "bias": bias, "hw": tuple(x_shape[2:])}


def phase_weights(w: np.ndarray, strides: tuple[int, int], groups: int) -> np.ndarray:
    """ConvTranspose's [C_in, C_out / g, k_h, k_w] as the phases' Conv weight [C_out s_h s_w, C_in / g, T_h, T_w]
    (T = ceil(k / s) taps, flipped: tap j of phase p is kernel index s (T - 1 - j) + p; zero past the kernel)."""
    c_in, per_group, kh, kw = w.shape
    (sh, sw), in_group = strides, c_in // groups
    th, tw = math.ceil(kh / sh), math.ceil(kw / sw)
    out = np.zeros((per_group * groups, sh, sw, in_group, th, tw), w.dtype)
    for o in range(per_group * groups):
        g, local = divmod(o, per_group)
        for ph in range(sh):
            for pw in range(sw):
                for jh in range(th):
                    for jw in range(tw):
                        ih, iw = sh * (th - 1 - jh) + ph, sw * (tw - 1 - jw) + pw
                        if ih < kh and iw < kw:
                            out[o, ph, pw, :, jh, jw] = w[g * in_group : (g + 1) * in_group, local, ih, iw]
    return out.reshape(per_group * groups * sh * sw, in_group, th, tw)


def _rewrite(graph: gs.Graph, m: dict) -> None:
    node, w, bias, (h, wd) = m["node"], m["weight"], m["bias"], m["hw"]
    a = node.attrs
    (sh, sw), groups = tuple(a.get("strides", [1, 1])), int(a.get("group", 1))
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    oph, opw = a.get("output_padding", [0, 0])
    c_out = w.shape[1] * groups
    kh, kw = w.shape[2:]
    th, tw = math.ceil(kh / sh), math.ceil(kw / sw)
    qh, qw = h - 1 + math.ceil((kh + oph) / sh), wd - 1 + math.ceil((kw + opw) / sw)  # phase rows covering the output
    name, x, y = node.name or node.outputs[0].name, node.inputs[0], node.outputs[0]
    weight = gs.Constant(fresh_name(graph, f"{name}/phase_weight"), phase_weights(w, (sh, sw), groups))
    inputs = [x, weight]
    if bias is not None:
        inputs.append(gs.Constant(fresh_name(graph, f"{name}/phase_bias"), np.repeat(bias, sh * sw).astype(bias.dtype)))
    out_h, out_w = (h - 1) * sh - pt - pb + kh + oph, (wd - 1) * sw - pl - pr + kw + opw
    cut = (pt, pl, out_h, out_w) != (0, 0, qh * sh, qw * sw)
    strided = (sh, sw) != (1, 1)
    phases = gs.Variable(fresh_name(graph, f"{name}/phases"), dtype=y.dtype) if strided or cut else y
    pads = [th - 1, tw - 1, qh - h, qw - wd]
    conv = gs.Node("Conv", name, {"kernel_shape": [th, tw], "pads": pads, "group": groups}, inputs, [phases])
    node.outputs.clear()
    node.inputs.clear()
    graph.nodes.append(conv)
    value = _shuffle(graph, name, phases, (c_out, sh, sw, qh, qw), None if cut else y) if strided else phases
    if cut:
        starts, ends = [pt, pl], [pt + out_h, pl + out_w]
        args = [_ints(graph, f"{name}/{k}", v) for k, v in (("starts", starts), ("ends", ends), ("axes", [2, 3]))]
        graph.nodes.append(gs.Node("Slice", f"{name}/crop", {}, [value, *args], [y]))


def _shuffle(graph: gs.Graph, name: str, phases: gs.Variable, dims: tuple, out: gs.Variable | None) -> gs.Variable:
    """[N, C s_h s_w, Q_h, Q_w] -> [N, C, Q_h s_h, Q_w s_w], phase (p_h, p_w) of position (q_h, q_w) at (q_h s_h +
    p_h, q_w s_w + p_w): Reshape, Transpose, Reshape (written into `out` where given)."""
    c, sh, sw, qh, qw = dims
    split = gs.Variable(fresh_name(graph, f"{name}/phases_split"), dtype=phases.dtype)
    moved = gs.Variable(fresh_name(graph, f"{name}/phases_moved"), dtype=phases.dtype)
    result = out if out is not None else gs.Variable(fresh_name(graph, f"{name}/interleaved"), dtype=phases.dtype)
    six = _ints(graph, f"{name}/split_shape", [0, c, sh, sw, qh, qw])
    four = _ints(graph, f"{name}/interleaved_shape", [0, c, qh * sh, qw * sw])
    graph.nodes.append(gs.Node("Reshape", f"{name}/split", {}, [phases, six], [split]))
    graph.nodes.append(gs.Node("Transpose", f"{name}/interleave", {"perm": [0, 1, 4, 2, 5, 3]}, [split], [moved]))
    graph.nodes.append(gs.Node("Reshape", f"{name}/merge", {}, [moved, four], [result]))
    return result


def _ints(graph: gs.Graph, name: str, values: list[int]) -> gs.Constant:
    return gs.Constant(fresh_name(graph, name), np.array(values, np.int64))


conv_transpose_as_conv = rewrite_pass(
    "conv_transpose_as_conv",
    "a ConvTranspose (dilation 1) as one Conv computing its stride's phases as channels, interleaved by Reshape / "
    "Transpose / Reshape and cut by a Slice: integer kernels take it as a conv",
    [Rule("conv_transpose", "ConvTranspose", _match, _rewrite)],
    infer_shapes=True,
)
