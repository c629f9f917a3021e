"""The module pass that runs a Relax expression mutator over every Relax function of a module: what tcc's graph
rewrites before legalization (nchw_input, fast_math) share."""
from __future__ import annotations

import tvm
from tvm import relax


def function_rewrite_pass(mutator_class, name: str, cleanup=None):
    """A module pass applying `mutator_class` (a `@mutator` PyExprMutator, built on the module) to each Relax
    function; `cleanup`: a pass run on the result (dead code the rewrite left)."""

    @tvm.transform.module_pass(opt_level=0, name=name)
    def apply(mod, _ctx):
        rewrite = mutator_class(mod)
        for gv, func in list(mod.functions_items()):
            if isinstance(func, relax.Function):
                rewrite.builder_.update_func(gv, rewrite.visit_expr(func))
        out = rewrite.builder_.get()
        return cleanup(out) if cleanup is not None else out

    return apply
