"""`tcc predict` on a segmentation model or bundle (tcc.segmentation.predict): the mask at the image's own size (the
model's argmax resized, nearest), its overlay, the pixels per class by label; an existing mask refused without
--force; an array input gives masks at the model's resolution and no overlay."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from tcc.api import Model
from tcc.cli.main import main as cli
from tcc.segmentation.masks import resized
from tests.helpers import FIXTURES
from tests.helpers.marks import needs_fixtures

UNET = ["spec/unet.yaml", "--set", "image_size=32", "--set", "base=4", "--set", "depth=2"]
DENSE_SPEC = (  # a per-pixel classifier with labels: [2, 16, 16]
    "kind: model\nname: pixels\ninput: {shape: [3, 16, 16]}\nlabels: [background, tissue]\nlayers:\n"
    "  - {op: conv2d, out: 4, kernel: 3, padding: 1}\n  - {op: relu}\n  - {op: conv2d, out: 2, kernel: 1}\n"
)


@needs_fixtures
def test_masks_of_an_image_at_its_size_with_overlay_and_counts(tmp_path, capsys):
    image = FIXTURES / "Sipak.bmp"  # 131 x 101: not the model's 32 x 32 nor square
    args = ["predict", *UNET, "--image", str(image), "--masks", str(tmp_path), "--json"]
    assert cli(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mask"] == str(tmp_path / "Sipak.mask.png")
    assert result["overlay"] == str(tmp_path / "Sipak.overlay.png")
    assert result["shape"] == [101, 131]
    model = Model.load("spec/unet.yaml", image_size=32, base=4, depth=2)
    expected = resized(model.predict(str(image))[0].argmax(axis=0), (131, 101))
    with Image.open(result["mask"]) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), expected)
    assert result["pixels"] == {"0": int((expected == 0).sum()), "1": int((expected == 1).sum())}
    with Image.open(result["overlay"]) as im, Image.open(image) as original:
        assert im.size == original.size and im.mode == "RGB"
    assert cli(args) == 2  # the masks are there: refused, nothing rewritten
    assert "already exists" in capsys.readouterr().err
    assert cli([*args, "--force"]) == 0


def test_labels_name_the_classes_and_an_array_gives_masks_at_the_model_s_size(tmp_path, capsys):
    spec = tmp_path / "pixels.yaml"
    spec.write_text(DENSE_SPEC)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "batch.npy", x)
    out = tmp_path / "masks"
    assert cli(["predict", str(spec), "--input", str(tmp_path / "batch.npy"), "--masks", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"mask 16 x 16 -> {out / 'batch.0.mask.png'}; pixels: background ")
    assert sorted(p.name for p in out.iterdir()) == ["batch.0.mask.png", "batch.1.mask.png"]  # no image: no overlay
    logits = Model.load(str(spec)).predict(x)
    for i in range(2):
        with Image.open(out / f"batch.{i}.mask.png") as im:
            np.testing.assert_array_equal(np.asarray(im), logits[i].argmax(axis=0))


@needs_fixtures
def test_a_segmentation_bundle_writes_the_same_mask(tmp_path, capsys):
    """A bundle (ORT FP32) predicts the mask its spec does, with its own preprocessing (FP32 rounding may move a
    pixel whose two logits tie to float precision: none do here)."""
    image = FIXTURES / "Sipak.bmp"
    assert cli(["build", *UNET, "--target", "ort", "-o", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    bundle = ["predict", "--artifact", str(tmp_path / "b")]
    assert cli([*bundle, "--image", str(image), "--masks", str(tmp_path / "a")]) == 0
    assert cli(["predict", *UNET, "--image", str(image), "--masks", str(tmp_path / "s")]) == 0
    with Image.open(tmp_path / "a" / "Sipak.mask.png") as a, Image.open(tmp_path / "s" / "Sipak.mask.png") as s:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(s))
    from tcc.api import Bundle  # the Python API's masks: the same classes at the output's resolution

    masks = Bundle.open(tmp_path / "b").segment(str(image))
    model = Model.load("spec/unet.yaml", image_size=32, base=4, depth=2)
    assert masks.shape == (1, 32, 32)
    np.testing.assert_array_equal(masks, model.segment(str(image)))
    np.testing.assert_array_equal(masks, model.predict(str(image)).argmax(axis=1))


def test_logits_of_a_segmentation_model_on_request(tmp_path, capsys):
    spec = tmp_path / "pixels.yaml"
    spec.write_text(DENSE_SPEC)
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    args = ["predict", str(spec), "--input", str(tmp_path / "x.npy"), "--json", "--logits"]
    assert cli([*args, "--masks", str(tmp_path / "m")]) == 0
    printed = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(printed["logits"], Model.load(str(spec)).predict(x).ravel(), rtol=1e-6, atol=1e-6)
    assert not (tmp_path / "m").exists()  # no masks written


def test_a_classifier_has_no_masks(tmp_path):
    import pytest

    from tcc.errors import DataError
    from tests.helpers.quant_models import TINY_SPEC

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    x = np.zeros((1, 3, 16, 16), np.float32)
    with pytest.raises(DataError, match=r"an output of shape \[1, 3\] is not dense"):
        Model.load(str(spec)).segment(x)
