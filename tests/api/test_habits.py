"""What Python users pass and look for: images as paths, PIL images or uint8 pixels; `num_classes` and `classes`;
`predict` on a model and on a bundle; errors in Python's words; the data helpers at the top level."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import tcc
from tests.helpers import REPO

TINY = REPO / "tests" / "specs" / "train_tiny.yaml"


@pytest.fixture(scope="module")
def model():
    return tcc.Model.load(TINY, num_classes=3)


@pytest.fixture(scope="module")
def pixels():
    return (np.random.default_rng(0).random((48, 40, 3)) * 255).astype(np.uint8)  # another size: resized


def test_an_image_as_a_path_a_pil_image_or_uint8_pixels_gives_the_same_logits(model, pixels, tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(pixels).save(path)
    from_path = model.predict(path)
    assert from_path.shape == (1, 3)
    np.testing.assert_array_equal(model.predict(Image.fromarray(pixels)), from_path)
    np.testing.assert_array_equal(model.predict(pixels), from_path)
    batch = model.predict(np.stack([pixels, pixels[::-1]]))
    np.testing.assert_allclose(batch[:1], from_path, rtol=1e-5, atol=1e-6)  # float32: batch 2 sums in another order
    assert not np.array_equal(batch[1], batch[0])  # the second image is another input


def test_a_float_array_is_the_models_input_and_a_wrong_one_is_refused_in_words(model, pixels):
    x = np.random.default_rng(1).standard_normal((3, 32, 32)).astype(np.float32)
    assert model.predict(x).shape == (1, 3)
    with pytest.raises(tcc.DataError, match=r"takes float \[N, 3, 32, 32\] \(or give an image"):
        model.predict(x.transpose(1, 2, 0))
    with pytest.raises(tcc.DataError, match=r"uint8 pixels of shape \[48, 40, 2\]"):
        model.predict(pixels[:, :, :2])


def test_num_classes_and_classes_on_the_model_and_its_bundle(model, tmp_path):
    assert model.num_classes == 3 and model.classes == model.labels
    zoo = tcc.Model.load("ddsnet")
    assert zoo.num_classes == 6 and zoo.classes == ["ADI", "MUC", "MUS", "STR", "STU", "TUM"]
    bundle = model.build("onnx", out=tmp_path / "b")
    assert bundle.num_classes == 3 and bundle.classes == bundle.labels
    x = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(tcc.Bundle.open(tmp_path / "b").predict(x), bundle.run(x))


def test_errors_name_pythons_keywords(model, tmp_path):
    with pytest.raises(tcc.BuildError, match=r"precision='int8' needs a calibration table \(calib="):
        model.build("ort", precision="int8", out=tmp_path / "b")
    with pytest.raises(tcc.BuildError, match=r"give either calib= \(a table\) or data="):
        model.build("ort", precision="int8", calib="t.json", data="d", out=tmp_path / "b")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(tcc.OutputExists, match=r"pass force=True to replace it$"):
        model.build("onnx", out=tmp_path / "full")


def test_make_crops_is_public_and_says_when_the_fixtures_are_missing(tmp_path, monkeypatch):
    source = tmp_path / "tissue.png"
    Image.fromarray((np.random.default_rng(3).random((120, 100, 3)) * 255).astype(np.uint8)).save(source)
    out = tcc.make_crops(tmp_path / "crops", 5, seed=0, images=[source])
    assert sorted(p.name for p in out.glob("*.png")) == [f"crop_{k:04d}.png" for k in range(5)]
    monkeypatch.setenv("TCC_FIXTURES", str(tmp_path / "nowhere"))
    with pytest.warns(UserWarning, match="no DDSNet fixture images in .*nowhere .*immunohistochemistry"):
        tcc.make_crops(tmp_path / "ihc", 2, seed=0)
