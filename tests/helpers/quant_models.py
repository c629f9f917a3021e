"""Small FP32 ONNX models built with onnx.helper for the quantization tests (no lowering needed)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


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
        helper.make_node("Conv", ["input", "stem.conv.weight", "stem.conv.bias"], ["stem.conv"], name="stem.conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["stem.conv"], ["stem.relu"], name="stem.relu"),
        helper.make_node("Conv", ["stem.relu", "dw.weight", "dw.bias"], ["dw"], name="dw", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], group=8, strides=[2, 2]),
        helper.make_node("Relu", ["dw"], ["dw.relu"], name="dw.relu"),
        helper.make_node("Conv", ["dw.relu", "pw.weight", "pw.bias"], ["pw"], name="pw", kernel_shape=[1, 1]),
        helper.make_node("MaxPool", ["stem.relu"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["pool", "pw"], ["cat"], name="cat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flat", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["output"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c_in, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", classes])],
        [_init("stem.conv.weight", w1), _init("stem.conv.bias", b1), _init("dw.weight", w2), _init("dw.bias", b2),
         _init("pw.weight", w3), _init("pw.bias", b3), _init("fc.weight", wf), _init("fc.bias", bf)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tiny_data(n: int = 24, c: int = 3, size: int = 16, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c, size, size)).astype(np.float32)
