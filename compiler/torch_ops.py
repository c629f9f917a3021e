"""PyTorch modules for the ops of tcc.ops whose lowering needs more than one torch.nn module or function.

Each keeps the parameter names and shapes of the torchvision module it stands for, so that a torchvision
state_dict imports: `ChannelLinear` is nn.Linear (`weight` [out, in], `bias` [out]) applied over the channel axis
of an NCHW tensor (ConvNeXt runs its pointwise MLP as nn.Linear on NHWC); `AxisLayerNorm` is nn.LayerNorm over one
axis (torchvision's LayerNorm2d is nn.LayerNorm over the channel axis); `Scale` is a learnable per-channel factor
(ConvNeXt's `layer_scale`, registered as [C, 1, 1] for a [C, H, W] input); `StochasticDepth` is
torchvision.ops.StochasticDepth (the identity at inference).
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelLinear(nn.Linear):
    """nn.Linear applied at every position of an [N, C, ...] tensor: the channel axis moved last and back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class AxisLayerNorm(nn.LayerNorm):
    """nn.LayerNorm over one axis of the input (1: the channels of [N, C, H, W], i.e. torchvision's LayerNorm2d;
    the last axis: nn.LayerNorm itself)."""

    def __init__(self, size: int, axis: int, eps: float, affine: bool):
        super().__init__(size, eps=eps, elementwise_affine=affine)
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.axis in (-1, x.dim() - 1):
            return super().forward(x)
        return super().forward(x.movedim(self.axis, -1)).movedim(-1, self.axis)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, axis={self.axis}"


class Scale(nn.Module):
    """x * weight, with a learnable per-channel weight broadcast along the other axes (ConvNeXt's layer scale)."""

    per_channel_factor = True  # seeded random weights treat it like a BatchNorm weight (tcc.lower.to_torch)

    def __init__(self, shape: tuple, init: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full(shape, float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def stochastic_depth(x: torch.Tensor, p: float, mode: str, keep: torch.Tensor | None = None) -> torch.Tensor:
    """torchvision.ops.stochastic_depth in training: each sample (`row`) or the whole batch (`batch`) is zeroed with
    probability p and the rest scaled by 1 / (1 - p). `keep`: the Bernoulli(1 - p) draws, one per sample or one
    (drawn here from torch's generator when None)."""
    survival = 1.0 - p
    if keep is None:
        shape = [x.shape[0]] + [1] * (x.dim() - 1) if mode == "row" else [1] * x.dim()
        keep = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(survival)
    if survival > 0.0:
        keep = keep / survival
    return x * keep


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth: random residual-branch dropping in training, the identity in eval mode."""

    def __init__(self, p: float, mode: str):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return stochastic_depth(x, self.p, self.mode)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


def global_max_pool(x: torch.Tensor) -> torch.Tensor:
    """Max over H and W, keeping [N, C, 1, 1]."""
    return torch.amax(x, dim=(2, 3), keepdim=True)


def reshape(x: torch.Tensor, shape: tuple) -> torch.Tensor:
    """The same elements in another per-sample shape (the batch axis kept)."""
    return x.reshape(x.shape[0], *shape)


def slice_axis(x: torch.Tensor, axis: int, start: int, stop: int, step: int) -> torch.Tensor:
    """x[start:stop:step] along `axis`."""
    return x[(slice(None),) * axis + (slice(start, stop, step),)]


def matmul(a: torch.Tensor, b: torch.Tensor, transpose_b: bool, scale: float) -> torch.Tensor:
    """a @ b (b with its last two axes swapped with `transpose_b`), times a constant (attention's 1 / sqrt(d))."""
    product = torch.matmul(a, b.transpose(-2, -1) if transpose_b else b)
    return product * scale if scale != 1.0 else product


class LearnedTensor(nn.Module):
    """A learned tensor stored [1, ...] (a class token, a position embedding: torchvision's and timm's layout),
    repeated over the batch of the input, which gives only the batch size."""

    def __init__(self, shape: tuple, std: float):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, *shape))
        if std > 0:
            nn.init.normal_(self.weight, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight.expand(x.shape[0], *self.weight.shape[1:])


class RelativePositionBias(nn.Module):
    """scores + table[index] as [heads, N, N]: torchvision's relative position bias (Swin, MaxViT), the learned
    table `weight` [(2h - 1)(2w - 1), heads] and the constant `index` buffer ([N N] or [N, N], as torchvision
    stores it: it is in the state_dict)."""

    def __init__(self, heads: int, window: tuple[int, int], index):
        super().__init__()
        rows = (2 * window[0] - 1) * (2 * window[1] - 1)
        self.weight = nn.Parameter(nn.init.trunc_normal_(torch.zeros(rows, heads), std=0.02))
        self.register_buffer("index", torch.from_numpy(index))
        self.positions = window[0] * window[1]

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        n = self.positions
        bias = self.weight[self.index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)
        return scores + bias


class AddConstant(nn.Module):
    """x + a constant (Swin's shifted-window mask), kept as a buffer outside the state_dict."""

    def __init__(self, values):
        super().__init__()
        self.register_buffer("constant", torch.from_numpy(values), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.constant


class Resize(nn.Module):
    """A resize of H and W by gathers along each axis (tcc.ops.spatial.resize_axis's tables, ONNX Runtime's
    sampling): nearest reads one row per output row, bilinear two, mixed by their weight, bicubic four, summed with
    theirs. The tables are buffers kept out of the state_dict (derived from the spec, never weights)."""

    def __init__(self, axes: list[dict]):
        super().__init__()
        self.keys = []
        for axis, table in enumerate(axes):
            for key, values in table.items():
                self.register_buffer(f"{key}_{axis}", torch.from_numpy(values), persistent=False)
            self.keys.append(tuple(table))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for axis, keys in enumerate(self.keys):
            dim = 2 + axis
            if keys == ("index",):
                x = x.index_select(dim, getattr(self, f"index_{axis}"))
                continue
            if keys == ("taps", "weights"):
                taps, weights = getattr(self, f"taps_{axis}"), getattr(self, f"weights_{axis}").to(x.dtype)
                x = sum(
                    x.index_select(dim, taps[:, k]) * weights[:, k].reshape([-1] + [1] * (1 - axis)) for k in range(4)
                )
                continue
            w = getattr(self, f"w_{axis}").to(x.dtype).reshape([-1] + [1] * (1 - axis))
            lo = x.index_select(dim, getattr(self, f"i0_{axis}"))
            hi = x.index_select(dim, getattr(self, f"i1_{axis}"))
            x = lo * (1 - w) + hi * w
        return x


def crop(x: torch.Tensor, pads: tuple) -> torch.Tensor:
    """x[..., t : H - b, l : W - r]: the full output of a transposed convolution cut by its pads."""
    t, l, b, r = pads
    return x[..., t : x.shape[-2] - b, l : x.shape[-1] - r]
