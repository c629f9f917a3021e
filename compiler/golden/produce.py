"""What a golden entry computes now: one model's front end, inputs and calibration, and each entry's output.

Target entries run the artifact `tcc build` writes: the same front end (tcc.frontend.lower_spec), the same
`Backend.emit` with the same options and stored calibration table, and the run the build's self-check gates
(`Backend.check_run`: LiteRT's reference kernels for TFLite INT8, the kit's own runner under qemu for ARM). The
build's own self-checks are not repeated: the golden comparison is the check.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tcc.backends import EmitOptions, get_backend, get_target

from ..bundle import sha256_file
from ..data import load_image
from ..errors import BuildError
from ..files import is_onnx_file
from ..frontend import Weights, lower_spec
from ..lower.torch_run import torch_run
from ..onnx_import import import_options, import_to_files
from ..quant.collect.crops import make_crops
from ..quant.collect.data import load_calibration_data
from ..quant.table.file import CalibrationError, load_table, model_sha256
from .entries import Entry
from .golden_yaml import ModelPlan

if TYPE_CHECKING:
    from ..quant.intgraph.qtypes import QGraph


@dataclass
class Produced:
    output: np.ndarray  # [N, ...] float32 (float64 for the PyTorch float64 twin)
    rerun: Callable[[np.ndarray], np.ndarray]  # the same artifact on other inputs (tolerance measurement)
    # per_op entries: the backend's codes of every quantized tensor (or how to get them, where asked only if needed)
    codes: dict[str, Any] | Callable[[], dict[str, Any]] | None = None
    qgraph: QGraph | None = None  # INT8: the quantized graph (output scale, per-op check)


class ModelRun:
    """One model of a golden set, lowered once and shared by all its entries."""

    def __init__(self, plan: ModelPlan, log: Callable[[str], None] = lambda s: None):
        self.plan = plan
        self.log = log
        self._work = tempfile.TemporaryDirectory(prefix="tcc-golden-")
        spec, overrides, weights = plan.spec, plan.overrides, plan.weights
        if is_onnx_file(spec):  # imported in memory, as every command takes one; `set:` holds the import's options
            spec, weights = import_to_files(spec, self._work.name, **import_options(overrides, spec))
            overrides = {}
        self.fe = lower_spec(spec, overrides, Weights(weights, plan.by_order, plan.key_map), opset=plan.opset)
        self.model = self.fe.model
        self._data = None
        self._tables: dict = {}  # path -> the stored table, loaded and checked once
        self._qgraphs: dict = {}  # (rules, lowering) -> QGraph: the INT8 entries of one rules share it

    @functools.cached_property
    def weights_hash(self) -> str | None:
        """The weights file's sha256; an ONNX file's own, which holds its weights."""
        source = self.plan.spec if is_onnx_file(self.plan.spec) else self.plan.weights
        return sha256_file(source) if source else None

    @functools.cached_property
    def onnx_hash(self) -> str:
        return model_sha256(self.fe.onnx)

    def close(self) -> None:
        self._work.cleanup()

    # ------------------------------------------------------------------ identity
    def identity(self) -> dict:
        return {
            "spec": self.plan.spec.name,
            "spec_hash": self.model.spec_hash,
            "set": self.plan.overrides,
            "weights": (
                {"file": (self.plan.weights or self.plan.spec).name, "sha256": self.weights_hash}
                if self.weights_hash
                else {"random_seed": 0}
            ),
            "fp32_onnx_sha256": self.onnx_hash,
            "opset": self.plan.opset,
            "input_shape": list(self.model.input_shape),
        }

    # ------------------------------------------------------------------ inputs
    def inputs(self) -> tuple[np.ndarray, list[dict]]:
        """[N, C, H, W] float32: the seeded inputs, then the images through the spec's preprocessing."""
        xs, names = [], []
        for i in range(self.plan.seeded):
            xs.append(np.random.default_rng(i).standard_normal(self.model.input_shape).astype(np.float32))
            names.append({"name": f"seed{i}", "source": f"N(0, 1), numpy default_rng({i})"})
        for p in self.plan.images:
            xs.append(load_image(p, self.model.preprocess))
            names.append({"name": p.name, "source": "image through the spec's preprocessing", "sha256": sha256_file(p)})
        return np.stack(xs).astype(np.float32), names

    # ------------------------------------------------------------------ calibration
    def calibration_data(self):
        if self._data is None:
            c = self.plan.calibration
            crops = make_crops(Path(self._work.name) / "crops", c.crops, c.seed, images=list(c.images))
            self._data = load_calibration_data(crops, self.model.preprocess, self.model.input_shape, c.crops, c.seed)
        return self._data

    def calibrate(self, rules: str):
        from ..quant.calibrate import calibrate_onnx  # deferred for start-up: loads onnx
        from ..quant.settings import CalibrationSettings, Provenance  # deferred for start-up: loads onnx
        from ..quant.table.steps import Steps  # deferred for start-up: loads onnx

        data = self.calibration_data()
        self.log(
            f"{self.plan.name}: calibrating under the {rules} rules ({self.plan.calibration.method}, {len(data)} crops)"
        )
        settings = CalibrationSettings(
            method=self.plan.calibration.method,
            target=rules,
            seed=self.plan.calibration.seed,
            progress=False,
            steps=Steps.chosen(self.model.calibrate),
        )  # as `tcc calibrate` runs it
        provenance = Provenance(data.fingerprint, self.model.spec_hash, self.weights_hash)
        table = calibrate_onnx(self.fe.onnx, data.array, settings, provenance)
        return table.without_timing()

    def load_table(self, path: Path, rules: str):
        """The stored table, checked against this spec, weights and FP32 graph (CalibrationError if not)."""
        from ..quant.intgraph.match import quantized_form  # deferred for start-up: loads onnx

        if path not in self._tables:
            if not path.is_file():
                raise CalibrationError(f"{path}: no stored calibration table for the {rules} rules (tcc golden update)")
            table = load_table(
                path, spec_hash=self.model.spec_hash, weights_hash=self.weights_hash, model_hash=self.onnx_hash
            )
            table.check_model(quantized_form(self.fe.onnx, table.target), str(path))
            if table.target != rules:
                raise CalibrationError(f"{path}: a table for the {table.target} rules, expected {rules}")
            self._tables[path] = table
        return self._tables[path]

    # ------------------------------------------------------------------ entries
    def produce(self, entry: Entry, x: np.ndarray, table=None) -> Produced:
        if entry.id == "pytorch-fp32":
            return Produced(torch_run(self.fe.module, x), lambda v: torch_run(self.fe.module, v))
        if entry.target is None:
            return self._reference(entry, x, table)
        return self._artifact(entry, x, table)

    def pytorch_float64(self, x: np.ndarray) -> np.ndarray:
        return torch_run(self.fe.module, x, float64=True)

    def qgraph(self, rules: str, table: Any, lowering: str | None = None) -> QGraph:
        from ..quant.intgraph.match import plan  # deferred for start-up: loads onnx
        from ..quant.intgraph.qgraph import quantize_graph  # deferred for start-up: loads onnx

        key = (rules, lowering, id(table))
        if key not in self._qgraphs:
            self._qgraphs[key] = quantize_graph(plan(self.fe.onnx, lowering=lowering, rules=rules), table)
        return self._qgraphs[key]

    def _reference(self, entry: Entry, x: np.ndarray, table) -> Produced:
        from ..quant.intgraph.reference import Reference  # deferred for start-up: loads onnx

        assert entry.rules is not None  # a reference entry names its rules
        qg = self.qgraph(entry.rules, table)

        def run(v):
            y = Reference().run(qg, v)
            return np.asarray(y[0] if isinstance(y, list) else y)

        return Produced(run(x), run, qgraph=qg)

    def _artifact(self, entry: Entry, x: np.ndarray, table) -> Produced:
        assert entry.target is not None  # an artifact entry names its target
        tgt = get_target(entry.target)
        backend = get_backend(tgt.backend)
        if not backend.capabilities.runs_here:
            raise BuildError(f"{entry.target} artifacts do not run on this machine")
        options = EmitOptions(
            target=entry.target,
            precision=entry.precision,
            opset=self.plan.opset,
            table=table,
            preprocess=self.model.preprocess,
        )
        backend.check(self.fe.onnx, options)
        # an INT8 table checked against the model before anything is built from it, as tcc build does: a stored table
        # whose entries do not fit the model is a CalibrationError naming the tensor, not numpy's broadcast error
        qgraph = None
        if entry.int8:
            assert tgt.rules is not None  # an INT8 entry's target has rules
            qgraph = self.qgraph(tgt.rules, table, backend.capabilities.int8_lowering)
        out = Path(self._work.name) / entry.id
        out.mkdir()
        backend.emit(self.fe.onnx, options, out)

        def run(v):
            return np.asarray(backend.check_run(out, v, entry.precision))

        got = run(x)
        produced = Produced(got, run)
        if entry.int8:
            produced.qgraph = qgraph
            assert qgraph is not None
            if entry.rule == "per_op":
                produced.codes = backend.int8_codes(self.fe.onnx, options, out, x, got)
            elif qgraph.islands:  # asked only if float islands keep it from the reference's bits
                produced.codes = lambda: backend.int8_codes(self.fe.onnx, options, out, x, got)
        return produced
