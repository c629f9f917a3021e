"""tcc: a declarative model-graph compiler for lightweight medical-imaging CNNs.

    model = tcc.load_model("spec/ddsnet.yaml", {"num_classes": 2})   # spec -> IR (model.graph)
    module = tcc.to_torch(model.graph)                              # IR -> torch.fx GraphModule
"""
from .errors import DataError, Location, SpecError, TccError, WeightsError
from .ir import Graph, Node, Ref
from .ops import OPS
from .spec.loader import Model, load_model, parse_overrides


def to_torch(graph, inference_only: bool = False):
    from .lower_torch import to_torch as lower

    return lower(graph, inference_only)


__all__ = [
    "OPS", "DataError", "Graph", "Location", "Model", "Node", "Ref", "SpecError", "TccError", "WeightsError",
    "load_model", "parse_overrides", "to_torch",
]
