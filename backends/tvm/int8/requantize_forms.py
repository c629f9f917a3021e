"""The requantization forms of the INT8 lowering as one ordered table (`FORMS`): a requantization takes the first
form that runs where it runs (`place`: the target's instruction set, and whether it is the epilogue of a
dot-product kernel's conv) and whose parameters exist for it (its multipliers, its accumulator bound); the exact
int64 form, last, takes every one. The PrimFuncs and their parameter rows are requantize.py's and
requantize_float32.py's; RelaxEmitter.requantize (emit.py) emits the chosen one, explain.py names it.

| form | where | when |
|---|---|---|
| float32 | x86 | a float32 multiply-add per channel checked equal at every rounding boundary the accumulator reaches |
| float64 | x86 | every product below 2^53 (the bound) and multipliers below 1 |
| neon tie-free | ARM, in a kernel | no accumulator within the bound meets a tie: one rounding shift |
| neon | ARM, in a kernel | multipliers below 1/2, outputs within 16 bits: 32-bit lanes |
| tie-free | not ARM in a kernel | no tie within the bound: int32 lanes but the product's high half |
| int32 | x86 | multipliers below 1/2: int32 lanes but the product's high half |
| int64 | anywhere | always: the exact int64 product |
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tcc.quant.intgraph.qtypes import Requant

from .kernels import DotKernel
from .requantize import (
    float64_requantize_params,
    int32_requantize_params,
    neon_requantize_params,
    neon_tie_free_params,
    requantize_float64_primfunc,
    requantize_int32_primfunc,
    requantize_neon_primfunc,
    requantize_neon_tie_free_primfunc,
    requantize_params,
    requantize_primfunc,
    requantize_tie_free_primfunc,
    tie_free_params,
)
from .requantize_float32 import float32_requantize_params, requantize_float32_primfunc

# where a requantization runs: an x86 target's (in a kernel or not: the forms are the same), an ARM target's in a
# dot-product kernel's epilogue (its schedule applies it to vectors of channels) or outside one, or a target without
# a dot-product kernel (the generic form, which compiles for any target)
PLACES = ("x86", "arm kernel", "arm", "generic")


def place(kernel: DotKernel | None, in_kernel: bool) -> str:
    """Where a requantization runs (PLACES) on the target of the dot-product `kernel` (None: none)."""
    if kernel is None:
        return "generic"
    if kernel.arch == "x86_64":
        return "x86"
    return "arm kernel" if in_kernel else "arm"


@dataclass(frozen=True)
class Found:
    """A form's call: the constants the PrimFunc takes after the accumulators (value, dtype) and its maker
    (dtype, shape) -> PrimFunc."""

    constants: list[tuple[np.ndarray, str]]
    make: Callable


@dataclass(frozen=True)
class Requantization:
    """What one requantization is: its parameters, the channels on its accumulators' last axis, |acc| <= bound per
    channel (None: unknown), the dot-product kernel's instruction set, where it runs (PLACES)."""

    rq: Requant
    channels: int
    bound: np.ndarray | None
    arch: str  # "" without a kernel
    place: str


@dataclass(frozen=True)
class RequantizeForm:
    """One form: its name, the places it runs in, and its call for a requantization (None: it does not apply)."""

    name: str
    places: tuple[str, ...]
    call: Callable[[Requantization], Found | None]


def _rows(rows: np.ndarray | None, make: Callable, leading: tuple = ()) -> Found | None:
    """A form of parameter rows (one per parameter, channels last): the rows equal for every channel compiled in
    as constants (`uniform`), the others one int32 constant (at least one row); `leading` constants first."""
    if rows is None:
        return None
    varying = [k for k in range(len(rows)) if np.any(rows[k] != rows[k, 0])]
    uniform = {k: int(rows[k, 0]) for k in range(len(rows)) if k not in varying}
    constants = [*leading, (rows[varying] if varying else rows[:1], "int32")]
    return Found(constants, lambda dtype, shape: make(dtype, shape, uniform))


def _float32(r: Requantization) -> Found | None:
    params = float32_requantize_params(r.rq, r.channels, r.bound)
    if params is None:
        return None
    lo, hi = r.rq.lo, r.rq.hi
    return Found([(params, "float32")], lambda dtype, shape: requantize_float32_primfunc(dtype, shape, lo, hi))


def _float64(r: Requantization) -> Found | None:
    found = float64_requantize_params(r.rq, r.channels, r.bound)
    if found is None:
        return None
    multiplier, rows = found
    return _rows(rows, requantize_float64_primfunc, ((multiplier[None], "float64"),))


def _neon_tie_free(r: Requantization) -> Found | None:
    rows = neon_tie_free_params(r.rq, r.channels, r.bound)
    return _rows(rows, functools.partial(requantize_neon_tie_free_primfunc, arch=r.arch))


def _neon(r: Requantization) -> Found | None:
    return _rows(neon_requantize_params(r.rq, r.channels), functools.partial(requantize_neon_primfunc, arch=r.arch))


def _tie_free(r: Requantization) -> Found | None:
    return _rows(tie_free_params(r.rq, r.channels, r.bound), requantize_tie_free_primfunc)


def _int32(r: Requantization) -> Found | None:
    return _rows(int32_requantize_params(r.rq, r.channels), requantize_int32_primfunc)


def _int64(r: Requantization) -> Found:
    narrow, p32, p64 = requantize_params(r.rq, r.channels)
    return Found([(p32, "int32"), (p64, "int64")], lambda dtype, shape: requantize_primfunc(dtype, shape, narrow))


FORMS = (
    RequantizeForm("float32", ("x86",), _float32),
    RequantizeForm("float64", ("x86",), _float64),
    RequantizeForm("neon tie-free", ("arm kernel",), _neon_tie_free),
    RequantizeForm("neon", ("arm kernel",), _neon),
    # fewer steps than the int32 form; the int64 form runs as scalar code on ARMv7
    RequantizeForm("tie-free", ("x86", "arm", "generic"), _tie_free),
    RequantizeForm("int32", ("x86",), _int32),
    RequantizeForm("int64", PLACES, _int64),
)


def choose(
    rq: Requant, channels: int, bound: np.ndarray | None, kernel: DotKernel | None, in_kernel: bool
) -> tuple[RequantizeForm, Found]:
    """The form (the first of FORMS that runs there and applies) and its call for requantizing accumulators of
    `channels` channels (|acc| <= bound) on the target of `kernel`, in its epilogue or not (`in_kernel`)."""
    r = Requantization(rq, channels, bound, "" if kernel is None else kernel.arch, place(kernel, in_kernel))
    for form in FORMS:
        if r.place in form.places:
            found = form.call(r)
            if found is not None:
                return form, found
    raise AssertionError("the int64 form takes every requantization")
