"""Latency measurement: runners that time one inference of a model, interleaved in rounds.

Every round times `runs` inferences of each runner in turn and keeps their median, so that load from other
processes on a shared machine hits all of them alike; the result per runner is the list of per-round medians,
summarized as median and spread (min, p10, p90, max), and ratios are taken per round (same load) before their
median. One thread, batch 1, everywhere. Here: the runners of built bundles (LiteRT, a TVM module by its own runner).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from tcc.backends import get_backend
from tcc.backends.tvm.runner import run_module

# the engine-independent runners and rounds live in tcc.measure.timing (calibration's speed placement times with
# them too); bench reads every runner through this module
from ..measure.timing import Runner, interleave, ort_runner, ratio, spread, torch_runner  # noqa: F401

if TYPE_CHECKING:
    from tcc.backends.tflite.backend import TfliteBackend


def litert_runner(bundle: str | Path, x: np.ndarray, threads: int = 1) -> Runner:
    """LiteRT's interpreter, `threads` threads, on the first sample of `x` (NCHW) in the model's own layout (NHWC);
    a model that takes int8 codes gets seeded codes of its shape (the kernels' time does not depend on them)."""
    backend = cast("TfliteBackend", get_backend("tflite"))
    it = backend.interpreter(backend.load(Path(bundle)), threads=threads)
    d = it.get_input_details()[0]
    one = np.ascontiguousarray(x[:1], np.float32)
    if d["dtype"] == np.float32 and tuple(d["shape"]) == one.transpose(0, 2, 3, 1).shape:
        sample = np.ascontiguousarray(one.transpose(0, 2, 3, 1))
    elif d["dtype"] == np.float32 and tuple(d["shape"]) == one.shape:
        sample = one
    else:
        sample = np.random.default_rng(0).integers(-128, 128, d["shape"]).astype(d["dtype"])
    index = d["index"]

    def step():
        it.set_tensor(index, sample)
        it.invoke()

    return Runner(step)


class TvmRunner:
    """A TVM module timed by the bundle's own runner (tcc-run --threads T --repeat N: one median per call, after
    its own untimed first run), as it is deployed; a process per round costs its start-up, outside the timed
    loop. The same `time(runs)` as Runner."""

    def __init__(self, so: str | Path, target: str, x: np.ndarray, runner: str | Path | None = None, threads: int = 1):
        self.so, self.target, self.runner, self.threads = so, target, runner, threads
        self.x = np.ascontiguousarray(x[:1])

    def time(self, runs: int) -> list[float]:
        _, ms = run_module(self.so, self.target, self.x, threads=self.threads, repeat=runs, runner=self.runner)
        assert ms is not None  # repeat > 0 times it
        return [float(ms)]
