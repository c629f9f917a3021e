"""`_Codes`: a quantized tensor of the INT8 Relax lowering -- the Relax expression holding its codes and their
quantization parameters -- as the interpreter (lower.py) passes it between layers and the PrimFunc builders that
read its Relax type (tir.add_primfunc) take it."""

from __future__ import annotations

from tcc.quant.intgraph.qtypes import QParams


class _Codes:
    """A quantized tensor in the Relax graph: the expression holding its codes and its quantization parameters."""

    __slots__ = ("expr", "params")

    def __init__(self, expr, params: QParams):
        self.expr, self.params = expr, params

    zp = property(lambda self: self.params.zp)
    lo = property(lambda self: self.params.lo)
    hi = property(lambda self: self.params.hi)
    scale = property(lambda self: self.params.scale)
