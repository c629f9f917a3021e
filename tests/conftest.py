"""Shared test fixtures (the shared helper functions and paths are in tests/helpers): a fixture that writes small
spec files; the suite's order: the longest files first."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from tests.helpers import TESTS, cores_per_worker

# In an xdist worker, before any test module imports torch (it reads these at import): OpenMP / MKL pools sized to
# the worker's share of the cores (the controller's environment, which workers inherit, is left alone).
if "PYTEST_XDIST_WORKER" in os.environ:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(cores_per_worker())


@pytest.fixture
def write(tmp_path):
    """write(name, text) -> Path: a dedented text file under tmp_path (folders created as needed)."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


def pytest_collection_modifyitems(items):
    """The files that took longest in the recorded run (tests/durations.json, written by tools/test_durations.py)
    first, the rest in their order: `--dist loadfile` hands each worker whole files as it frees up, and a long file
    handed out last runs alone at the end. The tests of a file keep their order."""
    seconds = json.loads((TESTS / "durations.json").read_text())["seconds"]
    paths = {item: item.nodeid.split("::")[0] for item in items}
    first_seen = {path: i for i, path in enumerate(dict.fromkeys(paths.values()))}
    items.sort(key=lambda item: (-seconds.get(paths[item], 0.0), first_seen[paths[item]]))
