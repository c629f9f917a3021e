"""The two shapes of the TVM INT8 backend's TensorIntrin functions, each declared once: a copy of one buffer into
another (D = f(S): `copy_func`) and a step that accumulates into int32 lanes from two operands (C += f(A, B):
`step_func`, or `store_func` for the common step that stores one vector). A TensorIntrin's description and
implementation must declare the same buffers and regions; here they are written once, and each function supplies
only its body, a `T.macro` of the buffers, or the stored expression."""

from __future__ import annotations

from dataclasses import dataclass

from tvm import ir, tirx
from tvm.script import tirx as T


@dataclass(frozen=True)
class Operand:
    """A TensorIntrin buffer: its shape, type and scope; `strides`, where given, per axis (None: a free int64 stride,
    e.g. a row stride apart)."""

    shape: tuple
    dtype: str
    scope: str = "global"
    strides: tuple | None = None

    def declared_strides(self):
        """The strides as the buffer declares them (called while the TVMScript is parsed: each free stride a new
        variable of the function)."""
        if self.strides is None:
            return None
        return [T.int64() if s is None else s for s in self.strides]


def whole(buffer):
    """The whole buffer as a region (what a TensorIntrin's block reads or writes)."""
    return tirx.BufferRegion(buffer, [ir.Range.from_min_extent(0, n) for n in buffer.shape])


def copy_func(s: Operand, d: Operand, body):
    """A copy's function (description or implementation): S read, D written; `body(S, D)`, a `T.macro`."""

    @T.prim_func(s_tir=True)
    def func(s_: T.handle, d_: T.handle) -> None:
        S = T.match_buffer(s_, s.shape, s.dtype, offset_factor=1, scope=s.scope, strides=s.declared_strides())
        D = T.match_buffer(d_, d.shape, d.dtype, offset_factor=1, scope=d.scope, strides=d.declared_strides())
        with T.sblock("root"):
            T.reads(whole(S))
            T.writes(whole(D))
            body(S, D)

    return func


def step_func(a: Operand, b: Operand, c: Operand, body):
    """A step's function (description or implementation): C (int32 accumulators) read and written, A and B read;
    `body(A, B, C)`, a `T.macro`, its statements."""
    return _step(a, b, c, body, None)


def store_func(a: Operand, b: Operand, c: Operand, update):
    """A step's implementation that stores one vector into all of C: C[0:lanes] = update(A, B, C), the expression
    built while the TVMScript is parsed (a statement of the function itself, not of a macro: the module's debug line
    table records its line)."""
    return _step(a, b, c, None, update)


def _step(a: Operand, b: Operand, c: Operand, body, update):
    lanes = c.shape[0]

    @T.prim_func(s_tir=True)
    def func(a_: T.handle, b_: T.handle, c_: T.handle) -> None:
        A = T.match_buffer(a_, a.shape, a.dtype, offset_factor=1, scope=a.scope, strides=a.declared_strides())
        B = T.match_buffer(b_, b.shape, b.dtype, offset_factor=1, scope=b.scope, strides=b.declared_strides())
        C = T.match_buffer(c_, c.shape, c.dtype, offset_factor=1, scope=c.scope, strides=c.declared_strides())
        with T.sblock("root"):
            T.reads(whole(C), whole(A), whole(B))
            T.writes(whole(C))
            if update is None:
                body(A, B, C)
            else:
                C[T.ramp(0, 1, lanes)] = update(A, B, C)

    return func
