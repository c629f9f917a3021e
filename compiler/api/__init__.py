"""The Python API (tcc.api): what the command line does, as objects. The CLI's commands parse their arguments, call
these and print; a notebook calls them directly.

    import tcc
    model = tcc.Model.load("ddsnet", weights="GC_DDS_0.0064.pth", by_order=True)   # a zoo name or a spec path
    logits = model.predict("GC.png")                          # PyTorch, the spec's preprocessing; or an array
    table = model.calibrate("crops/", target="ort")           # kl+cos -> tcc.quant.table.file.CalibrationTable
    bundle = model.build("arm-a7", precision="int8", calib=table, out="out/a7-int8")
    bundle.run(x)                                             # float32 [N, C, H, W] -> logits
    tcc.Bundle.open("out/a7-int8").check()                    # every file against the manifest's hashes
    tcc.diff("reference", "out/a7-int8", x, model=model)      # tensor by tensor, first divergence first
    model.explain("GC.png"); model.tsne("crops/"); model.slide(["slide.svs"], "out/slide"); model.summary()
    tcc.train_model("model.onnx", data="patches/", output="runs/mine", epochs=5)   # any spec, zoo name or ONNX
    tcc.golden_check("tests/golden"); tcc.report(["ddsnet"], ["out/a7-int8"]); tcc.bench(quick=True)
    tcc.make_crops("out/crops", 64, seed=0)                   # histology crops to calibrate on (PNG files)
    tcc.setup(["arm-a7"])                                     # a TVM target's toolchain, wheels and runtime, once

Errors are the typed exceptions the CLI maps to exit code 2 (tcc.errors: SpecError, DataError, WeightsError,
BuildError, CalibrationError, ...), raised before any long work where the inputs allow.
"""

from ..quant.collect.crops import make_crops
from .bundle import Bundle
from .commands import bench, diff, golden_check, golden_update, import_onnx, report, setup, train_model
from .model import Model

__all__ = [
    "Bundle",
    "Model",
    "bench",
    "diff",
    "golden_check",
    "golden_update",
    "import_onnx",
    "make_crops",
    "report",
    "setup",
    "train_model",
]
