"""`tcc import`: an ONNX image classifier as a spec plus a state_dict by the spec's names.

    imported = import_onnx("model.onnx", size=(224, 224), mean=..., std=...)
    imported.spec_text          # YAML: one node per ONNX layer, spec ops, ids from the initializer names
    imported.state_dict         # {"features_0.weight": tensor, ...}: tcc build SPEC --weights W takes it

The spec is checked by loading it (tcc.spec.loader) and its PyTorch lowering against ONNX Runtime on the original
graph (the FP32 rule, tcc.tolerance) before anything is returned; an op with no spec equivalent is refused up front,
naming each node. This part writes one flat list of nodes; recognising blocks and repeats is the next step.
"""
from __future__ import annotations

import copy
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import SelfCheckError
from ..ir import INPUT
from ..lower.to_torch import to_torch
from ..lower.weights import load_weights
from ..measure.ort import session
from ..spec.loader import load_model
from ..tolerance import compare
from .reader import ImportedGraph, convert_graph

DEFAULT_MEAN, DEFAULT_STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


@dataclass
class Imported:
    graph: ImportedGraph
    spec_text: str
    state_dict: dict  # parameter name -> torch.Tensor
    check: dict  # the lowering against ONNX Runtime on the original (tcc.tolerance.compare's verdict)

    @property
    def notes(self) -> list[str]:
        return self.graph.notes


def _flow(value) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple, str)) else (
        "true" if value is True else "false" if value is False else repr(value))


def spec_text(g: ImportedGraph, source: str, mean, std, resize: bool) -> str:
    c, h, w = g.input_shape
    color = "RGB" if c == 3 else "L" if c == 1 else None
    lines = [f"# Imported by `tcc import` from {source} (ONNX opset {g.opset}): one node per ONNX layer.",
             "kind: model", f"name: {g.name}", "input:", f"  shape: [{c}, {h}, {w}]"]
    if color:
        pre = [f"color: {color}", f"mean: {_flow(list(mean))}", f"std: {_flow(list(std))}"]
        if resize:
            pre.insert(0, f"resize: [{h}, {w}]")
        lines.append("  preprocess: {" + ", ".join(pre) + "}")
    lines.append("layers:")
    previous = INPUT
    for n in g.nodes:
        fields = [f"id: {n.id}", f"op: {n.node.op}", *(f"{k}: {_flow(v)}" for k, v in n.node.args.items())]
        if n.inputs != [previous]:
            fields.append(f"in: {_flow(n.inputs if len(n.inputs) > 1 else n.inputs[0])}")
        lines.append("  - {" + ", ".join(fields) + "}")
        previous = n.id
    if previous != g.output:
        lines.append(f"  - {{id: output, op: identity, in: {g.output}}}")
    return "\n".join(lines) + "\n"


def import_onnx(path: str | Path, size: tuple[int, int] | None = None, mean=None, std=None,
                check: bool = True) -> Imported:
    """The spec and weights of the ONNX model at `path` (see the module doc). `size`: height and width where the
    model's are dynamic; `mean` / `std`: the preprocessing (per channel, of pixels scaled to [0, 1])."""
    g = convert_graph(path, size)
    c = g.input_shape[0]
    mean = tuple(mean) if mean is not None else DEFAULT_MEAN[:c]
    std = tuple(std) if std is not None else DEFAULT_STD[:c]
    text = spec_text(g, Path(path).name, mean, std, resize=size is not None)
    state = {f"{n.id}.{k}": torch.from_numpy(np.ascontiguousarray(v).copy()) for n in g.nodes
             for k, v in n.node.tensors.items()}
    with tempfile.TemporaryDirectory(prefix="tcc-import-") as tmp:
        spec_file, weights_file = Path(tmp) / f"{g.name}.yaml", Path(tmp) / "weights.pt"
        spec_file.write_text(text, encoding="utf-8")
        torch.save(state, weights_file)
        model = load_model(spec_file)  # a converter's mistake shows here, as the spec loader's error
        module = to_torch(model.graph, inference_only=True)
        if state:  # a model without parameters (all activations and pools) has nothing to load
            load_weights(module, model.graph, weights_file)
    verdict = {}
    if check:
        verdict = _check(g, module.eval())
    return Imported(g, text, state, verdict)


def _check(g: ImportedGraph, module) -> dict:
    """The imported lowering against ONNX Runtime on the original graph, on a seeded input (the FP32 rule)."""
    x = np.random.default_rng(0).standard_normal((1, *g.input_shape)).astype(np.float32)
    sess = session(g.onnx)
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
        exact = copy.deepcopy(module).double()(torch.from_numpy(x).double()).numpy()
    verdict = compare(want.reshape(got.shape), got, "fp32", exact=exact)
    if not verdict["passed"]:
        raise SelfCheckError(f"the imported spec's PyTorch lowering differs from ONNX Runtime on the original: max "
                             f"abs {verdict['max_abs']} (the FP32 rule); an importer bug, please report it")
    return verdict
