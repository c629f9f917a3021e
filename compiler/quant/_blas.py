"""Limit numpy's OpenBLAS threads for a block of small matmuls (like threadpoolctl, which is not a dependency).

On a small, busy machine OpenBLAS's thread pool costs milliseconds per call (wake-ups of spinning threads); the
cosine search does thousands of small products, so it runs them single-threaded. Found through /proc/self/maps;
a no-op where no OpenBLAS is loaded.
"""
from __future__ import annotations

import ctypes
import contextlib

_NAMES = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
          "openblas_set_num_threads")
_GET = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
        "openblas_get_num_threads")


def _libs():
    import numpy  # noqa: F401  (loads its OpenBLAS)

    paths = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                if "openblas" in p.lower() and ".so" in p:
                    paths.add(p)
    except OSError:
        return []
    out = []
    for p in sorted(paths):
        try:
            lib = ctypes.CDLL(p)
        except OSError:
            continue
        set_fn = next((getattr(lib, n) for n in _NAMES if hasattr(lib, n)), None)
        get_fn = next((getattr(lib, n) for n in _GET if hasattr(lib, n)), None)
        if set_fn is not None and get_fn is not None:
            out.append((set_fn, get_fn))
    return out


@contextlib.contextmanager
def blas_threads(n: int = 1):
    libs = _libs()
    old = [get() for _, get in libs]
    try:
        for set_fn, _ in libs:
            set_fn(n)
        yield
    finally:
        for (set_fn, _), o in zip(libs, old):
            set_fn(o)
