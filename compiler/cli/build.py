"""`tcc build`: compile a spec into a self-checked artifact bundle for a target."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..bundle import check_out
from ..errors import BuildError
from ..process.phases import phase
from ..targets import TARGETS
from .args import (
    calibration_request,
    fidelity_args,
    fidelity_floor,
    fidelity_warning,
    load_model,
    max_pixels_arg,
    method_arg,
    percentile_arg,
    placement_args,
    progress_arg,
    quiet_fidelity_warnings,
    spec_args,
    steps_args,
    weights_args,
)
from .progress import PhaseStatus


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="compile a spec into a self-checked artifact bundle for a target",
        description="compile a spec into a self-checked artifact bundle for a target",
    )
    spec_args(p)
    what = p.add_argument_group("what to build and where")
    what.add_argument(
        "--target",
        required=True,
        help=" | ".join(TARGETS) + " (an unknown name lists them with their precisions)",
    )
    what.add_argument("--precision", help="fp32 (default) | fp16 | int8 | dynamic, as the target offers")
    what.add_argument("-o", "--output", metavar="OUT", help="bundle directory (default out/SPEC-TARGET[-PRECISION])")
    what.add_argument("--force", action="store_true", help="replace an existing bundle at OUT (atomically)")
    progress_arg(what, "the phase running now: ")
    weights_args(p.add_argument_group("weights (default: seeded random weights, loudly flagged)"))
    int8 = p.add_argument_group("INT8 (--precision int8): the calibration table, or calibrating now on --data")
    int8.add_argument("--calib", metavar="TABLE", help="calibration table made by `tcc calibrate`")
    int8.add_argument(
        "--data",
        help="calibrate now on this image folder or .npy/.npz (instead of --calib); "
        "AX kits: always (the archive holds these samples; --calib, if given, must be made from them)",
    )
    method_arg(int8, "with --data: the spec's `calibrate:` method, else auto")
    percentile_arg(int8)
    int8.add_argument("--calib-size", type=int, default=128, metavar="N", help="with --data: samples picked (seeded)")
    int8.add_argument("--skip-bad", action="store_true", help="with --data: warn about unreadable images")
    fidelity_args(int8, "up to 8 samples of --data that calibration did not take (else calibration samples)")
    steps_args(int8)
    placement_args(p.add_argument_group("INT8 placement: float islands, 16-bit activations"), "with --data: ")
    tvm = p.add_argument_group("TVM targets (host, arm-a7, aarch64, aarch64-dotprod and their aliases)")
    tvm.add_argument(
        "--tune", type=int, default=0, metavar="N", help="host: MetaSchedule tuning with N trials (database cached)"
    )
    tvm.add_argument("--tune-log", metavar="DIR", help="keep/reuse the MetaSchedule database in DIR")
    tvm.add_argument(
        "--count-instructions",
        action="store_true",
        help="ARM: count the instructions one inference executes (qemu plugin; NEON vs scalar) and estimate its "
        "cycles on the board's core (LLVM's scheduling model, llvm-mca) into the manifest; adds two runs under qemu",
    )
    tvm.add_argument(
        "--host-twin",
        action="store_true",
        help="ARM: also compile the model for this machine and compare the ARM module under qemu with it (FP32 "
        "within 1e-5, INT8 bit-exact); doubles the compile time",
    )
    tvm.add_argument(
        "--explain-kernels",
        action="store_true",
        help="INT8: also print which kernel variant each weighted layer takes, and why (one line a layer)",
    )
    tflite = p.add_argument_group("TFLite targets")
    tflite.add_argument(
        "--io",
        default="float",
        choices=["float", "int8"],
        help="int8: float input/output (QUANTIZE / DEQUANTIZE in the model) or int8 codes",
    )
    ax = p.add_argument_group("AX kits (ax620, ax620e, ax650)")
    ax.add_argument(
        "--allow-cpu-fallback",
        action="store_true",
        help="build although some nodes are outside the NPU's op list (they run on the CPU; the split is recorded)",
    )
    ax.add_argument(
        "--npu-mode",
        help="Pulsar v1 AX620_VIRTUAL_NPU_MODE_111 (default) | _112 | _0; Pulsar2 NPU1 (default) | NPU2 | NPU3 (ax650)",
    )
    graph = p.add_argument_group("the ONNX graph and the inputs read")
    graph.add_argument("--opset", type=int, default=13, help="ONNX opset")
    graph.add_argument("--no-simplify", action="store_true", help="skip the onnxsim step of the pass pipeline")
    max_pixels_arg(graph)
    p.set_defaults(func=run)


def run(args) -> int:
    # deferred for start-up: loads numpy
    from tcc.backends import check_precision, get_target

    target = get_target(args.target)
    precision = check_precision(target, args.precision)  # an unknown target lists the known ones, exit 2
    if args.explain_kernels and (target.backend != "tvm" or precision != "int8"):
        raise BuildError(
            f"--explain-kernels applies to the TVM targets' INT8 builds (--precision int8), not {args.target} "
            f"{precision}: only their integer lowering chooses a kernel variant per layer"
        )
    out = args.output or f"out/{Path(args.spec).stem}-{args.target}" + (f"-{args.precision}" if args.precision else "")
    check_out(Path(out), args.force)
    floor = fidelity_floor(args)  # a floor out of range fails before any work
    with quiet_fidelity_warnings(), PhaseStatus("build", args.progress) as status:
        model, result = _build(args, out, floor, status.log)
    for line in summary_lines(result):
        print(line)
    if args.explain_kernels:
        print("\n".join(_kernel_lines(model, args, result.path)))
    fidelity_warning(result.manifest.get("quantization", {}).get("fidelity", {}).get("below_floor"))
    if "random_seed" in result.manifest["weights"]:
        print(f"WARNING: {result.manifest['weights']['warning']}", file=sys.stderr)
    return 0


def _build(args, out: str, floor, log):
    """The model of the command line, and its bundle built (`log`: the build's notes, above the status line)."""
    from tcc.backends import KitOptions, TfliteOptions, TvmOptions  # deferred for start-up: loads numpy

    with phase("load"):
        model = load_model(args)
    if model.weights is None:  # an ONNX file brings its own
        log(
            f"WARNING: no --weights given: building with seeded random weights (seed {args.seed}); the bundle's "
            "outputs are meaningless (recorded in its manifest). Pass --weights FILE for a usable model."
        )
    result = model.build(
        args.target,
        precision=args.precision,
        out=out,
        calib=args.calib,
        data=args.data,
        force=args.force,
        opset=args.opset,
        simplify=not args.no_simplify,
        calibration=calibration_request(args),
        floor=floor,
        tvm=TvmOptions(
            tune=args.tune,
            tune_log=args.tune_log,
            count_instructions=args.count_instructions,
            host_twin=args.host_twin,
        ),
        kit=KitOptions(allow_cpu_fallback=args.allow_cpu_fallback, npu_mode=args.npu_mode),
        tflite=TfliteOptions(io=args.io),
        compile_worker=True,
        log=log,
    )
    return model, result


def summary_lines(result) -> list[str]:
    """What `tcc build` prints of a bundle it wrote: the pass report, the self-check, the float islands, the target's
    checks, the files and the time by phase."""
    from ..quant.table.placement import summary_line  # deferred for start-up: loads numpy

    m = result.manifest
    lines = [str(result.report), _self_check_line(m["self_check"], m["precision"])]
    fidelity = m.get("quantization", {}).get("fidelity")
    if fidelity:  # INT8 from data: judged on samples, one line
        lines.append(_fidelity_line(fidelity))
    islands = summary_line(m.get("quantization", {}).get("float_islands", []))
    if islands:  # the float / integer split of an INT8 graph is printed, never silent
        lines.append(islands)
    if "float16_activations" in m["self_check"]:
        e = m["self_check"]["float16_activations"]
        lines.append(
            f"float16 activations (emulated): max abs {e['max_abs']} ({e['max_abs_over_scale']} of the output "
            f"scale), cosine {e['cosine']}"
        )
    for name, c in m.get("target_checks", {}).items():  # backend checks (TVM: ARM under qemu vs host, SIMD share)
        lines.append(_target_check_line(name, c))
    files = ", ".join(f"{f} ({v['bytes']:,} B)" for f, v in m["files"].items())
    lines.append(
        f"wrote {result.path}/: {files}, manifest.json  [{m['target']} {m['precision']}, opset {m['opset']}, "
        f"{result.seconds['total']:.1f} s]"
    )
    lines.append("time by phase: " + format_phases(result.seconds))
    return lines


def _self_check_line(check: dict, precision: str) -> str:
    r = check["result"]
    if "checked" in check:  # a kit: its float model here, the INT8 result predicted
        return (
            f"self-check of {check['checked']} vs PyTorch: max abs {r['max_abs']}, cosine {r['cosine']} "
            f"(tolerance: {check['tolerance']['rule']}) -> passed"
        )
    if precision == "int8":
        f = check["vs_fp32"]
        return (
            f"self-check vs the integer reference: {_int8_exactness(r)} (required: {r['required']}) -> passed; vs "
            f"FP32: cosine {f['cosine']}, max abs {f['max_abs']} ({f['max_abs_over_scale']} of the output scale)"
        )
    return (
        f"self-check vs PyTorch: max abs {r['max_abs']}, max rel {r['max_rel']}, cosine {r['cosine']} "
        f"(tolerance: {check['tolerance']['rule']}) -> passed"
    )


def _fidelity_line(record: dict) -> str:
    from ..quant.report.fidelity import Fidelity  # deferred for start-up: loads numpy

    verdict = f" -> BELOW THE FLOOR ({record['below_floor']})" if record["below_floor"] else ""
    return Fidelity.from_json(record).line() + verdict


def _int8_exactness(r: dict) -> str:
    if r["bit_exact"]:
        return "bit-exact"
    if "per_op" in r and r["per_op"].get("islands"):
        p = r["per_op"]
        return (
            f"each of {p['ops_checked']} ops on its own inputs: integer ops within {p['max_lsb_integer']} "
            f"LSB, the {p['islands']} float islands within {p['max_lsb_islands']} LSB (end to end: max "
            f"{r['max_abs_lsb']} LSB of the output)"
        )
    if "per_op" in r:
        return (
            f"each of {r['per_op']['ops_checked']} integer ops within {r['per_op']['max_lsb']} LSB on its own "
            f"inputs (end to end: max {r['max_abs_lsb']} LSB of the output)"
        )
    return f"max {r['max_abs_lsb']} LSB of the output"


def _kernel_lines(model, args, bundle: Path) -> list[str]:
    """`--explain-kernels`: each weighted layer of the TVM INT8 module with its kernel variant
    (tcc.backends.tvm.int8.explain), from the FP32 graph the build started from and the table the bundle holds."""
    from tcc.backends.tvm.int8.explain import explain, lines  # deferred for start-up: loads tvm, onnx

    from ..build import CALIBRATION_FILE  # deferred for start-up: loads numpy, onnx
    from ..quant.table.file import load_table  # deferred for start-up: loads numpy

    onnx_model = model.onnx(args.opset, not args.no_simplify)
    rows = explain(onnx_model, load_table(Path(bundle) / CALIBRATION_FILE), args.target)
    return ["kernel variants (backends/tvm/int8/variants):", *lines(rows)]


def format_phases(seconds: dict) -> str:
    """ "load 0.4 s, lower 0.9 s, ... (emit: compile 5.1 s, link 1.2 s)": the top-level phases in order, each
    followed by its inner ones."""
    top = [k for k in seconds if "/" not in k and k != "total"]
    parts = []
    for k in top:
        inner = [(c[len(k) + 1 :], v) for c, v in seconds.items() if c.startswith(k + "/") and c.count("/") == 1]
        parts.append(
            f"{k} {seconds[k]:.1f} s" + (" (" + ", ".join(f"{n} {v:.1f} s" for n, v in inner) + ")" if inner else "")
        )
    return ", ".join(parts)


def _target_check_line(name: str, c: dict) -> str:
    """One line for a backend's target check in the build summary."""
    verdict = f" (required: {c['required']}) -> passed" if "required" in c else " (recorded)"
    if name == "instructions_per_inference":
        return (
            f"executed instructions per inference ({c['arch']}, under qemu): {c['total']:,}, of them "
            f"{c['simd']:,} SIMD, int8 multiply-accumulates {c['int8_mac']:,}, float {c['float_mac']:,}"
        )
    if name == "cycles_per_inference":
        model = c["model"] + (", standing in" if c.get("stand_in") else "")
        return (
            f"estimated cycles per inference ({c['core']}; {model}; no caches or memory stalls): {c['total']:,}, "
            f"{c['cycles_per_instruction']:.2f} per instruction"
        )
    if name == "instruction_mix":
        amx = c.get("amx") or {}
        tiles = f", {sum(amx.values()):,} AMX tile instructions ({amx.get('tdpbusd', 0)} tdpbusd)" if amx else ""
        return f"instruction mix: {c['simd']:,} {c['simd_kind']} of {c['instructions']:,} instructions{tiles}"
    if "max_abs" in c:
        return f"{name}: max abs {c['max_abs']}{verdict}"
    if "end_to_end_max_lsb" in c:
        per_op = c.get("per_op")
        ops = f"each of {per_op['ops_checked']} ops within {per_op['max_lsb']} LSB, " if per_op else ""
        return f"{c['kernels']}: {ops}end to end {c['end_to_end_max_lsb']} LSB from the reference{verdict}"
    return f"{name}: " + ", ".join(f"{k} {v}" for k, v in c.items())
