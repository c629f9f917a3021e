"""Fine-tuning: which nodes form the classifier head (re-initialised when a checkpoint's head has another width) and
which nodes `--freeze` keeps as they are.

The head is declared (`head:` in the train options) or found from the graph: walking back from each output (the
main one and any auxiliary head), the last weighted layers (a conv or linear) reached before any other, with the
per-channel layers (a BatchNorm) between them and the output. A frozen node's parameters take no gradient and its
BatchNorm layers keep their running statistics (eval mode in training; precise BN leaves them).
"""

from __future__ import annotations

from ..errors import suggest
from ..ir import INPUT, Graph, Node

BACKBONE = "backbone"  # --freeze backbone: every node with parameters outside the head


def _weighted(node: Node) -> bool:
    """A conv or linear: a trainable tensor mixing inputs ([C_out, C_in, ...]), not a per-channel factor ([C, 1, 1])."""
    return any(p.trainable and len(p.shape) >= 2 and any(d > 1 for d in p.shape[1:]) for p in node.params.values())


def find_head(graph: Graph) -> list[str]:
    """The classifier head's nodes, in graph order: from each output back to the last weighted layers."""
    head, seen = set(), set()
    todo = [r.node for r in [graph.main_output, *graph.aux_outputs.values()]]
    while todo:
        name = todo.pop()
        if name in seen or name == INPUT:
            continue
        seen.add(name)
        node = graph.nodes[name]
        if node.params:
            head.add(name)
            if _weighted(node):
                continue  # the head ends here
        todo += [r.node for r in node.inputs]
    return [n for n in graph.nodes if n in head]


def head_nodes(graph: Graph, declared: list[str] | None, error) -> list[str]:
    """The declared head (each name a node with parameters), or the one found from the graph."""
    if not declared:
        return find_head(graph)
    with_params = [n.name for n in graph.nodes.values() if n.params]
    for name in declared:
        if name not in graph.nodes or not graph.nodes[name].params:
            raise error(f"'{name}' is not a node with parameters{suggest(name, with_params)}")
    return list(declared)


def frozen_nodes(graph: Graph, prefixes: list[str], head: list[str], error) -> list[str]:
    """The nodes with parameters that `--freeze` names: `backbone` (all but the head) or node-name prefixes
    (`stem` freezes stem.conv, stem.bn, ...). A prefix that names nothing, or freezing every node, is an error."""
    with_params = [n.name for n in graph.nodes.values() if n.params]
    frozen: set[str] = set()
    for prefix in prefixes:
        if prefix == BACKBONE:
            chosen = [n for n in with_params if n not in head]
        else:
            chosen = [n for n in with_params if n == prefix or n.startswith(prefix)]
        if not chosen:
            prefixes_known = sorted(
                {".".join(n.split(".")[:i]) for n in with_params for i in range(1, n.count(".") + 2)}
            )
            raise error(
                f"'{prefix}' is not the start of any node with parameters (or {BACKBONE})"
                + suggest(prefix, prefixes_known + [BACKBONE])
            )
        frozen.update(chosen)
    if frozen and frozen >= set(with_params):
        raise error(f"{', '.join(prefixes)} freezes every node with parameters: nothing left to train")
    return [n for n in with_params if n in frozen]


def describe_reinitialised(rows: list[tuple[str, list, str, list]]) -> str:
    """'fc.weight [3, 16] (checkpoint fc.weight [2, 16]), fc.bias [3] (...)' for the log."""
    return ", ".join(f"{name} {spec} (checkpoint {key} {ckpt})" for name, spec, key, ckpt in rows)
