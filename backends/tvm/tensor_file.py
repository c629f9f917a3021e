"""TCCT tensor files: the format tcc-run (backends/tvm/runtime_recipe/runner) reads its inputs from and writes its
outputs to.

A record is a 24-byte little-endian header -- ``TCCT``, u32 version 1, u32 dtype code (0 int, 1 uint, 2 float,
as in DLPack), u32 bits, u32 ndim, u32 0 -- then ndim int64 dimensions, then the data in C order; an output file
holds one record per model output (backends/tvm/runtime_recipe/README.md has the full description).

Imports neither tvm nor, at module level, numpy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where used
    import numpy as np


_MAGIC = b"TCCT"


def _dtype_table() -> dict[Any, tuple[int, int]]:
    """numpy dtype -> (DLPack type code, bits)."""
    import numpy as np  # deferred: tools/setup_arm.sh imports this module before numpy is installed

    return {
        np.dtype(np.float32): (2, 32),
        np.dtype(np.float16): (2, 16),
        np.dtype(np.float64): (2, 64),
        np.dtype(np.int8): (0, 8),
        np.dtype(np.int16): (0, 16),
        np.dtype(np.int32): (0, 32),
        np.dtype(np.int64): (0, 64),
        np.dtype(np.uint8): (1, 8),
    }


def tensor_file_bytes(arr: np.ndarray) -> bytes:
    """One TCCT record (the runner's tensor file format) for ``arr``."""
    import numpy as np  # deferred: tools/setup_arm.sh imports this module before numpy is installed

    table = _dtype_table()
    arr = np.ascontiguousarray(arr)
    if arr.dtype not in table:
        raise TypeError(f"unsupported dtype {arr.dtype} for a tensor file")
    code, bits = table[arr.dtype]
    head = _MAGIC + np.array([1, code, bits, arr.ndim, 0], "<u4").tobytes()
    return head + np.array(arr.shape, "<i8").tobytes() + arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def write_tensor_file(path: str | os.PathLike, arr: np.ndarray) -> None:
    Path(path).write_bytes(tensor_file_bytes(arr))


def read_tensor_file(path: str | os.PathLike) -> list[np.ndarray]:
    """All TCCT records in a file (an output file holds one per model output)."""
    import numpy as np  # deferred: tools/setup_arm.sh imports this module before numpy is installed

    from_code = {v: k for k, v in _dtype_table().items()}
    buf = Path(path).read_bytes()
    out, off = [], 0
    while off < len(buf):
        if buf[off : off + 4] != _MAGIC or len(buf) - off < 24:
            raise ValueError(f"{path}: not a TCCT tensor record at byte {off}")
        version, code, bits, ndim, _ = np.frombuffer(buf, "<u4", 5, off + 4)
        if version != 1 or (int(code), int(bits)) not in from_code:
            raise ValueError(f"{path}: unsupported record (version {version}, dtype {code}/{bits})")
        dtype = from_code[(int(code), int(bits))]
        shape = tuple(int(d) for d in np.frombuffer(buf, "<i8", int(ndim), off + 24))
        off += 24 + 8 * int(ndim)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if off + n > len(buf):
            raise ValueError(f"{path}: truncated tensor data")
        out.append(np.frombuffer(buf, dtype.newbyteorder("<"), n // dtype.itemsize, off).astype(dtype).reshape(shape))
        off += n
    return out
