"""Wall time by phase of a build, recorded where the work happens without passing a timer through every call.

`tcc build` opens ``recording()``; code anywhere below it (a backend's compile and link, a qemu check) wraps its
steps in ``phase(name)``; a phase inside another is recorded as "outer/inner" (the same compile step under a
build's "host-twin" check reads "host-twin/compile"). Outside a recording ``phase`` only runs the block.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[dict[str, float] | None] = ContextVar("tcc_phases", default=None)
_prefix: ContextVar[str] = ContextVar("tcc_phase_prefix", default="")


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """Collect {phase: seconds} of every ``phase`` run inside (a phase run twice adds up)."""
    seconds: dict[str, float] = {}
    token, root = _current.set(seconds), _prefix.set("")  # a recording's phases are named from its own root
    try:
        yield seconds
    finally:
        _prefix.reset(root)
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


def add(timed: dict[str, float]) -> None:
    """Record phases timed elsewhere (a worker process's own ``recording()``) as if run here, under the current
    phase: {"compile": 0.8} inside ``phase("emit")`` adds "emit/compile"."""
    seconds = _current.get()
    if seconds is None:
        return
    for name, t in timed.items():
        full = _prefix.get() + name
        seconds[full] = seconds.get(full, 0.0) + t
