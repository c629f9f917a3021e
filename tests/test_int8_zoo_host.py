"""INT8 for every zoo spec on the TVM host target (`tcc build --target host --precision int8` at test sizes): the
module equals the integer reference bit for bit, and the bundle's quality vs FP32 on held-out inputs stays at or
above its recorded floor (tests/int8_zoo.json)."""
from __future__ import annotations

import pytest

from int8_zoo import CI_SUBSET, build_and_measure, recorded, zoo_names

pytest.importorskip("tvm")


# CI builds MobileNetV3-Small and RegNetY-400MF on host; DenseNet, GoogLeNet and ShuffleNetV2 run INT8 on ORT in
# CI (test_int8_zoo_ort.py) and on host with tools/slow_tests.sh (~70 s together)
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in CI_SUBSET else n
                                  for n in zoo_names(int8=True)])
def test_int8_host(name, tmp_path):
    manifest, cosine = build_and_measure(name, "host", tmp_path)
    result = manifest["self_check"]["result"]
    assert result["passed"] and result["bit_exact"]
    want = recorded(name, "host")
    print(f"\n[int8 host] {name}: cosine vs FP32 {cosine:.6f} (recorded {want['measured']}, floor {want['floor']}), "
          f"integer ops {manifest['quantization']['integer_ops']}")
    assert cosine >= want["floor"]
