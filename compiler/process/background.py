"""One call run on its own thread while the caller goes on (a build's PyTorch references during the emit, an
instruction count during the self-check): for work that waits on the CPU or a subprocess, not on the GIL."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class Background:
    """fn(*args, **kwargs), started now on a thread of its own; result() waits for it and for its thread to end
    (so that a finished command has no thread left), and raises what the call raised."""

    def __init__(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._future = self._pool.submit(fn, *args, **kwargs)
        self._pool.shutdown(wait=False)

    def result(self) -> Any:
        try:
            return self._future.result()
        finally:
            self._pool.shutdown(wait=True)
