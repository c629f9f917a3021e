"""`tcc schema`: print the JSON Schema of spec documents."""

from __future__ import annotations

import argparse
import json

from ..spec.schema import build_schema


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of spec documents")
    p.set_defaults(func=run)


def run(args) -> int:
    print(json.dumps(build_schema(), indent=2))
    return 0
