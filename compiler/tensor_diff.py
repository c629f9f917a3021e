"""`tcc diff A B --input X`: run two implementations of one model on one input and compare every tensor both
expose, in graph order, first divergence first. What a user runs when the board's answer looks wrong.

An endpoint (A or B) is
  a bundle directory   its backend's `tensors()` (ONNX Runtime: every tensor; TFLite: every tensor; INT8 ONNX
                       Runtime: every quantized tensor given the spec; TVM and ARM: the final output)
  a spec file / `pytorch`   the spec's PyTorch lowering (FP32) with --weights: every IR value
  `reference[:RULES]`  the integer reference executor on a calibration table (--calib, or the INT8 bundle's
                       calibration.json on the other side): every quantized tensor, dequantized, with its scale
Tensors are matched by the FP32 graph's names (the ONNX lowering's: IR node names); a BatchNormalization folded
into its Conv leaves the Conv's name on the folded value, and PyTorch's BN value is compared there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tcc.backends import get_backend
from tcc.backends.base import Exposed

from .artifact import manifest_preprocess
from .bundle import read_manifest, stable_float
from .data import load_array, load_image
from .errors import BuildError, TccError
from .frontend import Weights, lower_spec
from .quant.table.file import load_table, model_sha256
from .spec.loader import Spec

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_MIN_COSINE = 0.9999  # below this a float tensor "diverges"
DEFAULT_MAX_REL = 1e-3  # or above this max |a - b| / max |b| (a scaled tensor keeps its cosine); FP32 vs FP32: ~1e-6
DEFAULT_MAX_LSB = 1.0  # above this an integer tensor diverges (exact backends of one table: 0 LSB; ORT, which
# requantizes in float32, 1 LSB per op on its own input codes, more end to end where a flipped code is carried on)


class DiffError(TccError):
    exit_code = 2


@dataclass
class Side:
    label: str
    tensors: dict  # name -> tcc.backends.base.Exposed, in graph order
    notes: list[str] = field(default_factory=list)


@dataclass
class Context:
    spec: str | Spec | None = None  # a spec path or zoo name, or a loaded tcc.spec.loader.Spec (the Python API's)
    overrides: dict = field(default_factory=dict)
    weights: str | None = None
    by_order: bool = False
    key_map: str | None = None
    calib: str | None = None
    _fe: object = None

    @property
    def spec_label(self) -> str:
        return self.spec.path.name if isinstance(self.spec, Spec) else Path(str(self.spec)).name

    def frontend(self, why: str):
        if self._fe is None:
            if not self.spec:
                raise DiffError(f"{why} needs the model: give --spec SPEC (and --weights W)")

            self._fe = lower_spec(self.spec, self.overrides, Weights(self.weights, self.by_order, self.key_map))
        return self._fe


# ---------------------------------------------------------------------------------------------------- endpoints
def kind_of(endpoint: str) -> str:
    p = Path(endpoint)
    if endpoint == "pytorch":
        return "pytorch"
    if endpoint == "reference" or endpoint.startswith("reference:"):
        return "reference"
    if p.is_dir() and (p / "manifest.json").is_file():
        return "bundle"
    if p.is_file() and p.suffix.lower() in SPEC_SUFFIXES:
        return "spec"
    raise DiffError(
        f"{endpoint}: not a bundle directory (with manifest.json), a spec file, 'pytorch' or 'reference[:RULES]'"
    )


def load_input(path: str | Path | np.ndarray, ctx: Context, bundles: list[str]) -> np.ndarray:
    """The input, [1, C, H, W] (or the .npy's batch): an image through the spec's (or a bundle's) preprocessing;
    an array (the Python API's) as it is."""
    if isinstance(path, np.ndarray):
        return np.ascontiguousarray(path, np.float32)
    if ctx.spec:
        model = ctx.frontend("the input").model
        pre, shape = model.preprocess, tuple(model.input_shape)
    elif bundles:
        m = read_manifest(bundles[0])
        pre = manifest_preprocess(m)
        shape = tuple(m["inputs"][0]["shape"][1:])
    else:
        raise DiffError("give --spec SPEC: nothing else says what the input is")
    if Path(path).suffix.lower() == ".npy":
        return load_array(path, shape)
    return load_image(path, pre)[None]


def side(endpoint: str, x: np.ndarray, ctx: Context, other: str | None) -> Side:
    kind = kind_of(endpoint)
    if kind == "spec":
        given = ctx.spec.path if isinstance(ctx.spec, Spec) else ctx.spec
        if given and Path(given).resolve() != Path(endpoint).resolve():
            raise DiffError(
                f"{endpoint}: a second spec; diff compares implementations of one model (--spec {ctx.spec_label!r})"
            )
        ctx.spec = ctx.spec or endpoint
        kind = "pytorch"
    if kind == "pytorch":
        return _pytorch(x, ctx)
    if kind == "reference":
        return _reference(endpoint, x, ctx, other)
    return _bundle(endpoint, x, ctx)


def _pytorch(x: np.ndarray, ctx: Context) -> Side:
    import torch  # deferred for start-up: `tcc diff` between two bundles needs no torch
    from torch import fx

    fe = ctx.frontend("the PyTorch side")
    gm = fe.module
    names = dict(gm.meta["value_names"])
    graph = fe.model.graph
    readers: dict[str, int] = {}
    for n in graph.nodes.values():
        for r in n.inputs:
            readers[r.node] = readers.get(r.node, 0) + 1
    by_ir = {v: k for k, v in names.items()}
    for n in graph.nodes.values():  # a BN folded into its only reader's producer: the producer's name holds BN's value
        if (
            n.op == "batchnorm"
            and len(n.inputs) == 1
            and readers.get(n.inputs[0].node) == 1
            and graph.nodes[n.inputs[0].node].op in ("conv2d", "linear")
            and n.name in by_ir
        ):
            conv = n.inputs[0].node
            names.pop(by_ir.get(conv), None)
            names[by_ir[n.name]] = conv
    kept = {}

    class Recorder(fx.Interpreter):
        def run_node(self, node):
            out = super().run_node(node)
            if node.name in names and isinstance(out, torch.Tensor):
                kept[names[node.name]] = out.detach().numpy().astype(np.float32)
            return out

    with torch.no_grad():
        y = Recorder(gm).run(torch.from_numpy(np.ascontiguousarray(x, np.float32)))

    tensors = {k: Exposed(v) for k, v in kept.items()}
    tensors[fe.onnx.graph.output[0].name] = Exposed(y.numpy().astype(np.float32))
    return Side(f"PyTorch FP32 ({ctx.spec_label})", tensors)


def _reference(endpoint: str, x: np.ndarray, ctx: Context, other: str | None) -> Side:
    from .quant.intgraph.match import plan  # deferred for start-up: loads onnx
    from .quant.intgraph.qgraph import quantize_graph  # deferred for start-up: loads onnx
    from .quant.intgraph.reference import QTensor, Reference  # deferred for start-up: loads onnx

    calib = ctx.calib
    if calib is None and other and kind_of(other) == "bundle" and (Path(other) / "calibration.json").is_file():
        calib = str(Path(other) / "calibration.json")
    if calib is None:
        raise DiffError(
            f"{endpoint}: the integer reference needs a calibration table: --calib TABLE (or an INT8 "
            "bundle on the other side)"
        )
    fe = ctx.frontend("the integer reference")
    table = load_table(calib, spec_hash=fe.model.spec_hash, model_hash=model_sha256(fe.onnx))
    rules = endpoint.split(":", 1)[1] if ":" in endpoint else table.target
    if rules != table.target:
        raise DiffError(f"{endpoint}: {calib} was calibrated under the {table.target} rules, not {rules}")
    qg = quantize_graph(plan(fe.onnx, rules=table.rules), table, where=calib)
    y, values = Reference().run(qg, x, return_all=True)
    tensors = {}
    for name, v in values.items():
        if isinstance(v, QTensor):
            tensors[name] = Exposed(v.dequant().astype(np.float32), float(v.params.scale))
        else:
            tensors[name] = Exposed(np.asarray(v, np.float32))
    out = qg.outputs[0]
    tensors[out] = Exposed(np.asarray(y[0] if isinstance(y, list) else y, np.float32), float(qg.output_scales[out]))
    return Side(f"integer reference ({rules} rules, {Path(calib).name})", tensors)


def _bundle(endpoint: str, x: np.ndarray, ctx: Context) -> Side:
    m = read_manifest(endpoint)
    backend = get_backend(m["backend"])
    if not backend.capabilities.runs_here:
        raise DiffError(
            f"{endpoint}: a {m['target']} bundle does not run here; compare its prediction instead: "
            f"reference:{m.get('quantization', {}).get('rules', 'RULES')} with --calib "
            f"{endpoint}/calibration.json"
        )
    model = None
    notes = []
    if ctx.spec:
        fe = ctx.frontend("")
        if fe.model.spec_hash != m["model"]["spec_hash"]:
            raise DiffError(f"{endpoint}: built from another spec than {ctx.spec_label} (spec hashes differ)")
        model = fe.onnx
    tensors = backend.tensors(Path(endpoint), x, model)
    if len(tensors) == 1:
        notes.append(
            f"{m['target']} {m['precision']}: only the final output is exposed"
            + (" (give --spec and --weights to see every tensor)" if m["backend"] == "ort" else "")
        )
    return Side(f"{m['target']} {m['precision']} ({Path(endpoint).name})", tensors, notes)


# ---------------------------------------------------------------------------------------------------- comparison
def compare_sides(
    a: Side,
    b: Side,
    min_cosine: float = DEFAULT_MIN_COSINE,
    max_lsb: float = DEFAULT_MAX_LSB,
    max_rel: float = DEFAULT_MAX_REL,
) -> dict:
    order = [
        n for n in (a.tensors if len(a.tensors) >= len(b.tensors) else b.tensors) if n in a.tensors and n in b.tensors
    ]
    rows = []
    for name in order:
        ta, tb = a.tensors[name], b.tensors[name]
        va, vb = np.asarray(ta.values, np.float64), np.asarray(tb.values, np.float64)
        if va.shape != vb.shape:
            rows.append({"tensor": name, "error": f"shapes {list(va.shape)} vs {list(vb.shape)}", "diverges": True})
            continue
        with np.errstate(invalid="ignore", over="ignore"):  # a side with NaN or inf: its row says so, no warning
            d = np.abs(va - vb)
            na, nb = np.linalg.norm(va), np.linalg.norm(vb)
            cos = float(va.ravel() @ vb.ravel() / (na * nb)) if na and nb else float(na == nb)
        scale = ta.scale or tb.scale
        lsb = float(d.max()) / scale if scale and d.size else None
        ref_scale = float(np.abs(vb).max()) if vb.size else 0.0
        row = {
            "tensor": name,
            "shape": list(va.shape),
            "cosine": stable_float(cos, 7),
            "max_abs": stable_float(float(d.max()) if d.size else 0.0),
            "max_abs_over_scale": stable_float(float(d.max()) / ref_scale if ref_scale else 0.0),
            "lsb": stable_float(lsb) if lsb is not None else None,
            "worst": [int(i) for i in np.unravel_index(int(np.argmax(d)), d.shape)] if d.size else [],
        }
        both_int = ta.scale is not None and tb.scale is not None
        rel = float(d.max()) / ref_scale if ref_scale and d.size else 0.0
        row["diverges"] = (
            bool(lsb is not None and lsb > max_lsb * (1 + 1e-6))
            if both_int
            else bool(cos < min_cosine or rel > max_rel)
        )
        row["diverges"] |= not np.isfinite([cos, rel, lsb or 0.0]).all()  # NaN compares false with any bound
        rows.append(row)
    first = next((r for r in rows if r["diverges"]), None)
    return {
        "a": a.label,
        "b": b.label,
        "compared": len(rows),
        "only_a": len(a.tensors) - len(rows),
        "only_b": len(b.tensors) - len(rows),
        "first_divergence": first,
        "rows": rows,
        "thresholds": {"min_cosine": min_cosine, "max_rel": max_rel, "max_lsb_when_both_integer": max_lsb},
        "notes": a.notes + b.notes,
    }


def diff(
    a: str,
    b: str,
    input_path: str | Path | np.ndarray,
    ctx: Context,
    min_cosine: float = DEFAULT_MIN_COSINE,
    max_lsb: float = DEFAULT_MAX_LSB,
    max_rel: float = DEFAULT_MAX_REL,
) -> dict:
    bundles = [e for e in (a, b) if kind_of(e) == "bundle"]
    for e in (a, b):
        if kind_of(e) == "spec" and not ctx.spec:
            ctx.spec = e
    x = load_input(input_path, ctx, bundles)
    sa = side(a, x, ctx, b)
    sb = side(b, x, ctx, a)
    result = compare_sides(sa, sb, min_cosine, max_lsb, max_rel)
    if not result["compared"]:
        raise BuildError(f"{a} and {b} expose no tensor of the same name")
    return result


def format_diff(result: dict, every: bool = False) -> str:
    lines = [
        f"A: {result['a']}",
        f"B: {result['b']}",
        f"{result['compared']} tensors compared ({result['only_a']} only in A, {result['only_b']} only in B)",
    ]
    lines += [f"note: {n}" for n in result["notes"]]
    first = result["first_divergence"]
    t = result["thresholds"]
    if first:
        lines.append(
            f"first divergence: {first['tensor']} "
            + (
                first.get("error")
                or f"(cosine {first['cosine']}, max abs {first['max_abs']}"
                + (f", {first['lsb']} LSB" if first["lsb"] is not None else "")
                + f" at {first['worst']})"
            )
        )
    else:
        lines.append(
            f"no divergence (every tensor: cosine >= {t['min_cosine']} and max |a - b| / max |b| <= "
            f"{t['max_rel']}, or <= {t['max_lsb_when_both_integer']} LSB where both sides are integer)"
        )
    rows = result["rows"]
    if not every and len(rows) > 40:
        k = rows.index(first) if first else 0
        keep = set(range(max(0, k - 3), min(len(rows), k + 12))) | {len(rows) - 1}
        rows = [r for i, r in enumerate(rows) if i in keep]
        lines.append(
            f"(showing {len(rows)} of {result['compared']} rows"
            + (" around the first divergence" if first else "")
            + "; --all for every tensor)"
        )
    w = max([len(r["tensor"]) for r in rows] + [6])
    lines.append(f"  {'tensor'.ljust(w)}  {'cosine':>10}  {'max abs':>10}  {'/ scale':>9}  {'LSB':>6}")
    for r in rows:
        mark = "!" if r["diverges"] else " "
        if "error" in r:
            lines.append(f"{mark} {r['tensor'].ljust(w)}  {r['error']}")
            continue
        lsb = "" if r["lsb"] is None else _number(r["lsb"], "g")
        lines.append(
            f"{mark} {r['tensor'].ljust(w)}  {r['cosine']:>10}  {_number(r['max_abs'], '.4g'):>10}  "
            f"{_number(r['max_abs_over_scale'], '.3g'):>9}  {lsb:>6}"
        )
    return "\n".join(lines)


def _number(value, spec: str) -> str:
    """A measured number as `spec` formats it; a non-finite one is the name stable_float keeps it as ('nan', 'inf':
    a side whose output holds NaN, a damaged bundle's)."""
    return value if isinstance(value, str) else format(value, spec)
