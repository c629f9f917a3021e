"""`tcc build`'s TVM compile in a worker process, so that TVM's import overlaps the frontend's PyTorch import.

A build needs PyTorch (the checkpoint, the PyTorch lowering the self-check judges against) and TVM (the compile),
and each takes about a second to import; one process imports them one after the other. The worker is forked when
the build starts, before PyTorch is loaded, and imports TVM (backends/tvm/import_tvm.py) on the second core while the
build's own process runs the frontend; the emit step (Relax import, compile, codegen, link, kit) then runs there,
writing into the bundle's folder, and its phase times come back with the file list. What it hides is TVM's
import, 0.9 s on the 2-core EPYC (README, issue 15's targets).

Used by the command line, whose process ends with the build, and only when neither library is loaded yet; the
Python API compiles in its own process.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from tcc.errors import WorkerDied
from tcc.process.phases import add, recording

from .import_tvm import import_tvm_first


def _init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the build's to handle; stop() ends the worker,
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # by SIGTERM, which must not run a handler the build installed

    import_tvm_first()


def pays() -> bool:
    """Whether a worker saves time: neither library is loaded yet (a caller that has imported them, as tests
    and notebooks have, compiles in its own process). Also keeps the fork to a process without PyTorch's threads."""
    return "torch" not in sys.modules and "tvm" not in sys.modules


class Worker:
    """A one-process pool, forked when made (before PyTorch is imported) and importing TVM in the background; it
    also answers which ONNX ops TVM converts (the build's early check), so that this process never imports TVM.
    A worker that dies (LLVM's fatal errors abort the process; the OOM killer) is `WorkerDied`, not a wait
    forever: concurrent.futures notices the death, where multiprocessing.Pool replaced the worker and lost its
    task."""

    def __init__(self, converted_ops: Callable[[], frozenset[str]], emit_here: Callable[..., list[str]]) -> None:
        """converted_ops() and emit_here(model, options, out_dir): module-level functions of the backend, run in the
        worker (passed in, so that this module never imports the backend that starts it)."""
        self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"), initializer=_init)
        self._emit_here = emit_here
        self._ops = self.pool.submit(converted_ops)

    def converted_ops(self) -> frozenset[str]:
        return _result(self._ops, "importing TVM")

    def emit(self, model, options, out_dir: Path) -> list[str]:
        """The backend's emit_here run by the worker, which ends after it (the build needs it no more)."""
        # the calibration samples are for the NPU kits' archives; a TVM emit does not read them (no 100 MB to send)
        options = dataclasses.replace(options, data=None)
        try:
            files, seconds = _result(
                self.pool.submit(_recorded, self._emit_here, model, options, Path(out_dir)), "compiling the model"
            )
        finally:
            self.stop()
        add(seconds)
        return files

    def stop(self) -> None:
        """End the worker now, even in the middle of its import (a build that failed before it emitted)."""
        # Python 3.14 has ProcessPoolExecutor.terminate_workers(); before it, the executor's own process table
        terminate = getattr(self.pool, "terminate_workers", None)
        if terminate is not None:
            terminate()
            return
        for process in list((getattr(self.pool, "_processes", None) or {}).values()):
            process.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _result(future, doing: str):
    """The future's result; WorkerDied where the worker process ended without one."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise WorkerDied(
            f"TVM's compile process died while {doing} (its own message, if it printed one, is "
            "above: an LLVM error is a tcc bug, please report it with the spec and target; a kill "
            "without a message is often the machine's out-of-memory killer)"
        ) from None


def _recorded(emit_here, model, options, out_dir: Path) -> tuple[list[str], dict[str, float]]:
    with recording() as seconds:
        files = emit_here(model, options, out_dir)
    return files, seconds
