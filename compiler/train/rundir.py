"""The RUN folder: what it holds and how each file is written (whole or not at all).

    config.yaml   every option, resolved (tcc train SPEC --config RUN/config.yaml -o NEW_RUN repeats the run)
    best.pt       the best epoch's weights: a plain state_dict by the spec's names (`tcc build --weights`)
    last.pt       the last epoch: weights, optimizer, scheduler, epoch, best so far, history (`--resume RUN`)
    log.json      per epoch: losses, accuracy, macro precision / recall / F1, per class, confusion matrix
    curves.png    the same as plots (after the last epoch; during the run at most once a minute)

The folder appears with the first finished epoch. Each file is written to a temp file beside it and renamed
over the old one; last.pt, written last, is the epoch's commit: a run stopped at any point resumes from the last
epoch whose last.pt was written. Checkpoints are serialized in memory first (torch.save names its zip records
after the file, so a temp name would change the bytes): the same training gives byte-identical files.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import torch

from ..errors import DataError, OutputExists
from ..files import atomic_write
from .config import CONFIG_FILE as CONFIG

BEST, LAST, LOG, CURVES = "best.pt", "last.pt", "log.json", "curves.png"
FORMAT = "tcc-train-checkpoint/1"


def write_atomic(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def checkpoint_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def plain_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's state_dict on the CPU, each tensor its own compact copy."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def check_new_run(run: Path, force: bool) -> None:
    """A new run may not overwrite anything but an earlier run, and that only with --force; its folder must be
    creatable (checked now, not after the first epoch)."""
    if not run.exists():
        existing = next(p for p in run.absolute().parents if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise DataError(f"cannot create {run}: {existing} is not a writable folder")
        return
    if not run.is_dir():
        raise DataError(f"{run} exists and is not a folder")
    if not any(run.iterdir()):
        return
    if not (run / CONFIG).is_file():
        raise DataError(f"{run} is a non-empty folder without {CONFIG} (not a tcc train run); not writing into it")
    if not force:
        raise OutputExists(run, f"it holds a run: --resume {run} continues it")


def clear_run(run: Path) -> None:
    """Remove an earlier run (only a folder check_new_run accepted)."""
    if run.is_dir():
        shutil.rmtree(run)


def read_last(run: Path) -> dict:
    """last.pt of a run, for --resume (read with weights_only=True: tensors and plain data, never code)."""
    path = run / LAST
    if not path.is_file():
        what = "no epoch of it finished" if (run / CONFIG).is_file() or not run.exists() else "not a tcc train run"
        raise DataError(f"{run}: nothing to resume, no {LAST} ({what})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad files; each means "not a usable checkpoint"
        raise DataError(f"{path}: not a readable checkpoint ({str(e).strip().splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DataError(f"{path}: not a tcc train checkpoint ({FORMAT})")
    return state


def save_epoch(
    run: Path,
    *,
    config_text: str,
    state: dict,
    best_weights: dict | None,
    log: dict,
    curves,
    kept: dict[str, bytes] | None = None,
) -> None:
    """One finished epoch's files: `kept` (name -> bytes: an imported model's spec and weights) and config.yaml
    (once), best.pt (when the epoch is the best so far), log.json, curves.png (`curves(path)` draws it, None: not
    this time), then last.pt."""
    try:
        run.mkdir(parents=True, exist_ok=True)
        for name, data in (kept or {}).items():
            if not (run / name).is_file():
                write_atomic(run / name, data)
        if not (run / CONFIG).is_file():
            write_atomic(run / CONFIG, config_text.encode())
        if best_weights is not None:
            write_atomic(run / BEST, checkpoint_bytes(best_weights))
        write_atomic(run / LOG, (json.dumps(log, indent=2) + "\n").encode())
        if curves is not None:
            curves(run / CURVES)
        write_atomic(run / LAST, checkpoint_bytes({"format": FORMAT, **state}))
    except OSError as e:
        raise DataError(f"cannot write the run into {run}: {e.strerror or e} ({e.filename or run})") from None
