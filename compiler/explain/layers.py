"""Which layer to explain, named as `tcc check` prints it, and which fx node of the PyTorch lowering computes it.

Everything is read off the IR: the default Grad-CAM layer is the last conv, concat or add of the inference graph
whose output is still a spatial map (H, W > 1), i.e. the last one before global pooling (an add, because in a
residual network the last conv sees only its residual branch: the merge is what the head reads); the default t-SNE
features are the input of the last linear layer (the classifier), or the last global pooling's output when there is
none.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SpecError, suggest
from ..ir import INPUT, Graph, Ref

GRADCAM_OPS = ("conv2d", "concat", "add")
GLOBAL_POOL_OPS = ("global_avgpool", "adaptive_avgpool")
CLASSIFIER_OPS = ("linear",)


@dataclass(frozen=True)
class Layer:
    name: str  # the IR value's name: `tcc check`'s layer name (`node.k` for the k-th output of a split)
    fx_name: str  # the GraphModule node that computes it
    op: str
    shape: tuple  # per sample

    @property
    def spatial(self) -> bool:
        """A [C, H, W] map with H, W > 1: something Grad-CAM can localise on."""
        return len(self.shape) == 3 and self.shape[1] > 1 and self.shape[2] > 1

    def describe(self) -> str:
        return f"{self.name} ({self.op}, {'x'.join(map(str, self.shape))})"


class LayerIndex:
    """The inference graph's values by name, each with the fx node that computes it (`gm.meta["value_names"]`)."""

    def __init__(self, graph: Graph, value_names: dict[str, str]):
        self.graph = graph
        live = graph.inference_nodes()
        self.values = {
            graph.ref_name(Ref(n.name, i)): Ref(n.name, i)
            for n in graph.nodes.values()
            if n.name in live and n.op != "input"
            for i in range(len(n.shapes))
        }  # spec order
        self.fx_of = {ir: fx for fx, ir in value_names.items()}
        for name, ref in reversed(self.values.items()):
            # an identity lowers to no fx node of its own: the fx node carries the last name of the chain
            node = graph.nodes[ref.node]
            if node.op == "identity" and name in self.fx_of:
                self.fx_of.setdefault(graph.ref_name(node.inputs[0]), self.fx_of[name])

    def _layer(self, name: str) -> Layer:
        if name not in self.fx_of:
            raise SpecError(f"layer '{name}' is the model's input passed through; name a computed layer")
        ref = self.values[name]
        return Layer(name, self.fx_of[name], self.graph.nodes[ref.node].op, tuple(self.graph.shape(ref)))

    def find(self, name: str) -> Layer:
        """The layer `name` (as `tcc check` prints it); an unknown name gets the closest one suggested."""
        if name not in self.values:
            where = (
                "an auxiliary (training-only) head, not used by the prediction"
                if name in self.graph.nodes and name != INPUT
                else "not a layer of this model"
            )
            raise SpecError(f"layer '{name}': {where}{suggest(name, self.values)}; `tcc check SPEC` lists the layers")
        return self._layer(name)

    def gradcam(self, name: str | None = None) -> Layer:
        """The layer Grad-CAM reads: `name`, or by default the last spatial conv, concat or add."""
        if name is None:
            return self.default_gradcam()
        layer = self.find(name)
        if not layer.spatial:
            raise SpecError(
                f"layer {layer.describe()} is not a spatial map (Grad-CAM needs [C, H, W] with H, W > 1)"
                f"; the default is {self.default_gradcam().describe()}"
            )
        return layer

    def default_gradcam(self) -> Layer:
        spatial = [
            layer
            for name, ref in self.values.items()
            if self.graph.nodes[ref.node].op in GRADCAM_OPS and (layer := self._layer(name)).spatial
        ]
        if not spatial:
            raise SpecError(
                f"model '{self.graph.name}' has no conv, concat or add with a spatial output (H, W > 1) "
                "to explain; name a layer with --layer NAME"
            )
        return spatial[-1]

    def features(self, name: str | None = None) -> Layer:
        """The features t-SNE embeds: `name`, or by default the penultimate features (the last linear layer's
        input, else the last global pooling's output)."""
        if name is not None:
            return self.find(name)
        nodes = [self.graph.nodes[ref.node] for ref in self.values.values()]
        classifiers = [n for n in nodes if n.op in CLASSIFIER_OPS]
        if classifiers:
            return self._layer(self.graph.ref_name(classifiers[-1].inputs[0]))
        pools = [n for n in nodes if n.op in GLOBAL_POOL_OPS]
        if pools:
            return self._layer(pools[-1].name)
        raise SpecError(
            f"model '{self.graph.name}' has neither a linear classifier nor global pooling to take the "
            "penultimate features from; name a layer with --layer NAME"
        )

    def scores(self) -> Layer | None:
        """The class scores Grad-CAM differentiates when they are not the model's output: the input of a final
        softmax (whose gradients vanish where one class dominates). None when the output is the scores. A model
        whose output is not a vector of classes is refused."""
        out = self.graph.shape(self.graph.main_output)
        if len(out) != 1:
            raise SpecError(
                f"model '{self.graph.name}' outputs {'x'.join(map(str, out))}, not a vector of class "
                "scores: explain needs a classifier"
            )
        node = self.graph.nodes[self.graph.main_output.node]
        return self._layer(self.graph.ref_name(node.inputs[0])) if node.op == "softmax" else None
