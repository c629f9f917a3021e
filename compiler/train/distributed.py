"""Scale-out through torchrun: process groups, DistributedDataParallel, and `tcc train --nproc N` starting torchrun.

    torchrun --nproc_per_node 2 -m tcc train SPEC --data DIR -o RUN     # or: tcc train ... --nproc 2

Under torchrun every process runs the same command: gloo on CPU, nccl on GPU (one GPU per process), the model in
DistributedDataParallel with BatchNorm over the global batch (tcc.train.modules), each process 1/N of the global
batch; the main process (rank 0) alone logs and writes RUN. What makes N processes compute what one does is in
tcc.train.sampling (sample order), tcc.train.sample_rng (augmentation, dropout) and tcc.train.losses (the mean).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..errors import DataError


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ  # set by torchrun for each process


def main_process() -> bool:
    """Rank 0, or no torchrun: the process that talks to the user."""
    return int(os.environ.get("RANK", "0")) == 0


def world_size(nproc: int) -> int:
    """The number of training processes: torchrun's, or the one `--nproc` asks for."""
    return int(os.environ["WORLD_SIZE"]) if under_torchrun() else nproc


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DataError(f"--device cuda: this PyTorch ({torch.__version__}) sees no CUDA device")
    if local_rank >= torch.cuda.device_count():
        raise DataError(
            f"process {local_rank} has no GPU of its own ({torch.cuda.device_count()} here); start at "
            "most that many processes per machine, or train with --device cpu"
        )
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def processes(device_choice: str):
    """This process's place among the training processes; under torchrun the process group for the run."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        yield Processes(device=pick_device(device_choice))
        return
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    device = pick_device(device_choice, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Processes(rank, world, device)
        dist.barrier()  # leave together: a process tearing down its group while another still writes RUN aborts
    finally:
        dist.destroy_process_group()


def wrap(module: torch.nn.Module, procs: Processes) -> torch.nn.Module:
    """DistributedDataParallel (gradients averaged over the processes) when there are several."""
    if procs.world == 1:
        return module
    return DistributedDataParallel(module, device_ids=[procs.device.index] if procs.device.type == "cuda" else None)


def gather(obj, procs: Processes) -> list:
    """Every process's `obj`, in rank order, on every process."""
    if procs.world == 1:
        return [obj]
    out = [None] * procs.world
    dist.all_gather_object(out, obj)
    return out


class LostPeer(DataError):
    """A surviving training process whose peer died: one line (the launcher names the dead rank), exit 2."""


def lost_peer(e: BaseException) -> bool:
    """Whether a collective failed because a peer process went away (gloo's and nccl's words for it)."""
    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    text = str(e)
    return any(w in text for w in ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "gloo"))


def launch(nproc: int, argv: list[str], command: str = "train") -> int:
    """Run `tcc COMMAND ARGV` (train, qat) in `nproc` processes under torchrun (`--standalone`: this machine, a free
    port), through tcc.train.launcher, which turns a dead process into one line (and, for a training run, the command
    that resumes it)."""
    argv_all = [
        sys.executable,
        "-m",
        "tcc.train.launcher",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "tcc",
        command,
        *argv,
    ]
    sys.stdout.flush()
    return subprocess.run(argv_all).returncode
