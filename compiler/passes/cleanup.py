"""Identity and dropout removal, dead-node elimination."""

from __future__ import annotations

import onnx_graphsurgeon as gs

from .base import Rule, Stats, bypass, const, graph_pass, rewrite_pass


def _match_dropout(node: gs.Node, graph: gs.Graph) -> dict | None:
    if len(node.outputs) > 1 and node.outputs[1].outputs:  # the mask is used
        return None
    if len(node.inputs) > 2 and node.inputs[2].name:  # opset 12+: training_mode must be a constant false
        mode = const(node.inputs[2])
        if mode is None or bool(mode):
            return None
    return {"node": node}


def _bypass(graph: gs.Graph, m: dict) -> None:
    node = m["node"]
    if not bypass(graph, node):
        node.op = "Identity"  # keeps the graph input -> output edge; never matched as removable again
        node.inputs[:] = node.inputs[:1]
        node.outputs[:] = node.outputs[:1]
        node.attrs = {}


def _match_removable_identity(node: gs.Node, graph: gs.Graph) -> dict | None:
    src, out = node.inputs[0], node.outputs[0]
    if out in graph.outputs and (not src.inputs or src in graph.outputs):
        return None  # input -> Identity -> output: nothing to remove into
    return {"node": node}


remove_identity = rewrite_pass(
    "remove_identity",
    "Identity and inference-mode Dropout nodes are removed; their readers read the input",
    [
        Rule("identity", "Identity", _match_removable_identity, _bypass),
        Rule("dropout", "Dropout", _match_dropout, _bypass),
    ],
)


def _eliminate_dead(graph: gs.Graph) -> Stats:
    before = len(graph.nodes)
    graph.cleanup(remove_unused_node_outputs=False, remove_unused_graph_inputs=False)
    return {"dead_nodes": before - len(graph.nodes)}


eliminate_dead = graph_pass(
    "eliminate_dead", "nodes whose outputs nobody reads (and unused initializers) are removed", _eliminate_dead
)
