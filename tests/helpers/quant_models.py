"""Small FP32 ONNX models built with onnx.helper for the quantization tests (no lowering needed), and a tiny spec
with calibration data for the `tcc calibrate` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from tests.helpers.onnx_util import make_model


def rows_gemm(rng: np.random.Generator | None = None) -> onnx.ModelProto:
    """A linear layer over rows ([16, 32] @ [32, 12]: attention's projections) after a reshape; its weights drawn
    from `rng` (default: seed 4), which a caller may go on drawing its inputs from."""
    rng = rng if rng is not None else np.random.default_rng(4)
    nodes = [
        helper.make_node("Reshape", ["input", "rows.shape"], ["rows"], name="rows"),
        helper.make_node("Gemm", ["rows", "fc.weight", "fc.bias"], ["output"], name="fc", transB=1),
    ]
    inits = {
        "#rows.shape": [16, 32],
        "fc.weight": (rng.standard_normal((12, 32)) * 0.4).astype(np.float32),
        "fc.bias": (rng.standard_normal(12) * 0.1).astype(np.float32),
    }
    return make_model(nodes, {"input": [1, 32, 4, 4]}, {"output": [16, 12]}, inits)


def tiny_cnn(seed: int = 0, c_in: int = 3, size: int = 16, classes: int = 5) -> onnx.ModelProto:
    """conv3x3+relu -> depthwise3x3+relu -> conv1x1 -> concat(relu1, pw) -> maxpool -> gap -> flatten -> gemm."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((8, c_in, 3, 3)) * 0.3
    b1 = rng.standard_normal(8) * 0.1
    w2 = rng.standard_normal((8, 1, 3, 3)) * 0.4
    b2 = rng.standard_normal(8) * 0.1
    w3 = rng.standard_normal((6, 8, 1, 1)) * 0.3
    w3[0] *= 8  # one channel with a much wider range: per-channel scales matter
    b3 = rng.standard_normal(6) * 0.1
    wf = rng.standard_normal((classes, 14)) * 0.5
    bf = rng.standard_normal(classes) * 0.1
    nodes = [
        helper.make_node(
            "Conv",
            ["input", "stem.conv.weight", "stem.conv.bias"],
            ["stem.conv"],
            name="stem.conv",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["stem.conv"], ["stem.relu"], name="stem.relu"),
        helper.make_node(
            "Conv",
            ["stem.relu", "dw.weight", "dw.bias"],
            ["dw"],
            name="dw",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            group=8,
            strides=[2, 2],
        ),
        helper.make_node("Relu", ["dw"], ["dw.relu"], name="dw.relu"),
        helper.make_node("Conv", ["dw.relu", "pw.weight", "pw.bias"], ["pw"], name="pw", kernel_shape=[1, 1]),
        helper.make_node("MaxPool", ["stem.relu"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["pool", "pw"], ["cat"], name="cat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flat", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["output"], name="fc", transB=1),
    ]
    return make_model(
        nodes,
        {"input": ["N", c_in, size, size]},
        {"output": ["N", classes]},
        {
            "stem.conv.weight": w1,
            "stem.conv.bias": b1,
            "dw.weight": w2,
            "dw.bias": b2,
            "pw.weight": w3,
            "pw.bias": b3,
            "fc.weight": wf,
            "fc.bias": bf,
        },
        name="tiny",
        ir_version=8,
        check=True,
    )


def residual_model(seed: int = 0, fused_relu: bool = True) -> onnx.ModelProto:
    """conv+relu -> conv -> add(skip) [-> relu] -> gap -> flatten -> gemm."""
    rng = np.random.default_rng(seed)
    add_out = "add" if fused_relu else "res"
    nodes = [
        helper.make_node("Conv", ["input", "c1.w", "c1.b"], ["c1"], name="c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
        helper.make_node("Conv", ["r1", "c2.w", "c2.b"], ["c2"], name="c2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], [add_out], name="add"),
    ]
    if fused_relu:
        nodes.append(helper.make_node("Relu", ["add"], ["res"], name="add.relu"))
    nodes += [
        helper.make_node("GlobalAveragePool", ["res"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flat", axis=1),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["output"], name="fc", transB=1),
    ]
    inits = {
        "c1.w": rng.standard_normal((8, 3, 3, 3)) * 0.3,
        "c1.b": rng.standard_normal(8) * 0.1,
        "c2.w": rng.standard_normal((8, 8, 3, 3)) * 0.2,
        "c2.b": rng.standard_normal(8) * 0.1,
        "fc.w": rng.standard_normal((4, 8)) * 0.5,
        "fc.b": rng.standard_normal(4) * 0.1,
    }
    return make_model(
        nodes, {"input": ["N", 3, 12, 12]}, {"output": ["N", 4]}, inits, name="residual", ir_version=8, check=True
    )


def wide_fan_in_model(seed: int = 0, k: int = 34) -> onnx.ModelProto:
    """conv1x1 (3 -> 64) -> a k x k conv over all of it (64 k^2 products an output, all of one positive weight) ->
    relu -> flatten -> gemm. At k = 34 the big conv's int32 accumulator fits its signed input's 8-bit codes (73,984
    x 127 x 128 < 2^31) and overflows on any grid of 9 to 16 bits (x 255): its input cannot be widened."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["input", "c1.w", "c1.b"], ["c1"], name="c1", kernel_shape=[1, 1]),
        helper.make_node("Conv", ["c1", "big.w", "big.b"], ["big"], name="big", kernel_shape=[k, k]),
        helper.make_node("Relu", ["big"], ["r2"], name="r2"),
        helper.make_node("Flatten", ["r2"], ["flat"], name="flat", axis=1),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["output"], name="fc", transB=1),
    ]
    inits = {
        "c1.w": rng.standard_normal((64, 3, 1, 1)) * 0.5,
        "c1.b": rng.standard_normal(64) * 0.1,
        "big.w": np.full((4, 64, k, k), 1e-3),
        "big.b": np.zeros(4),
        "fc.w": rng.standard_normal((3, 4)) * 0.5,
        "fc.b": rng.standard_normal(3) * 0.1,
    }
    return make_model(
        nodes, {"input": ["N", 3, k, k]}, {"output": ["N", 3]}, inits, name="wide_fan_in", ir_version=8, check=True
    )


def tiny_data(n: int = 24, c: int = 3, size: int = 16, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c, size, size)).astype(np.float32)


# conv + batchnorm + relu, a pool and a linear layer, on 3 x 16 x 16
TINY_SPEC = (
    "kind: model\nname: tiny\ninput: {shape: [3, 16, 16]}\nlayers:\n"
    "  - {op: conv2d, out: 8, kernel: 3, padding: 1}\n  - {op: batchnorm}\n  - {op: relu}\n"
    "  - {op: global_avgpool}\n  - {op: flatten}\n  - {op: linear, out: 3}\n"
)


def tiny_spec_and_data(folder: Path, n: int, spec: str = TINY_SPEC) -> tuple[Path, Path]:
    """folder/tiny.yaml (`spec`, on 3 x 16 x 16) and folder/calib.npy (n seeded N(0, 1) inputs for it)."""
    path, data = folder / "tiny.yaml", folder / "calib.npy"
    path.write_text(spec)
    np.save(data, np.random.default_rng(0).standard_normal((n, 3, 16, 16)).astype(np.float32))
    return path, data


def table_json(table) -> dict:
    """A calibration table's document as its file holds it (a fresh dict: the tests edit it into damaged tables)."""
    import json  # deferred: only the table tests read documents

    return json.loads(table.to_json())
