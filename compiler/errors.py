"""Errors that point at their cause.

Every user mistake ends in one of these; the CLI prints `str(err)` and exits with `err.exit_code`, never a
traceback. A `Location` is carried by every spec value, so errors raised long after parsing still say where.
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable
from dataclasses import dataclass

from .python_wording import python_wording


def suggest(word: object, options: Iterable[object]) -> str:
    """ " (did you mean 'arm-a7'?)" for the closest of `options` to a mistyped `word` (difflib), or ""."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class TccError(Exception):
    """Base of every error tcc reports to a user. A message is written as the command line says it (naming its
    flags: "--calib-size 0: ..."); `str()` says it to a Python caller, the flags as the API's keywords
    (tcc.python_wording), and `for_cli()` as written."""

    exit_code = 1

    def __init__(self, *args: object, cli: str | None = None):
        """`cli`: the command line's message where the table cannot translate it: then the message is the Python
        caller's as given."""
        super().__init__(*args)
        self._cli = cli

    def __str__(self) -> str:
        raw = self._message()
        return self._framed(raw if self._cli is not None else python_wording(raw))

    def for_cli(self) -> str:
        """The message as the command line says it."""
        return self._framed(self._cli if self._cli is not None else self._message())

    def _message(self) -> str:
        return super().__str__()

    def _framed(self, message: str) -> str:
        """The message with what the error adds around it (a spec location, a node)."""
        return message


class SpecError(TccError):
    """A spec is wrong: syntax, schema, semantics or shapes. Exit code 2."""

    exit_code = 2

    def __init__(self, message: str, where: Location | None = None):
        super().__init__(message)
        self.message = message  # callers add context to it ("in block 'x' used at ...")
        self.where = where

    def _message(self) -> str:
        return self.message

    def _framed(self, message: str) -> str:
        return f"{self.where}: {message}" if self.where else message


class ShapeError(Exception):
    """Raised by an op's shape rule; the builder turns it into a SpecError at the node, or at the argument `arg`
    when the node writes it (a layernorm `axis` that does not exist, a prelu `num_parameters` that does not fit)."""

    def __init__(self, message: str, arg: str | None = None):
        super().__init__(message)
        self.arg = arg


class WeightsError(TccError):
    """A checkpoint does not fit the spec."""

    exit_code = 2


class DataError(TccError):
    """An input image or array is unusable."""

    exit_code = 2


class ExportError(TccError):
    """A model cannot be expressed in a target format (an op the format lacks, an unsupported size). Exit code 2.

    Names the IR node (and its spec location when known), so the user knows which line to change.
    """

    exit_code = 2

    def __init__(self, message: str, node: str | None = None, where: Location | None = None):
        super().__init__(message)
        self.message = message
        self.node = node
        self.where = where

    def _message(self) -> str:
        return self.message

    def _framed(self, message: str) -> str:
        text = f"node '{self.node}': {message}" if self.node else message
        return f"{self.where}: {text}" if self.where else text


class OpsetError(ExportError):
    """The chosen ONNX opset is too low (or unsupported) for an op."""


class BuildError(TccError):
    """A build cannot start or cannot finish: unknown target or precision, an op or opset the target cannot
    express, an existing output directory, an unreadable bundle. Exit code 2."""

    exit_code = 2


class OutputExists(TccError):
    """An output is already there and replacing it was not asked for. Exit code 2. The Python message names the
    keyword (`force=True`), the command line's the flag (`--force`)."""

    exit_code = 2

    def __init__(self, path: object, hint: str = ""):
        """`hint`: what else the user may mean, e.g. "--resume RUN continues it"."""
        super().__init__(f"{path} already exists; {f'{hint}, ' if hint else ''}pass --force to replace it")
        self.path = path


class CalibrationError(TccError):
    """A calibration table is unreadable, invalid, or does not belong to this spec / weights / model. Exit 2."""

    exit_code = 2


class SelfCheckError(TccError):
    """The built artifact does not reproduce the PyTorch lowering within the stated tolerance. Exit code 1: the
    input was fine, the compiler (or a backend) is wrong."""

    exit_code = 1


class WorkerDied(TccError):
    """A helper process of tcc's ended without its result (a fatal error in a compiler it runs, a signal). Exit
    code 1: not the user's input (as far as tcc can tell), and no traceback of the process that waited for it."""

    exit_code = 1


class EnvironmentFailure(TccError):
    """The machine, not the input: a full disk, a permission, a read-only or vanished path, memory. Exit code 2."""

    exit_code = 2


# what the machine did, for every OSError a user can meet while tcc reads or writes their files
_ENVIRONMENT = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
    errno.ENOENT: "no such file or directory (removed while tcc ran?)",
    errno.ENOTDIR: "not a directory",
    errno.EISDIR: "is a directory",
    errno.EMFILE: "too many open files",
    errno.ENOMEM: "out of memory",
    errno.EIO: "input/output error",
    errno.EFBIG: "file too large",
}
_INTACT = "tcc writes whole files only (a temporary file renamed over the target): earlier outputs are as they were"


def environment_failure(e: BaseException) -> EnvironmentFailure | None:
    """The one line a user gets for an environment failure (the CLI's single mapping; no try/except per command),
    or None when `e` is not one (then it is a bug, and its traceback is what a maintainer needs)."""
    if isinstance(e, MemoryError):
        return EnvironmentFailure(
            f"out of memory; {_INTACT}. Fewer samples (--calib-size), a smaller batch "
            "(--batch-size) or a machine with more memory"
        )
    if not isinstance(e, OSError) or e.errno not in _ENVIRONMENT:
        return None
    where = e.filename if e.filename is not None else None
    if where is not None and e.filename2 is not None:
        where = f"{e.filename} -> {e.filename2}"
    return EnvironmentFailure(f"{where + ': ' if where is not None else ''}{_ENVIRONMENT[e.errno]}; {_INTACT}")


class Interrupted(BaseException):
    """SIGTERM (or SIGHUP) during a build, raised so that cleanup runs; like KeyboardInterrupt for SIGINT."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
        self.exit_code = 128 + signum
