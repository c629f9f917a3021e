"""Shared test fixtures (the shared helper functions and paths are in tests/helpers): a fixture that writes small
spec files."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def write(tmp_path):
    """write(name, text) -> Path: a dedented text file under tmp_path (folders created as needed)."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write
