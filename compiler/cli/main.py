"""The `tcc` command line: parse arguments, call one function, print, map errors to exit codes."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..artifact import open_artifact
from ..bundle import check_out
from ..errors import BuildError, DataError, Interrupted, TccError
from ..ops import OPS
from ..spec.loader import load_model, parse_overrides
from ..spec.schema import build_schema
from .args import load_spec, refuse_with_artifact, spec_args, weights_args
from .explain import register as register_explain
from .slide import register as register_slide
from .train import register as register_train


def cmd_check(args) -> int:
    model = load_spec(args)
    summary = model.graph.summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    rows = [(l["name"], l["op"], "x".join(map(str, l["shape"])) if l["shape"] and not isinstance(l["shape"][0], list)
             else " ".join("x".join(map(str, s)) for s in l["shape"]), l["params"], l["macs"], l.get("aux", False))
            for l in summary["layers"]]
    widths = [max(len(str(r[i])) for r in rows + [("name", "op", "shape", "params", "macs", 0)]) for i in range(5)]
    head = ("name", "op", "shape", "params", "macs")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        cells = [str(r[0]).ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                 f"{r[3]:,}".rjust(widths[3]), f"{r[4]:,}".rjust(widths[4])]
        print("  ".join(cells) + ("  (aux)" if r[5] else ""))
    print(f"\n{model.name}: {summary['nodes']} nodes, params {summary['params']:,}, MACs {summary['macs']:,}, "
          f"FP32 size {summary['size_bytes_fp32'] / 2**20:.2f} MiB, input {summary['input']} -> output "
          f"{summary['output']}")
    return 0


def cmd_predict(args) -> int:
    if args.artifact:
        return _predict_artifact(args)
    if not args.spec:
        raise BuildError("predict needs a SPEC or --artifact BUNDLE_DIR")
    import torch

    from ..data import load_array, load_image  # deferred for start-up: loads numpy
    from ..lower.to_torch import init_weights, to_torch  # deferred for start-up: loads torch
    from ..lower.weights import load_weights  # deferred for start-up: loads torch

    model = load_spec(args)
    module = to_torch(model.graph)
    if args.weights:
        match = load_weights(module, model.graph, args.weights, args.by_order, args.key_map,
                             layouts=model.checkpoints)
        print(f"weights: {match.report()}", file=sys.stderr)
    else:
        init_weights(module, args.seed)
        print(f"WARNING: no --weights given: using seeded random weights (seed {args.seed}); predictions are "
              "meaningless", file=sys.stderr)
    x = load_image(args.image, model.preprocess)[None] if args.image else load_array(args.input, model.input_shape)
    module.eval()
    with torch.no_grad():
        logits = module(torch.from_numpy(x)).numpy()
    _print_predictions(logits, model.labels, args.json)
    return 0


def _predict_artifact(args) -> int:
    """Run a built bundle with its own preprocessing, input shape and labels (all from its manifest)."""
    from ..data import load_array, load_image  # deferred for start-up: loads numpy

    refuse_with_artifact(args)
    artifact = open_artifact(args.artifact)
    x = load_image(args.image, artifact.preprocess)[None] if args.image else load_array(args.input,
                                                                                         artifact.input_shape)
    if artifact.warning:
        print(f"WARNING: {artifact.warning}", file=sys.stderr)
    _print_predictions(artifact.run(x), artifact.labels, args.json)
    return 0


def _print_predictions(logits, labels, as_json: bool) -> None:
    import numpy as np

    results = []
    for row in logits.reshape(len(logits), -1):
        cls = int(np.argmax(row))
        r = {"logits": [float(v) for v in row], "class": cls}
        if labels:
            r["label"] = labels[cls]
        results.append(r)
    out = results[0] if len(results) == 1 else results
    if as_json:
        print(json.dumps(out))
    else:
        for r in results:
            print(f"class {r['class']}" + (f" ({r['label']})" if "label" in r else "")
                  + "  logits " + " ".join(f"{v:.4f}" for v in r["logits"]))


def cmd_build(args) -> int:
    from tcc.backends import check_precision, get_target  # deferred for start-up: loads numpy

    from ..build import build  # deferred for start-up: loads numpy
    from ..quant.table.placement import summary_line  # deferred for start-up: loads numpy

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    check_precision(get_target(args.target), args.precision)  # an unknown target lists the known ones, exit 2
    out = args.output or f"out/{Path(args.spec).stem}-{args.target}" + (f"-{args.precision}" if args.precision else "")
    check_out(Path(out), args.force)
    if not args.weights:
        log(f"WARNING: no --weights given: building with seeded random weights (seed {args.seed}); the bundle's "
            "outputs are meaningless (recorded in its manifest). Pass --weights FILE for a usable model.")
    result = build(args.spec, args.target, out, precision=args.precision, opset=args.opset,
                   simplify=not args.no_simplify, weights=args.weights, by_order=args.by_order,
                   key_map=args.key_map, seed=args.seed, overrides=parse_overrides(args.overrides),
                   force=args.force, calib=args.calib, data=args.data, calib_options=_calib_options(args),
                   tune=args.tune, tune_log=args.tune_log, io=args.io, allow_cpu_fallback=args.allow_cpu_fallback,
                   npu_mode=args.npu_mode, count_instructions=args.count_instructions,
                   host_twin=args.host_twin, compile_worker=True, log=log)
    m = result.manifest
    print(result.report)
    r = m["self_check"]["result"]
    if "checked" in m["self_check"]:  # a kit: its float model here, the INT8 result predicted
        print(f"self-check of {m['self_check']['checked']} vs PyTorch: max abs {r['max_abs']}, cosine {r['cosine']} "
              f"(tolerance: {m['self_check']['tolerance']['rule']}) -> passed")
    elif m["precision"] == "int8":
        f = m["self_check"]["vs_fp32"]
        if r["bit_exact"]:
            exact = "bit-exact"
        elif "per_op" in r and r["per_op"].get("islands"):
            p = r["per_op"]
            exact = (f"each of {p['ops_checked']} ops on its own inputs: integer ops within {p['max_lsb_integer']} "
                     f"LSB, the {p['islands']} float islands within {p['max_lsb_islands']} LSB (end to end: max "
                     f"{r['max_abs_lsb']} LSB of the output)")
        elif "per_op" in r:
            exact = (f"each of {r['per_op']['ops_checked']} integer ops within {r['per_op']['max_lsb']} LSB on its own "
                     f"inputs (end to end: max {r['max_abs_lsb']} LSB of the output)")
        else:
            exact = f"max {r['max_abs_lsb']} LSB of the output"
        print(f"self-check vs the integer reference: {exact} (required: {r['required']}) -> passed; vs FP32: "
              f"cosine {f['cosine']}, max abs {f['max_abs']} ({f['max_abs_over_scale']} of the output scale)")
    else:
        print(f"self-check vs PyTorch: max abs {r['max_abs']}, max rel {r['max_rel']}, cosine {r['cosine']} "
              f"(tolerance: {m['self_check']['tolerance']['rule']}) -> passed")
    islands = summary_line(m.get("quantization", {}).get("float_islands", []))
    if islands:  # the float / integer split of an INT8 graph is printed, never silent
        print(islands)
    if "float16_activations" in m["self_check"]:
        e = m["self_check"]["float16_activations"]
        print(f"float16 activations (emulated): max abs {e['max_abs']} ({e['max_abs_over_scale']} of the output "
              f"scale), cosine {e['cosine']}")
    for name, c in m.get("target_checks", {}).items():  # backend checks (TVM: ARM under qemu vs host, SIMD share)
        print(_target_check_line(name, c))
    files = ", ".join(f"{f} ({v['bytes']:,} B)" for f, v in m["files"].items())
    print(f"wrote {result.out}/: {files}, manifest.json  [{m['target']} {m['precision']}, opset {m['opset']}, "
          f"{result.seconds['total']:.1f} s]")
    print("time by phase: " + format_phases(result.seconds))
    if "random_seed" in m["weights"]:
        log(f"WARNING: {m['weights']['warning']}")
    return 0


def format_phases(seconds: dict) -> str:
    """"load 0.4 s, lower 0.9 s, ... (emit: compile 5.1 s, link 1.2 s)": the top-level phases in order, each
    followed by its inner ones."""
    top = [k for k in seconds if "/" not in k and k != "total"]
    parts = []
    for k in top:
        inner = [(c[len(k) + 1:], v) for c, v in seconds.items() if c.startswith(k + "/") and c.count("/") == 1]
        parts.append(f"{k} {seconds[k]:.1f} s" + (" (" + ", ".join(f"{n} {v:.1f} s" for n, v in inner) + ")"
                                                  if inner else ""))
    return ", ".join(parts)


def _target_check_line(name: str, c: dict) -> str:
    """One line for a backend's target check in the build summary."""
    verdict = f" (required: {c['required']}) -> passed" if "required" in c else " (recorded)"
    if name == "instructions_per_inference":
        return (f"executed instructions per inference ({c['arch']}, under qemu): {c['total']:,}, of them "
                f"{c['simd']:,} SIMD, int8 multiply-accumulates {c['int8_mac']:,}, float {c['float_mac']:,}")
    if name == "instruction_mix":
        return f"instruction mix: {c['simd']:,} {c['simd_kind']} of {c['instructions']:,} instructions"
    if "max_abs" in c:
        return f"{name}: max abs {c['max_abs']}{verdict}"
    if "end_to_end_max_lsb" in c:
        per_op = c.get("per_op")
        ops = f"each of {per_op['ops_checked']} ops within {per_op['max_lsb']} LSB, " if per_op else ""
        return f"{c['kernels']}: {ops}end to end {c['end_to_end_max_lsb']} LSB from the reference{verdict}"
    return f"{name}: " + ", ".join(f"{k} {v}" for k, v in c.items())


def _calib_options(args) -> dict:
    """Calibration settings for `tcc build --data` (on-the-fly calibration), as calibrate_onnx takes them, the
    post-training steps (tcc.quant.table.steps) and the placement step's (tcc.quant.place.placer)."""
    return {"calib_size": args.calib_size, "skip_bad": args.skip_bad, "method": args.method,
            "step_switches": _step_switches(args), "placement": _place_options(args),
            "activation_bits": args.activation_bits}


def _steps_args(p) -> None:
    """The post-training steps' switches (tcc.quant.table.steps), shared by `tcc calibrate` and `tcc build --data`. Not
    given, each takes the spec's `calibrate:` section, else tcc's default."""
    from ..quant.table.steps import Steps  # deferred for start-up: loads numpy, onnx

    on_off, default = argparse.BooleanOptionalAction, Steps()

    def state(name):
        return f"default: the spec's `calibrate:` section, else {'on' if default.enabled(name) else 'off'}"

    p.add_argument("--equalization", action=on_off, default=None,
                   help="cross-layer equalization of producer -> consumer pairs through a ReLU ("
                        + state("equalization") + "; measured on the DDSNet checkpoints: README, INT8)")
    p.add_argument("--bias-correction", action=on_off, default=None,
                   help="empirical per-channel bias correction on the calibration data ("
                        + state("bias_correction") + ")")
    p.add_argument("--rounding", action=on_off, default=None,
                   help="choose each weight's rounding per layer on the calibration data (AdaRound-style; " +
                        state("rounding") + ")")
    p.add_argument("--activation-bits", type=int, choices=[8, 16], default=None,
                   help="activation width: 8 (default; the spec's `calibrate:` section may say 16), or 16: int16 "
                        "activations with 8-bit weights (W8A16; TVM targets, TFLite's 16x8 mode; ranges by minmax, no cosine search: "
                        "README, INT8)")
    p.add_argument("--rounding-budget", type=float, metavar="SECONDS",
                   help="with --rounding: stop choosing roundings after this many seconds (between layers; the table "
                        "then depends on the machine's speed and says which layers were reached)")


def _step_switches(args) -> dict:
    """The steps' switches as given (None: not given); tcc.quant.table.steps.Steps.chosen resolves them against the
    spec's `calibrate:` section where the model is loaded."""
    return {"equalization": args.equalization, "bias_correction": args.bias_correction, "rounding": args.rounding,
            "rounding_budget": args.rounding_budget}


def cmd_calibrate(args) -> int:
    from ..quant.calibrate import calibrate  # deferred for start-up: loads numpy, onnx
    from ..quant.report.quality import (
        check_report_path,
        format_report,
        quality_report,
        save_report,
    )  # deferred for start-up: loads numpy, onnx

    # user mistakes in the report options fail now, not after the (long) calibration
    if args.report:
        check_report_path(args.report)
    if args.report_samples < 1:
        raise DataError(f"--report-samples must be at least 1, not {args.report_samples}")
    held_out = _held_out(args) if args.eval else None  # read before the (long) calibration: a bad path fails now
    table, fp32, samples = calibrate(
        args.spec, args.weights, args.data, target=args.target, method=args.method, calib_size=args.calib_size,
        seed=args.seed, skip_bad=args.skip_bad, overrides=parse_overrides(args.overrides), by_order=args.by_order,
        key_map=args.key_map, opset=args.opset, percentile=args.percentile, cos_steps=args.cos_steps,
        cos_rounds=args.cos_rounds, step_switches=_step_switches(args), return_inputs=True,
        activation_bits=args.activation_bits,
        placement=_place_options(args),
        log=lambda msg: print(msg, file=sys.stderr),
    )
    table.save(args.output)  # before the report: a long calibration is kept whatever happens next
    print(f"wrote {args.output}")
    from ..quant.place.placer import placement_lines  # deferred for start-up: loads numpy, onnx
    from ..quant.table.steps import summary_lines  # deferred for start-up: loads numpy, onnx

    print("\n".join(f"step {line}" for line in summary_lines(table.doc)))
    for line in placement_lines(table):
        print(line)
    report = quality_report(fp32, table, samples, samples=args.report_samples, seed=args.seed,
                            compare=not args.no_compare, held_out=held_out)
    print("\n".join(format_report(report)))
    overlap = report["samples"].get("also_calibration_samples")
    if overlap:
        print(f"WARNING: {overlap} of the {report['samples']['of']} held-out samples in {args.eval} are also "
              "calibration samples: the held-out numbers are flattered", file=sys.stderr)
    from tcc.backends.ax.chips import CHIPS  # deferred for start-up: loads numpy

    if args.target in CHIPS:  # the predicted NPU result, in the shape of the toolchain's own table
        from ..quant.report.npu_tables import npu_table  # deferred for start-up: loads numpy

        chip = CHIPS[args.target]
        print(f"\npredicted {chip.hardware} NPU result ({chip.toolchain.name}'s table; the integer reference under "
              f"the chip's rules, on {report['samples']['used']} samples):")
        print("\n".join(npu_table(report, chip.toolchain.name)))
    if args.report:
        save_report(report, args.report)
        print(f"wrote {args.report}")
        if Path(args.report).suffix.lower() != ".json":
            judged = samples if held_out is None else held_out.array
            print(f"wrote {_save_histograms(fp32, table, judged, report, Path(args.report))}")
    return 0


def _held_out(args):
    """`--eval DIR`: every image of DIR (or the rows of a .npy/.npz) through the spec's preprocessing, the same
    loader as calibration's, so a folder that calibrates also evaluates."""
    from ..quant.collect.data import load_calibration_data  # deferred for start-up: loads numpy
    from ..quant.report.quality import HeldOut  # deferred for start-up: loads numpy, onnx

    model = load_model(args.spec, parse_overrides(args.overrides))
    data = load_calibration_data(args.eval, model.preprocess, model.input_shape, None, args.seed, args.skip_bad,
                                 what="held-out")
    return HeldOut(data.array, str(args.eval), data.fingerprint)


def _save_histograms(fp32, table, samples, report: dict, chart: Path) -> Path:
    """Beside an image report, STEM.histograms.SUFFIX: the FP32 values of the worst activation tensors (at most
    six) on the samples the report used, with the clipping threshold calibration chose."""
    from ..plots import activation_histograms, save  # deferred for start-up: loads numpy
    from ..quant.collect.stats import run_fp32  # deferred for start-up: loads numpy, onnx
    from ..quant.table.steps import equalized_model  # deferred for start-up: loads numpy, onnx

    tensors = table.doc["tensors"]
    names = [n for n in report["worst_layers"] if tensors.get(n, {}).get("kind") == "activation"][:6]
    if not names:  # no activation among the worst: the first six quantized activations
        names = [n for n, t in tensors.items() if t.get("kind") == "activation"][:6]
    values = run_fp32(equalized_model(fp32, table.doc), samples[report["samples"]["indices"]], names)
    return save(activation_histograms(values, {n: tensors[n] for n in names}),
                chart.with_name(f"{chart.stem}.histograms{chart.suffix}"))


def cmd_ops(args) -> int:
    """The op tables: the spec language's ops (tcc.ops) and the integer ops with the lowerings that take them
    (tcc.intops), so a user sees what an INT8 build for each backend accepts before writing a spec."""
    from tcc.backends import BACKENDS, get_backend  # deferred for start-up: loads numpy

    from ..intops import INT_OPS  # deferred for start-up: loads numpy

    by_backend = {b: get_backend(b).capabilities.int8_lowering for b in BACKENDS}

    if args.json:
        print(json.dumps({
            "ops": {name: {"args": [a.name for a in op.args], "doc": op.doc} for name, op in OPS.items()},
            "integer_ops": {k: {"role": op.role.value, "onnx": list(op.onnx), "lowerings": sorted(op.lowerings),
                                "doc": op.doc} for k, op in INT_OPS.items()},
            "int8_lowering_by_backend": by_backend}))
        return 0
    print("spec ops (FP32): " + ", ".join(OPS))
    print("\ninteger ops (INT8; a model builds INT8 when every node maps onto one of these):")
    rows = [(k, op.role.value, " ".join(op.onnx), " ".join(sorted(op.lowerings))) for k, op in INT_OPS.items()]
    head = ("kind", "role", "ONNX ops", "lowerings")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print("\nINT8 lowering by backend: " + ", ".join(f"{b}: {lw}" for b, lw in by_backend.items())
          + "; patterns x * sigmoid(x), x * hardsigmoid(x), x * tanh(x) are one lookup table")
    return 0


def cmd_golden(args) -> int:
    """`tcc golden check|update DIR`: every entry of a golden set now against its stored outputs, or stored again
    on purpose (printing what changed and by how much). Exit 1 when an entry fails."""
    from ..golden import check, format_rows, update  # deferred for start-up: loads numpy

    def log(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    if args.action == "check":
        rows = check(args.dir, args.model, args.entry, everything=args.all, log=log)
    else:
        rows = update(args.dir, args.model, args.entry, recalibrate=args.recalibrate, log=log)
    failed = [r for r in rows if r.failed]
    if args.json:
        print(json.dumps({"action": args.action, "passed": not failed, "rows": [r.to_json() for r in rows]}))
    else:
        print(format_rows(rows))
        total = len(rows)
        if args.action == "check":
            print(f"\n{total - len(failed)} of {total} passed" + (f"; {len(failed)} FAILED" if failed else ""))
        else:
            changed = sum(r.status in ("changed", "new") for r in rows)
            bad = sorted({r.model for r in failed})
            print(f"\n{changed} of {total} changed or new" + (
                f"; {len(failed)} failed their rule: nothing of {', '.join(bad)} was written" if failed else
                "; written"))
    return 1 if failed else 0


def cmd_diff(args) -> int:
    """`tcc diff A B --input X`: both on one input, every tensor both expose compared in graph order."""
    from ..diff import Context, diff, format_diff  # deferred for start-up: loads numpy

    ctx = Context(spec=args.spec, overrides=parse_overrides(args.overrides), weights=args.weights,
                  by_order=args.by_order, key_map=args.key_map, calib=args.calib)
    result = diff(args.a, args.b, args.input, ctx, args.min_cosine, args.max_lsb, args.max_rel)
    if args.json:
        print(json.dumps(result))
    else:
        print(format_diff(result, every=args.all))
    return 0


def cmd_bench(args) -> int:
    """`tcc bench`: one run, every engine side by side; bench.json + bench.md in --output, targets printed."""
    from ..bench import (
        BenchConfig,
        BenchModel,
        default_models,
        quick_config,
        run_bench,
        to_markdown,
    )  # deferred for start-up: loads numpy
    from ..bench.run import FULL_MATRIX  # deferred for start-up: loads numpy
    out = Path(args.output)
    work = out / "work"
    if args.quick:
        config = quick_config(work)
    elif args.specs:
        if len(args.specs) > 1 and (args.weights or args.overrides):
            raise DataError("--weights / --set apply to one spec; benchmark several specs one at a time")
        models = [BenchModel(Path(s).stem, Path(s), Path(args.weights) if args.weights else None, args.by_order,
                             parse_overrides(args.overrides)) for s in args.specs]
        for m in models:
            if not m.spec.exists():
                raise DataError(f"{m.spec}: no such spec")
        config = BenchConfig(models, work)
    else:
        config = BenchConfig(default_models(), work)
    if args.only:
        known = {f"{t}-{p}": (t, p) for t, p in FULL_MATRIX}
        wanted = [e for e in args.only.split(",") if e]
        unknown = [e for e in wanted if e not in known]
        if unknown or not wanted:
            raise DataError(f"--only: unknown bundle {', '.join(unknown) or '(none given)'}; known: "
                            + ", ".join(known))
        config.matrix = tuple(known[e] for e in wanted)
    for name in ("rounds", "runs", "calib_images", "held_out"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise DataError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
    for name in ("rounds", "runs", "calib_images", "held_out", "method"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    if args.no_memory:
        config.memory = False
    if args.no_placement:
        config.placement = False
    config.tvm_variants = args.tvm_variants
    doc = run_bench(config, progress=args.progress, log=lambda s: None)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "bench.md").write_text(to_markdown(doc) + "\n")
    for t in doc["targets"]:
        print(f"{t['status']:<12} {t['model']:<10} {t['what']}: {t['measured']} (bound {t['bound']})"
              + (f"\n{'':<23} {t['context']}" if t.get("context") else ""))
    print(f"wrote {out / 'bench.json'} and {out / 'bench.md'} ({doc['seconds']:.0f} s)")
    return 0


def cmd_report(args) -> int:
    """`tcc report SPEC... [--bundles DIR...]`: Table 1, the bundles' latency and fidelity, plots."""
    from ..bench.report import report, to_markdown  # deferred for start-up: loads numpy

    if not args.specs and not args.bundles:
        raise DataError("give at least one spec or --bundles DIR")
    if args.rounds < 1 or args.runs < 1:
        raise DataError(f"--rounds and --runs must be at least 1, not {args.rounds} and {args.runs}")
    for b in args.bundles or []:
        if not (Path(b) / "manifest.json").is_file():
            raise DataError(f"{b}: not a tcc bundle (no manifest.json)")
    doc = report(args.specs, args.bundles or [], Path(args.output), parse_overrides(args.overrides),
                 rounds=args.rounds, runs=args.runs)
    if args.json:
        print(json.dumps(doc))
    else:
        print(to_markdown(doc))
        print(f"wrote {Path(args.output) / 'report.md'}, report.json and {len(doc['plots'])} plots")
    return 0


def cmd_schema(args) -> int:
    print(json.dumps(build_schema(), indent=2))
    return 0


def _specs_args(p: argparse.ArgumentParser, specs_help: str, set_applies_to: str) -> None:
    p.add_argument("specs", nargs="*", help=specs_help)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a model parameter ({set_applies_to})")


def _placement_args(p: argparse.ArgumentParser, when: str) -> None:
    """The placement step's options (tcc.quant.place.placer), shared by calibrate and build --data."""
    p.add_argument("--min-cos", type=float, metavar="C",
                   help=f"{when}keep the fewest nodes in float (float islands) that bring the mean output cosine vs "
                        "FP32 on the calibration samples to C (measured per node, greedy by gain per cost)")
    p.add_argument("--min-worst-cos", type=float, metavar="W",
                   help=f"{when}the same placement, also until the lowest per-sample output cosine vs FP32 on those "
                        "samples is at least W (a floor for the worst input, not only the mean)")
    p.add_argument("--speed", action="store_const", const="ort",
                   help=f"{when}ort rules: keep in float the nodes whose ONNX Runtime integer kernel measures slower "
                        "than float on this CPU (profiled here), where the cosine floor (--min-cos, default 0.9995) "
                        "allows it")
    p.add_argument("--keep-float", action="append", default=[], metavar="NODE",
                   help=f"{when}keep this node of the integer graph in float (repeatable)")
    p.add_argument("--place-samples", type=int, default=16, metavar="N",
                   help=f"{when}calibration samples (seeded subset) the placement judges the cosine on (default 16)")


def _place_options(args):
    from ..quant.place.placer import PlaceOptions  # deferred for start-up: loads numpy, onnx

    return PlaceOptions(min_cos=args.min_cos, min_worst_cos=args.min_worst_cos, speed=args.speed,
                        keep_float=tuple(args.keep_float), samples=args.place_samples, seed=getattr(args, "seed", 0))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tcc", description="declarative model-graph compiler for medical CNNs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="validate a spec and print its layers, parameters and MACs")
    spec_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("predict", help="run the PyTorch lowering of a spec, or a built bundle, on an image or array")
    p.add_argument("spec", nargs="?", help="model spec (YAML or JSON); omit with --artifact")
    p.add_argument("--artifact", metavar="BUNDLE_DIR", help="run a bundle made by `tcc build` (its own preprocessing)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model parameter (repeatable), e.g. --set num_classes=2")
    weights_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="an image file; the spec's (or bundle's) preprocessing is applied")
    src.add_argument("--input", help="a .npy float32 array, NCHW, used as is")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("build", help="compile a spec into a self-checked artifact bundle for a target")
    spec_args(p)
    p.add_argument("--target", required=True,
                   help="onnx | ort | tflite | host | arm-a7 | aarch64 | ax620 | ax620e | ax650 (an unknown name "
                        "lists the known targets)")
    p.add_argument("-o", "--output", metavar="OUT", help="bundle directory (default out/SPEC-TARGET[-PRECISION])")
    p.add_argument("--precision", help="fp32 (default) | fp16 | int8 | dynamic (see the target list)")
    p.add_argument("--calib", metavar="TABLE", help="int8: calibration table made by `tcc calibrate`")
    p.add_argument("--data", help="int8: calibrate now on this image folder or .npy/.npz (instead of --calib); "
                   "AX kits: always (the archive holds these samples; --calib, if given, must be made from them)")
    p.add_argument("--method", default="kl+cos", choices=["minmax", "percentile", "kl", "kl+cos"],
                   help="with --data: calibration method (default kl+cos)")
    p.add_argument("--calib-size", type=int, default=128, help="with --data: samples picked (seeded)")
    p.add_argument("--skip-bad", action="store_true", help="with --data: warn about unreadable images")
    _steps_args(p)
    p.add_argument("--opset", type=int, default=13, help="ONNX opset (default 13)")
    p.add_argument("--io", default="float", choices=["float", "int8"],
                   help="tflite int8: float input/output (QUANTIZE / DEQUANTIZE in the model) or int8 codes")
    p.add_argument("--allow-cpu-fallback", action="store_true",
                   help="AX kits: build although some nodes are outside the NPU's op list (they run on the CPU; "
                        "the split is recorded)")
    p.add_argument("--npu-mode", help="AX kits: Pulsar v1 AX620_VIRTUAL_NPU_MODE_111 (default) | _112 | _0; Pulsar2 "
                                      "NPU1 (default) | NPU2 | NPU3 (ax650)")
    p.add_argument("--no-simplify", action="store_true", help="skip the onnxsim step of the pass pipeline")
    p.add_argument("--tune", type=int, default=0, metavar="N",
                   help="TVM host target: MetaSchedule tuning with N trials (database cached and reused)")
    p.add_argument("--tune-log", metavar="DIR", help="TVM: keep/reuse the MetaSchedule database in DIR")
    p.add_argument("--count-instructions", action="store_true",
                   help="arm-a7 / aarch64: count the instructions one inference executes (qemu plugin; NEON vs "
                        "scalar) into the manifest; adds two runs under qemu")
    p.add_argument("--host-twin", action="store_true",
                   help="arm-a7 / aarch64: also compile the model for this machine and compare the ARM module under "
                        "qemu with it (FP32 within 1e-5, INT8 bit-exact); doubles the compile time")
    _placement_args(p, "with --data: ")
    weights_args(p)
    p.add_argument("--force", action="store_true", help="replace an existing bundle at OUT (atomically)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("calibrate", help="calibrate INT8 scales (KL coarse, cosine fine) and write a table")
    spec_args(p)
    p.add_argument("--weights", help="PyTorch state_dict (.pt/.pth)")
    p.add_argument("--by-order", action="store_true", help="match checkpoint tensors to the spec in order")
    p.add_argument("--key-map", help="YAML/JSON mapping of checkpoint keys to spec names")
    p.add_argument("--data", required=True, help="image folder (recursive) or .npy/.npz of NCHW float32")
    p.add_argument("--target", default="ort",
                   help="target whose quantization rules apply (default ort): a rules name or a build target; for "
                        "ax620 / ax620e / ax650 the report is also printed as the toolchain's precision table")
    p.add_argument("--method", default="kl+cos", choices=["minmax", "percentile", "kl", "kl+cos"])
    p.add_argument("--calib-size", type=int, default=128, help="samples picked (seeded) from the data")
    p.add_argument("--percentile", type=float, default=99.99)
    p.add_argument("--cos-steps", type=int, default=100, help="scale candidates in [0.5 s, 2 s]")
    p.add_argument("--cos-rounds", type=int, default=2, help="alternating weight/activation rounds")
    _steps_args(p)
    p.add_argument("--skip-bad", action="store_true", help="warn about unreadable images instead of failing")
    p.add_argument("--opset", type=int, default=13,
                   help="ONNX opset of the graph calibrated (as `tcc build --opset`; the table fits that build)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="calib.json", help="calibration table (JSON)")
    p.add_argument("--report", metavar="OUT.json|OUT.png",
                   help="also save the quality report: JSON, or a chart (.png, .svg, .pdf) with the worst tensors' "
                        "activation histograms beside it (OUT.histograms.png)")
    p.add_argument("--report-samples", type=int, default=32,
                   help="samples (seeded subset) the quality report runs on (default 32): calibration samples, or "
                        "--eval's")
    p.add_argument("--eval", metavar="DIR",
                   help="judge the INT8 model on these held-out images (folder, recursive) or .npy/.npz instead of "
                        "on calibration samples; ORT's quantize_static is still calibrated on --data")
    p.add_argument("--no-compare", action="store_true",
                   help="leave ONNX Runtime's quantize_static (MinMax, Entropy) out of the report (faster)")
    _placement_args(p, "")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("ops", help="list the op tables: spec ops, and integer ops with the backends that take them")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_ops)

    p = sub.add_parser("golden", help="golden outputs: check every backend's output against the stored one, or "
                                      "store them again on purpose (update)")
    p.add_argument("action", choices=["check", "update"])
    p.add_argument("dir", nargs="?", default="tests/golden", help="the golden set (a folder with golden.yaml; "
                                                                  "default tests/golden)")
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--entry", action="append", help="only this entry, e.g. host-int8 (repeatable)")
    p.add_argument("--all", action="store_true", help="check: also the entries the plan marks slow")
    p.add_argument("--recalibrate", action="store_true",
                   help="update: calibrate again and store the tables (otherwise a stored table that still fits is "
                        "kept)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_golden)

    p = sub.add_parser("diff", help="run two implementations of a model on one input and compare every tensor both "
                                    "expose, first divergence first")
    p.add_argument("a", help="a bundle directory, a spec file (its PyTorch lowering), 'pytorch' (with --spec) or "
                             "'reference[:RULES]' (the integer reference on --calib's table)")
    p.add_argument("b", help="the same kinds as A")
    p.add_argument("--input", required=True, help="an image (through the spec's or bundle's preprocessing) or a .npy")
    p.add_argument("--spec", help="the model's spec (needed by pytorch, reference and an ORT INT8 bundle's tensors)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model parameter (as the bundle was built)")
    p.add_argument("--weights", help="PyTorch state_dict the model was built with")
    p.add_argument("--by-order", action="store_true", help="match checkpoint tensors to the spec in order")
    p.add_argument("--key-map", help="YAML/JSON mapping of checkpoint keys to spec names")
    p.add_argument("--calib", help="calibration table for reference[:RULES] (default: the INT8 bundle's own)")
    p.add_argument("--min-cosine", type=float, default=0.9999, help="a float tensor below this diverges")
    p.add_argument("--max-rel", type=float, default=1e-3,
                   help="or where max |a - b| / max |b| is above this (e.g. 0.05 for INT8 against FP32)")
    p.add_argument("--max-lsb", type=float, default=1.0, help="an integer tensor (both sides) above this diverges")
    p.add_argument("--all", action="store_true", help="print every tensor (default: the rows around the first "
                                                      "divergence when there are many)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("bench", help="benchmark every engine on the same model: latency, calibration, INT8 quality, "
                                     "build phases, sizes, ARM instruction counts; writes bench.json and bench.md")
    _specs_args(p, "model specs (default: ddsnet with the GC checkpoint, and fastnet)", "one spec")
    p.add_argument("--weights", help="PyTorch state_dict (one spec; default: seeded random weights)")
    p.add_argument("--by-order", action="store_true", help="match checkpoint tensors to the spec in order")
    p.add_argument("--quick", action="store_true", help="one small model (FastNet at 64x64) through every section, "
                                                       "in about a minute")
    p.add_argument("--only", metavar="BUNDLES", help="comma-separated bundles to build and time, e.g. "
                                                     "ort-fp32,ort-int8,host-fp32")
    p.add_argument("--rounds", type=int, help="interleaved latency rounds (default 10)")
    p.add_argument("--runs", type=int, help="inferences per engine per round (default 20)")
    p.add_argument("--calib-images", type=int, help="calibration crops (default 128)")
    p.add_argument("--held-out", type=int, help="judging crops, never calibrated on (default 64)")
    p.add_argument("--method", choices=["minmax", "percentile", "kl", "kl+cos"], help="tcc's calibration method")
    p.add_argument("--no-memory", action="store_true", help="skip the calibration peak-memory runs")
    p.add_argument("--no-placement", action="store_true",
                   help="skip the ort table's speed placement and its ort-int8-placed bundle")
    p.add_argument("--tvm-variants", action="store_true",
                   help="also time TVM host FP32 without tcc's schedules, unfused, and with dlight")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.add_argument("-o", "--output", default="out/bench", help="where bench.json, bench.md and the bundles go")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="the paper's Table 1 for specs (params, MACs, FP32 / INT8 size) and, for built "
                                      "bundles, latency, fidelity and ARM instruction counts; markdown, JSON, plots")
    _specs_args(p, "model specs", "every spec")
    p.add_argument("--bundles", nargs="+", metavar="DIR", help="bundles made by `tcc build`")
    p.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds (default 5)")
    p.add_argument("--runs", type=int, default=10, help="inferences per bundle per round (default 10)")
    p.add_argument("-o", "--output", default="out/report", help="where report.md, report.json and the plots go")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_report)

    for register in (register_train, register_slide, register_explain):  # each command's parser beside its code
        register(sub)

    p = sub.add_parser("schema", help="print the JSON Schema of spec documents")
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TccError as e:
        # A positioned error already reads "file:line:col: message", like a compiler's.
        print(str(e) if getattr(e, "where", None) else f"error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # e.g. `tcc check --json | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        return e.exit_code


def run() -> None:
    """The `tcc` command: main(), then the process ends without tearing its modules down. PyTorch's and TVM's
    teardown takes 0.4-0.6 s (measured) and does nothing a finished command needs: the exit handlers still run
    (temporary folders, logging) and the output is flushed first. Left to the normal exit when threads other than
    this one are still running, which it would wait for."""
    import atexit
    import os
    import threading

    code = main()
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written anyway
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
