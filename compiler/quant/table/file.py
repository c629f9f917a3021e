"""The calibration table: JSON documented by spec/schema/calibration.schema.json.

table = CalibrationTable(doc)       # doc: the JSON object
table.save("calib.json")            # atomic write
table = load_table("calib.json", spec_hash=model.spec_hash, weights_hash=file_sha256(w))  # validated
table.act_scale("dense1.layer0.relu")  -> (scale, zero_point, signed)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...bundle import sha256_file as file_sha256  # noqa: F401  (re-exported: tables name weights by it)
from ...errors import CalibrationError, TccError  # noqa: F401  (CalibrationError: the table's own error)
from ...resources import schema_path

SCHEMA_PATH = schema_path("calibration")


def model_sha256(model) -> str:
    """sha256 of an ONNX model's graph (deterministic serialisation)."""
    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()


def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


INTEGER_FIELDS = ("bits", "zero_point", "axis", "group")  # JSON Schema's "integer" also admits 8.0: these may not


def validate(doc: dict, where: str = "calibration table") -> None:
    """The document against spec/schema/calibration.schema.json, plus what a schema cannot say: every number
    finite (JSON from Python may hold NaN / Infinity), and integer fields written as integers. Whether the table
    fits a model, and whether its scales fit the integer kernels, is checked where it is used
    (tcc.quant.intgraph.qgraph.quantize_graph), naming the tensor."""
    import jsonschema

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


def _non_finite(value, path: str):
    """(path, value) of the first NaN or infinite number in a JSON document, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "(top level)", value
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


@dataclass
class CalibrationTable:
    doc: dict

    @property
    def tensors(self) -> dict:
        return self.doc["tensors"]

    def act_scale(self, name: str) -> tuple[float, int, bool]:
        t = self.tensors[name]
        return float(t["scale"]), int(t["zero_point"]), bool(t["signed"])

    def weight_scale(self, name: str) -> np.ndarray:
        return np.asarray(self.tensors[name]["scale"], dtype=np.float32)

    def to_json(self) -> str:
        return json.dumps(self.doc, indent=1, allow_nan=False)

    def save(self, path: str | Path) -> Path:
        """Validate, then write atomically (a temporary file renamed over the target)."""
        validate(self.doc)
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
        for key, want, what in (
            ("spec_hash", spec_hash, "spec"),
            ("weights_hash", weights_hash, "weights"),
            ("model_hash", model_hash, "FP32 model"),
        ):
            have = self.doc.get(key)
            if want is not None and have is not None and have != want:
                raise CalibrationError(
                    f"{where}: made for a different {what} ({key} {have[:12]}..., this "
                    f"{what} is {want[:12]}...); recalibrate with `tcc calibrate`"
                )

    def check_model(self, model, where: str = "calibration table") -> None:
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
    import gzip

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
