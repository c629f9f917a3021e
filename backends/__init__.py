"""Backends and targets, as plain data: a target name -> its description; a backend name -> "module:Class".

Nothing registers itself on import; `get_backend` imports the one module a build needs. Adding a backend is one
line in BACKENDS and its targets in TARGETS. The TVM targets (host, arm-a7, aarch64 and its alias arm-a53) are
described once, in backends/targets.py (TVM target, cross compiler, qemu); their entries here are derived from it.
"""
from __future__ import annotations

import importlib

from tcc.errors import BuildError

from . import targets as _tvm_targets
from .base import Backend, Capabilities, EmitOptions, Target

_QUANTIZED_ORT = "quantized ONNX: use --target ort --precision int8|dynamic"
TVM_PRECISIONS = ("fp32", "int8")  # int8: real integer kernels (backends/tvm_int8.py), bit-exact with the reference


def _tvm_target(name: str, spec: _tvm_targets.TargetSpec) -> Target:
    alias = f" (alias of {spec.name})" if name != spec.name else ""
    return Target(name, "tvm", TVM_PRECISIONS, f"TVM: {spec.description}{alias}")


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target("onnx", "ort", ("fp32",), "portable FP32 ONNX after the pass pipeline (any ONNX runtime)",
               planned={"fp16": "use --target ort --precision fp16", "int8": _QUANTIZED_ORT,
                        "dynamic": _QUANTIZED_ORT}),
        Target("ort", "ort", ("fp32", "fp16", "int8", "dynamic"),
               "ONNX Runtime: FP32; FP16 with FP32 I/O; INT8 QDQ (calibrated); dynamic INT8"),
        *(_tvm_target(name, spec) for name, spec in _tvm_targets.TARGETS.items()),
    ]
}

BACKENDS: dict[str, str] = {
    "ort": "tcc.backends.ort:OrtBackend",
    "tvm": "tcc.backends.tvm:TvmBackend",
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        known = "\n".join(f"  {t.name:<8} {', '.join(t.precisions):<12} {t.description}" for t in TARGETS.values())
        raise BuildError(f"unknown target '{name}'; known targets:\n{known}")
    return TARGETS[name]


def check_precision(target: Target, precision: str | None) -> str:
    precision = precision or target.default_precision
    if precision in target.precisions:
        return precision
    if precision in target.planned:
        raise BuildError(f"target {target.name} does not offer precision {precision}: {target.planned[precision]}"
                         f" (available: {', '.join(target.precisions)})")
    raise BuildError(f"target {target.name}: unknown precision '{precision}' "
                     f"(available: {', '.join(target.precisions)})")


def get_backend(name: str) -> Backend:
    """The backend named by a target (`TARGETS[t].backend`) or a manifest, imported on first use."""
    if name not in BACKENDS:
        raise BuildError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["BACKENDS", "TARGETS", "Backend", "Capabilities", "EmitOptions", "Target", "check_precision",
           "get_backend", "get_target"]
