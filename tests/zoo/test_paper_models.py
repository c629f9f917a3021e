"""The two paper models, DDSNet and FastNet: spec/ddsnet.yaml and spec/fastnet.yaml against the hand-written
references in tests/helpers/reference_models.py (exact parameter and MAC counts, equal outputs under the same weights)
and, for DDSNet, against the published checkpoints in /work/shared/fixtures/ddsnet (skipped when that folder is absent).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tcc
from tcc.data import load_image
from tcc.lower.to_torch import init_weights
from tcc.lower.weights import load_weights, match_weights, read_state_dict
from tests.helpers import FIXTURES, REPO
from tests.helpers.reference_models import DDSNet, FastNet, count_macs, count_params, ddsnet_checkpoint_state

SPEC = REPO / "spec"
needs_fixtures = pytest.mark.skipif(
    not (FIXTURES / "GC_DDS_0.0064.pth").is_file(),
    reason=f"DDSNet checkpoints and images not found in {FIXTURES} (shared fixtures absent)",
)

DDSNET_PARAMS, DDSNET_MACS = 189_870, 283_742_064  # 6 classes, 224x224
FASTNET_PARAMS, FASTNET_MACS = 218_534, 104_934_932  # 2 classes, 256x256

# checkpoint, classes, image, top-1 class index measured with the reference (see the report in the PR)
CHECKPOINTS = [
    ("GC", 6, "GC.png", 5),  # TUM
    ("PCam", 2, "PCam.png", 0),  # normal
    ("Sipak", 5, "Sipak.bmp", 0),
    ("Skin", 7, "SC.jpg", 5),  # nv
]


def _load(spec: str, **overrides):
    return tcc.load_spec(SPEC / spec, overrides)


def _copy_by_order(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    """Copy every parameter and buffer of src into dst by registration order, checking shapes."""
    s, d = list(src.state_dict().items()), list(dst.state_dict().items())
    assert len(s) == len(d), (len(s), len(d))
    new = {}
    for (sk, sv), (dk, dv) in zip(s, d):
        assert sv.shape == dv.shape, f"{sk} {tuple(sv.shape)} vs {dk} {tuple(dv.shape)}"
        new[dk] = sv.clone()
    dst.load_state_dict(new)


def _reference_preprocess(path: Path, size: int = 224) -> torch.Tensor:
    """SOURCE.md's evaluation transform, written independently of tcc: RGB, bilinear resize, /255, ImageNet stats."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size), Image.BILINEAR)
        x = np.asarray(im, dtype=np.float32) / 255.0
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]


# ------------------------------------------------------------------------------------------------ references
def test_reference_ddsnet_counts():
    m = DDSNet(6)
    assert count_params(m) == DDSNET_PARAMS
    assert count_macs(m, (3, 224, 224)) == DDSNET_MACS
    assert count_params(DDSNet(2)) == DDSNET_PARAMS - 4 * (248 + 1)


@pytest.mark.parametrize("residual", [False, True])
def test_reference_fastnet_counts(residual):
    m = FastNet(2, residual=residual)
    assert count_params(m) == FASTNET_PARAMS
    assert count_macs(m, (3, 256, 256)) == FASTNET_MACS  # the shortcut adds no conv/linear work


# ------------------------------------------------------------------------------------------------ tcc check
@pytest.mark.parametrize(
    "spec,params,macs", [("ddsnet.yaml", DDSNET_PARAMS, DDSNET_MACS), ("fastnet.yaml", FASTNET_PARAMS, FASTNET_MACS)]
)
def test_cli_check_numbers(spec, params, macs):
    out = subprocess.run(
        [sys.executable, "-m", "tcc.cli.main", "check", str(SPEC / spec), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["params"], summary["macs"]) == (params, macs)


def test_ddsnet_spec_shape_and_labels():
    model = _load("ddsnet.yaml")
    assert model.input_shape == (3, 224, 224)
    assert model.labels == ["ADI", "MUC", "MUS", "STR", "STU", "TUM"]
    pre = model.preprocess
    assert (pre.resize, pre.interpolation, pre.color) == ((224, 224), "bilinear", "RGB")
    assert pre.scale == pytest.approx(1 / 255)
    assert pre.mean == pytest.approx((0.485, 0.456, 0.406)) and pre.std == pytest.approx((0.229, 0.224, 0.225))
    names = set(model.graph.nodes)
    for name in ("stem.conv", "dense1.layer0.dw.conv", "dense4.layer3.pw.conv", "trans1.conv", "head.fc"):
        assert name in names
    # channel plan 64 -> 192 -> 96 -> 224 -> 112 -> 240 -> 120 -> 248
    g = model.graph
    plan = [
        g.nodes[n].shape[0]
        for n in (
            "stem.pool",
            "dense1.layer3_concat",
            "trans1.pool",
            "dense2.layer3_concat",
            "trans2.pool",
            "dense3.layer3_concat",
            "trans3.pool",
            "dense4.layer3_concat",
        )
    ]
    assert plan == [64, 192, 96, 224, 112, 240, 120, 248]


def test_fastnet_spec_shapes():
    model = _load("fastnet.yaml")
    g = model.graph
    assert model.input_shape == (3, 256, 256)
    assert model.params == {"image_size": 256, "num_classes": 2, "residual": False}
    # Table IV: 127x127x64, 63x63x8, 31x31x16, 15x15x32 ('valid' stride-2 convs), blocks keep the shape
    assert g.nodes["stem.conv"].shape == (64, 127, 127)
    for stage, shape in (("stage1", (8, 63, 63)), ("stage2", (16, 31, 31)), ("stage3", (32, 15, 15))):
        assert g.nodes[f"{stage}.down.conv"].shape == shape
        assert g.nodes[f"{stage}.multiscale.reduce"].shape == shape
        assert g.nodes[f"{stage}.multibranch.reduce"].shape == shape
    assert g.nodes["stage3.multibranch.branch"].shape == (8 * 128, 15, 15)  # B * M * N concat
    assert g.nodes["stage2.multiscale.scales.concat"].shape == (3 * 8, 31, 31)  # 3 * B concat
    assert not any(n.endswith("residual") for n in g.nodes)
    res = _load("fastnet.yaml", residual=True).graph
    adds = [n for n in res.nodes if n.endswith(".residual")]
    assert len(adds) == 6 and all(res.nodes[n].op == "add" for n in adds)
    assert (res.param_count, res.macs) == (FASTNET_PARAMS, FASTNET_MACS)


def test_set_num_classes_changes_only_the_linear_layer():
    base, two = _load("ddsnet.yaml").graph, _load("ddsnet.yaml", num_classes=2).graph
    assert base.param_count - two.param_count == (6 - 2) * (248 + 1) == 996
    assert base.macs - two.macs == (6 - 2) * 248
    assert two.param_count == count_params(DDSNet(2))
    assert _load("ddsnet.yaml", num_classes=2).labels is None  # the 6 GC labels no longer apply
    f2, f3 = _load("fastnet.yaml").graph, _load("fastnet.yaml", num_classes=3).graph
    assert f3.param_count - f2.param_count == 32 + 1
    assert f3.macs - f2.macs == 32


# ------------------------------------------------------------------------------------------------ numerics
@pytest.mark.parametrize(
    "spec,overrides,make_ref,shape",
    [
        ("ddsnet.yaml", {}, lambda: DDSNet(6), (3, 224, 224)),
        ("ddsnet.yaml", {"num_classes": 2}, lambda: DDSNet(2), (3, 224, 224)),
        ("fastnet.yaml", {}, lambda: FastNet(2, residual=False), (3, 256, 256)),
        ("fastnet.yaml", {"residual": True}, lambda: FastNet(2, residual=True), (3, 256, 256)),
    ],
    ids=["ddsnet", "ddsnet-2cls", "fastnet", "fastnet-residual"],
)
def test_torch_lowering_matches_reference(spec, overrides, make_ref, shape):
    model = _load(spec, **overrides)
    module = init_weights(tcc.to_torch(model.graph), seed=1)
    ref = make_ref()
    _copy_by_order(module, ref)
    module.eval()
    ref.eval()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = module(x), ref(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    # BN eps/momentum agree too (FastNet uses Keras' 1e-3 / 0.99)
    bns = lambda m: [(b.eps, b.momentum) for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]  # noqa: E731
    assert bns(module) == bns(ref)


def test_ddsnet_spec_names_mirror_reference():
    """The reference's module tree mirrors the spec ids, so its state_dict names equal the lowering's."""
    module = tcc.to_torch(_load("ddsnet.yaml").graph)
    assert list(module.state_dict()) == list(DDSNet(6).state_dict())


# ------------------------------------------------------------------------------------------------ checkpoints
@needs_fixtures
def test_ddsnet_checkpoint_order_matches_spec():
    """--by-order: the 7 duplicated stem tensors are aliases, the other 259 map in order onto the spec."""
    state = read_state_dict(FIXTURES / "GC_DDS_0.0064.pth")
    assert len(state) == 266
    b1 = [k for k in state if k.startswith("b1.")]
    assert len(b1) == 7 and all(torch.equal(state[k], state["net.0." + k[3:]]) for k in b1)
    match = match_weights(_load("ddsnet.yaml").graph, state, by_order=True)
    assert len(match.assignment) == 259 and len(match.aliases) == 7
    # each spec tensor takes the checkpoint key of its twin in the original module tree
    ckpt = [k.replace("b1.", "net.0.") for k in match.assignment.values()]
    assert ckpt == [k for k in state if not k.startswith("b1.")]
    assert match.assignment["stem.conv.weight"] in ("b1.0.weight", "net.0.0.weight")
    assert match.assignment["dense1.layer0.dw.conv.weight"] == "net.1.net.0.depthwise.0.weight"
    assert match.assignment["trans1.conv.weight"] == "net.2.2.weight"
    assert match.assignment["head.bn.running_var"] == "net.8.running_var"
    assert match.assignment["head.fc.weight"] == "net.12.weight"


@needs_fixtures
@pytest.mark.parametrize("name,classes,image,top1", CHECKPOINTS, ids=[c[0] for c in CHECKPOINTS])
def test_ddsnet_checkpoint_predictions(name, classes, image, top1):
    ckpt = FIXTURES / f"{name}_DDS_0.0064.pth"
    model = _load("ddsnet.yaml", **({} if classes == 6 else {"num_classes": classes}))
    module = tcc.to_torch(model.graph)
    load_weights(module, model.graph, ckpt, by_order=True)
    module.eval()
    ref = DDSNet(classes)
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)
    ref.load_state_dict(ddsnet_checkpoint_state(sd, ref))
    ref.eval()
    x_tcc = torch.from_numpy(load_image(FIXTURES / image, model.preprocess))[None]
    x_ref = _reference_preprocess(FIXTURES / image)
    torch.testing.assert_close(x_tcc, x_ref, atol=1e-5, rtol=0)
    with torch.no_grad():
        got, want = module(x_tcc), ref(x_ref)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    probs = got.softmax(1)[0]
    assert int(probs.argmax()) == top1
    assert float(probs.max()) > 0.9  # each checkpoint is confident on its own dataset's image
    if name == "GC":
        assert model.labels[top1] == "TUM" and float(probs.max()) > 0.99


@needs_fixtures
def test_cli_predict_gc_checkpoint():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tcc.cli.main",
            "predict",
            str(SPEC / "ddsnet.yaml"),
            "--weights",
            str(FIXTURES / "GC_DDS_0.0064.pth"),
            "--by-order",
            "--image",
            str(FIXTURES / "GC.png"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["class"] == 5 and result["label"] == "TUM"
    assert "7 aliased checkpoint keys" in out.stderr


# ------------------------------------------------------------------------------------------------ zoo blocks
def _tiny_model(tmp_path: Path, node: str, channels: int = 8, size: int = 16) -> tcc.Model:
    """A 3-channel model: a 1x1 conv `pre` to `channels`, then the node under test."""
    p = tmp_path / "m.yaml"
    p.write_text(
        f"kind: model\nname: tiny\ninput: {{shape: [3, {size}, {size}]}}\nlayers:\n"
        f"  - {{id: pre, op: conv2d, out: {channels}, kernel: 1}}\n  - {node}\n",
        encoding="utf-8",
    )
    return tcc.load_spec(p)


def _params_under(g, prefix: str) -> int:
    return sum(n.param_count() for name, n in g.nodes.items() if name.startswith(prefix))


@pytest.mark.parametrize(
    "args,params",
    [
        ("out: 16", 8 * 9 + 2 * 8 + 8 * 16 + 2 * 16),  # MobileNet-v1 style: BN between dw and pw
        ("out: 16, mid: false", 8 * 9 + 8 * 16 + 2 * 16),  # Keras SeparableConv2D + BN
        ("out: 16, bias: true", 8 * 9 + 8 + 2 * 8 + 8 * 16 + 16 + 2 * 16),
        ("out: 4, kernel: 1, mid: false, act: relu6", 8 + 8 * 4 + 2 * 4),
    ],
)
def test_dw_separable_block(tmp_path, args, params):
    g = _tiny_model(tmp_path, f"{{id: sep, block: dw_separable, {args}}}").graph
    assert _params_under(g, "sep.") == params
    assert g.nodes["sep.dw.conv"].attrs["groups"] == 8


def test_dw_separable_stride(tmp_path):
    g = _tiny_model(tmp_path, "{id: sep, block: dw_separable, out: 12, stride: 2}").graph
    assert g.shape(g.output) == (12, 8, 8)


def test_fastnet_blocks_residual_keep_shape(tmp_path):
    for node in (
        "{id: b, block: fastnet_multiscale, channels: 8, expansion: 2, width: 4, residual: true}",
        "{id: b, block: fastnet_multibranch, channels: 8, expansion: 2, num_branches: 3, residual: true}",
    ):
        g = _tiny_model(tmp_path, node).graph
        assert g.shape(g.output) == (8, 16, 16) and g.nodes["b.residual"].op == "add"


@pytest.mark.parametrize(
    "path",
    [
        "spec/ddsnet.yaml",
        "spec/fastnet.yaml",
        "zoo/blocks/dw_separable.yaml",
        "zoo/blocks/dds_layer.yaml",
        "zoo/blocks/dds_transition.yaml",
        "zoo/blocks/fastnet_multiscale.yaml",
        "zoo/blocks/fastnet_multibranch.yaml",
    ],
)
def test_files_validate_against_schema(path):
    import jsonschema
    import yaml

    from tcc.spec.schema import build_schema

    f = REPO / path
    first = f.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert (f.parent / first.split("$schema=", 1)[1]).resolve() == (REPO / "spec/schema/tcc.schema.json").resolve()
    jsonschema.validate(yaml.safe_load(f.read_text(encoding="utf-8")), build_schema())
    if path.startswith("zoo/"):
        assert yaml.safe_load(f.read_text(encoding="utf-8"))["name"] == f.stem
