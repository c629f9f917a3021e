"""torchvision baselines, part A: spec/baselines/{vgg11, vgg16, resnet18, resnet34, squeezenet1_0, squeezenet1_1,
densenet121}.yaml and the zoo blocks they use (vgg_stage, resnet_basic, fire, densenet_layer, densenet_transition),
plus resnet_bottleneck and conv_bn_relu.

The numbers are torchvision's models with `num_classes=6` at 3x224x224: trainable parameters, and MACs of conv and
linear layers. They were cross-checked against torchvision-structured nn.Modules (same module names, weights
copied by order, equal outputs); here the checkpoint layout is pinned by generating torchvision's state_dict
(key, shape) list, which is what name-based and by-order weight import rely on.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import tcc
from tests.helpers import REPO
from tests.helpers.zoo import BASELINES, assert_forward_batch1
from tests.helpers.zoo import load_baseline as load

# name: (trainable params, MACs, params removed by num_classes 6 -> 2 (4 x (fan_in + 1) of the last layer))
NUMBERS = {
    "vgg11": (128_790_918, 7_605_018_624, 4 * 4097),
    "vgg16": (134_285_126, 15_466_192_896, 4 * 4097),
    "resnet18": (11_179_590, 1_813_564_416, 4 * 513),
    "resnet34": (21_287_750, 3_663_252_480, 4 * 513),
    "squeezenet1_0": (738_502, 732_915_744, 4 * 513),
    "squeezenet1_1": (725_574, 263_143_104, 4 * 513),
    "densenet121": (6_960_006, 2_833_143_808, 4 * 1025),
}
MODELS = list(NUMBERS)


# ------------------------------------------------------------------------------------------------ torchvision keys
# torchvision's state_dict (key, shape) lists, generated from its constructors' rules (num_classes=6).


def _conv(key, cout, cin, k, bias=True):
    return [(f"{key}.weight", (cout, cin, k, k))] + ([(f"{key}.bias", (cout,))] if bias else [])


def _bn(key, c):
    return [(f"{key}.{n}", (c,)) for n in ("weight", "bias", "running_mean", "running_var")] + [
        (f"{key}.num_batches_tracked", ())
    ]


def _linear(key, cout, cin):
    return [(f"{key}.weight", (cout, cin)), (f"{key}.bias", (cout,))]


def tv_vgg(cfg, nc=6):
    out, cin = [], 3
    for i, v in enumerate(cfg):  # features.i: conv (i), relu (i+1) or maxpool (i)
        if v != "M":
            out += _conv(f"features.{sum(2 if u != 'M' else 1 for u in cfg[:i])}", v, cin, 3)
            cin = v
    return (
        out
        + _linear("classifier.0", 4096, 512 * 7 * 7)
        + _linear("classifier.3", 4096, 4096)
        + _linear("classifier.6", nc, 4096)
    )


def tv_resnet(depths, nc=6):
    out = _conv("conv1", 64, 3, 7, bias=False) + _bn("bn1", 64)
    cin = 64
    for s, n in enumerate(depths):
        planes = 64 * 2**s
        for b in range(n):
            p = f"layer{s + 1}.{b}"
            out += _conv(f"{p}.conv1", planes, cin, 3, bias=False) + _bn(f"{p}.bn1", planes)
            out += _conv(f"{p}.conv2", planes, planes, 3, bias=False) + _bn(f"{p}.bn2", planes)
            if b == 0 and (s > 0 or cin != planes):
                out += _conv(f"{p}.downsample.0", planes, cin, 1, bias=False) + _bn(f"{p}.downsample.1", planes)
            cin = planes
    return out + _linear("fc", nc, 512)


def tv_squeezenet(version, nc=6):
    if version == "1_0":
        stem, fires = (
            (96, 7),
            {
                3: (16, 64),
                4: (16, 64),
                5: (32, 128),
                7: (32, 128),
                8: (48, 192),
                9: (48, 192),
                10: (64, 256),
                12: (64, 256),
            },
        )
    else:
        stem, fires = (
            (64, 3),
            {
                3: (16, 64),
                4: (16, 64),
                6: (32, 128),
                7: (32, 128),
                9: (48, 192),
                10: (48, 192),
                11: (64, 256),
                12: (64, 256),
            },
        )
    out, cin = _conv("features.0", stem[0], 3, stem[1]), stem[0]
    for i, (sq, ex) in fires.items():
        p = f"features.{i}"
        out += (
            _conv(f"{p}.squeeze", sq, cin, 1) + _conv(f"{p}.expand1x1", ex, sq, 1) + _conv(f"{p}.expand3x3", ex, sq, 3)
        )
        cin = 2 * ex
    return out + _conv("classifier.1", nc, 512, 1)


def tv_densenet(growth=32, config=(6, 12, 24, 16), init=64, bn_size=4, nc=6):
    out = _conv("features.conv0", init, 3, 7, bias=False) + _bn("features.norm0", init)
    c = init
    for k, n in enumerate(config):
        for j in range(n):
            p = f"features.denseblock{k + 1}.denselayer{j + 1}"
            out += _bn(f"{p}.norm1", c) + _conv(f"{p}.conv1", bn_size * growth, c, 1, bias=False)
            out += _bn(f"{p}.norm2", bn_size * growth) + _conv(f"{p}.conv2", growth, bn_size * growth, 3, bias=False)
            c += growth
        if k != len(config) - 1:
            p = f"features.transition{k + 1}"
            out += _bn(f"{p}.norm", c) + _conv(f"{p}.conv", c // 2, c, 1, bias=False)
            c //= 2
    return out + _bn("features.norm5", c) + _linear("classifier", nc, c)


VGG_A = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
VGG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
TORCHVISION = {
    "vgg11": lambda: tv_vgg(VGG_A),
    "vgg16": lambda: tv_vgg(VGG_D),
    "resnet18": lambda: tv_resnet([2, 2, 2, 2]),
    "resnet34": lambda: tv_resnet([3, 4, 6, 3]),
    "squeezenet1_0": lambda: tv_squeezenet("1_0"),
    "squeezenet1_1": lambda: tv_squeezenet("1_1"),
    "densenet121": tv_densenet,
}
# VGG's stages are blocks (features.stage3.1.conv); torchvision's make_layers numbers a flat nn.Sequential
# (features.8): same order and shapes, different names, so VGG imports by order (or with a key map).
SAME_NAMES = {"resnet18", "resnet34", "squeezenet1_0", "squeezenet1_1", "densenet121"}


# ------------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", MODELS)
def test_params_and_macs_exact(name):
    params, macs, last_layer = NUMBERS[name]
    graph = load(name).graph
    assert graph.param_count == params
    assert graph.macs == macs
    assert list(graph.shape(graph.output)) == [6]
    two = load(name, num_classes=2).graph
    assert graph.param_count - two.param_count == last_layer
    assert list(two.shape(two.output)) == [2]


@pytest.mark.parametrize("name", MODELS)
def test_torchvision_state_dict_layout(name):
    spec = [(k, tuple(p.shape)) for k, p in load(name).graph.parameters()]
    expected = TORCHVISION[name]()
    assert [s for _, s in spec] == [s for _, s in expected]  # order and shapes: by-order import
    if name in SAME_NAMES:
        assert spec == expected  # names too: name-based import of a torchvision checkpoint


# One of each family's lowering (plain chain + big linear head, residual adds, concat DAG + ceil_mode pooling,
# dense concats + avgpool transitions); all seven were checked once against torchvision-structured modules.
@pytest.mark.parametrize("name", ["vgg11", "resnet18", "squeezenet1_0", "densenet121"])
def test_forward_batch1(name):
    assert_forward_batch1(name)


def test_resnet_shortcuts():
    """Identity shortcuts add the block input; projection shortcuts add downsample.1 (conv1x1 + BN)."""
    g = load("resnet34").graph
    add = lambda n: [str(r) for r in g.nodes[n].inputs]  # noqa: E731
    assert add("layer1.0.add") == ["layer1.0.bn2", "maxpool"]
    assert add("layer1.2.add") == ["layer1.2.bn2", "layer1.1.relu_out"]
    assert add("layer2.0.add") == ["layer2.0.bn2", "layer2.0.downsample.1"]
    assert add("layer3.5.add") == ["layer3.5.bn2", "layer3.4.relu_out"]
    assert str(g.nodes["layer2.0.downsample.0"].inputs[0]) == "layer1.2.relu_out"
    assert g.nodes["layer2.0.downsample.0"].attrs["stride"] in (2, (2, 2), [2, 2])


def test_cli_check_json():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tcc.cli.main",
            "check",
            str(BASELINES / "squeezenet1_1.yaml"),
            "--json",
            "--set",
            "num_classes=2",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    data = json.loads(out)
    params, macs, last_layer = NUMBERS["squeezenet1_1"]
    assert data["params"] == params - last_layer
    assert data["macs"] == macs - 4 * 512 * 13 * 13  # the final 1x1 conv runs at 13x13
    assert data["layers"][-1]["shape"] == [2]
    assert {"name", "op", "shape", "params", "macs"} <= set(data["layers"][1])


RESNET50 = """\
kind: model
name: resnet50
params: {num_classes: 6}
input: {shape: [3, 224, 224]}
layers:
  - {id: conv1, op: conv2d, out: 64, kernel: 7, stride: 2, padding: 3, bias: false}
  - {id: bn1, op: batchnorm}
  - {id: relu, op: relu}
  - {id: maxpool, op: maxpool, kernel: 3, stride: 2, padding: 1}
  - id: layer
    repeat: 4
    var: s
    name: "layer${s + 1}"
    body:
      - block: resnet_bottleneck
        repeat: "${[3, 4, 6, 3][s]}"
        var: b
        name: "${b}"
        planes: "${64 * 2 ** s}"
        stride: "${2 if s > 0 and b == 0 else 1}"
  - {id: avgpool, op: adaptive_avgpool, size: 1}
  - {id: flatten, op: flatten}
  - {id: fc, op: linear, out: "${num_classes}"}
"""


def test_resnet_bottleneck_block_is_torchvision_resnet50(tmp_path):
    spec = tmp_path / "resnet50.yaml"
    spec.write_text(RESNET50)
    g = tcc.load_spec(spec).graph
    # torchvision resnet50: 25,557,032 params and 4,089,184,256 MACs at 1000 classes
    assert g.param_count == 25_557_032 - 994 * 2049
    assert g.macs == 4_089_184_256 - 994 * 2048
    add = lambda n: [str(r) for r in g.nodes[n].inputs]  # noqa: E731
    assert add("layer1.0.add") == ["layer1.0.bn3", "layer1.0.downsample.1"]  # 64 -> 256 channels at stride 1
    assert add("layer1.1.add") == ["layer1.1.bn3", "layer1.0.relu_2"]
    assert [k for k, _ in g.parameters()][6:12] == [
        "layer1.0.conv1.weight",
        "layer1.0.bn1.weight",
        "layer1.0.bn1.bias",
        "layer1.0.bn1.running_mean",
        "layer1.0.bn1.running_var",
        "layer1.0.bn1.num_batches_tracked",
    ]


def test_conv_bn_relu_block(tmp_path):
    spec = tmp_path / "cbr.yaml"
    spec.write_text(
        "kind: model\nname: cbr\ninput: {shape: [3, 32, 32]}\nlayers:\n"
        "  - {id: a, block: conv_bn_relu, out: 16, stride: 2}\n"
        "  - {id: b, block: conv_bn_relu, out: 16, kernel: 5, dilation: 2, groups: 16}\n"
        "  - {id: c, block: conv_bn_relu, out: 8, kernel: 1, act: false, eps: 0.001}\n"
    )
    g = tcc.load_spec(spec).graph
    assert list(g.nodes)[1:] == ["a.conv", "a.bn", "a.relu", "b.conv", "b.bn", "b.relu", "c.conv", "c.bn"]
    assert g.nodes["a.conv"].shape == (16, 16, 16)
    assert g.nodes["b.conv"].shape == (16, 16, 16)  # padding (5 - 1) // 2 * 2 keeps the size
    assert g.nodes["c.bn"].attrs["eps"] == 0.001
    assert g.param_count == (3 * 9 * 16 + 32) + (25 * 16 + 32) + (16 * 8 + 16)
