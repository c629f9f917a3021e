"""The `tcc train` subcommand: its argument parser and the function the CLI calls."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from ..spec.train_options import OPTIONS
from .args import overrides_arg, progress_arg

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
    p = sub.add_parser(
        "train",
        help="train a spec on a folder of labelled images (one process or many, torchrun)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "spec",
        nargs="?",
        help="model spec (YAML or JSON), a zoo model's name or an ONNX file (imported "
        "with its weights, kept in RUN/spec.yaml); with --resume RUN it may be "
        "left out (the run's own is used)",
    )
    overrides_arg(p, "override a model parameter (repeatable), e.g. --set num_classes=3")
    p.add_argument("-o", "--output", metavar="RUN", help="the run's folder (appears with the first finished epoch)")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last finished epoch, with its options")
    p.add_argument("--config", metavar="FILE", help="YAML of options (the keys of a spec's train: section)")
    p.add_argument("--force", action="store_true", help="replace an existing run in -o RUN")
    p.add_argument(
        "--stop-after",
        type=int,
        metavar="EPOCH",
        help="stop after this epoch (for job time limits); --resume RUN continues",
    )
    progress_arg(p)
    options = p.add_argument_group("training options (also in a train: section or --config file)")
    for o in OPTIONS:
        if o.name == "set":  # the --set above
            continue
        if o.schema.get("type") == "boolean":
            options.add_argument(o.flag, dest=o.name, action=argparse.BooleanOptionalAction, default=None, help=o.help)
        else:
            options.add_argument(o.flag, dest=o.name, metavar=o.flag_metavar, help=o.help + _default(o.default))
    p.set_defaults(func=run)


def _default(value) -> str:
    if value is None or value in ([], ""):  # nothing by default (an empty list: none frozen)
        return ""
    return f" (default: {','.join(value) if isinstance(value, list) else value})"


def run(args) -> int:
    from ..api import train_model  # deferred for start-up: loads numpy, onnx

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    options = {o.name: getattr(args, o.name) for o in OPTIONS if o.name != "set"}
    trained = train_model(
        args.spec,
        output=args.output,
        resume=args.resume,
        config=args.config,
        force=args.force,
        stop_after=args.stop_after,
        overrides=args.overrides,
        progress=progress,
        log=lambda s: print(s, file=sys.stderr),
        epoch_log=print,
        **options,
    )
    if trained.history is None:  # torchrun's processes trained and reported
        return trained.returncode
    if trained.main:
        _summary(trained.plan, trained.history)
    return 0


def _summary(plan, history) -> None:
    c = plan.config
    done = history.epochs[-1]["epoch"] if history.epochs else 0
    if done < c.epochs:
        print(f"stopped after epoch {done} of {c.epochs}; continue with: tcc train --resume {plan.run}")
    # the model's own overrides: --set, and num_classes where the data or the checkpoint decided it
    sets = "".join(
        " --set " + shlex.quote(f"{k}={v if isinstance(v, str) else json.dumps(v)}")
        for k, v in {**c.set, **plan.model.overrides}.items()
    )
    print(
        f"best: epoch {history.best_epoch}, {c.metric} {history.best_value:.4f} -> {plan.run / 'best.pt'}; "
        f"build it with: tcc build {plan.kept_spec}{sets} --weights {plan.run / 'best.pt'} --target ort"
    )
