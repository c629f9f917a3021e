"""Which repeated pieces of the imported structure are written once, as local blocks.

Two items are instances of one block when they have the same signature: the same kinds of items nested the same way,
the same ops wired the same way, with the same arguments except those that vary between a network's stages (the
VARIABLE ones: channel counts, kernel, stride, padding, the activation). A signature shared by items that would be
written at least twice becomes a block; the rest is written in place.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from ..ops import OPS, REQUIRED
from .fusion import CONV_BN_ACT_DEFAULTS
from .ops import SpecNode
from .structure import Branches, Dense, Flat, Group, Item, Leaf, Residual, value_node

# arguments a block takes as parameters where its instances differ (anything else must be equal)
VARIABLE = ("out", "groups", "kernel", "stride", "padding", "dilation", "act", "sizes")
_MIN_NODES = 2  # a block of one node is no shorter than the node


def frozen(value):
    """A hashable form of an argument value (lists as tuples)."""
    return tuple(frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def defaults(node: SpecNode) -> dict:
    """The arguments the spec fills in when a node leaves them out."""
    if node.block:
        return CONV_BN_ACT_DEFAULTS
    return {a.name: a.default for a in OPS[node.op].args if a.default is not REQUIRED and a.default is not None}


def argument_order(node: SpecNode) -> list[str]:
    """The node's arguments in the order the op table (or the block) declares them."""
    return ["out", *CONV_BN_ACT_DEFAULTS] if node.block else [a.name for a in OPS[node.op].args]


def node_signature(node: SpecNode) -> tuple:
    fill = defaults(node)
    fixed = tuple(sorted((k, frozen(v)) for k, v in node.args.items() if k not in VARIABLE))
    present = tuple(sorted(k for k in node.args if k in VARIABLE and k not in fill))  # `out`, `sizes`: no default
    return node.op, node.block, fixed, present


def _wiring(nodes) -> tuple:
    """Each node's inputs as positions: -1 the entry, k the k-th node, (k, j) its output j."""
    index = {n.id: k for k, n in enumerate(nodes)}

    def where(value):
        k = index.get(value_node(value), -1)
        return (k, value.split(".")[1]) if "." in value and k >= 0 else k

    return tuple(tuple(where(v) for v in n.inputs) for n in nodes)


def signature(item: Item, memo: dict) -> tuple:
    key = id(item)
    if key not in memo:
        sig: tuple[object, ...]
        if isinstance(item, Leaf):
            sig = ("leaf", node_signature(item.node.node))
        elif isinstance(item, Flat):
            sig = ("flat", tuple(node_signature(n.node) for n in item.nodes), _wiring(item.nodes))
        elif isinstance(item, Residual):
            shortcut = tuple(signature(i, memo) for i in item.shortcut) if item.shortcut is not None else None
            sig = ("residual", tuple(signature(i, memo) for i in item.main), shortcut)
        elif isinstance(item, Branches):
            sig = (
                "branches",
                node_signature(item.merge.node),
                tuple(tuple(signature(i, memo) for i in b) for b in item.branches),
            )
        elif isinstance(item, Group):
            sig = ("group", tuple(signature(i, memo) for i in item.items))
        elif isinstance(item, Dense):
            sig = ("dense", tuple(tuple(signature(i, memo) for i in layer) for layer in item.layers))
        else:
            raise TypeError(item)
        memo[key] = sig
    return memo[key]


def _walk(items: list[Item]):
    for it in items:
        yield it
        yield from _walk(it.children())


def _written(items: list[Item], blocks: set, memo: dict) -> Counter:
    """How many times each block would be written: once per use outside blocks, once in each block's body."""
    counts: Counter = Counter()
    done = set()

    def walk(items):
        for it in items:
            sig = signature(it, memo)
            if sig in blocks:
                counts[sig] += 1
                if sig in done:
                    continue
                done.add(sig)
            walk(it.children())

    walk(items)
    return counts


def choose_blocks(items: list[Item], memo: dict) -> dict[tuple, list[Item]]:
    """{signature: its instances, in order} of the pieces to write as blocks: shared by two items or more, two
    nodes or more, and written at least twice once the blocks around them are."""
    instances: dict[tuple, list[Item]] = defaultdict(list)
    for it in _walk(items):
        if not isinstance(it, Leaf) and len(it.leaves()) >= _MIN_NODES:
            instances[signature(it, memo)].append(it)
    chosen = {sig for sig, found in instances.items() if len(found) >= 2}
    while True:  # a block used once in place of its writing is no block: drop it, and count again
        counts = _written(items, chosen, memo)
        dropped = {sig for sig in chosen if counts[sig] < 2}
        if not dropped:
            return {sig: instances[sig] for sig in chosen}
        chosen -= dropped
