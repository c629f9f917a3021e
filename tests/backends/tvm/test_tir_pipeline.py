"""tcc's TIR pipeline (backends/tvm/int8/tir_pipeline.py): TVM's default pass for pass, with each rewrite right after
vectorization, and the pipeline each target and kernel takes (compiled, not run)."""

from __future__ import annotations

import pytest

tvm = pytest.importorskip("tvm")

from tcc.backends.tvm.int8 import tir_pipeline
from tests.helpers.tir_rewrites import AARCH64, ICELAKE, lrint_requantize, neon_epilogue


def _pass_names(mod, target, pipeline) -> list[str]:
    from tvm.ir.instrument import pass_instrument

    seen = []

    @pass_instrument
    class Record:
        def run_before_pass(self, mod, info):
            seen.append(info.name)

    with tvm.transform.PassContext(instruments=[Record()]):
        tvm.tirx.build(mod, target=target, pipeline=pipeline)
    return [n for n in seen if n not in ("_pipeline", "sequential") and not n.startswith(tir_pipeline.PREFIX)]


@pytest.mark.parametrize(
    "target, mod, rewrite",
    [
        (ICELAKE, lambda: lrint_requantize(64, 16), "tcc.RequantizeOnLanePairs"),
        (AARCH64, lambda: neon_epilogue(64, 16), "tcc.SplitNeonIntrinsics"),
    ],
)
def test_pipeline_is_tvms_default_with_the_rewrite_after_vectorization(target, mod, rewrite):
    """The pipeline copies TVM's default TIR pipeline pass for pass (so that a TVM upgrade that changes it fails
    here), with the target's rewrite inserted right after VectorizeLoop."""
    target = tvm.target.Target(target)
    name = tir_pipeline.for_kernels(target)
    assert name != "default"
    default, ours = _pass_names(mod(), target, "default"), _pass_names(mod(), target, name)
    at = default.index("tirx.VectorizeLoop") + 1
    assert ours == default[:at] + [rewrite] + default[at:]


def test_each_target_takes_its_rewrite_where_a_kernel_has_its_pattern():
    """AVX-512 DQ: the lane pairs, where a kernel has an lrint; ARM (NEON): the register split, where a kernel calls
    a NEON requantization intrinsic; neither elsewhere."""
    icelake, aarch64 = tvm.target.Target(ICELAKE), tvm.target.Target(AARCH64)
    lrint, neon = lrint_requantize(64, 16)["main"].script(), neon_epilogue(64, 16)["main"].script()
    assert tir_pipeline.for_kernels(icelake, [neon, lrint]) == "tcc_tir_lane_pairs"
    assert tir_pipeline.for_kernels(aarch64, [lrint, neon]) == "tcc_tir_register_split"
    assert tir_pipeline.for_kernels(icelake, [neon]) == tir_pipeline.for_kernels(aarch64, [lrint]) == "default"
