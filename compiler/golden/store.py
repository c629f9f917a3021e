"""The stored side of a golden set: `.npz` files written byte-deterministically, and `golden.json`.

numpy's own `savez` stamps each member with the current time; here every member has the zip epoch's date, so the
same arrays give the same bytes and `tcc golden update` leaves unchanged files untouched (git sees no change).
Members are plain `.npy` (numpy's format 1.0, no pickles): any numpy reads them with `np.load(path)`.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
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
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), version=(1, 0),
                                      allow_pickle=False)
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
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable golden .npz ({e}); restore it from git or `tcc golden update`") \
            from None


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


def read_json(root: Path) -> dict:
    path = root / GOLDEN_JSON
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not readable JSON ({e}); restore it from git or `tcc golden update`") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models", {}), dict):
        raise DataError(f"{path}: not a golden record (expected an object with \"models\")")
    return doc


def json_bytes(doc: dict) -> bytes:
    return dumps(doc).encode()
