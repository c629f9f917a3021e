"""Calibration: FP32 ONNX graph + calibration batch -> calibration table. The one call a CLI makes.

    table = calibrate("spec/ddsnet.yaml", weights="GC.pth", data="calib/", target="ort", method="kl+cos")
    table.save("calib.json")

`calibrate` loads the spec, imports the weights, lowers to ONNX and runs the pass pipeline (tcc.lower.to_onnx and
tcc.passes), loads the data with the spec's preprocessing and calls `calibrate_onnx`, which does the work:

0. cross-layer equalization (equalize.py; `steps`, tcc.quant.table.steps): producer -> consumer pairs through a ReLU
   rescaled per channel, the same function with evened-out channel ranges; the later phases see that model;
1. one ONNX Runtime pass over the data with every float tensor exposed: min/max and a 2048-bin |x| histogram per
   tensor, and (for kl+cos) im2col rows of every conv/linear input at sampled output positions;
2. a threshold per activation tensor by the method (minmax | percentile | kl), a scale by equation (8): tensors
   never negative on the data are unsigned (0..255, zero point 0) where the target allows, others signed
   (-128..127); weights get max |w| per output channel;
3. kl+cos: the cosine fine search (cos_search.py) of every layer's weight scales and input scale;
4. target constraints: concat inputs and output share one scale, max/avg pooling and reshapes pass it through
   (union of tensor groups; a group takes the widest threshold); asymmetric targets get zero points;
5. on the final scales: optional per-layer weight rounding (rounding.py), then empirical per-channel bias
   correction (bias_correction.py), each layer on its sampled input rows.
The table records every step (its `steps` list) and stays tied to the FP32 graph it was given (model_hash).
"""

from __future__ import annotations

import copy
import hashlib
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from threadpoolctl import threadpool_limits

from ..errors import DataError
from ..frontend import lower_spec
from ..intops import INT_OPS
from .choose import choose_steps
from .collect.data import load_calibration_data
from .collect.stats import BINS, Histogram, run_batches, update_histograms, weight_stats
from .intgraph.layers import initializers, layer_of, layer_rows
from .intgraph.plan import IntGraph, plan, quantized_form
from .intgraph.widths import fit_accumulators
from .place.placer import check_nodes, check_options, place
from .scales.cos_search import Inputs, SearchSettings, cos_search
from .scales.methods import METHODS, threshold
from .steps.bias_correction import layer_shift
from .steps.equalize import STRENGTHS, choose, find_pairs, measure
from .steps.rounding import layer_codes
from .table.file import CalibrationTable, file_sha256, model_sha256
from .table.quantizer import fake_quant, qrange, scale_for_threshold
from .table.rules import RULES, TargetRules, get_rules, rules_for
from .table.steps import Steps, equalize_arrays, with_initializers
from .table.weight_codes import encode, weight_codes


def calibrate_onnx(  # noqa: PLR0913
    model: onnx.ModelProto,
    data: np.ndarray,
    method: str = "kl+cos",
    target: str | TargetRules = "ort",
    percentile: float = 99.99,
    cos_steps: int = 100,
    cos_rounds: int = 2,
    cos_rows: int = 4096,
    cos_samples: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    bins: int = BINS,
    threads: int | None = None,
    progress: bool | None = None,
    data_fingerprint: str | None = None,
    spec_hash: str | None = None,
    weights_hash: str | None = None,
    graph: IntGraph | None = None,
    steps: Steps = Steps(),
    activation_bits: int = 8,
) -> CalibrationTable:
    """Calibrate an FP32 ONNX model (after passes) on `data` [N, C, H, W] float32 under the quantization rules
    `target` (a rules name or TargetRules); returns the table. `graph`: the model's IntGraph when the caller has
    planned it already (tcc.quant.intgraph.plan; otherwise planned here, refusing a model without an integer form).
    `steps`: the post-training steps around the method (tcc.quant.table.steps). activation_bits: 8, or 16 (signed int16
    activations, where the rules' kernels take them: `wide_method` says how their ranges are chosen)."""
    if method not in METHODS:
        raise DataError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
    rules = get_rules(target)
    check_activation_bits(activation_bits, rules)
    model_hash = model_sha256(model)  # the FP32 graph a build reads the table with
    model = quantized_form(model, rules)
    graph = graph if graph is not None else plan(model, rules=rules)
    check_wide_kinds(graph, activation_bits, rules)
    if len(data) == 0:
        raise DataError("no calibration samples")
    if not np.isfinite(data).all():
        raise DataError("calibration data holds NaN or infinite values")
    settings = dict(
        method=method,
        rules=rules,
        percentile=percentile,
        cos_steps=cos_steps,
        cos_rounds=cos_rounds,
        cos_rows=cos_rows,
        cos_samples=cos_samples,
        batch_size=batch_size,
        seed=seed,
        bins=bins,
        threads=threads,
        progress=progress,
        spec_hash=spec_hash,
        weights_hash=weights_hash,
        graph=graph,
        activation_bits=activation_bits,
        model_hash=model_hash,
    )
    if data_fingerprint is None and len(data):
        data_fingerprint = hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()
    if steps.free:
        return choose_steps(
            model,
            data,
            steps,
            graph,
            rules,
            seed,
            lambda d, eq: _scaled(
                model, d, equalization=eq, rows_needed=True, data_fingerprint=data_fingerprint, **settings
            ),
            _with_layer_steps,
        )
    stage = _scaled(
        model,
        data,
        equalization=bool(steps.equalization),
        rows_needed=bool(steps.rounding or steps.bias_correction),
        data_fingerprint=data_fingerprint,
        **settings,
    )
    return _with_layer_steps(stage, steps)


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
    rounding: dict | None = None  # the rounding step's record once run: the same for every choice on this stage


def _with_layer_steps(stage: Scaled, steps: Steps) -> CalibrationTable:
    """The stage's table (a copy: one stage serves several step choices) with rounding and bias correction run as
    `steps` say."""
    table = stage.table.copy()
    wide = table.activation_bits > 8  # the steps fit to the grids the integer graph will have
    t3 = time.perf_counter()
    if wide:
        fit_accumulators(table, stage.graph)
    table.record_time("headroom", time.perf_counter() - t3)
    _layer_steps(table, stage, steps)
    t3 = time.perf_counter()
    if wide:
        fit_accumulators(table, stage.graph)
    table.record_time("headroom", time.perf_counter() - t3, add=True)
    table.record_time("total", time.perf_counter() - stage.started)
    return table


def _scaled(  # noqa: PLR0913, PLR0915
    model: onnx.ModelProto,
    data: np.ndarray,
    method: str,
    rules: TargetRules,
    percentile: float,
    cos_steps: int,
    cos_rounds: int,
    cos_rows: int,
    cos_samples: int | None,
    batch_size: int,
    seed: int,
    bins: int,
    threads: int | None,
    progress: bool | None,
    data_fingerprint: str | None,
    spec_hash: str | None,
    weights_hash: str | None,
    graph: IntGraph,
    activation_bits: int,
    equalization: bool,
    rows_needed: bool,
    model_hash: str,
) -> Scaled:
    """Equalization (when asked), the statistics, the thresholds, the fine search and the target's constraints:
    the table before its per-layer steps. rows_needed: sample the layers' input rows for those steps."""
    timing = {}
    t0 = time.perf_counter()
    fp32_hash = model_hash
    names = graph.calibrated  # every node output: a placement may quantize an island's output later
    layers = [layer_of(n) for n in graph.weighted]

    # ---- cross-layer equalization: the same function, channels of the rescalable tensors evened out
    pairs_doc: list[dict] = []
    if equalization:
        pairs = find_pairs(graph)
        if pairs:
            inits = initializers(model)
            bits = {
                c.weight: rules.weight_bits(c.op_type, c.attrs, inits[c.weight]) for p in pairs for c in p.consumers
            }
            pairs_doc = choose(
                pairs, measure(model, data, pairs, batch_size=batch_size, threads=threads, seed=seed), inits, bits
            )
            model = with_initializers(model, equalize_arrays(pairs_doc, inits))
    timing["equalization"] = time.perf_counter() - t0

    t0s = time.perf_counter()
    inits = initializers(model)
    hists = {n: Histogram(bins) for n in names}
    rng = np.random.default_rng(seed)
    base = wide_method(method) if activation_bits > 8 else "kl" if method == "kl+cos" else method
    # the fine search models 8-bit activations; at 16 bits their rounding error is ~1/128 of that and it is left out
    searching = method == "kl+cos" and cos_steps > 0 and cos_rounds > 0 and activation_bits == 8
    n_cos = len(data) if cos_samples is None else min(cos_samples, len(data))
    sampling_rows = searching or rows_needed  # the fine search and the per-layer steps work on the layers' input rows
    # each layer's rows go straight into one buffer (no concatenation of per-batch parts at the end): room for
    # every batch's draw, ceil(cos_rows * take / n_cos) rows, of which a batch smaller than that fills less
    capacity = sum(math.ceil(cos_rows * min(batch_size, n_cos - s) / n_cos) for s in range(0, n_cos, batch_size))
    rows: dict[str, np.ndarray] = {}
    filled = {l.name: 0 for l in layers}
    if progress is None:
        progress = sys.stderr.isatty() and len(data) > 64
    seen = 0
    exposed = names + sorted({l.input for l in layers} - set(names))

    def sample_rows(outs, take):  # every layer in order: one generator draws all positions
        for l in layers:
            per_batch = math.ceil(cos_rows * take / n_cos)
            part = layer_rows(l, outs[l.input][:take], inits[l.weight].shape, per_batch, rng)
            if l.name not in rows:
                rows[l.name] = np.empty((capacity, *part.shape[1:]), np.float32)
            rows[l.name][filled[l.name] : filled[l.name] + len(part)] = part
            filled[l.name] += len(part)

    with ThreadPoolExecutor(max_workers=threads or 2) as counting:
        for outs in run_batches(model, data, exposed, batch_size, threads, progress):
            nb = len(next(iter(outs.values())))
            # the rows are sampled on one thread while the others count the histograms
            sampling = (
                counting.submit(sample_rows, outs, min(nb, n_cos - seen)) if sampling_rows and seen < n_cos else None
            )
            update_histograms(hists, outs, counting)
            if sampling is not None:
                sampling.result()
            seen += nb
    timing["statistics"] = time.perf_counter() - t0s

    # ---- coarse thresholds
    t1 = time.perf_counter()
    # never negative on the data: 256 levels over [0, T] (u8 with zero point 0, or int8 with zero point -128
    # on asymmetric targets); otherwise 255 levels over [-T, T]
    signed = {
        n: activation_bits > 8 or not ((rules.unsigned_ok or rules.asymmetric) and hists[n].min >= 0) for n in names
    }  # 16 bits: int16 always (one wide type)

    full_range = {t for node in graph.nodes if INT_OPS[node.kind].full_range for t in (*node.inputs, *node.outputs)}
    groups = graph.share_groups(rules.share_concat, rules.shared_kinds)
    full_range |= {t for g in groups if full_range.intersection(g) for t in g}  # codes moved keep the range

    def one(n):
        h = hists[n]
        levels = 128 if signed[n] else 256
        how = "minmax" if n in full_range and base in ("kl", "percentile") else base
        counts = h.counts if how == "kl" else h.with_zeros  # KL ignores exact zeros (ncnn): a ReLU's spike at
        # 0 merged with its neighbours into one level dominates the divergence and drives thresholds far too low
        return n, threshold(how, counts, h.width, amax=h.amax, percentile=percentile, num_levels=levels)

    with ThreadPoolExecutor(max_workers=threads or 2) as pool:
        thr = dict(pool.map(one, names))
    if activation_bits > 8:  # a range fixed by the op is covered whole (IntOp.output_range); its group follows
        for n, amax in graph.output_amax().items():
            if n in thr and amax > thr[n].value:
                thr[n] = replace(thr[n], value=amax)
    act_scale = {n: float(scale_for_threshold(thr[n].value, activation_bits, signed[n])) for n in names}
    coarse_scale = dict(act_scale)
    timing["thresholds"] = time.perf_counter() - t1

    # ---- weights: max |w| per output channel, then the fine search
    t2 = time.perf_counter()
    wstats = weight_stats(model, layers)
    w_bits = {l.weight: rules.weight_bits(l.op, l.attrs, inits[l.weight]) for l in layers}
    w_scale = {w: scale_for_threshold(s.ch_absmax, w_bits[w]) for w, s in wstats.items()}
    w_method = dict.fromkeys(wstats, "minmax")
    result = None
    samples = {name: buf[: filled[name]] for name, buf in rows.items()}
    rows.clear()  # the buffers live on only as the samples' views
    if searching:
        with threadpool_limits(1, user_api="blas"):  # thousands of small products: no thread wake-ups
            # a full-range tensor keeps its range (the search would clip it as KL does), and a layer writing one
            # is left out: its own output's cosine does not see how a softmax after it amplifies its errors
            result = cos_search(
                [l for l in layers if l.input in act_scale and not full_range.intersection((l.input, l.output))],
                inits,
                samples,
                Inputs(
                    act_scale, signed, {n: float(scale_for_threshold(hists[n].amax, 8, signed[n])) for n in act_scale}
                ),
                SearchSettings(steps=cos_steps, rounds=cos_rounds, threads=threads or 2),
                weight_bits=w_bits,
            )
        act_scale.update(result.act_scales)
        for lr in result.layers.values():
            w_scale[lr.weight] = lr.w_scale.astype(np.float32)
            w_method[lr.weight] = "minmax+cos"
    timing["cos_search"] = time.perf_counter() - t2

    # ---- target constraints: shared scales (a group takes its widest range)
    group_of = {}
    for gi, g in enumerate(groups):
        # split_mixed_groups: a ReLU output forced signed by a signed neighbour keeps its ReLU as a float op in
        # ORT (only a zero point at the code minimum lets ORT drop it), so members share the step size but keep
        # their signedness (zero point 0 vs 128 for ORT)
        keep_sign = rules.split_mixed_groups and len({signed[n] for n in g}) > 1
        any_signed = any(signed[n] for n in g)
        # the widest range in the group; when the fine search set some members (conv inputs), only theirs count:
        # in a dense block the concat outputs feed the next convs, and the search tuned exactly those scales
        searched = [n for n in g if result is not None and n in result.act_scales]
        widest = max(act_scale[n] * qrange(activation_bits, signed[n])[1] for n in (searched or g))
        for n in g:
            if not keep_sign:
                signed[n] = any_signed
            # one step size for the whole group (T/127 when any member is signed): unsigned members keep zero
            # point 0 (their ReLU stays fusable) on the same grid, so the concat only shifts zero points, exactly
            act_scale[n] = float(scale_for_threshold(widest, activation_bits, any_signed))
            group_of[n] = gi

    # ---- scales the target fixes (TFLite: LOGISTIC's and SOFTMAX's output 1/256 with zero point -128), with their
    # groups
    fixed: dict[str, tuple[float, int]] = {}
    for node in graph.nodes:
        for op, scale, zp in rules.fixed_outputs_at(activation_bits):
            if (node.kind == "lookup" and node.lookup == op and not node.gate) or (
                node.kind == "softmax" and op == "Softmax" and node.integer
            ):
                out = node.outputs[0]
                members = next((g for g in groups if out in g), [out])
                fixed.update({m: (float(np.float32(scale)), zp) for m in members})

    # ---- the table
    tensors: dict[str, dict] = {}
    for n in names:
        h = hists[n]
        t = thr[n]
        s = act_scale[n]
        zp = 0
        is_signed = signed[n]
        sym = True
        if n in fixed:
            s, zp = fixed[n]  # int8 codes, or int16 ones at zero point 0
            is_signed, sym = True, zp == 0
        elif rules.asymmetric and not is_signed:  # int8 with zero point -128 covers [0, 255 s]
            zp, is_signed, sym = -128, True, False
        elif rules.signed_as_u8 and is_signed:  # u8 with zero point 128 covers [-128 s, 127 s]
            zp, is_signed = 128, False
        diag = {"kl": t.kl, "kl_bin": t.bin, "coarse_scale": coarse_scale[n]}
        if result and n in result.act_cos:
            diag["cos_before"], diag["cos_after"] = result.act_cos[n]
        how = method if result and n in result.act_scales else base
        entry = {
            "kind": "activation",
            "scale": s,
            "zero_point": zp,
            "bits": activation_bits,
            "symmetric": sym,
            "signed": is_signed,
            "method": "fixed by the target" if n in fixed else how,
            "threshold": t.value,
            "min": h.min,
            "max": h.max,
            "diagnostics": diag,
        }
        if n in group_of:
            entry["group"] = group_of[n]
        tensors[n] = entry
    layer_doc = {}
    for l in layers:
        sc = np.asarray(w_scale[l.weight], dtype=np.float64)
        tensors[l.weight] = {
            "kind": "weight",
            "scale": [float(v) for v in sc],
            "zero_point": 0,
            "bits": w_bits[l.weight],
            "symmetric": True,
            "signed": True,
            "axis": l.w_axis,
            "method": w_method[l.weight],
            "layer": l.name,
            **({"narrow_range": True} if rules.narrow_weights else {}),
        }
        entry = {"op": l.op, "input": l.input, "weight": l.weight, "bias": l.bias, "output": l.output}
        if result and l.name in result.layers:
            lr = result.layers[l.name]
            entry["cos_before"], entry["cos_after"] = lr.cos_before, lr.cos_after
        layer_doc[l.name] = entry
    summary = {}
    if result and result.layers:
        b = [r.cos_before for r in result.layers.values()]
        a = [r.cos_after for r in result.layers.values()]
        summary = {
            "layers_searched": len(a),
            "mean_cos_before": float(np.mean(b)),
            "mean_cos_after": float(np.mean(a)),
            "min_cos_before": float(np.min(b)),
            "min_cos_after": float(np.min(a)),
        }
    doc = {
        "format": "tcc-calibration",
        "version": 1,
        "target": rules.name,
        "method": method,
        "spec_hash": spec_hash,
        "weights_hash": weights_hash,
        "model_hash": fp32_hash,
        "data_fingerprint": data_fingerprint,
        "samples": len(data),
        "settings": {
            "percentile": percentile,
            "bins": bins,
            "levels_signed": 128,
            "levels_unsigned": 256,
            "activation_bits": activation_bits,
            "activation_method": base,
            "cos_steps": cos_steps,
            "cos_rounds": cos_rounds,
            "cos_rows": cos_rows,
            "cos_samples": n_cos if searching else 0,
            "cos_range": [0.5, 2.0],
            "seed": seed,
        },
        "created_by": "tcc.quant.calibrate",
        "timing_s": timing,
        "summary": summary,
        "tensors": tensors,
        "layers": layer_doc,
        "groups": groups,
        "steps": [
            {
                "name": "equalization",
                "enabled": bool(equalization),
                **({"settings": {"strengths": list(STRENGTHS)}, "pairs": pairs_doc} if equalization else {}),
            }
        ],
    }
    return Scaled(CalibrationTable(doc), graph, layers, inits, samples, threads, t0)


ACTIVATION_BITS = (8, 16)


def check_activation_bits(bits, rules: TargetRules, target: str | None = None) -> None:
    """`tcc calibrate --activation-bits`: a width the rules' integer kernels take, else a DataError (exit 2)."""
    if bits not in ACTIVATION_BITS:
        raise DataError(f"--activation-bits {bits}: expected one of {', '.join(map(str, ACTIVATION_BITS))}")
    if bits not in rules.activation_bits:
        takes = [r.name for r in RULES.values() if bits in r.activation_bits]
        where = (
            f"--target {target} (rules {rules.name!r})"
            if target and target != rules.name
            else f"target rules {rules.name!r}"
        )
        raise DataError(
            f"--activation-bits {bits}: {where} take "
            f"{' or '.join(map(str, rules.activation_bits))}-bit activations only (their integer kernels "
            f"read {' or '.join(map(str, rules.activation_bits))}-bit codes: add --activation-bits "
            f"{rules.activation_bits[0]}); {bits}-bit activations: --target {' or '.join(takes)}"
        )


def check_wide_kinds(graph, bits: int, rules: TargetRules, target: str | None = None) -> None:
    """At 16 bits, every integer node of the integer graph (tcc.quant.intgraph.plan.IntGraph; float islands aside) must
    be of a kind, and a lookup of a function, that the rules' 16-bit kernels take (TargetRules.wide.kinds, .lookups):
    else a DataError (exit 2) naming the node, its kind and the target, before any data is read."""
    kinds = rules.wide.kinds
    if bits <= 8 or kinds is None:
        return
    lookups = rules.wide.lookups
    # a float island (softmax, layer norm under TFLite's rules) dequantizes and quantizes at either width
    bad = next(
        (
            n
            for n in graph.nodes
            if n.integer
            and (
                n.kind not in kinds
                or (n.kind == "lookup" and lookups is not None and (n.lookup not in lookups or n.gate))
            )
        ),
        None,
    )
    if bad is not None:
        where = f"target {target or rules.name} (rules {rules.name!r})"
        raise DataError(
            f"--activation-bits {bits}: node {bad.name!r} ({bad.op_type}, integer kind {bad.kind!r}) has "
            f"no {bits}-bit form for {where}: its {bits}-bit kernels are done for "
            f"{', '.join(kinds)}{_lookups_note(lookups)}; calibrate with --activation-bits 8, or build "
            "W8A16 for TVM"
        )


def _lookups_note(lookups) -> str:
    return "" if lookups is None else f" (lookups: {', '.join(lookups)})"


def activation_bits(spec_section: dict | None, given: int | None, rules: TargetRules | None = None) -> int:
    """The activation width a calibration uses: the command line's, else the spec's `calibrate:` section's, else 8
    (or the one width `rules` take, where that is not 8: `tflite16-i32`, 16)."""
    default = 8 if rules is None or 8 in rules.activation_bits else rules.activation_bits[0]
    return int(given if given is not None else (spec_section or {}).get("activation_bits", default))


def wide_method(method: str) -> str:
    """The activation method at 16 bits. KL picks a threshold for 128 / 256 levels, trading clipping for 8-bit
    rounding; with 32768 levels the rounding error is negligible and clipping is what remains, so kl and kl+cos
    take the whole range seen (minmax); percentile and minmax stay as asked."""
    return "minmax" if method in ("kl", "kl+cos") else method


def _layer_steps(table: CalibrationTable, stage: Scaled, steps: Steps) -> None:
    """Weight rounding, then bias correction, each layer on its sampled input rows quantized at the final scale of
    its input; appended to the table's steps. The stage's initializers are the (equalized) model's."""
    tensors = table.tensors
    layers, inits, samples = stage.layers, stage.inits, stage.samples

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
    table.add_step(record)
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
    table.add_step(record)
    table.record_time("bias_correction", time.perf_counter() - t)


def calibrate(  # noqa: PLR0913
    spec: str | Path,
    weights: str | Path | None,
    data,
    target: str = "ort",
    method: str = "kl+cos",
    calib_size: int | None = 128,
    seed: int = 0,
    skip_bad: bool = False,
    overrides: dict | None = None,
    by_order: bool = False,
    key_map=None,
    opset: int = 13,
    progress: bool | None = None,
    return_inputs: bool = False,
    placement=None,
    step_switches: dict | None = None,
    log=lambda s: None,
    **kwargs,
):
    """`tcc calibrate SPEC --weights W --data DIR --target T --method M`: spec + weights + data -> table.

    The FP32 graph is the one `tcc build` makes for the same spec, weights and opset (tcc.frontend), so the table
    fits `tcc build --calib`. The model is planned onto the integer op table before any data is read: a node
    without an integer form is refused at once. kwargs go to `calibrate_onnx` (percentile, cos_steps,
    cos_rounds, cos_rows, batch_size, threads, steps: the post-training steps). Without `steps`, the steps are the
    spec's `calibrate:` section's with `step_switches` (Steps.chosen: the command line's) on top. placement
    (tcc.quant.place.placer.PlaceOptions): the placement step, run on the table calibration made.
    """
    rules = rules_for(target)
    if method not in METHODS:
        raise DataError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
    if kwargs.get("activation_bits") is not None:  # given: checked before any work (the spec's, once it is read)
        check_activation_bits(kwargs["activation_bits"], rules, target)
    if placement is not None:
        check_options(placement, rules.name)  # before minutes of work
    fe = lower_spec(spec, overrides, weights=weights, by_order=by_order, key_map=key_map, seed=seed, opset=opset)
    graph = plan(fe.onnx, rules=rules)
    if placement is not None:
        check_nodes(placement, graph)  # a misspelt --keep-float fails before the data is read
    model = fe.model
    bits = kwargs["activation_bits"] = activation_bits(model.calibrate, kwargs.get("activation_bits"), rules)
    check_activation_bits(bits, rules, target)
    check_wide_kinds(graph, bits, rules, target)
    if "steps" not in kwargs:  # resolved before the data is read: a bad --rounding-budget fails now
        kwargs["steps"] = Steps.chosen(model.calibrate, **(step_switches or {})).checked()
    cd = load_calibration_data(data, model.preprocess, model.input_shape, calib_size, seed, skip_bad, progress)
    table = calibrate_onnx(
        fe.onnx,
        cd.array,
        method=method,
        target=rules,
        seed=seed,
        progress=progress,
        data_fingerprint=cd.fingerprint,
        spec_hash=model.spec_hash,
        weights_hash=file_sha256(weights) if weights else None,
        graph=graph,
        **kwargs,
    )
    if placement is not None:
        table = place(fe.onnx, table, cd.array, placement, log)
    return (table, fe.onnx, cd.array) if return_inputs else table


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
