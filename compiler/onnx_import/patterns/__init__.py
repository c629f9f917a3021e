"""ONNX-level patterns: what exporters write as several ONNX nodes for one spec op, found before conversion and
replaced by one node (an ONNX op, or a pseudo-op of tcc.onnx_import.ops such as ChannelShuffle).

Each pass takes the graph's nodes (topological order), its constants and its values' shapes and returns the nodes
with the pattern replaced; a pattern matches only where its inner values feed nothing else, so the rest of the graph
is unchanged. The passes, by concern: norms (normalizations and reductions), layout (channel shuffles, NHWC runs,
unbinds, slices), attention (linears over tokens, scaled scores, window constants) and constants (learned tensors,
constant operands), on graph's shared helpers; PATTERNS is the order they run in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .attention import rows_linears, scaled_products, window_attention_constants
from .constants import constant_operands, learned_tensors
from .layout import batch_axis_unbinds, channel_shuffles, channels_last_runs, single_axis_slices, slices
from .norms import folded_batch_norms, global_reductions, group_norms, l2_normalizations, layer_norms_and_gelus

Pattern = Callable[[list, dict[str, np.ndarray], dict[str, tuple]], list]

# In order: the arithmetic forms first, then the NHWC runs made of them, then the reductions the layer norms did not
# take, last the constant operands no pattern took.
PATTERNS: tuple[Pattern, ...] = (
    single_axis_slices,
    window_attention_constants,
    batch_axis_unbinds,
    folded_batch_norms,
    l2_normalizations,
    group_norms,
    channel_shuffles,
    rows_linears,
    learned_tensors,
    scaled_products,
    slices,
    layer_norms_and_gelus,
    channels_last_runs,
    global_reductions,
    constant_operands,
)

__all__ = [
    "PATTERNS",
    "Pattern",
    "batch_axis_unbinds",
    "channel_shuffles",
    "channels_last_runs",
    "constant_operands",
    "folded_batch_norms",
    "global_reductions",
    "group_norms",
    "l2_normalizations",
    "layer_norms_and_gelus",
    "learned_tensors",
    "rewrite_patterns",
    "rows_linears",
    "scaled_products",
    "single_axis_slices",
    "slices",
    "window_attention_constants",
]


def rewrite_patterns(nodes: list, const: dict[str, np.ndarray], shapes: dict[str, tuple]) -> list:
    """Every ONNX-level pattern replaced, in PATTERNS' order: the arithmetic forms first, then the NHWC runs made of
    them, then the reductions the layer norms did not take, last the constant operands no pattern took."""
    for pattern in PATTERNS:
        nodes = pattern(nodes, const, shapes)
    return nodes
