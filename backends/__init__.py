"""Backends and targets, as plain data: a target name -> its description (the one registry, compiler/targets.py);
a backend name -> "module:Class".

Nothing registers itself on import; `get_backend` imports the one module a build needs. Adding a backend is one
line in BACKENDS and its targets in compiler/targets.py (and, where it has options of its own, their record: a light
module of its package, re-exported here for tcc.build.BuildSettings).
"""

from __future__ import annotations

import importlib

from tcc.errors import BuildError, suggest

from ..targets import TARGETS, Target
from .ax.options import KitOptions
from .base import Backend, Capabilities, EmitOptions
from .tflite.options import TfliteOptions
from .tvm.options import TvmOptions

BACKENDS: dict[str, str] = {
    "ort": "tcc.backends.ort.backend:OrtBackend",
    "tvm": "tcc.backends.tvm.backend:TvmBackend",
    "tflite": "tcc.backends.tflite.backend:TfliteBackend",
    "ax": "tcc.backends.ax.backend:AxBackend",
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise BuildError(
            f"unknown target '{name}'{suggest(name, TARGETS)}; known targets:\n" + "\n".join(target_lines())
        )
    return TARGETS[name]


def target_lines() -> list[str]:
    """The targets as a table: name, precisions, description, in columns (`tcc build` with an unknown target)."""
    rows = [(t.name, ", ".join(t.precisions), t.description) for t in TARGETS.values()]
    name_width, precision_width = (max(len(r[i]) for r in rows) for i in (0, 1))
    return [f"  {n:<{name_width}}  {p:<{precision_width}}  {d}" for n, p, d in rows]


def check_precision(target: Target, precision: str | None) -> str:
    precision = precision or target.default_precision
    if precision in target.precisions:
        return precision
    if precision in target.planned:
        raise BuildError(
            f"target {target.name} does not offer precision {precision}: {target.planned[precision]}"
            f" (available: {', '.join(target.precisions)})"
        )
    raise BuildError(
        f"target {target.name}: unknown precision '{precision}'{suggest(precision, target.precisions)}; available: "
        + ", ".join(target.precisions)
    )


def get_backend(name: str) -> Backend:
    """The backend named by a target (`TARGETS[t].backend`) or a manifest, imported on first use."""
    if name not in BACKENDS:
        raise BuildError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = [
    "BACKENDS",
    "TARGETS",
    "Backend",
    "Capabilities",
    "EmitOptions",
    "KitOptions",
    "Target",
    "TfliteOptions",
    "TvmOptions",
    "check_precision",
    "get_backend",
    "get_target",
    "target_lines",
]
