"""Bundles damaged after the build, as tools/fuzz.py (kind `bundle`) made them: each manifest field a reader uses is
checked once when the bundle is opened (tcc.bundle.check_manifest), and a model that computes another output than
its manifest declares is refused. Before, `files` a number was an AttributeError, `preprocess` a number or with a
key of its own a TypeError, an unknown interpolation a KeyError, a std per channel short of the input's channels a
ValueError in numpy and one label for two classes an IndexError; a file named outside the bundle was hashed where
it pointed, an artifact the manifest does not list ran unhashed, and a null input dimension went unnoticed."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from PIL import Image

from tcc.bundle import read_manifest
from tcc.errors import BuildError
from tests.helpers import LOCAL_SPECS
from tests.helpers.damaged import edit_json, rehash, tcc

SPEC = LOCAL_SPECS / "train_tiny.yaml"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "ort"
    assert tcc("build", SPEC, "--target", "ort", "-o", out)[0] == 0
    return out


@pytest.fixture
def bundle(built, tmp_path):
    """A private copy of the built bundle, and inputs for it: an array and an image."""
    copy = tmp_path / "ort"
    shutil.copytree(built, copy)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32))
    Image.fromarray(np.full((20, 24, 3), 128, np.uint8)).save(tmp_path / "image.png")
    return copy


def _set(*path, value):
    def edit(doc):
        for key in path[:-1]:
            doc = doc[key]
        doc[path[-1]] = value

    return edit


EDITS = {  # what the fuzzer did -> the message; the traceback it was
    "files a number": (_set("files", value=-1), "invalid manifest at files: -1 is not of type 'object'"),  # .items()
    "preprocess a number": (_set("preprocess", value=7), "invalid manifest at preprocess: 7 is not of type"),
    "an input dimension null": (_set("inputs", 0, "shape", 1, value=None), "invalid manifest at inputs.0.shape.1"),
    "an unknown preprocessing key": (
        _set("preprocess", "format", value=1),  # Preprocess(**...): TypeError
        "invalid manifest at preprocess: Additional properties are not allowed",
    ),
    "an unknown interpolation": (
        _set("preprocess", "interpolation", value="tcc-bundle/0"),
        "invalid manifest at preprocess.interpolation",
    ),  # KeyError in the resampling table
    "one label for two classes": (_set("labels", value=["a"]), "1 label(s) for an output of shape [2]"),  # labels[1]
    "a file outside the bundle": (
        lambda m: m["files"].update({"../x": {"sha256": "0" * 64, "bytes": 1}}),
        "file '../x' is not inside the bundle",
    ),
    "an artifact it does not list": (
        _set("artifact", value="other.onnx"),
        "its artifact 'other.onnx' is not among its files",
    ),
    "std of two channels": (
        _set("preprocess", "std", value=[1.0, 1.0]),
        "preprocess.std has 2 values for the input's 3 channels",
    ),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_a_damaged_manifest_is_refused_naming_the_field(bundle, name):
    edit, message = EDITS[name]
    edit_json(bundle / "manifest.json", edit)
    with pytest.raises(BuildError, match="manifest") as refused:
        read_manifest(bundle)
    assert message in str(refused.value)
    code, err = tcc("predict", "--artifact", bundle, "--image", bundle.parent / "image.png")
    assert code == 2 and "Traceback" not in err and message in err.strip().splitlines()[-1]


def test_a_model_whose_output_is_not_the_declared_one_is_refused(bundle):
    """The ONNX graph's output renamed to its input (the hash made to agree): ORT then returns the input, whose
    768 values were printed as class 500 of 2 labels (an IndexError)."""
    model = onnx.load(bundle / "model.onnx")
    model.graph.output[0].name = model.graph.input[0].name
    onnx.save(model, bundle / "model.onnx")
    rehash(bundle, "model.onnx")
    code, err = tcc("predict", "--artifact", bundle, "--input", bundle.parent / "x.npy", "--json")
    assert code == 2 and "Traceback" not in err
    assert "its model gives an output of shape [1, 3, 32, 32], its manifest declares [N, 2]" in err
