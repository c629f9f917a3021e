"""The front of every pipeline: spec (+ weights) -> the PyTorch reference module and the FP32 ONNX after the passes.

    fe = lower_spec("spec/ddsnet.yaml", weights=Weights("GC.pth", by_order=True))
    fe.model        # the loaded spec (tcc.spec.loader.Spec)
    fe.module       # its inference-only PyTorch lowering with those weights (the FP32 reference)
    fe.onnx         # ONNX at `opset`, after the pass pipeline (tcc.passes): what calibration and backends take
    fe.report       # what each pass did;  fe.weights: the manifest's description of the weights

`tcc build`, `tcc calibrate`, the benchmarks and the tests all start here, so the graph a calibration table is made
for is exactly the graph a build quantizes (its hash is checked).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .bundle import sha256_file
from .process.phases import announce
from .spec.loader import Spec, load_spec

if TYPE_CHECKING:
    import onnx

RANDOM_WEIGHTS_WARNING = (
    "NO WEIGHTS GIVEN: this bundle uses seeded random weights (seed {seed}); its outputs are "
    "meaningless. Pass --weights to build a usable model."
)


@dataclass(frozen=True)
class Weights:
    """The weights a spec is lowered with: a checkpoint, or seeded random ones."""

    file: str | Path | None = None  # a PyTorch state_dict (.pt/.pth); None: seeded random weights
    by_order: bool = False  # match the checkpoint's tensors to the spec's in order, not by name
    key_map: str | Path | None = None  # YAML/JSON mapping of checkpoint keys (or 'prefix.') to spec names
    seed: int = 0  # the random weights' seed (a command's one seed: also its calibration samples' and draws')

    @classmethod
    def of(cls, weights: Weights | str | Path | None) -> Weights:
        """A Weights record from itself, a checkpoint's path (matched by name) or None (seeded random weights)."""
        return weights if isinstance(weights, Weights) else cls(weights)


@dataclass
class Frontend:
    model: Spec  # the loaded spec, fitted to the weights
    module: Any  # torch.fx.GraphModule, eval mode
    weights: dict
    onnx: onnx.ModelProto  # after the passes
    report: Any  # tcc.passes.pipeline.PipelineReport
    opset: int
    simplify: bool
    seconds: dict = field(default_factory=dict)


def reference_module(model, weights, by_order=False, key_map=None, seed: int = 0, log=lambda s: None):
    """The inference-only PyTorch lowering with the build's weights (the same weights `tcc predict` would use;
    without a weights file, seeded random weights) and the manifest's description of them."""
    from .lower.to_torch import init_weights, to_torch  # deferred for start-up: loads torch
    from .lower.weights import load_weights  # deferred for start-up: loads torch

    full = to_torch(model.graph)  # weights go through the full module so seeds and imports match `tcc predict`
    if weights:
        match = load_weights(full, model.graph, weights, by_order, key_map, layouts=model.checkpoints)
        info = {
            "file": Path(weights).name,
            "sha256": sha256_file(weights),
            "import": match.method,
            **({"layout": match.layout.name} if match.layout else {}),
            "matched": len(match.assignment),
            "report": match.report(),
        }
        if key_map:
            info["key_map_sha256"] = sha256_file(key_map)
        log(f"weights: {match.report()}")
    else:
        init_weights(full, seed)
        info = {"random_seed": seed, "warning": RANDOM_WEIGHTS_WARNING.format(seed=seed)}
    ref = to_torch(model.graph, inference_only=True)
    state = full.state_dict()
    ref.load_state_dict({k: state[k] for k in ref.state_dict()}, strict=True)
    ref.eval()
    return ref, info


def lower_spec(
    spec,
    overrides: Mapping[str, Any] | None = None,
    weights: Weights | str | Path | None = None,
    *,
    opset: int = 13,
    simplify: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> Frontend:
    """Load `spec` (a path, or an already loaded Spec), import the weights (a Weights record, a checkpoint's path, or
    None: seeded random ones), lower to ONNX at `opset` and run the pass pipeline."""
    from .lower.to_onnx import to_onnx  # deferred for start-up: loads numpy, onnx
    from .passes.pipeline import run_pipeline  # deferred for start-up: loads numpy, onnx, onnx_graphsurgeon

    t0 = time.perf_counter()
    announce("load")
    from .lower.weights import fit_to_checkpoint  # deferred for start-up: loads torch

    w = Weights.of(weights)
    model = spec if hasattr(spec, "graph") else load_spec(spec, dict(overrides or {}))
    fitted = fit_to_checkpoint(model, w.file, w.by_order, w.key_map)
    for note in fitted.notes if fitted is not model else []:
        log(f"note: {note}")
    model = fitted
    module, info = reference_module(model, w.file, w.by_order, w.key_map, w.seed, log)
    t1 = time.perf_counter()
    announce("lower")
    lowered = to_onnx(model.graph, module.state_dict(), opset)
    t2 = time.perf_counter()
    announce("passes")
    proto, report = run_pipeline(lowered, simplify=simplify)
    return Frontend(
        model,
        module,
        info,
        proto,
        report,
        opset,
        simplify,
        {"load": t1 - t0, "lower": t2 - t1, "passes": time.perf_counter() - t2},
    )
