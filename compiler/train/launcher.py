"""torchrun for `tcc train --nproc N`, ending in one line when a process dies.

    python -m tcc.train.launcher --standalone --nproc-per-node 2 -m tcc train SPEC ...   (what launch() runs)

torch.distributed.run's own launcher, run in this process so that its ChildFailedError (a 20-line table after the
failed rank's stack) becomes one line: which rank failed, how, and the command that continues the run from its last
finished epoch. A rank that ended with tcc's own exit code 2 (a user mistake, already said in one line) adds nothing.
The surviving ranks stop without stacks (tcc.train.loop: a lost peer is a TccError).
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def _run_folder(argv: list[str]) -> str:
    for flag in ("--resume", "-o", "--output"):
        if flag in argv and argv.index(flag) + 1 < len(argv):
            return argv[argv.index(flag) + 1]
    return "RUN"


def _command(argv: list[str]) -> str | None:
    """The tcc command torchrun runs (`... -m tcc train ...`)."""
    return next((argv[i + 2] for i in range(len(argv) - 2) if argv[i : i + 2] == ["-m", "tcc"]), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # torchrun's own notices (the failure we say in one line below; SIGTERMs to the others; the OMP default it would
    # set and warn about) stay quiet
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        # The root cause: a rank killed by a signal other than the SIGTERM torchrun sends the survivors, or ended
        # with a code other than tcc's 2 (a survivor's one line, said already). Under load torchrun may have
        # recorded only the survivors it stopped; then the line says so without naming a rank it cannot know.
        failures = sorted(e.failures.items())
        died = [(r, f) for r, f in failures if f.exitcode != 2 and f.exitcode != -signal.SIGTERM]
        resume = (
            f"Continue from the last finished epoch with: tcc train --resume {_run_folder(argv)}"
            if _command(argv) == "train"
            else "Nothing was written; run the command again"
        )
        if died:
            rank, failure = died[0]
            how = f"killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
            print(
                f"error: training process rank {rank} died ({how}); the other processes stopped. {resume}",
                file=sys.stderr,
            )
        elif any(f.exitcode == -signal.SIGTERM for _, f in failures):
            print(f"error: a training process died; the others were stopped. {resume}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
