"""Importing TVM in the order that makes a build start fastest.

`import tvm` registers Python classes for object types its wheel was built without (``runtime.disco.*``); the first
failed type lookup throws the process's first C++ exception, and tvm_ffi captures its backtrace with libbacktrace,
which reads the symbol tables of every library loaded at that moment, once per process. With PyTorch's libraries
loaded that costs 0.86 s, without them 0.27 s (measured on the 2-core EPYC, TVM 0.27, torch 2.13). tvm_ffi imports
PyTorch first itself, only for optional torch.Tensor conversion and DLPack exchange, which tcc never uses (its TVM
modules take and give numpy arrays), so a build that will need TVM imports it first with PyTorch hidden; PyTorch is
imported afterwards as usual.
"""

from __future__ import annotations

import sys

from tcc.process.import_order import hidden


def import_tvm_first() -> None:
    """Import TVM (and its ONNX frontend) before PyTorch when PyTorch is not loaded yet; nothing otherwise."""
    if "tvm" in sys.modules or "torch" in sys.modules:
        return
    with hidden("torch"):
        import tvm  # deferred: this function is what imports TVM, in its order
        import tvm.relax.frontend.onnx  # noqa: F401
