"""Issue 17's zoo on the ARM path: MobileNetV3-Small (hardswish, squeeze-excitation gated by hardsigmoid) built FP32
for arm-a7, its kit's own runner run under qemu by the build's self-check against the PyTorch lowering in float64
(the FP32 contract of tcc.tolerance), and `tcc predict --artifact` giving the same numbers here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tcc.build import build, build_settings
from tcc.cli.main import main
from tests.helpers import REPO
from tests.helpers.tvm_util import needs_tvm, require_runtime


@pytest.mark.slow  # DDSNet's arm-a7 bundle under qemu (backends/tvm/test_backend.py) checks the same path in CI
@needs_tvm
def test_mobilenet_v3_small_arm_a7_fp32_under_qemu(tmp_path, capsys):
    require_runtime("arm-a7")
    spec = REPO / "spec" / "baselines" / "mobilenet_v3_small.yaml"
    result = build(spec, build_settings("arm-a7", overrides={"image_size": 64}), tmp_path / "bundle")
    m = result.manifest
    check = m["self_check"]
    assert m["target"] == "arm-a7" and m["precision"] == "fp32"
    assert check["result"]["passed"] and check["result"]["max_abs_vs_float64"] <= check["result"]["bound"]
    assert "qemu" in json.dumps(check).lower() or "qemu" in (result.out / "kit" / "README.md").read_text()
    mix = m["target_checks"]["instruction_mix"]
    assert mix["arch"] == "armv7" and mix["simd"] > 0
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["predict", "--artifact", str(result.out), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    logits = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["logits"]
    assert len(logits) == 6 and np.isfinite(logits).all()
    print(
        f"\n[tvm] mobilenet_v3_small arm-a7 fp32: {json.dumps(check['result'])}; {mix['simd_kind']} {mix['simd']} of "
        f"{mix['instructions']} instructions"
    )
