"""What every op of the op table is made of: its arguments (`Arg`), its parameters (`ParamSpec`), the `OpDef` that
holds its rules, and the helpers the rules share (axes, ranks, the lazily imported torch).

Shapes are per sample (`(C, H, W)`, `(F,)`, or any rank for token tensors: `(S, D)`), the batch is implicit. Axes in
arguments are NCHW axes: 0 is the batch, 1 the first per-sample axis; negative axes count from the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, overload

from ..errors import ShapeError

REQUIRED = object()
MAX_CHANNELS = 65_536
MAX_SPATIAL = 16_384
MAX_KERNEL = 64

Shape = tuple[int, ...]
Attrs = dict[str, Any]  # an op's arguments as coerced by `Arg.coerce`, plus what its `prepare` rule derives


# ---------------------------------------------------------------------------------------------------- lowerings
class TorchEmit(Protocol):
    """What an op's `to_torch` rule sees (tcc.lower.to_torch.TorchEmitter); values are torch.fx nodes (Any here)."""

    in_shapes: list[Shape]

    def module(self, module: Any, *args: Any) -> Any: ...
    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any: ...
    def getitem(self, value: Any, index: int) -> Any: ...


class OnnxEmit(Protocol):
    """What an op's `to_onnx` rule sees (tcc.lower.to_onnx.OnnxEmitter); values are ONNX tensor names."""

    name: str
    in_shapes: list[Shape]
    out_shapes: list[Shape]
    opset: int

    @overload  # several outputs: a list of their names
    def op(
        self, op_type: str, inputs: list[str], suffix: str | None = None, *, outputs: int, **attrs: Any
    ) -> list[str]: ...
    @overload
    def op(self, op_type: str, inputs: list[str], suffix: str | None = None, **attrs: Any) -> str: ...
    def clip(self, x: str, lo: float, hi: float, suffix: str | None = None) -> str: ...
    def pad(self, x: str, pads: list[int], suffix: str = "pad") -> str: ...
    def param(self, key: str, shape: tuple[int, ...] | None = None) -> str: ...
    def const(self, suffix: str, values: Any, dtype: str = "int64") -> str: ...
    def composite(self, function: str, **attrs: Any) -> None: ...
    def require(self, opset: int, what: str) -> None: ...
    def unsupported(self, message: str) -> Any: ...


TorchRule = Callable[..., Any]  # (emit: TorchEmit, attrs, *input values) -> output value(s)
OnnxRule = Callable[..., Any]  # (emit: OnnxEmit, attrs, *input names) -> output name(s)


# ---------------------------------------------------------------------------------------------------- arguments
@dataclass(frozen=True)
class Arg:
    """One op argument. kind: int | float | bool | pair | float_pair | padding | ints | str."""

    name: str
    kind: str
    default: object = REQUIRED
    lo: float | None = None
    hi: float | None = None
    choices: tuple = ()
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def coerce(self, value: Any) -> Any:
        """Validate and normalise one value; raises ValueError with a user-facing message."""
        k = self.kind
        if k == "int":
            return self._bounded(_as_int(value))
        if k == "float":
            if not _finite(value) or abs(value) > 1e308:  # an int beyond float range is no float either
                raise ValueError(f"expected a finite number, got {value!r}")
            return self._bounded(float(value))
        if k == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}")
            return value
        if k == "str":
            if value not in self.choices:
                raise ValueError(f"expected one of {', '.join(self.choices)}, got {value!r}")
            return value
        if k == "pair":
            pair = _as_pair(value)
            return tuple(self._bounded(v) for v in pair)
        if k == "float_pair":
            values = value if isinstance(value, list) else [value, value]
            if len(values) != 2 or not all(_finite(v) for v in values):
                raise ValueError(f"expected a number or a list of 2 numbers, got {value!r}")
            return tuple(self._bounded(float(v)) for v in values)
        if k == "padding":
            if value in ("same", "valid"):
                return value
            if isinstance(value, list) and len(value) == 4:
                return tuple(self._bounded(_as_int(v)) for v in value)
            return tuple(self._bounded(v) for v in _as_pair(value))
        if k == "ints":
            if not isinstance(value, list) or not value:
                raise ValueError(f"expected a non-empty list of integers, got {value!r}")
            return tuple(self._bounded(_as_int(v)) for v in value)
        raise AssertionError(k)

    def _bounded(self, v: Any) -> Any:
        if self.lo is not None and v < self.lo:
            raise ValueError(f"must be >= {self.lo}, got {v}")
        if self.hi is not None and v > self.hi:
            raise ValueError(f"must be <= {self.hi}, got {v}")
        return v


def _as_int(value: Any) -> int:
    if not _finite(value) or value != int(value):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def _finite(value: Any) -> bool:
    """A real, finite number (not a bool, NaN or infinity)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _as_pair(value: Any) -> tuple[int, int]:
    if isinstance(value, list):
        if len(value) != 2:
            raise ValueError(f"expected an integer or a list of 2 integers, got {value!r}")
        return _as_int(value[0]), _as_int(value[1])
    v = _as_int(value)
    return v, v


@dataclass(frozen=True)
class ParamSpec:
    shape: tuple[int, ...]
    trainable: bool = True
    dtype: str = "float32"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


# the arguments of a sliding window of weights (conv2d, conv_transpose)
WINDOW_OUT = Arg("out", "int", REQUIRED, lo=1, hi=MAX_CHANNELS)
WINDOW_KERNEL = Arg("kernel", "pair", REQUIRED, lo=1, hi=MAX_KERNEL)
WINDOW_STRIDE = Arg("stride", "pair", 1, lo=1, hi=MAX_KERNEL)
WINDOW_PADDING = Arg("padding", "padding", 0, lo=0, hi=MAX_KERNEL)
WINDOW_DILATION = Arg("dilation", "pair", 1, lo=1, hi=MAX_KERNEL)
WINDOW_GROUPS = Arg("groups", "int", 1, lo=1, hi=MAX_CHANNELS)
WINDOW_BIAS = Arg("bias", "bool", True)


# ---------------------------------------------------------------------------------------------------- the OpDef
@dataclass(frozen=True)
class OpDef:
    name: str
    args: tuple[Arg, ...]
    infer: Callable[[Attrs, list[Shape]], list[Shape]]
    to_torch: TorchRule  # (emit, attrs, *inputs) -> output(s); see lower_torch.TorchEmitter
    arity: tuple[int, int] = (1, 1)  # min, max inputs (max -1: any)
    prepare: Callable[[Attrs, list[Shape]], Attrs] | None = None  # derive attrs that depend on input shapes
    params: Callable[[Attrs, list[Shape]], dict[str, ParamSpec]] = lambda a, s: {}
    macs: Callable[[Attrs, list[Shape], list[Shape]], int] = lambda a, s, o: 0
    doc: str = ""
    # (emit, attrs, *input tensor names) -> output tensor name(s); see lower_onnx.OnnxEmitter. None: no ONNX form.
    to_onnx: OnnxRule | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # room for later lowerings (reference)

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name), None)


# ---------------------------------------------------------------------------------------------------- helpers
def torch_modules() -> tuple[Any, Any, Any]:
    import torch  # deferred for start-up: loads torch
    import torch.nn.functional as F  # deferred for start-up: loads torch
    from torch import nn  # deferred for start-up: loads torch

    return torch, nn, F


def check_rank(shape: Shape, want: int, what: str) -> None:
    if len(shape) != want:
        kind = {3: "[C, H, W]", 1: "[F]"}[want]
        raise ShapeError(f"{what} expects a {kind} input, got {list(shape)}")


def same_shape(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    return [shapes[0]]


def axis_of(a: Attrs, shapes: list[Shape]) -> int:
    """The per-sample axis of an NCHW `axis` argument."""
    rank = len(shapes[0])
    ax: int = a["axis"]
    if ax < 0:
        ax += rank + 1
    if not 1 <= ax <= rank:
        raise ShapeError(
            f"axis {a['axis']} is out of range for a rank-{rank + 1} NCHW tensor (batch axis 0 excluded)", "axis"
        )
    return ax - 1


def f32_const(emit: OnnxEmit, suffix: str, value: float) -> str:
    """A float32 scalar constant `name/suffix`."""
    return emit.const(suffix, value, "float32")
