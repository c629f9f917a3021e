"""`tcc setup`: prepare this machine for targets (the TVM targets' toolchains, TVM wheels and runtimes), from the
installed package alone."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "setup",
        help="prepare this machine for targets: TVM's toolchains, wheels and runtimes (once; idempotent)",
        description="prepare this machine for TARGETs: the cross compilers and qemu-user (Debian packages; apt-get "
        "as root, or sudo), the pinned TVM wheels and cmake / ninja in this Python environment (pip), and each "
        "TVM target's runtime and tcc-run, built or fetched once into ~/.cache/tcc ($TCC_CACHE_DIR). Each step is "
        "skipped when done. ONNX Runtime, TFLite and the AX kits need nothing.",
    )
    p.add_argument("targets", nargs="*", metavar="TARGET", help="targets to prepare (default: host arm-a7 aarch64)")
    p.add_argument(
        "--no-apt",
        dest="apt",
        action="store_false",
        help="never run apt-get: name the missing Debian packages and stop",
    )
    p.add_argument("--rebuild", action="store_true", help="build the cached runtimes again")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..api import setup  # deferred for start-up: the set-up's modules

    setup(args.targets or None, apt=args.apt, rebuild=args.rebuild, log=lambda line: print(line, file=sys.stderr))
    return 0
