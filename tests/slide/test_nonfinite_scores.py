"""`tcc slide` with a model that scores patches NaN (tools/fuzz.py, kind `bundle`: bytes written into a bundle's
weights, its manifest made to agree): one line naming the image and the patch, exit 2. It was a ValueError where
patches.json was written (NaN is not JSON)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper
from PIL import Image

from tests.helpers import LOCAL_SPECS
from tests.helpers.damaged import rehash, tcc


def test_a_bundle_whose_weights_hold_nan(tmp_path):
    bundle = tmp_path / "ort"
    assert tcc("build", LOCAL_SPECS / "train_tiny.yaml", "--target", "ort", "-o", bundle)[0] == 0
    model = onnx.load(bundle / "model.onnx")
    weight = next(t for t in model.graph.initializer if len(t.dims) == 4)
    nan = np.full(numpy_helper.to_array(weight).shape, np.nan, np.float32)
    weight.CopyFrom(numpy_helper.from_array(nan, weight.name))
    onnx.save(model, bundle / "model.onnx")
    rehash(bundle, "model.onnx")
    pixels = np.full((48, 64, 3), 245, np.uint8)
    pixels[8:40, 8:56] = np.random.default_rng(0).integers(120, 200, (32, 48, 3))  # stained tissue on white glass
    Image.fromarray(pixels).save(tmp_path / "slide.png")
    code, err = tcc(
        "slide",
        "--artifact",
        bundle,
        "--image",
        tmp_path / "slide.png",
        "-o",
        tmp_path / "out",
        "--patch-size",
        "16",
        "--no-progress",
    )
    assert code == 2 and "Traceback" not in err
    assert f"{tmp_path / 'slide.png'}: the model scores the patch at (" in err and "with NaN or infinity" in err
