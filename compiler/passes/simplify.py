"""onnxsim (onnx-simplifier) as one step: its constant folding, shape simplification and graph optimizations."""

from __future__ import annotations

import onnx

from tcc.process.import_order import hidden

from .base import Pass, PassError, Stats, restore_metadata


def _import_onnxsim():
    """onnxsim, imported without sympy where sympy is not loaded yet: onnxsim takes it (0.4 s to import) only to
    print symbolic MAC formulas in its model_info, which tcc does not use; sympy imports normally afterwards."""
    with hidden("sympy"):
        import onnxsim  # deferred for start-up: loads onnxsim
    return onnxsim


def _simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Stats]:
    onnxsim = _import_onnxsim()

    try:
        out, ok = onnxsim.simplify(model, check_n=0)
    except Exception as e:  # onnxsim raises bare RuntimeErrors from C++
        raise PassError(f"onnxsim failed: {e}") from e
    if not ok:
        raise PassError("onnxsim could not validate the simplified model")
    del out.graph.value_info[:]
    return restore_metadata(out, model), {}


simplify = Pass("simplify", "onnx-simplifier (onnxsim): folding, shape simplification, optimizer passes", _simplify)
