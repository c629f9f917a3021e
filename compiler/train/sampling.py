"""Sample order and batches, the same for one process and for N.

Training: every process builds torch's DistributedSampler with the run's seed (one process: num_replicas=1), so
all see the same permutation P of the training set (torch.randperm seeded with seed + epoch), and process r takes
P[r], P[r + N], P[r + 2N], ... in batches of b = B / N (B the global batch). Its k-th batch is
P[(k*b + j)*N + r] for j < b: over the N processes together exactly P[k*B : (k+1)*B], the one-process k-th batch.
The last partial batch is dropped (drop_last in the sampler and the loader), so every step is a full global
batch and each process does floor(n / B) steps; the order is new every epoch, so no sample is always left out.

Validation: process r evaluates samples r, r + N, ... (no padding, no sample twice); the results are gathered and
put back in sample order.
"""

from __future__ import annotations

from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..errors import DataError
from .distributed import Processes


def train_sampler(dataset: Dataset, procs: Processes, seed: int) -> DistributedSampler:
    return DistributedSampler(
        dataset, num_replicas=procs.world, rank=procs.rank, shuffle=True, seed=seed, drop_last=True
    )


def train_loader(
    dataset: Dataset, sampler: DistributedSampler, global_batch: int, procs: Processes, workers: int
) -> DataLoader:
    return DataLoader(
        dataset, batch_size=global_batch // procs.world, sampler=sampler, num_workers=workers, drop_last=True
    )


def val_loader(dataset: Dataset, global_batch: int, procs: Processes, workers: int) -> DataLoader:
    mine = list(range(procs.rank, len(dataset), procs.world))
    return DataLoader(dataset, batch_size=max(1, global_batch // procs.world), sampler=mine, num_workers=workers)


def batches(loader: DataLoader):
    """The loader's batches; a DataError in a worker process (an image that does not decode) comes back as the
    worker's one-line message, not wrapped in the worker's traceback."""
    try:
        yield from loader
    except DataError as e:
        last = str(e).strip().splitlines()[-1]
        raise DataError(last.removeprefix(f"{DataError.__module__}.{DataError.__name__}: ")) from None
