"""The calibration quality report: how far the INT8 model is from FP32, layer by layer and end to end, next to
ONNX Runtime's own `quantize_static` on the same model and data. `tcc calibrate` prints it; `--report out.json`
or `out.png` saves it.

    report = quality_report(fp32, table, data)        # fp32: the ONNX graph the table was made for (after passes)
    print("\\n".join(format_report(report)))
    save_report(report, "quality.png")               # or .json (spec/schema/quality_report.schema.json)

Per tensor (every activation of the table, topological order; like Pulsar2's precision table): the cosine and
MSE of the integer reference's tensor (`reference.run_reference`, dequantized) vs the FP32 tensor from ONNX
Runtime, on a seeded subset of the calibration samples. The errors accumulate: a tensor's INT8 value comes from
INT8 inputs all the way from the graph input. The fine search's own per-layer cosine (one layer, its input
quantized in isolation) sits beside it.

End to end, on the graph's first output: the integer reference, tcc's QDQ model on ORT's integer kernels, and
ORT's `quantize_static` (QDQ, per-channel s8 weights, u8 activations) with MinMax and Entropy calibration on
the full calibration data tcc used.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
import time
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ...dense import MaskAgreement, is_dense
from ...errors import DataError
from ...files import atomic_write, check_output
from ...measure.ort import session
from ...plots import quality_chart, save
from ...resources import schema_path
from ..collect.stats import expose, input_name, per_sample_cosine
from ..intgraph.match import plan, quantized_form
from ..intgraph.qgraph import quantize_graph
from ..intgraph.reference import Reference
from ..lower.qdq import to_qdq
from ..table.file import CalibrationTable, model_sha256
from ..table.rules import RULES
from ..table.steps import equalized_model
from .fidelity import Fidelity

SUFFIXES = (".json", ".png", ".svg", ".pdf")
SCHEMA_PATH = schema_path("quality_report")
ORT_METHODS = ("MinMax", "Entropy")
WORST = 5  # at most this many tensors flagged in the printed table and labelled in the chart (a fifth of them)
DEFINITIONS = {
    "cosine": "mean over samples of the cosine of the flattened INT8 and FP32 tensors of one sample",
    "cosine_min": "the lowest per-sample cosine",
    "cosine_overall": "cosine of the INT8 and FP32 outputs of all samples taken as one vector",
    "mse": "mean over all elements and samples of (INT8 - FP32)^2",
    "rel_l2": "||INT8 - FP32||_2 / ||FP32||_2 over all elements and samples (Pulsar's 2-norm relative error)",
    "top1_agreement": "fraction of samples (and positions, for dense outputs) whose argmax over axis 1 agrees",
    "dice": "a dense output's Dice per class, 2|INT8 n FP32| / (|INT8| + |FP32|) of the pixels each mask gives it",
    "search_cos": "the fine search's cosine of a layer's output with only that layer quantized (before/after)",
}


# ---------------------------------------------------------------------------------------------------- metrics
def top1_agreement(ref: np.ndarray, got: np.ndarray) -> float:
    """Fraction of samples (and spatial positions, for dense outputs) whose argmax over axis 1 agrees."""
    if np.ndim(ref) < 2:
        raise ValueError("top-1 agreement needs an output with a class axis (axis 1)")
    return float(per_sample_agreement(ref, got).mean())


def per_sample_agreement(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Per sample, the fraction of positions whose argmax over axis 1 agrees (a classifier's: 0 or 1; an output
    without a class axis, or with one class, agrees everywhere: there is no class to lose)."""
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.ndim < 2 or ref.shape[1] < 2:
        return np.ones(len(ref))
    return (ref.argmax(axis=1) == got.argmax(axis=1)).reshape(len(ref), -1).mean(axis=1)


def output_metrics(ref: np.ndarray, got: np.ndarray) -> dict:
    """End-to-end numbers of one INT8 model's output vs the FP32 output."""
    cos = per_sample_cosine(ref, got)
    overall = per_sample_cosine(np.asarray(ref).reshape(1, -1), np.asarray(got).reshape(1, -1))[0]
    r = np.asarray(ref, np.float64)
    d = np.asarray(got, np.float64) - r
    norm = float(np.linalg.norm(r))
    return {
        "cosine_mean": _cos(cos.mean()),
        "cosine_min": _cos(cos.min()),
        "cosine_overall": _cos(overall),
        "mse": _sig(np.mean(d * d)),
        "rel_l2": _sig(float(np.linalg.norm(d)) / norm if norm else 0.0),
        "top1_agreement": round(top1_agreement(ref, got), 6),
        **(_dice(MaskAgreement.measure(ref, got)) if is_dense(ref) else {}),
    }


def _dice(masks: MaskAgreement) -> dict:
    return {"dice": list(masks.dice), "dice_min": masks.lowest_dice}


def _cos(v) -> float:
    return round(float(v), 7)  # 1e-7 resolves 1 - cosine down to the float32 noise of the outputs


def _sig(v, digits: int = 4) -> float:
    return float(f"{float(v):.{digits}g}")


# ---------------------------------------------------------------------------------------------------- ORT
@contextmanager
def _quiet_ort_quantization():
    """quantize_static logs advice (pre-processing, reduce_range) to the root logger on every call, and its
    Entropy calibrator prints progress to stdout, in the middle of the report."""
    logging.disable(logging.WARNING)
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def ort_quantize_static(
    fp32: onnx.ModelProto, data: np.ndarray, method: str, reduce_range: bool = False
) -> onnx.ModelProto:
    """ONNX Runtime's own quantize_static on `fp32` calibrated with `data` [N, ...] (one sample a batch): QDQ
    format, per-channel s8 weights, u8 activations, calibration method MinMax | Entropy | Percentile.
    reduce_range: 7-bit weights, ONNX Runtime's advice for x86 CPUs without VNNI (whose u8 x s8 pair sums
    saturate at 16 bits), as tcc's `ort` rules have them."""
    from onnxruntime.quantization import (  # deferred for start-up: ORT's quantizer, only for the comparison
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    name = input_name(fp32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: data[i : i + 1]} for i in range(len(data))])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as d, _quiet_ort_quantization():
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        onnx.save(fp32, src)
        quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, method),
            reduce_range=reduce_range,
        )
        return onnx.load(dst)


def integer_convs(model: onnx.ModelProto) -> tuple[int, int]:
    """(integer, all) of the QDQ model's Conv, ConvTranspose and Gemm nodes, integer where ONNX Runtime's QDQ
    fusions can run it on integers (QLinearConv, QGemm): its input dequantized, its output (after a Relu or Clip,
    which ORT folds into the output's range) read by QuantizeLinear nodes alone. A conv whose output reaches a float
    op directly runs in float on its dequantized input and weights (NNCF leaves the convs before MONAI's instance
    norms so: docs/notes/dense-prediction.md). The rivals' tools count it (quality_compare, import_census)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    readers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)

    def integer(node) -> bool:
        source = producers.get(node.input[0])
        out = readers.get(node.output[0], [])
        if len(out) == 1 and out[0].op_type in ("Relu", "Clip"):
            out = readers.get(out[0].output[0], [])
        return (
            bool(out)
            and source is not None
            and source.op_type == "DequantizeLinear"
            and all(r.op_type == "QuantizeLinear" for r in out)
        )

    layers = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm")]
    return sum(integer(n) for n in layers), len(layers)


def run_ort(model: onnx.ModelProto, x: np.ndarray, batch_size: int = 8, optimize: bool = True) -> np.ndarray:
    """The first output of `model` on x, ONNX Runtime with all graph optimisations (integer kernels for QDQ), or
    none (optimize=False: float fake-quant)."""
    sess = session(model, optimize=optimize)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[b : b + batch_size]})[0] for b in range(0, len(x), batch_size)])


# ---------------------------------------------------------------------------------------------------- the report
def check_report_path(path: str | Path) -> Path:
    """A report path is .json or an image (.png, .svg, .pdf) in an existing, writable directory; checked before
    any long work."""
    return check_output(path, SUFFIXES, "a quality report is written as .json or an image (.png, .svg, .pdf)")


def _subset(n: int, samples: int | None, seed: int) -> np.ndarray:
    if samples is None or samples >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, samples, replace=False))


def _op_labels(graph) -> dict[str, str]:
    """Tensor -> the integer op that writes it, e.g. Conv+Relu for a conv with its ReLU folded in, Sigmoid+Mul
    (silu) for a lookup pattern, or Gelu for a GELU written as several nodes (tcc.passes.composites)."""
    labels = {graph.input: "input"}
    producer = {n.name: n for n in graph.model.graph.node}
    for n in graph.nodes:
        composite = n.name not in producer or producer[n.name].op_type != n.op_type
        ops = n.op_type if composite else "+".join(producer[c].op_type for c in n.covers if c in producer)
        label = f"{ops} ({n.lookup})" if n.gate else ops
        for o in n.outputs:
            labels[o] = label
    return labels


def _search_cosines(graph, table: CalibrationTable) -> dict[str, tuple[str, float, float]]:
    """Tensor -> (layer, cos_before, cos_after) of the fine search; a layer maps to the tensor its integer op
    writes (after a folded activation)."""
    written = {n.name: n.outputs[0] for n in graph.weighted}
    out = {}
    for name, layer in table.layers.items():
        if "cos_after" not in layer or name not in written:
            continue
        out[written[name]] = (name, layer["cos_before"], layer["cos_after"])
    return out


@dataclass(frozen=True)
class ReportSettings:
    """How a quality report is taken: on a seeded subset of at most `samples` samples (None: all), with ORT's
    quantize_static beside tcc (`compare`: the slow part), the integer reference `batch_size` samples at a time."""

    samples: int | None = 32
    seed: int = 0
    compare: bool = True
    batch_size: int = 4  # small batches keep the int64 codes' memory low (docs/notes/quantizer-measurements.md)


def quality_report(
    fp32: onnx.ModelProto,
    table: CalibrationTable,
    data: np.ndarray,
    settings: ReportSettings = ReportSettings(),
    held_out: HeldOut | None = None,
) -> dict:
    """The report (a JSON-able dict, keys in a fixed order) for `table` on `fp32` (the ONNX graph it was made
    for) and the calibration data [N, ...]: per-tensor and end-to-end numbers on a seeded subset of samples
    (`settings`).

    With `held_out`, the numbers are taken on those samples instead (data calibration never saw; at most
    `settings.samples` of them, seeded), while ORT's quantize_static still calibrates on `data`, as tcc did."""
    if len(data) == 0:
        raise DataError("no samples for the quality report")
    fp32 = quantized_form(fp32, table.rules)  # the graph the table describes
    t0 = time.perf_counter()
    judged = data if held_out is None else held_out.array
    idx = _subset(len(judged), settings.samples, settings.seed)
    x = np.ascontiguousarray(judged[idx])
    graph = plan(fp32, rules=table.rules)
    errors = _TensorErrors.of(fp32, table)
    errors.run(quantize_graph(graph, table), x, settings.batch_size)
    timing = {"per_layer": time.perf_counter() - t0}
    layers = errors.rows(graph, fp32, _search_cosines(graph, table))
    n_worst = max(1, min(WORST, len(layers) // 5))
    worst = [r["tensor"] for r in sorted(layers, key=lambda r: (r["cosine"], r["tensor"]))[:n_worst]]
    models = _end_to_end(fp32, table, data, x, errors, settings, timing)
    timing["total"] = time.perf_counter() - t0
    samples = {
        "used": len(idx),
        "of": len(judged),
        "seed": settings.seed,
        "subset": bool(len(idx) < len(judged)),
        "indices": [int(i) for i in idx],
        **({"source": "calibration"} if held_out is None else held_out.describe(data)),
    }
    return {
        "format": "tcc-quality-report",
        "version": 1,
        "model_hash": model_sha256(fp32),
        "calibration": {
            "target": table.target,
            "method": table.method,
            "samples": table.samples,
            "data_fingerprint": table.data_fingerprint,
            "summary": table.summary,
            "timing_s": {k: round(float(v), 2) for k, v in table.timing.items()},
        },
        "samples": samples,
        "definitions": DEFINITIONS,
        "per_layer_source": "integer reference",
        "layers": layers,
        "worst_layers": worst,
        "not_compared": [n for n in errors.acts if not errors.cos_parts[n]],
        "fidelity": Fidelity.measure(
            np.concatenate(errors.fp_out), np.concatenate(errors.ref_out), samples_phrase(samples)
        ).to_json(),
        "end_to_end": {
            "output": errors.outputs[0],
            "compared_with_ort": settings.compare,
            "ort_calibration_samples": len(data) if settings.compare else 0,
            "models": models,
        },
        "timing_s": {k: round(v, 2) for k, v in timing.items()},
    }


@dataclass
class _TensorErrors:
    """The integer reference's activations against FP32's, tensor by tensor, summed over the batches; and the
    first graph output of both, for the end-to-end numbers."""

    sess: Any  # ONNX Runtime's session of the FP32 graph with every activation exposed
    inp: str
    outputs: list[str]
    acts: list[str]  # the table's activations, in table order (topological)
    exposed: list[str]
    cos_parts: dict[str, list] = field(default_factory=dict)
    sq_err: dict[str, float] = field(default_factory=dict)
    sq_ref: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, list[int]] = field(default_factory=dict)
    fp_out: list = field(default_factory=list)
    ref_out: list = field(default_factory=list)

    @classmethod
    def of(cls, fp32: onnx.ModelProto, table: CalibrationTable) -> _TensorErrors:
        inp = input_name(fp32)
        outputs = [o.name for o in fp32.graph.output]
        acts = [n for n, t in table.tensors.items() if t["kind"] == "activation"]  # table order: topological
        exposed = list(dict.fromkeys([n for n in acts if n != inp] + outputs))
        # FP32 tensors of the equalized graph (the same function): the integer graph's channels are rescaled as
        # they are
        sess = session(expose(equalized_model(fp32, table), exposed))
        errors = cls(sess, inp, outputs, acts, exposed)
        errors.cos_parts = {n: [] for n in acts}
        errors.sq_err, errors.sq_ref = dict.fromkeys(acts, 0.0), dict.fromkeys(acts, 0.0)
        errors.count = dict.fromkeys(acts, 0)
        return errors

    def run(self, qgraph, x: np.ndarray, batch_size: int) -> None:
        reference = Reference()
        for b in range(0, len(x), batch_size):
            xb = x[b : b + batch_size]
            fp = dict(zip(self.exposed, self.sess.run(self.exposed, {self.inp: xb})))
            fp[self.inp] = xb
            result, q = reference.run(qgraph, xb, return_all=True)  # int64 codes, dequantized one tensor at a time
            result = result if isinstance(result, list) else [result]
            got = dict(q)
            got.update(zip(self.outputs, result))  # graph outputs of a conv / gemm stay float (dequantized)
            self.add(fp, got)
            self.fp_out.append(fp[self.outputs[0]])
            self.ref_out.append(got[self.outputs[0]])
            del fp, got

    def add(self, fp: dict, got: dict) -> None:
        """One batch: FP32's tensors `fp` and the reference's `got` (QTensors, or float graph outputs)."""
        for n in self.acts:
            if n not in got:
                continue
            value = got[n].dequant() if hasattr(got[n], "dequant") else got[n]
            if value.shape != fp[n].shape:
                continue
            self.cos_parts[n].append(per_sample_cosine(fp[n], value))
            d = value.astype(np.float64) - fp[n].astype(np.float64)
            self.sq_err[n] += float(np.sum(d * d))
            self.sq_ref[n] += float(np.sum(np.square(fp[n], dtype=np.float64)))
            self.count[n] += d.size
            self.shapes[n] = [1, *fp[n].shape[1:]]

    def rows(self, graph, fp32: onnx.ModelProto, search: dict) -> list[dict]:
        """The per-tensor rows: every activation compared, with the fine search's cosines where it searched."""
        ops = _op_labels(graph)
        writer = {o: n.name or n.output[0] for n in fp32.graph.node for o in n.output}
        layers = []
        for n in self.acts:
            if not self.cos_parts[n]:
                continue
            cos = np.concatenate(self.cos_parts[n])
            sq_err, sq_ref = self.sq_err[n], self.sq_ref[n]
            row = {
                "tensor": n,
                "op": ops.get(n, "?"),
                "node": writer.get(n, n),
                "shape": self.shapes[n],
                "cosine": _cos(cos.mean()),
                "cosine_min": _cos(cos.min()),
                "mse": _sig(sq_err / max(self.count[n], 1)),
                "rel_l2": _sig(float(np.sqrt(sq_err / sq_ref)) if sq_ref > 0 else 0.0),
            }
            if n in search:
                row["search_layer"], before, after = search[n]
                row["search_cos_before"], row["search_cos_after"] = _cos(before), _cos(after)
            layers.append(row)
        return layers


def _end_to_end(
    fp32: onnx.ModelProto,
    table: CalibrationTable,
    data: np.ndarray,
    x: np.ndarray,
    errors: _TensorErrors,
    settings: ReportSettings,
    timing: dict,
) -> dict:
    """The end-to-end numbers on the first graph output: the integer reference, tcc's QDQ model on ORT, and
    (settings.compare) ORT's quantize_static with each of ORT_METHODS calibrated on `data`; their times in
    `timing`."""
    t1 = time.perf_counter()
    fp_out, ref_out = np.concatenate(errors.fp_out), np.concatenate(errors.ref_out)
    models = {"tcc_reference": {"label": "tcc, integer reference", **output_metrics(fp_out, ref_out)}}
    # ORT's integer kernels need rules of ORT's kernels that this CPU computes exactly (7-bit dense weights, or 8-bit
    # ones where u8 x s8 products do not saturate); a table for another target runs as float fake-quant there, the
    # values its exact integer kernels give
    ort_rules = table.rules.exact_on_ort_here()
    tcc_ort = run_ort(to_qdq(fp32, table), x, settings.batch_size, optimize=ort_rules)
    models["tcc_ort"] = {
        "label": "tcc QDQ, ORT integer kernels" if ort_rules else "tcc QDQ, ORT float fake-quant",
        **output_metrics(fp_out, tcc_ort),
    }
    timing["tcc_end_to_end"] = time.perf_counter() - t1
    if settings.compare:
        for method in ORT_METHODS:
            key, label = f"ort_{method.lower()}", f"ORT quantize_static {method}"
            t2 = time.perf_counter()
            try:
                q = ort_quantize_static(fp32, np.ascontiguousarray(data), method)
                calib_s = time.perf_counter() - t2
                models[key] = {
                    "label": label,
                    **output_metrics(fp_out, run_ort(q, x, settings.batch_size)),
                    "calib_s": round(calib_s, 2),
                }
            except Exception as e:
                models[key] = {"label": label, "error": f"{type(e).__name__}: {e}"}
            timing[key] = time.perf_counter() - t2
    return models


# ---------------------------------------------------------------------------------------------------- output
def format_report(report: dict, top: int | None = None) -> list[str]:
    """The printed report: the per-tensor table (Pulsar2-like; the worst layers flagged; only the `top` worst
    when given) and the end-to-end comparison side by side."""
    rows = report["layers"]
    if top is not None:
        rows = sorted(rows, key=lambda r: r["cosine"])[:top]
    worst = set(report["worst_layers"])
    which = samples_phrase(report["samples"])
    out = [
        f"INT8 ({report['per_layer_source']}) vs FP32 per tensor, on {which}; search = the fine search's "
        f"cosine of the layer alone (before -> after)"
    ]
    wt = max([len(r["tensor"]) for r in rows] + [6])
    wo = max([len(r["op"]) for r in rows] + [2])
    out.append(f"{'tensor'.ljust(wt)}  {'op'.ljust(wo)}  {'cosine':>9}  {'cos min':>9}  {'MSE':>10}  search")
    for r in rows:
        search = f"{r['search_cos_before']:.6f} -> {r['search_cos_after']:.6f}" if "search_cos_after" in r else ""
        flag = "  << worst" if r["tensor"] in worst else ""
        out.append(
            f"{r['tensor'].ljust(wt)}  {r['op'].ljust(wo)}  {r['cosine']:9.6f}  {r['cosine_min']:9.6f}  "
            f"{r['mse']:10.3e}  {search}".rstrip()
            + flag
        )
    if report["not_compared"]:
        out.append(f"not compared (no quantized value of its own): {', '.join(report['not_compared'])}")
    out += [""] + summary_lines(report)
    return out


@dataclass
class HeldOut:
    """Samples the report judges on that calibration never saw (`tcc calibrate --eval DIR`)."""

    array: np.ndarray  # [N, C, H, W] float32, after the spec's preprocessing
    source: str  # the folder or file they came from
    fingerprint: str

    def describe(self, calibration: np.ndarray) -> dict:
        """The report's record of them, with how many are, value for value, also calibration samples (a held-out
        set that overlaps the calibration set flatters the numbers; the CLI warns)."""
        seen = {hashlib.sha256(row.tobytes()).digest() for row in np.ascontiguousarray(calibration)}
        overlap = sum(hashlib.sha256(row.tobytes()).digest() in seen for row in np.ascontiguousarray(self.array))
        return {
            "source": "held-out",
            "path": self.source,
            "fingerprint": self.fingerprint,
            "also_calibration_samples": int(overlap),
        }


def samples_phrase(s: dict) -> str:
    """ "all 64 calibration samples", "32 of 200 held-out samples from eval/ (seeded subset, seed 0)"."""
    kind = "held-out samples from " + s["path"] if s.get("source") == "held-out" else "calibration samples"
    if s["subset"]:
        return f"{s['used']} of {s['of']} {kind} (seeded subset, seed {s['seed']})"
    return f"all {s['of']} {kind}"


def summary_lines(report: dict) -> list[str]:
    """The end-to-end block: one row per INT8 model, side by side."""
    e = report["end_to_end"]
    s = report["samples"]
    out = [
        f"end to end, output {e['output']!r} vs FP32 on {samples_phrase(s)}"
        + (
            f" (ORT quantize_static calibrated on the same {e['ort_calibration_samples']} samples as tcc)"
            if e["compared_with_ort"]
            else " (ORT quantize_static comparison skipped: --no-compare)"
        )
    ]
    rows = [(m["label"], m) for m in e["models"].values()]
    wl = max(len(label) for label, _ in rows)
    dense = any("dice" in m for _, m in rows)  # top-1 is then per pixel, and each class's Dice is shown
    out.append(
        f"{'model'.ljust(wl)}  {'cos mean':>9}  {'cos min':>9}  {'cos all':>9}  {'MSE':>10}  "
        + ("pixels  Dice min" if dense else f"{'top-1':>7}")
    )
    for label, m in rows:
        if "error" in m:
            out.append(f"{label.ljust(wl)}  failed: {m['error']}")
            continue
        dice = f"  {m['dice_min']:8.4f}" if dense and m.get("dice_min") is not None else ""
        out.append(
            f"{label.ljust(wl)}  {m['cosine_mean']:9.6f}  {m['cosine_min']:9.6f}  {m['cosine_overall']:9.6f}"
            f"  {m['mse']:10.3e}  {100 * m['top1_agreement']:6.2f}%{dice}"
        )
    ort = [e["models"].get(k) for k in ("ort_minmax", "ort_entropy")]
    metrics = ("cosine_mean", "cosine_min", "cosine_overall", "mse", "top1_agreement")
    if all(m and "error" not in m for m in ort) and all(ort[0][k] == ort[1][k] for k in metrics):
        out.append(
            "(ORT's Entropy equals its MinMax: quantize_static leaves the entropy calibrator at 128 histogram "
            "bins and 128 quantized bins, so the only candidate threshold is the full range)"
        )
    beaten = rival_line(report)
    if beaten:
        out.append(beaten)
    c = report["calibration"]
    t = c["timing_s"]
    if t:
        out.append(
            f"{c['method']} calibration of {c['samples']} samples for target {c['target']}: "
            f"{t.get('total', 0):.1f} s; report {report['timing_s']['total']:.1f} s"
        )
    return out


# issue 74's bar for "not worse than the rival": the mean cosine within this of the rival's or above, the worst
# sample's and the top-1 (per pixel) agreement not lower
RIVAL_MEAN_TOLERANCE = 0.0005
CLIPPING_METHODS = ("kl+cos", "kl", "percentile")


def rival_line(report: dict) -> str | None:
    """A WARNING when ORT's quantize_static (its best row by mean cosine) is closer to FP32 than tcc's table on the
    judged samples, by the bar of RIVAL_MEAN_TOLERANCE: what it beats and by how much, and, for a table whose ranges
    clip, that min-max's full ranges hold up better on samples unlike the calibration data (measured:
    docs/notes/segmentation.md). None where tcc holds or nothing was compared."""
    models = report["end_to_end"]["models"]
    ours = models.get("tcc_ort") or models.get("tcc_reference")
    rivals = [m for k, m in models.items() if k.startswith("ort_") and "error" not in m]
    if not ours or "error" in ours or not rivals:
        return None
    best = max(rivals, key=lambda m: m["cosine_mean"])
    lost = []
    if best["cosine_mean"] > ours["cosine_mean"] + RIVAL_MEAN_TOLERANCE:
        lost.append(f"mean cosine {ours['cosine_mean']:.6f} < {best['cosine_mean']:.6f}")
    if best["cosine_min"] > ours["cosine_min"]:
        lost.append(f"worst {ours['cosine_min']:.6f} < {best['cosine_min']:.6f}")
    if best["top1_agreement"] > ours["top1_agreement"]:
        what = "pixels keeping their class" if "dice" in best else "top-1 kept"
        lost.append(f"{what} {100 * ours['top1_agreement']:.2f}% < {100 * best['top1_agreement']:.2f}%")
    if not lost:
        return None
    method = report["calibration"]["method"]
    hint = (
        f"; {method}'s ranges clip to the calibration data, and on samples unlike it min-max's full ranges can "
        "hold up better: compare --method minmax, or calibrate on data like the deployment's"
        if method in CLIPPING_METHODS
        else "; calibrate on more, or more varied, data"
    )
    rules = RULES.get(report["calibration"].get("target"))
    if rules is not None and rules.ort_kernels and rules.dense_weight_bits < 8:  # quantize_static's are 8-bit
        hint += (
            f"; its dense weights have 8 bits, this table's {rules.dense_weight_bits} (exact on every CPU): for a "
            "deployment on x86 with VNNI or on ARM64, --target ort-w8 takes the eighth bit"
        )
    return f"WARNING: {best['label']} is closer to FP32 than this table on these samples: {'; '.join(lost)}{hint}"


def validate_report(report: dict) -> None:
    import jsonschema  # deferred for start-up: read only when a report is validated

    errors = sorted(
        jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).iter_errors(report),
        key=lambda e: list(e.path),
    )
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ValueError(f"quality report invalid at {where}: {e.message}")


def save_report(report: dict, path: str | Path) -> Path:
    """Write the report as .json (validated) or an image (.png / .svg / .pdf: the chart and the summary),
    atomically."""
    path = check_report_path(path)
    if path.suffix.lower() == ".json":
        validate_report(report)
        payload = (json.dumps(report, indent=1, allow_nan=False) + "\n").encode()

        def write(f) -> None:
            f.write(payload)

        return atomic_write(path, write)

    return save(quality_chart(report, summary_lines(report)), path)
