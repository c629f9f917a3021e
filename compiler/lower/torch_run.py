"""The PyTorch lowering run on numpy inputs, on a fixed number of threads: the float32 and float64 references the
checks compare an artifact or an import with (tcc.tolerance's FP32 rule)."""

from __future__ import annotations

import copy

import numpy as np


def torch_run(module, x: np.ndarray, float64: bool = False, threads: int = 1) -> np.ndarray:
    """The PyTorch lowering on `x`, on `threads` threads (PyTorch's setting restored after). One by default: the
    checks' batches are small, and PyTorch's OpenMP threads wait for one another at every op when another process
    holds a core (DDSNet, batch 2, float64: 0.16 s on one thread, 5 s on two while the machine was busy, measured).
    A fixed count also makes the result independent of the core count: the summation order depends on it."""
    import torch  # deferred for start-up: `tcc build` loads torch only where it runs the lowering

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            if float64:  # the same function with float32's rounding error gone (a copy: the module stays float32)
                return copy.deepcopy(module).double()(torch.from_numpy(x).double()).numpy()
            return module(torch.from_numpy(x)).numpy()
    finally:
        torch.set_num_threads(before)
