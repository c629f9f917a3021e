"""ONNX Runtime sessions for the backends that run an ONNX file on this machine: the ort backend's artifact, and the
FP32 / QDQ models of the AX kits (their checks run them here; the NPU toolchains run them on the board)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tcc.errors import BuildError

ARTIFACT = "model.onnx"
PROVIDERS = ["CPUExecutionProvider"]


@dataclass
class OrtLoaded:
    session: object
    input: str
    output: str
    batch: int | None  # the artifact's fixed batch size, or None when the batch is dynamic


def load_bundle(bundle_dir: Path) -> OrtLoaded:
    """The bundle's model.onnx in an ONNX Runtime session (CPU)."""
    import onnxruntime as ort  # deferred for start-up: loads onnxruntime

    path = Path(bundle_dir) / ARTIFACT
    so = ort.SessionOptions()
    so.log_severity_level = 3  # errors only: no optimizer chatter on stderr
    try:
        sess = ort.InferenceSession(str(path), so, providers=PROVIDERS)
    except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, NoSuchFile, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BuildError(f"{path}: ONNX Runtime cannot load the artifact ({first})") from None
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
    return OrtLoaded(sess, inp.name, out.name, batch)


def run_loaded(loaded: OrtLoaded, x: np.ndarray) -> np.ndarray:
    """The model's output for batch `x` (a fixed-batch model runs in slices of its batch)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if loaded.batch is None or loaded.batch == len(x):
        return session_run(loaded.session, [loaded.output], {loaded.input: x})[0]
    if len(x) % loaded.batch:
        raise BuildError(f"the artifact has a fixed batch of {loaded.batch}; got {len(x)} samples")
    parts = [
        session_run(loaded.session, [loaded.output], {loaded.input: x[i : i + loaded.batch]})[0]
        for i in range(0, len(x), loaded.batch)
    ]
    return np.concatenate(parts)


def qdq_codes(model, qdq, table, x: np.ndarray, optimize: bool = True) -> tuple[np.ndarray, dict]:
    """Run the QDQ model `qdq` (made from `model` and `table` by tcc.quant.lower.qdq.to_qdq, readable names) with every
    QuantizeLinear output as an extra graph output: (its output, {quantized tensor: codes}). optimize=False runs it
    as float fake-quant (each QuantizeLinear exactly ONNX's equation)."""
    import onnx  # deferred for start-up: loads onnx
    import onnxruntime as ort  # deferred for start-up: loads onnxruntime

    from tcc.quant.lower.qdq import quant_points  # deferred for start-up: loads onnx

    points = quant_points(model, table)
    m = onnx.ModelProto()
    m.CopyFrom(qdq)
    m.graph.output.extend(
        onnx.helper.make_tensor_value_info(
            f"{p}/q", onnx.TensorProto.INT8 if table.act_scale(p)[2] else onnx.TensorProto.UINT8, None
        )
        for p in points
    )
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=PROVIDERS)
    first = sess.get_inputs()[0]
    x = np.ascontiguousarray(x, np.float32)
    step = first.shape[0] if isinstance(first.shape[0], int) and first.shape[0] > 0 else len(x)  # a fixed batch
    runs = [session_run(sess, None, {first.name: x[i : i + step]}) for i in range(0, len(x), step)]
    outs = [np.concatenate(parts) for parts in zip(*runs)]
    return outs[0], dict(zip(points, outs[len(qdq.graph.output) :]))


def session_run(sess, names, feed):
    """sess.run, with ONNX Runtime's own failures (e.g. an integer kernel refusing scales outside its range:
    "QLinearGlobalAveragePool parameter out of computation range") as a BuildError naming the node."""
    try:
        return sess.run(names, feed)
    except Exception as e:  # ORT raises its own exception types (Fail, RuntimeException, ...)
        text = str(e).strip()
        first = next((line for line in text.splitlines() if line.strip()), type(e).__name__)
        raise BuildError(
            f"ONNX Runtime failed running the artifact: {first}"
            + (
                " (an INT8 kernel refused its quantization parameters: check the calibration table's scales)"
                if "out of computation range" in text
                else ""
            )
        ) from None
