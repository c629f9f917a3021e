"""tcc.passes.conv_transpose: a ConvTranspose as one Conv of its stride's phases, interleaved and cut. Against ONNX
Runtime's own ConvTranspose on the same weights, over the geometries exporters write (U-Net's 2 x 2 / 2, MONAI's
3 x 3 / 2 with padding 1 and output_padding 1, 4 x 4 / 2, stride 1, rectangular strides, asymmetric pads, grouped and
depthwise, without bias): equal within float32 rounding; no ConvTranspose left; the Conv named as the node it
replaces (the calibration table's anchor)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tcc.passes.conv_transpose import conv_transpose_as_conv
from tests.helpers.onnx_util import run

CASES = {  # name: (c_in, c_out, kernel, strides, pads, output_padding, group, bias)
    "unet_2x2_s2": (6, 4, (2, 2), (2, 2), (0, 0, 0, 0), (0, 0), 1, True),
    "monai_3x3_s2_p1_op1": (6, 4, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, True),
    "dcgan_4x4_s2_p1": (6, 5, (4, 4), (2, 2), (1, 1, 1, 1), (0, 0), 1, False),
    "stride1_3x3_p1": (6, 4, (3, 3), (1, 1), (1, 1, 1, 1), (0, 0), 1, True),
    "rect_3x2_s2x1": (6, 4, (3, 2), (2, 1), (0, 1, 1, 0), (1, 0), 1, True),
    "grouped_3x3_s2": (6, 4, (3, 3), (2, 2), (1, 1, 1, 1), (0, 0), 2, True),
    "depthwise_4x4_s2": (6, 6, (4, 4), (2, 2), (1, 1, 1, 1), (0, 0), 6, True),
    "s3_k5_p2": (4, 3, (5, 5), (3, 3), (2, 2, 2, 2), (2, 1), 1, True),
}


def _model(c_in, c_out, kernel, strides, pads, output_padding, group, bias) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((c_in, c_out // group, *kernel)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(c_out).astype(np.float32), "b"))
        inputs.append("b")
    node = helper.make_node(
        "ConvTranspose", inputs, ["y"], name="up", kernel_shape=list(kernel), strides=list(strides),
        pads=list(pads), output_padding=list(output_padding), group=group,
    )  # fmt: skip
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c_in, 7, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_phases_conv_equals_onnx_runtimes_conv_transpose(name):
    model = _model(*CASES[name])
    rewritten = conv_transpose_as_conv(model)
    onnx.checker.check_model(rewritten, full_check=True)
    ops = [n.op_type for n in rewritten.graph.node]
    assert "ConvTranspose" not in ops and ops.count("Conv") == 1
    assert next(n for n in rewritten.graph.node if n.op_type == "Conv").name == "up"
    x = np.random.default_rng(1).standard_normal((2, CASES[name][0], 7, 9)).astype(np.float32)
    want, got = run(model, x), run(rewritten, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want).max())))


def test_a_dilated_one_is_left_as_it_is():
    model = _model(*CASES["unet_2x2_s2"])
    model.graph.node[0].attribute.append(helper.make_attribute("dilations", [2, 2]))
    assert [n.op_type for n in conv_transpose_as_conv(model).graph.node] == ["ConvTranspose"]
