"""One peer on one ARM core class: its executed instructions and estimated cycles per inference, counted as tcc's
own bundles are (`tcc.backends.tvm.measure`), and its output against the same engine on this machine.

The peer is the guest program (`guest.py`) running ONNX Runtime or LiteRT inside the AArch64 sysroot under qemu;
one inference is what ran between the two marks it makes around its second inference (the plugin keeps every
block's count at each mark): Python's start, the imports and the session, which differ from run to run under ONNX
Runtime by millions of instructions (a run of two inferences once counted fewer than a run of one), stay out.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tcc.backends.tvm.measure.blocks import instruction_summary, marked_blocks
from tcc.backends.tvm.measure.cycle_models import CYCLE_MODELS
from tcc.backends.tvm.measure.cycles import estimate, require_llvm
from tcc.errors import DataError
from tcc.targets import get_platform

from .sysroot import CORE_CLASSES, PYTHON, qemu_prefix, sysroot, versions

GUEST = Path(__file__).with_name("guest.py")
ENGINES = {  # engine -> (the bundle file it runs, its wheel)
    "ort": ("model.onnx", "onnxruntime"),
    "litert-xnnpack": ("model.tflite", "ai-edge-litert"),
    "litert-builtin": ("model.tflite", "ai-edge-litert"),
}


def engine_input(engine: str, model_file: Path, x: np.ndarray) -> np.ndarray:
    """`x` (NCHW float32, batch 1) as the engine's model takes it: a TFLite bundle's input is NHWC."""
    if engine == "ort":
        return np.ascontiguousarray(x, np.float32)
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_path=str(model_file)).get_input_details()[0]
    if detail["dtype"] != np.float32:
        raise DataError(f"{model_file}: the peers feed float inputs; this model takes {detail['dtype'].__name__}")
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1), np.float32)
    return nhwc if list(detail["shape"]) == list(nhwc.shape) else np.ascontiguousarray(x, np.float32)


def host_output(engine: str, model_file: Path, x: np.ndarray) -> np.ndarray:
    """The same engine's output on this machine (x86), one thread."""
    if engine == "ort":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if engine == "litert-xnnpack" else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=str(model_file), num_threads=1, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def measure(engine: str, model_file: Path, core: str, x: np.ndarray, functions: int = 8) -> dict[str, Any]:
    """The peer `engine` running `model_file` on the core class `core` (a key of CORE_CLASSES), batch 1, one
    thread: executed instructions and estimated cycles of one inference, and its output against this machine's."""
    if engine not in ENGINES:
        raise DataError(f"unknown peer engine {engine!r}; one of {', '.join(ENGINES)}")
    require_llvm()
    root = sysroot()
    x = engine_input(engine, model_file, x)
    with tempfile.TemporaryDirectory(prefix="tcc-peer-") as tmp:
        inp, out = Path(tmp) / "input.npy", Path(tmp) / "output.npy"
        np.save(inp, x)

        argv = [str(root / "tree" / PYTHON), str(GUEST), engine, str(model_file), str(inp), str(out), "1"]
        how = (
            f"{engine} running {model_file.name}: one warm inference between two marks, in Debian's arm64 Python "
            "3.11 under qemu, one thread"
        )
        run = marked_blocks(argv, qemu_prefix(core), "aarch64", how, log=True, timeout=3600)
        got = np.load(out)
    platform = get_platform(CORE_CLASSES[core].target)
    instructions = instruction_summary(run, "aarch64")
    cycles = estimate(run, CYCLE_MODELS[platform.cycle_model or ""], "aarch64-linux-gnu-nm", top=functions)
    reference = host_output(engine, model_file, x)
    diff = np.abs(got.astype(np.float64) - reference.astype(np.float64))
    return {
        "engine": engine,
        "version": versions()[ENGINES[engine][1]],
        "core": CORE_CLASSES[core].key,
        "model": model_file.name,
        "instructions": instructions,
        "cycles": cycles,
        "max_abs_vs_x86": float(diff.max()) if diff.size else 0.0,
        "bit_exact_vs_x86": bool(np.array_equal(got, reference)),
    }
