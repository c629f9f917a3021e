"""IR -> torch.fx GraphModule: trainable, torch.compile-able, parameters named by the IR's hierarchical names.

Each IR node is lowered by its op's `to_torch` rule, which talks to a `TorchEmitter`: `emit.module(m, x)` installs
one nn.Module at the node's name (so `dense1.layer0.dw.weight` is a parameter name), `emit.call(fn, ...)` adds a
function call. The generated code (`gm.code`) reads like hand-written PyTorch.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from ..ir import INPUT, Graph, Node, Ref


class TorchEmitter:
    def __init__(self, graph: fx.Graph, root: nn.Module, node: Node, in_shapes: list[tuple]):
        self.graph, self.root, self.node, self.in_shapes = graph, root, node, in_shapes
        self.installed = False

    def module(self, module: nn.Module, *args) -> fx.Node:
        assert not self.installed, f"{self.node.name}: one module per IR node"
        self.installed = True
        _install(self.root, self.node.name, module)
        return self.graph.call_module(self.node.name, args)

    def call(self, fn, *args, **kwargs) -> fx.Node:
        # Named after the IR node, so the generated code reads `dense1_0_relu = relu(...)`.
        return self.graph.create_node("call_function", fn, args, kwargs, name=self._name())

    def getitem(self, value, index: int) -> fx.Node:
        return self.graph.create_node("call_function", operator.getitem, (value, index), name=self._name())

    def _name(self) -> str:
        return self.node.name.replace(".", "_")


def _install(root: nn.Module, dotted: str, module: nn.Module) -> None:
    *parents, leaf = dotted.split(".")
    owner = root
    for part in parents:
        child = getattr(owner, part, None) if part in owner._modules else None
        if child is None:
            child = nn.Module()
            owner.add_module(part, child)
        owner = child
    owner.add_module(leaf, module)


def main_and_aux(main, aux: dict, training: bool):
    """Auxiliary heads are training outputs: (main, {name: aux}) in training mode, main alone in eval."""
    return (main, aux) if training else main


def to_torch(graph: Graph, inference_only: bool = False) -> fx.GraphModule:
    """Lower the IR to a GraphModule. `inference_only` drops auxiliary heads (their parameters too)."""
    root = nn.Module()
    g = fx.Graph()
    values: dict[Ref, fx.Node] = {Ref(INPUT): g.placeholder("x")}
    keep = graph.inference_nodes() if inference_only else graph.live_nodes()
    for node in graph.nodes.values():
        if node.op == "input" or node.name not in keep:
            continue
        emit = TorchEmitter(g, root, node, [graph.shape(r) for r in node.inputs])
        out = node.opdef.to_torch(emit, node.attrs, *[values[r] for r in node.inputs])
        if isinstance(out, list):
            values.update({Ref(node.name, i): o for i, o in enumerate(out)})
        else:
            values[Ref(node.name)] = out
    main = values[graph.main_output]
    if graph.aux_outputs and not inference_only:
        aux = {name: values[r] for name, r in graph.aux_outputs.items()}
        g.output(g.call_function(main_and_aux, (main, aux, g.get_attr("training"))))
    else:
        g.output(main)
    g.lint()
    gm = fx.GraphModule(root, g, class_name=_class_name(graph.name))
    if graph.param_order:
        _order_modules(gm, [n for n in graph.param_order if n in keep])
    # which fx node computes which IR value, under the ONNX lowering's tensor name (`name`, or `name.i` for a
    # multi-output node): `tcc diff` compares PyTorch's values with a backend's by these names
    gm.meta["value_names"] = {
        n.name: graph.ref_name(r) for r, n in values.items() if r.node != INPUT and isinstance(n, fx.Node)
    }
    gm.eval()
    return gm


def _order_modules(gm: nn.Module, names: list[str]) -> None:
    """Each module's children in the order of `names` (the graph's parameter order), so the state_dict lists tensors
    as Graph.parameters() does where a spec moved a node's tensors first (`order: first`): a module's own
    nn.Parameter precedes its submodules' in PyTorch (ConvNeXt's layer_scale), and tcc's own checkpoints keep that
    order too. GraphModule builds the hierarchy in the order the code first uses each module."""
    rank: dict[str, int] = {}
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            rank.setdefault(".".join(parts[:i]), len(rank))
    for path, module in list(gm.named_modules()):
        prefix = f"{path}." if path else ""
        children = list(module._modules.items())
        children.sort(key=lambda kv: rank.get(prefix + kv[0], len(rank)))  # stable: the rest keep their order
        module._modules.clear()
        module._modules.update(children)


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_")) or "Model"


def init_weights(module: nn.Module, seed: int) -> nn.Module:
    """Seeded, reproducible weights: PyTorch's default init under a fixed seed, BN stats made non-trivial."""
    gen = torch.Generator().manual_seed(seed)
    # factors per channel of any shape (a layer scale is [C, 1, 1]) are drawn like a BN weight, not like a kernel
    factors = {
        f"{m}.{p}"
        for m, mod in module.named_modules()
        if getattr(mod, "per_channel_factor", False)
        for p, _ in mod.named_parameters(recurse=False)
    }
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) * 0.5 + 0.75)
            elif name.endswith(("running_mean", ".bias")):
                t.copy_((torch.rand(t.shape, generator=gen) - 0.5) * 0.2)
            elif t.dim() == 1 or name in factors:  # BN weight, per-channel factors
                t.copy_(torch.rand(t.shape, generator=gen) * 0.5 + 0.75)
            else:
                fan_in = t[0].numel()
                bound = (6.0 / fan_in) ** 0.5  # He-uniform keeps activations in range through deep stacks
                t.copy_((torch.rand(t.shape, generator=gen) * 2 - 1) * bound)
    return module
