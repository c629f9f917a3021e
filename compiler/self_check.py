"""A build's self-check: its artifact, run by its backend, judged against the PyTorch lowering of the same weights
(FP32, FP16, kits' float model) or the integer reference executor (INT8) on fixed inputs, into the manifest's
"self_check" record; `failure_message` says why a failed one left no bundle.

    got, check = run_self_check(backend, fp32, options, bundle_dir, CheckInputs(x, module, expected, expected64))
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bundle import stable_float
from .lower.torch_run import torch_run
from .tolerance import TOLERANCES, compare

CHECK_SEED = 0
CHECK_BATCH = 2


@dataclass(frozen=True)
class CheckInputs:
    """What a self-check runs the artifact on and judges it against."""

    x: np.ndarray  # the inputs: seeded N(0, 1), or (INT8 from --data) the first calibration samples
    module: Any  # the PyTorch lowering (torch.fx.GraphModule), for FP16's emulation
    expected: np.ndarray  # its float32 output on x
    expected64: np.ndarray | None  # its float64 output, where the check judges against it (FP32, kits)
    qgraph: Any = None  # INT8: the quantized graph the integer reference runs (tcc.quant.intgraph.qtypes.QGraph)
    described: dict | None = None  # INT8: the manifest's description of x when not seeded (calibration samples)


def seeded_inputs() -> dict:
    """The manifest's description of the seeded check inputs."""
    return {
        "seed": CHECK_SEED,
        "batch": CHECK_BATCH,
        "distribution": "standard normal",
        "description": f"{CHECK_BATCH} inputs ~ N(0, 1) (numpy default_rng({CHECK_SEED}))",
    }


def run_self_check(backend, fp32, options, bundle, inputs: CheckInputs) -> tuple[np.ndarray, dict]:
    """Run the written artifact on the check inputs and judge it against PyTorch (INT8: against the integer
    reference, exactly or per op; FP32 and kits against the float64 run). Returns (the artifact's output, the
    self_check record)."""
    caps, precision, x = backend.capabilities, options.precision, inputs.x
    got = backend.check_run(bundle, x, precision)
    if caps.kit:  # the toolchain's input model, FP32: its INT8 result is the prediction (target checks)
        check = self_check(got, inputs.expected, "fp32", inputs.expected64)
        check["inputs"] = inputs.described or check["inputs"]
        check["checked"] = "the kit's float model (what the toolchain is given), in ONNX Runtime"
    elif precision == "int8":
        exact = caps.int8_exact

        def codes():  # an exact backend is asked for them only where float islands kept it from bit-exactness
            return backend.int8_codes(fp32, options, bundle, x, got)

        check = int8_self_check(
            got, inputs.expected, inputs.qgraph, x, exact, inputs.described, codes if exact else codes()
        )
    else:
        check = self_check(got, inputs.expected, precision, inputs.expected64 if precision == "fp32" else None)
    if precision == "fp16":
        check["float16_activations"] = fp16_emulation(inputs.module, x, inputs.expected)
    return got, check


def int8_self_check(got, expected_fp32, qgraph, x, exact: bool, check_inputs, codes=None) -> dict:
    """INT8 artifact vs the integer reference executor (gated: end to end bit for bit for an exact backend, op by
    op on the backend's own codes otherwise; tcc.tolerance gives the rule with float islands) and vs the PyTorch
    FP32 lowering (recorded). codes: the backend's codes of every quantized tensor, or a function returning them
    (an exact backend is asked only when float islands kept it from equality end to end)."""
    from .quant.intgraph.reference import (  # deferred for start-up: loads onnx
        Reference,
        backend_tensors,
        per_op_deviation,
    )

    ref = Reference().run(qgraph, x)
    if isinstance(ref, list):
        ref = ref[0]
    tol = TOLERANCES["int8"]
    lsb = qgraph.output_scales[qgraph.outputs[0]]  # the output's calibrated step (a float output has one too)
    a, r = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if a.shape != r.shape:
        result = {"passed": False, "error": f"output shape {list(a.shape)}, expected {list(r.shape)}"}
    else:
        d = np.abs(a - r)
        max_abs = float(d.max()) if d.size else 0.0
        equal = bool(np.array_equal(np.asarray(got), np.asarray(ref, dtype=np.asarray(got).dtype)))
        result = {
            "bit_exact": equal,
            "max_abs": stable_float(max_abs),
            "max_abs_lsb": stable_float(max_abs / lsb) if lsb else None,
            "output_lsb": stable_float(lsb) if lsb else None,
            "equal_fraction": stable_float(float(np.mean(a == r)) if a.size else 1.0),
        }
        islands = qgraph.islands
        if exact and (equal or not islands):
            result.update(required="bit-exact", passed=equal)
        else:
            codes, floats = backend_tensors(qgraph, x, codes() if callable(codes) else codes)
            per_op = per_op_deviation(qgraph, codes, {qgraph.outputs[0]: np.asarray(got)}, floats)
            for key in ("max_lsb", "max_lsb_integer", "max_lsb_islands"):
                per_op[key] = stable_float(per_op[key])
            per_op["max_lsb_by_kind"] = {k: stable_float(v) for k, v in per_op["max_lsb_by_kind"].items()}
            passed = bool(np.isfinite(a).all()) and per_op["ops_checked"] == len(qgraph.nodes)
            island_rule = f"; float islands <= {tol['island_lsb_tolerance']} LSB" if islands else ""
            if exact:  # float islands only: integer ops exact
                passed = (
                    passed
                    and per_op["max_lsb_integer"] == 0
                    and per_op["max_lsb_islands"] <= tol["island_lsb_tolerance"]
                )
                required = (
                    "bit-exact, or (float islands) every integer op bit-exact on the backend's own input "
                    f"codes{island_rule}"
                )
            else:
                passed = (
                    passed
                    and per_op["max_lsb_integer"] <= tol["lsb_tolerance"]
                    and per_op["max_lsb_islands"] <= tol["island_lsb_tolerance"]
                )
                required = (
                    f"every integer op <= {tol['lsb_tolerance']} LSB of the reference op on the backend's "
                    f"own input codes{island_rule}"
                )
            result.update(per_op=per_op, required=required, passed=passed)
    vs_fp32 = compare(got, expected_fp32, "fp16")  # the scale-relative numbers; its `passed` is not a gate here
    vs_fp32.pop("passed", None)
    inputs = check_inputs or seeded_inputs()
    return {
        "reference": "the integer reference executor (tcc.quant.reference.Reference) on the same table",
        "inputs": inputs,
        "tolerance": tol,
        "result": result,
        "vs_fp32": {"reference": "the PyTorch FP32 lowering with the same weights (recorded, not gated)", **vs_fp32},
    }


def fp16_emulation(ref, x, expected) -> dict:
    """ORT's CPU provider runs a float16 model in float32 with float16-rounded weights; float16 hardware also rounds
    every activation. This estimates that: the PyTorch lowering with float16-rounded weights and buffers and every
    op's output rounded to float16 (float32 arithmetic in between, as float16 kernels accumulate in float32).
    BatchNorm is still unfolded here, so it rounds more often than the artifact does: a conservative estimate."""
    got = torch_run(round_fp16(ref), x)
    return {
        "description": "PyTorch lowering with float16 weights and every op output rounded to float16, vs float32",
        **compare(got, expected, "fp16"),
    }


def _round16(v):
    import torch  # deferred for start-up: a build imports torch only after forking its TVM compile worker

    return v.half().float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v


def round_fp16(module):
    """A copy of an fx GraphModule that rounds its weights and every intermediate value to float16."""
    import torch  # deferred for start-up: a build imports torch only after forking its TVM compile worker

    gm = copy.deepcopy(module)
    with torch.no_grad():
        for t in [*gm.parameters(), *gm.buffers()]:
            if t.is_floating_point():
                t.copy_(t.half().float())
    g = gm.graph
    for node in list(g.nodes):
        if node.op in ("placeholder", "call_module", "call_function", "call_method"):
            with g.inserting_after(node):
                r = g.call_function(_round16, (node,))
            node.replace_all_uses_with(r, delete_user_cb=lambda user: user is not r)  # noqa: B023 (called at once)
    gm.recompile()
    return gm


def self_check(got: np.ndarray, expected: np.ndarray, precision: str, exact: np.ndarray | None = None) -> dict:
    return {
        "reference": "the PyTorch FP32 lowering (tcc.to_torch(graph, inference_only=True)) with the same weights"
        + ("; the rule compares with the same module in float64" if precision == "fp32" else ""),
        "inputs": seeded_inputs(),
        "tolerance": TOLERANCES[precision],
        "result": compare(got, expected, precision, exact),
        "max_rel_note": "max_rel is over elements with |r| >= 1e-5",
    }


def failure_message(target, precision, check) -> str:
    tol = check["tolerance"]
    against = "the integer reference executor" if precision == "int8" else "the PyTorch lowering"
    lines = [
        f"self-check failed: the {target} {precision} artifact does not match {against} "
        f"(tolerance: {tol['rule']}, {', '.join(f'{k} {v}' for k, v in tol.items() if k != 'rule')})"
    ]
    for name, r in [("artifact", check["result"]), ("float16 activations", check.get("float16_activations"))]:
        if r:
            lines.append(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in r.items() if k != "description"))
    lines.append("no bundle was written")
    return "\n".join(lines)
