"""The imported structure written as spec nodes (plain dicts in the spec language) and the name of every imported
node in the spec, which keys its tensors in the state_dict.

A block's body is written once from all its instances side by side: an argument equal in all of them is written as
it is, one equal to the node's input channels as `${in_ch}`, and any other becomes a parameter of the block (one per
distinct list of values) that each call sets. Ids come from the module paths; where the instances disagree, from the
part of their ids they share (`denselayer1_norm1`, `denselayer2_norm1` -> norm1), else from the op.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..ir import INPUT
from .blocks import argument_order, defaults, frozen, signature
from .params import NotShared, Params, SharedParams, thawed
from .reader import ImportedNode, identifier
from .structure import Branches, Dense, Flat, Group, Item, Leaf, Residual, value_node

BLOCK_INPUT = "x"  # a local block's one input


@dataclass
class Context:
    """Where a body is written: the name of its entry value, the current block's parameters, the spec name of each
    imported node per instance (filled as nodes are written), the name prefix of the body, ids it must not take."""

    entry: str
    params: Params | SharedParams
    names: list[dict]
    scope: str = ""
    reserved: frozenset = frozenset()

    def inside(self, node_id: str) -> Context:
        """The context of the body of node `node_id`: its names under the node's."""
        return replace(self, scope=f"{self.scope}{node_id}.")


@dataclass
class WrittenBlock:
    name: str
    params: dict[str, dict]  # name -> its declaration ({type} and, for the input's channels, a default)
    body: list[dict]
    uses: list[str] = field(default_factory=list)  # where it is called (module paths), for its comment
    values: dict[int, dict] = field(default_factory=dict)  # id(instance) -> its parameters' values
    names: dict[int, dict] = field(default_factory=dict)  # id(instance) -> {node id: name inside the block}
    residual_call: bool = False  # its calls carry `residual: true` (a residual's main path is the body)


def _unique(name: str, taken: set) -> str:
    base, k = name, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}" if not base.isdigit() else f"n{base}_{k}"
    taken.add(name)
    return name


def _agree(names: list[str], fallback: str) -> str:
    """One id for the instances' ids: theirs if equal, else the `_`-separated tail they share, else `fallback`."""
    if len(set(names)) == 1:
        return names[0]
    parts = [n.split("_") for n in names]
    tail: list[str] = []
    while all(len(p) > len(tail) for p in parts) and len({p[-1 - len(tail)] for p in parts}) == 1:
        tail.insert(0, parts[0][-1 - len(tail)])
    name = "_".join(tail).strip("_")
    return identifier((name,)) if name else fallback


def _relative(node: ImportedNode, prefix: tuple) -> tuple:
    return node.path[len(prefix) :] if node.path[: len(prefix)] == prefix else node.path


def _node_id(node: ImportedNode, prefix: tuple) -> str:
    return identifier(_relative(node, prefix), node.node.op)


def _item_id(item: Item, prefix: tuple) -> str:
    if item.name:
        return identifier((item.name,))
    if isinstance(item, Leaf):
        return _node_id(item.node, prefix)
    if isinstance(item, Residual):
        return identifier(_relative(item.add, prefix), "residual")
    if isinstance(item, Branches):
        return identifier(_relative(item.merge, prefix), "branches")
    if isinstance(item, Flat):
        return _node_id(item.nodes[-1], prefix)
    return "group"


def _owner(scope: str, node_id: str) -> str:
    """What a parameter is named after: the node's id, with the body it is in where the id is a number."""
    parent = scope.rstrip(".").rpartition(".")[2]
    return f"{parent}_{node_id}" if node_id.isdigit() and parent else node_id


def _kind(item: Item) -> str:
    return item.node.node.op if isinstance(item, Leaf) else type(item).__name__.lower()


class SpecWriter:
    """Writes items as spec nodes; `blocks` ({signature: instances}) says which pieces are calls of local blocks."""

    def __init__(self, shapes: dict[str, tuple], blocks: dict[tuple, list[Item]], memo: dict):
        self.shapes = shapes
        self.classes = blocks
        self.memo = memo
        self.blocks: dict[tuple, WrittenBlock] = {}  # in the order written (a block before those that call it)
        self.block_names = {"conv_bn_act"}

    def model(self, items: list[Item], prefix: tuple) -> tuple[list[dict], dict[str, str]]:
        """The model's layers and {imported node id: its spec name}."""
        ctx = Context(INPUT, Params(1), [{}], reserved=frozenset({INPUT}))
        return self.body([items], [prefix], ctx), ctx.names[0]

    def in_ch(self, items: list[Item]) -> tuple:
        return tuple(self.shapes.get(it.entry, (0,))[0] for it in items)

    # ------------------------------------------------------------------------------------------------ bodies
    def body(self, instances: list[list[Item]], prefixes: list[tuple], ctx: Context, taken: set | None = None):
        """The items at each position of the instances' bodies, written once."""
        taken = set(ctx.reserved) if taken is None else taken
        out: list[dict] = []
        for k in range(len(instances[0])):
            items = [inst[k] for inst in instances]
            out += self.item(items, prefixes, replace(ctx, entry=out[-1]["id"] if out else ctx.entry), taken)
        return out

    def item(
        self, items: list[Item], prefixes: list[tuple], ctx: Context, taken: set, node_id: str | None = None
    ) -> list[dict]:
        first = items[0]
        if signature(first, self.memo) in self.classes:
            return [self.call(items, prefixes, ctx, taken, node_id)]
        if isinstance(first, Flat) and not first.name:
            return self.flat(items, prefixes, ctx, taken)
        node_id = node_id or _unique(_agree([_item_id(it, p) for it, p in zip(items, prefixes)], _kind(first)), taken)
        if isinstance(first, Leaf):
            return [self.leaf([it.node for it in items], node_id, ctx)]
        if isinstance(first, Flat):  # a whole module (a squeeze-excite gate): its own group
            return [{"id": node_id, "body": self.flat(items, [it.path for it in items], ctx.inside(node_id))}]
        if isinstance(first, Group):
            return [
                {
                    "id": node_id,
                    "body": self.body([it.items for it in items], [it.prefix for it in items], ctx.inside(node_id)),
                }
            ]
        if isinstance(first, Residual):
            return [self.residual(items, node_id, ctx)]
        if isinstance(first, Dense):
            return self.dense(items, prefixes, node_id, ctx, taken)
        return [self.branches(items, node_id, ctx)]

    def one_node(self, item: Item) -> bool:
        """Whether the item is written as one node without a body of its own (an op, a call)."""
        sig = signature(item, self.memo)
        if sig in self.classes:
            return not self.block(sig).residual_call
        return isinstance(item, Leaf)

    # ------------------------------------------------------------------------------------------------ nodes
    def args(self, nodes: list[ImportedNode], params: Params | SharedParams, owner: str) -> dict:
        fill = defaults(nodes[0].node)
        order = argument_order(nodes[0].node)
        keys = sorted({k for n in nodes for k in n.node.args}, key=lambda k: order.index(k) if k in order else 99)
        in_ch = tuple(self.shapes.get(n.inputs[0], (0,))[0] for n in nodes)
        out = {}
        for key in keys:
            values = tuple(frozen(n.node.args.get(key, fill.get(key))) for n in nodes)
            value = params.value(key, values, in_ch, owner)
            if key not in fill or value != thawed(frozen(fill[key])):
                out[key] = value
        return out

    def leaf(self, nodes: list[ImportedNode], node_id: str, ctx: Context) -> dict:
        spec = nodes[0].node
        args = self.args(nodes, ctx.params, _owner(ctx.scope, node_id))
        out = {"id": node_id, ("block" if spec.block else "op"): spec.op, **args}
        for names, n in zip(ctx.names, nodes):
            names[n.id] = ctx.scope + node_id
        return out

    def flat(self, items: list[Item], prefixes: list[tuple], ctx: Context, taken: set | None = None) -> list[dict]:
        """The nodes as written, with `in:` where a node reads other than the value before it."""
        taken = set(ctx.reserved) if taken is None else taken
        first = items[0]
        if first.nodes[0].inputs != [first.entry] or any(first.entry in n.inputs for n in first.nodes[1:]):
            taken.add(ctx.entry)  # named below: no node of this body before that may take its name
        refs = {first.entry: ctx.entry}  # value -> its name here (the same for every instance)
        previous = first.entry
        out = []
        for k in range(len(first.nodes)):
            nodes = [it.nodes[k] for it in items]
            n = nodes[0]
            node_id = _unique(_agree([_node_id(m, p) for m, p in zip(nodes, prefixes)], n.node.op), taken)
            written = self.leaf(nodes, node_id, ctx)
            if n.inputs != [previous]:
                ins = [refs[v] if v in refs else f"{refs[value_node(v)]}.{v.split('.')[1]}" for v in n.inputs]
                written["in"] = ins[0] if len(ins) == 1 else ins
            refs[n.id], previous = node_id, n.id
            out.append(written)
        return out

    def residual(self, items: list[Item], node_id: str, ctx: Context) -> dict:
        first = items[0]
        inner = ctx.inside(node_id)
        if first.shortcut is None and len(first.main) == 1 and self.one_node(first.main[0]):
            mains = [it.main[0] for it in items]  # x + f(x), f one node: `residual` on that node
            return {**self.item(mains, [it.main_prefix for it in items], ctx, set(), node_id)[0], "residual": True}
        # the main path and the shortcut share the residual's names; "residual" is its add's (`ID.residual`)
        taken = set(inner.reserved) | {"residual"}
        main = self.body([it.main for it in items], [it.main_prefix for it in items], inner, taken)
        if first.shortcut is None:
            return {"id": node_id, "residual": True, "body": main}
        shortcut = self.body([it.shortcut for it in items], [it.shortcut_prefix for it in items], inner, taken)
        return {"id": node_id, "body": main, "residual": shortcut}

    def branches(self, items: list[Item], node_id: str, ctx: Context) -> dict:
        first = items[0]
        merge = {"merge": "add"} if first.merge.node.op == "add" else {}
        copies = self.copies(items, node_id, ctx)
        if copies is not None:
            body = copies.pop("body", None)  # `merge` beside `connect`, before the body
            return {**copies, **merge, **({"body": body} if body is not None else {})}
        inner = ctx.inside(node_id)
        taken = set(inner.reserved) | {ctx.entry}  # the branches share one scope: none may hide their input
        written = []
        for k, branch in enumerate(first.branches):
            lists = [it.branches[k] for it in items]
            prefixes = [it.prefixes[k] for it in items]
            alone = len(branch) == 1 and not (isinstance(branch[0], Flat) and not branch[0].name)
            if alone:
                written += self.item([b[0] for b in lists], prefixes, inner, taken)
                continue
            own = [identifier(p[len(it.path) :], f"branch{k}") for p, it in zip(prefixes, items)]
            name = _unique(_agree(own, f"branch{k}"), taken)
            written.append({"id": name, "body": self.body(lists, prefixes, inner.inside(name))})
        return {"id": node_id, "branches": written, **merge}

    def copies(self, items: list[Item], node_id: str, ctx: Context) -> dict | None:
        """Branches that are copies of one body as `repeat: n, connect: parallel`; None where they differ."""
        return self.repeated([it.branches for it in items], [it.prefixes for it in items], node_id, "parallel", ctx)

    def dense(self, items: list[Item], prefixes: list[tuple], node_id: str, ctx: Context, taken: set) -> list[dict]:
        """`repeat: n, connect: dense` where the layers are copies of one body, else the layers as written."""
        written = self.repeated([it.layers for it in items], [it.prefixes for it in items], node_id, "dense", ctx)
        if written is not None:
            return [written]
        taken.discard(node_id)
        return self.body([it.flats for it in items], prefixes, ctx, taken)

    def repeated(
        self, copies: list[list[list[Item]]], prefixes: list[list[tuple]], node_id: str, connect: str, ctx: Context
    ) -> dict | None:
        """The n copies of one body in each instance written once, as `repeat: n` with `connect`, copy k named
        `id.k`; None where the copies differ (in their nodes or in an argument)."""
        n = len(copies[0])
        lists = [c for inst in copies for c in inst]  # instance-major: copy k of instance j at j * n + k
        flat_prefixes = [p for inst in prefixes for p in inst]
        if n < 2 or len({tuple(signature(i, self.memo) for i in c) for c in lists}) != 1:
            return None

        def write(params):
            copy = Context(ctx.entry, params, [{} for _ in lists], reserved=ctx.reserved)
            return self.body(lists, flat_prefixes, copy), copy.names

        try:
            write(SharedParams(Params(len(copies)), n))  # a trial: the arguments may differ between copies
        except NotShared:
            return None
        body, names = write(SharedParams(ctx.params, n))
        single = len(body) == 1 and not any(k in body[0] for k in ("body", "branches", "residual", "in", "repeat"))
        for j, k in ((j, k) for j in range(len(copies)) for k in range(n)):
            for key, rel in names[j * n + k].items():
                rel = rel.partition(".")[2] if single else rel  # a single node is the copy itself
                ctx.names[j][key] = f"{ctx.scope}{node_id}.{k}" + (f".{rel}" if rel else "")
        out = {"id": node_id, "repeat": n, "connect": connect}
        if single:
            return {**out, **{key: v for key, v in body[0].items() if key != "id"}}
        return {**out, "body": body}

    # ------------------------------------------------------------------------------------------------ blocks
    def call(
        self, items: list[Item], prefixes: list[tuple], ctx: Context, taken: set, node_id: str | None = None
    ) -> dict:
        block = self.block(signature(items[0], self.memo))
        node_id = node_id or _unique(_agree([_item_id(it, p) for it, p in zip(items, prefixes)], block.name), taken)
        out = {"id": node_id, "block": block.name}
        in_ch = self.in_ch(items)
        for param, decl in block.params.items():
            if "default" not in decl:  # the one default is the input's channels: every call's value
                values = tuple(frozen(block.values[id(it)][param]) for it in items)
                out[param] = ctx.params.value(param, values, in_ch, _owner(ctx.scope, node_id))
        if block.residual_call:
            out["residual"] = True
        for names, it in zip(ctx.names, items):
            names.update({key: f"{ctx.scope}{node_id}.{name}" for key, name in block.names[id(it)].items()})
        return out

    def block(self, sig: tuple) -> WrittenBlock:
        """The block of these instances, written on first use."""
        if sig in self.blocks:
            return self.blocks[sig]
        instances = self.classes[sig]
        first = instances[0]
        params = Params(len(instances))
        ctx = Context(BLOCK_INPUT, params, [{} for _ in instances], reserved=frozenset({BLOCK_INPUT}))
        residual_call = False
        if isinstance(first, Group):
            body = self.body([it.items for it in instances], [it.prefix for it in instances], ctx)
        elif isinstance(first, Residual) and first.shortcut is None:  # called with `residual: true`: its add is
            # `ID.residual`, a name no node of the body may take
            inner = replace(ctx, reserved=ctx.reserved | {"residual"})
            body = self.body([it.main for it in instances], [it.main_prefix for it in instances], inner)
            residual_call = True
        elif isinstance(first, Residual):
            body = [self.residual(instances, "residual", ctx)]
        elif isinstance(first, Branches):
            body = [self.branches(instances, "branches", ctx)]
        elif isinstance(first, Dense):
            body = self.dense(instances, [it.path for it in instances], "dense", ctx, set(ctx.reserved))
        else:
            body = self.flat(instances, [it.path for it in instances], ctx)
        body = params.finish(body)
        in_ch = self.in_ch(instances)
        decls = {}
        for name, kind in params.decls().items():
            values = tuple(params.of_instance(j)[name] for j in range(len(instances)))
            decls[name] = {"type": kind, "default": "${in_ch}"} if values == in_ch else {"type": kind}
        name = identifier(first.path, "block")
        name = _unique(name if name.isidentifier() else f"block_{name}", self.block_names)  # a name, never a number
        block = WrittenBlock(name, decls, body, [".".join(it.path) for it in instances], residual_call=residual_call)
        for j, it in enumerate(instances):
            block.values[id(it)] = params.of_instance(j)
            block.names[id(it)] = ctx.names[j]
        self.blocks[sig] = block
        return block
