"""Precise BatchNorm statistics: every BN layer's running mean and variance recomputed over training batches before
a validation or a checkpoint (fvcore's PreciseBN; Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021).

During training a BN layer keeps exponential running averages of its batches' statistics with a momentum. A slow
momentum (FastNet keeps Keras' 0.99, PyTorch's 0.01: an average over ~100 steps) on a short run leaves those averages
far behind the weights: in eval mode the model then normalizes with statistics of weights long gone, and a model
whose weights learned validates at chance. Here the model runs in train mode, without gradients, over a bounded
number of training batches; each BN layer's running statistics become the exact mean and (unbiased) variance of
everything its input held over those batches: per batch (count, mean, sum of squared deviations) in float64,
combined with Chan's parallel formula (batches of any size; under torchrun each process's share combined in rank
order, so N processes compute what one does up to float64 rounding). fvcore averages the batches' variances
instead, which misses the spread of the batch means.

Only BN layers run in train mode (they normalize by their batch, as in training); dropout and stochastic depth are
the identity, as at inference. Layers in `skip` (frozen ones) keep their statistics.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm as BatchNorm

from .distributed import Processes, gather


class _Moments:
    """Count, mean and sum of squared deviations per channel (float64), merged batch by batch."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, None, None

    def add(self, count: int, mean: torch.Tensor, m2: torch.Tensor) -> None:
        if count == 0:
            return
        if self.mean is None:
            self.count, self.mean, self.m2 = count, mean, m2
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * count / total)
        self.count = total

    def observe(self, x: torch.Tensor) -> None:
        dims = [0, *range(2, x.dim())]
        x = x.detach().double()
        count = x.numel() // x.size(1)
        mean = x.mean(dims)
        shape = [1, -1] + [1] * (x.dim() - 2)
        self.add(count, mean.cpu(), ((x - mean.view(shape)) ** 2).sum(dims).cpu())


def batchnorm_layers(module: nn.Module, skip: Iterable[str] = ()) -> list[tuple[str, BatchNorm]]:
    """The BN layers that keep running statistics, by module name, except those under a name in `skip`."""
    skip = tuple(skip)
    return [
        (name, m)
        for name, m in module.named_modules()
        if isinstance(m, BatchNorm)
        and m.track_running_stats
        and not any(name == s or name.startswith(s + ".") for s in skip)
    ]


@torch.no_grad()
def recompute_statistics(
    module: nn.Module,
    batches: Iterable[torch.Tensor],
    limit: int,
    procs: Processes = Processes(),
    skip: Iterable[str] = (),
) -> int:
    """Set every BN layer's running statistics (except under `skip`) to those of its input over the first `limit`
    of `batches` (each process's share of the global batch under torchrun: every process must pass the same number
    of batches). Returns the number of batches seen; the module is left in eval mode."""
    layers = batchnorm_layers(module, skip)
    if not layers or limit <= 0:
        module.eval()
        return 0
    moments = {name: _Moments() for name, _ in layers}
    hooks = [
        bn.register_forward_pre_hook(lambda m, args, name=name: moments[name].observe(args[0])) for name, bn in layers
    ]
    counters = [bn.num_batches_tracked.clone() for _, bn in layers]  # batches trained: not changed by this
    module.eval()
    for _, bn in layers:
        bn.train()  # normalize by the batch, as in training
    seen = 0
    try:
        for x in batches:
            if seen == limit:
                break
            module(x)
            seen += 1
    finally:
        for h in hooks:
            h.remove()
        for (_, bn), counter in zip(layers, counters):
            bn.num_batches_tracked.copy_(counter)
        module.eval()
    for name, bn in layers:
        total = _Moments()
        for part in gather((moments[name].count, moments[name].mean, moments[name].m2), procs):
            total.add(*part)
        if total.count == 0:  # a training-only head that eval mode does not run
            continue
        bn.running_mean.copy_(total.mean.to(bn.running_mean))
        bn.running_var.copy_((total.m2 / max(total.count - 1, 1)).to(bn.running_var))  # unbiased, as PyTorch's
    return seen


def momentum_lag(module: nn.Module, steps_per_epoch: int) -> tuple[float, int] | None:
    """(momentum, its averaging window in steps) of the slowest BN layer when that window is longer than an epoch:
    its running statistics trail the weights by more than an epoch of steps. None when they keep up."""
    momenta = [m.momentum for _, m in batchnorm_layers(module) if m.momentum is not None]
    if not momenta:
        return None
    slowest = min(momenta)
    window = round(1 / slowest) if slowest > 0 else 10**9
    return (slowest, window) if window > steps_per_epoch else None
