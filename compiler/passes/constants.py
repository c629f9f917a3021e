"""Constant folding: every node whose inputs are all constants is computed once (ONNX Runtime, through
onnx-graphsurgeon) and replaced by its value."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from .base import Stats, graph_pass


def _fold(graph: gs.Graph) -> Stats:
    before = len(graph.nodes)
    graph.fold_constants(fold_shapes=True, error_ok=True).cleanup()  # a node ORT cannot fold stays as it is
    return {"folded_nodes": before - len(graph.nodes)}


fold_constants = graph_pass("fold_constants", "nodes computed from constants only become constants", _fold)
