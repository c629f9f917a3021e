"""Running the PyTorch lowering node by node and keeping chosen values: what Grad-CAM and t-SNE read.

A torch.fx Interpreter rather than forward hooks, because the layer may be a function call (a concat is
`torch.cat`, not a module) and the fx node is exactly the IR value `tcc check` names.
"""

from __future__ import annotations

from typing import Any

from torch import fx


class Recorder(fx.Interpreter):
    """Runs `gm`, keeping the values of the nodes in `keep`. The value of `cut`, if given, is replaced by a detached
    copy that requires grad: the rest of the forward pass starts from it, so the gradient of any later value with
    respect to it is one `torch.autograd.grad` away (whatever the parameters' requires_grad, and without
    backpropagating into the layers before it)."""

    def __init__(self, gm: fx.GraphModule, keep: set[str], cut: str | None = None):
        super().__init__(gm)
        unknown = (keep | ({cut} if cut else set())) - {n.name for n in gm.graph.nodes}
        assert not unknown, f"no such fx nodes: {sorted(unknown)}"
        self.keep, self.cut = keep, cut
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node):
        value = super().run_node(n)
        if n.name == self.cut:
            value = value.detach().requires_grad_(True)
        if n.name in self.keep:
            self.values[n.name] = value
        return value


def record(gm: fx.GraphModule, x, keep: set[str], cut: str | None = None):
    """(output, {node: value}) of one run of `gm` on `x`."""
    recorder = Recorder(gm, keep, cut)
    return recorder.run(x), recorder.values
