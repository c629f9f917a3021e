"""Block expansion: a checked spec body becomes IR nodes, with names, shapes, parameters and MACs.

The Builder walks a body (a list of nodes forming a chain unless `in:` says otherwise) and dispatches on the
node kind (op, block, body, branches); the modifiers (when, repeat/connect, residual, side, output) wrap any kind.
Every error names the spec position of the node that caused it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import Location, ShapeError, SpecError, suggest
from ..ir import INPUT, Graph, Node, Ref
from ..ops import MAX_CHANNELS, MAX_SPATIAL, OPS, REQUIRED
from .expr import evaluate
from .yamlpos import PosDict, PosList

NODE_KINDS = ("op", "block", "body", "branches")
COMMON_KEYS = ("id", "in", "when", "repeat", "var", "name", "connect", "merge", "residual", "side", "output", "order")
MAX_NODES = 100_000
MAX_PARAMS = 2_000_000_000
MAX_REPEAT = 4096
MAX_BLOCK_DEPTH = 32
MAX_NESTING = 64  # nested bodies (groups, branches' bodies, shortcuts, block bodies) in the expanded model

Value = Ref | tuple  # a tuple of Refs for multi-output nodes


@dataclass
class ParamDecl:
    """A declared parameter of a block or model."""

    name: str
    type: str
    default: object
    lo: float | None
    hi: float | None
    choices: list | None
    where: Location

    def check(self, value, where: Location, owner: str):
        def bad(msg):
            raise SpecError(f"parameter '{self.name}' of {owner}: {msg}", where)

        t = self.type
        number = not isinstance(value, bool) and (
            isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
        )
        if t == "int":
            if not number or value != int(value):
                bad(f"expected an integer, got {value!r}")
            value = int(value)
        elif t == "float":
            if not number or abs(value) > 1e308:  # an int beyond float range is no float either
                bad(f"expected a finite number, got {value!r}")
            value = float(value)
        elif t == "bool":
            if not isinstance(value, bool):
                bad(f"expected true or false, got {value!r}")
        elif t == "str":
            if not isinstance(value, str):
                bad(f"expected a string, got {value!r}")
        elif t == "list" and not isinstance(value, list):
            bad(f"expected a list, got {value!r}")
        if (self.lo is not None or self.hi is not None) and not number:
            bad(f"has a min/max, so it must be a number, got {value!r}")
        if self.lo is not None and value < self.lo:
            bad(f"must be >= {self.lo}, got {value}")
        if self.hi is not None and value > self.hi:
            bad(f"must be <= {self.hi}, got {value}")
        if self.choices is not None and value not in self.choices:
            bad(f"must be one of {self.choices}, got {value!r}")
        return value


def parse_params(decls: PosDict | None, reserved: tuple = ()) -> dict[str, ParamDecl]:
    """`params:` of a block or model: `name: default` shorthand or `name: {type, default, min, max, choices}`."""
    out: dict[str, ParamDecl] = {}
    if decls is None:
        return out
    for name, d in decls.items():
        where = decls.where(name)
        if name in reserved:
            raise SpecError(
                f"parameter name '{name}' is reserved: it is a node key ({', '.join(reserved)})", decls.key_pos[name]
            )
        if not isinstance(name, str) or not name.isidentifier():
            raise SpecError(f"parameter name must be an identifier, got {name!r}", decls.key_pos[name])
        if isinstance(d, PosDict):
            default = d.get("default", REQUIRED)
            t = d.get("type") or _type_of(default, where)
            out[name] = ParamDecl(name, t, default, d.get("min"), d.get("max"), d.get("choices"), where)
        else:
            out[name] = ParamDecl(name, _type_of(d, where), d, None, None, None, where)
    return out


def _type_of(value, where) -> str:
    if value is REQUIRED:
        raise SpecError("a parameter without a default needs a `type`", where)
    if isinstance(value, str) and "${" in value:
        return "any"
    for t, py in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", list)):
        if isinstance(value, py):
            return t
    return "any"


@dataclass
class BlockDef:
    name: str
    params: dict[str, ParamDecl]
    inputs: list[str]
    body: PosList
    outputs: PosList | None
    where: Location


@dataclass
class Scope:
    """Names visible to `in:` refs; nested bodies see their parents, blocks are closed."""

    prefix: str
    parent: Scope | None = None
    names: dict[str, Value] = field(default_factory=dict)
    used: dict[str, int] = field(default_factory=dict)
    ids: dict[str, tuple[int, Location]] = field(default_factory=dict)  # id -> (index, where) in this body
    cursor: int = 0  # the index of the body item being built

    def ahead(self, name: str):
        """(where, is_current) when `name` is the id of the current or a later node of this or an enclosing
        body: an `in:` naming it would be a forward reference or a cycle."""
        s: Scope | None = self
        while s is not None:
            if name in s.ids and s.ids[name][0] >= s.cursor:
                return s.ids[name][1], s.ids[name][0] == s.cursor
            s = s.parent
        return None

    def full(self, local: str) -> str:
        return f"{self.prefix}.{local}" if self.prefix else local

    def fresh(self, base: str) -> str:
        n = self.used.get(base, 0)
        self.used[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def claim(self, local: str, where: Location):
        if local in self.used:
            raise SpecError(f"duplicate id '{local}' in this body", where)
        self.used[local] = 1

    def lookup(self, name: str):
        s: Scope | None = self
        while s is not None:
            if name in s.names:
                return s.names[name]
            s = s.parent
        return None

    def visible(self) -> list[str]:
        out: list[str] = []
        s: Scope | None = self
        while s is not None:
            out += list(s.names)
            s = s.parent
        return out


class Builder:
    def __init__(self, graph: Graph, blocks):
        self.graph = graph
        self.blocks = blocks  # BlockRegistry
        self.block_stack: list[str] = []
        self.total_params = 0
        self.nesting = 0
        self.param_order: list[str] = []  # node names in parameter order: emission order, then `order: first` moves

    # ------------------------------------------------------------------ bodies
    def body(self, nodes: PosList, x: Value, scope: Scope, env: dict) -> Value:
        if self.nesting >= MAX_NESTING:
            raise SpecError(f"bodies and blocks are nested more than {MAX_NESTING} levels deep", nodes.pos)
        self.nesting += 1
        try:
            v = x
            scope.ids = {
                item["id"]: (k, item.where("id"))
                for k, item in reversed(list(enumerate(nodes)))
                if isinstance(item, PosDict) and isinstance(item.get("id"), str)
            }
            start, firsts = len(self.param_order), []
            for k, (item, where) in enumerate(zip(nodes, nodes.item_pos)):
                if not isinstance(item, PosDict):
                    raise SpecError("a body item must be a mapping (a node)", where)
                scope.cursor = k
                begin = len(self.param_order)
                v = self.node(item, v, scope, env)
                if item.get("order") == "first":
                    firsts.append((begin, len(self.param_order)))
            if firsts:  # their nodes move before the body's others; inner bodies were reordered within their span
                moved = [n for b, e in firsts for n in self.param_order[b:e]]
                taken = set(moved)
                self.param_order[start:] = moved + [n for n in self.param_order[start:] if n not in taken]
            return v
        finally:
            self.nesting -= 1

    def node(self, spec: PosDict, x: Value, scope: Scope, env: dict) -> Value:
        kinds = [k for k in NODE_KINDS if k in spec]
        if len(kinds) != 1:
            what = f"has {', '.join(kinds)}" if kinds else "has none"
            raise SpecError(f"a node needs exactly one of {', '.join(NODE_KINDS)} ({what})", spec.pos)
        kind = kinds[0]
        base = self._local_id(spec, kind, env)
        if "repeat" not in spec:
            inputs = self._inputs(spec, x, scope)
            if not self._when(spec, env, inputs):
                # A skipped node passes its input through: its `in:` when it has one, else the chain value.
                return self._skip(spec, base, inputs[0] if len(inputs) == 1 else x, scope)
            if "id" in spec:
                scope.claim(base, spec.where("id"))
            else:
                base = scope.fresh(base)
            out = self.single(spec, kind, inputs, scope, env, base, explicit_inputs=False)
        else:
            out = self.repeated(spec, kind, x, scope, env, base)
        # A side node (an auxiliary head) hangs off the chain: the chain continues from where it was.
        return x if spec.get("side", False) is True else out

    def _local_id(self, spec, kind, env) -> str:
        if "id" in spec:
            ident = spec["id"]
            if not _is_name(ident):
                raise SpecError(
                    f"id must be an identifier or a number (letters, digits, _), got {ident!r}", spec.where("id")
                )
            return ident
        if kind in ("op", "block"):
            name = evaluate(spec[kind], env, spec.where(kind))
            return str(name) if isinstance(name, str) and name.isidentifier() else kind
        return kind

    def _when(self, spec, env, inputs) -> bool:
        if "when" not in spec:
            return True
        v = evaluate(spec["when"], {**env, **self._shape_env_of(inputs)}, spec.where("when"))
        if not isinstance(v, bool):
            raise SpecError(f"`when` must be true or false, got {v!r}", spec.where("when"))
        return v

    def _skip(self, spec, local, x, scope):
        if "id" in spec:
            scope.names[local] = x  # a skipped node passes its input through
        return x

    # ------------------------------------------------------------------ repeat
    def repeated(self, spec, kind, x, scope, env, base) -> Value:  # noqa: PLR0915
        where = spec.where("repeat")
        inputs = self._inputs(spec, x, scope)
        times = evaluate(spec["repeat"], {**env, **self._shape_env_of(inputs)}, where)
        if isinstance(times, list):
            items = times
        elif isinstance(times, int) and not isinstance(times, bool) and times >= 0:
            items = list(range(times))
        else:
            raise SpecError(f"`repeat` must be a count >= 0 or a list, got {times!r}", where)
        if len(items) > MAX_REPEAT:
            raise SpecError(f"repeat count {len(items)} is above the limit of {MAX_REPEAT}", where)
        var = spec.get("var", "i")
        if not isinstance(var, str) or not var.isidentifier():
            raise SpecError(f"`var` must be an identifier, got {var!r}", spec.where("var"))
        connect = spec.get("connect", "chain")
        if "id" in spec:
            scope.claim(base, spec.where("id"))
        else:
            base = scope.fresh(base)
        # Without a `name` template the copies nest under the id (layer1.0, layer1.1, as nn.Sequential names
        # them); with one they are siblings named by it (layer1, layer2, ...).
        nested = "name" not in spec
        home = Scope(prefix=scope.full(base), parent=scope) if nested else scope
        template = spec.get("name", "${index}")
        x0: Value | list[Ref] = inputs if len(inputs) > 1 else inputs[0]
        v, outs = x0, []
        for index, item in enumerate(items):
            cenv = {**env, var: item, "index": index}
            copy_in = x0 if connect == "parallel" else v
            if not self._when(spec, cenv, copy_in if isinstance(copy_in, list) else [copy_in]):
                continue
            name = evaluate(template, cenv, spec.where("name") if "name" in spec else spec.pos)
            name = str(name) if isinstance(name, int) and not isinstance(name, bool) else name
            if not _is_name(name):
                raise SpecError(f"repeat copy name must be an identifier, got {name!r}", spec.where("name"))
            home.claim(name, spec.where("name") if "name" in spec else spec.pos)
            out = self.single(spec, kind, copy_in, home, cenv, name, explicit_inputs=False)
            if connect == "dense":
                prev = self._one(v, spec) if isinstance(v, list) else self._single_value(v, spec)
                v = self._emit(
                    home.full(f"{name}_concat"), "concat", [prev, self._single_value(out, spec)], {}, spec.pos
                )
            else:
                v = out
            outs.append(out)
        if connect == "parallel":
            if not outs:
                v = x0
            elif len(outs) == 1:
                v = outs[0]
            else:
                merged = f"{scope.full(base)}.{spec.get('merge', 'concat')}" if nested else scope.full(base)
                v = self._merge(spec, merged, [self._single_value(o, spec) for o in outs])
        if isinstance(v, list):  # no copy was made, and several inputs cannot pass through as one value
            raise SpecError(
                f"no copy was made (repeat count 0 or `when` false), so the node would pass its "
                f"input through, but it has {len(v)} inputs",
                spec.pos,
            )
        scope.names[base] = v
        return v

    # ------------------------------------------------------------------ one node
    def single(self, spec, kind, x, scope, env, local, explicit_inputs=True) -> Value:
        if explicit_inputs:
            inputs = self._inputs(spec, x, scope)
        else:
            inputs = list(x) if isinstance(x, list) else self._as_list(x, spec)
        name = scope.full(local)
        if kind == "op":
            out = self.op_node(spec, inputs, env, name)
        elif kind == "block":
            out = self.block_node(spec, inputs, env, name)
        elif kind == "body":
            inner = Scope(prefix=name, parent=scope)
            out = self.body(spec["body"], self._one(inputs, spec), inner, env)
        else:
            inner = Scope(prefix=name, parent=scope)
            x1 = self._one(inputs, spec)
            branches = spec["branches"]
            outs = []
            for item, where in zip(branches, branches.item_pos):
                if not isinstance(item, PosDict):
                    raise SpecError("a branch must be a node (a mapping)", where)
                outs.append(self._single_value(self.node(item, x1, inner, env), item))
            out = self._merge(spec, f"{name}.{spec.get('merge', 'concat')}", outs) if len(outs) > 1 else outs[0]
        out = self._residual(spec, kind, inputs, out, scope, env, name)
        if "output" in spec:
            label = spec["output"]
            if not isinstance(label, str) or label in self.graph.aux_outputs:
                raise SpecError(f"`output` must be a new output name, got {label!r}", spec.where("output"))
            self.graph.aux_outputs[label] = self._single_value(out, spec)
        scope.names[local] = out
        return out

    def _residual(self, spec, kind, inputs, out, scope, env, name) -> Value:
        if "residual" not in spec:
            return out
        where = spec.where("residual")
        r = spec["residual"]
        x = self._one(inputs, spec)
        if isinstance(r, PosList):
            if kind == "op":
                raise SpecError("a shortcut path needs a group node (body, branches or block), not an op", where)
            shortcut = self.body(r, x, Scope(prefix=name, parent=scope), env)
        else:
            on = evaluate(r, {**env, **self._shape_env(x)}, where)
            if not isinstance(on, bool):
                raise SpecError(f"`residual` must be true/false or a list of nodes, got {on!r}", where)
            if not on:
                return out
            shortcut = x
        add_name = f"{name}_residual" if kind == "op" else f"{name}.residual"
        return self._emit(add_name, "add", [self._single_value(out, spec), shortcut], {}, spec.pos)

    def _merge(self, spec, name, outs) -> Value:
        how = spec.get("merge", "concat")
        if how not in ("concat", "add"):
            raise SpecError(f"`merge` must be concat or add, got {how!r}", spec.where("merge"))
        return self._emit(name, how, outs, {}, spec.pos)

    # ------------------------------------------------------------------ inputs
    def _inputs(self, spec, x, scope) -> list[Ref]:
        if "in" not in spec:
            return self._as_list(x, spec)
        refs = spec["in"]
        where = spec.where("in")
        names = refs if isinstance(refs, list) else [refs]
        poses = refs.item_pos if isinstance(refs, PosList) else [where]
        out = []
        for ref, pos in zip(names, poses):
            if not isinstance(ref, str):
                raise SpecError(f"an input must be a node name, got {ref!r}", pos)
            if "${" in ref:
                raise SpecError(
                    f"`in` takes node names as written; expressions are not evaluated here, got {ref!r}", pos
                )
            out.append(self._resolve(ref, scope, pos))
        if not out:
            raise SpecError("`in` is empty", where)
        return out

    def _resolve(self, ref: str, scope: Scope, where) -> Ref:
        head, _, tail = ref.partition(".")
        value = scope.lookup(head)
        if value is None and scope.ahead(head):
            later, current = scope.ahead(head)
            if current:
                raise SpecError(
                    f"'{head}' is this node (or a group it is in): a node cannot take its own output "
                    "as input (a cycle)",
                    where,
                )
            raise SpecError(
                f"input '{ref}' is defined later, at {later}: inputs must name earlier nodes, so a "
                "graph cannot have a cycle",
                where,
            )
        if value is None:
            known = scope.visible()
            raise SpecError(
                f"unknown input '{ref}': no earlier node or input has that name{suggest(head, known)} "
                "(inputs must be defined before use, so cycles cannot be written)",
                where,
            )
        if tail:
            if not tail.isdigit():
                raise SpecError(f"'{ref}': pick an output with a number, e.g. '{head}.0'", where)
            outs = value if isinstance(value, tuple) else (value,)
            k = int(tail)
            if k >= len(outs):
                raise SpecError(f"'{head}' has {len(outs)} output(s); '{ref}' does not exist", where)
            return outs[k]
        if isinstance(value, tuple):
            raise SpecError(f"'{head}' has {len(value)} outputs; pick one, e.g. '{head}.0'", where)
        return value

    def _as_list(self, x, spec) -> list[Ref]:
        if isinstance(x, tuple):
            raise SpecError(
                f"the previous node has {len(x)} outputs; say which with `in:` (e.g. `in: name.0`)", spec.pos
            )
        return [x]

    def _one(self, inputs, spec) -> Ref:
        if len(inputs) != 1:
            raise SpecError(f"this node takes one input, got {len(inputs)}", spec.pos)
        return inputs[0]

    def _single_value(self, v, spec) -> Ref:
        if isinstance(v, tuple):
            raise SpecError(f"this value has {len(v)} outputs; use one of them", spec.pos)
        return v

    def _shape_env_of(self, inputs) -> dict:
        """in_ch/in_h/in_w and in_shape (the per-sample shape, a list) of a node's first input, when it has a
        single-valued one."""
        first = inputs[0] if inputs else None
        return self._shape_env(first) if isinstance(first, Ref) else {}

    def _shape_env(self, ref: Ref) -> dict:
        s = self.graph.shape(ref)
        if len(s) == 3:
            return {"in_ch": s[0], "in_h": s[1], "in_w": s[2], "in_shape": list(s)}
        return {"in_ch": s[0], "in_shape": list(s)}

    # ------------------------------------------------------------------ ops
    def op_node(self, spec, inputs, env, name) -> Value:
        opname = evaluate(spec["op"], env, spec.where("op"))
        opdef = OPS.get(opname) if isinstance(opname, str) else None
        if opdef is None:
            raise SpecError(f"unknown op {opname!r}{suggest(opname, OPS)}", spec.where("op"))
        nenv = {**env, **self._shape_env(inputs[0])}
        attrs = {}
        for key in spec:
            if key in COMMON_KEYS or key == "op":
                continue
            arg = opdef.arg(key)
            if arg is None:
                allowed = [a.name for a in opdef.args] or ["none"]
                raise SpecError(
                    f"unknown argument '{key}' for op {opname}{suggest(key, allowed)} "
                    f"(arguments: {', '.join(allowed)})",
                    spec.key_pos[key],
                )
            where = spec.where(key)
            value = self._eval_deep(spec[key], nenv, where)
            try:
                attrs[key] = arg.coerce(value)
            except ValueError as e:
                raise SpecError(f"{opname} argument '{key}': {e}", where) from None
        for arg in opdef.args:
            if arg.name not in attrs and arg.required:
                raise SpecError(f"op {opname} needs argument '{arg.name}'", spec.pos)
        return self._emit(name, opname, inputs, attrs, spec.pos, {k: spec.where(k) for k in attrs})

    def _eval_deep(self, value, env, where):
        if isinstance(value, PosList):
            return [self._eval_deep(v, env, w) for v, w in zip(value, value.item_pos)]
        if isinstance(value, PosDict):
            raise SpecError("a mapping is not a valid argument value", where)
        return evaluate(value, env, where)

    def _emit(self, name, opname, inputs, attrs, where, arg_where: dict | None = None) -> Value:
        """Shape-check one op and add it to the graph. A shape error that names an argument points at it
        (`arg_where`: where the node writes each argument), else at the node."""
        opdef = OPS[opname]
        lo, hi = opdef.arity
        if len(inputs) < lo or (hi != -1 and len(inputs) > hi):
            want = f"{lo}" if lo == hi else f"at least {lo}"
            raise SpecError(f"{name}: op {opname} takes {want} input(s), got {len(inputs)}", where)
        shapes = [self.graph.shape(r) for r in inputs]
        attrs = {
            a.name: None if a.default is None else a.coerce(a.default) for a in opdef.args if not a.required
        } | attrs
        try:
            if opdef.prepare:
                attrs = opdef.prepare(attrs, shapes)
            outs = [tuple(s) for s in opdef.infer(attrs, shapes)]
        except ShapeError as e:
            ins = ", ".join(f"{r}{list(s)}" for r, s in zip(inputs, shapes))
            at = (arg_where or {}).get(e.arg, where)
            raise SpecError(f"{name} ({opname}): {e} [inputs: {ins}]", at) from None
        for s in outs:
            _check_limits(name, s, where)
        params = opdef.params(attrs, shapes)
        self.total_params += sum(p.numel for p in params.values())
        if self.total_params > MAX_PARAMS:
            raise SpecError(f"{name}: the model exceeds {MAX_PARAMS:,} parameters; refusing it", where)
        if len(self.graph.nodes) >= MAX_NODES:
            raise SpecError(f"the model has more than {MAX_NODES:,} nodes; refusing it", where)
        if name in self.graph.nodes:
            other = self.graph.nodes[name].where
            raise SpecError(f"node name '{name}' is used twice (first at {other})", where)
        node = Node(name, opname, tuple(inputs), attrs, tuple(outs), params, opdef.macs(attrs, shapes, outs), where)
        self.graph.add(node)
        self.param_order.append(name)
        if len(outs) == 1:
            return Ref(name)
        return tuple(Ref(name, i) for i in range(len(outs)))

    # ------------------------------------------------------------------ blocks
    def block_node(self, spec, inputs, env, name) -> Value:
        bname = evaluate(spec["block"], env, spec.where("block"))
        block = self.blocks.get(bname, spec.where("block"))
        if bname in self.block_stack:
            raise SpecError(f"block '{bname}' uses itself ({' -> '.join(self.block_stack + [bname])})", spec.pos)
        if len(self.block_stack) >= MAX_BLOCK_DEPTH:
            raise SpecError(f"blocks nested deeper than {MAX_BLOCK_DEPTH}", spec.pos)
        owner = f"block {bname}"
        if len(inputs) != len(block.inputs):
            raise SpecError(
                f"block {bname} takes {len(block.inputs)} input(s) ({', '.join(block.inputs)}), got {len(inputs)}",
                spec.pos,
            )
        shape_env = self._shape_env(inputs[0])
        cenv = {**env, **shape_env}
        bound = {}
        for key in spec:
            if key in COMMON_KEYS or key == "block":
                continue
            if key not in block.params:
                known = list(block.params) or ["none"]
                raise SpecError(
                    f"unknown parameter '{key}' for block {bname}{suggest(key, known)} "
                    f"(parameters: {', '.join(known)})",
                    spec.key_pos[key],
                )
            value = self._eval_deep(spec[key], cenv, spec.where(key))
            bound[key] = block.params[key].check(value, spec.where(key), owner)
        benv = dict(shape_env)
        for pname, decl in block.params.items():
            if pname in bound:
                benv[pname] = bound[pname]
            elif decl.default is REQUIRED:
                raise SpecError(f"block {bname} needs parameter '{pname}'", spec.pos)
            else:
                value = self._eval_deep(decl.default, benv, decl.where)
                benv[pname] = decl.check(value, decl.where, owner)
        scope = Scope(prefix=name, names=dict(zip(block.inputs, inputs)))
        self.block_stack.append(bname)
        try:
            out = self.body(block.body, inputs[0], scope, benv)
            if block.outputs is not None:
                refs = [self._resolve(r, scope, w) for r, w in zip(block.outputs, block.outputs.item_pos)]
                out = refs[0] if len(refs) == 1 else tuple(refs)
        except SpecError as e:
            e.message += f"\n  in block '{bname}' used at {spec.pos}"
            raise
        finally:
            self.block_stack.pop()
        return out


def _is_name(name) -> bool:
    """Node names are identifiers or numbers (torchvision's `features.0`), never dotted."""
    return isinstance(name, str) and (name.isidentifier() or (name.isdigit() and name.isascii()))


def _check_limits(name, shape, where):
    if not shape:
        return
    if shape[0] > MAX_CHANNELS:
        raise SpecError(f"{name}: {shape[0]:,} channels/features is above the limit of {MAX_CHANNELS:,}", where)
    for d in shape[1:]:
        if d > MAX_SPATIAL:
            raise SpecError(f"{name}: spatial size {d:,} is above the limit of {MAX_SPATIAL:,}", where)
    if any(d <= 0 for d in shape):
        raise SpecError(f"{name}: output shape {list(shape)} has an empty dimension", where)


def build_graph(name: str, input_shape, input_where, layers: PosList, env: dict, blocks) -> Graph:
    graph = Graph(name)
    graph.add(Node(INPUT, "input", (), {}, (tuple(input_shape),), where=input_where))
    _check_limits(INPUT, tuple(input_shape), input_where)
    builder = Builder(graph, blocks)
    scope = Scope(prefix="", names={INPUT: Ref(INPUT)})
    out = builder.body(layers, Ref(INPUT), scope, env)
    if isinstance(out, tuple):
        raise SpecError(f"the model ends in a node with {len(out)} outputs; end with one", layers.pos)
    if out.node == INPUT:
        raise SpecError("the model has no layers", layers.pos)
    graph.output = out
    if builder.param_order != list(graph.nodes)[1:]:
        graph.param_order = [INPUT, *builder.param_order]
    return graph
