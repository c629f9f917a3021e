"""Start-up time: importing a library without an optional dependency of its own that tcc never uses.

Two are measured to matter for `tcc build`: onnxsim loads sympy (0.4 s) only to print symbolic MAC formulas, and
tvm_ffi loads PyTorch before TVM, which makes TVM's import 0.6 s slower (backends/tvm/import_tvm.py says why).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def hidden(*names: str) -> Iterator[None]:
    """Inside the block, `import NAME` raises ImportError for these not-yet-imported modules (for a library that
    treats them as optional); afterwards they import normally. Modules already imported are left alone."""
    names = tuple(n for n in names if n not in sys.modules)
    for name in names:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not importable" marker
    try:
        yield
    finally:
        for name in names:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
