"""`tcc build`: spec (+ weights) -> ONNX -> passes -> backend artifact -> self-check -> bundle, in one function.

    build("spec/ddsnet.yaml", BuildSettings("ort", "fp16", weights=Weights("GC.pth", by_order=True)), "out/ddsnet")
    build(spec, build_settings("arm-a7", precision="int8", data="crops/", calibration={"method": "kl"}), out)

Every build self-checks its artifact (run by its backend) against the PyTorch lowering of the same weights on
fixed seeded inputs and records the result in the manifest (tcc.self_check); a failed check raises SelfCheckError
with the numbers and leaves no bundle (tcc.bundle.atomic_dir). INT8 builds take a calibration table (`calib`, checked
against the spec, weights and FP32 graph hashes) or calibrate on the fly (`data`), both checked first by the INT8
preflight (tcc.quant.prepare); they are checked against the integer reference executor on the first calibration
samples (or the seeded inputs) and keep the table in the bundle. Backends may add their own checks
(`Backend.extra_checks`, e.g. ARM under qemu against the host build).
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec

import numpy as np
from onnx import helper

from tcc.backends import (
    Backend,
    EmitOptions,
    KitOptions,
    TfliteOptions,
    TvmOptions,
    check_precision,
    get_backend,
    get_target,
)
from tcc.targets import Target

from .bundle import FORMAT, atomic_dir, check_out, finish_bundle, sha256_file
from .errors import BuildError, SelfCheckError
from .field import tiling_record
from .frontend import Frontend, Weights, lower_spec
from .keywords import with_keywords
from .lower.torch_run import torch_run
from .process.background import Background
from .process.phases import phase, recording
from .quant import prepare
from .quant.calibrate import calibrate_onnx
from .quant.collect.data import CalibrationData, held_back, load_calibration_data
from .quant.intgraph.match import IntGraph, plan
from .quant.intgraph.qgraph import quantize_graph
from .quant.place.placer import place, placement_lines
from .quant.report.fidelity import JUDGE_SAMPLES, Fidelity, FidelityFloor, judge, measure_int8
from .quant.settings import CalibrationRequest, CalibrationSettings, Provenance
from .quant.table.file import CalibrationTable, load_table, model_sha256
from .quant.table.placement import islands
from .quant.table.rules import TargetRules, get_rules
from .quant.table.steps import table_choice_lines
from .self_check import CHECK_BATCH, CHECK_SEED, CheckInputs, failure_message, run_self_check
from .self_check import int8_self_check as int8_self_check  # re-exported: tcc.golden and the tests judge with it
from .spec.loader import Spec
from .tolerance import TOLERANCES as TOLERANCES  # re-exported: the tests read the tolerances here

if TYPE_CHECKING:
    import onnx

    from .quant.intgraph.qtypes import QGraph

Log = Callable[[str], None]
P = ParamSpec("P")

CALIBRATION_FILE = "calibration.json"


# ---------------------------------------------------------------------------------------------------- the settings
@dataclass(frozen=True)
class Int8Source:
    """Where an INT8 build's scales come from: a table, or a calibration now (a kit: the samples always, for its
    calibration archive, and a table made from them if one is given)."""

    calib: str | Path | None = None  # a table made by `tcc calibrate` (--calib)
    data: str | Path | np.ndarray | None = field(default=None, compare=False)  # calibration data (--data)
    # with data and no table: how to calibrate. Its rules are the target's and its seed the weights' (the build's
    # one seed); its placement runs only where it places (an inactive one is no placement)
    calibration: CalibrationRequest = field(default_factory=CalibrationRequest)
    # the fidelity below which the build warns (or, required, stops): judged on samples of `data`
    floor: FidelityFloor = field(default_factory=FidelityFloor)


@dataclass(frozen=True)
class BuildSettings:
    """Everything a build is asked for but the spec and where its bundle goes; `tcc build`'s flags, one field each
    (the backends' own in their records)."""

    target: str  # a --target value (tcc.targets.TARGETS)
    precision: str | None = None  # fp32 | fp16 | int8 | dynamic (None: the target's default)
    opset: int = 13  # the ONNX opset of the lowering
    simplify: bool = True  # onnxsim in the pass pipeline (--no-simplify: False)
    weights: Weights = field(default_factory=Weights)  # the checkpoint, or seeded random weights
    overrides: Mapping[str, Any] | None = None  # model parameters (--set) for a spec given as a path
    int8: Int8Source = Int8Source()
    tvm: TvmOptions = field(default_factory=TvmOptions)  # the TVM targets' own options
    kit: KitOptions = field(default_factory=KitOptions)  # the AX kits'
    tflite: TfliteOptions = field(default_factory=TfliteOptions)  # TFLite's
    # the backend may emit in a worker process that imports its libraries while the frontend runs (`tcc build`
    # asks for it; backends/tvm/worker.py)
    compile_worker: bool = False
    # where the spec came from when it was not written by hand (an ONNX file imported in memory: its name and
    # sha256), recorded in the manifest
    source: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:  # a checkpoint's path for `weights` is that checkpoint, matched by name
        object.__setattr__(self, "weights", Weights.of(self.weights))

    def backend_options(self, backend: str) -> Any:
        """The options record of a backend family (a key of tcc.backends.BACKENDS); None where it has none."""
        return {"tvm": self.tvm, "ax": self.kit, "tflite": self.tflite}.get(backend)


def build_settings(target: str, **keywords: Any) -> BuildSettings:
    """BuildSettings for `target` from keywords, each a field of BuildSettings or of a record it holds
    (`precision="int8", calib="t.json", tune=8, seed=3`); a mapping given for a record sets its fields
    (`calibration={"method": "kl", "calib_size": 16}`). A misspelt one: a TypeError naming the nearest field."""
    return with_keywords(BuildSettings(target), keywords, "build")


@dataclass
class BuildResult:
    out: Path
    manifest: dict
    report: object  # the pass pipeline's report (printable)
    seconds: dict = field(default_factory=dict)  # wall time per step (never written into the bundle)


@dataclass(frozen=True)
class Quantized:
    """An INT8 build's table and what follows from it."""

    table: CalibrationTable  # without its wall times: the same inputs give byte-identical bundles
    qgraph: Any  # the quantized graph (tcc.quant.intgraph.qtypes.QGraph)
    manifest: dict  # the manifest's "quantization"
    x: np.ndarray | None  # the self-check's inputs: the first calibration samples (None: seeded ones)
    described: dict | None  # the manifest's description of x
    data: CalibrationData | None  # the calibration samples (kits keep them in the archive)
    fidelity: Fidelity | None = None  # judged on samples of the data (None: built from a table alone)


@dataclass(frozen=True)
class _Build:
    """What the steps of one build share once its frontend has run."""

    settings: BuildSettings  # the precision resolved
    target: Target
    backend: Backend
    fe: Frontend
    options: EmitOptions
    quantized: Quantized | None


# ---------------------------------------------------------------------------------------------------- the build
def _with_phases(fn: Callable[P, BuildResult]) -> Callable[P, BuildResult]:
    """Run `fn` (a build) inside tcc.process.phases.recording() and add the phases to its result's `seconds`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> BuildResult:
        with recording() as phases:
            result = fn(*args, **kwargs)
        result.seconds.update(phases)
        return result

    return wrapper


@_with_phases
def build(
    spec: str | Path | Spec,
    settings: BuildSettings,
    out: str | Path,
    *,
    force: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> BuildResult:
    """Compile `spec` (a path, or a loaded Spec) by `settings` into a self-checked bundle at `out` (atomically;
    `force` replaces one there). The result's `seconds` holds the wall time of every phase (tcc.process.phases:
    "emit/compile", "target-checks/host-twin/link", ...)."""
    t0 = time.perf_counter()
    tgt = get_target(settings.target)
    precision = check_precision(tgt, settings.precision)
    settings = replace(settings, precision=precision)
    backend = get_backend(tgt.backend)
    out = Path(out)
    _check(settings, tgt, backend, out, force)
    with phase("preload"):
        backend.preload(worker=settings.compile_worker)
    try:
        fe = lower_spec(
            spec, settings.overrides, settings.weights, opset=settings.opset, simplify=settings.simplify, log=log
        )
        options = EmitOptions(
            settings.target,
            precision,
            settings.opset,
            preprocess=fe.model.preprocess,
            backend=settings.backend_options(tgt.backend),
        )
        backend.check(fe.onnx, options)  # every node the target cannot express, named, before any more work
        quantized = _quantized(settings, tgt, backend, fe, log) if precision == "int8" else None
        if quantized is not None:
            options = replace(options, table=quantized.table, data=quantized.data)
        seconds = dict(fe.seconds)
        manifest = _write(_Build(settings, tgt, backend, fe, options, quantized), out, force)
        seconds["total"] = time.perf_counter() - t0
        return BuildResult(out, manifest, fe.report, seconds)
    finally:
        backend.close()  # a worker that preload started and the build did not reach


def _check(settings: BuildSettings, tgt: Target, backend: Backend, out: Path, force: bool) -> None:
    """The user's mistakes a build can see before any work, in the order it has always reported them."""
    caps, precision = backend.capabilities, str(settings.precision)  # resolved by build
    lo, hi = caps.opsets
    if not lo <= settings.opset <= hi:
        raise BuildError(f"target {settings.target}: opset {settings.opset} is outside the supported {lo}..{hi}")
    check_out(out, force)  # fail before the expensive part; atomic_dir checks again at the end
    settings.kit.check(tgt, caps.kit)
    int8 = settings.int8
    prepare.check_sources(precision, int8.calib, int8.data, tgt, caps.int8_lowering, caps.kit)
    settings.tvm.check(tgt)
    if precision == "int8":
        request = _request(settings, tgt)
        prepare.check_placement_source(request.placement, int8.calib)
        if int8.floor.required and int8.data is None:
            raise BuildError(
                "--require-cos judges the INT8 model on samples: build with --data (or judge a table with "
                "`tcc calibrate --eval DIR --require-cos C`)"
            )
        if int8.calib is None:  # calibrating now
            prepare.check_request(request, get_rules(_rules(tgt)), settings.target)


def _request(settings: BuildSettings, tgt: Target) -> CalibrationRequest:
    """The build's calibration request: the target's rules, the build's seed, no placement unless it places."""
    request = settings.int8.calibration
    placement = request.placement if request.placement is not None and request.placement.active else None
    return replace(
        request,
        settings=replace(request.settings, target=_rules(tgt), seed=settings.weights.seed),
        placement=placement,
    )


def _rules(tgt: Target) -> str:
    """An INT8 target's rules (the preflight, prepare.check_sources, refused a target without)."""
    assert tgt.rules is not None
    return tgt.rules


def _references(ref: Any, x: np.ndarray, float64: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The PyTorch lowering's output on the check inputs in float32, and in float64 if asked."""
    return torch_run(ref, x), (torch_run(ref, x, float64=True) if float64 else None)


def _write(b: _Build, out: Path, force: bool) -> dict:
    """Emit the artifact into the bundle being built, self-check it, run the target's checks and write the
    manifest; the bundle appears at `out` only when all of it passed. Returns the manifest."""
    caps, precision, options, fe, q = b.backend.capabilities, b.options.precision, b.options, b.fe, b.quantized
    x = q.x if q is not None else None
    if x is None:
        x = np.random.default_rng(CHECK_SEED).standard_normal((CHECK_BATCH, *fe.model.input_shape)).astype(np.float32)
    # PyTorch's references run on a thread while the backend emits (an emit in a worker process leaves this one
    # waiting): float32, and float64 where the check judges against it
    references = Background("tcc-reference", _references, fe.module, x, float64=caps.kit or precision == "fp32")
    with atomic_dir(out, force) as tmp:
        with phase("emit"):
            files = b.backend.emit(fe.onnx, options, tmp)
        with phase("reference"):  # what is left of it
            expected, expected64 = references.result()
        # checks of the artifact alone run while the self-check runs it (TVM: objdump's instruction mix)
        artifact_checks = Background("tcc-artifact-checks", b.backend.artifact_checks, options, tmp)
        inputs = CheckInputs(x, fe.module, expected, expected64, q.qgraph if q else None, q.described if q else None)
        with phase("self-check"):
            got, check = run_self_check(b.backend, fe.onnx, options, tmp, inputs)
        if options.table is not None:
            options.table.save(tmp / CALIBRATION_FILE)  # the exact scales the artifact was built from
        if not all(r["passed"] for r in (check["result"], check.get("float16_activations", {"passed": True}))):
            raise SelfCheckError(failure_message(b.settings.target, "fp32" if caps.kit else precision, check))
        with phase("target-checks"):
            with phase("artifact"):  # what is left of it
                target_checks = artifact_checks.result()
            target_checks.update(b.backend.extra_checks(fe.onnx, options, tmp, x, got))
        manifest = _manifest(b, files, check, target_checks)
        with phase("manifest"):
            return finish_bundle(tmp, manifest)


def _tiling(b: _Build) -> dict | None:
    """A segmenter's stride and receptive field, measured on the FP32 lowering (tcc.field), for `tcc slide --segment`
    to tile the bundle with; None for other models."""
    model = b.fe.model
    return tiling_record(model.graph, tuple(model.input_shape), lambda x: torch_run(b.fe.module, x))


def _manifest(b: _Build, files: list[str], check: dict, target_checks: dict) -> dict:
    model, onnx_model, settings, q = b.fe.model, b.fe.onnx, b.settings, b.quantized
    return {
        "format": FORMAT,
        "model": {
            "name": model.name,
            "spec": model.path.name,
            "spec_hash": model.spec_hash,
            "params": model.params,
            **({"source": settings.source} if settings.source else {}),
        },
        "target": settings.target,
        "backend": b.target.backend,
        "precision": b.options.precision,
        "opset": settings.opset,
        "simplify": settings.simplify,
        "artifact": files[0],
        "artifacts": files,
        "inputs": _io(onnx_model.graph.input, onnx_model.graph.initializer),
        "outputs": _io(onnx_model.graph.output, []),
        "preprocess": model.preprocess.to_json(),
        "labels": model.labels,
        **({"tiling": tiling} if (tiling := _tiling(b)) else {}),
        "weights": b.fe.weights,
        "passes": _report_json(b.fe.report),
        **({"quantization": q.manifest} if q else {}),
        "self_check": check,
        **({"target_checks": target_checks} if target_checks else {}),
        "runtime": b.backend.runtime_info(b.options),
        "tool": {"name": "tcc", "version": _version("tcc")},
        "libraries": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            **{lib: _version(lib) for lib in ("onnx", "onnxruntime", "torch", "onnxsim")},
        },
    }


# ---------------------------------------------------------------------------------------------------- INT8
def _quantized(settings: BuildSettings, tgt: Target, backend: Backend, fe: Frontend, log: Log) -> Quantized:
    """The INT8 build's table, loaded and checked against this spec, weights and FP32 graph (and validated entry by
    entry against its integer graph; against `data` too when both are given, as kits take them), or made now from
    `data`; with its quantized graph, the manifest's record and the self-check's inputs."""
    caps, int8 = backend.capabilities, settings.int8
    # refused here, in seconds, when a node has no integer form on this backend: nothing calibrated or written
    graph = plan(
        fe.onnx,
        lowering=caps.int8_lowering,
        rules=_rules(tgt),
        what=f"the {settings.target} INT8 build ({caps.int8_lowering} lowering)",
    )
    with phase("calibration"):
        rules, request = get_rules(_rules(tgt)), _request(settings, tgt)
        calibration = prepare.resolve(request, fe.model.calibrate, graph, rules, settings.target)
        cd = None
        if int8.data is not None:
            model, seed = fe.model, settings.weights.seed
            cd = load_calibration_data(
                int8.data, model.preprocess, model.input_shape, request.calib_size, seed, request.skip_bad
            )
        w = settings.weights.file
        provenance = Provenance(cd.fingerprint if cd else None, fe.model.spec_hash, sha256_file(w) if w else None)
        source: dict[str, Any]
        if int8.calib is not None:
            table = _given_table(settings, fe, graph, rules, provenance)
            source = {"from": "table", "file": Path(int8.calib).name, "sha256": sha256_file(int8.calib)}
        else:
            assert cd is not None  # prepare.check_sources: a build without a table has data
            table = _calibrated(fe, cd.array, graph, calibration, provenance, request, log)
            source = {"from": "data", "samples": len(cd.array)}
        # the bundle keeps the table without its wall times: the same inputs must give byte-identical bundles
        table = table.without_timing()
        where = str(int8.calib) if int8.calib is not None else "calibration table"
        qgraph = quantize_graph(graph, table, where=where)
        x = np.ascontiguousarray(cd.array[:CHECK_BATCH]) if cd is not None else None
        described: dict[str, Any] | None = None
        if x is not None:
            described = {
                "source": "calibration data",
                "samples": CHECK_BATCH,
                "description": f"the first {CHECK_BATCH} calibration samples",
            }
    manifest = _quantization(table, qgraph, source, rules)
    fidelity = None
    if cd is not None:
        with phase("fidelity"):
            fidelity = _fidelity(settings, fe, cd, qgraph)
        manifest["fidelity"] = fidelity.to_json(int8.floor)
        judge(fidelity, int8.floor)  # below a required floor: nothing is written
    return Quantized(table, qgraph, manifest, x, described, cd, fidelity)


def _fidelity(settings: BuildSettings, fe: Frontend, cd: CalibrationData, qgraph: QGraph) -> Fidelity:
    """The INT8 model (the integer reference) against FP32 on up to JUDGE_SAMPLES samples of the data that
    calibration did not pick, or, where it took them all, on calibration samples (said so)."""
    model, request = fe.model, settings.int8.calibration
    assert settings.int8.data is not None  # the caller has calibration data
    rest = held_back(settings.int8.data, cd, model.preprocess, model.input_shape, settings.weights.seed, JUDGE_SAMPLES)
    if rest is not None:
        x, judged_on = rest, f"{len(rest)} held-back samples (of the data, not calibrated on)"
    else:
        x = np.ascontiguousarray(cd.array[:JUDGE_SAMPLES])
        judged_on = (
            f"{len(x)} calibration samples (calibration took every sample of the data; with more samples than "
            f"calib_size ({request.calib_size}) the build judges on others)"
        )
    return measure_int8(fe.module, qgraph, x, judged_on)


def _given_table(
    settings: BuildSettings, fe: Frontend, graph: IntGraph, rules: TargetRules, provenance: Provenance
) -> CalibrationTable:
    """The table given with --calib, checked against the build (tcc.quant.prepare)."""
    calib, where = settings.int8.calib, str(settings.int8.calib)
    assert calib is not None  # a build given a table
    table = load_table(
        calib, spec_hash=provenance.spec_hash, weights_hash=provenance.weights_hash, model_hash=model_sha256(fe.onnx)
    )
    asked = settings.int8.calibration.settings.activation_bits  # --activation-bits as given
    prepare.check_table(table, where, fe.onnx, graph, rules, settings.target, asked)
    if provenance.data_fingerprint is not None:
        prepare.check_table_data(table, where, settings.int8.data, provenance.data_fingerprint)
    return table


def _calibrated(
    fe: Frontend,
    x: np.ndarray,
    graph: IntGraph,
    calibration: CalibrationSettings,
    provenance: Provenance,
    request: CalibrationRequest,
    log: Log,
) -> CalibrationTable:
    """A table calibrated now on `x` by the resolved settings, then placed as the request asks."""
    log(f"calibrating on {len(x)} samples ({calibration.method}, rules {calibration.target})")
    table = calibrate_onnx(fe.onnx, x, calibration, provenance, graph=graph)
    for line in table_choice_lines(table):
        log(line)
    if request.placement is not None:
        table = place(fe.onnx, table, x, request.placement, log)
        for line in placement_lines(table, nodes=False):  # the nodes: the manifest's float islands
            log(line)
    return table


def _quantization(
    table: CalibrationTable, qgraph: QGraph, source: dict[str, Any], rules: TargetRules
) -> dict[str, Any]:
    """The manifest's "quantization" record."""
    info = {
        "table": CALIBRATION_FILE,
        **source,
        "method": table.method,
        "rules": rules.name,
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
    return info


def _width_counts(table: CalibrationTable) -> dict[str, int]:
    """How many activation tensors the table gives each width ({"8": 64}, or {"16": 64} for W8A16)."""
    widths = [t.get("bits", 8) for t in table.tensors.values() if t["kind"] == "activation"]
    return {str(b): widths.count(b) for b in sorted(set(widths))}


def _kind_counts(qgraph: QGraph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in qgraph.nodes:
        if n.integer:
            counts[n.kind] = counts.get(n.kind, 0) + 1
    return dict(sorted(counts.items()))


def _io(values: Iterable[onnx.ValueInfoProto], initializers: Iterable[onnx.TensorProto]) -> list[dict[str, Any]]:
    skip = {t.name for t in initializers}
    out = []
    for v in values:
        if v.name in skip:
            continue
        tt = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
        out.append({"name": v.name, "shape": dims, "dtype": str(helper.tensor_dtype_to_np_dtype(tt.elem_type))})
    return out


def _report_json(report: object) -> Any:
    """The pass report as JSON data, without its wall times (a bundle must not depend on when it was built)."""
    if hasattr(report, "to_json"):
        data = report.to_json()
    elif dataclasses.is_dataclass(report) and not isinstance(report, type):
        data = dataclasses.asdict(report)
    elif isinstance(report, (dict, list)):
        data = report
    else:
        return str(report).splitlines()
    return _drop_times(data)


def _drop_times(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _drop_times(v) for k, v in data.items() if k not in ("seconds", "time", "elapsed")}
    if isinstance(data, list):
        return [_drop_times(v) for v in data]
    return data


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
