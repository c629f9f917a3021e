"""The imported nodes as nested spec structure instead of one flat list.

A region with one entry value is cut at the values every path through it passes (a chain's links); each piece
between two cuts is one item: a single node, a residual (`add(main(x), x)` or `add(main(x), shortcut(x))`), parallel
branches merged by a concat or an add, or, when it is none of these (a squeeze-excite gate, a split), its nodes as
written with `in:`. Consecutive items in one module of the model (the path its ONNX names give, `layer1.0.conv1`)
are then grouped as that module. Every list of items reads only its entry and its own values, which is what makes
each group a candidate block (tcc.onnx_import.blocks).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import cast

from .reader import ImportedNode


def value_node(value: str) -> str:
    """The id of the node making a value: `split.1` -> split (ids never hold a dot)."""
    return value.split(".", 1)[0]


def common_path(paths) -> tuple[str, ...]:
    paths = list(paths)
    first = paths[0] if paths else ()
    k = len(first)
    for p in paths[1:]:
        k = min(k, len(p))
        while k and p[:k] != first[:k]:
            k -= 1
    return first[:k]


@dataclass(eq=False, kw_only=True)
class Item:
    entry: str  # the value it reads
    exit: str  # the value it makes
    name: str | None = None  # its id from the module path (set by group_by_module), else written from its kind

    def leaves(self) -> list[ImportedNode]:
        raise NotImplementedError

    def children(self) -> list[Item]:
        return []

    @property
    def path(self) -> tuple[str, ...]:
        return common_path(n.path for n in self.leaves())


@dataclass(eq=False, kw_only=True)
class Leaf(Item):
    node: ImportedNode

    def leaves(self):
        return [self.node]


@dataclass(eq=False, kw_only=True)
class Flat(Item):
    """Nodes written as they are, with `in:` where a node reads other than the one before it."""

    nodes: list[ImportedNode]

    def leaves(self):
        return list(self.nodes)


@dataclass(eq=False, kw_only=True)
class Residual(Item):
    main: list[Item]
    main_prefix: tuple
    shortcut: list[Item] | None  # None: the entry itself
    shortcut_prefix: tuple
    add: ImportedNode

    def leaves(self):
        return [n for it in self.children() for n in it.leaves()] + [self.add]

    def children(self):
        return self.main + (self.shortcut or [])


@dataclass(eq=False, kw_only=True)
class Branches(Item):
    branches: list[list[Item]]
    prefixes: list[tuple]
    merge: ImportedNode

    def leaves(self):
        return [n for it in self.children() for n in it.leaves()] + [self.merge]

    def children(self):
        return [it for b in self.branches for it in b]


@dataclass(eq=False, kw_only=True)
class Dense(Item):
    """Consecutive `concat(x, f(x))`, each on the one before (DenseNet's dense block): `connect: dense` where the
    layers f are copies of one body, else their Flat items as they are."""

    layers: list[list[Item]]
    prefixes: list[tuple]
    flats: list[Flat]

    def leaves(self):
        return [n for f in self.flats for n in f.nodes]

    def children(self):
        return [it for layer in self.layers for it in layer]


@dataclass(eq=False, kw_only=True)
class Group(Item):
    """Consecutive items of one module."""

    items: list[Item]
    prefix: tuple = field(default=())  # the module path its items' ids are taken relative to

    def leaves(self):
        return [n for it in self.items for n in it.leaves()]

    def children(self):
        return self.items


def decompose(nodes: list[ImportedNode], entry: str, prefix: tuple = ()) -> tuple[list[Item], tuple]:
    """The items of a region (its nodes in topological order read only each other and `entry`), grouped by module
    below `prefix`; returns them and the prefix their ids are relative to."""
    items = _dense_runs([_segment(seg, a) for seg, a in _segments(nodes, entry)])
    return group_by_module(items, prefix)


def _segments(nodes: list[ImportedNode], entry: str):
    """(nodes, entry) of each piece between two cuts: a node's value is a cut when, after it, no earlier value is
    still waiting for a reader (in a topological order that holds exactly for the values all paths pass)."""
    read = Counter(i for n in nodes for i in n.inputs)
    made: dict[str, list[str]] = {}
    for value in read:
        made.setdefault(value_node(value), []).append(value)
    waiting = Counter({entry: read[entry]}) if read[entry] else Counter()
    start, a = 0, entry
    for k, n in enumerate(nodes):
        waiting.subtract(n.inputs)
        waiting += Counter()  # drops the values whose readers have all come
        waiting.update({v: read[v] for v in made.get(n.id, [])})
        if k == len(nodes) - 1 or list(waiting) == [n.id]:
            yield nodes[start : k + 1], a
            start, a = k + 1, n.id


def _segment(seg: list[ImportedNode], entry: str) -> Item:
    last = seg[-1]
    if len(seg) == 1 and last.inputs == [entry]:
        return Leaf(entry=entry, exit=last.id, node=last)
    return _fork_join(seg, entry) or Flat(entry=entry, exit=last.id, nodes=seg)


def _ancestors(value: str, by_id: dict[str, ImportedNode]) -> set[str]:
    seen, todo = set(), [value_node(value)]
    while todo:
        v = todo.pop()
        if v in by_id and v not in seen:
            seen.add(v)
            todo += [value_node(i) for i in by_id[v].inputs]
    return seen


def _fork_join(seg: list[ImportedNode], entry: str) -> Item | None:
    """The piece as a residual or as branches when its last node merges disjoint paths from the entry."""
    merge = seg[-1]
    op = merge.node.op
    if (
        op not in ("add", "concat")
        or len(merge.inputs) < 2
        or len(set(merge.inputs)) < len(merge.inputs)
        or any("." in v for v in merge.inputs)
        or (op == "concat" and merge.node.args.get("axis", 1) != 1)
    ):
        return None
    inner = {n.id: n for n in seg[:-1]}
    reach = [_ancestors(v, inner) if v != entry else set() for v in merge.inputs]
    if sum(map(len, reach)) != len(inner) or set().union(*reach) != set(inner):
        return None  # the paths share nodes, or a node reaches no input of the merge
    path = common_path(n.path for n in seg)
    paths = [decompose([n for n in seg[:-1] if n.id in r], entry, path) if r else None for r in reach]
    if op == "add" and len(paths) == 2:
        # the path with more nodes is the main one (a projection shortcut is the shorter)
        main, shortcut = sorted(paths, key=lambda p: -sum(len(it.leaves()) for it in p[0]) if p else 0)
        assert main is not None  # the longer path has nodes
        return Residual(
            entry=entry,
            exit=merge.id,
            main=main[0],
            main_prefix=main[1],
            shortcut=shortcut[0] if shortcut else None,
            shortcut_prefix=shortcut[1] if shortcut else (),
            add=merge,
        )
    found = [p for p in paths if p is not None]
    if len(found) != len(paths):
        return None  # concat(x, f(x)): written with `in:`
    return Branches(
        entry=entry, exit=merge.id, branches=[p[0] for p in found], prefixes=[p[1] for p in found], merge=merge
    )


def _dense_layer(item: Item) -> list[ImportedNode] | None:
    """The nodes of f where the item is `concat(x, f(x))` with f reading only x and itself."""
    if not isinstance(item, Flat):
        return None
    cat, layer = item.nodes[-1], item.nodes[:-1]
    if (
        cat.node.op != "concat"
        or cat.node.args.get("axis", 1) != 1
        or cat.inputs[:1] != [item.entry]
        or len(cat.inputs) != 2
        or not layer
        or cat.inputs[1] != layer[-1].id
    ):
        return None
    ids = {n.id for n in layer}
    if any(value_node(v) not in ids and v != item.entry for n in layer for v in n.inputs):
        return None
    return layer


def _dense_runs(items: list[Item]) -> list[Item]:
    out: list[Item] = []
    k = 0
    while k < len(items):
        run: list[Flat] = []
        while k + len(run) < len(items) and _dense_layer(items[k + len(run)]) is not None:
            run.append(cast(Flat, items[k + len(run)]))  # (_dense_layer takes Flats only)
        if len(run) < 2:
            out.append(items[k])
            k += 1
            continue
        # (each f has a dense layer: checked above)
        layers = [
            decompose(cast(list[ImportedNode], _dense_layer(f)), f.entry, common_path(n.path for n in f.nodes))
            for f in run
        ]
        out.append(
            Dense(
                entry=run[0].entry,
                exit=run[-1].exit,
                layers=[items for items, _ in layers],
                prefixes=[prefix for _, prefix in layers],
                flats=run,
            )
        )
        k += len(run)
    return out


def group_by_module(items: list[Item], prefix: tuple) -> tuple[list[Item], tuple]:
    """Runs of consecutive items inside one module below `prefix` as a Group each (an item alone in its module
    takes the module's name); where every item is in one module, that level is only a prefix and is skipped."""

    def key(it: Item):
        p = it.path
        return p[len(prefix)] if len(p) > len(prefix) and p[: len(prefix)] == prefix else None

    runs: list[tuple[str | None, list[Item]]] = []
    for it in items:
        k = key(it)
        if runs and k is not None and runs[-1][0] == k:
            runs[-1][1].append(it)
        else:
            runs.append((k, [it]))
    if len(items) > 1 and len(runs) == 1 and runs[0][0] is not None:
        return group_by_module(items, prefix + (runs[0][0],))
    out: list[Item] = []
    for k, run in runs:
        if k is None:
            out += run
        elif len(run) == 1:
            run[0].name = k
            out.append(run[0])
        else:
            inner, inner_prefix = group_by_module(run, prefix + (k,))
            out.append(Group(entry=run[0].entry, exit=run[-1].exit, name=k, items=inner, prefix=inner_prefix))
    return out, prefix
