"""What the tests share, in one place: the repository's paths here (REPO, never a test file's own parents) and
`load_tool` (a tools/ script as a module), and beside it the helper modules: onnx_util (the ONNX graph builder, ONNX
Runtime sessions and runs), lowering (seeded lowerings of specs, the FP32 contract), tvm_util (the TVM / toolchain /
qemu skips, the INT8 checks on TVM), marks (the shared-fixtures skip), quant_models (small ONNX models and a tiny
spec to calibrate), spec_util (`tcc check` errors), zoo (the baseline specs), int8_zoo, golden_util, reference_models
(the paper models by hand), torchvision_reference (torchvision's models as the zoo's reference), train_data, damaged
(bundles and JSON files edited as tools/fuzz.py damaged them, `tcc` in-process). Tests import them as
`tests.helpers...`: tests/ is a package (each folder one), so a test file's place in the tree does not matter."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the checkout's root: spec/, zoo/, tools/, tests/
TESTS = REPO / "tests"
LOCAL_SPECS = TESTS / "specs"  # the tests' own specs (onnx_ops.yaml, torchvision_ops.yaml, train_tiny.yaml)
GOLDEN = TESTS / "golden"  # the golden set (data: `tcc golden check tests/golden`)
FIXTURES = REPO.parent / "shared" / "fixtures" / "ddsnet"  # the DDSNet authors' checkpoints and images, when present


def cores_per_worker() -> int:
    """This test process's share of the CPU: all cores alone, cores / workers under pytest-xdist. Two workers each
    running 2-thread OpenMP kernels on 2 cores spin-wait on each other (measured: a 2 s float64 depthwise-heavy test
    took 25-42 s beside another worker), so thread pools are sized to the share (conftest.py sets torch's)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, (os.cpu_count() or 1) // workers)


def load_tool(name: str):
    """tools/NAME.py as a module (tools/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
