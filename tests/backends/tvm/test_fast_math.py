"""backends/tvm/fast_math.py: sigmoid through exp, and TVM's polynomial exp / softmax on x86 host FP32 modules:
the Relax graph holds no sigmoid and no exact softmax any more, and the module's numbers stay within the FP32 rule of
ONNX Runtime's."""
from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from tests.helpers.onnx_util import make_model, run
from tests.helpers.tvm_util import needs_tvm

pytestmark = needs_tvm


def _silu_softmax():
    """conv -> SiLU (x * sigmoid(x)) -> softmax over the last axis, at sizes with wide value ranges."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array((rng.standard_normal((16, 3, 3, 3)) * 2).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["s"]),
             helper.make_node("Mul", ["c", "s"], ["silu"]),
             helper.make_node("Softmax", ["silu"], ["y"], axis=-1)]
    return make_model(nodes, {"x": [1, 3, 16, 32]}, {"y": [1, 16, 16, 32]}, inits, name="silu_softmax")


def test_sigmoid_and_softmax_become_polynomials_and_keep_their_numbers(tmp_path):
    import tvm

    from tcc.backends.tvm import compile as tvm_compile, run as tvm_run
    from tcc.backends.tvm.fast_math import fast_math_passes

    model = _silu_softmax()
    mod = tvm_compile.import_onnx(model, {"x": [1, 3, 16, 32]})
    assert "R.sigmoid" in mod.script() and "R.nn.softmax" in mod.script()
    with tvm.transform.PassContext(opt_level=3):  # as tvm.compile runs the pipeline
        rewritten = tvm.transform.Sequential(fast_math_passes())(mod)
    text = rewritten.script()  # the fast forms as TIR functions (call_tir)
    assert "R.sigmoid" not in text and "R.nn.softmax" not in text
    assert "def fast_softmax(" in text and "def fast_exp(" in text
    x = np.random.default_rng(4).standard_normal((1, 3, 16, 32)).astype(np.float32) * 3
    want = run(model, x)
    for fast in (True, False):
        so = tvm_compile.compile_module(tvm_compile.import_onnx(model, {"x": [1, 3, 16, 32]}), "host",
                                        tmp_path / f"m{int(fast)}.so", fast_math=fast)
        got = tvm_run.run_module(so, "host", x)[0][0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
