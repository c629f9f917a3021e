"""Which kernel variant each weighted layer of an INT8 module takes on a target, read off the variants table
(variants.VARIANTS) without building anything: `explain` evaluates the matchers on each layer's data -- its node,
its input's static shape (ONNX shape inference at the deployed batch) and code type, the target's dot-product
kernel and AMX -- as the lowering does on its Relax types, and names the requantization form
(requantize_forms.FORMS) the layer takes. `tcc build --explain-kernels` prints the rows (`lines`)."""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from tcc.passes.base import infer_value_shapes
from tcc.quant.intgraph.qtypes import QGraph, accumulator_bound, window_sums
from tcc.quant.table.file import CalibrationTable

from ..isa import tvm_target
from . import requantize_forms
from .choose import dot_kernel
from .kernels import DotKernel
from .lower import int8_graph
from .variants import VARIANTS, Layer, Match, Variant, amx_stem, choose
from .variants.base import pooled_outputs

WEIGHTED = tuple(dict.fromkeys(kind for variant in VARIANTS for kind in variant.kinds))  # the kinds the table takes


@dataclass(frozen=True)
class KernelChoice:
    """One weighted layer's row: its name and kind, the variant it takes, what computes it (a dot kernel's name, an
    intrinsic's or a PrimFunc's; "-": Relax's own op), its requantization form ("" where none runs: a float output,
    a kernel that computes codes) and why the variant takes it."""

    layer: str
    kind: str
    variant: str
    kernel: str
    requantize: str
    why: str


def _nhwc(dims: tuple) -> tuple[int | None, ...]:
    """An ONNX shape as the lowering's Relax shape: 4-D channels last; None for a dimension that is not a number."""
    static = tuple(d if isinstance(d, int) else None for d in dims)
    return (static[0], static[2], static[3], static[1]) if len(static) == 4 else static


def requantization(variant: Variant, match: Match, layer: Layer) -> str:
    """The name of the requantization form the layer's output takes (requantize_forms.choose, as
    RelaxEmitter.requantize chooses it); "" where none runs."""
    n = layer.node
    if n.qout[0] is None or n.requant is None or variant.requantize == "none":
        return ""
    x = layer.params
    if n.kind == "pooled_conv":  # its accumulators sum the pooled windows
        kh, kw = n.attrs["pool"]["kernel"]
        x = window_sums(x, kh * kw)
    bound = accumulator_bound(n.kind, layer.weight, n.bias, x)
    channels = int(layer.weight.shape[1] if n.kind == "gemm" else layer.weight.shape[0])
    in_kernel = variant.requantize == "epilogue"
    return requantize_forms.choose(n.requant, channels, bound, layer.kernel, in_kernel)[0].name


def explain_graph(qg: QGraph, shapes: dict, kernel: DotKernel | None, amx: bool = False) -> list[KernelChoice]:
    """The rows of a quantized graph's weighted layers (in graph order) on a target of dot-product `kernel` (None:
    none) and AMX; `shapes`: each tensor's ONNX shape at the deployed batch."""
    pooled = pooled_outputs(qg, kernel)
    rows = []
    for n in qg.nodes:
        if n.kind not in WEIGHTED or not n.integer:
            continue
        x = n.qin[0]
        layer = Layer(n, _nhwc(shapes[n.inputs[0]]), x.dtype, x, kernel, amx, n.outputs[0] in pooled)
        variant, match = choose(layer)
        rows.append(
            KernelChoice(n.name, n.kind, variant.name, match.kernel, requantization(variant, match, layer), match.why)
        )
    return rows


def explain(onnx_model: onnx.ModelProto, table: CalibrationTable, target: str, batch: int = 1) -> list[KernelChoice]:
    """The rows of lower_int8(onnx_model, table, batch=batch, target=target)'s weighted layers: which variant and
    kernel each takes, and why, without lowering or compiling anything."""
    graph, qg = int8_graph(onnx_model, table)
    shapes = {name: dims for name, (_dtype, dims) in infer_value_shapes(graph.model, batch=batch).items()}
    shapes.update({t.name: tuple(t.dims) for t in graph.model.graph.initializer})
    return explain_graph(qg, shapes, dot_kernel(target), amx_stem.available(tvm_target(target)))


def lines(rows: list[KernelChoice]) -> list[str]:
    """The rows as aligned text, one line a layer under a header."""
    table = [("layer", "kind", "variant", "kernel", "requantization", "why")] + [
        (r.layer, r.kind, r.variant, r.kernel, r.requantize or "-", r.why) for r in rows
    ]
    widths = [max(len(row[k]) for row in table) for k in range(5)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:5], widths)), row[5]]).rstrip() for row in table]
