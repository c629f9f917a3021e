"""The calibration table: JSON documented by spec/schema/calibration.schema.json.

table = CalibrationTable(doc)       # doc: the JSON object (tcc.quant.calibrate makes it)
table.save("calib.json")            # atomic write
table = load_table("calib.json", spec_hash=model.spec_hash, weights_hash=file_sha256(w))  # validated
table.act_scale("dense1.layer0.relu")  -> (scale, zero_point, signed)
table.target, table.rules, table.step("rounding"), table.layers, table.placement, ...   # typed (records.py)
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import math
import os
import tempfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import numpy as np

from ...bundle import sha256_file
from ...errors import CalibrationError as CalibrationError  # re-exported: the table's own error
from ...errors import TccError  # noqa: F401
from ...resources import schema_path
from .records import LayerRecord, Placement, SearchSummary, Settings, StepRecord, StepsChoice, TensorEntry
from .rules import DEFAULT_RULES, TargetRules, get_rules

if TYPE_CHECKING:
    import onnx

SCHEMA_PATH = schema_path("calibration")
file_sha256 = sha256_file  # re-exported: tables name weights by it


def model_sha256(model: onnx.ModelProto) -> str:
    """sha256 of an ONNX model's graph (deterministic serialisation)."""
    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


INTEGER_FIELDS = ("bits", "zero_point", "axis", "group")  # JSON Schema's "integer" also admits 8.0: these may not


def validate(doc: dict, where: str = "calibration table") -> None:
    """The document against spec/schema/calibration.schema.json, plus what a schema cannot say: every number
    finite (JSON from Python may hold NaN / Infinity), and integer fields written as integers. Whether the table
    fits a model, and whether its scales fit the integer kernels, is checked where it is used
    (tcc.quant.intgraph.qgraph.quantize_graph), naming the tensor."""
    import jsonschema  # deferred for start-up: read only when a table is validated

    errors = sorted(jsonschema.Draft202012Validator(_schema()).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        path = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise CalibrationError(f"{where}: invalid at {path}: {e.message}{more}")
    bad = _non_finite(doc, "")
    if bad:
        raise CalibrationError(f"{where}: invalid at {bad[0]}: {bad[1]!r} is not a finite number")
    for name, t in doc["tensors"].items():
        for key in INTEGER_FIELDS:
            values = t.get(key)
            for v in values if isinstance(values, list) else [values]:
                if v is not None and not isinstance(v, int):
                    raise CalibrationError(f"{where}: invalid at tensors/{name}/{key}: {v!r} is not an integer")


def _non_finite(value: Any, path: str) -> tuple[str, Any] | None:
    """(path, value) of the first NaN or infinite number in a JSON document, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "(top level)", value
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        found = _non_finite(v, f"{path}/{k}" if path else str(k))
        if found:
            return found
    return None


T = TypeVar("T")


class _Field(Generic[T]):
    """A top-level field of a table's document, read as it stands: None where the document has none."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    @overload
    def __get__(self, table: None, owner: type) -> _Field[T]: ...
    @overload
    def __get__(self, table: CalibrationTable, owner: type) -> T | None: ...
    def __get__(self, table: CalibrationTable | None, owner: type) -> Any:
        return self if table is None else table._doc.get(self.key)


class _Section(Generic[T]):
    """A section of a table's document (`key`, default the attribute's name): empty (`empty()`) where the document
    has none."""

    def __init__(self, empty: Callable[[], Any], key: str | None = None) -> None:
        self.empty, self._key = empty, key

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = self._key or name

    @overload
    def __get__(self, table: None, owner: type) -> _Section[T]: ...
    @overload
    def __get__(self, table: CalibrationTable, owner: type) -> T: ...
    def __get__(self, table: CalibrationTable | None, owner: type) -> Any:
        return self if table is None else table._doc.get(self.key) or self.empty()


class CalibrationTable:
    """A calibration table: its JSON document (spec/schema/calibration.schema.json) behind typed accessors, the only
    way in (nothing outside tcc.quant.table reads the document as a dict). Readers take the records
    (tcc.quant.table.records); writers go through the methods below, which keep the document's keys in the order
    the file has always had them, so a saved table is byte for byte what it was."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self._doc = doc

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CalibrationTable) and self._doc == other._doc

    __hash__ = None  # type: ignore[assignment]  # mutable, as its records are

    def __repr__(self) -> str:
        tensors = len(self._doc.get("tensors", {}))
        return f"CalibrationTable(target={self.target!r}, method={self.method!r}, tensors={tensors})"

    # ------------------------------------------------------------------------------------------------ reading
    @property
    def target(self) -> str:
        """The name of the quantization rules the table was made under (DEFAULT_RULES for a table that records
        none: only a hand-made one; every table tcc writes records its rules)."""
        target: str = self._doc.get("target", DEFAULT_RULES)
        return target

    @property
    def rules(self) -> TargetRules:
        """The quantization rules the table was made under (tcc.quant.table.rules), with its split patterns: every
        plan of a model that reads the table plans with these."""
        return get_rules(self.target).splitting(self.split_patterns)

    @property
    def split_patterns(self) -> tuple[str, ...]:
        """The x * g(x) patterns (tcc.intops.PATTERNS) this table computes as the gate's lookup, then a multiply,
        where its rules would make each one lookup: the per-model choice (tcc.quant.choose) found that form closer."""
        return tuple(self._doc.get("split_patterns", ()))

    # the document's fields as they stand (None where absent)
    method = _Field[str]()  # minmax | percentile | kl | kl+cos
    samples = _Field[int]()  # how many calibration samples it was made from
    data_fingerprint = _Field[str]()
    spec_hash = _Field[str]()
    weights_hash = _Field[str]()
    model_hash = _Field[str]()  # sha256 of the FP32 graph it was calibrated on (model_sha256)
    steps_choice = _Field[StepsChoice]()  # how the free steps were chosen (tcc.quant.choose); None: all were given
    placement = _Field[Placement]()  # float islands and widened nodes (tcc.quant.table.placement)
    qat = _Field[dict[str, Any]]()  # quantization-aware training's record, in a table it made (tcc.train.qat)
    # its sections (empty where absent)
    settings = _Section[Settings](dict)  # the method's parameters
    timing = _Section[dict[str, float]](dict, "timing_s")  # seconds per phase (none in a bundle's copy)
    summary = _Section[SearchSummary](dict)  # the fine search's (empty without a search)
    layers = _Section[dict[str, LayerRecord]](dict)  # conv / linear layers, with the fine search's cosines
    groups = _Section[list[list[str]]](list)  # tensors sharing one scale (a tensor entry's `group` indexes them)
    steps = _Section[list[StepRecord]](list)  # the post-training steps in the order they ran, off ones included

    @property
    def activation_bits(self) -> int:
        """The width the calibration was asked for (8, or 16: W8A16); entries may be narrower (`headroom_for`)."""
        return self.settings.get("activation_bits", 8)

    @property
    def tensors(self) -> dict[str, TensorEntry]:
        """Every quantized tensor by its ONNX name, activations in topological order."""
        tensors: dict[str, TensorEntry] = self._doc["tensors"]
        return tensors

    def step(self, name: str) -> StepRecord | None:
        """The record of step `name` when it ran, else None (tables from before the steps have none)."""
        return next((s for s in self.steps if s.get("name") == name and s.get("enabled")), None)

    def act_scale(self, name: str) -> tuple[float, int, bool]:
        t = self.tensors[name]
        return float(t["scale"]), int(t["zero_point"]), bool(t["signed"])

    def weight_scale(self, name: str) -> np.ndarray:
        return np.asarray(self.tensors[name]["scale"], dtype=np.float32)

    # ------------------------------------------------------------------------------------------------ writing
    def copy(self) -> CalibrationTable:
        """A deep copy, to change without touching this one."""
        return CalibrationTable(copy.deepcopy(self._doc))

    def without_timing(self) -> CalibrationTable:
        """The table without its wall times, as a bundle keeps it: the same inputs give byte-identical bundles
        (shares its records with this one)."""
        return CalibrationTable({k: v for k, v in self._doc.items() if k != "timing_s"})

    def record_time(self, phase: str, seconds: float, add: bool = False) -> None:
        """The seconds `phase` took (add: to what it took before)."""
        timing = self._doc.setdefault("timing_s", {})
        timing[phase] = timing[phase] + seconds if add else seconds

    def add_step(self, record: StepRecord) -> None:
        """A post-training step's record, after the steps before it."""
        self._doc["steps"].append(record)

    def record_choice(self, record: StepsChoice, seconds: float) -> None:
        """How the free steps were chosen, and the seconds the whole choice took."""
        self._doc["steps_choice"] = record
        self.record_time("choice", seconds)

    def with_placement(self, placement: Placement) -> CalibrationTable:
        """A copy carrying `placement` (none when it keeps no node in float and widens none); shares the other
        records with this one."""
        doc = {k: v for k, v in self._doc.items() if k != "placement"}
        if placement.get("nodes") or placement.get("widened"):
            doc["placement"] = placement
        return CalibrationTable(doc)

    def retrained(
        self, scales: dict[str, float], weights_hash: str, model_hash: str, qat: dict[str, Any], seconds: float
    ) -> CalibrationTable:
        """A copy for the weights that quantization-aware training made from this table's (tcc.train.qat):
        the activation scales it learned, the steps whose parameter changes the training replaced (rounding, bias
        correction) switched off, no step choice, the new weights' and graph's hashes, and the training's record
        `qat` after this table's sha256 and the steps it replaced."""
        doc = copy.deepcopy(self._doc)
        for tensor, scale in scales.items():
            if tensor in doc["tensors"]:
                doc["tensors"][tensor]["scale"] = scale
        source = hashlib.sha256(self.to_json().encode()).hexdigest()
        steps = doc.get("steps", [])
        replaced = [s["name"] for s in steps if s["name"] in ("bias_correction", "rounding") and s.get("enabled")]
        doc["steps"] = [s if s["name"] not in replaced else {"name": s["name"], "enabled": False} for s in steps]
        doc.pop("steps_choice", None)
        doc["weights_hash"] = weights_hash
        doc["model_hash"] = model_hash
        doc["created_by"] = "tcc qat"
        doc["qat"] = {"source_table_sha256": source, "steps_replaced": replaced, **qat}
        doc.setdefault("timing_s", {})["qat"] = round(seconds, 3)
        return CalibrationTable(doc)

    def record_qat_cosine(self, cosines: dict[str, Any]) -> None:
        """Quantization-aware training's INT8 vs FP32 output cosines, before and after (its `qat` record)."""
        self._doc["qat"]["int8_cosine"] = cosines

    # ------------------------------------------------------------------------------------------------ the file
    def to_json(self) -> str:
        return json.dumps(self._doc, indent=1, allow_nan=False)

    def check_schema(self, where: str = "calibration table") -> None:
        """The document against the schema and what it cannot say (`validate`), a CalibrationError if not."""
        validate(self._doc, where)

    def save(self, path: str | Path) -> Path:
        """Validate, then write atomically (a temporary file renamed over the target)."""
        self.check_schema()
        path = Path(path)
        text = self.to_json()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def check(
        self,
        spec_hash: str | None = None,
        weights_hash: str | None = None,
        model_hash: str | None = None,
        where: str = "calibration table",
    ) -> None:
        """Raise CalibrationError when the table was made for another spec, weights file or FP32 graph."""
        for key, have, want, what in (
            ("spec_hash", self.spec_hash, spec_hash, "spec"),
            ("weights_hash", self.weights_hash, weights_hash, "weights"),
            ("model_hash", self.model_hash, model_hash, "FP32 model"),
        ):
            if want is not None and have is not None and have != want:
                raise CalibrationError(
                    f"{where}: made for a different {what} ({key} {have[:12]}..., this "
                    f"{what} is {want[:12]}...); recalibrate with `tcc calibrate`"
                )

    def check_model(self, model: onnx.ModelProto, where: str = "calibration table") -> None:
        """Every tensor the table names exists in `model` (a table for another model says so at once). Whether the
        entries fit the model's integer graph, channel by channel, is quantize_graph's check
        (tcc.quant.intgraph.qgraph)."""
        names = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
        inits = {t.name for t in model.graph.initializer}
        for name, t in self.tensors.items():
            if t["kind"] == "activation" and name not in names:
                raise CalibrationError(f"{where}: tensor {name!r} is not in the model; recalibrate")
            if t["kind"] == "weight" and name not in inits:
                raise CalibrationError(f"{where}: weight {name!r} is not in the model; recalibrate")


def load_table(
    path: str | Path, spec_hash: str | None = None, weights_hash: str | None = None, model_hash: str | None = None
) -> CalibrationTable:
    """A table from JSON (`.json`, or gzip-compressed `.json.gz`), validated and checked against the hashes given."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        doc = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
    except FileNotFoundError:
        raise CalibrationError(f"{path}: no such calibration table") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as e:  # zlib: damaged .gz bytes
        raise CalibrationError(f"{path}: not a JSON calibration table ({e})") from None
    validate(doc, str(path))
    table = CalibrationTable(doc)
    table.check(spec_hash, weights_hash, model_hash, str(path))
    return table
