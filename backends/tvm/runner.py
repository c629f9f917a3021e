"""Running compiled TVM modules with the target's tcc-run: natively for ``host``, under qemu-user for ARM targets.

The runner comes from the runtime cache (:mod:`tcc.backends.tvm.runtime`, runner_command) or a bundle's kit;
inputs and outputs travel as TCCT tensor files (:mod:`tcc.backends.tvm.tensor_file`).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ...targets import get_platform
from .runtime import RunError, runner_command
from .tensor_file import read_tensor_file, write_tensor_file

if TYPE_CHECKING:  # numpy is imported where used
    import numpy as np


def run_module(
    so_path: str | os.PathLike,
    target_name: str,
    inputs: np.ndarray | Sequence[np.ndarray],
    *,
    threads: int | None = 1,
    repeat: int = 0,
    timeout: float = 600,
    extra_args: Sequence[str] = (),
    runner: str | os.PathLike | None = None,
) -> tuple[list[np.ndarray], float | None]:
    """Run a compiled module with the target's tcc-run (under qemu for ARM targets).

    ``runner``: a tcc-run to use instead of the cache's (a bundle's kit/bin/tcc-run).
    Returns (outputs, median latency in ms if repeat > 0).  threads=None: runtime default.
    """
    import numpy as np  # deferred for start-up: loads numpy

    if runner is None:
        cmd_prefix = runner_command(target_name)
    else:
        cmd_prefix = [*(get_platform(target_name).qemu or ()), str(runner)]
    arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    with tempfile.TemporaryDirectory(prefix="tcc-run-") as tmp:
        in_paths = []
        for i, a in enumerate(arrays):
            p = Path(tmp) / f"input{i}.bin"
            write_tensor_file(p, np.asarray(a))
            in_paths.append(str(p))
        out_path = Path(tmp) / "output.bin"
        cmd = [*cmd_prefix, "--quiet"]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        if repeat:
            cmd += ["--repeat", str(repeat)]
        cmd += [*extra_args, str(so_path), *in_paths, str(out_path)]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RunError(
                f"tcc-run failed for {target_name} (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}"
            )
        outs = read_tensor_file(out_path)
    latency = None
    m = re.search(r"latency_ms median ([0-9.eE+-]+)", proc.stderr)
    if m:
        latency = float(m.group(1))
    return outs, latency


def run_under_qemu(
    so_path: str | os.PathLike, target_name: str, inputs: np.ndarray | Sequence[np.ndarray]
) -> np.ndarray | list[np.ndarray]:
    """Run a compiled module on its target via the runner (qemu for ARM, natively for host).

    Returns the output array (a list of arrays when the model has several outputs)."""
    outs, _ = run_module(so_path, target_name, inputs)
    return outs[0] if len(outs) == 1 else outs
