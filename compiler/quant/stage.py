"""A calibration's stages, what its phases (tcc.quant.calibrate) share, and the table document a stage becomes:

Measured   equalization (when asked) and the statistics pass over the samples: the same for every activation
           method, so the method's choice (tcc.quant.choose) scales each candidate from one
Stage      one method's scales on a Measured: thresholds, the fine search, the target's constraints
Scaled     its table before the per-layer steps, and what those steps work on
table_document(run, stage)   the calibration table's JSON document (spec/schema/calibration.schema.json)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import onnx

from .collect.stats import Histogram
from .intgraph.layers import layer_of
from .intgraph.match import IntGraph
from .scales.cos_search import SearchResult
from .scales.methods import Threshold
from .scales.norm_search import NormInput
from .settings import CalibrationRun
from .steps.equalize import STRENGTHS
from .table.file import CalibrationTable
from .table.records import FIXED_BY_TARGET
from .table.rules import TargetRules


@dataclass
class Measured:
    """Equalization and the statistics pass over one set of samples: what every method's scales start from."""

    data: np.ndarray  # the samples (the choice calibrates its trials on a part)
    equalization: bool
    model: onnx.ModelProto  # the run's model, equalized when asked
    names: list[str]  # every node output: a placement may quantize an island's output later
    layers: list
    n_cos: int  # samples the layers' rows are drawn from
    started: float  # perf_counter at the start, for the table's total time
    timing: dict[str, float] = field(default_factory=dict)
    pairs: list[dict] = field(default_factory=list)  # equalization's records
    inits: dict = field(default_factory=dict)
    hists: dict[str, Histogram] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> its sampled input rows (float32)
    norm_rows: dict[NormInput, np.ndarray] = field(default_factory=dict)  # a normalization's input -> its rows

    @classmethod
    def of(cls, run: CalibrationRun, data: np.ndarray, equalization: bool) -> Measured:
        s = run.settings
        return cls(
            data,
            equalization,
            run.model,
            run.graph.calibrated,
            [layer_of(n) for n in run.graph.weighted],
            len(data) if s.cos_samples is None else min(s.cos_samples, len(data)),
            time.perf_counter(),
        )


@dataclass
class Stage:
    """One activation method's scales on a Measured, filled by the phases in the order they run."""

    measured: Measured
    method: str  # minmax | percentile | kl | kl+cos
    base: str  # the activation method at this width (kl+cos: kl, then the search)
    searching: bool  # the cosine fine search runs
    timing: dict[str, float] = field(default_factory=dict)
    # _thresholds (signed and act_scale change again in _weight_scales and _share_groups)
    thr: dict[str, Threshold] = field(default_factory=dict)
    signed: dict[str, bool] = field(default_factory=dict)
    act_scale: dict[str, float] = field(default_factory=dict)
    coarse_scale: dict[str, float] = field(default_factory=dict)
    full_range: set[str] = field(default_factory=set)
    groups: list = field(default_factory=list)
    # _weight_scales
    w_bits: dict[str, int] = field(default_factory=dict)
    w_scale: dict = field(default_factory=dict)
    w_method: dict[str, str] = field(default_factory=dict)
    result: SearchResult | None = None
    # _share_groups, _fixed_scales
    group_of: dict[str, int] = field(default_factory=dict)
    fixed: dict[str, tuple[float, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, run: CalibrationRun, measured: Measured, method: str) -> Stage:
        s, bits = run.settings, run.activation_bits
        base = wide_method(method) if bits > 8 else "kl" if method == "kl+cos" else method
        # the fine search models 8-bit activations; at 16 bits their rounding error is ~1/128 of that: left out
        return cls(measured, method, base, searching(method, s.cos_steps, s.cos_rounds, bits))


def searching(method: str, cos_steps: int, cos_rounds: int, bits: int) -> bool:
    """Whether the method runs the cosine fine search (which needs the layers' sampled rows)."""
    return method == "kl+cos" and cos_steps > 0 and cos_rounds > 0 and bits == 8


@dataclass
class Scaled:
    """A calibration before its per-layer steps: the table with every scale, and what the steps work on."""

    table: CalibrationTable
    graph: IntGraph
    layers: list
    inits: dict
    samples: dict  # layer -> its sampled input rows (float32)
    threads: int | None
    started: float  # perf_counter at the start, for the table's total time
    rules: TargetRules  # the table's (the asymmetric step runs where they take any u8 zero point)
    rounding: dict | None = None  # the rounding step's record once run: the same for every choice on this stage


def table_document(run: CalibrationRun, stage: Stage) -> dict:
    """The calibration table's JSON document of a stage (spec/schema/calibration.schema.json), before its
    per-layer steps."""
    s, source, m = run.settings, run.provenance, stage.measured
    return {
        "format": "tcc-calibration",
        "version": 1,
        "target": run.rules.name,
        **({"split_patterns": list(run.rules.split_patterns)} if run.rules.split_patterns else {}),
        "method": stage.method,
        "spec_hash": source.spec_hash,
        "weights_hash": source.weights_hash,
        "model_hash": run.model_hash,
        "data_fingerprint": source.data_fingerprint,
        "samples": len(m.data),
        "settings": {
            "percentile": s.percentile,
            "bins": s.bins,
            "levels_signed": 128,
            "levels_unsigned": 256,
            "activation_bits": run.activation_bits,
            "activation_method": stage.base,
            "cos_steps": s.cos_steps,
            "cos_rounds": s.cos_rounds,
            "cos_rows": s.cos_rows,
            "cos_samples": m.n_cos if stage.searching else 0,
            "cos_range": [0.5, 2.0],
            "seed": s.seed,
        },
        "created_by": "tcc.quant.calibrate",
        "timing_s": {**m.timing, **stage.timing},
        "summary": _summary(stage.result),
        "tensors": {**_activation_entries(run, stage), **_weight_entries(run, stage)},
        "layers": _layer_entries(stage),
        "groups": stage.groups,
        "steps": [
            {
                "name": "equalization",
                "enabled": bool(m.equalization),
                **({"settings": {"strengths": list(STRENGTHS)}, "pairs": m.pairs} if m.equalization else {}),
            }
        ],
    }


def _activation_entries(run: CalibrationRun, stage: Stage) -> dict[str, dict]:
    rules, result, tensors = run.rules, stage.result, {}
    for n in stage.measured.names:
        h = stage.measured.hists[n]
        t = stage.thr[n]
        s = stage.act_scale[n]
        zp = 0
        is_signed = stage.signed[n]
        sym = True
        if n in stage.fixed:
            s, zp = stage.fixed[n]  # int8 codes, or int16 ones at zero point 0
            is_signed, sym = True, zp == 0
        elif rules.asymmetric and not is_signed:  # int8 with zero point -128 covers [0, 255 s]
            zp, is_signed, sym = -128, True, False
        elif rules.signed_as_u8 and is_signed:  # u8 with zero point 128 covers [-128 s, 127 s]
            zp, is_signed = 128, False
        diag = {"kl": t.kl, "kl_bin": t.bin, "coarse_scale": stage.coarse_scale[n]}
        if result and n in result.act_cos:
            diag["cos_before"], diag["cos_after"] = result.act_cos[n]
        how = stage.method if result and n in result.act_scales else stage.base
        entry = {
            "kind": "activation",
            "scale": s,
            "zero_point": zp,
            "bits": run.activation_bits,
            "symmetric": sym,
            "signed": is_signed,
            "method": FIXED_BY_TARGET if n in stage.fixed else how,
            "threshold": t.value,
            "min": h.min,
            "max": h.max,
            "diagnostics": diag,
        }
        if n in stage.group_of:
            entry["group"] = stage.group_of[n]
        tensors[n] = entry
    return tensors


def _weight_entries(run: CalibrationRun, stage: Stage) -> dict[str, dict]:
    tensors = {}
    for l in stage.measured.layers:
        sc = np.asarray(stage.w_scale[l.weight], dtype=np.float64)
        tensors[l.weight] = {
            "kind": "weight",
            "scale": [float(v) for v in sc],
            "zero_point": 0,
            "bits": stage.w_bits[l.weight],
            "symmetric": True,
            "signed": True,
            "axis": l.w_axis,
            "method": stage.w_method[l.weight],
            "layer": l.name,
            **({"narrow_range": True} if run.rules.narrow_weights else {}),
        }
    return tensors


def _layer_entries(stage: Stage) -> dict[str, dict]:
    layer_doc = {}
    for l in stage.measured.layers:
        entry = {"op": l.op, "input": l.input, "weight": l.weight, "bias": l.bias, "output": l.output}
        if stage.result and l.name in stage.result.layers:
            lr = stage.result.layers[l.name]
            entry["cos_before"], entry["cos_after"] = lr.cos_before, lr.cos_after
        layer_doc[l.name] = entry
    return layer_doc


def _summary(result: SearchResult | None) -> dict:
    if not (result and result.layers):
        return {}
    b = [r.cos_before for r in result.layers.values()]
    a = [r.cos_after for r in result.layers.values()]
    return {
        "layers_searched": len(a),
        "mean_cos_before": float(np.mean(b)),
        "mean_cos_after": float(np.mean(a)),
        "min_cos_before": float(np.min(b)),
        "min_cos_after": float(np.min(a)),
    }


def wide_method(method: str) -> str:
    """The activation method at 16 bits. KL picks a threshold for 128 / 256 levels, trading clipping for 8-bit
    rounding; with 32768 levels the rounding error is negligible and clipping is what remains, so kl and kl+cos
    take the whole range seen (minmax); percentile and minmax stay as asked."""
    return "minmax" if method in ("kl", "kl+cos") else method
