"""Training-time replacements of lowered modules (same parameter and buffer names, so the state_dict and
`tcc build --weights` are unchanged): dropout and stochastic depth keyed by sample (or step), and BatchNorm over
the global batch on CPU."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from ..torch_ops import StochasticDepth, stochastic_depth
from .sample_rng import BatchKeys, sample_generator


def replace_modules(root: nn.Module, kind: type, make: Callable[[nn.Module, int], nn.Module]) -> int:
    """Replace every submodule of type `kind` by make(old, k) at the same name (a GraphModule calls submodules
    by name); returns how many were replaced."""
    found = [(name, m) for name, m in root.named_modules() if isinstance(m, kind)]
    for k, (name, old) in enumerate(found):
        parent, _, leaf = name.rpartition(".")
        root.get_submodule(parent).add_module(leaf, make(old, k))
    return len(found)


class SampleDropout(nn.Module):
    """nn.Dropout whose mask for each sample comes from that sample's own generator (sample_rng): the same mask in
    one process or many, in any batch position."""

    def __init__(self, p: float, keys: BatchKeys, stream: int):
        super().__init__()
        self.p, self.keys, self.stream = p, keys, stream

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if len(self.keys.indices) != len(x):
            raise RuntimeError("SampleDropout: BatchKeys.set() was not called for this batch")
        keep = 1.0 - self.p
        masks = [torch.empty(x.shape[1:]).bernoulli_(keep, generator=self._generator(i)) for i in self.keys.indices]
        mask = torch.stack(masks).to(x.device, x.dtype)
        return x * mask / keep if keep > 0 else x * 0

    def _generator(self, index: int) -> torch.Generator:
        return sample_generator(self.keys.seed, self.keys.epoch, index, self.stream)


def key_dropout(root: nn.Module, keys: BatchKeys) -> int:
    """Every nn.Dropout becomes a SampleDropout reading the batch's keys (stream 1 + k for the k-th)."""
    return replace_modules(root, nn.Dropout, lambda old, k: SampleDropout(old.p, keys, 1 + k))


class SampleStochasticDepth(nn.Module):
    """torchvision's stochastic depth (tcc.torch_ops.stochastic_depth) whose draws come from the batch's keys:
    `row` one per sample from that sample's generator, `batch` one per global batch from the step's, so one
    process and many drop the same samples."""

    def __init__(self, p: float, mode: str, keys: BatchKeys, stream: int):
        super().__init__()
        self.p, self.mode, self.keys, self.stream = p, mode, keys, stream

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        k = self.keys
        if self.mode == "batch":
            keep = torch.empty([1] * x.dim()).bernoulli_(survival, generator=self._generator(k.step))
        else:
            if len(k.indices) != len(x):
                raise RuntimeError("SampleStochasticDepth: BatchKeys.set() was not called for this batch")
            keep = torch.stack(
                [torch.empty([1] * (x.dim() - 1)).bernoulli_(survival, generator=self._generator(i)) for i in k.indices]
            )
        return stochastic_depth(x, self.p, self.mode, keep.to(x.device, x.dtype))

    def _generator(self, index: int) -> torch.Generator:
        return sample_generator(self.keys.seed, self.keys.epoch, index, self.stream)


def key_stochastic_depth(root: nn.Module, keys: BatchKeys, first_stream: int) -> int:
    """Every StochasticDepth becomes a SampleStochasticDepth reading the batch's keys (stream first_stream + k)."""
    return replace_modules(
        root, StochasticDepth, lambda old, k: SampleStochasticDepth(old.p, old.mode, keys, first_stream + k)
    )


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: d(sum over processes)/d(each process's part)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _SumOverProcesses.apply(grad)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch (all processes together), on any device.

    nn.SyncBatchNorm does this on GPUs only (in torch 2.13 it raises for CPU tensors: it needs
    torch.batch_norm_stats, which has no CPU kernel). Here the per-channel sums are all-reduced by an autograd
    function whose backward all-reduces the gradients, so the gradient is the global batch's too. Two passes
    (the mean, then the centered sum of squares), as the one-process BatchNorm.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)  # the running statistics: nothing to share
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.new_tensor([x.numel() // x.size(1)])
        sums = _SumOverProcesses.apply(torch.cat([x.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        centered = x - mean.view(shape)
        var = _SumOverProcesses.apply((centered * centered).sum(dims)) / n
        self._track(mean.detach(), var.detach() * n / (n - 1))
        y = centered * torch.rsqrt(var + self.eps).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        """Running statistics exactly as nn.BatchNorm updates them (unbiased variance, momentum or, with
        momentum None, the cumulative average)."""
        if not self.track_running_stats:
            return
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(factor * mean)
        self.running_var.mul_(1 - factor).add_(factor * unbiased_var)


def _global(bn: nn.modules.batchnorm._BatchNorm, k: int) -> GlobalBatchNorm:
    g = GlobalBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    g.load_state_dict(bn.state_dict())
    return g.train(bn.training)


def global_batchnorm(root: nn.Module, device: torch.device) -> int:
    """BatchNorm over the global batch: nn.SyncBatchNorm on GPUs, GlobalBatchNorm elsewhere (call before moving
    the module to its device)."""
    if device.type == "cuda":
        return replace_modules(
            root, nn.modules.batchnorm._BatchNorm, lambda bn, k: nn.SyncBatchNorm.convert_sync_batchnorm(bn)
        )
    return replace_modules(root, nn.modules.batchnorm._BatchNorm, _global)
