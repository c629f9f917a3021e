"""tcc: a declarative model-graph compiler for lightweight medical-imaging CNNs.

The Python API (tcc.api; the command line is a thin layer over it):

    model = tcc.Model.load("ddsnet", weights="GC_DDS_0.0064.pth", by_order=True)   # a zoo name or a spec path
    model.predict("GC.png"); model.torch(); model.onnx()
    table = model.calibrate("crops/", target="ort")
    bundle = model.build("arm-a7", precision="int8", calib=table, out="out/a7-int8")
    tcc.Bundle.open("out/a7-int8").run(x); tcc.diff("reference", bundle, x, model=model); tcc.bench(quick=True)
    model.explain("GC.png"); model.tsne("crops/"); model.slide(["slide.svs"], "out/slide"); model.summary()
    tcc.train_model("ddsnet", data="crops/", output="out/run", epochs=5); tcc.golden_check("tests/golden")
    tcc.report(["ddsnet"], ["out/a7-int8"]); tcc.import_onnx("model.onnx", "model.yaml")

The spec layer underneath:

    spec = tcc.load_spec("spec/ddsnet.yaml", {"num_classes": 2})   # spec -> IR (spec.graph), a tcc.Spec
    module = tcc.to_torch(spec.graph)                                # IR -> torch.fx GraphModule
    proto = tcc.to_onnx(spec.graph, module.state_dict())             # IR -> onnx.ModelProto (opset 13)
"""

from .errors import (
    BuildError,
    CalibrationError,
    DataError,
    ExportError,
    Location,
    OpsetError,
    OutputExists,
    SpecError,
    TccError,
    WeightsError,
)
from .ir import Graph, Node, Ref
from .ops import OPS
from .spec.loader import Spec, load_spec, parse_overrides

# tcc.api, imported on first use: it loads numpy and onnx
_API = (
    "Model",
    "Bundle",
    "bench",
    "diff",
    "golden_check",
    "golden_update",
    "import_onnx",
    "make_crops",
    "report",
    "setup",
    "train_model",
)


def __getattr__(name: str):
    if name in _API:
        from . import api  # deferred for start-up: `import tcc` (and every CLI command) stays light

        return getattr(api, name)
    raise AttributeError(f"module 'tcc' has no attribute {name!r}")


def to_torch(graph, inference_only: bool = False):
    from .lower.to_torch import to_torch as lower  # deferred for start-up: loads torch

    return lower(graph, inference_only)


def to_onnx(graph, state, opset: int = 13):
    from .lower.to_onnx import to_onnx as lower  # deferred for start-up: loads numpy, onnx

    return lower(graph, state, opset)


__all__ = [
    "OPS",
    "BuildError",
    "Bundle",
    "CalibrationError",
    "DataError",
    "ExportError",
    "Graph",
    "Location",
    "Model",
    "Node",
    "OpsetError",
    "OutputExists",
    "Ref",
    "Spec",
    "SpecError",
    "TccError",
    "WeightsError",
    "bench",
    "diff",
    "golden_check",
    "golden_update",
    "import_onnx",
    "load_model",
    "load_spec",
    "make_crops",
    "parse_overrides",
    "report",
    "setup",
    "to_onnx",
    "to_torch",
    "train_model",
]
