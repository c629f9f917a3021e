"""tcc's argument parser: one subcommand per module of tcc.cli, each adding its own parser (`register`) beside the
function it runs; the order here is the order `tcc --help` lists them."""

from __future__ import annotations

import argparse

from . import (
    bench,
    build,
    calibrate,
    check,
    diff,
    explain,
    golden,
    import_onnx,
    ops,
    predict,
    qat,
    report,
    schema,
    slide,
    train,
    zoo,
)

COMMANDS = (
    check,
    predict,
    build,
    calibrate,
    import_onnx,
    ops,
    golden,
    diff,
    bench,
    report,
    train,
    qat,
    slide,
    explain,
    zoo,
    schema,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tcc", description="declarative model-graph compiler for medical CNNs")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser
