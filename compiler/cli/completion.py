"""`tcc completion SHELL`: the shell's completion script for tcc, generated from the parser itself (shtab), so it
knows every command, option and choice of this version."""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "tcsh")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description='print the completion script of SHELL; e.g. in ~/.bashrc: eval "$(tcc completion bash)", or '
        "tcc completion zsh > ~/.zfunc/_tcc",
    )
    p.add_argument("shell", choices=SHELLS, help="the shell the script is for")
    p.set_defaults(func=run)


def run(args) -> int:
    import shtab  # deferred for start-up: only this command needs it

    parser = args.root_parser  # set by tcc.cli.parser.build_parser (importing it here would be a circle)
    _paths_complete_as_files(parser, shtab.FILE)
    print(shtab.complete(parser, shell=args.shell))
    return 0


def _paths_complete_as_files(parser: argparse.ArgumentParser, file: dict) -> None:
    """Every argument that takes a free-form string (specs, weights, data, outputs) completes as a path; numbers
    and choices complete as themselves."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                _paths_complete_as_files(sub, file)
        elif action.nargs != 0 and action.choices is None and action.type is None and action.dest != "help":
            action.complete = file  # type: ignore[attr-defined]  # shtab reads this attribute
