"""The `tcc train` subcommand: its argument parser and the function the CLI calls."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand to tcc's parser (called by tcc.cli.build_parser)."""
    p = sub.add_parser("train", help="(not built yet)")
    p.set_defaults(func=run)


def run(args) -> int:
    raise NotImplementedError
