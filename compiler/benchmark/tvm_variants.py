"""TVM host FP32 pipelines against each other (`tcc bench --tvm-variants`): tcc's default (NHWC layout and its
CPU schedules, what `tcc build` uses), unscheduled (TVM's fused default lowering, NCHW), unfused (tvm.compile's
own default) and dlight (TVM's CPU rules). A variant TVM cannot compile is a result too."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from tcc.backends.tvm import compile as tvm_compile
from tcc.backends.tvm.runner import run_module

VARIANTS = {
    "default": tvm_compile.CompileOptions(x86=tvm_compile.X86Passes(concat_in_place=True, nchw_input=True)),
    "unscheduled": tvm_compile.CompileOptions(schedule=False),
    "unfused": tvm_compile.CompileOptions(fuse=False, schedule=False),
    "dlight": tvm_compile.CompileOptions(dlight=True, schedule=False),
}


def time_variants(onnx_model, x: np.ndarray, work: Path, runs: int) -> dict:
    inp = onnx_model.graph.input[0].name
    one = np.ascontiguousarray(x[:1])
    out: dict[str, dict[str, Any]] = {}
    for name, options in VARIANTS.items():
        t = time.perf_counter()
        try:
            mod = tvm_compile.import_onnx(onnx_model, {inp: list(one.shape)})
            so = tvm_compile.compile_module(mod, "host", work / f"{name}.so", options)
        except Exception as e:
            out[name] = {"error": f"{type(e).__name__}: " + (str(e).strip().splitlines() or [""])[-1]}
            continue
        compile_s = time.perf_counter() - t
        _, ms = run_module(so, "host", one, threads=1, repeat=runs)
        assert ms is not None  # repeat > 0 times it
        out[name] = {"ms": round(float(ms), 4), "compile_s": round(compile_s, 1)}
    return out
