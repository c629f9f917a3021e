"""The interface every backend implements (ONNX Runtime now; TVM, TFLite and Axera later).

A backend is a plain class with four members:

    capabilities            what it declares: targets, precisions, the ops it can express, whether it runs here
    emit(model, options, out_dir) -> [file names]   write the artifact(s) into out_dir (a bundle being built);
                                                     `model` is the ONNX after the pass pipeline (later: QDQ ONNX
                                                     plus the calibration table in `options`)
    load(bundle_dir) -> loaded                       open a built bundle's artifact for inference
    run(loaded, x) -> y                              float32 NCHW batch in, float32 output batch out

`check(model, options)` (shared, driven by `capabilities`) rejects an op or opset the target cannot express before
anything is written, naming the node; every node of the lowered ONNX carries its IR hierarchical name, so the
message points at the spec node. Backends raise `tcc.errors.BuildError` for user-facing problems. The bundle
(directory, manifest, hashes, atomic writes) and the self-check are the builder's job, not the backend's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tcc.bundle import read_manifest
from tcc.errors import BuildError

if TYPE_CHECKING:
    import numpy as np
    import onnx

PRECISIONS = ("fp32", "fp16", "int8", "dynamic")  # dynamic: int8 weights, activations quantized at run time


@dataclass(frozen=True)
class Capabilities:
    name: str
    targets: tuple[str, ...]
    precisions: tuple[str, ...]
    onnx_ops: frozenset[str] | None = None  # default-domain ops it can express; None: every op of the opset
    opsets: tuple[int, int] = (11, 21)  # lowest, highest opset accepted
    runs_here: bool = True  # can load and run its artifact on this machine (self-check, predict --artifact)
    int8_lowering: str | None = None  # INT8: the lowering of the integer op table it runs (tcc.intops)
    int8_exact: bool = False  # INT8 artifact must equal the integer reference bit for bit (else within LSBs)
    kit: bool = False  # writes a kit for a toolchain that runs elsewhere (Axera's): the float model it is given
    # is self-checked here as FP32, the INT8 result is predicted by the integer reference; needs --data


@dataclass(frozen=True)
class Exposed:
    """One tensor a backend exposes for `tcc diff`: float32 values; for an integer tensor, its scale (one LSB)."""

    values: Any
    scale: float | None = None


@dataclass(frozen=True)
class EmitOptions:
    """What every backend's emit is told; a backend's own options are a record of its package (`backend`)."""

    target: str
    precision: str = "fp32"
    opset: int = 13
    table: Any = field(default=None, compare=False)  # INT8: the tcc.quant CalibrationTable of `model`
    data: Any = field(default=None, compare=False)  # kits: the calibration samples (tcc.quant.collect.data)
    preprocess: Any = field(default=None, compare=False)  # kits: the spec's preprocessing (for the archive)
    # the target's backend's own options (tcc.backends.TvmOptions, KitOptions, TfliteOptions); None: its
    # defaults (Backend.own_options)
    backend: Any = None


class Backend:
    @property
    def capabilities(self) -> Capabilities:
        """What the backend declares (a class attribute or a property of each backend)."""
        raise NotImplementedError

    options_type: Any = None  # its own options record (EmitOptions.backend), where it has one

    def own_options(self, options: EmitOptions) -> Any:
        """The backend's own options record in `options`, or its defaults where none was given."""
        return options.backend if options.backend is not None else self.options_type()

    # ------------------------------------------------------------------ shared
    def check(self, model: onnx.ModelProto, options: EmitOptions) -> None:
        """Raise BuildError if the target cannot express `model` (an onnx.ModelProto) at `options`."""
        caps = self.capabilities
        lo, hi = caps.opsets
        if not lo <= options.opset <= hi:
            raise BuildError(f"target {options.target}: opset {options.opset} is outside the supported {lo}..{hi}")
        bad = self.unsupported(model)
        if bad:
            listed = ", ".join(f"'{name}' ({why})" for name, why in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise BuildError(f"target {options.target} cannot express {len(bad)} node(s): {listed}{more}")

    def unsupported(self, model: onnx.ModelProto) -> list[tuple[str, str]]:
        """(node name, reason) for every node the target cannot express."""
        import onnx  # deferred for start-up: every command imports the backend registry, few check a model

        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        allowed = self.capabilities.onnx_ops
        bad = []
        for node in model.graph.node:
            name = node.name or node.output[0]
            if node.domain not in ("", "ai.onnx"):
                bad.append((name, f"op {node.domain}.{node.op_type} is outside the standard ONNX domain"))
            elif allowed is not None and node.op_type not in allowed:
                bad.append((name, f"op {node.op_type} is not supported by {self.capabilities.name}"))
            else:
                try:
                    onnx.defs.get_schema(node.op_type, opset, "")
                except onnx.defs.SchemaError:
                    since = _since_version(node.op_type)
                    bad.append(
                        (
                            name,
                            f"op {node.op_type} does not exist in ONNX opset {opset}"
                            + (f"; it needs opset >= {since}" if since else ""),
                        )
                    )
        return bad

    # ------------------------------------------------------------------ per backend
    def preload(self, worker: bool = False) -> None:
        """Called before the frontend runs: a backend whose libraries load faster before PyTorch's imports them
        here (TVM: backends/tvm/import_tvm.py); with `worker`, a backend may start a process to emit in, importing
        them while the frontend runs (TVM: backends/tvm/worker.py). The command line asks for it."""

    def close(self) -> None:
        """Called when the build ends, whether it succeeded or not: ends what preload started."""

    def emit(self, model: onnx.ModelProto, options: EmitOptions, out_dir: Path) -> list[str]:
        raise NotImplementedError

    def load(self, bundle_dir: Path) -> Any:
        raise NotImplementedError

    def run(self, loaded: Any, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def check_run(self, bundle_dir: Path, x: np.ndarray, precision: str) -> np.ndarray:
        """The run the build's self-check gates: by default the artifact as `load` + `run` give it to a user; a
        backend whose bit-exact kernels are not its default ones (TFLite: the reference kernels) says so here."""
        return self.run(self.load(bundle_dir), x)

    def int8_codes(
        self, model: onnx.ModelProto, options: EmitOptions, bundle_dir: Path, x: np.ndarray, got: np.ndarray
    ) -> dict:
        """A backend that is not bit-exact with the integer reference (`int8_exact` False) returns here the codes
        its built artifact computes for every quantized tensor on input x ({tensor: codes}), so the build checks
        it op by op (tcc.quant.intgraph.reference.per_op_deviation). It must raise SelfCheckError if the way it obtains
        them
        changes what the artifact computes (the final output must stay `got`)."""
        raise NotImplementedError(f"backend {self.capabilities.name} cannot expose its INT8 codes")

    def artifact_checks(self, options: EmitOptions, bundle_dir: Path) -> dict:
        """Checks that read only the written artifact (e.g. its instruction mix), into the manifest's
        "target_checks" with extra_checks'. The build runs them on a thread while the self-check runs the artifact."""
        return {}

    def extra_checks(
        self, model: onnx.ModelProto, options: EmitOptions, bundle_dir: Path, x: np.ndarray, got: np.ndarray
    ) -> dict:
        """Checks beyond the builder's self-check (e.g. an ARM build run under qemu against the host build), run
        after `emit` on the bundle being built; the result goes into the manifest under "target_checks". Raise
        tcc.errors.SelfCheckError when one fails (the bundle is then not written)."""
        return {}

    def runtime_info(self, options: EmitOptions) -> dict:
        """What the manifest and the README say about running the artifact (runtime, providers, a snippet)."""
        return {}

    def tensors(self, bundle_dir: Path, x: np.ndarray, model: onnx.ModelProto | None = None) -> dict[str, Exposed]:
        """Every tensor the built artifact can expose on input x (`tcc diff`), in graph order, keyed by the FP32
        graph's tensor names, as float32 NCHW values (integer tensors dequantized, with their scale). `model`: the
        FP32 ONNX the bundle was built from, when the caller has it (a backend that renames tensors needs it to
        name them). Default: the final output alone, under the graph output's name."""
        import numpy as np  # deferred for start-up: every command imports the backend registry

        name = read_manifest(bundle_dir)["outputs"][0]["name"]
        return {
            name: Exposed(
                np.asarray(self.check_run(Path(bundle_dir), x, read_manifest(bundle_dir)["precision"]), np.float32)
            )
        }


def _since_version(op_type: str) -> int | None:
    import onnx  # deferred for start-up: every command imports the backend registry, few check a model

    versions = [
        s.since_version for s in onnx.defs.get_all_schemas_with_history() if s.name == op_type and s.domain == ""
    ]
    return min(versions) if versions else None
