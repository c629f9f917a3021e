"""The TVM backend: targets `host`, `arm-a7`, `aarch64` (alias `arm-a53`), FP32 and INT8.

A bundle holds the compiled module and a deployment kit that runs it without Python:

    model.so              Relax VM executable + kernels, compiled (LLVM) and linked for the target
    kit/bin/tcc-run       the runner (ARM binaries for ARM targets), RUNPATH $ORIGIN/../lib
    kit/lib/*.so          the TVM runtime for the target's architecture (+ the C++ runtime for ARM)
    kit/kit.json          which target the kit is for, the module's input shape
    kit/README.md         how to copy the bundle to the board and run it; the tensor file format
    kit/run.sh            `./run.sh input.bin output.bin` from anywhere

kit.py names these files and writes the kit (`write_kit`).
Everything target-specific (TVM target, cross compiler, qemu) comes from compiler/targets.py; compiling is
backends/tvm/compile.py (MetaSchedule tuning: tune.py), the runtimes and their cache backends/tvm/runtime.py,
running backends/tvm/runner.py (tensor files: tensor_file.py), the vector-instruction counts instruction_mix.py.
FP32: the Relax ONNX frontend with a fixed batch of 1 (the deployment case; fixed shapes let tcc's schedules
(backends/tvm/schedule/) vectorize and MetaSchedule tune; larger batches run sample by sample). INT8:
backends/tvm/int8/lower.py lowers the graph + calibration table to integer Relax ops (channels-last, batch 1 too),
compiled the same way.
Running here: the bundle's own kit/bin/tcc-run, natively for `host` and under qemu-user for the ARM targets.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from tcc.bundle import read_manifest, stable_float
from tcc.errors import BuildError, SelfCheckError
from tcc.process.phases import phase
from tcc.quant.table.file import load_table
from tcc.quant.table.placement import float_nodes

from ... import targets as tvm_targets
from ..base import Backend, Capabilities, EmitOptions, Exposed
from . import compile as tvm_compile
from . import runner as tvm_run
from . import runtime as rt
from . import tune as tvm_tune
from . import worker as tvm_worker
from .import_tvm import import_tvm_first
from .kit import ARTIFACT, KIT, KIT_INFO, write_kit
from .measure import cycles
from .measure.blocks import inference_blocks, instruction_summary
from .measure.cycle_models import CYCLE_MODELS
from .measure.insn_profile import nm_for
from .measure.instruction_mix import instruction_mix
from .options import TvmOptions
from .runtime import TVM_FFI_PIN, TVM_PIN

DEPLOY_BATCH = 1  # modules are compiled for one image per call (see the module docstring)
# ARM vs host: the same TVM schedules, compiled by LLVM for another ISA. ARM code is built with fast-math (ARMv7
# NEON has no IEEE mode; the target registry explains why) and fuses multiply-adds, so float results differ from
# the host's by reassociation/FMA rounding only: a few float32 ulps of each accumulation. 1e-5 absolute (plus
# 1e-5 relative for large logits) is the FP32 contract's atol; measured differences are ~1e-6 (manifest).
ARM_VS_HOST_FP32 = {"atol": 1e-5, "rtol": 1e-5}


@dataclass
class TvmLoaded:
    bundle: Path
    target: str
    module: Path  # model.so
    runner: Path  # the kit's tcc-run
    batch: int | None  # the module's fixed batch, None if dynamic


def _tvm_missing() -> str | None:

    try:
        metadata.version("apache-tvm")
    except metadata.PackageNotFoundError:
        return (
            "the TVM backend needs the Python package apache-tvm: `tcc setup TARGET` installs it with the target's "
            f"toolchain and runtime (by hand: pip install apache-tvm=={TVM_PIN} apache-tvm-ffi=={TVM_FFI_PIN})"
        )
    return None


def converted_ops() -> frozenset[str]:
    """The ONNX ops TVM's Relax ONNX frontend converts."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map  # deferred for start-up: loads tvm

    return frozenset(_get_convert_map()) | {"Constant", "If"}  # the two the frontend handles itself


def _platform(target: str) -> tvm_targets.Platform:
    try:
        return tvm_targets.get_platform(target)
    except tvm_targets.UnknownTargetError as e:
        raise BuildError(str(e)) from None


# compile_module's options that follow the precision, the same for a build and its host twin: every x86 module has
# its dense-block concats in place (only memory moves: INT8 outputs bit-identical); INT8 modules round their float
# steps exactly (no fast-math) and keep their input transpose; FP32 ones get the other x86 rewrites (the first conv
# reading the NCHW input, exponentials as polynomials, output channels in whole vectors, 1 x 1 depthwise convs as
# multiplies)
PRECISION_OPTIONS = {
    "int8": tvm_compile.CompileOptions(ieee=True, x86=tvm_compile.X86Passes(concat_in_place=True)),
    "fp32": tvm_compile.CompileOptions(
        x86=tvm_compile.X86Passes(
            concat_in_place=True, nchw_input=True, fast_math=True, whole_vectors=True, channel_scale=True
        )
    ),
}


class TvmBackend(Backend):
    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            name="tvm",
            targets=tuple(tvm_targets.PLATFORMS),
            precisions=("fp32", "int8"),
            onnx_ops=None,  # unsupported() asks the Relax ONNX frontend which ops it converts
            opsets=(11, 21),
            # host bundles run wherever apache-tvm is installed; ARM bundles also need qemu-user, which load()
            # checks per target (naming the package) -- capabilities cannot say "this target only"
            runs_here=_tvm_missing() is None,
            int8_lowering="tvm",  # backends/tvm/int8/lower.py: RelaxLowering over the integer op table
            int8_exact=True,  # integer kernels with the reference's fixed-point requantization: bit for bit
        )

    options_type = TvmOptions  # --tune, --count-instructions, --host-twin: EmitOptions.backend

    # ------------------------------------------------------------------ checks
    def unsupported(self, model) -> list[tuple[str, str]]:
        bad = super().unsupported(model)
        if _tvm_missing() is not None:
            return bad
        known = self._worker.converted_ops() if self._worker is not None else converted_ops()
        named = {n for n, _ in bad}
        for node in model.graph.node:
            name = node.name or node.output[0]
            if name not in named and node.domain in ("", "ai.onnx") and node.op_type not in known:
                bad.append((name, f"op {node.op_type} has no converter in TVM's Relax ONNX frontend"))
        return bad

    def check(self, model, options: EmitOptions) -> None:
        missing = _tvm_missing()
        if missing:
            raise BuildError(f"target {options.target}: {missing}")
        platform, own = _platform(options.target), self.own_options(options)
        if own.tune and platform.is_cross:
            raise BuildError(
                f"--tune is host-only: MetaSchedule measures every candidate schedule, and {platform.name} "
                "code cannot be timed on this machine (qemu timings say nothing about a Cortex core; "
                "tuning for a board needs an RPC runner on it). Build without --tune, or tune the "
                "host target."
            )
        if own.tune < 0:
            raise BuildError(f"--tune must be a number of trials >= 0, not {own.tune}")
        if own.tune or own.tune_log:
            problem = tvm_tune.meta_schedule_problem()
            if problem:
                raise BuildError(f"--tune/--tune-log: {problem}. Build without them (untuned default schedules).")
        self._require_tools(options.target, run=True)  # the self-check runs ARM modules under qemu
        super().check(model, options)

    @staticmethod
    def _require_tools(target: str, *, run: bool) -> None:
        """BuildError naming the Debian package when the cross compiler (or, with `run`, qemu) is missing."""
        missing = rt.missing_tools(target, build=False, run=run)
        if missing:
            what = "; ".join(f"`{cmd}` ({how})" for cmd, how in missing)
            raise BuildError(f"target {target} needs {what}; or run `tcc setup {target}` (as root)")

    # ------------------------------------------------------------------ emit
    _worker = None  # set by preload(worker=True): tcc.backends.tvm.worker

    def preload(self, worker: bool = False) -> None:
        if _tvm_missing() is not None:  # check() says so, with what to install
            return
        if worker and tvm_worker.pays():
            self._worker = tvm_worker.Worker(converted_ops, _emit_here)
        else:
            import_tvm_first()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def emit(self, model, options: EmitOptions, out_dir: Path) -> list[str]:
        if self._worker is None:
            return self.emit_here(model, options, out_dir)
        worker, self._worker = self._worker, None
        return worker.emit(model, options, out_dir)

    def emit_here(self, model, options: EmitOptions, out_dir: Path) -> list[str]:
        """The emit step in this process."""
        out_dir = Path(out_dir)
        platform = _platform(options.target)
        runtime = self._runtime(options.target)  # before the compile: a missing runtime fails fast
        with phase("import"):
            mod = self._relax_module(model, options)
        tune_dir, tune_trials = self._tuning(model, options)
        try:
            tvm_compile.compile_module(
                mod,
                options.target,
                out_dir / ARTIFACT,
                replace(PRECISION_OPTIONS[options.precision], tune_dir=tune_dir, tune_trials=tune_trials),
            )
        except BuildError:  # ToolchainMissing: names the package to install
            raise
        except Exception as e:  # TVM raises TVMError/InternalError subclasses with C++ backtraces
            raise BuildError(f"TVM failed to compile the model for {options.target}: {_first_line(e)}") from None
        if tune_dir and tune_trials:
            _write_tune_stamp(tune_dir, self.own_options(options).tune)
        with phase("kit"):
            kit_files = write_kit(out_dir, platform, runtime, _input_shape(mod), options)
        return [ARTIFACT, *kit_files]

    def _runtime(self, target: str) -> Path:
        try:
            return rt.ensure_runtime(target)
        except rt.RuntimeBuildError as e:
            raise BuildError(f"cannot prepare the TVM runtime for {target}: {e}") from None

    def _relax_module(self, model, options: EmitOptions):
        if options.precision == "int8":
            from .int8.lower import lower_int8  # deferred for start-up: loads onnx

            if options.table is None:
                raise BuildError("precision int8 needs a calibration table")
            return lower_int8(model, options.table, batch=DEPLOY_BATCH, target=options.target)
        if options.precision != "fp32":
            raise BuildError(f"the tvm backend cannot emit precision {options.precision}")
        inp = next(i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
        dims = [d.dim_value if d.HasField("dim_value") else DEPLOY_BATCH for d in inp.type.tensor_type.shape.dim]
        try:
            return tvm_compile.import_onnx(model, shape_dict={inp.name: dims})
        except Exception as e:  # check() caught unknown ops; this is a converter failing on an attribute/shape
            raise BuildError(f"TVM's ONNX frontend cannot import the model: {_first_line(e)}") from None

    def _tuning(self, model, options: EmitOptions) -> tuple[str | None, int]:
        """(MetaSchedule work dir, trials still to run). The database is kept per target + CPU + model + precision
        (or in --tune-log) and reused: a later build with the same or a smaller budget applies it without tuning,
        one with a larger budget runs only the difference (tcc-tune.json there holds the budget tuned so far)."""
        own = self.own_options(options)
        if not own.tune and not own.tune_log:
            return None, 0
        if own.tune_log:
            work = Path(own.tune_log)
            if not own.tune and not (work / "database_tuning_record.json").is_file():
                raise BuildError(
                    f"--tune-log {work}: no MetaSchedule database there "
                    "(database_tuning_record.json); pass --tune N to make one"
                )
        else:
            key = hashlib.sha256(model.SerializeToString() + options.precision.encode()).hexdigest()[:16]
            cpu = tvm_compile.resolve_tvm_target(options.target).get("mcpu", "generic")
            work = rt.cache_root() / "tune" / f"{options.target}-{cpu}-{key}"
        work.mkdir(parents=True, exist_ok=True)
        done = _read_tune_stamp(work)  # trials the database holds already: only the rest of the budget is run
        return str(work), max(0, own.tune - done)

    # ------------------------------------------------------------------ run
    def load(self, bundle_dir: Path) -> TvmLoaded:
        bundle = Path(bundle_dir)
        try:
            info = json.loads((bundle / KIT_INFO).read_text())
        except (OSError, ValueError) as e:
            raise BuildError(f"{bundle}: not a TVM bundle ({KIT_INFO}: {e})") from None
        target = info["target"]
        platform = _platform(target)
        if platform.qemu and not shutil.which(platform.qemu[0]):
            raise BuildError(
                f"{bundle}: a {target} bundle runs here only under `{platform.qemu[0]}` "
                "(Debian package qemu-user: apt-get install -y qemu-user)"
            )
        shape = info.get("input_shape") or []
        batch = shape[0] if shape and isinstance(shape[0], int) else None
        return TvmLoaded(bundle, target, bundle / ARTIFACT, bundle / KIT / "bin" / "tcc-run", batch)

    def run(self, loaded: TvmLoaded, x: np.ndarray) -> np.ndarray:
        return _run_batched(loaded.module, loaded.target, x, loaded.batch, runner=loaded.runner)

    def tensors(self, bundle_dir: Path, x: np.ndarray, model=None) -> dict:
        """The bundle's final output as shipped (ARM: its kit's runner under qemu). A host bundle, given `model`,
        also gives every tensor through a debug twin compiled for this machine: INT8, every quantized tensor's
        codes (tcc.backends.tvm.int8.lower.lower_int8's `expose`); FP32, every node output of the ONNX made a graph
        output. The twin's final output is checked against the bundle's first (INT8: bit for bit)."""
        m = read_manifest(bundle_dir)
        loaded = self.load(bundle_dir)
        y = np.asarray(self.run(loaded, x), np.float32)
        out_name = m["outputs"][0]["name"]
        if model is None or loaded.target != "host" or len(x) != 1:
            return {out_name: Exposed(y)}
        int8 = m["precision"] == "int8"
        with tempfile.TemporaryDirectory(prefix="tcc-debug-twin-") as tmp:
            if int8:
                from tcc.quant.intgraph.reference import run_reference  # deferred for start-up: loads onnx

                from .int8.lower import lower_int8  # deferred for start-up: loads onnx

                table = load_table(Path(bundle_dir) / "calibration.json")
                _, codes = run_reference(model, table, x, return_all=True)  # the quantized tensors, in graph order
                names = list(codes)
                mod = lower_int8(model, table, expose=tuple(names), batch=1, target="host")
            else:
                names, mod = _all_outputs_module(model)
            so = tvm_compile.compile_module(mod, "host", Path(tmp) / ARTIFACT, tvm_compile.CompileOptions(ieee=int8))
            outs = tvm_run.run_module(so, "host", np.ascontiguousarray(x, np.float32))[0]
        twin = np.asarray(outs[0], np.float32)
        same = np.array_equal(twin, y) if int8 else np.allclose(twin, y, rtol=1e-4, atol=1e-5 * max(1, np.abs(y).max()))
        if not same:
            raise BuildError(
                f"{bundle_dir}: the debug twin compiled from --spec does not compute the bundle's output "
                "(built from another spec or weights?)"
            )
        exposed = {}
        for name, v in zip(names, outs[1:]):
            if int8:
                s, zp, _ = table.act_scale(name)
                exposed[name] = Exposed(((np.asarray(v, np.int64) - zp) * np.float32(s)).astype(np.float32), s)
            else:
                exposed[name] = Exposed(np.asarray(v, np.float32))
        exposed[out_name] = Exposed(y)
        return exposed

    def int8_codes(self, model, options: EmitOptions, bundle_dir: Path, x: np.ndarray, got: np.ndarray) -> dict:
        """Asked only where float islands kept the module from equalling the reference end to end (an island's
        float result may round a code the other way at a tie): the codes of every quantized tensor, from a twin of
        the module that also returns them (lower_int8's `expose`), compiled for the same target and run by the
        kit's runner (under qemu for ARM). Its final output must be the bundle's, bit for bit."""
        from tcc.quant.intgraph.match import plan  # deferred for start-up: loads onnx
        from tcc.quant.intgraph.qgraph import quantize_graph  # deferred for start-up: loads onnx

        from .int8.lower import lower_int8  # deferred for start-up: loads onnx

        qg = quantize_graph(plan(model, lowering="tvm", rules=options.table.rules), options.table)
        names = [t for n in qg.nodes for t, q in zip(n.outputs, n.qout) if q is not None]
        runner = Path(bundle_dir) / KIT / "bin" / "tcc-run"
        with tempfile.TemporaryDirectory(prefix="tcc-codes-twin-") as tmp:
            so = tvm_compile.compile_module(
                lower_int8(model, options.table, expose=tuple(names), batch=DEPLOY_BATCH),
                options.target,
                Path(tmp) / ARTIFACT,
                tvm_compile.CompileOptions(ieee=True),
            )
            runs = [
                tvm_run.run_module(so, options.target, np.ascontiguousarray(x[i : i + 1], np.float32), runner=runner)[0]
                for i in range(len(x))
            ]
        if not np.array_equal(np.concatenate([r[0] for r in runs]), got):
            raise SelfCheckError(
                "self-check: the INT8 module with its codes exposed does not compute what the "
                "artifact computes; no bundle was written"
            )
        return {name: np.concatenate([r[k + 1] for r in runs]) for k, name in enumerate(names)}

    # ------------------------------------------------------------------ target checks
    def artifact_checks(self, options: EmitOptions, bundle_dir: Path) -> dict:
        mix = instruction_mix(Path(bundle_dir) / ARTIFACT, _platform(options.target).name)
        return {"instruction_mix": _mix_summary(mix)}

    def extra_checks(self, model, options: EmitOptions, bundle_dir: Path, x: np.ndarray, got: np.ndarray) -> dict:
        platform, own = _platform(options.target), self.own_options(options)
        bundle = Path(bundle_dir)
        checks: dict = {}
        if platform.is_cross and own.host_twin:
            # The same model compiled for the host, run natively, against the ARM module run by the kit's own
            # runner under qemu: tells ARM codegen / runtime problems apart from the model's own error. On request
            # (--host-twin): the self-check already runs the ARM module under qemu against PyTorch (INT8: against
            # the integer reference, bit-exact, which implies the host twin's bit-exactness), and the twin doubles
            # the compile time.
            with tempfile.TemporaryDirectory(prefix="tcc-host-twin-") as tmp, phase("host-twin"):
                host_so = Path(tmp) / ARTIFACT
                host_opts = EmitOptions("host", options.precision, options.opset, options.table)
                tvm_compile.compile_module(
                    self._relax_module(model, host_opts), "host", host_so, PRECISION_OPTIONS[options.precision]
                )
                with phase("run"):
                    host = _run_batched(host_so, "host", x, self.load(bundle).batch)
            a, h = np.asarray(got, np.float64), np.asarray(host, np.float64)
            d = np.abs(a - h)
            if options.precision == "int8" and _has_islands(model, options.table):
                # float islands: each module's float ops round on their own; each was judged op by op against
                # the reference (the self-check), so the two may differ by island ties: recorded
                passed, required = True, "recorded (float islands: the self-check judged each module's ops)"
            elif options.precision == "int8":
                passed = bool(np.array_equal(got, host))
                required = "bit-exact"
            else:
                tol = ARM_VS_HOST_FP32
                passed = a.shape == h.shape and bool(np.all(d <= tol["atol"] + tol["rtol"] * np.abs(h)))
                required = f"|arm - host| <= {tol['atol']} + {tol['rtol']} * |host|"
            checks["arm_vs_host"] = {
                "description": f"{platform.name} module run by kit/bin/tcc-run under "
                f"`{' '.join(platform.qemu or ())}` vs the same model compiled for the host, on the self-check inputs",
                "max_abs": stable_float(float(d.max()) if d.size else 0.0),
                "bit_exact": bool(np.array_equal(got, host)),
                "required": required,
                "passed": passed,
            }
            if not passed:
                raise SelfCheckError(
                    f"target check failed: the {platform.name} module under qemu differs from the host "
                    f"build by max abs {float(d.max()):.3g} (required: {required}); "
                    "no bundle was written"
                )
        if platform.is_cross and own.count_instructions:
            with phase("instruction-count"):
                if platform.cycle_model:
                    cycles.require_llvm()  # before minutes under qemu
                run = inference_blocks(
                    bundle / ARTIFACT,
                    platform.name,
                    np.ascontiguousarray(x[:1]),
                    bundle / "kit" / "bin" / "tcc-run",
                    log=platform.cycle_model is not None,
                )
                checks["instructions_per_inference"] = instruction_summary(run, platform.arch)
            if platform.cycle_model:
                with phase("cycle-estimate"):
                    core = CYCLE_MODELS[platform.cycle_model]
                    checks["cycles_per_inference"] = cycles.estimate(run, core, nm_for(platform.name))
        if options.precision == "fp32":
            checks["vs_onnxruntime"] = _vs_ort(model, x, got, platform.name)
        return checks

    def runtime_info(self, options: EmitOptions) -> dict:
        platform = _platform(options.target)
        run = "./bin/tcc-run ../model.so input.bin output.bin"
        info = {
            "runtime": f"TVM {rt.tvm_versions()[0]} Relax VM (kit/bin/tcc-run, kit/lib)",
            "artifact": ARTIFACT,
            "target": platform.name,
            "tvm_target": dict(tvm_compile.resolve_tvm_target(platform.name)),
            "batch": DEPLOY_BATCH,
            "kit": f"{KIT}/",
            "readme_run": [
                "On the board (copy the whole bundle folder; kit/README.md has the details):",
                "",
                "```sh",
                f"cd kit && {run}",
                "```",
                "",
                "Here: `tcc predict --artifact THIS_DIR --image picture.png --json`"
                + (f" (runs under `{platform.qemu[0]}`)" if platform.qemu else "")
                + ".",
            ],
        }
        own = self.own_options(options)
        if own.tune or own.tune_log:
            info["tuning"] = {
                "meta_schedule_trials": own.tune,
                "database": "--tune-log" if own.tune_log else "tcc cache (target + model hash)",
            }
        info["note"] = (
            "compiled for a batch of 1 image per call (fixed shapes: vectorized, tunable kernels); "
            "tcc predict runs larger batches sample by sample."
        )
        return info


# ---------------------------------------------------------------------------------------------------- helpers
def _first_line(e: Exception) -> str:
    text = str(e).strip()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(("  File", "Traceback"))]
    return lines[-1].strip() if lines else type(e).__name__


def _has_islands(model, table) -> bool:
    from tcc.quant.intgraph.match import plan  # deferred for start-up: loads onnx

    return bool(plan(model, lowering="tvm", rules=table.rules, floats=float_nodes(table)).islands)


def _input_shape(mod) -> list:
    """The shape of main's first parameter: ints, or the symbolic dimension's name."""
    ty = mod["main"].params[0].ty  # relax TensorType (TVM 0.27 names it `ty`, earlier versions `struct_info`)
    out: list[int | str] = []
    for d in ty.shape.values:
        try:
            out.append(int(d))
        except TypeError:
            out.append(str(d))
    return out


def _all_outputs_module(model):
    """(names, Relax module) of the FP32 ONNX `model` at batch 1 with every node output also a graph output."""
    import onnx  # deferred for start-up: loads onnx

    m = onnx.shape_inference.infer_shapes(model)
    out = m.graph.output[0].name
    typed = {v.name: v for v in m.graph.value_info}
    names = [o for n in m.graph.node for o in n.output if o in typed and o != out]
    m.graph.output.extend(typed[n] for n in names)
    inp = next(i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer})
    dims = [d.dim_value if d.HasField("dim_value") else DEPLOY_BATCH for d in inp.type.tensor_type.shape.dim]
    return names, tvm_compile.import_onnx(m, shape_dict={inp.name: dims})


def _run_batched(so: Path, target: str, x: np.ndarray, batch: int | None, runner: Path | None = None) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if batch is not None and len(x) % batch:
        raise BuildError(f"the module has a fixed batch of {batch}; got {len(x)} samples")
    parts = [x] if batch is None or batch == len(x) else [x[i : i + batch] for i in range(0, len(x), batch)]
    # one runner process per chunk (each qemu start costs ~0.1 s, small against the model), as many at once as
    # there are cores: under qemu one DDSNet inference takes seconds

    with ThreadPoolExecutor(max_workers=max(1, min(len(parts), os.cpu_count() or 1))) as pool:
        outs = list(pool.map(lambda p: tvm_run.run_module(so, target, p, runner=runner)[0][0], parts))
    return np.concatenate(outs) if len(outs) > 1 else outs[0]


def _mix_summary(mix: dict) -> dict:
    total, simd = mix["total"], mix["simd"]
    summary = {
        "arch": mix["arch"],
        "instructions": total,
        "simd": simd,
        "simd_fraction": round(simd / total, 4) if total else 0.0,
        "simd_kind": {"armv7": "NEON", "aarch64": "AdvSIMD (NEON)", "x86_64": "SSE/AVX"}[mix["arch"]],
        "top_simd": dict(list(mix["simd_by_mnemonic"].items())[:8]),
    }
    if mix.get("amx_by_mnemonic"):  # x86 AMX tiles (int8/variants/amx_stem.py: a stem on them)
        summary["amx"] = mix["amx_by_mnemonic"]
    return summary


def _vs_ort(model, x, got, target) -> dict:
    import onnxruntime as ort  # deferred for start-up: loads onnxruntime

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    ref = sess.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]
    d = np.abs(np.asarray(got, np.float64) - ref)
    return {
        "description": f"{target} module vs ONNX Runtime (CPU, FP32) on the self-check inputs (recorded)",
        "max_abs": stable_float(float(d.max()) if d.size else 0.0),
    }


_TUNE_STAMP = "tcc-tune.json"


def _read_tune_stamp(work: Path) -> int:
    try:
        return int(json.loads((work / _TUNE_STAMP).read_text())["trials"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _write_tune_stamp(work: str, trials: int) -> None:
    path = Path(work) / _TUNE_STAMP
    path.write_text(json.dumps({"trials": max(trials, _read_tune_stamp(Path(work)))}) + "\n")


def _emit_here(model, options, out_dir: Path) -> list[str]:
    """TvmBackend.emit_here as a module-level function: what the build's worker process runs (tvm.worker)."""
    return TvmBackend().emit_here(model, options, out_dir)
