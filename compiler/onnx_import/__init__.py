"""`tcc import`: an ONNX image classifier as a spec plus a state_dict by the spec's names.

    imported = import_onnx("model.onnx", size=(224, 224), mean=..., std=...)
    imported.spec_text          # YAML: spec ops, residuals, branches and local blocks; ids from the module names
    imported.state_dict         # {"layer1.0.conv1.conv.weight": tensor, ...}: tcc build SPEC --weights W takes it

The stages: reader (check, fold, convert each node; the patterns package first rewrites what exporters write in parts),
fusion (spec-level patterns: gated activations, Conv + BN + act as the zoo's conv_bn_act), structure (chains,
residuals, branches, modules), blocks (which repeated pieces become local blocks), writer and text (the spec).
The spec is checked by loading it (tcc.spec.loader) and its PyTorch lowering against ONNX Runtime on the original
graph (the FP32 rule, tcc.tolerance) before anything is returned; an op with no spec equivalent is refused up front,
naming each node.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, SelfCheckError, SpecError
from ..ir import INPUT
from ..lower.to_torch import to_torch
from ..lower.torch_run import torch_run
from ..lower.weights import load_weights
from ..measure.ort import session
from ..spec.loader import load_spec
from ..tolerance import compare
from .blocks import choose_blocks
from .fusion import conv_bn_act, gated_activations, nary_adds
from .reader import ImportedGraph, convert_graph
from .structure import Flat, decompose
from .text import flow, fold_repeats, render
from .writer import SpecWriter, WrittenBlock

DEFAULT_MEAN, DEFAULT_STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


@dataclass
class Imported:
    graph: ImportedGraph
    spec_text: str
    state_dict: dict  # parameter name -> torch.Tensor
    check: dict  # the lowering against ONNX Runtime on the original (tcc.tolerance.compare's verdict)
    blocks: list[str]  # the names of the spec's local blocks

    @property
    def notes(self) -> list[str]:
        return self.graph.notes


def _layers(g: ImportedGraph, structured: bool) -> tuple[list[dict], list[WrittenBlock], dict[str, str]]:
    """The layers, the local blocks and {imported node id: spec name}: nested and with blocks, or one flat list."""
    if structured:
        items, prefix = decompose(g.nodes, INPUT)
        memo: dict = {}
        writer = SpecWriter(g.shapes, choose_blocks(items, memo), memo)
    else:
        items, prefix = [Flat(entry=INPUT, exit=g.nodes[-1].id, nodes=g.nodes)], ()
        writer = SpecWriter(g.shapes, {}, {})
    layers, names = writer.model(items, prefix)
    if g.nodes[-1].id != g.output:  # the last node written is not the output (a flat list)
        layers.append({"id": "output", "op": "identity", "in": names[g.output]})
    return fold_repeats(layers), list(writer.blocks.values()), names


def spec_text(
    g: ImportedGraph,
    source: str,
    mean,
    std,
    resize: bool,
    layers: list[dict],
    blocks: list[WrittenBlock],
    structured: bool,
) -> str:
    c, h, w = g.input_shape
    color = "RGB" if c == 3 else "L" if c == 1 else None
    how = f"nested as its modules, {len(blocks)} local block(s)" if structured else "one node per ONNX layer"
    lines = [
        f"# Imported by `tcc import` from {source} (ONNX opset {g.opset}): {how}.",
        "kind: model",
        f"name: {g.name}",
        "input:",
        f"  shape: [{c}, {h}, {w}]",
    ]
    if color:
        pre = {"color": color, "mean": list(mean), "std": list(std)}
        lines += flow("  preprocess: ", {"resize": [h, w], **pre} if resize else pre)
    if blocks:
        lines.append("blocks:")
    for b in blocks:
        named = [u for u in b.uses if u]  # the module paths of its uses (none where the names say nothing)
        uses = ": " + ", ".join(named[:2]) + (", ..." if len(named) > 2 else "") if named else ""
        lines.append(f"  {b.name}:  # {len(b.uses)} uses{uses}")
        if b.params:
            lines += flow("    params: ", b.params)
        lines += ["    body:", *render(fold_repeats(b.body), 6)]
    return "\n".join(lines + ["layers:", *render(layers, 2)]) + "\n"


def import_onnx(
    path: str | Path, size: tuple[int, int] | None = None, mean=None, std=None, check: bool = True
) -> Imported:
    """The spec and weights of the ONNX model at `path` (see the module doc). `size`: height and width where the
    model's are dynamic; `mean` / `std`: the preprocessing (per channel, of pixels scaled to [0, 1])."""
    g = convert_graph(path, size)
    for fuse in (gated_activations, nary_adds, conv_bn_act):
        g.nodes = fuse(g.nodes, g.output)
    c = g.input_shape[0]
    for key, values in (("mean", mean), ("std", std)):
        if values is not None and len(values) != c:
            raise DataError(f"{path}: {len(values)} {key} values for an input of {c} channels")
    mean = tuple(mean) if mean is not None else DEFAULT_MEAN[:c]
    std = tuple(std) if std is not None else DEFAULT_STD[:c]
    written = partial(_written, g, Path(path).name, mean, std, size is not None, check)
    try:
        return written(structured=True)
    except Exception as e:  # an importer bug in the structure: the flat list, checked the same way, still says it
        imported = written(structured=False)
        imported.notes.append(f"written as one flat list: the nested spec failed ({type(e).__name__}: {e})")
        return imported


# What `--set` means for an ONNX file given where a spec goes: the import's own options, not model parameters.
IMPORT_OPTIONS = {
    "size": "input height and width where the model's are dynamic, [H, W] or one side",
    "mean": "preprocessing: per-channel mean of [0, 1] pixels",
    "std": "preprocessing: per-channel std of [0, 1] pixels",
}


def import_options(given: dict, path: str | Path) -> dict:
    """`--set` values for the ONNX file at `path` as import_onnx's keyword arguments, checked (DataError)."""
    unknown = sorted(set(given) - set(IMPORT_OPTIONS))
    if unknown:
        raise DataError(
            f"{path}: an ONNX file carries its weights and fixed values; --set {unknown[0]}: not an import option "
            "(the import's options: "
            + "; ".join(f"{k}: {v}" for k, v in IMPORT_OPTIONS.items())
            + "; or `tcc import` it and edit the spec)"
        )
    options = {}
    if "size" in given:
        size = given["size"]
        size = [size, size] if isinstance(size, int) and not isinstance(size, bool) else size
        if not (
            isinstance(size, list)
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise DataError(f"{path}: --set size={given['size']!r}: give a positive side or [H, W]")
        options["size"] = tuple(size)
    for key in ("mean", "std"):
        if key in given:
            values = given[key]
            if not (
                isinstance(values, list)
                and values
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in values)
            ):
                raise DataError(f"{path}: --set {key}={values!r}: give a list of numbers, one per input channel")
            if key == "std" and any(v <= 0 for v in values):
                raise DataError(f"{path}: --set std={values!r}: every std must be positive")
            options[key] = tuple(float(v) for v in values)
    return options


def source_record(onnx: str, sha256: str, options: dict) -> dict:
    """What a bundle's manifest or a training run records of an ONNX file imported in memory."""
    return {
        "onnx": onnx,
        "sha256": sha256,
        "importer": "tcc import (in memory)",
        **({"import_options": {k: list(v) for k, v in options.items()}} if options else {}),
    }


def import_to_files(path: str | Path, folder: str | Path, **options) -> tuple[Path, Path]:
    """An ONNX file as a spec file and a weights file in `folder` (what a command that takes a spec does with an
    ONNX file: `tcc import` in memory, its own weights): (spec, weights). `options`: import_onnx's size, mean,
    std."""
    path = Path(path)
    imported = import_onnx(path, **options)
    spec_file, weights_file = Path(folder) / f"{path.stem}.yaml", Path(folder) / f"{path.stem}.pt"
    spec_file.write_text(imported.spec_text, encoding="utf-8")
    torch.save(imported.state_dict, weights_file)
    return spec_file, weights_file


def _written(g: ImportedGraph, source: str, mean, std, resize: bool, check: bool, structured: bool) -> Imported:
    """The spec text and state_dict, loaded by tcc's own loader and checked against ONNX Runtime."""
    layers, blocks, names = _layers(g, structured)
    text = spec_text(g, source, mean, std, resize, layers, blocks, structured)
    state = {
        f"{names[n.id]}.{k}": torch.from_numpy(np.ascontiguousarray(v).copy())
        for n in g.nodes
        for k, v in n.node.tensors.items()
    }
    with tempfile.TemporaryDirectory(prefix="tcc-import-") as tmp:
        spec_file, weights_file = Path(tmp) / f"{g.name}.yaml", Path(tmp) / "weights.pt"
        spec_file.write_text(text, encoding="utf-8")
        torch.save(state, weights_file)
        try:
            model = load_spec(spec_file)
        except SpecError as e:  # a value past the op table's limits (a resize by 100), or a converter's mistake
            line = text.splitlines()[e.where.line - 1].strip() if e.where is not None else ""
            raise DataError(
                f"{source}: the spec written for it is refused{f' at `{line}`' if line else ''}: {e.message}; "
                "nothing written"
            ) from None
        module = to_torch(model.graph, inference_only=True)
        if state:  # a model without parameters (all activations and pools) has nothing to load
            load_weights(module, model.graph, weights_file)
    verdict = _check(g, module.eval()) if check else {}
    return Imported(g, text, state, verdict, [b.name for b in blocks])


# PyTorch's float32 error, which scales the FP32 rule's bound, depends on its summation order and so on its thread
# count: the seeded full-size EfficientNetV2-S (logits up to 1.9e6) is 5.8 from float64 on 1 thread, 10.8 on 2,
# and ONNX Runtime 29.7 on any. The check takes the farther of two fixed orders, so its verdict is the same whatever
# threads the caller runs on (a pytest worker, OMP_NUM_THREADS=1).
FLOAT32_ORDERS = (1, 2)


def _check(g: ImportedGraph, module) -> dict:
    """The imported lowering against ONNX Runtime on the original graph, on a seeded input (the FP32 rule)."""
    x = np.random.default_rng(0).standard_normal((1, *g.input_shape)).astype(np.float32)
    assert g.onnx is not None  # the graph as read, kept for this check
    sess = session(g.onnx)
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    exact = torch_run(module, x, float64=True)
    got = max(
        (torch_run(module, x, threads=threads) for threads in FLOAT32_ORDERS),
        key=lambda r: float(np.max(np.abs(r - exact))),
    )
    verdict = compare(want.reshape(got.shape), got, "fp32", exact=exact)
    if not verdict["passed"]:
        raise SelfCheckError(
            f"the imported spec's PyTorch lowering differs from ONNX Runtime on the original: max "
            f"abs {verdict['max_abs']} (the FP32 rule); an importer bug, please report it"
        )
    return verdict
