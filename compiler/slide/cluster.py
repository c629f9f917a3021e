"""Patch batches on a Dask distributed cluster: an existing one (--scheduler ADDRESS) or a LocalCluster of worker
processes started for the run (--dask / --workers N).

Each batch is one task calling `predict_batch` (`segment_batch` for `--segment`), the function the single-process
run calls, so the numbers are the same. The model is loaded once per worker process (`load_runner` is cached by the
model's identity, and a task pinned to each worker loads it before the first batch, which also reports a model that
fails to load once, not per batch). Workers read the patches themselves: the images, spec, weights or bundle must be
at the same paths on them (a shared file system). Results are gathered in submission order.
"""

from __future__ import annotations

import contextlib
import logging
import os

import numpy as np

from ..errors import DataError, WorkerDied
from .infer import ModelSource, load_runner, predict_batch

START_ATTEMPTS = 3  # starts of a local cluster before a lost worker ends the run


def predict_on_dask(
    source: ModelSource,
    tasks: list[tuple],
    scheduler: str | None,
    workers: int | None,
    threads: int | None,
    on_done=lambda n: None,
    log=lambda s: None,
) -> list[np.ndarray]:
    """predict_batch(source, *task, threads) for every task, on the cluster; `on_done(patches)` as each batch
    finishes; `log` hears a local cluster started again."""
    with dask_batches(source, scheduler, workers, threads, log) as run:
        return run(predict_batch, tasks, [len(task[2]) for task in tasks], on_done)


@contextlib.contextmanager
def dask_batches(source: ModelSource, scheduler: str | None, workers: int | None, threads: int | None, log):
    """A cluster with the model loaded on every worker, as `run(function, tasks, counts, on_done)`: function(source,
    *task, threads) for every task on the workers, `on_done(count)` as each finishes, the results in task order.
    One cluster serves many calls (`tcc slide --segment` sends one band of tiles at a time). On the local cluster
    `threads` defaults to the cores shared among the workers; on an existing one, to whatever the workers have."""
    from distributed import as_completed  # deferred for start-up: loads dask.distributed

    with _client(scheduler, workers, log) as client:
        _warm_up(client, source)
        if threads is None and not scheduler:
            threads = max(1, (os.cpu_count() or 1) // len(client.scheduler_info()["workers"]))

        def run(function, tasks: list[tuple], counts: list[int], on_done=lambda n: None) -> list:
            futures = [client.submit(function, source, *task, threads, pure=False) for task in tasks]
            sizes = {f.key: n for f, n in zip(futures, counts)}
            for done in as_completed(futures):
                if done.status == "error":
                    done.result()  # raises the worker's exception here (a DataError keeps its message and exit code)
                on_done(sizes[done.key])
            return client.gather(futures)

        yield run


def _warm_up(client, source: ModelSource) -> None:
    """Load the model on every worker now, as a task pinned to each (not client.run, which would block the
    worker's event loop while it loads), so a model that fails to load fails once, before any batch."""
    pinned = [
        client.submit(_load_model, source, workers=[w], allow_other_workers=False, pure=False)
        for w in client.scheduler_info()["workers"]
    ]
    client.gather(pinned)


def _load_model(source: ModelSource) -> None:
    load_runner(source)  # kept in the worker's cache; nothing comes back to the client


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None, log):
    from distributed import Client  # deferred for start-up: loads dask.distributed

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as e:
            raise DataError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler there ({e})") from None
        with client:
            yield client
        return
    with _local_cluster(workers, log) as cluster, Client(cluster) as client:
        yield client


def _local_cluster(workers: int | None, log):
    """A LocalCluster of `workers` processes, started again (up to START_ATTEMPTS times) where a worker is lost
    while it starts: distributed then fails the whole start ("Nanny failed to start"), and a busy machine's
    out-of-memory killer or a user's signal can do that; once started, a lost worker's tasks move to the others."""
    from distributed import LocalCluster  # deferred for start-up: loads dask.distributed

    n = workers or os.cpu_count() or 1
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            # one thread per worker process: the model runs one batch at a time on each, with the process's own BLAS
            return LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL
            )
        except (RuntimeError, OSError, TimeoutError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if attempt == START_ATTEMPTS:
                raise WorkerDied(
                    f"the local Dask cluster of {n} worker processes did not start in {attempt} tries (last: "
                    f"{reason}); fewer --workers, or a machine with more free memory"
                ) from None
            log(f"slide: a Dask worker was lost while the local cluster started ({reason}); starting it again")
    raise AssertionError("unreachable")
