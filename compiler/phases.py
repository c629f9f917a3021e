"""Wall time by phase of a build, recorded where the work happens without passing a timer through every call.

`tcc build` opens ``recording()``; code anywhere below it (a backend's compile and link, a qemu check) wraps its
steps in ``phase(name)``; a phase inside another is recorded as "outer/inner" (the same compile step under a
build's "host-twin" check reads "host-twin/compile"). Outside a recording ``phase`` only runs the block.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

_current: ContextVar[dict[str, float] | None] = ContextVar("tcc_phases", default=None)
_prefix: ContextVar[str] = ContextVar("tcc_phase_prefix", default="")


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """Collect {phase: seconds} of every ``phase`` run inside (a phase run twice adds up)."""
    seconds: dict[str, float] = {}
    token = _current.set(seconds)
    try:
        yield seconds
    finally:
        _current.reset(token)


@contextmanager
def phase(name: str) -> Iterator[None]:
    seconds = _current.get()
    full = _prefix.get() + name
    token = _prefix.set(full + "/")
    t = time.perf_counter()
    try:
        yield
    finally:
        _prefix.reset(token)
        if seconds is not None:
            seconds[full] = seconds.get(full, 0.0) + time.perf_counter() - t
