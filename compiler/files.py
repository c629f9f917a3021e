"""Files a command writes for the user: the path checked before any long work, the bytes written atomically (a
temporary file beside the target, renamed over it), so an interrupted run never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import DataError, OutputExists


def is_onnx_file(path) -> bool:
    """An ONNX file given where a spec goes (every command imports it in memory: `tcc build model.onnx`)."""
    return path is not None and Path(str(path)).suffix.lower() == ".onnx"


def check_output(path: str | Path, suffixes: tuple[str, ...], rule: str) -> Path:
    """`path` ends in one of `suffixes` and lies in an existing, writable directory. `rule` is what the error says
    of a wrong suffix, e.g. "a quality report is written as .json or an image (.png, .svg, .pdf)"."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise DataError(f"{path}: {rule}, not {path.suffix or 'no suffix'!r}")
    parent = path.parent
    if not parent.is_dir():
        raise DataError(f"{path}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise DataError(f"{path}: directory {str(parent)!r} is not writable")
    if path.is_dir():
        raise DataError(f"{path}: is a directory")
    return path


def check_replaceable(path: str | Path, force: bool, hint: str = "") -> Path:
    """An output about to be written: refused (OutputExists, exit 2) where something is already there and `force`
    was not given, before any work; `hint`: another way out the error names (e.g. "--resume RUN continues it")."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not force:
        raise OutputExists(path, hint)
    return path


def check_replaceable_folder(path: str | Path, force: bool) -> Path:
    """An output folder a command writes files into: refused where it holds files and `force` was not given (an
    empty folder is taken as a new one; a file there is left to the command's own check of its output)."""
    path = Path(path)
    if path.is_dir() and any(path.iterdir()) and not force:
        raise OutputExists(path)
    return path


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(f)` on a temporary file beside `path`, then rename it to `path`; on any failure the temporary
    file is removed and `path` is left as it was."""

    def write_file(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    return atomic_file(path, write_file)


def atomic_file(path: str | Path, write: Callable[[Path], object]) -> Path:
    """atomic_write for a writer that wants a file name (tifffile's): `write(tmp)` fills the temporary file."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = Path(name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would create it: mkstemp's 0600 makes it private to this user
        os.close(fd)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
