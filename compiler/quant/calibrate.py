"""Calibration: FP32 ONNX graph + calibration batch -> calibration table. The one call a CLI makes.

    request = CalibrationRequest(CalibrationSettings(method="kl+cos", target="ort"))
    calibrate("spec/ddsnet.yaml", "calib/", request, weights="GC.pth").table.save("calib.json")
    table = calibrate_onnx(fp32, x, method="kl", target="tvm")   # an FP32 graph after the passes, samples in hand

`calibrate` loads the spec, imports the weights, lowers to ONNX and runs the pass pipeline (tcc.lower.to_onnx and
tcc.passes), loads the data with the spec's preprocessing and calls `calibrate_onnx`, which does the work (the
settings: tcc.quant.settings; the checks before it: tcc.quant.prepare), one function per phase over the stages of
tcc.quant.stage (a Measured, then one method's Stage). With the method `auto` or steps left free, tcc.quant.choose
judges the candidates on held-back samples first:

0. _equalize: cross-layer equalization (equalize.py; `steps`, tcc.quant.table.steps): producer -> consumer pairs
   through a ReLU rescaled per channel, the same function with evened-out channel ranges; the later phases see that
   model;
1. _statistics: one ONNX Runtime pass over the data with every float tensor exposed: min/max and a 2048-bin |x|
   histogram per tensor, and (for kl+cos) im2col rows of every conv/linear input at sampled output positions;
2. _thresholds: a threshold per activation tensor by the method (minmax | percentile | kl; the whole range for the
   full-range kinds' tensors and the gates, IntGraph.gates), a scale by equation (8):
   tensors never negative on the data are unsigned (0..255, zero point 0) where the target allows, others signed
   (-128..127);
3. _weight_scales: max |w| per output channel; kl+cos: the cosine fine search (cos_search.py) of every layer's
   weight scales and input scale;
4. _share_groups, _fixed_scales: target constraints: concat inputs and output share one scale, max/avg pooling and
   reshapes pass it through (union of tensor groups; a group takes the widest threshold), scales the target fixes;
   asymmetric targets get zero points (_activation_entries);
5. _layer_steps, on the final scales: asymmetric grids where the rules take them (asymmetric.py: a signed tensor
   on 255 steps over its clipped range), optional per-layer weight rounding (rounding.py), then empirical
   per-channel bias correction (bias_correction.py), each layer on its sampled input rows.
The table records every step (its `steps` list) and stays tied to the FP32 graph it was given (model_hash).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
from threadpoolctl import threadpool_limits

from ..frontend import Weights, lower_spec
from ..intops import INT_OPS
from ..keywords import with_keywords
from ..process.phases import phase
from . import prepare
from .choose import choose
from .collect.data import load_calibration_data
from .collect.stats import Histogram, run_batches, update_histograms, weight_stats
from .intgraph.layers import initializers, layer_rows
from .intgraph.match import IntGraph, plan, quantized_form
from .intgraph.widths import fit_accumulators
from .place.placer import place
from .scales.cos_search import Inputs, SearchSettings, cos_search
from .scales.methods import AUTO, threshold
from .scales.norm_search import NormInput, norm_inputs, norm_search, row_budget
from .scales.norm_search import rows as norm_rows
from .settings import CalibrationRequest, CalibrationRun, CalibrationSettings, Provenance
from .stage import Measured, Scaled, Stage, searching, table_document
from .steps.asymmetric import asymmetric_grids
from .steps.bias_correction import layer_shift
from .steps.equalize import choose as choose_factors
from .steps.equalize import find_pairs, measure
from .steps.rounding import layer_codes
from .table.file import CalibrationTable, file_sha256, model_sha256
from .table.quantizer import fake_quant, qrange, scale_for_threshold
from .table.records import StepRecord
from .table.rules import TargetRules, get_rules, rules_for
from .table.steps import Steps, equalize_arrays, with_initializers
from .table.weight_codes import encode, weight_codes


def calibrate_onnx(
    model: onnx.ModelProto,
    data: np.ndarray,
    settings: CalibrationSettings | None = None,
    provenance: Provenance = Provenance(),
    *,
    graph: IntGraph | None = None,
    **keywords: Any,
) -> CalibrationTable:
    """Calibrate an FP32 ONNX model (after passes) on `data` [N, C, H, W] float32 by `settings` (without steps: none
    runs; without activation_bits: 8); `keywords` are CalibrationSettings' fields over them
    (`calibrate_onnx(fp32, x, method="kl", target="tvm")`). `provenance`: what the table records of its inputs (the
    data's fingerprint, when not given, the samples' sha256). `graph`: the model's IntGraph when the caller has
    planned it already (tcc.quant.intgraph.match; otherwise planned here, refusing a model without an integer
    form). Returns the table."""
    run = _run(
        model, data, with_keywords(settings or CalibrationSettings(), keywords, "calibrate_onnx"), provenance, graph
    )
    if run.steps.free or run.method == AUTO:
        with phase("choice"):
            return choose(run, _Phases(run))
    s, steps = run.settings, run.steps
    rows_needed = bool(steps.rounding or steps.bias_correction) or searching(
        run.method, s.cos_steps, s.cos_rounds, run.activation_bits
    )
    measured = _measured(run, data, bool(steps.equalization), rows_needed)
    return _with_layer_steps(_scaled(run, measured, run.method), steps)


def _run(
    model: onnx.ModelProto,
    data: np.ndarray,
    settings: CalibrationSettings,
    provenance: Provenance,
    graph: IntGraph | None,
) -> CalibrationRun:
    """calibrate_onnx's inputs checked (tcc.quant.prepare) and resolved into what its phases share."""
    prepare.check_method(settings.method)
    prepare.check_percentile(settings.percentile)
    rules = get_rules(settings.target)
    bits = 8 if settings.activation_bits is None else settings.activation_bits
    prepare.check_activation_bits(bits, rules)
    model_hash = model_sha256(model)  # the FP32 graph a build reads the table with
    model = quantized_form(model, rules)
    graph = graph if graph is not None else plan(model, rules=rules)
    prepare.check_wide_kinds(graph, bits, rules)
    prepare.check_samples(data)
    if provenance.data_fingerprint is None:
        provenance = replace(
            provenance, data_fingerprint=hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()
        )
    steps = prepare.applicable_steps(settings.steps if settings.steps is not None else Steps(), rules, bits)
    method = settings.method if settings.method is not None else "kl+cos"  # the library's default
    resolved = replace(settings, method=method, target=rules, activation_bits=bits, steps=steps)
    return CalibrationRun(model, data, graph, rules, resolved, provenance, model_hash)


def _with_layer_steps(stage: Scaled, steps: Steps) -> CalibrationTable:
    """The stage's table (a copy: one stage serves several step choices) with asymmetric grids, rounding and bias
    correction run as `steps` say."""
    table = stage.table.copy()
    wide = table.activation_bits > 8  # the steps fit to the grids the integer graph will have
    t3 = time.perf_counter()
    if wide:
        fit_accumulators(table, stage.graph)
    table.record_time("headroom", time.perf_counter() - t3)
    with phase("layer-steps"):
        _layer_steps(table, stage, steps)
    t3 = time.perf_counter()
    if wide:
        fit_accumulators(table, stage.graph)
    table.record_time("headroom", time.perf_counter() - t3, add=True)
    table.record_time("total", time.perf_counter() - stage.started)
    return table


# ---------------------------------------------------------------------------------------------------- the phases
class _Phases:
    """A run's phases as the choice of method and steps calls them (tcc.quant.choose.Phases). `searches`: the fine
    searches made so far, shared with the phases of the same run with patterns split (`splitting`): the search reads
    only the layers' input tensors and sampled rows, which splitting x * g(x) leaves as they were, so the split
    candidate reuses its fused self's search (most of a trial's time under kl+cos) and gets the same scales."""

    def __init__(self, run: CalibrationRun, searches: dict | None = None):
        self.run = run
        self.searches: dict = searches if searches is not None else {}

    def measured(self, data: np.ndarray, equalization: bool) -> Measured:
        return _measured(self.run, data, equalization, rows_needed=True)

    def scaled(self, measured: Measured, method: str, percentile: float | None = None) -> Scaled:
        run = (
            self.run
            if percentile is None
            else replace(self.run, settings=replace(self.run.settings, percentile=percentile))
        )
        return _scaled(run, measured, method, self.searches)

    def table(self, scaled: Scaled, steps: Steps) -> CalibrationTable:
        return _with_layer_steps(scaled, steps)

    def splitting(self, patterns: tuple[str, ...]) -> _Phases:
        """The phases of the same run with `patterns` computed in two ops: another integer graph, so another
        statistics pass."""
        run, rules = self.run, self.run.rules.splitting(patterns)
        graph = plan(run.model, rules=rules)
        return _Phases(
            replace(run, graph=graph, rules=rules, settings=replace(run.settings, target=rules)), self.searches
        )


def _measured(run: CalibrationRun, data: np.ndarray, equalization: bool, rows_needed: bool) -> Measured:
    """Equalization (when asked) and the statistics pass. rows_needed: sample the layers' input rows (for the fine
    search or the per-layer steps)."""
    measured = Measured.of(run, data, equalization)
    for name, step in (("equalization", _equalize), ("statistics", _statistics)):
        t = time.perf_counter()
        with phase(name):
            step(run, measured, rows_needed)
        measured.timing[name] = time.perf_counter() - t
    return measured


def _scaled(run: CalibrationRun, measured: Measured, method: str, searches: dict | None = None) -> Scaled:
    """One method's thresholds, the fine search and the target's constraints on the statistics: the table before
    its per-layer steps. `searches`: fine searches already made, by _search_key (reused; the new one added)."""
    stage = Stage.of(run, measured, method)
    for name, step in (
        ("thresholds", _thresholds),
        ("cos_search", lambda run, stage: _weight_scales(run, stage, searches)),
    ):
        t = time.perf_counter()
        with phase(name):
            step(run, stage)
        stage.timing[name] = time.perf_counter() - t
    _share_groups(run, stage)
    _fixed_scales(run, stage)
    m = measured
    table = CalibrationTable(table_document(run, stage))
    return Scaled(table, run.graph, m.layers, m.inits, m.samples, run.settings.threads, m.started, run.rules)


def _equalize(run: CalibrationRun, m: Measured, rows_needed: bool) -> None:
    """Cross-layer equalization: the same function, channels of the rescalable tensors evened out."""
    pairs = find_pairs(run.graph) if m.equalization else []
    if pairs:
        s, inits = run.settings, initializers(m.model)
        bits = {
            w: run.rules.weight_bits(c.op_type, c.attrs, inits[w])
            for p in pairs
            for c in p.consumers
            if (w := c.weight) is not None  # a pair's consumers are weighted
        }
        ranges = measure(m.model, m.data, pairs, batch_size=s.batch_size, threads=s.threads, seed=s.seed)
        m.pairs = choose_factors(pairs, ranges, inits, bits)
        m.model = with_initializers(m.model, equalize_arrays(m.pairs, inits))


def _statistics(run: CalibrationRun, m: Measured, rows_needed: bool) -> None:
    """One ONNX Runtime pass: a histogram per tensor and, where the search or the per-layer steps need them, each
    layer's sampled input rows."""
    s, data, layers, n_cos = run.settings, m.data, m.layers, m.n_cos
    m.inits = inits = initializers(m.model)
    m.hists = {n: Histogram(s.bins) for n in m.names}
    rng = np.random.default_rng(s.seed)
    # each layer's rows go straight into one buffer (no concatenation of per-batch parts at the end): room for
    # every batch's draw, ceil(cos_rows * take / n_cos) rows, of which a batch smaller than that fills less
    capacity = sum(math.ceil(s.cos_rows * min(s.batch_size, n_cos - b) / n_cos) for b in range(0, n_cos, s.batch_size))
    rows: dict[str, np.ndarray] = {}
    filled = {l.name: 0 for l in layers}
    progress = s.progress if s.progress is not None else sys.stderr.isatty() and len(data) > 64
    seen = 0
    exposed = m.names + sorted({l.input for l in layers} - set(m.names))

    norms = [n for n in norm_inputs(run.graph) if n.tensor in exposed] if rows_needed else []
    norm_rng = np.random.default_rng([s.seed, 1])  # its own draws: the layers' rows stay as they were
    norm_parts: dict[NormInput, list[np.ndarray]] = {n: [] for n in norms}

    def sample_rows(outs, take):  # every layer in order: one generator draws all positions
        for n in norms:  # the rows a normalization's statistics cover (tcc.quant.scales.norm_search)
            x = outs[n.tensor]
            per_batch = math.ceil(row_budget(x.shape, n.axes, s.cos_rows) * take / n_cos)
            norm_parts[n].append(norm_rows(x[:take], n.axes, per_batch, norm_rng))
        for l in layers:
            per_batch = math.ceil(s.cos_rows * take / n_cos)
            part = layer_rows(l, outs[l.input][:take], inits[l.weight].shape, per_batch, rng)
            if l.name not in rows:
                rows[l.name] = np.empty((capacity, *part.shape[1:]), np.float32)
            rows[l.name][filled[l.name] : filled[l.name] + len(part)] = part
            filled[l.name] += len(part)

    with ThreadPoolExecutor(max_workers=s.threads or 2) as counting:
        for outs in run_batches(m.model, data, exposed, s.batch_size, s.threads, progress):
            nb = len(next(iter(outs.values())))
            # the rows are sampled on one thread while the others count the histograms
            sampling = (
                counting.submit(sample_rows, outs, min(nb, n_cos - seen)) if rows_needed and seen < n_cos else None
            )
            update_histograms(m.hists, outs, counting)
            if sampling is not None:
                sampling.result()
            seen += nb
    m.samples = {name: buf[: filled[name]] for name, buf in rows.items()}  # the buffers live on as these views
    m.norm_rows = {n: np.concatenate(parts) for n, parts in norm_parts.items() if parts}


def _thresholds(run: CalibrationRun, stage: Stage) -> None:
    """The coarse threshold of every tensor by the method, and its scale."""
    rules, bits, graph = run.rules, run.activation_bits, run.graph
    hists, names = stage.measured.hists, stage.measured.names
    # never negative on the data: 256 levels over [0, T] (u8 with zero point 0, or int8 with zero point -128
    # on asymmetric targets); otherwise 255 levels over [-T, T]
    signed = {
        n: bits > 8 or not ((rules.unsigned_ok or rules.asymmetric) and hists[n].min >= 0) for n in names
    }  # 16 bits: int16 always (one wide type)

    full_range = {t for node in graph.nodes if INT_OPS[node.kind].full_range for t in (*node.inputs, *node.outputs)}
    full_range |= graph.gates()
    groups = graph.share_groups(rules.share_concat, rules.shared_kinds)
    full_range |= {t for g in groups if full_range.intersection(g) for t in g}  # codes moved keep the range

    def one(n):
        h = hists[n]
        levels = 128 if signed[n] else 256
        how = "minmax" if n in full_range and stage.base in ("kl", "percentile") else stage.base
        counts = h.counts if how == "kl" else h.with_zeros  # KL ignores exact zeros (ncnn): a ReLU's spike at
        # 0 merged with its neighbours into one level dominates the divergence and drives thresholds far too low
        return n, threshold(how, counts, h.width, amax=h.amax, percentile=run.settings.percentile, num_levels=levels)

    with ThreadPoolExecutor(max_workers=run.settings.threads or 2) as pool:
        thr = dict(pool.map(one, names))
    if bits > 8:  # a range fixed by the op is covered whole (IntOp.output_range); its group follows
        for n, amax in graph.output_amax().items():
            if n in thr and amax > thr[n].value:
                thr[n] = replace(thr[n], value=amax)
    stage.thr, stage.signed, stage.full_range, stage.groups = thr, signed, full_range, groups
    stage.act_scale = {n: float(scale_for_threshold(thr[n].value, bits, signed[n])) for n in names}
    stage.coarse_scale = dict(stage.act_scale)


def _search_key(stage: Stage) -> tuple:
    """What a fine search depends on beyond the graph's layers: the samples, the equalization's factors (its
    records; none when off), the method."""
    m = stage.measured
    samples = hashlib.sha256(np.ascontiguousarray(m.data).tobytes()).hexdigest()
    return samples, json.dumps(m.pairs, sort_keys=True), stage.method


def _weight_scales(run: CalibrationRun, stage: Stage, searches: dict | None = None) -> None:
    """Weights: max |w| per output channel, then the fine search (kl+cos) of weight and input scales (the one in
    `searches` under the stage's _search_key when there is one)."""
    m = stage.measured
    layers, inits = m.layers, m.inits
    wstats = weight_stats(m.model, layers)
    stage.w_bits = w_bits = {l.weight: run.rules.weight_bits(l.op, l.attrs, inits[l.weight]) for l in layers}
    stage.w_scale = {w: scale_for_threshold(st.ch_absmax, w_bits[w]) for w, st in wstats.items()}
    stage.w_method = dict.fromkeys(wstats, "minmax")
    if not stage.searching:
        return
    key = _search_key(stage) if searches is not None else None
    result = searches.get(key) if searches is not None else None
    if result is None:
        result = _search(run, stage, w_bits)
        if searches is not None:
            searches[key] = result
    stage.act_scale.update(result.act_scales)
    for lr in result.layers.values():
        stage.w_scale[lr.weight] = lr.w_scale.astype(np.float32)
        stage.w_method[lr.weight] = "minmax+cos"
    stage.result = result


def _search(run: CalibrationRun, stage: Stage, w_bits: dict):
    """The fine search (tcc.quant.scales.cos_search) of the stage's layers' weight and input scales, and of the
    scales of the tensors normalizations read (tcc.quant.scales.norm_search)."""
    m, s, layers, inits = stage.measured, run.settings, stage.measured.layers, stage.measured.inits
    with threadpool_limits(1, user_api="blas"):  # thousands of small products: no thread wake-ups
        # a full-range tensor keeps its range (the search would clip it as KL does), and a layer writing one
        # is left out: its own output's cosine does not see how a softmax after it amplifies its errors
        result = cos_search(
            [
                l
                for l in layers
                if l.input in stage.act_scale and not stage.full_range.intersection((l.input, l.output))
            ],
            inits,
            m.samples,
            Inputs(
                stage.act_scale,
                stage.signed,
                {n: float(scale_for_threshold(m.hists[n].amax, 8, stage.signed[n])) for n in stage.act_scale},
            ),
            SearchSettings(steps=s.cos_steps, rounds=s.cos_rounds, threads=s.threads or 2),
            weight_bits=w_bits,
        )
    _search_norm_inputs(stage, result)
    return result


def _search_norm_inputs(stage: Stage, result) -> None:
    """The scale of each tensor a normalization reads (its rows sampled by _statistics) and no searched layer does,
    by the normalized output's cosine (tcc.quant.scales.norm_search), added to the search's result; a full-range
    tensor keeps its range."""
    m = stage.measured
    for n, sampled in m.norm_rows.items():
        t = n.tensor
        if t in result.act_scales or t in stage.full_range or t not in stage.act_scale:
            continue
        scale, cosines = norm_search(sampled, n.eps, stage.act_scale[t], m.hists[t].amax, stage.signed[t])
        result.act_scales[t], result.act_cos[t] = scale, cosines


def _share_groups(run: CalibrationRun, stage: Stage) -> None:
    """Target constraints: shared scales (a group takes its widest range)."""
    signed, act_scale, result, bits = stage.signed, stage.act_scale, stage.result, run.activation_bits
    for gi, g in enumerate(stage.groups):
        # split_mixed_groups: a ReLU output forced signed by a signed neighbour keeps its ReLU as a float op in
        # ORT (only a zero point at the code minimum lets ORT drop it), so members share the step size but keep
        # their signedness (zero point 0 vs 128 for ORT)
        keep_sign = run.rules.split_mixed_groups and len({signed[n] for n in g}) > 1
        any_signed = any(signed[n] for n in g)
        # the widest range in the group; when the fine search set some members (conv inputs), only theirs count:
        # in a dense block the concat outputs feed the next convs, and the search tuned exactly those scales
        searched = [n for n in g if result is not None and n in result.act_scales]
        widest = max(act_scale[n] * qrange(bits, signed[n])[1] for n in (searched or g))
        for n in g:
            if not keep_sign:
                signed[n] = any_signed
            # one step size for the whole group (T/127 when any member is signed): unsigned members keep zero
            # point 0 (their ReLU stays fusable) on the same grid, so the concat only shifts zero points, exactly
            act_scale[n] = float(scale_for_threshold(widest, bits, any_signed))
            stage.group_of[n] = gi


def _fixed_scales(run: CalibrationRun, stage: Stage) -> None:
    """Scales the target fixes (TFLite: LOGISTIC's and SOFTMAX's output 1/256 with zero point -128), with their
    groups."""
    for node in run.graph.nodes:
        for op, scale, zp in run.rules.fixed_outputs_at(run.activation_bits):
            if (node.kind == "lookup" and node.lookup == op and not node.gate) or (
                node.kind == "softmax" and op == "Softmax" and node.integer
            ):
                out = node.outputs[0]
                members = next((g for g in stage.groups if out in g), [out])
                stage.fixed.update({m: (float(np.float32(scale)), zp) for m in members})


def _asymmetric_step(table: CalibrationTable, steps: Steps, rules: TargetRules) -> None:
    """Asymmetric grids as `steps` say, recorded under rules that take them (8-bit u8 at any zero point: ORT)."""
    if rules.ranged and table.activation_bits == 8:
        t = time.perf_counter()
        moved = asymmetric_grids(table) if steps.asymmetric else []
        table.add_step(cast(StepRecord, {"name": "asymmetric", "enabled": bool(steps.asymmetric), "tensors": moved}))
        table.record_time("asymmetric", time.perf_counter() - t)


def _layer_steps(table: CalibrationTable, stage: Scaled, steps: Steps) -> None:
    """Weight rounding, then bias correction, each layer on its sampled input rows quantized at the final scale of
    its input; appended to the table's steps. The stage's initializers are the (equalized) model's."""
    tensors = table.tensors
    layers, inits, samples = stage.layers, stage.inits, stage.samples
    _asymmetric_step(table, steps, stage.rules)

    def quantized_rows(l):
        e = tensors[l.input]
        return fake_quant(samples[l.name], e["scale"], e["bits"], e["signed"], zero_point=e["zero_point"])

    t = time.perf_counter()
    record: dict = {"name": "rounding", "enabled": bool(steps.rounding)}
    if (
        steps.rounding
        and stage.rounding is not None
        and stage.rounding["settings"]["sweeps"] == steps.rounding_sweeps
        and stage.rounding["settings"]["budget_s"] == steps.rounding_budget
    ):
        record = copy.deepcopy(stage.rounding)  # chosen on this stage's scales and rows already
    elif steps.rounding:
        weights, errors, reached = {}, {}, 0
        budget = steps.rounding_budget
        for l in layers:
            if budget is not None and time.perf_counter() - t > budget:
                break
            reached += 1
            e = tensors[l.weight]
            codes, before, after = layer_codes(
                l,
                inits[l.weight],
                samples[l.name],
                quantized_rows(l),
                np.asarray(e["scale"], np.float32),
                e["bits"],
                bool(e.get("narrow_range")),
                steps.rounding_sweeps,
            )
            weights[l.weight] = encode(codes, inits[l.weight], np.asarray(e["scale"], np.float32), l.w_axis)
            errors[l.name] = {"error_before": before, "error_after": after}
        record.update(
            settings={"sweeps": steps.rounding_sweeps, "budget_s": budget},
            complete=reached == len(layers),
            weights=weights,
            layers=errors,
        )
        stage.rounding = copy.deepcopy(record)
    table.add_step(cast(StepRecord, record))
    table.record_time("rounding", time.perf_counter() - t)

    t = time.perf_counter()
    record = {"name": "bias_correction", "enabled": bool(steps.bias_correction)}
    if steps.bias_correction:
        shifts, skipped = {}, []
        for l in layers:
            if not l.bias:
                skipped.append(l.name)
                continue
            w = inits[l.weight]
            shift = layer_shift(
                l, w, weight_codes(table, l.weight, w), table.weight_scale(l.weight), samples[l.name], quantized_rows(l)
            )
            shifts[l.name] = {"bias": l.bias, "shift": [float(v) for v in shift.astype(np.float32)]}
        record.update(layers=shifts, **({"skipped_without_bias": skipped} if skipped else {}))
    table.add_step(cast(StepRecord, record))
    table.record_time("bias_correction", time.perf_counter() - t)


@dataclass(frozen=True)
class Calibrated:
    """`calibrate`'s result: the table, and the FP32 graph and samples it was made from (the quality report's)."""

    table: CalibrationTable
    fp32: onnx.ModelProto
    samples: np.ndarray = field(repr=False)


def calibrate(
    spec,
    data,
    request: CalibrationRequest = CalibrationRequest(),
    *,
    weights: Weights | str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    opset: int = 13,
    log: Callable[[str], None] = lambda s: None,
) -> Calibrated:
    """`tcc calibrate SPEC --weights W --data DIR --target T --method M`: spec + weights + data -> table.

    The FP32 graph is the one `tcc build` makes for the same spec, weights and opset (tcc.frontend), so the table
    fits `tcc build --calib`. The request is checked before the spec is read, and the model planned onto the integer
    op table and checked before any data is read (tcc.quant.prepare): a node without an integer form is refused at
    once. Without steps in the request's settings, the steps are the spec's `calibrate:` section's with the request's
    switches on top; its placement step runs on the table calibration made. The weights' seed is the command's one
    seed (the random weights, the samples picked, the calibration's draws)."""
    target = request.settings.target
    rules = target if isinstance(target, TargetRules) else rules_for(target)
    named = target if isinstance(target, str) else None
    prepare.check_request(request, rules, named)  # before minutes of work
    w = Weights.of(weights)
    fe = lower_spec(spec, overrides, w, opset=opset)
    graph = plan(fe.onnx, rules=rules)
    settings = prepare.resolve(request, fe.model.calibrate, graph, rules, named)
    model = fe.model
    with phase("data"):
        cd = load_calibration_data(
            data, model.preprocess, model.input_shape, request.calib_size, w.seed, request.skip_bad, settings.progress
        )
    provenance = Provenance(cd.fingerprint, model.spec_hash, file_sha256(w.file) if w.file else None)
    table = calibrate_onnx(fe.onnx, cd.array, replace(settings, target=rules, seed=w.seed), provenance, graph=graph)
    if request.placement is not None:
        with phase("placement"):
            table = place(fe.onnx, table, cd.array, request.placement, log)
    return Calibrated(table, fe.onnx, cd.array)


def report_lines(table: CalibrationTable, top: int | None = None) -> list[str]:
    """The fine search's own numbers from the table alone: cosine of each layer's output, that layer quantized in
    isolation, before/after the search (worst first when `top` is given), then the summary. `tcc calibrate`
    prints the full quality report instead (tcc.quant.report.quality.format_report: INT8 vs FP32 per tensor and end to
    end, these cosines in its `search` column)."""
    rows = [(name, l.get("cos_before"), l.get("cos_after")) for name, l in table.layers.items()]
    if top is not None:
        rows = sorted(rows, key=lambda r: r[2] if r[2] is not None else 1.0)[:top]
    width = max([len(r[0]) for r in rows] + [5])
    out = [f"{'layer'.ljust(width)}  search cos before  search cos after"]
    for name, b, a in rows:
        fb = f"{b:.6f}" if b is not None else "-"
        fa = f"{a:.6f}" if a is not None else "-"
        out.append(f"{name.ljust(width)}  {fb:>17}  {fa:>16}")
    s = table.summary
    if s:
        out.append(
            f"mean layer cosine {s['mean_cos_before']:.6f} -> {s['mean_cos_after']:.6f}, worst "
            f"{s['min_cos_before']:.6f} -> {s['min_cos_after']:.6f} ({s['layers_searched']} layers)"
        )
    t = table.timing
    out.append(
        f"{table.method} calibration of {table.samples} samples for target {table.target}: "
        f"{t.get('total', 0):.1f} s (statistics {t.get('statistics', 0):.1f}, thresholds "
        f"{t.get('thresholds', 0):.1f}, cosine search {t.get('cos_search', 0):.1f})"
    )
    return out
