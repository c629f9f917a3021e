"""Randomness keyed by (seed, epoch, sample index, stream), never drawn from a process's RNG.

A sample is augmented, and its dropout masks drawn, the same way whichever process and whichever batch position
it lands in: one process and N processes under torchrun (each holding 1/N of the global batch) compute the same
thing, and a resumed run the same as an uninterrupted one. Stream 0 is augmentation, stream 1 + k the k-th
dropout layer, the stochastic-depth layers the streams after those (a `batch`-mode layer keys its one draw per
global batch by the batch's step instead of a sample index).
"""

from __future__ import annotations

import numpy as np
import torch

AUGMENT_STREAM = 0


def _entropy(seed: int, epoch: int, index: int, stream: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, epoch, index, stream])


def sample_rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(_entropy(seed, epoch, index, stream))


def sample_generator(seed: int, epoch: int, index: int, stream: int) -> torch.Generator:
    state = int(_entropy(seed, epoch, index, stream).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(state)


class BatchKeys:
    """The epoch, step (the global batch's number in the epoch, the same in every process) and sample indices of
    the batch being trained on, shared by the model's dropout and stochastic-depth layers."""

    def __init__(self, seed: int):
        self.seed, self.epoch, self.step = seed, 0, 0
        self.indices: list[int] = []

    def set(self, epoch: int, indices: torch.Tensor, step: int = 0) -> None:
        self.epoch, self.step, self.indices = epoch, int(step), [int(i) for i in indices]
