"""Matching an FP32 ONNX graph onto the integer op table (tcc.intops): the structure of its INT8 form.

    graph = plan(onnx_model, lowering="tvm")   # IntGraph; raises UnsupportedOps naming every node it cannot take
    graph.quantized                            # the tensors that get a scale (graph input + every node output)
    graph.share_groups(share_concat=True)      # tensors that must share one scale
    graph.weighted                             # conv / gemm nodes: the layers the cosine search tunes

Each `INode` stands for one ONNX node, or for a few that one integer op computes: a producer and the Relu / Clip
it folds in (the marks of the pass `mark_fused_activations`, the one place that decides it), a lookup-table
pattern such as x * sigmoid(x), or an op the ONNX lowering wrote as several nodes (GELU below opset 20, a layer
norm: tcc.passes.composites), taken as the ONNX op it computes. Tensors computed inside an INode (`internal`) are
never quantized.

A node is a float island (`precision == "float"`) when its kind has no integer form (Role.FLOAT), or none under the
rules (their `float_kinds`), and the rules allow float ops, or when it is named in `floats` (the calibration table's
placement, tcc.quant.table.placement). A tensor is quantized when an integer node writes it or reads it; a tensor
between islands stays float.

Used before any work: `tcc build --precision int8` and `tcc calibrate` call `plan` right after the passes, so a
model with an op that has no integer form is refused in seconds, naming the node, the op and why.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import onnx
from onnx import helper, numpy_helper

from ...errors import BuildError, CalibrationError
from ...intops import (
    BOUNDED_LOOKUPS,
    INT_OPS,
    LOOKUP_FUNCTIONS,
    ONNX_TO_KINDS,
    PATTERNS,
    QUANTIZE,
    TFLITE,
    NodeView,
    Role,
    pool_commutes_with_conv,
    supported,
)
from ..table.rules import TargetRules, get_rules

MAX_LISTED = 8
# elementwise activations a float island takes when they alone read its output (_island_activation), where the
# rules let it (TargetRules.island_activations)
ISLAND_ACTIVATIONS = ("Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu")


class UnsupportedOps(BuildError):
    """Nodes of the model that the INT8 path (or one backend's lowering) cannot take. Exit code 2."""

    def __init__(self, problems: list[tuple[str, str, str]], what: str = "the INT8 path"):
        self.problems = problems
        lines = [f"  node '{name}' (op {op}): {why}" for name, op, why in problems[:MAX_LISTED]]
        if len(problems) > MAX_LISTED:
            lines.append(f"  ... and {len(problems) - MAX_LISTED} more")
        super().__init__(
            f"{what} cannot take {len(problems)} node(s) of this model:\n"
            + "\n".join(lines)
            + "\nnothing was calibrated or written"
        )


@dataclass(frozen=True)
class Activation:
    """A Relu / Clip folded into its producer: the clamp range in float (None: unbounded)."""

    node: str
    op: str
    min: float | None
    max: float | None


@dataclass(frozen=True)
class INode:
    kind: str  # a key of tcc.intops.INT_OPS
    name: str  # the ONNX node it is anchored on (its hierarchical spec name)
    op_type: str  # that node's ONNX op
    inputs: tuple[str, ...]  # the quantized tensors it reads
    outputs: tuple[str, ...]  # the quantized tensors it writes
    attrs: dict = field(hash=False, compare=False)  # the anchor's ONNX attributes
    weight: str | None = None  # weighted: the weight initializer; layernorm: its scale (None: no affine)
    bias: str | None = None
    factor: str | None = None  # channel_scale: the constant factor (PRelu's slope, the Mul's constant operand);
    # matmul: the positive scalar of a Mul it covers (its product times the factor)
    w_axis: int = 0  # weighted: the output-channel axis of the weight
    raw_output: str | None = None  # weighted / add: the tensor before a folded activation (internal then)
    activation: Activation | None = None
    lookup: str | None = None  # lookup: the function (an ONNX op of LOOKUP_FUNCTIONS, or a pattern's name)
    gate: str | None = None  # lookup pattern x * gate(x): the gate's ONNX op
    covers: tuple[str, ...] = ()  # every ONNX node it computes
    internal: tuple[str, ...] = ()  # tensors computed inside it, never quantized
    precision: str = "int8"  # "float": a float island (its FP32 op between a dequantize and a quantize)

    @property
    def op(self):
        return INT_OPS[self.kind]

    @property
    def integer(self) -> bool:
        return self.precision == "int8"


@dataclass
class IntGraph:
    model: onnx.ModelProto
    nodes: list[INode]
    input: str
    outputs: list[str]
    shapes: dict  # tensor -> shape tuple (batch included; None / names where unknown)
    placed: frozenset = frozenset()  # nodes kept in float by the placement (`floats` of plan)
    how: dict = field(default_factory=dict, repr=False)  # plan's arguments: `replan` plans again with them
    # conv / gemm outputs only float islands read: dequantized from the accumulator, never 8-bit
    # (TargetRules.accumulators_into_islands)
    dequantized: frozenset = frozenset()

    @functools.cached_property
    def constants(self) -> frozenset:
        return frozenset(t.name for t in self.model.graph.initializer)

    def view(self, node: INode) -> NodeView:
        """What the op table's per-kind facts see of a planned node (tcc.intops: NodeView)."""
        return NodeView(node.op_type, node.attrs, tuple(node.inputs), tuple(node.outputs), self.shapes, self.constants)

    @property
    def islands(self) -> list[INode]:
        """The float islands: nodes without an integer form, and nodes the placement keeps in float."""
        return [n for n in self.nodes if not n.integer]

    @property
    def quantized(self) -> list[str]:
        """Tensors with a scale, in topological order: the graph input and every node output that an integer node
        writes or reads (without float islands: every one)."""
        read = {i for n in self.nodes if n.integer for i in n.inputs}
        names = [self.input] if self.input in read else []
        return names + [
            o for n in self.nodes for o in n.outputs if (n.integer and o not in self.dequantized) or o in read
        ]

    @property
    def calibrated(self) -> list[str]:
        """Tensors the calibration table describes: the graph input and every node output (a float island's output
        too: a placement may quantize it later, and a float graph output is judged in its step)."""
        return [self.input] + [o for n in self.nodes for o in n.outputs]

    @property
    def internal(self) -> set[str]:
        return {t for n in self.nodes for t in n.internal}

    @property
    def weighted(self) -> list[INode]:
        """The integer conv / gemm nodes: the layers calibration searches."""
        return [n for n in self.nodes if n.op.role is Role.WEIGHTED and n.integer]

    def replan(self, floats, rules: TargetRules | None = None) -> IntGraph:
        """The same model planned with another placement (`floats`: anchor names kept in float), and under other
        rules when given (a table's split patterns: TargetRules.split_patterns)."""
        return plan(self.model, floats=floats, **{**self.how, **({"rules": rules} if rules is not None else {})})

    @property
    def split_patterns(self) -> tuple[str, ...]:
        """The x * g(x) patterns its rules compute in two ops although they could fuse them (TargetRules)."""
        rules = self.how.get("rules")
        return get_rules(rules).split_patterns if rules is not None else ()

    @property
    def fused_patterns(self) -> tuple[str, ...]:
        """The names of the x * g(x) patterns (tcc.intops.PATTERNS) that its lookups compute, sorted."""
        return tuple(sorted({n.lookup for n in self.nodes if n.gate is not None and n.lookup is not None}))

    def producer(self) -> dict[str, INode]:
        return {o: n for n in self.nodes for o in n.outputs}

    def gates(self) -> set[str]:
        """The outputs of lookups of a bounded function (tcc.intops.BOUNDED_LOOKUPS: a sigmoid, not x * sigmoid(x)),
        whose every value is signal."""
        return {
            o
            for n in self.nodes
            if n.kind == "lookup" and not n.gate and n.lookup in BOUNDED_LOOKUPS
            for o in n.outputs
        }

    def output_amax(self) -> dict[str, float]:
        """{tensor: the largest magnitude it can hold} for the outputs of kinds whose values lie in a range fixed
        by the op (tcc.intops.IntOp.output_range: a softmax's [0, 1])."""
        return {o: max(abs(v) for v in n.op.output_range) for n in self.nodes if n.op.output_range for o in n.outputs}

    def share_groups(self, share_concat: bool, shared_kinds: tuple[str, ...] = ()) -> list[list[str]]:
        """Tensors that must share one scale: the outputs of scale-sharing kinds (and of `shared_kinds`, where a
        target wants more) with their input, a concat's inputs with its output (when `share_concat`). Groups in
        topological order of their first tensor, members sorted: the same graph always gives the same groups."""
        order = {t: i for i, t in enumerate(self.quantized)}
        parent = {t: t for t in order}

        def find(a):
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        def union(a, b):
            ra, rb = find(a), find(b)
            if ra != rb:  # the earlier tensor is the root: deterministic
                if order[ra] > order[rb]:
                    ra, rb = rb, ra
                parent[rb] = ra

        for n in self.nodes:
            if not n.integer:  # an island quantizes its outputs on their own grid
                continue
            if _shares_scale(n, share_concat, shared_kinds):
                for i in n.inputs if n.op.role is Role.CONCAT else n.inputs[:1]:
                    for o in n.outputs:
                        union(i, o)
        groups: dict[str, list[str]] = {}
        for t in self.quantized:
            groups.setdefault(find(t), []).append(t)
        return [sorted(g) for g in groups.values() if len(g) > 1]


def _attrs(node) -> dict:
    """A node's attributes; strings as str (ONNX stores bytes), as a composite's attributes are."""
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def _activation_inputs(kind: str, view: NodeView) -> tuple[str, ...]:
    """The inputs of a node that its kind computes on (tcc.intops.IntOp.reads); the others are constants."""
    reads = INT_OPS[kind].reads
    if reads == "first":
        return view.inputs[:1]
    if reads == "variable":
        return tuple(i for i in view.inputs if i not in view.constants)
    if reads == "none":
        return ()
    return view.inputs


def _choose_kind(view: NodeView) -> tuple[str | None, str | None]:
    """(kind, None) for the first kind of the table that takes the node, else (None, why): the kinds' reasons."""
    kinds = ONNX_TO_KINDS.get(view.op_type, ())
    if not kinds:
        return None, "no integer form: not in the integer op table (tcc.intops)"
    reasons = []
    for kind in kinds:
        why = INT_OPS[kind].check(view)
        if why is None:
            return kind, None
        reasons.append(why if len(kinds) == 1 else f"as {kind}: {why}")
    return kinds[0], "; ".join(reasons)


@dataclass(frozen=True)
class _Region:
    """A composite region (tcc.passes.composites) in the shape plan() reads an ONNX node in: the one node it
    stands for (its ONNX op, attributes, input and output), with the nodes and tensors it covers."""

    name: str
    op_type: str
    input: tuple[str, ...]
    output: tuple[str, ...]
    covers: tuple[str, ...]
    internal: tuple[str, ...]
    domain: str = ""


def quantized_form(model: onnx.ModelProto, rules=None, lowering: str | None = None) -> onnx.ModelProto:
    """The FP32 graph that an INT8 lowering under `rules` quantizes: the passes' graph, or where the rules (or the
    lowering) take no pooled conv (TargetRules.pooled_conv) each 1 x 1 conv before its average pool again
    (tcc.passes.pool), so that the conv's output is requantized at full size and then pooled, as those targets'
    8-bit kernels compute it; and each ConvTranspose as a Conv of its phases (tcc.passes.conv_transpose) where the
    rules say so (TargetRules.transposed_conv_as_conv). The model itself where nothing changes."""
    target = get_rules(rules) if rules is not None else None
    deconvs = any(n.op_type == "ConvTranspose" for n in model.graph.node)
    if deconvs and (target is None or target.transposed_conv_as_conv):
        from ...passes.conv_transpose import conv_transpose_as_conv  # deferred for start-up: loads onnx_graphsurgeon

        model = conv_transpose_as_conv(model)
    pairs = (target is None or target.pooled_conv) and (lowering is None or supported("pooled_conv", lowering))
    if pairs or not _pool_pairs(model):
        return model
    from ...passes.pool import conv_before_pool  # deferred for start-up: loads onnx_graphsurgeon

    return conv_before_pool(model)


def _pool_pairs(model: onnx.ModelProto) -> bool:
    """Whether the model holds a pair that plan makes one pooled_conv (`_pooled_conv`)."""
    g = model.graph
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    initializers, outputs = {t.name: t for t in g.initializer}, {o.name for o in g.output}
    return any(_pooled_conv(n, consumers, outputs, initializers) is not None for n in g.node)


def plan(
    model: onnx.ModelProto,
    lowering: str | None = None,
    what: str | None = None,
    rules=None,
    integer: bool = True,
    floats=(),
) -> IntGraph:
    """The IntGraph of `model` (an FP32 ONNX graph after the passes). Raises UnsupportedOps listing every node the
    integer op table cannot take (or, given `lowering`, that this lowering lacks). rules (tcc.quant.table.rules: a name
    or
    TargetRules; default: tcc's own): whether x * g(x) is one lookup (TFLite computes LOGISTIC, then MUL), whether
    nodes without an integer form become float islands. floats: the nodes the placement keeps in float (their
    anchor names; tcc.quant.table.placement.float_nodes of a table). integer=False: the structure for a float lowering
    of the same graph (kinds without an integer form allowed, no islands). The IntGraph's model is the
    quantized_form of `model` under the rules."""
    target_rules = get_rules(rules) if rules is not None else None
    floats = frozenset(floats)
    if floats and integer and target_rules is not None and not target_rules.float_ops:
        raise CalibrationError(
            f"the placement keeps {len(floats)} node(s) in float ({min(floats)!r}, ...), "
            f"but the {target_rules.name} rules keep no float ops; recalibrate without placement"
        )
    if integer:
        model = quantized_form(model, target_rules, lowering)
    g = model.graph
    constants = frozenset(t.name for t in g.initializer)
    inputs = [i.name for i in g.input if i.name not in constants]
    if len(inputs) != 1:
        raise UnsupportedOps(
            [("(graph)", "-", f"the INT8 path takes one graph input, this graph has {len(inputs)}")],
            what or "the INT8 path",
        )
    matcher = _Matcher.of(model, _Settings(target_rules, lowering, integer, floats))
    nodes = [n for k, node in enumerate(g.node) if (n := matcher.match(k, node)) is not None]
    outputs = [o.name for o in g.output]
    ruled = _ruled_floats(nodes, outputs, target_rules) - floats if integer and target_rules else frozenset()
    if ruled and not matcher.problems:  # matched again with them in float (the placement's own stay `floats`)
        matcher = _Matcher.of(model, _Settings(target_rules, lowering, integer, floats | ruled))
        nodes = [n for k, node in enumerate(g.node) if (n := matcher.match(k, node)) is not None]
    if matcher.problems:
        raise UnsupportedOps(
            matcher.problems, what or (f"the {lowering} INT8 lowering" if lowering else "the INT8 path")
        )
    _check_placed(floats, nodes)
    how = {"lowering": lowering, "what": what, "rules": rules, "integer": integer}
    dequantized = (
        _into_islands(nodes, outputs)
        if target_rules is not None and target_rules.float_outputs and target_rules.accumulators_into_islands
        else frozenset()
    )
    return IntGraph(model, nodes, inputs[0], outputs, matcher.shapes, floats, how, dequantized)


def _into_islands(nodes: list[INode], outputs: list[str]) -> frozenset:
    """The outputs of integer conv / gemm nodes that float islands alone read (not graph outputs): the islands take
    them dequantized from the accumulator (TargetRules.accumulators_into_islands)."""
    readers: dict[str, list[INode]] = {}
    for n in nodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)
    return frozenset(
        o
        for n in nodes
        if n.integer and n.op.role is Role.WEIGHTED
        for o in n.outputs
        if o not in outputs and readers.get(o) and all(not r.integer for r in readers[o])
    )


def _ruled_floats(nodes: list[INode], outputs: list[str], rules: TargetRules) -> frozenset:
    """The integer nodes the rules keep in float whatever the placement: a division's operands
    (TargetRules.float_divisors) and the computing nodes that write graph outputs (TargetRules.float_graph_outputs)."""
    divisors = _divisor_floats(nodes) if rules.float_divisors else frozenset()
    return divisors | (_output_floats(nodes, outputs, rules) if rules.float_graph_outputs else frozenset())


def _output_floats(nodes: list[INode], outputs: list[str], rules: TargetRules) -> frozenset:
    """The integer nodes that write a graph output and compute its codes: not a conv / gemm (its float output comes
    from the accumulator: TargetRules.float_outputs), not a constant, not one whose output shares its input's scale
    (it moves codes, or interpolates them within their range: a bilinear resize)."""
    return frozenset(
        n.name
        for n in nodes
        if n.integer
        and n.op.role not in (Role.WEIGHTED, Role.PASS_THROUGH, Role.CONSTANT)
        and not _shares_scale(n, rules.share_concat, rules.shared_kinds)
        and any(o in outputs for o in n.outputs)
    )


def _shares_scale(n: INode, share_concat: bool, shared_kinds: tuple[str, ...]) -> bool:
    """Whether the node's outputs take its input's scale (a concat: its inputs' all, where `share_concat`)."""
    return n.op.shares_scale or n.kind in shared_kinds or (n.op.role is Role.CONCAT and share_concat)


def _divisor_floats(nodes: list[INode]) -> frozenset:
    """The integer nodes that make a float division's operands (TargetRules.float_divisors): from each operand back
    through the nodes that move codes or add a constant (a divisor's eps), to and including the first node that
    computes otherwise (a matmul, a conv, a reduction). A constant itself (no input) stays an integer node: it has
    no tensor to take the batch from in an island of its own."""
    writer = {o: n for n in nodes for o in n.outputs}
    found: set[str] = set()
    for division in nodes:
        if division.kind != "div" or division.integer:
            continue
        todo = list(division.inputs)  # the dividend too: where the divisor is small, so is it (a weighted mean)
        while todo:
            p = writer.get(todo.pop())
            if p is None or not p.integer or not p.inputs or p.name in found:  # graph input, island, constant
                continue
            found.add(p.name)
            if not p.op.placeable or (p.kind == "add" and any(not writer[i].inputs for i in p.inputs if i in writer)):
                todo.extend(p.inputs)  # no rounding of its own worth keeping: the divisor's codes come from further up
    return frozenset(found)


def _check_placed(floats: frozenset, nodes: list[INode]) -> None:
    """Every node the placement keeps in float is a node of the integer graph (an anchor), else CalibrationError."""
    unknown = sorted(floats - {n.name for n in nodes})
    if unknown:
        anchors = {c: n.name for n in nodes for c in n.covers}
        hint = f" (it is computed by {anchors[unknown[0]]!r}: name that node)" if unknown[0] in anchors else ""
        raise CalibrationError(
            f"the placement keeps {unknown[0]!r} in float, which is no node of the model's "
            f"integer graph{hint}; recalibrate"
        )


@dataclass(frozen=True)
class _Settings:
    """What plan matches the nodes under."""

    rules: TargetRules | None  # None: tcc's own (every pattern fused, no islands)
    lowering: str | None
    integer: bool
    floats: frozenset  # the placement's float nodes

    @property
    def fuse_patterns(self) -> bool:
        return self.rules.fuse_patterns if self.rules is not None else True

    def fuses(self, pattern: str) -> bool:
        return self.rules.fuses(pattern) if self.rules is not None else True

    @property
    def float_ok(self) -> bool:
        return self.rules.float_ops if self.rules is not None else False  # islands need a target's rules


@dataclass
class _Candidate:
    """One unit being matched onto a kind: an ONNX node, a composite region, or a pool and its conv (anchored on
    the conv), with the x * gate(x) pattern it starts, if any."""

    name: str
    node: Any  # onnx.NodeProto or _Region
    attrs: dict
    pool: onnx.NodeProto | None
    pattern: tuple[onnx.NodeProto, str] | None
    view: NodeView


@dataclass
class _Kinded:
    """A candidate's kind and what follows from it under the settings."""

    kind: str
    acts: tuple[str, ...]  # the inputs it computes on
    kept_float: bool  # the rules have no kernel of the kind (their float_kinds)
    no_integer_form: bool
    island: bool


@dataclass
class _Matcher:
    """One plan's matching, node by node in graph order: the model's facts each match reads, the nodes already
    covered by an earlier one, and the problems found (plan raises them all at once)."""

    settings: _Settings
    constants: frozenset
    initializers: dict
    shapes: dict
    float_type: set
    marks: dict  # node -> the activation folded into it (tcc.passes.fusion)
    last_of: dict  # a composite region's last node -> the region
    inside: set  # the other nodes of regions
    by_name: dict
    consumers: dict[str, list]
    graph_outputs: set
    shape_nodes: set  # shape arithmetic: no node of the integer graph
    covered: set[str] = field(default_factory=set)
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, model: onnx.ModelProto, settings: _Settings) -> _Matcher:
        from ...passes.base import infer_value_shapes  # deferred for start-up: loads onnx_graphsurgeon
        from ...passes.batch import shape_arithmetic  # deferred for start-up: loads onnx_graphsurgeon
        from ...passes.composites import composites  # deferred for start-up: loads onnx_graphsurgeon
        from ...passes.fusion import fused_activations  # deferred for start-up: loads onnx_graphsurgeon

        g = model.graph
        typed = infer_value_shapes(model)
        shapes = {name: dims for name, (_dtype, dims) in typed.items()}
        shapes.update({t.name: tuple(t.dims) for t in g.initializer})
        float_type = {name for name, (dtype, _dims) in typed.items() if dtype is not None and dtype.kind == "f"}
        marks = fused_activations(model, mark_if_unmarked=True)
        regions = composites(model)
        consumers: dict[str, list] = {}
        for n in g.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        graph_outputs = {o.name for o in g.output}
        return cls(
            settings,
            frozenset(t.name for t in g.initializer),
            {t.name: t for t in g.initializer},
            shapes,
            float_type,
            marks,
            {r.nodes[-1]: r for r in regions.values()},
            {n for r in regions.values() for n in r.nodes[:-1]},
            {n.name: n for n in g.node},
            consumers,
            graph_outputs,
            shape_arithmetic(g, float_type, consumers, graph_outputs),
        )

    def match(self, k: int, node: onnx.NodeProto) -> INode | None:
        """The INode of the k-th ONNX node, or None: covered by an earlier one, or refused (a problem noted)."""
        name = node.name or node.output[0] or f"node{k}"
        if name in self.covered or name in self.inside or name in self.shape_nodes:
            return None
        c = self._candidate(name, node)
        if c is None:
            return None
        kind, why = (
            ("lookup", None)
            if c.pattern
            else ("pooled_conv", INT_OPS["pooled_conv"].check(c.view))
            if c.pool
            else _choose_kind(c.view)
        )
        if kind is None:  # no kind takes it: `why` says why
            self.problems.append((c.name, c.node.op_type, why or ""))
            return None
        kinded = self._kinded(c, kind)
        why = why or self._refusal(c, kinded)
        if why:
            self.problems.append((c.name, c.node.op_type, why))
            return None
        return self._inode(c, kinded)

    def _candidate(self, name: str, node) -> _Candidate | None:
        """The unit the node starts (a region at its last node, a pool with the conv it feeds), or None when its
        domain is not ONNX's (a problem noted)."""
        s = self.settings
        region = self.last_of.get(name)
        if region is not None:  # the region's last node: the whole region, as the ONNX op it computes
            r = region
            node = _Region(r.name, r.function, (r.input,), (r.output,), r.nodes, r.internal)
            attrs = dict(r.attrs)
        elif node.domain not in ("", "ai.onnx"):
            self.problems.append((name, f"{node.domain}.{node.op_type}", "outside the standard ONNX domain"))
            return None
        else:
            attrs = _attrs(node)
        pool = (
            _pooled_conv(node, self.consumers, self.graph_outputs, self.initializers)
            if s.integer and region is None
            else None
        )
        if pool is not None:  # the pair is one node anchored on the conv (its weights' layer)
            pool, node = node, pool
            name, attrs = node.name or node.output[0], _attrs(node)
            self.covered.add(name)
        pattern = _gated_lookup(node, self.consumers, self.graph_outputs) if name not in self.last_of else None
        if pattern is not None and not s.fuses(pattern[1]):
            pattern = None
        view = NodeView(node.op_type, attrs, tuple(node.input), tuple(node.output), self.shapes, self.constants)
        return _Candidate(name, node, attrs, pool, pattern, view)

    def _kinded(self, c: _Candidate, kind: str) -> _Kinded:
        s = self.settings
        acts = (c.pool.input[0],) if c.pool else _activation_inputs(kind, c.view)
        kept_float = s.rules is not None and kind in s.rules.float_kinds  # no such kernel there
        no_integer_form = s.integer and (not supported(kind, QUANTIZE) or kept_float)
        island = s.integer and (c.name in s.floats or (no_integer_form and s.float_ok))
        return _Kinded(kind, acts, kept_float, no_integer_form, island)

    def _refusal(self, c: _Candidate, k: _Kinded) -> str | None:
        """Why the integer graph (or the lowering) cannot take the candidate as its kind, else None."""
        s = self.settings
        const = [i for i in k.acts if i in self.constants or not i]
        if const:
            return f"input {const[0]!r} is a constant: every integer input must be a quantized activation"
        unknown = [t for t in (*k.acts, *c.node.output) if t not in self.float_type]
        if unknown:
            return f"tensor {unknown[0]!r} is not a float tensor of known type"
        if k.no_integer_form and not k.island:
            rules = s.rules
            return (
                f"the {rules.name} rules have no integer {k.kind}"
                if k.kept_float and rules is not None
                else f"no integer form ({INT_OPS[k.kind].doc})"
            ) + (f", and the {rules.name} rules keep no float ops" if rules else "")
        # an island runs the kind's float lowering: TFLite needs the kind's method, the others run any float op
        if s.lowering is not None and not supported(k.kind, s.lowering) and not (k.island and s.lowering != TFLITE):
            return f"the {s.lowering} lowering has no {k.kind} (see tcc.intops)"
        if s.integer and not k.island and s.lowering in INT_OPS[k.kind].limits:  # its integer form there
            return INT_OPS[k.kind].limits[s.lowering](c.view)
        return None

    def _inode(self, c: _Candidate, k: _Kinded) -> INode:
        """The INode of a candidate its kind takes, with the nodes it covers: a gate's Mul, a matmul's scaling Mul,
        a folded activation, a pool."""
        node, name, kind = c.node, c.name, k.kind
        fields = dict(INT_OPS[kind].fields(c.view))  # what the kind records of the node (tcc.intops)
        attrs = fields.pop("attrs", c.attrs)
        outputs = tuple(node.output)
        covers = tuple(node.covers) if isinstance(node, _Region) else (name,)
        internal: tuple[str, ...] = tuple(node.internal) if isinstance(node, _Region) else ()
        if c.pattern is not None:
            mul, pname = c.pattern
            fields.update(lookup=pname, gate=node.op_type)
            outputs, covers, internal = tuple(mul.output), (name, mul.name), (node.output[0],)
            self.covered.add(mul.name)
        # TFLite's BATCH_MATMUL derives its requantization from the tensors' scales: no factor of its own
        scaled = (
            _scaled_product(node, self.consumers, self.graph_outputs, self.initializers)
            if kind == "matmul" and self.settings.fuse_patterns
            else None
        )
        if scaled is not None:  # a float island computes the scaled product too: the product stays internal,
            # as the calibration saw it (kept apart, the scale's input would need an entry the table lacks)
            if not k.island:
                fields["factor"] = next(i for i in scaled.input if i != node.output[0])
            outputs, covers, internal = tuple(scaled.output), (name, scaled.name), (node.output[0],)
            self.covered.add(scaled.name)
        mark = self.marks.get(name)
        if mark is not None and INT_OPS[kind].fuses_activation:
            act = self.by_name[mark["node"]]
            fields["activation"] = Activation(act.name, act.op_type, mark["min"], mark["max"])
            fields["raw_output"] = node.output[0]
            outputs, covers, internal = tuple(act.output), (name, act.name), (node.output[0],)
            self.covered.add(act.name)
        taken = (
            _island_activation(outputs, self.consumers, self.graph_outputs, self.initializers)
            if k.island
            and k.no_integer_form
            and self.settings.rules is not None
            and self.settings.rules.island_activations
            else None
        )
        if taken is not None:  # the island computes its activation too: its output is quantized once, after it
            taken_name = taken.name or taken.output[0]
            outputs, covers, internal = tuple(taken.output), (*covers, taken_name), (*internal, outputs[0])
            self.covered.add(taken_name)
        if c.pool:  # the pooled tensor is never quantized: the node sums the pool's windows of codes itself
            attrs = {**attrs, "pool": _attrs(c.pool)}
            covers, internal = (c.pool.name or c.pool.output[0], *covers), (c.pool.output[0], *internal)
        precision = "float" if k.island else "int8"
        return INode(
            kind,
            name,
            node.op_type,
            k.acts,
            outputs,
            attrs,
            covers=covers,
            internal=internal,
            precision=precision,
            **fields,
        )


def _island_activation(outputs, consumers, graph_outputs, initializers) -> onnx.NodeProto | None:
    """The elementwise activation (ISLAND_ACTIVATIONS) that alone reads a float island's one output, else None: the
    island then takes it, so that its output is quantized once, after the activation. An instance norm's output
    quantized before its LeakyReLU cost MONAI's DynUNet 0.0096 of mean output cosine and BasicUNet 0.0076, more than
    any other group of quantizations (docs/notes/dense-prediction.md)."""
    if len(outputs) != 1 or outputs[0] in graph_outputs:
        return None
    readers = consumers.get(outputs[0], [])
    if len(readers) != 1 or readers[0].op_type not in ISLAND_ACTIVATIONS or readers[0].domain not in ("", "ai.onnx"):
        return None
    act = readers[0]
    if act.input[0] != outputs[0] or any(i and i not in initializers for i in act.input[1:]):
        return None
    return act


def _scaled_product(node, consumers, graph_outputs, initializers) -> onnx.NodeProto | None:
    """The Mul by a positive scalar constant that alone reads a MatMul's product (attention's q k^T / sqrt(d)), else
    None: the matmul kind takes the factor into its requantization, one rounding instead of two."""
    if node.op_type != "MatMul" or node.output[0] in graph_outputs:
        return None
    readers = consumers.get(node.output[0], [])
    if len(readers) != 1 or readers[0].op_type != "Mul" or readers[0].domain not in ("", "ai.onnx"):
        return None
    mul = readers[0]
    factor = [i for i in mul.input if i != node.output[0]]
    if len(factor) != 1 or factor[0] not in initializers:
        return None
    value = numpy_helper.to_array(initializers[factor[0]])
    return mul if value.size == 1 and float(value.reshape(-1)[0]) > 0 else None


def _pooled_conv(node, consumers, graph_outputs, initializers) -> onnx.NodeProto | None:
    """The 1 x 1 Conv that alone reads an average pool `node` where the pair is one `pooled_conv` (tcc.intops:
    pool_commutes_with_conv), else None."""
    if node.op_type != "AveragePool" or node.domain not in ("", "ai.onnx") or node.output[0] in graph_outputs:
        return None
    readers = consumers.get(node.output[0], [])
    if len(readers) != 1 or readers[0].op_type != "Conv" or readers[0].domain not in ("", "ai.onnx"):
        return None
    conv = readers[0]
    if (
        list(conv.input).count(node.output[0]) != 1
        or conv.input[0] != node.output[0]
        or len(conv.input) < 2
        or conv.input[1] not in initializers
    ):
        return None
    return (
        conv if pool_commutes_with_conv(_attrs(node), _attrs(conv), tuple(initializers[conv.input[1]].dims)) else None
    )


def _gated_lookup(node, consumers, graph_outputs):
    """(the Mul, pattern name) when `node` is the gate of x * gate(x) (tcc.intops.PATTERNS), else None."""
    pattern = next((p for p in PATTERNS if p.gate == node.op_type), None)
    if pattern is None or node.op_type not in LOOKUP_FUNCTIONS or node.output[0] in graph_outputs:
        return None
    readers = consumers.get(node.output[0], [])
    if len(readers) != 1 or readers[0].op_type != "Mul" or readers[0].domain not in ("", "ai.onnx"):
        return None
    mul = readers[0]
    if sorted(mul.input) != sorted([node.input[0], node.output[0]]):
        return None
    return mul, pattern.name
