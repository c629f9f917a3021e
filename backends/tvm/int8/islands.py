"""Float-island inlining for the INT8 Relax lowering: a float island's FP32 sub-model (tcc.quant.table.placement)
imported by TVM's ONNX frontend as a private Relax function of the lowering's module (`island_function`), which
RelaxLowering.float_island calls and lowering inlines into main."""

from __future__ import annotations

import warnings

from tcc.quant.intgraph.qtypes import QNode

from ..compile import import_onnx


def island_function(bb, n: QNode, shapes: list[list[int]]):
    """The island's sub-model (QNode.float_model) as a private Relax function: TVM's ONNX frontend with the given
    input shapes; the PrimFuncs it calls (call_tir) are added to `bb`'s module and the calls pointed at them."""

    from tvm.relax.expr_functor import PyExprMutator, mutator  # deferred: TVM loads where a PrimFunc is built

    assert n.float_model is not None  # an island carries its sub-model
    names = [i.name for i in n.float_model.graph.input]
    with warnings.catch_warnings():  # the frontend renames tensors with dots, loudly: names are not kept here
        warnings.simplefilter("ignore", UserWarning)
        imported = import_onnx(n.float_model, shape_dict=dict(zip(names, shapes)))
    moved = {
        gv: bb.add_func(f, f"tcc_island_{gv.name_hint}")
        for gv, f in imported.functions_items()
        if gv.name_hint != "main"
    }

    @mutator
    class Retarget(PyExprMutator):
        def visit_global_var_(self, gv):
            return moved.get(gv, gv)

    func = Retarget().visit_expr(imported["main"]) if moved else imported["main"]
    for key in ("global_symbol", "num_input", "params"):
        if func.attrs and key in func.attrs:
            func = func.without_attr(key)
    return func
