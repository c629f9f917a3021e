"""backends/tvm/passes/fast_math.py and softmax.py: sigmoid through exp, softmax over the last axis row by row, and
TVM's
polynomial exp / softmax on x86 host FP32 modules: the Relax graph holds no sigmoid and no exact softmax any more,
and the module's numbers stay within the FP32 rule of ONNX Runtime's."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from tests.helpers.onnx_util import make_model, run
from tests.helpers.tvm_util import needs_tvm, x86_options

pytestmark = needs_tvm


def _silu_softmax():
    """conv -> SiLU (x * sigmoid(x)) -> softmax over the last axis, at sizes with wide value ranges."""
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array((rng.standard_normal((16, 3, 3, 3)) * 2).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c"], ["s"]),
        helper.make_node("Mul", ["c", "s"], ["silu"]),
        helper.make_node("Softmax", ["silu"], ["y"], axis=-1),
    ]
    return make_model(nodes, {"x": [1, 3, 16, 32]}, {"y": [1, 16, 16, 32]}, inits, name="silu_softmax")


def test_sigmoid_and_softmax_become_polynomials_and_keep_their_numbers(tmp_path):
    import tvm

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import runner as tvm_run
    from tcc.backends.tvm.passes.fast_math import fast_math_passes

    model = _silu_softmax()
    mod = tvm_compile.import_onnx(model, {"x": [1, 3, 16, 32]})
    assert "R.sigmoid" in mod.script() and "R.nn.softmax" in mod.script()
    with tvm.transform.PassContext(opt_level=3):  # as tvm.compile runs the pipeline
        rewritten = tvm.transform.Sequential(fast_math_passes())(mod)
    text = rewritten.script()  # the fast forms as TIR functions (call_tir)
    assert "R.sigmoid" not in text and "R.nn.softmax" not in text
    assert "def tcc_row_softmax(" in text and "def fast_exp(" in text
    x = np.random.default_rng(4).standard_normal((1, 3, 16, 32)).astype(np.float32) * 3
    want = run(model, x)
    for fast in (True, False):
        so = tvm_compile.compile_module(
            tvm_compile.import_onnx(model, {"x": [1, 3, 16, 32]}),
            "host",
            tmp_path / f"m{int(fast)}.so",
            x86_options(fast_math=fast),
        )
        got = tvm_run.run_module(so, "host", x)[0][0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_softmax_over_another_axis_keeps_topis_form():
    import tvm

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm.passes.fast_math import fast_math_passes

    model = make_model(
        [helper.make_node("Softmax", ["x"], ["y"], axis=1)],
        {"x": [1, 8, 4, 4]},
        {"y": [1, 8, 4, 4]},
        [],
        name="softmax_axis1",
    )
    mod = tvm_compile.import_onnx(model, {"x": [1, 8, 4, 4]})
    with tvm.transform.PassContext(opt_level=3):
        text = tvm.transform.Sequential(fast_math_passes())(mod).script()
    assert "def fast_softmax(" in text and "tcc_row_softmax" not in text


@pytest.mark.parametrize("shape", [(2, 3, 64), (4, 16), (3, 7), (4, 256, 256)])
def test_row_softmax_runs_rows_in_parallel_with_vector_partials(shape):
    """Rows of 64 and 256 (zmm partials), 16 (two ymm: a row needs two vectors), 7 (scalar): numpy's softmax within
    float32 rounding of a polynomial exp (TVM's fast_exp: a few ulps)."""
    import tvm

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm.passes.softmax import row_softmax_primfunc
    from tcc.backends.tvm.schedule.float_rules import RowReduction

    target = tvm.target.Target(tvm_compile.resolve_tvm_target("host"))
    func = RowReduction().apply(row_softmax_primfunc(shape), target, False).mod["main"]
    text = func.script()
    assert "T.parallel(" in text and ("T.vectorized(" in text) == (shape[-1] % 4 == 0)
    if shape[-1] >= 32:
        assert "_rf" in text  # the maximum and the sum as vectors of partial results
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32) * 4
    out = tvm.runtime.tensor(np.zeros_like(x))
    lib["main"](tvm.runtime.tensor(x), out)
    e = np.exp(x.astype(np.float64) - x.max(-1, keepdims=True))
    np.testing.assert_allclose(out.numpy(), e / e.sum(-1, keepdims=True), rtol=2e-6, atol=1e-7)
