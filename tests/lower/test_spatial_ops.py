"""The spatial ops of dense prediction (tcc/ops/spatial.py, instance_norm in tcc/ops/norm.py), each alone at odd
sizes: the PyTorch lowering and the ONNX forms at opsets 13, 17, 18 and 21 (ONNX Runtime, raw and after the pass
pipeline) against PyTorch's own functions (F.interpolate, F.conv_transpose2d, F.pad, F.instance_norm) in float64,
within the FP32 contract; the sampling tables against ONNX Runtime's Resize on every coordinate and rounding mode;
refusals that name the argument."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch.nn.functional as F
from onnx import TensorProto, helper

import tcc
from tcc.errors import SpecError
from tcc.ops.spatial import COORDINATES, NEAREST_MODES, cubic_taps, linear_taps, nearest_indices
from tests.helpers.lowering import assert_case_equals_pytorch, one_op_spec

OPSETS = (13, 17, 18, 21)  # 18: Resize's axes (sizes of H and W alone)
SHAPE = (5, 7, 9)


def _interp(**kw):
    return lambda x, p: F.interpolate(x, **kw)


CASES = {
    "bilinear_scale2": ("{op: resize, mode: bilinear, scale: 2}", SHAPE, _interp(scale_factor=2, mode="bilinear")),
    "bilinear_to_size": (
        "{op: resize, mode: bilinear, size: [12, 5]}",
        SHAPE,
        _interp(size=(12, 5), mode="bilinear"),
    ),
    "bilinear_align_corners": (
        "{op: resize, mode: bilinear, size: [13, 17], coordinates: align_corners}",
        SHAPE,
        _interp(size=(13, 17), mode="bilinear", align_corners=True),
    ),
    "bilinear_fractional_scale": (
        "{op: resize, mode: bilinear, scale: [1.5, 0.5]}",
        SHAPE,
        _interp(scale_factor=(1.5, 0.5), mode="bilinear", recompute_scale_factor=False),
    ),
    "bicubic_scale2": ("{op: resize, mode: bicubic, scale: 2}", SHAPE, _interp(scale_factor=2, mode="bicubic")),
    "bicubic_align_corners": (
        "{op: resize, mode: bicubic, size: [13, 4], coordinates: align_corners}",
        SHAPE,
        _interp(size=(13, 4), mode="bicubic", align_corners=True),
    ),
    "nearest_pytorch": (
        "{op: resize, scale: 2, coordinates: asymmetric}",
        SHAPE,
        _interp(scale_factor=2, mode="nearest"),
    ),
    "nearest_exact": (
        "{op: resize, size: [10, 4], nearest_mode: round_prefer_ceil}",
        SHAPE,
        _interp(size=(10, 4), mode="nearest-exact"),
    ),
    "resize_like": (
        """{id: small, op: avgpool, kernel: 2}
          - {op: resize, mode: bilinear, in: [small, input]}""",
        (5, 8, 10),
        lambda x, p: F.interpolate(F.avg_pool2d(x, 2), size=(8, 10), mode="bilinear"),
    ),
    "conv_transpose": (
        "{id: up, op: conv_transpose, out: 4, kernel: 2, stride: 2}",
        SHAPE,
        lambda x, p: F.conv_transpose2d(x, p["up.weight"], p["up.bias"], stride=2),
    ),
    "conv_transpose_padded": (
        "{id: up, op: conv_transpose, out: 6, kernel: 3, stride: 2, padding: 1, output_padding: 1, bias: false}",
        SHAPE,
        lambda x, p: F.conv_transpose2d(x, p["up.weight"], stride=2, padding=1, output_padding=1),
    ),
    "conv_transpose_depthwise_asymmetric": (
        "{id: up, op: conv_transpose, out: 5, kernel: 3, stride: 2, groups: 5, padding: [0, 1, 1, 0]}",
        SHAPE,
        lambda x, p: F.conv_transpose2d(x, p["up.weight"], p["up.bias"], stride=2, groups=5)[:, :, 0:-1, 1:],
    ),
    "pad_constant": ("{op: pad, pads: [1, 2, 0, 3]}", SHAPE, lambda x, p: F.pad(x, (2, 3, 1, 0))),
    "pad_value": ("{op: pad, pads: 2, value: -1.5}", SHAPE, lambda x, p: F.pad(x, (2, 2, 2, 2), value=-1.5)),
    "pad_reflect": ("{op: pad, pads: [3, 1], mode: reflect}", SHAPE, lambda x, p: F.pad(x, (1, 1, 3, 3), "reflect")),
    "pad_edge": ("{op: pad, pads: [0, 2, 4, 1], mode: edge}", SHAPE, lambda x, p: F.pad(x, (2, 1, 0, 4), "replicate")),
    "instance_norm": ("{op: instance_norm}", SHAPE, lambda x, p: F.instance_norm(x)),
    "instance_norm_affine": (
        "{id: norm, op: instance_norm, affine: true, eps: 1.0e-3}",
        SHAPE,
        lambda x, p: F.instance_norm(x, weight=p["norm.weight"], bias=p["norm.bias"], eps=1e-3),
    ),
}


def _model(write, name):
    return one_op_spec(write, name, CASES[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_op_alone_equals_pytorch(name, write):
    assert_case_equals_pytorch(write, name, CASES[name], OPSETS)


def _ort_resize(x: np.ndarray, out_hw, scale, mode: str, coordinates: str, rounding: str, **cubic) -> np.ndarray:
    inputs = ["x", "roi", "scales"] + ([] if scale else ["sizes"])
    attrs = {"mode": mode, "coordinate_transformation_mode": coordinates, **cubic}
    if mode == "nearest":
        attrs["nearest_mode"] = rounding
    inits = [
        helper.make_tensor("roi", TensorProto.FLOAT, [0], []),
        helper.make_tensor("scales", TensorProto.FLOAT, [4] if scale else [0], [1, 1, scale, scale] if scale else []),
    ]
    if not scale:
        inits.append(helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 1, *out_hw]))
    graph = helper.make_graph(
        [helper.make_node("Resize", inputs, ["y"], **attrs)],
        "resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize(("n_in", "n_out", "scale"), [(7, 16, None), (9, 4, None), (5, 12, 2.5), (6, 1, None)])
def test_sampling_tables_equal_onnx_runtime(coordinates, n_in, n_out, scale):
    """Every coordinate mode and rounding, up and down, by size and by a fractional scale: the nearest indices
    exactly, the bilinear taps within float32 rounding, against ONNX Runtime's Resize on a ramp."""
    ramp = np.arange(n_in, dtype=np.float32).reshape(1, 1, n_in, 1) * np.ones((1, 1, 1, n_in), np.float32)
    s = scale if scale is not None else n_out / n_in
    for rounding in NEAREST_MODES:
        got = _ort_resize(ramp, (n_out, n_out), scale, "nearest", coordinates, rounding)[0, 0, :, 0]
        assert got.tolist() == nearest_indices(n_in, n_out, s, coordinates, rounding).tolist(), rounding
    i0, i1, w = linear_taps(n_in, n_out, s, coordinates)
    got = _ort_resize(ramp, (n_out, n_out), scale, "linear", coordinates, "floor")[0, 0, :, 0]
    np.testing.assert_allclose(got, i0 * (1 - w) + i1 * w, atol=1e-5)


@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize(("n_in", "n_out", "scale"), [(7, 16, None), (9, 4, None), (5, 12, 2.5), (6, 1, None)])
@pytest.mark.parametrize(("a", "exclude"), [(-0.75, 0), (-0.5, 1)])
def test_cubic_tables_equal_onnx_runtime(coordinates, n_in, n_out, scale, a, exclude):
    """The bicubic taps and weights (Keys' kernel, the edge repeated, or with exclude_outside renormalized) against
    ONNX Runtime's cubic Resize, on a random column (a ramp is reproduced by any interpolating kernel)."""
    column = np.random.default_rng(n_in).standard_normal((1, 1, n_in, 1)).astype(np.float32)
    x = column * np.ones((1, 1, 1, n_in), np.float32)
    s = scale if scale is not None else n_out / n_in
    taps, weights = cubic_taps(n_in, n_out, s, coordinates, a, bool(exclude))
    got = _ort_resize(x, (n_out, n_out), scale, "cubic", coordinates, "floor", cubic_coeff_a=a, exclude_outside=exclude)
    np.testing.assert_allclose(got[0, 0, :, 0], (column[0, 0, :, 0][taps] * weights).sum(axis=1), atol=1e-5)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ("{op: resize}", "exactly one of `scale`, `size`"),
        ("{op: resize, scale: 2, size: [4, 4]}", "got scale and size"),
        ("{op: resize, mode: bilinear, scale: 2, nearest_mode: ceil}", "nearest_mode applies to mode nearest"),
        ("{op: resize, mode: bilinear, scale: 2, cubic_coeff_a: -0.5}", "cubic_coeff_a applies to mode bicubic"),
        ("{op: pad, pads: same}", "takes its pads as numbers"),
        ("{op: pad, pads: 9, mode: reflect}", "must be smaller than the input's 7x9"),
        ("{op: pad, pads: 1, mode: edge, value: 2}", "value applies to mode constant only"),
        ("{op: conv_transpose, out: 4, kernel: 3, stride: 2, output_padding: 2}", "smaller than the stride"),
        ("{op: conv_transpose, out: 4, kernel: 3, groups: 2}", "groups=2 must divide"),
    ],
)
def test_mistakes_name_the_argument(node, message, write):
    spec = write(
        "bad.yaml",
        f"""
        kind: model
        name: bad
        input: {{shape: {list(SHAPE)}}}
        layers:
          - {node}
    """,
    )
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("`", "`")) as info:
        tcc.load_spec(spec)
    assert "bad.yaml:" in str(info.value)


def test_parameter_layouts_and_macs(write):
    """conv_transpose keeps nn.ConvTranspose2d's [in, out / groups, kh, kw] and counts every input element times
    its kernel; the resize tables are no weights."""
    model, module, _ = _model(write, "conv_transpose")
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == {"up.weight": (5, 4, 2, 2), "up.bias": (4,)}
    assert model.graph.nodes["up"].macs == 5 * 7 * 9 * 4 * 2 * 2
    _, module, _ = _model(write, "bilinear_scale2")
    assert dict(module.state_dict()) == {}
    assert onnx  # the ONNX checker runs in assert_one_op_equals_reference


def test_a_resize_to_a_flat_inputs_size_is_a_clear_error(write):
    spec = write(
        "like_flat.yaml",
        """
        kind: model
        name: like_flat
        input: {shape: [5, 7, 9]}
        layers:
          - {id: flat, op: flatten}
          - {op: resize, in: [input, flat]}
    """,
    )
    with pytest.raises(SpecError, match=r"resize to the size of a \[C, H, W\] input, got \[315\]"):
        tcc.load_spec(spec)
