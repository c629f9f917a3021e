"""The TFLite backend: target `tflite`, precisions fp32, fp16, dynamic and int8, run here by LiteRT
(`ai-edge-litert`, no TensorFlow).

A bundle holds `model.tflite` (written by backends/tflite/lower.py from the graph after the passes) and
`tflite.json`: the input's layout (NHWC), type and, for int8 I/O, its scale and zero point; the output's; and
which TFLite tensor holds each tensor of the graph (for `tcc diff` and the per-op check).

INT8 is built from tcc's own calibration table, made under the `tflite` rules (`tcc calibrate --target tflite`):
LiteRT's reference kernels (OpResolverType.BUILTIN_REF) compute exactly what the integer reference computes under
those rules (gemmlowp rounding, one rounding in FULLY_CONNECTED, TFLite's lookup tables and pooling), so the build's
self-check runs the artifact
on them and requires equality bit for bit. LiteRT's default CPU path (the XNNPACK delegate, which requantizes with
one rounding, and the optimized builtin kernels) is then measured against the reference op by op (each within one
LSB on the same input codes, gated) and end to end (recorded).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import jsonschema
import numpy as np

from tcc.bundle import stable_float
from tcc.errors import BuildError, SelfCheckError
from tcc.quant.table.placement import float_nodes

from ...targets import TARGETS
from ..base import Backend, Capabilities, EmitOptions, Exposed
from .options import TfliteOptions

ARTIFACT = "model.tflite"
INFO = "tflite.json"
KERNELS = {  # what LiteRT runs a model with: OpResolverType names
    "default": "AUTO",  # the XNNPACK delegate for what it takes, the optimized builtin kernels for the rest
    "optimized": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",  # the optimized builtin kernels alone (ruy)
    "reference": "BUILTIN_REF",  # the reference kernels: TFLite's documented integer arithmetic
}
PER_OP_LSB = 1.0  # a kernel that requantizes with another rounding can move a code by one, never more


_QUANTIZATION = {
    "type": "object",
    "required": ["scale", "zero_point"],
    "properties": {"scale": {"type": "number", "exclusiveMinimum": 0}, "zero_point": {"type": "integer"}},
}
INFO_SCHEMA = {  # tflite.json as run and tensors() read it
    "type": "object",
    "required": ["precision", "tensors"],
    "properties": {
        "precision": {"type": "string"},
        "input_dtype": {"enum": ["float32", "int8", "int16"]},
        "output_dtype": {"enum": ["float32", "int8", "int16"]},
        "input_quantization": _QUANTIZATION,
        "output_quantization": _QUANTIZATION,
        "tensors": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["index", "nhwc"],
                "properties": {"index": {"type": "integer", "minimum": 0}, "nhwc": {"type": "boolean"}},
            },
        },
    },
    "allOf": [
        {
            "if": {"properties": {f"{io}_dtype": {"enum": ["int8", "int16"]}}, "required": [f"{io}_dtype"]},
            "then": {"required": [f"{io}_quantization"]},
        }
        for io in ("input", "output")
    ],
}


def _read_info(bundle: Path) -> dict:
    """The bundle's tflite.json, checked against INFO_SCHEMA: a damaged one is a BuildError naming the field."""
    path = bundle / INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BuildError(f"{bundle}: not a TFLite bundle ({e})") from None
    error = min(
        jsonschema.Draft202012Validator(INFO_SCHEMA).iter_errors(info),
        key=lambda e: [str(p) for p in e.absolute_path],
        default=None,
    )
    if error is not None:
        where = ".".join(map(str, error.absolute_path)) or "(top level)"
        raise BuildError(f"{path}: invalid at {where}: {error.message[:160]}")
    return info


def _kept_tensor(it, bundle: Path, name: str, where: dict) -> np.ndarray:
    """Graph tensor `name` of one sample (batch 1), NCHW, from where tflite.json places it (its LiteRT tensor, NHWC
    or not); a tflite.json that does not fit the model (an edited one) is a BuildError naming it."""
    count = len(it.get_tensor_details())
    if not where["index"] < count:
        raise BuildError(f"{bundle / INFO}: tensor {name!r} at index {where['index']}, the model has {count} tensors")
    t = it.get_tensor(where["index"])
    if t.ndim == 0 or (where["nhwc"] and t.ndim != 4):
        raise BuildError(
            f"{bundle / INFO}: tensor {name!r} is {list(t.shape)}, not a batch"
            + (" of NHWC images" if where["nhwc"] else "")
        )
    if where["nhwc"]:
        return t.transpose(0, 3, 1, 2)
    return t  # its first axis is the sample's: 1, or a row per token where a reshape folded them (attention)


def _is_int8(bundle_dir) -> bool:
    return _read_info(Path(bundle_dir))["precision"] == "int8"


def _rules(options: EmitOptions) -> str:
    """The quantization rules of the target being built (`tflite`; `tflite-int`: int8 builtins only; or
    `tflite16-i32`: the 16x8 mode with int32 bias), from the target registry."""
    entry = TARGETS.get(options.target)
    return entry.rules if entry is not None and entry.rules else "tflite"


def _litert_missing() -> str | None:
    try:
        import ai_edge_litert.interpreter  # noqa: F401 (the check itself: is the optional package there)
    except ImportError:
        return "the TFLite backend needs the Python package ai-edge-litert (pip install ai-edge-litert)"
    return None


@dataclass
class TfliteLoaded:
    bundle: Path
    data: bytes
    info: dict
    kernels: str


class TfliteBackend(Backend):
    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            name="tflite",
            targets=("tflite", "tflite-int", "tflite16-i32"),
            precisions=("fp32", "fp16", "dynamic", "int8"),
            onnx_ops=None,
            opsets=(11, 21),
            runs_here=_litert_missing() is None,
            int8_lowering="tflite",
            int8_exact=True,
        )

    options_type = TfliteOptions  # --io: EmitOptions.backend

    # ------------------------------------------------------------------ checks
    def check(self, model, options: EmitOptions) -> None:
        missing = _litert_missing()
        if missing:
            raise BuildError(f"target {options.target}: {missing}")
        io = self.own_options(options).io
        if io not in ("float", "int8"):
            raise BuildError(f"--io {io}: expected float or int8")
        if io == "int8" and options.precision != "int8":
            raise BuildError("--io int8 applies to --precision int8 only")
        super().check(model, options)
        self._graph(model, options)  # every node has a TFLite form (int8: planned already, with its limits)

    @staticmethod
    def _graph(model, options: EmitOptions):
        from tcc.quant.intgraph.match import plan  # deferred for start-up: loads onnx

        int8 = options.precision == "int8"
        floats = float_nodes(options.table) if int8 and options.table is not None else ()
        return plan(
            model,
            lowering="tflite",
            rules=_rules(options),
            integer=int8,
            what=f"the TFLite {options.precision} lowering",
            floats=floats,
        )

    # ------------------------------------------------------------------ emit
    def emit(self, model, options: EmitOptions, out_dir: Path) -> list[str]:
        from tcc.quant.intgraph.qgraph import quantize_graph  # deferred for start-up: loads onnx

        from .lower import TfliteLowering  # deferred for start-up: loads onnx

        graph = self._graph(model, options)
        qgraph = None
        if options.precision == "int8":
            if options.table is None:
                raise BuildError("precision int8 needs a calibration table")
            qgraph = quantize_graph(graph, options.table, _rules(options))
        kind = self.own_options(options).io
        data, io = TfliteLowering(
            graph, options.precision, qgraph, kind, f"tcc {options.precision} ({kind} I/O)"
        ).lower()
        out_dir = Path(out_dir)
        (out_dir / ARTIFACT).write_bytes(data)
        (out_dir / INFO).write_text(
            json.dumps({"precision": options.precision, "io": kind, **io}, indent=1, sort_keys=True) + "\n"
        )
        return [ARTIFACT, INFO]

    # ------------------------------------------------------------------ run
    def load(self, bundle_dir: Path, kernels: str = "default") -> TfliteLoaded:
        bundle = Path(bundle_dir)
        missing = _litert_missing()
        if missing:
            raise BuildError(f"{bundle}: {missing}")
        try:
            data = (bundle / ARTIFACT).read_bytes()
        except OSError as e:
            raise BuildError(f"{bundle}: not a TFLite bundle ({e})") from None
        return TfliteLoaded(bundle, data, _read_info(bundle), kernels)

    def interpreter(self, loaded: TfliteLoaded, preserve: bool = False, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType  # deferred: ai-edge-litert is optional

        try:
            with warnings.catch_warnings():  # keeping every tensor is what the per-op check is for
                warnings.simplefilter("ignore", UserWarning)
                it = Interpreter(
                    model_content=loaded.data,
                    num_threads=threads,
                    experimental_op_resolver_type=getattr(OpResolverType, KERNELS[loaded.kernels]),
                    experimental_preserve_all_tensors=preserve,
                )
            it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise BuildError(
                f"{loaded.bundle}: LiteRT cannot load the model ({str(e).strip().splitlines()[0]})"
            ) from None
        return it

    @overload
    def run(self, loaded: TfliteLoaded, x: np.ndarray, preserve: None = None) -> np.ndarray: ...
    @overload
    def run(
        self, loaded: TfliteLoaded, x: np.ndarray, preserve: dict[str, Any]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...
    def run(
        self, loaded: TfliteLoaded, x: np.ndarray, preserve: dict[str, Any] | None = None
    ) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
        """Float32 NCHW batch in, float32 output out, one sample per invocation (the model's batch is 1). With
        `preserve` ({graph tensor: {index, nhwc}}), also the codes of those tensors (NCHW), per sample stacked."""
        it = self.interpreter(loaded, preserve is not None)
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        info = loaded.info
        outs: list[np.ndarray] = []
        kept: dict[str, list[np.ndarray]] = {name: [] for name in (preserve or {})}
        for sample in np.ascontiguousarray(x, np.float32):
            v = sample.transpose(1, 2, 0)[None]  # NCHW -> NHWC, once at the boundary
            if info.get("input_dtype") in ("int8", "int16"):
                q, kind = info["input_quantization"], np.iinfo(info["input_dtype"])
                r = (v / np.float32(q["scale"])).astype(np.float32)
                v = np.clip(np.sign(r) * np.floor(np.abs(r) + 0.5) + q["zero_point"], kind.min, kind.max).astype(
                    info["input_dtype"]
                )
            it.set_tensor(inp["index"], v)
            try:
                it.invoke()
            except RuntimeError as e:
                raise BuildError(f"LiteRT failed running the model: {str(e).strip().splitlines()[0]}") from None
            y = it.get_tensor(out["index"])
            if info.get("output_dtype") in ("int8", "int16"):
                q = info["output_quantization"]
                y = ((y.astype(np.int64) - q["zero_point"]) * np.float32(q["scale"])).astype(np.float32)
            outs.append(y[0])
            for name, where in (preserve or {}).items():
                kept[name].append(_kept_tensor(it, loaded.bundle, name, where))
        result = np.stack(outs)
        if preserve is None:
            return result
        return result, {name: np.concatenate(v) for name, v in kept.items()}  # samples' rows in order

    def check_run(self, bundle_dir: Path, x: np.ndarray, precision: str) -> np.ndarray:
        """INT8: LiteRT's reference kernels, which must equal the integer reference bit for bit; else the default
        path."""
        return self.run(self.load(bundle_dir, "reference" if precision == "int8" else "default"), x)

    def int8_codes(self, model, options: EmitOptions, bundle_dir: Path, x: np.ndarray, got: np.ndarray) -> dict:
        """Asked only where float islands kept the reference kernels from equalling the integer reference end to
        end: the codes of every tensor the lowering named, kept by LiteRT's preserve-all-tensors mode on the
        reference kernels (the same run as the self-check's: its output is checked to be `got`)."""
        loaded = self.load(bundle_dir, "reference")
        y, kept = self.run(loaded, x, preserve=loaded.info["tensors"])
        if not np.array_equal(y, got):
            raise SelfCheckError(
                "self-check: LiteRT's reference kernels gave another output with every tensor kept; "
                "no bundle was written"
            )
        return kept

    def tensors(self, bundle_dir: Path, x: np.ndarray, model=None) -> dict:
        """Every tensor the lowering named after a graph tensor (info.json `tensors`), kept by LiteRT's
        preserve-all-tensors mode, NCHW, integer ones dequantized with their scale. The kernels are the ones the
        self-check runs (reference for INT8; the XNNPACK delegate keeps its intermediates to itself, so float
        models run on the builtin kernels here)."""
        loaded = self.load(bundle_dir, "reference" if _is_int8(bundle_dir) else "optimized")
        where = loaded.info["tensors"]
        y, kept = self.run(loaded, x, preserve=where)
        it = self.interpreter(loaded)
        quant = {d["index"]: d["quantization"] for d in it.get_tensor_details()}
        exposed = {}
        for name, v in kept.items():
            scale, zp = quant.get(where[name]["index"], (0.0, 0))
            if scale:
                exposed[name] = Exposed(((v.astype(np.int64) - zp) * np.float32(scale)).astype(np.float32), scale)
            else:
                exposed[name] = Exposed(np.asarray(v, np.float32))
        out = json.loads((Path(bundle_dir) / "manifest.json").read_text())["outputs"][0]["name"]
        exposed[out] = Exposed(np.asarray(y, np.float32))
        return exposed

    # ------------------------------------------------------------------ target checks
    def extra_checks(self, model, options: EmitOptions, bundle_dir: Path, x: np.ndarray, got: np.ndarray) -> dict:
        checks = {
            "kernels": {
                "self_check": f"LiteRT {KERNELS['reference' if options.precision == 'int8' else 'default']}"
                " (OpResolverType)",
                "default": f"LiteRT {KERNELS['default']}",
            }
        }
        if options.precision != "int8":
            return checks
        from tcc.quant.intgraph.qgraph import quantize_graph  # deferred for start-up: loads onnx
        from tcc.quant.intgraph.reference import (  # deferred for start-up: loads onnx
            Reference,
            backend_tensors,
            per_op_deviation,
        )

        qgraph = quantize_graph(self._graph(model, options), options.table, _rules(options))
        ref = Reference().run(qgraph, x)
        lsb = qgraph.output_scales[qgraph.outputs[0]]
        tensors = self.load(bundle_dir).info["tensors"]
        for kernels in ("optimized", "default"):
            loaded = self.load(bundle_dir, kernels)
            y, kept = self.run(loaded, x, preserve=tensors)
            codes, floats = backend_tensors(qgraph, x, kept)
            d = np.abs(np.asarray(y, np.float64) - np.asarray(ref, np.float64))
            entry = {
                "kernels": f"LiteRT {KERNELS[kernels]}",
                "end_to_end_max_lsb": stable_float(float(d.max()) / lsb),
                "bit_exact": bool(np.array_equal(y, ref)),
            }
            if kernels == "optimized":  # the delegate's intermediate tensors are its own: per op without it
                per_op = per_op_deviation(qgraph, codes, {}, floats)
                entry["per_op"] = {
                    "ops_checked": per_op["ops_checked"],
                    "max_lsb": stable_float(per_op["max_lsb"]),
                    "worst_op": per_op["worst_op"],
                    "differing_elements": per_op["differing_elements"],
                    "elements": per_op["elements"],
                }
                entry["required"] = f"every integer op <= {PER_OP_LSB} LSB of the reference op on its own inputs"
                entry["passed"] = per_op["ops_checked"] == len(qgraph.nodes) and per_op["max_lsb"] <= PER_OP_LSB
                if not entry["passed"]:
                    raise SelfCheckError(
                        f"target check failed: LiteRT's optimized kernels differ from the integer "
                        f"reference by {per_op['max_lsb']} LSB at {per_op['worst_op']!r} (at most "
                        f"{PER_OP_LSB} allowed); no bundle was written"
                    )
            checks[kernels] = entry
        return checks

    def runtime_info(self, options: EmitOptions) -> dict:
        io = (
            "float32 NHWC input, float32 output"
            if self.own_options(options).io == "float"
            else "int8 NHWC input and int8 output: scale and zero point in tflite.json"
        )
        return {
            "runtime": "LiteRT (ai-edge-litert), any TFLite runtime",
            "artifact": ARTIFACT,
            "info": INFO,
            "io": io,
            "readme_run": [
                "On a phone or board, with the LiteRT interpreter (Python: `pip install ai-edge-litert`; Android /",
                "iOS / C++: the LiteRT runtime):",
                "",
                "```python",
                "from ai_edge_litert.interpreter import Interpreter",
                "it = Interpreter(model_path='model.tflite'); it.allocate_tensors()",
                "x = preprocessed_image_nchw[0].transpose(1, 2, 0)[None]      # NHWC, one image",
                "it.set_tensor(it.get_input_details()[0]['index'], x); it.invoke()",
                "y = it.get_tensor(it.get_output_details()[0]['index'])",
                "```",
                "",
                "Input: " + io + " (see manifest.json for the preprocessing). Here: "
                "`tcc predict --artifact THIS_DIR --image picture.png --json`.",
            ],
        }
