"""Hand-written PyTorch references for the two paper models (plain torch.nn, no tcc imports).

These are the independent references the tests compare the compiled specs (spec/ddsnet.yaml, spec/fastnet.yaml)
against. The module hierarchy mirrors the spec ids (``stem.conv``, ``dense1.layer0.dw.conv``, ``head.fc``, ...) and
the parameter registration order equals the spec's order, so weights can be copied by order.

DDSNet
    "DDSNet: A Lightweight Dense Depthwise Separable Network for Tumor Classification" (SAC '25), official code
    OldDreamInWind/DDSNet (see /work/shared/fixtures/ddsnet/SOURCE.md). 189,870 trainable parameters for 6 classes,
    283,742,064 MACs (conv + linear) at 224x224.

FastNet
    "FastNet" (IEEE IoT Journal 2023), Table IV + Sec. III-D, Fig. 8. 218,534 trainable parameters and 104,934,932
    MACs (conv + linear) for 2 classes at 256x256; the paper's 0.22M params / 210.31M FLOPs (FLOPs = 2 x MACs plus
    elementwise work, cf. its Fig. 7: 51 params, 2550 FLOPs = 2 x 1275 MACs).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

# ---------------------------------------------------------------------------------------------------------------
# DDSNet
# ---------------------------------------------------------------------------------------------------------------


def _conv_bn_relu(cin: int, cout: int, kernel: int, groups: int = 1) -> nn.Sequential:
    """conv (with bias) -> BN -> ReLU, as the original code's conv blocks (``depthwise``/``pointwise``)."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=True),
            bn=nn.BatchNorm2d(cout),
            relu=nn.ReLU(inplace=False),
        )
    )


class DDSLayer(nn.Module):
    """One DDSNet dense layer: depthwise 3x3 (bias) -> BN -> ReLU -> pointwise 1x1 (bias) -> BN -> ReLU.

    Returns only the new ``growth`` feature maps; the dense block concatenates them to its input.
    """

    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.dw = _conv_bn_relu(cin, cin, 3, groups=cin)
        self.pw = _conv_bn_relu(cin, growth, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class DenseBlock(nn.Module):
    """DenseNet block: layer k sees concat(input, out_0, ..., out_{k-1}); the result is that concat of everything."""

    def __init__(self, cin: int, num_layers: int, growth: int):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"layer{i}", DDSLayer(cin + i * growth, growth))
        self.out_channels = cin + num_layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class DDSTransition(nn.Sequential):
    """BN -> ReLU -> 1x1 conv (bias, halves the channels) -> 2x2 average pool."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            OrderedDict(
                bn=nn.BatchNorm2d(cin),
                relu=nn.ReLU(inplace=False),
                conv=nn.Conv2d(cin, cout, 1, bias=True),
                pool=nn.AvgPool2d(2, 2),
            )
        )


class DDSNet(nn.Module):
    """DDSNet. Channels 64 -> 192 -> 96 -> 224 -> 112 -> 240 -> 120 -> 248.

    stem: conv 7x7/2 3->64 (bias) -> BN -> ReLU -> maxpool 3/2/1
    dense1..dense4: 4 layers each, growth 32; trans1..trans3 between them
    head: BN -> ReLU -> global average pool -> flatten -> Linear(248, num_classes)
    """

    def __init__(self, num_classes: int = 6, growth: int = 32, layers_per_block: int = 4, num_blocks: int = 4):
        super().__init__()
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=True),
                bn=nn.BatchNorm2d(64),
                relu=nn.ReLU(inplace=False),
                pool=nn.MaxPool2d(3, stride=2, padding=1),
            )
        )
        ch = 64
        for b in range(1, num_blocks + 1):
            block = DenseBlock(ch, layers_per_block, growth)
            self.add_module(f"dense{b}", block)
            ch = block.out_channels
            if b < num_blocks:
                self.add_module(f"trans{b}", DDSTransition(ch, ch // 2))
                ch = ch // 2
        self.head = nn.Sequential(
            OrderedDict(
                bn=nn.BatchNorm2d(ch),
                relu=nn.ReLU(inplace=False),
                gap=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(1),
                fc=nn.Linear(ch, num_classes),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.children():
            x = m(x)
        return x


def ddsnet_checkpoint_state(sd: OrderedDict[str, torch.Tensor], model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """Map an official DDSNet checkpoint onto ``model.state_dict()`` keys.

    The original code registers the stem twice (``b1.*`` and ``net.0.*``); the 7 ``b1.*`` tensors must equal their
    ``net.0.*`` twins and are dropped. The remaining 259 tensors (parameters and BN buffers, including
    ``num_batches_tracked``) are mapped by order, with a shape check on every pair.
    """
    b1 = [k for k in sd if k.startswith("b1.")]
    for k in b1:
        twin = "net.0." + k[len("b1.") :]
        if twin not in sd or not torch.equal(sd[k], sd[twin]):
            raise ValueError(f"checkpoint key {k} is not a duplicate of {twin}")
    src = [(k, v) for k, v in sd.items() if not k.startswith("b1.")]
    dst = list(model.state_dict().items())
    if len(src) != len(dst):
        raise ValueError(f"checkpoint has {len(src)} tensors (without b1.*), model has {len(dst)}")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (sk, sv), (dk, dv) in zip(src, dst):
        if tuple(sv.shape) != tuple(dv.shape):
            raise ValueError(f"shape mismatch: checkpoint {sk} {tuple(sv.shape)} vs model {dk} {tuple(dv.shape)}")
        out[dk] = sv
    return out


# ---------------------------------------------------------------------------------------------------------------
# FastNet
# ---------------------------------------------------------------------------------------------------------------
#
# The reading of Table IV / Fig. 8 that reproduces BOTH 218,534 trainable params and 104,934,932 MACs (2 classes,
# 256x256) -- the only match among the 1,536 readings enumerated by tools/fastnet_readings.py (BN between depthwise and
# pointwise or not, BN after the
# pointwise or not, conv biases, a depthwise part in the 1x1 branch or not, channel flow of the 5x5 branch, BN after
# the expand conv, bias/BN on the final reduce conv, stem conv biases):
#
# * Stem / downsampling convs (Table IV rows 2/4, 8, 12): Conv2D 3x3 stride 2 'valid' (padding 0, so 256 -> 127 ->
#   63 -> 31 -> 15), no bias, then ReLU, then BatchNormalization (Keras order: activation inside Conv2D, BN after).
# * A depthwise-separable conv is a Keras SeparableConv2D: depthwise kxk (no bias) directly followed by pointwise 1x1
#   (no bias) -- NO BN/activation between them -- then BN, then ReLU6.
# * Multiscale block (M, N, B): 1x1 conv M -> M*N (no bias) -> BN -> ReLU6; three branches on the expanded tensor:
#     1x1 branch: separable with a 1x1 depthwise (M*N params) + pointwise M*N -> B, BN, ReLU6
#     3x3 branch: separable 3x3, M*N -> B, BN, ReLU6
#     5x5 branch: two separable 3x3 (Inception factorisation): M*N -> B, BN, ReLU6, then B -> B, BN, ReLU6
#   concat (3*B channels), 1x1 conv 3*B -> M (no bias, no BN, no activation), optional residual add of the input.
# * Multibranch block (M, N, B): 1x1 conv M -> M*N -> BN -> ReLU6; B parallel separable 3x3 branches M*N -> M*N, each
#   BN -> ReLU6; concat (B*M*N), 1x1 conv B*M*N -> M (no bias, no BN, no activation), optional residual add.
# * Block convs use 'same' padding (stride 1; 3x3 -> padding 1).
# * Head: global average pool -> Linear(32, num_classes) (the softmax of Table IV is left to the loss / caller).
# * BatchNorm everywhere uses Keras defaults: eps 1e-3, momentum 0.99 (PyTorch momentum 0.01).
#
# Counts do not pin down where ReLU6 sits; the placement above (after every BN inside a block) is the standard Keras
# "SeparableConv2D -> BN -> ReLU6" pattern and the paper's "ReLU6 ... in multiscale blocks and multibranch blocks".

FASTNET_BN_EPS = 1e-3
FASTNET_BN_MOMENTUM = 0.01

# (M, N, B_multiscale, B_multibranch) per stage, Table IV rows 6-7, 10-11, 14-15
FASTNET_STAGES = [(8, 1, 4, 2), (16, 2, 8, 4), (32, 4, 16, 8)]


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=FASTNET_BN_EPS, momentum=FASTNET_BN_MOMENTUM)


class SeparableConv(nn.Sequential):
    """Keras SeparableConv2D (no bias) -> BN -> ReLU6: depthwise kxk, pointwise 1x1, no BN between them."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__(
            OrderedDict(
                dw=nn.Conv2d(cin, cin, kernel, padding=kernel // 2, groups=cin, bias=False),
                pw=nn.Conv2d(cin, cout, 1, bias=False),
                bn=_bn(cout),
                act=nn.ReLU6(inplace=False),
            )
        )


class ConvReluBN(nn.Sequential):
    """FastNet stem/downsampling conv: 3x3 stride 2 'valid', no bias -> ReLU -> BN (Table IV)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(cin, cout, 3, stride=2, padding=0, bias=False),
                relu=nn.ReLU(inplace=False),
                bn=_bn(cout),
            )
        )


def _expand(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(conv=nn.Conv2d(cin, cout, 1, bias=False), bn=_bn(cout), act=nn.ReLU6(inplace=False))
    )


class MultiscaleBlock(nn.Module):
    """Fig. 8(a): expand M -> M*N, branches 1x1 / 3x3 / 5x5 (two 3x3) separable to B channels each, concat, 1x1 -> M."""

    def __init__(self, m: int, n: int, b: int, residual: bool = False):
        super().__init__()
        mn = m * n
        self.residual = residual
        self.expand = _expand(m, mn)
        self.branch1 = SeparableConv(mn, b, 1)
        self.branch3 = SeparableConv(mn, b, 3)
        self.branch5 = nn.Sequential(OrderedDict(sep0=SeparableConv(mn, b, 3), sep1=SeparableConv(b, b, 3)))
        self.reduce = nn.Conv2d(3 * b, m, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.expand(x)
        y = self.reduce(torch.cat([self.branch1(e), self.branch3(e), self.branch5(e)], dim=1))
        return x + y if self.residual else y


class MultibranchBlock(nn.Module):
    """Fig. 8(b): expand M -> M*N, B parallel separable 3x3 branches of M*N channels, concat (B*M*N), 1x1 -> M."""

    def __init__(self, m: int, n: int, b: int, residual: bool = False):
        super().__init__()
        mn = m * n
        self.residual = residual
        self.expand = _expand(m, mn)
        self.branches = nn.ModuleList(SeparableConv(mn, mn, 3) for _ in range(b))
        self.reduce = nn.Conv2d(b * mn, m, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.expand(x)
        y = self.reduce(torch.cat([br(e) for br in self.branches], dim=1))
        return x + y if self.residual else y


class FastNetStage(nn.Sequential):
    def __init__(self, cin: int, m: int, n: int, b_ms: int, b_mb: int, residual: bool):
        super().__init__(
            OrderedDict(
                down=ConvReluBN(cin, m),
                multiscale=MultiscaleBlock(m, n, b_ms, residual),
                multibranch=MultibranchBlock(m, n, b_mb, residual),
            )
        )


class FastNet(nn.Module):
    """FastNet, Table IV. Input 3x256x256; stem conv 3->64 (127x127), then three stages of
    [downsampling conv, multiscale block, multibranch block] at 63x63x8, 31x31x16, 15x15x32; GAP; Linear(32, classes).
    ``residual`` switches on the shortcut of every multiscale/multibranch block (paper's "Shortcut" column)."""

    def __init__(self, num_classes: int = 2, residual: bool = False):
        super().__init__()
        self.stem = ConvReluBN(3, 64)
        cin = 64
        for i, (m, n, b_ms, b_mb) in enumerate(FASTNET_STAGES, start=1):
            self.add_module(f"stage{i}", FastNetStage(cin, m, n, b_ms, b_mb, residual))
            cin = m
        self.head = nn.Sequential(
            OrderedDict(gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1), fc=nn.Linear(cin, num_classes))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.children():
            x = m(x)
        return x


# ---------------------------------------------------------------------------------------------------------------
# Counting helpers (independent of tcc)
# ---------------------------------------------------------------------------------------------------------------


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of Conv2d and Linear layers for one sample (hook based)."""
    total = 0

    def conv_hook(mod: nn.Conv2d, inp, out):
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total += out[0].numel() * k

    def linear_hook(mod: nn.Linear, inp, out):
        nonlocal total
        total += out[0].numel() * mod.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
