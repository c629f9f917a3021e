"""The `tcc explain` subcommand: its argument parser and the function the CLI calls."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `explain` subcommand to tcc's parser (called by tcc.cli.build_parser)."""
    p = sub.add_parser("explain", help="(not built yet)")
    p.set_defaults(func=run)


def run(args) -> int:
    raise NotImplementedError
