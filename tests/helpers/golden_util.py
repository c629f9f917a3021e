"""Shared by the golden-suite tests: the repository's golden set, and a private copy of one of its models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers import GOLDEN


def copy_model(name: str, dest: Path, entries: list[str]) -> Path:
    """A golden set at `dest` holding model `name` of the repository's set (its stored data copied, its plan
    with absolute paths) restricted to `entries`."""
    from tcc.golden import load_plan

    mp = load_plan(GOLDEN).models[name]
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(GOLDEN / name, dest / name)
    doc = json.loads((GOLDEN / "golden.json").read_text())
    doc["models"] = {name: doc["models"][name]}
    (dest / "golden.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    plan = {
        "format": "tcc-golden/1",
        "models": {
            name: {
                "spec": str(mp.spec),
                "set": mp.overrides,
                **({"weights": str(mp.weights)} if mp.weights else {}),
                "by_order": mp.by_order,
                "inputs": {"seeded": mp.seeded, "images": [str(p) for p in mp.images]},
                "calibration": {
                    "method": mp.calibration.method,
                    "crops": mp.calibration.crops,
                    "seed": mp.calibration.seed,
                    "images": [str(p) for p in mp.calibration.images],
                },
                "int8_floor": mp.int8_floor,
                "entries": entries,
            }
        },
    }
    (dest / "golden.yaml").write_text(json.dumps(plan, indent=1))
    return dest
