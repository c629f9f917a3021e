"""The module pass that rewrites the calls of one Relax op in every Relax function of a module: what tcc's graph
rewrites before legalization (nchw_input, channel_pad, fast_math, softmax) share."""

from __future__ import annotations

from collections.abc import Callable

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

# FuseOps' patterns, for the PrimFuncs a rewrite adds ("tcc.op_pattern"; compile._declared_op_patterns):
OUT_ELEMWISE_FUSABLE = 4  # kOutEWiseFusable: elementwise consumers (bias add, ReLU) fuse into it, no producer does
OPAQUE = 8  # kOpaque: the function stays whole


def call_rewrite_pass(op_name: str, rewrite: Callable, name: str, cleanup=None):
    """A module pass giving each call of the Relax op `op_name` (its arguments rewritten first) to
    `rewrite(mutator, call)`, which returns the expression to put in its place or None to keep it; the mutator
    offers `lookup_binding` (a variable's bound value) and `builder_` (to add functions or emit bindings).
    `cleanup`: a pass run on the result (dead code the rewrite left)."""

    @mutator
    class Rewrite(PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if getattr(call.op, "name", None) != op_name:
                return call
            new = rewrite(self, call)
            return call if new is None else new

    @tvm.transform.module_pass(opt_level=0, name=name)
    def apply(mod, _ctx):
        mutator_ = Rewrite(mod)
        for gv, func in list(mod.functions_items()):
            if isinstance(func, relax.Function):
                mutator_.builder_.update_func(gv, mutator_.visit_expr(func))
        out = mutator_.builder_.get()
        return cleanup(out) if cleanup is not None else out

    return apply
