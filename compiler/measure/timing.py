"""Latency runners and interleaved rounds: each engine's step timed in turn, round after round, so that both sides of
a ratio run under the same load (the CPU's clock, the other core's work)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import BuildError
from .ort import session


class Runner:
    """Times one model on one engine. `time(runs)` returns the latency in ms of each of `runs` inferences (or,
    for engines timed by their own runner, one median over them)."""

    def __init__(self, step: Callable[[], object], warmup: int = 5):
        self.step = step
        for _ in range(warmup):
            step()

    def time(self, runs: int) -> list[float]:
        out = []
        for _ in range(runs):
            t = time.perf_counter()
            self.step()
            out.append(1e3 * (time.perf_counter() - t))
        return out


def torch_runner(module, x: np.ndarray) -> Runner:
    import torch  # deferred for start-up: loads torch

    torch.set_num_threads(1)
    xt = torch.from_numpy(np.ascontiguousarray(x[:1]))
    module.eval()

    def step():
        with torch.inference_mode():
            module(xt)

    return Runner(step)


def ort_runner(path: str | Path, x: np.ndarray, threads: int = 1) -> Runner:
    """ONNX Runtime, `threads` intra-op threads (sequential execution, ORT's default), all graph optimisations. A
    file it cannot load or run (a damaged bundle's) is a BuildError naming it."""
    import onnx  # deferred: start-up time of the commands that import the runners but time no ONNX model

    try:
        sess = session(onnx.load(str(path)), threads=threads)
        inp = sess.get_inputs()[0]
        feed = {inp.name: np.ascontiguousarray(x[:1], np.float16 if "float16" in inp.type else np.float32)}
        return Runner(lambda: sess.run(None, feed))  # its warm-up runs the model
    except Exception as e:  # onnx's DecodeError, ORT's own types (Fail, InvalidGraph, InvalidArgument, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BuildError(f"{path}: ONNX Runtime cannot load or run it ({first})") from None


def spread(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {
        "median": round(float(np.median(v)), 4),
        "min": round(float(v.min()), 4),
        "p10": round(float(np.percentile(v, 10)), 4),
        "p90": round(float(np.percentile(v, 90)), 4),
        "max": round(float(v.max()), 4),
        "n": len(v),
    }


def interleave(
    runners: dict, rounds: int, runs: int, tick: Callable[[], None] = lambda: None
) -> dict[str, list[float]]:
    """Per runner, the median latency (ms) of each round."""
    per_round: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):
        for k, r in runners.items():
            per_round[k].append(float(np.median(r.time(runs))))
        tick()
    return per_round


def ratio(per_round: dict[str, list[float]], a: str, b: str) -> dict | None:
    """Spread of a / b taken round by round (both timed under the same load)."""
    if a not in per_round or b not in per_round:
        return None
    return spread(np.asarray(per_round[a]) / np.asarray(per_round[b]))
