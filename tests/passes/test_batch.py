"""tcc.passes.batch: a fixed batch with the shape arithmetic that reads it folded into constants."""

from __future__ import annotations

import numpy as np
import pytest

from tcc.passes.base import PassError
from tcc.passes.batch import fixed_batch
from tests.helpers.onnx_util import learned_token_model, run


def test_the_shape_arithmetic_folds_and_the_expand_stays():
    m = learned_token_model()
    s = fixed_batch(m, 1)
    assert [n.op_type for n in s.graph.node] == ["Expand", "Concat"]
    assert {t.name for t in s.graph.initializer} == {"token", "token.shape"}  # Slice's constants went with it
    assert [d.dim_value for d in s.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 4]
    assert [d.dim_value for d in s.graph.output[0].type.tensor_type.shape.dim] == [1, 4, 4]
    x = np.random.default_rng(0).standard_normal((1, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(run(s, x), run(m, x))
    assert fixed_batch(s, 1).SerializeToString() == s.SerializeToString()  # nothing left to fold


def test_a_shape_that_stays_dynamic_is_refused_naming_the_node():
    m = learned_token_model()
    m.graph.input[0].type.tensor_type.shape.dim[2].Clear()
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "W"
    with pytest.raises(PassError, match="node 'shape'.*'x' is not static"):
        fixed_batch(m, 1)
