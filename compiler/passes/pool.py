"""Average pooling before a pointwise conv: AveragePool(Conv_1x1(x)) -> Conv_1x1(AveragePool(x)).

A 1 x 1 stride-1 unpadded conv acts on each pixel alone and an unpadded average pool on each channel alone, so the
two commute exactly in real arithmetic (the bias too: the average of a constant is the constant). Pooling first
runs the conv on the pooled pixels only: DDSNet's and DenseNet's transitions (BN -> ReLU -> 1 x 1 conv -> 2 x 2 / 2
average pool) take a quarter of their MACs, DDSNet's conv MACs 284.6 M -> 222.2 M (docs/notes/pool-before-conv.md).

In an INT8 graph the pooled tensor is never rounded to 8 bits: the integer op table's `pooled_conv` takes the
conv on the exact window sums of its input's codes (tcc.intops)."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from ..intops import pool_commutes_with_conv
from .base import Rule, const, fresh_name, only_feeds, producer, rewrite_pass


def _match(pool: gs.Node, graph: gs.Graph) -> dict | None:
    conv = producer(pool.inputs[0])
    if conv is None or conv.op != "Conv" or not only_feeds(pool.inputs[0], pool, graph):
        return None
    w = const(conv.inputs[1]) if len(conv.inputs) > 1 else None
    if w is None or not pool_commutes_with_conv(pool.attrs, conv.attrs, w.shape):
        return None
    return {"pool": pool, "conv": conv}


def _swap(graph: gs.Graph, m: dict) -> None:
    pool, conv = m["pool"], m["conv"]
    x, out, conv_out = conv.inputs[0], pool.outputs[0], conv.outputs[0]
    pooled = gs.Variable(fresh_name(graph, f"{conv.name or conv_out.name}/pooled_input"), dtype=x.dtype)
    pool.inputs[0], pool.outputs[0] = x, pooled
    conv.inputs[0], conv.outputs[0] = pooled, out
    conv_out.inputs.clear()  # the full-size conv output is gone


def _match_pooled(pool: gs.Node, graph: gs.Graph) -> dict | None:
    """An average pool read by a 1 x 1 conv alone, where the two commute (what pool_before_conv made)."""
    out = pool.outputs[0]
    if len(out.outputs) != 1 or out in graph.outputs:
        return None
    conv = out.outputs[0]
    w = const(conv.inputs[1]) if conv.op == "Conv" and len(conv.inputs) > 1 else None
    if w is None or conv.inputs[0] is not out or not pool_commutes_with_conv(pool.attrs, conv.attrs, w.shape):
        return None
    return {"pool": pool, "conv": conv}


def _swap_back(graph: gs.Graph, m: dict) -> None:
    pool, conv = m["pool"], m["conv"]
    x, pooled, out = pool.inputs[0], pool.outputs[0], conv.outputs[0]
    full = gs.Variable(fresh_name(graph, conv.name or f"{out.name}/conv"), dtype=x.dtype)
    conv.inputs[0], conv.outputs[0] = x, full
    pool.inputs[0], pool.outputs[0] = full, out
    pooled.inputs.clear()


pool_before_conv = rewrite_pass(
    "pool_before_conv",
    "an unpadded AveragePool that alone reads a 1x1 stride-1 Conv runs before it (they commute): the conv on the "
    "pooled pixels",
    [Rule("conv_pool", "AveragePool", _match, _swap)],
)

# the inverse, for INT8 graphs of targets whose integer convs read 8-bit codes only (TargetRules.pooled_conv):
# the conv's output requantized at full size, then pooled (tcc.quant.intgraph.match.quantized_form)
conv_before_pool = rewrite_pass(
    "conv_before_pool",
    "a 1x1 stride-1 Conv that alone reads an unpadded AveragePool runs before it again (pool_before_conv undone)",
    [Rule("pool_conv", "AveragePool", _match_pooled, _swap_back)],
)
