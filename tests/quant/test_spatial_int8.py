"""INT8 of dense prediction's spatial ops (issue 70): the integer op table's `resize_nearest` and `pad` (moves of
codes), `resize_bilinear` (exact integer weights), a transposed conv as the integer conv of its phases
(tcc.passes.conv_transpose), or kept one integer node under the NPUs' rules (`conv_transpose`), and `resize` /
`instancenorm` (float only: islands). A small U-Net
(instance norm, transposed conv, reflect pad, bilinear upsampling to a skip's size, nearest upsampling) and a model
of odd resizes (non-integer factors, align_corners, a stated scale, round_prefer_ceil, edge and constant padding,
MONAI's 3 x 3 / 2 transposed conv, a bicubic resize: a float island)
build INT8 on ORT (each integer op within 1 LSB of the reference), TVM host and
TFLite (bit-exact with the reference, LiteRT's reference kernels; native RESIZE_BILINEAR where it resizes by an
integer factor, int32 builtins otherwise), and arm-a7 under qemu. The reference's bilinear integers against ONNX
Runtime's float Resize: within half a code, the rounding LiteRT's (half away from zero)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tcc.cli.main import main
from tcc.frontend import lower_spec
from tcc.intops import INT_OPS, QDQ, TFLITE, TVM, Role, supported
from tcc.ops.spatial import linear_rational
from tcc.quant.intgraph.match import plan
from tcc.quant.intgraph.reference import bilinear_codes
from tests.helpers import REPO
from tests.helpers.cli import int8_build_argv
from tests.helpers.onnx_util import run

UNET = """\
kind: model
name: tiny_unet
input: {shape: [3, 32, 32]}
layers:
  - {id: enc1, op: conv2d, out: 8, kernel: 3, padding: 1}
  - {id: act1, op: relu}
  - {id: down, op: maxpool, kernel: 2}
  - {id: enc2, op: conv2d, out: 16, kernel: 3, padding: 1}
  - {id: norm2, op: instance_norm, affine: true}
  - {id: act2, op: relu}
  - {id: up, op: conv_transpose, out: 8, kernel: 2, stride: 2}
  - {id: cat, op: concat, in: [up, act1]}
  - {id: pad, op: pad, pads: 1, mode: reflect}
  - {id: dec, op: conv2d, out: 8, kernel: 3}
  - {id: act3, op: relu}
  - {id: deep, op: conv2d, out: 8, kernel: 1, in: act2}
  - {id: deep_up, op: resize, mode: bilinear, in: [deep, act3]}
  - {id: near, op: resize, scale: 2, coordinates: asymmetric, in: act2}
  - {id: near_c, op: conv2d, out: 8, kernel: 1}
  - {id: merge, op: concat, in: [act3, deep_up, near_c]}
  - {id: head, op: conv2d, out: 3, kernel: 1}
"""

ODD = """\
kind: model
name: odd_resizes
input: {shape: [3, 20, 20]}
layers:
  - {id: c1, op: conv2d, out: 6, kernel: 3, stride: 2, padding: 1}
  - {id: a1, op: relu}
  - {id: up1, op: resize, mode: bilinear, size: [15, 27], in: a1}
  - {id: up2, op: resize, mode: bilinear, size: [15, 27], coordinates: align_corners, in: a1}
  - {id: up3, op: resize, size: [15, 27], nearest_mode: round_prefer_ceil, in: a1}
  - {id: up4, op: resize, mode: bilinear, scale: 1.5, in: a1}
  - {id: p4, op: pad, pads: [0, 6, 0, 6], mode: edge}
  - {id: p5, op: pad, pads: [1, 2], value: 0.25, in: a1}
  - {id: up5, op: resize, mode: bilinear, size: [15, 27], in: p5}
  - {id: up6, op: conv_transpose, out: 4, kernel: 3, stride: 2, padding: 1, output_padding: 1, in: a1}  # MONAI's
  - {id: up6r, op: resize, mode: bilinear, size: [15, 27]}
  - {id: up7, op: resize, mode: bicubic, size: [15, 27], in: a1}
  - {id: cat, op: concat, in: [up1, up2, up3, p4, up5, up6r, up7]}
  - {id: head, op: conv2d, out: 2, kernel: 1}
"""

SPECS = {"unet": (UNET, (3, 32, 32)), "odd": (ODD, (3, 20, 20))}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("spatial")
    for name, (text, shape) in SPECS.items():
        (root / f"{name}.yaml").write_text(text)
        data = np.random.default_rng(0).random((16, *shape)).astype(np.float32)
        np.save(root / f"{name}.npy", data)
    return root


def _build(work, name: str, target: str) -> str:
    if target in ("host", "arm-a7"):
        pytest.importorskip("tvm")
    out = io.StringIO()
    argv = int8_build_argv([work / f"{name}.yaml"], target, work / f"{name}-{target}", "--data", work / f"{name}.npy")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = main(argv)
    assert rc == 0, out.getvalue()[-2000:]
    return out.getvalue()


def test_the_kinds_and_their_lowerings():
    for kind in ("resize_nearest", "resize_bilinear", "pad"):
        assert all(supported(kind, lowering) for lowering in (TVM, QDQ, TFLITE)), kind
    for kind in ("resize", "conv_transpose_float", "instancenorm"):
        assert INT_OPS[kind].role is Role.FLOAT and supported(kind, TFLITE) and not supported(kind, TVM)
    # kept one node under the NPUs' rules only (the others rewrite it to the conv of its phases first)
    assert INT_OPS["conv_transpose"].role is Role.WEIGHTED and supported("conv_transpose", QDQ)
    assert not supported("conv_transpose", TVM)


def test_the_plan_takes_every_node(work):
    """The transposed conv is an integer conv of its phases (tcc.passes.conv_transpose) except under the NPUs'
    rules, whose toolchains take ConvTranspose itself (a float island in tcc's prediction)."""
    onnx_model = lower_spec(work / "unet.yaml").onnx
    kinds = {n.name: n.kind for n in plan(onnx_model, lowering=TVM, rules="tvm").nodes}
    assert kinds["deep_up"] == "resize_bilinear" and kinds["near"] == "resize_nearest" and kinds["pad"] == "pad"
    assert kinds["up"] == "conv" and kinds["up/split"] == "reshape" and kinds["norm2"] == "instancenorm"
    # the instance norm's island takes the ReLU that alone reads it, so its output is quantized once, after the ReLU;
    # not under TFLite's rules, whose island is the kind's own float builtin
    norm = {low: next(n for n in plan(onnx_model, lowering=low, rules=r).nodes if n.name == "norm2") for low, r in
            ((TVM, "tvm"), (QDQ, "ort"), (TFLITE, "tflite"))}  # fmt: skip
    assert norm[TVM].covers == norm[QDQ].covers == ("norm2", "act2") and norm[TVM].internal == ("norm2",)
    assert norm[TVM].outputs == ("act2",) and "act2" not in kinds
    assert norm[TFLITE].covers == ("norm2",) and norm[TFLITE].outputs == ("norm2",)
    # the conv before it gives the island its accumulator dequantized, no 8-bit tensor between, under TVM's rules;
    # not on ORT (a conv without a QuantizeLinear after it runs in float there), nor where the convs write 8-bit
    # codes only (TFLite) or the toolchain quantizes every tensor (the NPUs)
    for low, rules in ((TVM, "tvm"), (QDQ, "ort"), (TFLITE, "tflite"), (QDQ, "pulsar2")):
        graph = plan(onnx_model, lowering=low, rules=rules)
        into = rules == "tvm"
        assert (graph.dequantized == {"enc2"}) is into and ("enc2" in graph.quantized) is not into, rules
    npu = {n.name: (n.kind, n.precision) for n in plan(onnx_model, lowering=QDQ, rules="pulsar2").nodes}
    assert npu["up"] == ("conv_transpose", "int8")
    odd_plan = plan(lower_spec(work / "odd.yaml").onnx, lowering=TVM, rules="tvm")
    odd = {n.name: (n.kind, n.precision) for n in odd_plan.nodes}
    assert odd["up7"] == ("resize", "float")  # bicubic: a float island


@pytest.mark.parametrize(("name", "target"), [("odd", "host"), ("unet", "tflite"), ("odd", "tflite")])
def test_bit_exact_with_the_reference(work, name, target):
    """(The U-Net's TVM build is the arm-a7 one below; the zoo U-Nets' golden entries, tools/golden.sh, take every
    TVM target.)"""
    assert "self-check vs the integer reference: bit-exact" in _build(work, name, target)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_onnx_runtime_within_one_code_of_the_reference(work, name):
    printed = _build(work, name, "ort")
    assert "-> passed" in printed and "integer ops within" in printed
    result = json.loads((work / f"{name}-ort" / "manifest.json").read_text())["self_check"]["result"]
    by_kind = result["per_op"]["max_lsb_by_kind"]
    assert result["passed"] and by_kind["resize_bilinear"] <= 1.0  # ORT: float Resize between Q/DQ, half to even
    assert by_kind["resize_nearest"] == by_kind["pad"] == 0.0  # moves of codes, exactly


def test_arm_a7_bit_exact_under_qemu(work):
    """The U-Net (its instance norm a float island) cross-compiled for ARMv7 and run under qemu."""
    assert "self-check vs the integer reference: bit-exact" in _build(work, "unet", "arm-a7")


def _ort_linear(x: np.ndarray, out_hw, coordinates: str, scales=None) -> np.ndarray:
    inits = (
        [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, *scales])]
        if scales
        else [helper.make_tensor("sizes", TensorProto.INT64, [4], [*x.shape[:2], *out_hw])]
    )
    inputs = ["x", "", "scales"] if scales else ["x", "", "", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], mode="linear", coordinate_transformation_mode=coordinates)
    graph = helper.make_graph(
        [node], "r", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    return run(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), x)


@pytest.mark.parametrize(
    ("hw", "out_hw", "coordinates"),
    [((4, 5), (8, 10), "half_pixel"), ((7, 7), (14, 21), "asymmetric"), ((5, 3), (17, 11), "half_pixel"),
     ((6, 9), (13, 4), "align_corners"), ((8, 8), (5, 3), "pytorch_half_pixel")],
)  # fmt: skip
def test_bilinear_integers_round_onnx_runtimes_float_resize(hw, out_hw, coordinates):
    """The exact weights' sum divided and rounded half away from zero: ORT's float Resize of the same codes, rounded
    the same way, where it is not within float rounding of a tie."""
    from fractions import Fraction

    codes = np.random.default_rng(1).integers(-128, 128, (1, 4, *hw)).astype(np.int64)
    rows, cols = (linear_rational(i, o, Fraction(o, i), coordinates) for i, o in zip(hw, out_hw))
    ours = bilinear_codes(codes, rows, cols)
    exact = _ort_linear(codes.astype(np.float32), out_hw, coordinates).astype(np.float64)
    assert np.abs(ours - exact).max() <= 0.5 + 1e-4
    clear = np.abs(np.abs(exact - np.trunc(exact)) - 0.5) > 1e-3
    assert np.array_equal(ours[clear], (np.sign(exact) * np.floor(np.abs(exact) + 0.5))[clear])
    assert onnx  # the helper builds ONNX models


# ---------------------------------------------------------------------------------------------------- conv_transpose
@pytest.mark.parametrize(
    "attrs",
    [
        {"strides": [2, 2]},  # U-Net's 2 x 2 / 2
        {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},  # MONAI's 3 x 3 / 2
        {"strides": [3, 2], "pads": [0, 2, 1, 0], "output_padding": [2, 1]},  # uneven, asymmetric
        {"strides": [1, 1], "pads": [1, 1, 1, 1]},
        {"strides": [2, 2], "dilations": [2, 1], "pads": [2, 0, 1, 1]},
    ],
)
def test_the_integer_transposed_conv_is_pytorchs_on_integers(attrs):
    """The reference's scatter (`_conv_transpose_int`) against F.conv_transpose2d in float64, whose sums of these
    integers are exact: equal. PyTorch's padding is symmetric, so asymmetric pads are cut from its unpadded output."""
    import torch
    import torch.nn.functional as F

    from tcc.quant.intgraph.reference import _conv_transpose_int

    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (2, 5, 6, 7))
    w = rng.integers(-127, 128, (5, 4, 3, 3))
    got = _conv_transpose_int(x, w, attrs)
    sh, sw = attrs["strides"]
    pt, pl, pb, pr = attrs.get("pads", [0, 0, 0, 0])
    full = F.conv_transpose2d(
        torch.from_numpy(x).double(), torch.from_numpy(w).double(), stride=(sh, sw),
        dilation=tuple(attrs.get("dilations", [1, 1])), output_padding=tuple(attrs.get("output_padding", [0, 0])),
    ).numpy()  # fmt: skip
    assert got.dtype == np.int64 and np.array_equal(got, full[:, :, pt : full.shape[2] - pb, pl : full.shape[3] - pr])


def test_the_calibration_reads_a_transposed_conv_as_the_conv_it_equals():
    """layer_rows of a transposed conv (the zero-inserted input) times grouped_weight (the flipped weight): every
    output position's values, as ONNX Runtime's ConvTranspose computes them; ungrouped_weight inverts the layout."""
    from tcc.quant.intgraph.layers import Layer, grouped_weight, layer_output, layer_rows, ungrouped_weight

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 5, 6)).astype(np.float32)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    attrs = {"strides": [2, 2], "pads": [1, 0, 1, 2], "output_padding": [1, 1]}
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)
    graph = helper.make_graph(
        [node], "ct", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [onnx.numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    ref = run(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), x)
    layer = Layer("ct", "ConvTranspose", "x", "w", None, "y", 1, attrs)
    rows = layer_rows(layer, x, w.shape, 10**9, np.random.default_rng(0))  # every position, shuffled
    y = layer_output(rows.transpose(1, 0, 2), grouped_weight(layer, w), None)[0]
    want = ref.transpose(0, 2, 3, 1).reshape(-1, ref.shape[1])
    assert y.shape == want.shape
    np.testing.assert_allclose(y[np.lexsort(y.T[::-1])], want[np.lexsort(want.T[::-1])], atol=1e-5)
    assert np.array_equal(ungrouped_weight(layer, grouped_weight(layer, w), w.shape), w)


@pytest.mark.parametrize("target", ["ax620", "ax650"])
def test_the_npu_kits_take_transposed_convs_in_integers(work, target):
    """Pulsar v1 keeps no float ops: the zoo U-Net's transposed convs were refused for ax620 before they had an
    integer kind. Its kit builds from calibration data; on ax650 the QDQ
    model's ConvTranspose (weights per channel along axis 1) is within one code of the reference, op by op, in ONNX
    Runtime."""
    unet = REPO / "spec" / "unet.yaml"
    spec = [unet, "--set", "image_size=32", "--set", "base=8", "--set", "depth=2"]
    np.save(work / "unet32.npy", np.random.default_rng(0).random((16, 3, 32, 32)).astype(np.float32))
    onnx_model = lower_spec(unet, {"image_size": 32, "base": 8, "depth": 2}).onnx
    graph = plan(onnx_model, lowering=QDQ, rules=target.replace("ax650", "pulsar2"))
    deconvs = [(n.kind, n.precision) for n in graph.nodes if n.op_type == "ConvTranspose"]
    assert deconvs == [("conv_transpose", "int8")] * 2
    out = io.StringIO()
    argv = int8_build_argv(spec, target, work / f"unet-{target}", "--data", work / "unet32.npy")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0, out.getvalue()[-2000:]
    checks = json.loads((work / f"unet-{target}" / "manifest.json").read_text())["target_checks"]
    assert checks["prediction"]["output_cosine"] > 0.99
    if target == "ax650":
        assert checks["qdq"]["passed"] and checks["qdq"]["max_lsb"] <= 1.0
