"""Latency measurement: runners that time one inference of a model, interleaved in rounds.

Every round times `runs` inferences of each runner in turn and keeps their median, so that load from other
processes on a shared machine hits all of them alike; the result per runner is the list of per-round medians,
summarized as median and spread (min, p10, p90, max), and ratios are taken per round (same load) before their
median. One thread, batch 1, everywhere.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np


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
    import torch

    torch.set_num_threads(1)
    xt = torch.from_numpy(np.ascontiguousarray(x[:1]))
    module.eval()

    def step():
        with torch.inference_mode():
            module(xt)

    return Runner(step)


def ort_runner(path: str | Path, x: np.ndarray) -> Runner:
    """ONNX Runtime, one intra-op thread (sequential execution, ORT's default), all graph optimisations."""
    import onnx

    from tcc.quant.stats import session

    sess = session(onnx.load(str(path)), threads=1)
    inp = sess.get_inputs()[0]
    feed = {inp.name: np.ascontiguousarray(x[:1], np.float16 if "float16" in inp.type else np.float32)}
    return Runner(lambda: sess.run(None, feed))


def litert_runner(bundle: str | Path, x: np.ndarray) -> Runner:
    """LiteRT's interpreter, one thread, on the first sample of `x` (NCHW) in the model's own layout (NHWC);
    a model that takes int8 codes gets seeded codes of its shape (the kernels' time does not depend on them)."""
    from tcc.backends import get_backend

    backend = get_backend("tflite")
    it = backend.interpreter(backend.load(Path(bundle)))
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
    """A TVM module timed by the bundle's own runner (tcc-run --threads 1 --repeat N: one median per call, after
    its own untimed first run), as it is deployed; a process per round costs its start-up, outside the timed
    loop. The same `time(runs)` as Runner."""

    def __init__(self, so: str | Path, target: str, x: np.ndarray, runner: str | Path | None = None):
        self.so, self.target, self.runner = so, target, runner
        self.x = np.ascontiguousarray(x[:1])

    def time(self, runs: int) -> list[float]:
        from tcc.backends.tvm_run import run_module

        _, ms = run_module(self.so, self.target, self.x, threads=1, repeat=runs, runner=self.runner)
        return [float(ms)]


def spread(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"median": round(float(np.median(v)), 4), "min": round(float(v.min()), 4),
            "p10": round(float(np.percentile(v, 10)), 4), "p90": round(float(np.percentile(v, 90)), 4),
            "max": round(float(v.max()), 4), "n": int(len(v))}


def interleave(runners: dict[str, Runner | TvmRunner], rounds: int, runs: int, tick: Callable[[], None] = lambda: None
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
