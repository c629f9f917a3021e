"""`tcc explain`: Grad-CAM against a hand computation and on the DDSNet GC checkpoint, the layer choice read off the
graph, t-SNE of a small generated texture folder, determinism, and the user mistakes (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tcc.cli.main import main
from tcc.explain.gradcam import explain_image, grad_cam, normalise
from tcc.explain.layers import LayerIndex
from tcc.frontend import reference_module
from tcc.lower.to_torch import init_weights, to_torch
from tcc.spec.loader import load_spec
from tests.helpers import FIXTURES, REPO

GC_WEIGHTS, GC_IMAGE = FIXTURES / "GC_DDS_0.0064.pth", FIXTURES / "GC.png"
needs_shared = pytest.mark.skipif(not GC_WEIGHTS.is_file(), reason="needs ../shared/fixtures/ddsnet (CI has it)")
DDSNET = REPO / "spec" / "ddsnet.yaml"
SMALL_DDSNET = ["--set", "image_size=64"]  # random weights, fast: for the CLI's plumbing and its errors

TINY = """\
kind: model
name: tiny
params:
  softmax: false
input:
  shape: [3, 12, 12]
  preprocess: {color: RGB}
labels: [a, b, c]
layers:
  - {id: stem, op: conv2d, out: 4, kernel: 3, stride: 2, padding: 1}
  - id: mix
    branches:
      - {id: a, op: conv2d, out: 5, kernel: 3, padding: 1}
      - {id: b, op: conv2d, out: 3, kernel: 1}
  - {id: relu, op: relu}
  - {id: same, op: identity}
  - {id: gap, op: global_avgpool}
  - {id: flatten, op: flatten}
  - {id: fc, op: linear, out: 3}
  - {id: prob, op: softmax, when: "${softmax}"}
"""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """CI runs one test file per core: torch's own threads on top would only wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny(path, softmax=False):
    model = load_spec(path, {"softmax": softmax})
    gm = init_weights(to_torch(model.graph, inference_only=True), seed=3).eval()
    return model, gm


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def gc_model():
    if not GC_WEIGHTS.is_file():
        pytest.skip("needs ../shared/fixtures/ddsnet (CI has it)")
    model = load_spec(DDSNET, {})
    gm, _ = reference_module(model, GC_WEIGHTS, by_order=True)
    return model, gm


@pytest.fixture(scope="module")
def gc_default(gc_model):
    return explain_image(*gc_model, GC_IMAGE)


@pytest.fixture(scope="module")
def textures(tmp_path_factory):
    """2 classes x 6 crops (64x64) of two textures scikit-image ships, ImageFolder-style."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("textures")
    for name in ("brick", "grass"):
        (root / name).mkdir()
        image = getattr(data, name)()
        for i in range(6):
            Image.fromarray(image[64 * i : 64 * i + 64, 64 * i : 64 * i + 64]).save(root / name / f"{i}.png")
    return root


def _run(capsys, *argv):
    """`tcc explain ARGV` in this process: (exit code, stdout, stderr)."""
    rc = main(["explain", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------------------------------------- Grad-CAM
@needs_shared
def test_gradcam_on_the_gc_checkpoint_is_input_sized_and_normalised(gc_default):
    g = gc_default.gradcam
    assert gc_default.layer.name == "dense4.layer3_concat"
    assert g.cam.shape == (224, 224) and g.cam.dtype == np.float32
    assert np.isfinite(g.cam).all() and g.cam.min() == 0.0 and g.cam.max() == 1.0 and not g.flat
    assert (g.target, g.predicted) == (5, 5) and g.probabilities[5] > 0.99  # TUM, as `tcc predict` says
    assert g.cam[g.peak] == 1.0


@needs_shared
def test_a_conv_layer_and_another_class_give_other_maps(gc_model, gc_default):
    conv = explain_image(*gc_model, GC_IMAGE, layer="trans3.conv")
    assert conv.layer.op == "conv2d" and conv.gradcam.coarse.shape == (14, 14)
    assert conv.gradcam.cam.shape == (224, 224) and conv.gradcam.cam.max() == 1.0
    stroma = explain_image(*gc_model, GC_IMAGE, target="STU")
    assert stroma.gradcam.target == 4 and stroma.gradcam.predicted == 5
    assert np.abs(stroma.gradcam.cam - gc_default.gradcam.cam).max() > 0.5


@needs_shared
def test_a_class_without_evidence_gives_an_all_zero_map(gc_model, capsys, tmp_path):
    """TUM at 0.9998: at head.relu nothing speaks for ADI, the ReLU'd CAM is zero everywhere: zeros, not NaN."""
    flat = explain_image(*gc_model, GC_IMAGE, layer="head.relu", target="ADI").gradcam
    assert flat.flat and flat.coarse.max() == 0 and not flat.cam.any() and flat.cam.shape == (224, 224)
    constant, is_flat = normalise(np.full((3, 3), 2.5, np.float32))
    assert is_flat and not constant.any()


@pytest.mark.parametrize("layer", ["mix.concat", "mix.a", "relu"])
def test_gradcam_equals_the_hand_computation(tiny_spec, layer):
    """fc(gap(relu(A))) makes dy_k/dA_c = W[k, c] * [A_c > 0] / (h w) exactly: the channel weights and the CAM
    follow by hand (for `mix.a`, the gradient reaches it through the concat)."""
    model, gm = _tiny(tiny_spec)
    x = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    index = LayerIndex(model.graph, gm.meta["value_names"])
    with torch.no_grad():
        a = gm.mix.a(gm.stem(x))
        concat = torch.cat([a, gm.mix.b(gm.stem(x))], 1)
        logits = gm.fc(torch.relu(concat).mean((2, 3)))
        acts, channels = {
            "mix.concat": (concat, slice(0, 8)),
            "mix.a": (a, slice(0, 5)),
            "relu": (torch.relu(concat), slice(0, 8)),
        }[layer]
        k = int(logits.argmax())
        positive = (concat[0, channels] > 0).double() if layer != "relu" else torch.ones(acts.shape[1:])
        weights = (gm.fc.weight[k, channels].double()[:, None, None] * positive).mean((1, 2)) / 36
        coarse = torch.relu((weights[:, None, None] * acts[0].double()).sum(0))
        up = F.interpolate(coarse[None, None], size=(12, 12), mode="bilinear", align_corners=False)[0, 0]
        expected = (up - up.min()) / (up.max() - up.min())

    g = grad_cam(gm, x, index.gradcam(layer).fx_name)
    assert g.target == k
    np.testing.assert_allclose(g.channel_weights, weights.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g.coarse, coarse.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g.cam, expected.numpy(), atol=1e-5)


def test_a_final_softmax_is_looked_through(tiny_spec):
    """Grad-CAM differentiates the logits, not the probabilities: the same map with and without a softmax."""
    x = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    maps = []
    for softmax in (False, True):
        model, gm = _tiny(tiny_spec, softmax)
        index = LayerIndex(model.graph, gm.meta["value_names"])
        scores = index.scores()
        assert (scores is not None) == softmax
        maps.append(grad_cam(gm, x, index.gradcam().fx_name, scores=scores and scores.fx_name))
    np.testing.assert_allclose(maps[0].cam, maps[1].cam, atol=1e-6)
    np.testing.assert_allclose(maps[0].probabilities, maps[1].probabilities, atol=1e-9)


# ---------------------------------------------------------------------------------------------------- layers
@pytest.mark.parametrize(
    "spec, gradcam, features",
    [
        ("spec/ddsnet.yaml", "dense4.layer3_concat", "head.flatten"),  # dense4's output, then head.bn / relu / gap
        ("spec/fastnet.yaml", "stage3.multibranch.reduce", "head.flatten"),  # the 1x1 conv after the 8 branches
        ("spec/baselines/resnet18.yaml", "layer4.1.add", "flatten"),  # the residual merge, not conv2 before it
        ("tiny", "mix.concat", "flatten"),
    ],
)
def test_default_layers_are_read_off_the_graph(tiny_spec, spec, gradcam, features):
    model = load_spec(tiny_spec if spec == "tiny" else REPO / spec, {})
    index = LayerIndex(model.graph, to_torch(model.graph, inference_only=True).meta["value_names"])
    assert index.default_gradcam().name == gradcam and index.features().name == features


def test_an_identity_names_the_value_it_passes_on(tiny_spec):
    model, gm = _tiny(tiny_spec)
    index = LayerIndex(model.graph, gm.meta["value_names"])
    assert index.find("relu").fx_name == index.find("same").fx_name


# ---------------------------------------------------------------------------------------------------- the CLI
@needs_shared
def test_cli_gradcam_writes_the_same_png_twice(tmp_path, capsys, gc_default):
    runs = []
    for i in range(2):
        png, npy = tmp_path / f"gc{i}.png", tmp_path / f"gc{i}.npy"
        rc, out, err = _run(
            capsys,
            DDSNET,
            "--weights",
            GC_WEIGHTS,
            "--by-order",
            "--image",
            GC_IMAGE,
            "-o",
            png,
            "--npy",
            npy,
            "--json",
        )
        assert rc == 0 and "WARNING" not in err
        runs.append((png.read_bytes(), json.loads(out)))
    assert runs[0][0] == runs[1][0] and runs[0][0].startswith(b"\x89PNG")
    doc = runs[0][1]
    assert (doc["label"], doc["layer"], doc["flat"]) == ("TUM", "dense4.layer3_concat", False)
    assert (doc["peak"]["row"], doc["peak"]["column"]) == gc_default.gradcam.peak
    np.testing.assert_array_equal(np.load(tmp_path / "gc0.npy"), gc_default.gradcam.cam)


def test_cli_tsne_writes_the_plot_and_every_point(tmp_path, capsys, textures):
    outputs = []
    for i in range(2):
        png = tmp_path / f"tsne{i}.png"
        rc, out, err = _run(capsys, DDSNET, *SMALL_DDSNET, "--tsne", textures, "-o", png)
        assert rc == 0 and "WARNING: no --weights" in err
        outputs.append((png.read_bytes(), png.with_suffix(".json").read_bytes()))
    assert outputs[0] == outputs[1]  # deterministic: plot and points byte for byte
    assert "t-SNE of 12 images (brick 6, grass 6) at layer head.flatten" in out and "perplexity 11 (min(30" in out
    doc = json.loads(outputs[0][1])
    assert doc["layer"] == "head.flatten" and doc["features"] == 248 and doc["perplexity"] == 11
    assert [p["file"] for p in doc["points"]] == [f"{c}/{i}.png" for c in ("brick", "grass") for i in range(6)]
    assert [p["class"] for p in doc["points"]] == ["brick"] * 6 + ["grass"] * 6
    assert all(np.isfinite([p["x"], p["y"]]).all() for p in doc["points"])


def test_cli_tsne_of_a_flat_folder_is_one_unlabelled_set(tmp_path, capsys, textures):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        (flat / f"{i}.png").write_bytes((textures / "grass" / f"{i}.png").read_bytes())
    rc, out, _ = _run(
        capsys, DDSNET, *SMALL_DDSNET, "--tsne", flat, "-o", tmp_path / "t.png", "--layer", "head.gap", "--json"
    )
    doc = json.loads(out)
    assert rc == 0 and doc["perplexity"] == 2 and doc["layer"] == "head.gap"
    points = json.loads((tmp_path / "t.json").read_text())["points"]
    assert [p["class"] for p in points] == [None] * 3


@pytest.fixture
def too_few(tmp_path, textures):
    folder = tmp_path / "few" / "grass"
    folder.mkdir(parents=True)
    for i in range(2):
        (folder / f"{i}.png").write_bytes((textures / "grass" / f"{i}.png").read_bytes())
    return folder.parent


@pytest.fixture
def unreadable(tmp_path, textures):
    folder = tmp_path / "bad"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes((textures / "brick" / f"{i}.png").read_bytes())
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--image", "IMG", "--layer", "dense4.layer3.concat"], "did you mean 'dense4.layer3_concat'?"),
        (["--image", "IMG", "--layer", "head.gap"], "head.gap (global_avgpool, 248x1x1) is not a spatial map"),
        (["--image", "missing.png"], "missing.png: no such image file"),
        (["--image", "IMG", "--class", "6"], "--class 6: the model has 6 classes (0 to 5)"),
        (["--image", "IMG", "--class", "TUMM"], "did you mean 'TUM'?"),
        (["--image", "IMG", "--perplexity", "5"], "--perplexity does not apply to --image"),
        (["--tsne", "FEW"], "2 image(s) found"),
        (["--tsne", "BAD"], "broken.png: cannot read image"),
        (
            ["--tsne", "TEXTURES", "--perplexity", "12"],
            "--perplexity 12: must be above 0 and below the number of images",
        ),
    ],
)
def test_bad_inputs_exit_2(tmp_path, capsys, textures, too_few, unreadable, argv, message):
    stand_in = {
        "IMG": textures / "brick" / "0.png",
        "FEW": too_few,
        "BAD": unreadable,
        "TEXTURES": textures,
        "missing.png": tmp_path / "missing.png",
    }
    rc, _, err = _run(capsys, DDSNET, *SMALL_DDSNET, *[stand_in.get(a, a) for a in argv], "-o", tmp_path / "x.png")
    assert rc == 2 and message in err
    assert not (tmp_path / "x.png").exists()
