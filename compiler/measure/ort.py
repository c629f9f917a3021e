"""ONNX Runtime on the CPU: a session with tcc's settings (threads, optimisation, spinning, profiling), and where
ONNX Runtime spends an INT8 model's time: per-kernel times from its profiler, and the kernels that still
read or write float activations (the work outside its integer kernels: what a per-op precision placement acts
on)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx


def session(
    model: onnx.ModelProto,
    threads: int | None = None,
    optimize: bool = True,
    profile: str | None = None,
    spin: bool = True,
):
    """An ONNX Runtime CPU session; optimize=False: no graph optimisations (a QDQ model runs as float fake-quant);
    `profile`: ORT's profiler writes per-kernel times to files with this prefix; spin=False: idle worker threads
    sleep at once instead of spinning (for runs whose results other threads work on in between)."""
    import onnxruntime as ort  # deferred for start-up: loads onnxruntime

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = profile
    so.log_severity_level = 3
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def profile_nodes(model, x: np.ndarray, runs: int = 30) -> list[dict]:
    """Per-node kernel times (median over `runs`, 1 thread) from ONNX Runtime's profiler, in execution order,
    with the op the kernel ran as and the element types of its data input and output."""
    one = np.ascontiguousarray(x[:1])
    with tempfile.TemporaryDirectory() as d:
        s = session(model, threads=1, profile=str(Path(d) / "prof"))
        feed = {s.get_inputs()[0].name: one}
        for _ in range(5 + runs):
            s.run(None, feed)
        path = s.end_profiling()
        events = json.loads(Path(path).read_text())
        os.remove(path)
    nodes: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        a = e["args"]

        def data(key):  # element types of the activation tensors (rank >= 2; scales and zero points are not)
            return sorted({t for d in a.get(key, []) for t, shape in d.items() if len(shape) >= 2})  # noqa: B023

        n = nodes.setdefault(
            e["name"][: -len("_kernel_time")],
            {"op": a["op_name"], "times": [], "in": data("input_type_shape"), "out": data("output_type_shape")},
        )
        n["times"].append(e["dur"])
    return [
        {"node": k, "op": v["op"], "in": v["in"], "out": v["out"], "us": float(np.median(v["times"][-runs:]))}
        for k, v in nodes.items()
    ]


def float_nodes(prof: list[dict]) -> list[dict]:
    """Nodes reading or writing float activations: the work ONNX Runtime does outside its integer kernels."""
    return [p for p in prof if "float" in p["in"] + p["out"]]
