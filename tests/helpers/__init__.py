"""What the tests share, in one place: the repository's paths here; beside it the helper modules (onnx_util: ONNX
graphs and ONNX Runtime sessions; tvm_util: the TVM / toolchain / qemu skips; quant_models, reference_models,
torchvision_reference, int8_zoo, golden_util, train_data, spec_util). Tests import them as `tests.helpers...` (tests/
is a package, so a test file's place in the tree does not matter)."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the checkout's root: spec/, zoo/, tools/, tests/
TESTS = REPO / "tests"
LOCAL_SPECS = TESTS / "specs"  # the tests' own specs (onnx_ops.yaml, torchvision_ops.yaml, train_tiny.yaml)
GOLDEN = TESTS / "golden"  # the golden set (data: `tcc golden check tests/golden`)
FIXTURES = REPO.parent / "shared" / "fixtures" / "ddsnet"  # the DDSNet authors' checkpoints and images, when present
