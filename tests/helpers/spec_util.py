"""`tcc check` on a bad spec: the error's exact position and message (spec/test_errors.py and the spec tests that
check an error)."""

from __future__ import annotations

from pathlib import Path

from tcc.cli.main import main


def position(path: Path, needle: str) -> str:
    """`file:line:col` of the first occurrence of `needle` in the file (1-based, like the compiler's)."""
    text = path.read_text(encoding="utf-8")
    offset = text.index(needle)
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"{path}:{line}:{col}"


def check(path: Path, *args: str, capsys) -> tuple[int, str]:
    rc = main(["check", str(path), *args])
    out, err = capsys.readouterr()
    return rc, err


def assert_error(path: Path, at: str | None, *fragments: str, args=(), capsys, where: Path | None = None):
    """`tcc check` fails with exit 2, a message starting with the exact position, and the fragments."""
    rc, err = check(path, *args, capsys=capsys)
    assert rc == 2, err
    assert "Traceback" not in err
    if at is not None:
        expected = position(where or path, at)
        assert err.startswith(expected + ": "), f"expected position {expected}, got:\n{err}"
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in:\n{err}"
    return err
