"""`tcc build`: spec (+ weights) -> ONNX -> passes -> backend artifact -> self-check -> bundle, in one function.

    result = build("spec/ddsnet.yaml", "ort", "out/ddsnet", precision="fp16", weights="GC.pth", by_order=True)

Every build self-checks its artifact (run by its backend) against the PyTorch lowering of the same weights on
fixed seeded inputs and records the result in the manifest; a failed check raises SelfCheckError with the numbers
and leaves no bundle (tcc.bundle.atomic_dir). INT8 builds take a calibration table (`calib=`, checked against the
spec, weights and FP32 graph hashes) or calibrate on the fly (`data=`); they are checked against the integer
reference executor on the first calibration samples (or the seeded inputs) and keep the table in the bundle.
Backends may add their own checks (`Backend.extra_checks`, e.g. ARM under qemu against the host build).
"""

from __future__ import annotations

import functools
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tcc.backends import EmitOptions, check_precision, get_backend, get_target

from .bundle import FORMAT, atomic_dir, check_out, finish_bundle, sha256_file, stable_float
from .errors import BuildError, SelfCheckError
from .frontend import lower_spec
from .lower.run import torch_run
from .process.background import Background
from .process.phases import phase, recording
from .quant.collect.data import load_calibration_data
from .quant.table.file import CalibrationError, load_table, model_sha256
from .quant.table.placement import islands
from .quant.table.rules import RULES, get_rules
from .tolerance import TOLERANCES, compare

CHECK_SEED = 0
CHECK_BATCH = 2
CALIBRATION_FILE = "calibration.json"


@dataclass
class BuildResult:
    out: Path
    manifest: dict
    report: object  # the pass pipeline's report (printable)
    seconds: dict = field(default_factory=dict)  # wall time per step (never written into the bundle)


def _with_phases(fn):
    """Run `fn` (a build) inside tcc.process.phases.recording() and add the phases to its result's `seconds`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> BuildResult:
        with recording() as phases:
            result = fn(*args, **kwargs)
        result.seconds.update(phases)
        return result

    return wrapper


@_with_phases
def build(  # noqa: PLR0913, PLR0915
    spec: str | Path,
    target: str,
    out: str | Path,
    *,
    precision: str | None = None,
    opset: int = 13,
    simplify: bool = True,
    weights: str | Path | None = None,
    by_order: bool = False,
    key_map: str | Path | None = None,
    seed: int = 0,
    overrides: dict | None = None,
    force: bool = False,
    calib: str | Path | None = None,
    data: str | Path | np.ndarray | None = None,
    calib_options: dict | None = None,
    tune: int = 0,
    tune_log: str | Path | None = None,
    io: str = "float",
    allow_cpu_fallback: bool = False,
    npu_mode: str | None = None,
    count_instructions: bool = False,
    host_twin: bool = False,
    compile_worker: bool = False,
    source: dict | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> BuildResult:
    """Compile `spec` for `target` into a self-checked bundle at `out` (atomically). The result's `seconds` holds
    the wall time of every phase (tcc.process.phases: "emit/compile", "target-checks/host-twin/link", ...).
    `compile_worker`: the backend may emit in a worker process that imports its libraries while the frontend runs
    (`tcc build` asks for it; backends/tvm/worker.py). `source`: where the spec came from when it was not written
    by hand (an ONNX file imported in memory: its name and sha256), recorded in the manifest."""
    t0 = time.perf_counter()
    tgt = get_target(target)
    precision = check_precision(tgt, precision)
    backend = get_backend(tgt.backend)
    lo, hi = backend.capabilities.opsets
    if not lo <= opset <= hi:
        raise BuildError(f"target {target}: opset {opset} is outside the supported {lo}..{hi}")
    out = Path(out)
    check_out(out, force)  # fail before the expensive part; atomic_dir checks again at the end
    caps = backend.capabilities
    if not caps.kit and (allow_cpu_fallback or npu_mode is not None):
        raise BuildError(
            f"--allow-cpu-fallback and --npu-mode apply to the Axera NPU targets only (ax620, ax620e, "
            f"ax650), not {target}"
        )
    _check_int8_inputs(precision, calib, data, tgt, caps)
    for flag, on in (("--count-instructions", count_instructions), ("--host-twin", host_twin)):
        if on and not (tgt.platform and tgt.platform.qemu):
            raise BuildError(f"{flag} applies to the ARM targets (arm-a7, aarch64), not {target}")

    with phase("preload"):
        backend.preload(worker=compile_worker)
    try:
        fe = lower_spec(
            spec,
            overrides,
            weights=weights,
            by_order=by_order,
            key_map=key_map,
            seed=seed,
            opset=opset,
            simplify=simplify,
            log=log,
        )
        model, ref, onnx_model = fe.model, fe.module, fe.onnx
        seconds = dict(fe.seconds)
        options = EmitOptions(
            target=target,
            precision=precision,
            opset=opset,
            tune=tune,
            tune_log=str(tune_log) if tune_log else None,
            io=io,
            allow_cpu_fallback=allow_cpu_fallback,
            npu_mode=npu_mode,
            preprocess=model.preprocess,
            count_instructions=count_instructions,
            host_twin=host_twin,
        )
        backend.check(onnx_model, options)  # every node the target cannot express, named, before any more work

        qgraph, quant_info, x = None, None, None
        if precision == "int8":
            from dataclasses import replace

            from .quant.intgraph.plan import plan  # deferred for start-up: loads onnx

            # refused here, in seconds, when a node has no integer form on this backend: nothing calibrated or written
            graph = plan(
                onnx_model,
                lowering=caps.int8_lowering,
                rules=tgt.rules,
                what=f"the {target} INT8 build ({caps.int8_lowering} lowering)",
            )
            with phase("calibration"):
                table, qgraph, quant_info, x, cd = _calibration_table(
                    model, onnx_model, graph, weights, calib, data, calib_options or {}, tgt.rules, seed, log, target
                )
            options = replace(options, table=table, data=cd)

        if x is None:
            x = np.random.default_rng(CHECK_SEED).standard_normal((CHECK_BATCH, *model.input_shape)).astype(np.float32)
        # PyTorch's references run on a thread while the backend emits (an emit in a worker process leaves this one
        # waiting): float32, and float64 where the check judges against it
        references = Background("tcc-reference", _references, ref, x, float64=caps.kit or precision == "fp32")
        with atomic_dir(out, force) as tmp:
            with phase("emit"):
                files = backend.emit(onnx_model, options, tmp)
            with phase("reference"):  # what is left of it
                expected, expected64 = references.result()
            # checks of the artifact alone run while the self-check runs it (TVM: objdump's instruction mix)
            artifact_checks = Background("tcc-artifact-checks", backend.artifact_checks, options, tmp)
            with phase("self-check"):
                got, check = _self_check(
                    backend, onnx_model, options, tmp, x, ref, expected, expected64, qgraph, quant_info
                )
            if options.table is not None:
                options.table.save(tmp / CALIBRATION_FILE)  # the exact scales the artifact was built from
            if not all(r["passed"] for r in (check["result"], check.get("float16_activations", {"passed": True}))):
                raise SelfCheckError(_failure_message(target, "fp32" if caps.kit else precision, check))
            with phase("target-checks"):
                with phase("artifact"):  # what is left of it
                    target_checks = artifact_checks.result()
                target_checks.update(backend.extra_checks(onnx_model, options, tmp, x, got))
            manifest = {
                "format": FORMAT,
                "model": {
                    "name": model.name,
                    "spec": model.path.name,
                    "spec_hash": model.spec_hash,
                    "params": model.params,
                    **({"source": source} if source else {}),
                },
                "target": target,
                "backend": tgt.backend,
                "precision": precision,
                "opset": opset,
                "simplify": simplify,
                "artifact": files[0],
                "artifacts": files,
                "inputs": _io(onnx_model.graph.input, onnx_model.graph.initializer),
                "outputs": _io(onnx_model.graph.output, []),
                "preprocess": model.preprocess.to_json(),
                "labels": model.labels,
                "weights": fe.weights,
                "passes": _report_json(fe.report),
                **({"quantization": quant_info["manifest"]} if quant_info else {}),
                "self_check": check,
                **({"target_checks": target_checks} if target_checks else {}),
                "runtime": backend.runtime_info(options),
                "tool": {"name": "tcc", "version": _version("tcc")},
                "libraries": {
                    "python": platform.python_version(),
                    "numpy": np.__version__,
                    **{lib: _version(lib) for lib in ("onnx", "onnxruntime", "torch", "onnxsim")},
                },
            }
            with phase("manifest"):
                manifest = finish_bundle(tmp, manifest)
        seconds["total"] = time.perf_counter() - t0
        return BuildResult(out, manifest, fe.report, seconds)
    finally:
        backend.close()  # a worker that preload started and the build did not reach


# ---------------------------------------------------------------------------------------------------- steps
def _references(ref, x: np.ndarray, float64: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The PyTorch lowering's output on the check inputs in float32, and in float64 if asked."""
    return torch_run(ref, x), (torch_run(ref, x, float64=True) if float64 else None)


def _self_check(backend, onnx_model, options, bundle, x, ref, expected, expected64, qgraph, quant_info) -> tuple:  # noqa: PLR0913
    """Run the written artifact on the check inputs and judge it against PyTorch (INT8: against the integer
    reference, exactly or per op; FP32 and kits against `expected64`, the float64 run). Returns (the artifact's
    output, the self_check record)."""
    caps, precision = backend.capabilities, options.precision
    got = backend.check_run(bundle, x, precision)
    if caps.kit:  # the toolchain's input model, FP32: its INT8 result is the prediction (target checks)
        check = self_check(got, expected, "fp32", expected64)
        check["inputs"] = quant_info["check_inputs"] or check["inputs"]
        check["checked"] = "the kit's float model (what the toolchain is given), in ONNX Runtime"
    elif precision == "int8":
        exact = caps.int8_exact

        def codes():  # an exact backend is asked for them only where float islands kept it from bit-exactness
            return backend.int8_codes(onnx_model, options, bundle, x, got)

        check = int8_self_check(
            got, expected, qgraph, x, exact, quant_info["check_inputs"], codes if exact else codes()
        )
    else:
        check = self_check(got, expected, precision, expected64 if precision == "fp32" else None)
    if precision == "fp16":
        check["float16_activations"] = _fp16_emulation(ref, x, expected)
    return got, check


def _check_int8_inputs(precision, calib, data, target, caps) -> None:
    if precision != "int8":
        if calib is not None or data is not None:
            raise BuildError(f"--calib/--data apply to --precision int8 only (this build is {precision})")
        return
    if target.rules is None or caps.int8_lowering is None:
        raise BuildError(f"target {target.name} has no INT8 quantization rules or integer lowering")
    if caps.kit:
        if data is None:
            raise BuildError(
                f"target {target.name} writes a kit whose calibration archive holds the calibration "
                "samples: give them with --data DIR|FILE.npy (and, optionally, the table made from "
                "them with --calib)"
            )
        return
    if calib is None and data is None:
        raise BuildError(
            "--precision int8 needs a calibration table (--calib calib.json, made by `tcc calibrate`) "
            "or calibration data to calibrate on the fly (--data DIR|FILE.npy)"
        )
    if calib is not None and data is not None:
        raise BuildError("give either --calib (a table) or --data (calibrate now), not both")


def check_table_bits(table, rules, where: str) -> None:
    """A table's activation widths against the rules a build needs: the first tensor of a width they do not take,
    named, with the rules whose targets take it."""
    odd = next(
        (
            (n, t["bits"])
            for n, t in table.tensors.items()
            if t.get("kind") == "activation" and not rules.takes_activation_bits(t.get("bits", 8))
        ),
        None,
    )
    if odd is not None:
        name, bits = odd
        widths = " or ".join(map(str, rules.activation_bits))
        takes = ", ".join(r.name for r in RULES.values() if r.takes_activation_bits(bits))
        raise CalibrationError(
            f"{where} runs {widths}-bit activations only (rules {rules.name!r}); the table's tensor {name!r} is "
            f"{bits}-bit, which builds for the targets of rules {takes}; or recalibrate with --activation-bits "
            f"{rules.activation_bits[0]}"
        )


def _width_counts(table) -> dict:
    """How many activation tensors the table gives each width ({"8": 64}, or {"16": 64} for W8A16)."""
    widths = [t.get("bits", 8) for t in table.tensors.values() if t["kind"] == "activation"]
    return {str(b): widths.count(b) for b in sorted(set(widths))}


def _calibration_table(model, onnx_model, graph, weights, calib, data, opts, rules, seed, log, target=None):  # noqa: PLR0913, PLR0915
    """The INT8 build's calibration table, loaded and checked against this spec, weights and FP32 graph (and
    validated entry by entry against its integer graph; against `data` too when both are given, as kits take
    them), or made now from `data`. Returns (table, the QGraph, info for the manifest, self-check inputs or None,
    the calibration data or None)."""
    from .quant.calibrate import (  # deferred for start-up: loads onnx
        activation_bits,
        check_activation_bits,
        check_wide_kinds,
    )
    from .quant.intgraph.plan import quantized_form  # deferred for start-up: loads onnx
    from .quant.intgraph.qgraph import quantize_graph  # deferred for start-up: loads onnx
    from .quant.table.steps import Steps, table_choice_lines  # deferred for start-up: loads onnx

    weights_hash = sha256_file(weights) if weights else None
    opts = dict(opts)
    rule_set = get_rules(rules)
    asked_bits = opts.get("activation_bits")  # --activation-bits as given (None: the spec's, else the rules')
    if "steps" not in opts:  # the spec's `calibrate:` section with the caller's switches on top, checked now
        bits = activation_bits(model.calibrate, asked_bits, rule_set)
        opts["activation_bits"] = bits
        check_activation_bits(bits, rule_set, target)
        check_wide_kinds(graph, bits, rule_set, target)
        opts["steps"] = Steps.chosen(model.calibrate, **(opts.get("step_switches") or {})).checked()
    opts.pop("step_switches", None)
    placement = opts.pop("placement", None)
    if placement is not None and placement.active:
        from .quant.place.placer import check_nodes, check_options  # deferred for start-up: loads onnx

        if calib is not None:
            raise BuildError(
                "--min-cos / --speed / --keep-float choose the placement while calibrating (--data); a "
                "table from --calib carries its own placement (tcc calibrate ... --min-cos C)"
            )
        check_options(placement, rules)
        check_nodes(placement, graph)
    cd = None
    if data is not None:
        cd = load_calibration_data(
            data, model.preprocess, model.input_shape, opts.pop("calib_size", 128), seed, opts.pop("skip_bad", False)
        )
    if calib is not None:
        table = load_table(
            calib, spec_hash=model.spec_hash, weights_hash=weights_hash, model_hash=model_sha256(onnx_model)
        )
        table.check_model(quantized_form(onnx_model, table.target), str(calib))
        check_table_bits(table, rule_set, f"{calib}: target {target or rules}")
        widest = max((t.get("bits", 8) for t in table.tensors.values() if t.get("kind") == "activation"), default=8)
        if asked_bits is not None and (asked_bits > 8) != (widest > 8):  # the width is the calibration's choice
            raise CalibrationError(
                f"{calib}: its activations are {widest}-bit, --activation-bits {asked_bits} asks "
                f"for {asked_bits}; the width is chosen when calibrating: calibrate with "
                f"--activation-bits {asked_bits} (or build from --data), or leave the flag out"
            )
        check_wide_kinds(graph, widest, rule_set, target or rules)
        if table.target != rules:
            raise CalibrationError(
                f"{calib}: calibrated for target rules '{table.target}', this build "
                f"needs '{rules}'; recalibrate with `tcc calibrate ... --target {rules}`"
            )
        if cd is not None and table.data_fingerprint != cd.fingerprint:
            raise CalibrationError(
                f"{calib}: made from other calibration data than --data {data} (data "
                "fingerprints differ; the same files, --calib-size and --seed give the same)"
            )
        source = {"from": "table", "file": Path(calib).name, "sha256": sha256_file(calib)}
    else:
        from .quant.calibrate import calibrate_onnx  # deferred for start-up: loads onnx

        log(f"calibrating on {len(cd.array)} samples ({opts.get('method', 'kl+cos')}, rules {rules})")
        table = calibrate_onnx(
            onnx_model,
            cd.array,
            target=rules,
            seed=seed,
            data_fingerprint=cd.fingerprint,
            spec_hash=model.spec_hash,
            weights_hash=weights_hash,
            graph=graph,
            **opts,
        )
        for line in table_choice_lines(table):
            log(line)
        if placement is not None and placement.active:
            from .quant.place.placer import place, placement_lines  # deferred for start-up: loads onnx

            table = place(onnx_model, table, cd.array, placement, log)
            for line in placement_lines(table, nodes=False):  # the nodes: the manifest's float islands
                log(line)
        source = {"from": "data", "samples": len(cd.array)}
    x = np.ascontiguousarray(cd.array[:CHECK_BATCH]) if cd is not None else None
    # the bundle keeps the table without its wall times: the same inputs must give byte-identical bundles
    table = table.without_timing()
    qgraph = quantize_graph(graph, table, where=str(calib) if calib is not None else "calibration table")
    info = {
        "table": CALIBRATION_FILE,
        **source,
        "method": table.method,
        "rules": rules,
        "data_fingerprint": table.data_fingerprint,
        "calibration_samples": table.samples,
        "quantized_tensors": sum(1 for t in table.tensors.values() if t["kind"] == "activation"),
        "quantized_weights": sum(1 for t in table.tensors.values() if t["kind"] == "weight"),
        "activation_bits": _width_counts(table),
        "integer_ops": _kind_counts(qgraph),
    }

    if table.activation_bits > 8:  # at 16 bits kl / kl+cos ranges are minmax ones (tcc.quant.calibrate)
        info["activation_method"] = table.settings.get("activation_method")
    found = islands(qgraph, table)
    if found:  # never silent: the manifest lists every node the INT8 graph runs in float, and why
        info["float_islands"] = found
    if table.placement:
        info["placement"] = {k: v for k, v in table.placement.items() if k != "nodes"}
    check_inputs = (
        {
            "source": "calibration data",
            "samples": CHECK_BATCH,
            "description": f"the first {CHECK_BATCH} calibration samples",
        }
        if x is not None
        else None
    )
    return table, qgraph, {"manifest": info, "check_inputs": check_inputs}, x, cd


def _kind_counts(qgraph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in qgraph.nodes:
        if n.integer:
            counts[n.kind] = counts.get(n.kind, 0) + 1
    return dict(sorted(counts.items()))


def int8_self_check(got, expected_fp32, qgraph, x, exact: bool, check_inputs, codes=None) -> dict:
    """INT8 artifact vs the integer reference executor (gated: end to end bit for bit for an exact backend, op by
    op on the backend's own codes otherwise; tcc.tolerance gives the rule with float islands) and vs the PyTorch
    FP32 lowering (recorded). codes: the backend's codes of every quantized tensor, or a function returning them
    (an exact backend is asked only when float islands kept it from equality end to end)."""
    from .quant.intgraph.reference import (  # deferred for start-up: loads onnx
        Reference,
        backend_tensors,
        per_op_deviation,
    )

    ref = Reference().run(qgraph, x)
    if isinstance(ref, list):
        ref = ref[0]
    tol = TOLERANCES["int8"]
    lsb = qgraph.output_scales[qgraph.outputs[0]]  # the output's calibrated step (a float output has one too)
    a, r = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if a.shape != r.shape:
        result = {"passed": False, "error": f"output shape {list(a.shape)}, expected {list(r.shape)}"}
    else:
        d = np.abs(a - r)
        max_abs = float(d.max()) if d.size else 0.0
        equal = bool(np.array_equal(np.asarray(got), np.asarray(ref, dtype=np.asarray(got).dtype)))
        result = {
            "bit_exact": equal,
            "max_abs": stable_float(max_abs),
            "max_abs_lsb": stable_float(max_abs / lsb) if lsb else None,
            "output_lsb": stable_float(lsb) if lsb else None,
            "equal_fraction": stable_float(float(np.mean(a == r)) if a.size else 1.0),
        }
        islands = qgraph.islands
        if exact and (equal or not islands):
            result.update(required="bit-exact", passed=equal)
        else:
            codes, floats = backend_tensors(qgraph, x, codes() if callable(codes) else codes)
            per_op = per_op_deviation(qgraph, codes, {qgraph.outputs[0]: np.asarray(got)}, floats)
            for key in ("max_lsb", "max_lsb_integer", "max_lsb_islands"):
                per_op[key] = stable_float(per_op[key])
            per_op["max_lsb_by_kind"] = {k: stable_float(v) for k, v in per_op["max_lsb_by_kind"].items()}
            passed = bool(np.isfinite(a).all()) and per_op["ops_checked"] == len(qgraph.nodes)
            island_rule = f"; float islands <= {tol['island_lsb_tolerance']} LSB" if islands else ""
            if exact:  # float islands only: integer ops exact
                passed = (
                    passed
                    and per_op["max_lsb_integer"] == 0
                    and per_op["max_lsb_islands"] <= tol["island_lsb_tolerance"]
                )
                required = (
                    "bit-exact, or (float islands) every integer op bit-exact on the backend's own input "
                    f"codes{island_rule}"
                )
            else:
                passed = (
                    passed
                    and per_op["max_lsb_integer"] <= tol["lsb_tolerance"]
                    and per_op["max_lsb_islands"] <= tol["island_lsb_tolerance"]
                )
                required = (
                    f"every integer op <= {tol['lsb_tolerance']} LSB of the reference op on the backend's "
                    f"own input codes{island_rule}"
                )
            result.update(per_op=per_op, required=required, passed=passed)
    vs_fp32 = compare(got, expected_fp32, "fp16")  # the scale-relative numbers; its `passed` is not a gate here
    vs_fp32.pop("passed", None)
    inputs = check_inputs or {
        "seed": CHECK_SEED,
        "batch": CHECK_BATCH,
        "distribution": "standard normal",
        "description": f"{CHECK_BATCH} inputs ~ N(0, 1) (numpy default_rng({CHECK_SEED}))",
    }
    return {
        "reference": "the integer reference executor (tcc.quant.reference.Reference) on the same table",
        "inputs": inputs,
        "tolerance": tol,
        "result": result,
        "vs_fp32": {"reference": "the PyTorch FP32 lowering with the same weights (recorded, not gated)", **vs_fp32},
    }


def _fp16_emulation(ref, x, expected) -> dict:
    """ORT's CPU provider runs a float16 model in float32 with float16-rounded weights; float16 hardware also rounds
    every activation. This estimates that: the PyTorch lowering with float16-rounded weights and buffers and every
    op's output rounded to float16 (float32 arithmetic in between, as float16 kernels accumulate in float32).
    BatchNorm is still unfolded here, so it rounds more often than the artifact does: a conservative estimate."""
    got = torch_run(round_fp16(ref), x)
    return {
        "description": "PyTorch lowering with float16 weights and every op output rounded to float16, vs float32",
        **compare(got, expected, "fp16"),
    }


def _round16(v):
    import torch

    return v.half().float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v


def round_fp16(module):
    """A copy of an fx GraphModule that rounds its weights and every intermediate value to float16."""
    import copy

    import torch

    gm = copy.deepcopy(module)
    with torch.no_grad():
        for t in [*gm.parameters(), *gm.buffers()]:
            if t.is_floating_point():
                t.copy_(t.half().float())
    g = gm.graph
    for node in list(g.nodes):
        if node.op in ("placeholder", "call_module", "call_function", "call_method"):
            with g.inserting_after(node):
                r = g.call_function(_round16, (node,))
            node.replace_all_uses_with(r, delete_user_cb=lambda user: user is not r)  # noqa: B023 (called at once)
    gm.recompile()
    return gm


def self_check(got: np.ndarray, expected: np.ndarray, precision: str, exact: np.ndarray | None = None) -> dict:
    return {
        "reference": "the PyTorch FP32 lowering (tcc.to_torch(graph, inference_only=True)) with the same weights"
        + ("; the rule compares with the same module in float64" if precision == "fp32" else ""),
        "inputs": {
            "seed": CHECK_SEED,
            "batch": CHECK_BATCH,
            "distribution": "standard normal",
            "description": f"{CHECK_BATCH} inputs ~ N(0, 1) (numpy default_rng({CHECK_SEED}))",
        },
        "tolerance": TOLERANCES[precision],
        "result": compare(got, expected, precision, exact),
        "max_rel_note": "max_rel is over elements with |r| >= 1e-5",
    }


def _failure_message(target, precision, check) -> str:
    tol = check["tolerance"]
    against = "the integer reference executor" if precision == "int8" else "the PyTorch lowering"
    lines = [
        f"self-check failed: the {target} {precision} artifact does not match {against} "
        f"(tolerance: {tol['rule']}, {', '.join(f'{k} {v}' for k, v in tol.items() if k != 'rule')})"
    ]
    for name, r in [("artifact", check["result"]), ("float16 activations", check.get("float16_activations"))]:
        if r:
            lines.append(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in r.items() if k != "description"))
    lines.append("no bundle was written")
    return "\n".join(lines)


def _io(values, initializers) -> list[dict]:
    from onnx import helper

    skip = {t.name for t in initializers}
    out = []
    for v in values:
        if v.name in skip:
            continue
        tt = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
        out.append({"name": v.name, "shape": dims, "dtype": str(helper.tensor_dtype_to_np_dtype(tt.elem_type))})
    return out


def _report_json(report):
    """The pass report as JSON data, without its wall times (a bundle must not depend on when it was built)."""
    import dataclasses

    if hasattr(report, "to_json"):
        data = report.to_json()
    elif dataclasses.is_dataclass(report):
        data = dataclasses.asdict(report)
    elif isinstance(report, (dict, list)):
        data = report
    else:
        return str(report).splitlines()
    return _drop_times(data)


def _drop_times(data):
    if isinstance(data, dict):
        return {k: _drop_times(v) for k, v in data.items() if k not in ("seconds", "time", "elapsed")}
    if isinstance(data, list):
        return [_drop_times(v) for v in data]
    return data


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
