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
import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def _run_folder(argv: list[str]) -> str:
    for flag in ("--resume", "-o", "--output"):
        if flag in argv and argv.index(flag) + 1 < len(argv):
            return argv[argv.index(flag) + 1]
    return "RUN"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # torchrun's own notices (the failure we say in one line below; SIGTERMs to the others; the OMP default it would
    # set and warn about) stay quiet
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        # the root cause: a rank that died (a signal, or a code other than tcc's 2), before the survivors that only
        # reported losing it; those said their one line already
        died = sorted((rank, f) for rank, f in e.failures.items() if f.exitcode != 2)
        if not died:
            return 2
        rank, failure = died[0]
        how = (f"killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}")
        print(f"error: training process rank {rank} died ({how}); the other processes stopped. Continue from the last "
              f"finished epoch with: tcc train --resume {_run_folder(argv)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
