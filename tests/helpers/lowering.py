"""Helpers shared by lower/test_to_onnx.py and passes/test_passes.py: seeded lowerings, the FP32 contract, every
intermediate value of both sides by IR name (ONNX Runtime through onnx_util)."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import onnx
import torch

import tcc
from tcc.lower.to_onnx import to_onnx
from tcc.lower.to_torch import init_weights
from tcc.passes import run_pipeline
from tcc.tolerance import compare
from tests.helpers import REPO
from tests.helpers.onnx_util import run, session, with_outputs

SEED = 0
BIG_MACS = 1_000_000_000  # run these at batch 1


def zoo_specs() -> list[Path]:
    found = [
        *sorted(glob.glob(str(REPO / "spec" / "*.yaml"))),
        *sorted(glob.glob(str(REPO / "spec" / "baselines" / "*.yaml"))),
    ]
    return [Path(p) for p in found]


def spec_id(path: Path) -> str:
    return path.stem


_CACHE: dict = {}
CACHE_PARAMS = 30_000_000  # models below this size are kept for the next test (VGG's 138M are not)


def seeded(path, overrides: tuple = ()):
    """(model, inference-only module with seeded weights, its state) for a spec; small ones cached."""
    key = (str(path), overrides)
    if key in _CACHE:
        return _CACHE[key]
    model = tcc.load_spec(path, dict(overrides))
    module = init_weights(tcc.to_torch(model.graph, inference_only=True), SEED)
    result = model, module, module.state_dict()
    if model.graph.param_count < CACHE_PARAMS:
        _CACHE[key] = result
    return result


def lowered(path, opset: int = 13, overrides: tuple = ()) -> tuple:
    model, module, state = seeded(path, overrides)
    return model, module, to_onnx(model.graph, state, opset)


def sample(model, batch: int | None = None, seed: int = 1) -> np.ndarray:
    if batch is None:
        batch = 1 if model.graph.macs > BIG_MACS else 2
    return np.random.default_rng(seed).standard_normal((batch, *model.graph.input.shape)).astype(np.float32)


def torch_out(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def assert_close(actual, expected, atol=1e-5, rtol=1e-4, what=""):
    """The FP32 contract (atol 1e-5, rtol 1e-4) with atol relative to the tensor's scale when that exceeds 1:
    seeded He-uniform weights give outputs of ~100 (ResNet, ShuffleNet), where float32's resolution is ~1e-5 and
    a small element that is the difference of large partial sums cannot be reproduced to 1e-5 absolute."""
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, atol=atol * scale, rtol=rtol, err_msg=what)


def assert_pass_close(after, before, atol=1e-5, what=""):
    """Pass before/after: |after - before| <= atol, with atol taken relative to the output's scale when that
    exceeds 1 (seeded He-uniform weights give ResNet outputs of ~100, where 1e-5 is below float32's resolution)."""
    scale = max(1.0, float(np.abs(before).max()))
    diff = float(np.abs(after - before).max())
    assert diff <= atol * scale, f"{what}: max |diff| {diff:.3g} > {atol} x scale {scale:.3g}"


class _Recorder(torch.fx.Interpreter):
    def __init__(self, gm):
        super().__init__(gm)
        self.values: dict[str, torch.Tensor] = {}

    def run_node(self, n):
        out = super().run_node(n)
        self.values[n.name] = out
        return out


def torch_values(module, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every fx node's value, keyed by fx node name (IR name with dots as underscores)."""
    rec = _Recorder(module)
    with torch.no_grad():
        rec.run(torch.from_numpy(x))
    return {k: v.numpy() for k, v in rec.values.items() if isinstance(v, torch.Tensor)}


def compare_every_value(model, module, m: onnx.ModelProto, x: np.ndarray) -> int:
    """Every single-output IR node whose ONNX tensor exists (named after it) equals the torch value of that node.
    Returns how many values were compared."""
    graph = model.graph
    tensors = {o for n in m.graph.node for o in n.output}
    names = [
        n.name
        for n in graph.nodes.values()
        if n.op != "input" and len(n.shapes) == 1 and n.name in tensors and n.name != graph.output.node
    ]
    ref = torch_values(module, x)
    bases = {n.replace(".", "_") for n in graph.nodes}
    outs = session(with_outputs(m, names)).run(names, {"input": x})
    compared = 0
    for name, got in zip(names, outs):
        # A rule that emits several fx nodes names them base, base_1, ...: the node's value is the last one.
        base = key = name.replace(".", "_")
        k = 1
        while f"{base}_{k}" in ref and f"{base}_{k}" not in bases:
            key = f"{base}_{k}"
            k += 1
        want = ref.get(key)
        if want is None:
            continue
        assert_close(got, want, what=f"value of node {name}")
        compared += 1
    return compared


def assert_one_op_equals_reference(model, module, x: np.ndarray, r32: np.ndarray, r64: np.ndarray, opsets, what=""):
    """A one-op spec's PyTorch module, and its ONNX form at each opset (raw and after the pass pipeline), equal a
    hand-written reference `r32` within the FP32 rule (`r64`: the reference in float64)."""
    with torch.no_grad():
        ours = module(torch.from_numpy(x)).numpy()
    assert list(ours.shape[1:]) == list(model.graph.shape(model.graph.output)) == list(r32.shape[1:])
    assert compare(ours, r32, "fp32", r64)["passed"], what
    for opset in opsets:
        lowered = to_onnx(model.graph, module.state_dict(), opset)
        onnx.checker.check_model(lowered, full_check=True)
        for form, m in (("raw", lowered), ("passes", run_pipeline(lowered)[0])):
            verdict = compare(run(m, x), r32, "fp32", r64)
            assert verdict["passed"], (what, opset, form, verdict)


def one_op_spec(write, name: str, case: tuple) -> tuple:
    """A CASES entry of the one-op tests (the nodes after the input as YAML, the input shape, the reference: a
    function of x and the parameters by key) as a spec: (the model, its seeded PyTorch module, the reference)."""
    nodes, shape, fn = case
    spec = write(
        f"{name}.yaml",
        f"""
        kind: model
        name: {name}
        input: {{shape: {list(shape)}}}
        layers:
          - {nodes}
    """,
    )
    model = tcc.load_spec(spec)
    module = init_weights(tcc.to_torch(model.graph, inference_only=True), seed=4)
    return model, module, fn


def assert_case_equals_pytorch(write, name: str, case: tuple, opsets) -> None:
    """One CASES entry's spec, its PyTorch lowering and ONNX forms at `opsets`, against its reference evaluated in
    float32 and float64 on an odd-sized input (assert_one_op_equals_reference)."""
    model, module, fn = one_op_spec(write, name, case)
    x = (np.random.default_rng(0).standard_normal((3, *model.input_shape)) * 3).astype(np.float32)
    params = dict(module.state_dict())
    with torch.no_grad():
        r32 = fn(torch.from_numpy(x), params).numpy()
        r64 = fn(torch.from_numpy(x).double(), {k: v.double() for k, v in params.items()}).numpy()
    assert_one_op_equals_reference(model, module, x, r32, r64, opsets, name)
