"""Arguments and checks that several `tcc` subcommands share (the spec with its `--set` overrides, the weights
options, a bundle that replaces them), so each command's parser says them the same way."""
from __future__ import annotations

import argparse
import sys

from ..errors import BuildError
from ..spec.loader import load_model, parse_overrides


def spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="model spec (YAML or JSON)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model parameter (repeatable), e.g. --set num_classes=2")


def weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", help="PyTorch state_dict (.pt/.pth), loaded with weights_only=True")
    p.add_argument("--by-order", action="store_true", help="match checkpoint tensors to the spec in order")
    p.add_argument("--key-map", help="YAML/JSON mapping of checkpoint keys (or 'prefix.') to spec names")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights used without --weights")


def load_spec(args):
    """The spec of `args.spec` with `args.overrides`, fitted to `args.weights` where the spec's checkpoint layouts
    read parameters from it (tcc.lower.weights.fit_to_checkpoint); its notes go to stderr."""
    model = load_model(args.spec, parse_overrides(args.overrides))
    if getattr(args, "weights", None):
        from ..lower.weights import fit_to_checkpoint  # deferred for start-up: loads torch

        model = fit_to_checkpoint(model, args.weights, args.by_order, args.key_map)
    for note in model.notes:
        print(f"note: {note}", file=sys.stderr)
    return model


def refuse_with_artifact(args) -> None:
    """With --artifact the bundle's spec, weights and parameters are baked in: a SPEC or weights option given as
    well is a mistake (exit 2), not silently ignored."""
    baked = [flag for flag, on in [("SPEC", args.spec), ("--weights", args.weights), ("--by-order", args.by_order),
                                    ("--key-map", args.key_map), ("--set", args.overrides)] if on]
    if baked:
        raise BuildError(f"--artifact runs a built bundle: its spec, weights and parameters are baked in; "
                         f"drop {', '.join(baked)}")
