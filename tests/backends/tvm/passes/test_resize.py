"""backends/tvm/passes/resize.py: every Resize as gathers before TVM's ONNX frontend (TOPI's resize2d computed wrong
values on the ARMv7 target). The rewritten ONNX equals ONNX Runtime's Resize for each mode and coordinate mode, up
and down, by size and by a stated scale; and a bilinear model (off by up to 6.5 there) and a bicubic one (NaN)
built FP32 for arm-a7 pass their self-checks under qemu."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from onnx import TensorProto, helper

from tcc.cli.main import main
from tcc.ops.spatial import COORDINATES
from tests.helpers.onnx_util import run

MODES = ("nearest", "linear", "cubic")
CASES = [(mode, coords, size) for mode in MODES for coords in COORDINATES for size in ((9, 14), (5, 3))]


def _resize_model(mode: str, coordinates: str, out_hw, scale: float | None = None):
    inputs = ["x", "", "scales"] if scale else ["x", "", "", "sizes"]
    inits = (
        [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, scale, scale])]
        if scale
        else [helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 3, *out_hw])]
    )
    attrs = {"mode": mode, "coordinate_transformation_mode": coordinates}
    if mode == "nearest":
        attrs["nearest_mode"] = "round_prefer_ceil"
    graph = helper.make_graph(
        [helper.make_node("Resize", inputs, ["y"], name="up", **attrs)],
        "r",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize(("mode", "coordinates", "out_hw"), CASES)
def test_gathers_equal_onnx_runtimes_resize(mode, coordinates, out_hw):
    from tcc.backends.tvm.passes.resize import resize_as_gathers

    model = _resize_model(mode, coordinates, out_hw)
    rewritten = resize_as_gathers(model)
    assert "Resize" not in {n.op_type for n in rewritten.graph.node}
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 7)).astype(np.float32)
    # cubic: four taps whose weights (some negative, some above 1) are computed in float64 here, in float32 by ORT
    atol = 1e-5 if mode == "cubic" else 2e-6
    np.testing.assert_allclose(run(rewritten, x), run(model, x), rtol=0, atol=atol)


def test_a_stated_scale_samples_as_stated():
    from tcc.backends.tvm.passes.resize import resize_as_gathers

    model = _resize_model("linear", "half_pixel", None, scale=1.5)
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 7)).astype(np.float32)
    np.testing.assert_allclose(run(resize_as_gathers(model), x), run(model, x), rtol=0, atol=2e-6)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_an_upsampling_model_builds_fp32_for_arm_a7(mode, tmp_path):
    pytest.importorskip("tvm")
    spec = tmp_path / "up.yaml"
    spec.write_text(
        "kind: model\nname: up\ninput: {shape: [3, 16, 16]}\nlayers:\n"
        f"  - {{op: conv2d, out: 4, kernel: 3, padding: 1}}\n  - {{op: resize, mode: {mode}, scale: 2}}\n"
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["build", str(spec), "--target", "arm-a7", "-o", str(tmp_path / "b")])
    assert rc == 0 and "self-check vs PyTorch" in out.getvalue() and "-> passed" in out.getvalue()
