"""ONNX models written by hand and ONNX Runtime: the one graph builder the tests share (make_model), sessions on 2
threads (session), and running a model (run, run_all) or reading what ORT's optimizer made of it (optimized_ops).
ONNX Runtime is imported when a session is made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tensors(inits) -> list[onnx.TensorProto]:
    """Initializers from {name: value}, (name, value) pairs or TensorProtos: a value becomes a float32 tensor, or an
    int64 one when its name starts with '#' (the '#' dropped); a TensorProto is taken as it is."""
    items = inits.items() if isinstance(inits, dict) else inits
    out = []
    for item in items:
        if isinstance(item, onnx.TensorProto):
            out.append(item)
            continue
        name, value = item
        if name.startswith("#"):
            out.append(numpy_helper.from_array(np.asarray(value, np.int64), name[1:]))
        else:
            out.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
    return out


def value_infos(shapes) -> list[onnx.ValueInfoProto]:
    """FP32 value infos from {name: shape} (a shape of None: unknown rank)."""
    return [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, None if s is None else list(s))
        for n, s in dict(shapes).items()
    ]


def make_model(  # noqa: PLR0913
    nodes,
    inputs,
    outputs,
    inits=(),
    *,
    name: str = "g",
    opset: int = 13,
    ir_version=None,
    check: bool = False,
    full_check: bool = False,
    **model_fields,
) -> onnx.ModelProto:
    """A model of `nodes` on the default domain at `opset`: `inputs` and `outputs` as {name: shape} (FP32),
    `inits` as for tensors(). ir_version: None keeps onnx's default, "min" the lowest the opset allows, a number
    that one; check: onnx.checker (full_check: with shape inference); model_fields: other ModelProto fields."""
    graph = helper.make_graph(list(nodes), name, value_infos(inputs), value_infos(outputs), tensors(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **model_fields)
    if ir_version == "min":
        m.ir_version = helper.find_min_ir_version_for(m.opset_import)
    elif ir_version is not None:
        m.ir_version = ir_version
    if check:
        onnx.checker.check_model(m, full_check=full_check)
    return m


def session(m: onnx.ModelProto | str | Path, *, threads: int = 2, optimize: bool = True, optimized: Path | None = None):
    """An ONNX Runtime CPU session on `threads` threads; optimize=False: no graph optimizations; optimized: the
    file ORT writes its optimized graph to."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if optimized is not None:
        so.optimized_model_filepath = str(optimized)
    src = str(m) if isinstance(m, (str, Path)) else m.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def run_all(m, x: np.ndarray, **options) -> list[np.ndarray]:
    """Every output of `m` with `x` fed to its (first) input; options as for session()."""
    s = session(m, **options)
    return s.run(None, {s.get_inputs()[0].name: x})


def run(m, x: np.ndarray, **options) -> np.ndarray:
    """The first output of `m` with `x` fed to its (first) input; options as for session()."""
    return run_all(m, x, **options)[0]


def optimized_ops(m, path: Path) -> list[str]:
    """The op types of the graph ORT's optimizer makes of `m` (written to `path`)."""
    session(m, optimized=path)
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def with_outputs(m: onnx.ModelProto, names: list[str], elem_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """A copy of `m` that also outputs the tensors `names` (of `elem_type`)."""
    out = onnx.ModelProto()
    out.CopyFrom(m)
    have = {o.name for o in out.graph.output}
    out.graph.output.extend(helper.make_tensor_value_info(n, elem_type, None) for n in names if n not in have)
    return out


def learned_token_model() -> onnx.ModelProto:
    """concat(expand(token, [batch, 1, 4]), x): the batch read from x by Shape -> Slice -> Concat, as a ViT's class
    token is broadcast."""
    nodes = [
        helper.make_node("Shape", ["x"], ["x.shape"], name="shape"),
        helper.make_node("Slice", ["x.shape", "zero", "one"], ["batch"], name="batch"),
        helper.make_node("Concat", ["batch", "rest"], ["token.shape"], name="token.shape", axis=0),
        helper.make_node("Expand", ["token", "token.shape"], ["tokens"], name="expand"),
        helper.make_node("Concat", ["tokens", "x"], ["y"], name="cat", axis=1),
    ]
    inits = {"#zero": [0], "#one": [1], "#rest": [1, 4], "token": np.arange(4).reshape(1, 1, 4)}
    return make_model(nodes, {"x": ["N", 3, 4]}, {"y": ["N", 4, 4]}, inits, check=True)
