"""One training run from its options, in this process or in N processes under torchrun: what `tcc train` and
tcc.api.train_model call. The options are a namespace with the `tcc train` flags' names (`args.epochs`,
`args.overrides`, ...); a value is the flag's text or, from the Python API, the value itself."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from .config import render
from .distributed import LostPeer, launch, lost_peer, main_process, processes, under_torchrun
from .loop import History, Trainer, deterministic
from .preflight import Plan, prepare
from .rundir import clear_run


@dataclass
class Trained:
    plan: Plan
    history: History | None  # None where this process only started torchrun's (RUN/log.json holds the epochs)
    returncode: int = 0  # torchrun's, where it ran the processes
    main: bool = True  # this process reports the run (rank 0, or the one that started torchrun)

    @property
    def run(self) -> Path:
        return self.plan.run


def train(args, log=lambda s: None, progress: bool = False, epoch_log=None) -> Trained:
    """Plan the run (every check, before torchrun starts), then train it here or launch torchrun's processes.
    `log` hears the notes and the data line, `epoch_log` (default: `log`) one line per finished epoch."""
    notes: list[str] = []
    plan = prepare(args, log=notes.append)
    if plan.world > 1 and not under_torchrun():
        return Trained(plan, None, _launch(plan, args))
    main = main_process()
    if main:
        for note in notes:
            log(note)
    return Trained(plan, _fit(plan, args.force, log, epoch_log or log, progress), main=main)


def _launch(plan: Plan, args) -> int:
    """Start torchrun with this run's resolved options (a temp config file), so every process trains the same."""
    with tempfile.TemporaryDirectory(prefix="tcc-train-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(render(plan.run_config(weights_in_run=False), Path(tmp)), encoding="utf-8")
        spec = plan.imported.argv() if plan.imported else [str(plan.spec)]  # each process imports the ONNX file
        argv = [*spec, "--config", str(config), "--resume" if plan.resumed else "-o", str(plan.run)]
        argv += [
            flag
            for flag, on in (
                ("--force", args.force),
                ("--progress", args.progress),
                ("--no-progress", args.progress is False),
            )
            if on
        ]
        argv += ["--stop-after", str(plan.stop_after)] if plan.stop_after else []
        return launch(plan.world, argv)


def _fit(plan: Plan, force: bool, log, epoch_log, progress: bool) -> History:
    with processes(plan.config.device) as procs, deterministic(procs.device):
        if procs.main:
            log(
                f"data: {plan.split.describe()}; {procs.world} process{'es' if procs.world > 1 else ''} on "
                f"{procs.device}"
            )
            if force and plan.resumed is None:
                clear_run(plan.run)
        try:
            return Trainer(plan, procs, progress).fit(plan.stop_after, log=epoch_log)
        except RuntimeError as e:  # gloo / nccl: a peer process died mid-collective
            if procs.world == 1 or not lost_peer(e):
                raise
            raise LostPeer(
                f"training process rank {procs.rank}: another process of the run died; continue from "
                f"the last finished epoch with: tcc train --resume {plan.run}"
            ) from None
