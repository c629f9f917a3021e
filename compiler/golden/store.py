"""The stored side of a golden set: `.npz` files written byte-deterministically, and `golden.json`.

numpy's own `savez` stamps each member with the current time; here every member has the zip epoch's date, so the
same arrays give the same bytes and `tcc golden update` leaves unchanged files untouched (git sees no change).
Members are plain `.npy` (numpy's format 1.0, no pickles): any numpy reads them with `np.load(path)`.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..bundle import dumps
from ..errors import DataError

GOLDEN_JSON = "golden.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), version=(1, 0), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, member.getvalue(), compresslevel=9)
    return buf.getvalue()


def read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    # a damaged member: zlib's error for its compressed bytes, NotImplementedError for an unknown compression method,
    # tokenize's or Python's syntax error for an .npy header numpy cannot parse
    except (
        OSError,
        ValueError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        NotImplementedError,
        SyntaxError,
        tokenize.TokenError,
    ) as e:
        raise DataError(
            f"{path}: not a readable golden .npz ({e}); restore it from git or `tcc golden update`"
        ) from None


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write `data` atomically unless the file holds exactly it already; True when written."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


_RECORD = {  # golden.json as check and update read it
    "type": "object",
    "required": ["models"],
    "properties": {
        "models": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["identity", "inputs", "entries"],
                "properties": {
                    "identity": {"type": "object", "required": ["spec_hash", "weights", "opset", "fp32_onnx_sha256"]},
                    "inputs": {
                        "type": "array",
                        "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                    },
                    "entries": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "required": ["rule"],
                            "properties": {
                                "rule": {"type": "string"},
                                "tolerance": {
                                    "type": "object",
                                    "required": ["max_abs_over_scale"],
                                    "properties": {"max_abs_over_scale": {"type": "number", "minimum": 0}},
                                },
                            },
                            # a measured entry is judged within its stored tolerance
                            "if": {"properties": {"rule": {"const": "measured"}}},
                            "then": {"required": ["tolerance"]},
                        },
                    },
                },
            },
        }
    },
}


def read_json(root: Path) -> dict:
    """golden.json, checked against the fields check and update read (a damaged record is a DataError naming the
    field, never a KeyError deep in a check)."""
    import jsonschema  # deferred for start-up

    path = root / GOLDEN_JSON
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not readable JSON ({e}); restore it from git or `tcc golden update`") from None
    error = min(
        jsonschema.Draft202012Validator(_RECORD).iter_errors(doc),
        key=lambda e: [str(p) for p in e.absolute_path],
        default=None,
    )
    if error is not None:
        where = ".".join(map(str, error.absolute_path)) or "(top level)"
        raise DataError(
            f"{path}: not a golden record: at {where}, {error.message[:160]}; restore it from git (or "
            "remove it and store every entry again: `tcc golden update`)"
        )
    bad = _non_finite(doc)
    if bad is not None:  # Python's json reads NaN and Infinity, and update could not write them back
        raise DataError(
            f"{path}: not a golden record: at {bad[0]}, {bad[1]} is not a finite number; restore it from "
            "git (or remove it and store every entry again: `tcc golden update`)"
        )
    return doc


def _non_finite(value, where: str = "") -> tuple[str, float] | None:
    """(where, value) of the first NaN or infinity in a JSON document, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "(top level)", value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return next((bad for k, v in items if (bad := _non_finite(v, f"{where}.{k}" if where else str(k)))), None)


def json_bytes(doc: dict) -> bytes:
    return dumps(doc).encode()
