"""`tcc diff` against a side whose tensors hold NaN or inf (tools/fuzz.py, kind `bundle`: a byte written into a
bundle's weights, its manifest made to agree): the rows print `nan` / `inf` (formatting them was a ValueError), and
a NaN tensor diverges (NaN compares false with every bound, so it passed)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from tcc.backends.base import Exposed
from tcc.tensor_diff import Side, compare_sides, format_diff
from tests.helpers import LOCAL_SPECS
from tests.helpers.damaged import rehash, tcc

SPEC = LOCAL_SPECS / "train_tiny.yaml"


def test_a_bundle_whose_weights_hold_nan(tmp_path):
    bundle = tmp_path / "ort"
    assert tcc("build", SPEC, "--target", "ort", "-o", bundle)[0] == 0
    model = onnx.load(bundle / "model.onnx")
    weight = next(t for t in model.graph.initializer if len(t.dims) == 4)
    weight.CopyFrom(
        numpy_helper.from_array(np.full(numpy_helper.to_array(weight).shape, np.nan, np.float32), weight.name)
    )
    onnx.save(model, bundle / "model.onnx")
    rehash(bundle, "model.onnx")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32))
    code, err = tcc("diff", bundle, "pytorch", "--spec", SPEC, "--input", tmp_path / "x.npy")
    assert code == 0 and "Traceback" not in err and "RuntimeWarning" not in err


def test_rows_with_nan_print_and_diverge():
    nan_side = Side("A", {"t": Exposed(np.full((1, 4), np.nan, np.float32))})
    ok_side = Side("B", {"t": Exposed(np.ones((1, 4), np.float32))})
    result = compare_sides(nan_side, ok_side)
    assert result["first_divergence"]["tensor"] == "t"
    assert "! t" in format_diff(result) and "nan" in format_diff(result)
