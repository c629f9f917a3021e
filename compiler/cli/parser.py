"""tcc's argument parser: one subcommand per module of tcc.cli, each adding its own parser (`register`) beside the
function it runs; the order here is the order `tcc --help` lists them. Every parser states its options' defaults
and answers a mistyped choice with the nearest one ("did you mean")."""

from __future__ import annotations

import argparse

from ..errors import suggest
from . import (
    bench,
    build,
    calibrate,
    check,
    completion,
    diff,
    explain,
    golden,
    import_onnx,
    ops,
    predict,
    qat,
    report,
    schema,
    setup,
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
    setup,
    completion,
)


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that states each option's default where its text does not already say it (a switch's default, off,
    goes without saying)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text.lower()
            or default is None
            or default is False
            or default in ([], "")
            or default == argparse.SUPPRESS
            or action.nargs == 0
        ):
            return action.help
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class Parser(argparse.ArgumentParser):
    """argparse with tcc's help formatting and a suggestion for a mistyped choice (Python 3.14's suggest_on_error,
    for 3.11); subcommands' parsers are of this class too (argparse makes them with the parent's class)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def _check_value(self, action: argparse.Action, value) -> None:
        choices = action.choices
        if choices is not None and value not in choices:
            raise argparse.ArgumentError(
                action,
                f"invalid choice: {value!r}{suggest(value, choices)}; choose from {', '.join(map(repr, choices))}",
            )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tcc", description="declarative model-graph compiler for medical CNNs")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in COMMANDS:
        command.register(sub)
    parser.set_defaults(root_parser=parser)  # `tcc completion` writes its script from the whole parser
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tcc")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"
