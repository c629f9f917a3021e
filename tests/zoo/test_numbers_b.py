"""torchvision baselines, part B: spec/baselines/{inception_v3, googlenet, mobilenet_v2, shufflenet_v2_x1_0,
efficientnet_b0}.yaml and the zoo blocks they use (basic_conv2d, inception_v3_a..e, inception_aux,
googlenet_inception, googlenet_aux, conv_bn_act, inverted_residual, shuffle_unit, mbconv, squeeze_excite).

The numbers are torchvision's models with `num_classes=6` (and `transform_input=False`, aux heads off unless
`aux_logits=true`) at 3x224x224 (Inception v3: 3x299x299): trainable parameters, and MACs of conv and linear
layers on the inference path (auxiliary heads excluded). They were cross-checked against torchvision-structured
nn.Modules (same module names; weights imported by name for Inception v3 / GoogLeNet, by order for the others;
equal outputs). Here the checkpoint layout is pinned by generating torchvision's state_dict (key, shape) list.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import tcc
from tests.helpers import REPO
from tests.helpers.zoo import BASELINES, assert_forward_batch1
from tests.helpers.zoo import load_baseline as load

# name: (trainable params, MACs, fan-in of the classifier (num_classes 6 -> 2 removes 4 x (fan_in + 1)))
NUMBERS = {
    "inception_v3": (21_797_862, 5_711_180_384, 2048),
    "googlenet": (5_606_054, 1_497_358_336, 1024),
    "mobilenet_v2": (2_231_558, 299_501_952, 1280),
    "shufflenet_v2_x1_0": (1_259_754, 143_890_136, 1024),
    "efficientnet_b0": (4_015_234, 384_542_432, 1280),
}
MODELS = list(NUMBERS)
# aux_logits=true: (trainable params, aux output names, fan-in of each aux classifier's last linear)
AUX = {
    "inception_v3": (24_360_172, ["aux"], [768]),
    "googlenet": (9_948_338, ["aux1", "aux2"], [1024, 1024]),
}
INPUT = {"inception_v3": 299}


# ------------------------------------------------------------------------------------------------ torchvision keys
# torchvision's state_dict (key, shape) lists, generated from its constructors' rules (num_classes=6).


def _conv(key, cout, cin, k, bias=True, groups=1):
    kh, kw = (k, k) if isinstance(k, int) else k
    return [(f"{key}.weight", (cout, cin // groups, kh, kw))] + ([(f"{key}.bias", (cout,))] if bias else [])


def _bn(key, c):
    return [(f"{key}.{n}", (c,)) for n in ("weight", "bias", "running_mean", "running_var")] + [
        (f"{key}.num_batches_tracked", ())
    ]


def _linear(key, cout, cin):
    return [(f"{key}.weight", (cout, cin)), (f"{key}.bias", (cout,))]


def _basic(key, cout, cin, k):  # BasicConv2d
    return _conv(f"{key}.conv", cout, cin, k, bias=False) + _bn(f"{key}.bn", cout)


def _cna(key, cout, cin, k, groups=1):  # Conv2dNormActivation: .0 conv, .1 bn
    return _conv(f"{key}.0", cout, cin, k, bias=False, groups=groups) + _bn(f"{key}.1", cout)


def tv_inception_v3(nc=6, aux=False):
    def a(p, c, pool):
        return (
            _basic(f"{p}.branch1x1", 64, c, 1)
            + _basic(f"{p}.branch5x5_1", 48, c, 1)
            + _basic(f"{p}.branch5x5_2", 64, 48, 5)
            + _basic(f"{p}.branch3x3dbl_1", 64, c, 1)
            + _basic(f"{p}.branch3x3dbl_2", 96, 64, 3)
            + _basic(f"{p}.branch3x3dbl_3", 96, 96, 3)
            + _basic(f"{p}.branch_pool", pool, c, 1)
        )

    def c7(p, c):
        return (
            _basic(f"{p}.branch1x1", 192, 768, 1)
            + _basic(f"{p}.branch7x7_1", c, 768, 1)
            + _basic(f"{p}.branch7x7_2", c, c, (1, 7))
            + _basic(f"{p}.branch7x7_3", 192, c, (7, 1))
            + _basic(f"{p}.branch7x7dbl_1", c, 768, 1)
            + _basic(f"{p}.branch7x7dbl_2", c, c, (7, 1))
            + _basic(f"{p}.branch7x7dbl_3", c, c, (1, 7))
            + _basic(f"{p}.branch7x7dbl_4", c, c, (7, 1))
            + _basic(f"{p}.branch7x7dbl_5", 192, c, (1, 7))
            + _basic(f"{p}.branch_pool", 192, 768, 1)
        )

    def e(p, c):
        return (
            _basic(f"{p}.branch1x1", 320, c, 1)
            + _basic(f"{p}.branch3x3_1", 384, c, 1)
            + _basic(f"{p}.branch3x3_2a", 384, 384, (1, 3))
            + _basic(f"{p}.branch3x3_2b", 384, 384, (3, 1))
            + _basic(f"{p}.branch3x3dbl_1", 448, c, 1)
            + _basic(f"{p}.branch3x3dbl_2", 384, 448, 3)
            + _basic(f"{p}.branch3x3dbl_3a", 384, 384, (1, 3))
            + _basic(f"{p}.branch3x3dbl_3b", 384, 384, (3, 1))
            + _basic(f"{p}.branch_pool", 192, c, 1)
        )

    out = (
        _basic("Conv2d_1a_3x3", 32, 3, 3)
        + _basic("Conv2d_2a_3x3", 32, 32, 3)
        + _basic("Conv2d_2b_3x3", 64, 32, 3)
        + _basic("Conv2d_3b_1x1", 80, 64, 1)
        + _basic("Conv2d_4a_3x3", 192, 80, 3)
        + a("Mixed_5b", 192, 32)
        + a("Mixed_5c", 256, 64)
        + a("Mixed_5d", 288, 64)
        + _basic("Mixed_6a.branch3x3", 384, 288, 3)
        + _basic("Mixed_6a.branch3x3dbl_1", 64, 288, 1)
        + _basic("Mixed_6a.branch3x3dbl_2", 96, 64, 3)
        + _basic("Mixed_6a.branch3x3dbl_3", 96, 96, 3)
        + c7("Mixed_6b", 128)
        + c7("Mixed_6c", 160)
        + c7("Mixed_6d", 160)
        + c7("Mixed_6e", 192)
    )
    if aux:
        out += (
            _basic("AuxLogits.conv0", 128, 768, 1)
            + _basic("AuxLogits.conv1", 768, 128, 5)
            + _linear("AuxLogits.fc", nc, 768)
        )
    out += (
        _basic("Mixed_7a.branch3x3_1", 192, 768, 1)
        + _basic("Mixed_7a.branch3x3_2", 320, 192, 3)
        + _basic("Mixed_7a.branch7x7x3_1", 192, 768, 1)
        + _basic("Mixed_7a.branch7x7x3_2", 192, 192, (1, 7))
        + _basic("Mixed_7a.branch7x7x3_3", 192, 192, (7, 1))
        + _basic("Mixed_7a.branch7x7x3_4", 192, 192, 3)
        + e("Mixed_7b", 1280)
        + e("Mixed_7c", 2048)
    )
    return out + _linear("fc", nc, 2048)


def tv_googlenet(nc=6, aux=False):
    cfg = {  # torchvision's Inception(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
        "inception3a": (192, 64, 96, 128, 16, 32, 32),
        "inception3b": (256, 128, 128, 192, 32, 96, 64),
        "inception4a": (480, 192, 96, 208, 16, 48, 64),
        "inception4b": (512, 160, 112, 224, 24, 64, 64),
        "inception4c": (512, 128, 128, 256, 24, 64, 64),
        "inception4d": (512, 112, 144, 288, 32, 64, 64),
        "inception4e": (528, 256, 160, 320, 32, 128, 128),
        "inception5a": (832, 256, 160, 320, 32, 128, 128),
        "inception5b": (832, 384, 192, 384, 48, 128, 128),
    }
    out = _basic("conv1", 64, 3, 7) + _basic("conv2", 64, 64, 1) + _basic("conv3", 192, 64, 3)
    for p, (c, c1, c3r, c3, c5r, c5, pp) in cfg.items():
        out += (
            _basic(f"{p}.branch1", c1, c, 1)
            + _basic(f"{p}.branch2.0", c3r, c, 1)
            + _basic(f"{p}.branch2.1", c3, c3r, 3)
            + _basic(f"{p}.branch3.0", c5r, c, 1)
            + _basic(f"{p}.branch3.1", c5, c5r, 3)  # 3x3: torchvision's known quirk
            + _basic(f"{p}.branch4.1", pp, c, 1)
        )
    if aux:  # registered after inception5b
        for p, c in (("aux1", 512), ("aux2", 528)):
            out += _basic(f"{p}.conv", 128, c, 1) + _linear(f"{p}.fc1", 1024, 2048) + _linear(f"{p}.fc2", nc, 1024)
    return out + _linear("fc", nc, 1024)


def tv_mobilenet_v2(nc=6):
    out, cin, k = _cna("features.0", 32, 3, 3), 32, 1
    for t, c, n, s in [
        [1, 16, 1, 1],
        [6, 24, 2, 2],
        [6, 32, 3, 2],
        [6, 64, 4, 2],
        [6, 96, 3, 1],
        [6, 160, 3, 2],
        [6, 320, 1, 1],
    ]:
        for _ in range(n):
            p, h, j = f"features.{k}.conv", cin * t, 0
            if t != 1:
                out += _cna(f"{p}.0", h, cin, 1)
                j = 1
            out += (
                _cna(f"{p}.{j}", h, h, 3, groups=h)
                + _conv(f"{p}.{j + 1}", c, h, 1, bias=False)
                + _bn(f"{p}.{j + 2}", c)
            )
            cin, k = c, k + 1
    return out + _cna("features.18", 1280, 320, 1) + _linear("classifier.1", nc, 1280)


def tv_shufflenet_v2_x1_0(nc=6, repeats=(4, 8, 4), channels=(24, 116, 232, 464, 1024)):
    out, cin = _conv("conv1.0", channels[0], 3, 3, bias=False) + _bn("conv1.1", channels[0]), channels[0]
    for s, (n, c) in enumerate(zip(repeats, channels[1:])):
        bf = c // 2
        for j in range(n):
            p = f"stage{s + 2}.{j}"
            if j == 0:
                out += (
                    _conv(f"{p}.branch1.0", cin, cin, 3, bias=False, groups=cin)
                    + _bn(f"{p}.branch1.1", cin)
                    + _conv(f"{p}.branch1.2", bf, cin, 1, bias=False)
                    + _bn(f"{p}.branch1.3", bf)
                )
            out += (
                _conv(f"{p}.branch2.0", bf, cin if j == 0 else bf, 1, bias=False)
                + _bn(f"{p}.branch2.1", bf)
                + _conv(f"{p}.branch2.3", bf, bf, 3, bias=False, groups=bf)
                + _bn(f"{p}.branch2.4", bf)
                + _conv(f"{p}.branch2.5", bf, bf, 1, bias=False)
                + _bn(f"{p}.branch2.6", bf)
            )
            cin = c
    return (
        out
        + _conv("conv5.0", channels[4], cin, 1, bias=False)
        + _bn("conv5.1", channels[4])
        + _linear("fc", nc, channels[4])
    )


def tv_efficientnet_b0(nc=6):
    out, cin = _cna("features.0", 32, 3, 3), 32
    for s, (t, k, stride, c, n) in enumerate(
        [
            (1, 3, 1, 16, 1),
            (6, 3, 2, 24, 2),
            (6, 5, 2, 40, 2),
            (6, 3, 2, 80, 3),
            (6, 5, 1, 112, 3),
            (6, 5, 2, 192, 4),
            (6, 3, 1, 320, 1),
        ]
    ):
        for j in range(n):
            p, h, q = f"features.{s + 1}.{j}.block", cin * t, 0
            if t != 1:
                out += _cna(f"{p}.0", h, cin, 1)
                q = 1
            out += (
                _cna(f"{p}.{q}", h, h, k, groups=h)
                + _conv(f"{p}.{q + 1}.fc1", cin // 4, h, 1)
                + _conv(f"{p}.{q + 1}.fc2", h, cin // 4, 1)
                + _cna(f"{p}.{q + 2}", c, h, 1)
            )
            cin = c
    return out + _cna("features.8", 1280, 320, 1) + _linear("classifier.1", nc, 1280)


TORCHVISION = {
    "inception_v3": tv_inception_v3,
    "googlenet": tv_googlenet,
    "mobilenet_v2": tv_mobilenet_v2,
    "shufflenet_v2_x1_0": tv_shufflenet_v2_x1_0,
    "efficientnet_b0": tv_efficientnet_b0,
}
# Inception v3 and GoogLeNet use torchvision's module names: its checkpoints import by name. The others keep
# torchvision's order and shapes with readable names inside the blocks (features.3.1.block.dw.conv for
# features.3.1.block.1.0: torchvision renumbers its Sequentials when an expand conv is absent), so they import
# by order (or with a key map).
SAME_NAMES = {"inception_v3", "googlenet"}


# ------------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", MODELS)
def test_params_and_macs_exact(name):
    params, macs, fan_in = NUMBERS[name]
    graph = load(name).graph
    assert graph.param_count == params
    assert graph.macs == macs
    assert list(graph.shape(graph.output)) == [6]
    assert graph.aux_outputs == {}
    two = load(name, num_classes=2).graph
    assert graph.param_count - two.param_count == 4 * (fan_in + 1)
    assert graph.macs - two.macs == 4 * fan_in
    assert list(two.shape(two.output)) == [2]


@pytest.mark.parametrize("name", list(AUX))
def test_aux_heads(name):
    params, outputs, fan_ins = AUX[name]
    graph = load(name, aux_logits=True).graph
    assert graph.param_count == params
    assert graph.macs == NUMBERS[name][1]  # training-only heads are not on the inference path
    assert sorted(graph.aux_outputs) == outputs
    assert all(list(graph.shape(r)) == [6] for r in graph.aux_outputs.values())
    two = load(name, aux_logits=True, num_classes=2).graph
    assert graph.param_count - two.param_count == 4 * (NUMBERS[name][2] + 1) + sum(4 * (f + 1) for f in fan_ins)


@pytest.mark.parametrize("name,aux", [(m, False) for m in MODELS] + [(m, True) for m in AUX])
def test_torchvision_state_dict_layout(name, aux):
    spec = [(k, tuple(p.shape)) for k, p in load(name, **({"aux_logits": True} if aux else {})).graph.parameters()]
    expected = TORCHVISION[name](aux=True) if aux else TORCHVISION[name]()
    assert [s for _, s in spec] == [s for _, s in expected]  # order and shapes: by-order import
    if name in SAME_NAMES:
        assert spec == expected  # names too: name-based import of a torchvision checkpoint


def test_hyper_parameters():
    """What the counts cannot see: BN eps, ceil_mode, dropout p, the SE wiring."""
    inc, goo = load("inception_v3").graph, load("googlenet").graph
    assert {n.attrs["eps"] for n in inc.nodes.values() if n.op == "batchnorm"} == {0.001}
    assert {n.attrs["eps"] for n in goo.nodes.values() if n.op == "batchnorm"} == {0.001}
    assert inc.nodes["dropout"].attrs["p"] == 0.5 and goo.nodes["dropout"].attrs["p"] == 0.2
    assert all(n.attrs["ceil_mode"] for n in goo.nodes.values() if n.op == "maxpool")
    assert not any(n.attrs["ceil_mode"] for n in inc.nodes.values() if n.op == "maxpool")
    assert goo.nodes["maxpool4"].shape == (832, 7, 7) and goo.nodes["maxpool1"].shape == (64, 56, 56)
    assert goo.nodes["inception3a.branch3.1.conv"].attrs["kernel"] in (3, (3, 3), [3, 3])  # torchvision's quirk
    assert inc.nodes["Mixed_7c.cat"].shape == (2048, 8, 8)
    eff = load("efficientnet_b0").graph
    assert {n.attrs["eps"] for n in eff.nodes.values() if n.op == "batchnorm"} == {1e-5}
    assert eff.nodes["classifier.0"].attrs["p"] == 0.2
    mul = eff.nodes["features.2.1.block.se.scale"]
    assert [str(r) for r in mul.inputs] == ["features.2.1.block.se.scale_activation", "features.2.1.block.dw.act"]
    assert [eff.shape(r) for r in mul.inputs] == [(144, 1, 1), (144, 56, 56)]
    assert [str(r) for r in eff.nodes["features.2.1.block.residual"].inputs] == [
        "features.2.1.block.project.bn",
        "features.2.0.block.project.bn",
    ]
    mob = load("mobilenet_v2").graph
    assert {n.op for n in mob.nodes.values()} >= {"relu6"} and "relu" not in {n.op for n in mob.nodes.values()}
    assert mob.nodes["classifier.0"].attrs["p"] == 0.2
    shu = load("shufflenet_v2_x1_0").graph
    cat = shu.nodes["stage3.1.keep.cat"]  # stride 1: the first half passes, branch2 runs on the second
    assert [(r.node, r.index) for r in cat.inputs] == [("stage3.1.keep.split", 0), ("stage3.1.keep.branch2.pw2.act", 0)]
    assert [(r.node, r.index) for r in shu.nodes["stage3.1.keep.branch2.pw1.conv"].inputs] == [
        ("stage3.1.keep.split", 1)
    ]
    assert shu.nodes["stage3.1.shuffle"].attrs["groups"] == 2


@pytest.mark.parametrize("name", ["mobilenet_v2", "shufflenet_v2_x1_0", "efficientnet_b0"])
def test_forward_batch1(name):
    assert_forward_batch1(name)


def test_googlenet_forward_and_aux_outputs():
    """Eval: the main logits alone; training: (main, {aux1, aux2}) as torchvision's GoogLeNetOutputs."""
    module = tcc.to_torch(load("googlenet", aux_logits=True).graph).eval()
    with torch.no_grad():
        y = module(torch.rand(1, 3, 224, 224))
        assert tuple(y.shape) == (1, 6) and torch.isfinite(y).all()
        module.train()
        main, aux = module(torch.rand(2, 3, 224, 224))
    assert tuple(main.shape) == (2, 6)
    assert sorted(aux) == ["aux1", "aux2"] and all(tuple(a.shape) == (2, 6) for a in aux.values())


def test_cli_check_json():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tcc.cli.main",
            "check",
            str(BASELINES / "inception_v3.yaml"),
            "--json",
            "--set",
            "aux_logits=true",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    data = json.loads(out)
    assert data["params"] == AUX["inception_v3"][0]
    assert data["macs"] == NUMBERS["inception_v3"][1]
    assert data["input"] == [3, 299, 299] and data["output"] == [6]
    assert {"name", "op", "shape", "params", "macs"} <= set(data["layers"][1])


@pytest.mark.parametrize("name", MODELS)
def test_preprocess_is_imagenet(name):
    model = load(name)
    size = INPUT.get(name, 224)
    assert model.input_shape == (3, size, size)
    pre = model.preprocess
    assert pre.resize == (size, size) and pre.interpolation == "bilinear" and pre.color == "RGB"
    assert pre.mean == (0.485, 0.456, 0.406) and pre.std == (0.229, 0.224, 0.225)
