"""`tcc zoo`: the model specs shipped with tcc, by the names every command takes in place of a spec path."""

from __future__ import annotations

import argparse
import json

from ..spec.zoo import zoo_models


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "zoo",
        help="list the shipped model specs: any command takes their name in place of a spec "
        "path (tcc build ddsnet --target arm-a7)",
    )
    p.add_argument("--paths", action="store_true", help="also print where each spec file lies")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    models = zoo_models()
    if args.json:
        print(
            json.dumps({m.name: {"group": m.group, "path": str(m.path), "summary": m.summary} for m in models.values()})
        )
        return 0
    width = max(len(name) for name in models)
    groups = (
        ("paper", "the seed papers' models and tcc's own"),
        ("baseline", "baselines (torchvision's families)"),
        ("segmentation", "segmenters (torchvision's)"),
    )
    for group, title in groups:
        print(f"{title}:")
        for m in models.values():
            if m.group == group:
                line = f"  {m.name.ljust(width)}  {m.summary}"
                print(line + (f"\n  {''.ljust(width)}  {m.path}" if args.paths else ""))
    return 0
