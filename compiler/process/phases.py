"""Wall time by phase of a build, recorded where the work happens without passing a timer through every call.

`tcc build` opens ``recording()``; code anywhere below it (a backend's compile and link, a qemu check) wraps its
steps in ``phase(name)``; a phase inside another is recorded as "outer/inner" (the same compile step under a
build's "host-twin" check reads "host-twin/compile"). Outside a recording ``phase`` only runs the block.
``watching(listener)`` tells a listener (the command line's progress bar) each phase as it starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[dict[str, float] | None] = ContextVar("tcc_phases", default=None)
_prefix: ContextVar[str] = ContextVar("tcc_phase_prefix", default="")
_listener: ContextVar[Callable[[str], None] | None] = ContextVar("tcc_phase_listener", default=None)


@contextmanager
def watching(listener: Callable[[str], None]) -> Iterator[None]:
    """Call `listener(name)` as each phase inside starts, and again with its parent's name as it ends ("" at the top
    level): the phase running now, for a progress display. Phases in other threads and processes are not seen."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


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
    listener = _listener.get()
    if listener is not None:
        listener(full)
    t = time.perf_counter()
    try:
        yield
    finally:
        _prefix.reset(token)
        if listener is not None:
            listener(full.rpartition("/")[0])
        if seconds is not None:
            seconds[full] = seconds.get(full, 0.0) + time.perf_counter() - t


def announce(name: str) -> None:
    """Tell the listener a step started that is timed elsewhere (the frontend's own clock), as a phase inside the
    current one would be: shown, not recorded."""
    listener = _listener.get()
    if listener is not None:
        listener(_prefix.get() + name)


def add(timed: dict[str, float]) -> None:
    """Record phases timed elsewhere (a worker process's own ``recording()``) as if run here, under the current
    phase: {"compile": 0.8} inside ``phase("emit")`` adds "emit/compile"."""
    seconds = _current.get()
    if seconds is None:
        return
    for name, t in timed.items():
        full = _prefix.get() + name
        seconds[full] = seconds.get(full, 0.0) + t
