"""Damaged inputs, as tools/fuzz.py found them break tcc: a bundle whose file was edited and whose manifest was made to
agree (so that the edit reaches the file's reader past the sha256 check), a JSON file edited in place, and `tcc`
run in-process with its exit code and stderr."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

from tcc.cli.main import main


def tcc(*argv) -> tuple[int, str]:
    """`tcc ARGV` in this process: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    """Load the JSON file, let `edit` change the document in place, write it back."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    edit(doc)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")


def rehash(bundle: Path, name: str) -> None:
    """The bundle's manifest made to list `name` with its present sha256 and size, as a build would have."""
    data = (bundle / name).read_bytes()
    edit_json(
        bundle / "manifest.json",
        lambda m: m["files"].update({name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}}),
    )


def edit_bundle_json(bundle: Path, name: str, edit: Callable[[dict], None]) -> None:
    """A JSON file of the bundle edited, and the manifest made to agree."""
    edit_json(bundle / name, edit)
    rehash(bundle, name)
