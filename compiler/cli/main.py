"""The `tcc` command: parse the arguments, run the command, map errors to exit codes (a TccError is one line and its
own code, never a traceback)."""

from __future__ import annotations

import atexit
import os
import sys
import threading

from ..errors import Interrupted, TccError, environment_failure
from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `tcc`: what it can do, not an error
        parser.print_help()
        return 0
    try:
        if hasattr(args, "max_pixels"):  # every image this command reads: one cap (train's is read with its options)
            from ..data import DEFAULT_MAX_PIXELS, set_max_pixels  # deferred for start-up: loads numpy

            set_max_pixels(args.max_pixels if isinstance(args.max_pixels, int) else DEFAULT_MAX_PIXELS)
        return args.func(args)
    except TccError as e:
        # A positioned error already reads "file:line:col: message", like a compiler's.
        print(e.for_cli() if getattr(e, "where", None) else f"error: {e.for_cli()}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # e.g. `tcc check --json | head`
        sys.stderr.close()
        return 0
    except (OSError, MemoryError) as e:  # the machine's failures: one line each, mapped in one place
        failure = environment_failure(e)
        if failure is None:
            raise
        print(f"error: {failure}", file=sys.stderr)
        return failure.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        return e.exit_code


def run() -> None:
    """The `tcc` command: main(), then the process ends without tearing its modules down. PyTorch's and TVM's
    teardown takes 0.4-0.6 s (measured) and does nothing a finished command needs: the exit handlers still run
    (temporary folders, logging) and the output is flushed first. Left to the normal exit when a non-daemon thread
    is still running, which it would wait for (daemon threads -- tqdm's monitor, library helpers -- are not waited
    for either way, and the normal exit's teardown once aborted a torchrun rank that had finished its work:
    "terminate called without an active exception")."""
    code = main()
    if any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written anyway
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
