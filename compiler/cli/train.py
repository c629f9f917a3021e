"""The `tcc train` subcommand: its argument parser and the function the CLI calls."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

from ..spec.train_options import OPTIONS
from ..train.config import render

_DESCRIPTION = """\
Train a spec's PyTorch lowering on a folder of labelled images: DIR/<class>/*.png (a seeded stratified split) or
DIR/train/<class>/... and DIR/val/<class>/...; sorted class folder names are the labels. Writes RUN/best.pt (a
state_dict by the spec's names: tcc build SPEC --weights RUN/best.pt), RUN/last.pt (for --resume), RUN/log.json,
RUN/curves.png and RUN/config.yaml (every option resolved: --config RUN/config.yaml repeats the run).

Options come from (lowest first) the defaults, the spec's train: section, --config FILE and the flags below.
With --nproc N (or under torchrun --nproc_per_node N -m tcc train ...) N processes train with
DistributedDataParallel and give the same result as one process: --batch-size is the global batch."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand to tcc's parser (called by tcc.cli.main.build_parser)."""
    p = sub.add_parser("train", help="train a spec on a folder of labelled images (one process or many, torchrun)",
                       description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", nargs="?", help="model spec (YAML or JSON) or a zoo model's name; with --resume RUN it "
                                           "may be left out (the run's own is used)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model parameter (repeatable), e.g. --set num_classes=3")
    p.add_argument("-o", "--output", metavar="RUN", help="the run's folder (appears with the first finished epoch)")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last finished epoch, with its options")
    p.add_argument("--config", metavar="FILE", help="YAML of options (the keys of a spec's train: section)")
    p.add_argument("--force", action="store_true", help="replace an existing run in -o RUN")
    p.add_argument("--stop-after", type=int, metavar="EPOCH",
                   help="stop after this epoch (for job time limits); --resume RUN continues")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    options = p.add_argument_group("training options (also in a train: section or --config file)")
    for o in OPTIONS:
        if o.name == "set":  # the --set above
            continue
        if o.schema.get("type") == "boolean":
            options.add_argument(o.flag, dest=o.name, action=argparse.BooleanOptionalAction, default=None,
                                 help=o.help)
        else:
            options.add_argument(o.flag, dest=o.name, metavar=o.flag_metavar, help=o.help + _default(o.default))
    p.set_defaults(func=run)


def _default(value) -> str:
    if value is None:
        return ""
    return f" (default: {','.join(value) if isinstance(value, list) else value})"


def run(args) -> int:
    from ..train.distributed import main_process, under_torchrun  # deferred for start-up: loads torch
    from ..train.plan import prepare  # deferred for start-up: loads numpy, torch

    notes: list[str] = []
    plan = prepare(args, log=notes.append)  # every check, also before starting torchrun
    if plan.world > 1 and not under_torchrun():
        return _launch(plan, args)
    if main_process():
        for note in notes:
            print(note, file=sys.stderr)
    return _train(plan, args)


def _launch(plan, args) -> int:
    """Start torchrun with this run's resolved options (a temp config file), so every process trains the same."""
    from ..train.distributed import launch  # deferred for start-up: loads torch

    with tempfile.TemporaryDirectory(prefix="tcc-train-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(render(plan.config, Path(tmp)), encoding="utf-8")
        argv = [str(plan.spec), "--config", str(config), "--resume" if plan.resumed else "-o", str(plan.run)]
        argv += [flag for flag, on in (("--force", args.force), ("--progress", args.progress),
                                       ("--no-progress", args.progress is False)) if on]
        argv += ["--stop-after", str(plan.stop_after)] if plan.stop_after else []
        return launch(plan.world, argv)


def _train(plan, args) -> int:
    from ..train.distributed import LostPeer, lost_peer, processes  # deferred for start-up: loads torch
    from ..train.loop import Trainer, deterministic  # deferred for start-up: loads numpy, torch
    from ..train.rundir import clear_run  # deferred for start-up: loads torch

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    with processes(plan.config.device) as procs, deterministic(procs.device):
        if procs.main:
            print(f"data: {plan.split.describe()}; {procs.world} process{'es' if procs.world > 1 else ''} on "
                  f"{procs.device}", file=sys.stderr)
            if args.force and plan.resumed is None:
                clear_run(plan.run)
        try:
            history = Trainer(plan, procs, progress).fit(plan.stop_after)
        except RuntimeError as e:  # gloo / nccl: a peer process died mid-collective
            if procs.world == 1 or not lost_peer(e):
                raise
            raise LostPeer(f"training process rank {procs.rank}: another process of the run died; continue from "
                           f"the last finished epoch with: tcc train --resume {plan.run}") from None
        if procs.main:
            _summary(plan, history)
    return 0


def _summary(plan, history) -> None:
    c = plan.config
    done = history.epochs[-1]["epoch"] if history.epochs else 0
    if done < c.epochs:
        print(f"stopped after epoch {done} of {c.epochs}; continue with: tcc train --resume {plan.run}")
    # the model's own overrides: --set, and num_classes where the data or the checkpoint decided it
    sets = "".join(" --set " + shlex.quote(f"{k}={v if isinstance(v, str) else json.dumps(v)}")
                   for k, v in {**c.set, **plan.model.overrides}.items())
    print(f"best: epoch {history.best_epoch}, {c.metric} {history.best_value:.4f} -> {plan.run / 'best.pt'}; "
          f"build it with: tcc build {plan.spec}{sets} --weights {plan.run / 'best.pt'} --target ort")
