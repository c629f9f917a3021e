"""tcc: a declarative model-graph compiler for lightweight medical-imaging CNNs.

    model = tcc.load_model("spec/ddsnet.yaml", {"num_classes": 2})   # spec -> IR (model.graph)
    module = tcc.to_torch(model.graph)                              # IR -> torch.fx GraphModule
    proto = tcc.to_onnx(model.graph, module.state_dict())           # IR -> onnx.ModelProto (opset 13)
"""
from .errors import DataError, ExportError, Location, OpsetError, SpecError, TccError, WeightsError
from .ir import Graph, Node, Ref
from .ops import OPS
from .spec.loader import Model, load_model, parse_overrides


def to_torch(graph, inference_only: bool = False):
    from .lower.to_torch import to_torch as lower  # deferred for start-up: loads torch

    return lower(graph, inference_only)


def to_onnx(graph, state, opset: int = 13):
    from .lower.to_onnx import to_onnx as lower  # deferred for start-up: loads numpy, onnx

    return lower(graph, state, opset)


__all__ = [
    "OPS", "DataError", "ExportError", "Graph", "Location", "Model", "Node", "OpsetError", "Ref", "SpecError",
    "TccError", "WeightsError", "load_model", "parse_overrides", "to_onnx", "to_torch",
]
