"""The NEON requantization's intrinsics one call per register (backends/tvm/int8/register_split.py): what the split
leaves and what an epilogue of 16 lanes compiles to on AArch64 (compiled, not run: say so in the test names). Its
results under qemu: test_int8_kernels.py's requantization tests at 16 lanes, and the golden outputs."""

from __future__ import annotations

import re

import pytest

tvm = pytest.importorskip("tvm")

from tcc.backends.tvm.int8 import register_split, tir_pipeline
from tests.helpers.tir_rewrites import AARCH64, neon_epilogue


def _through_vectorize(mod):
    """The module lowered as TVM's default pipeline lowers it up to its vectorization (the rewrite's input)."""
    from tvm import s_tir

    steps = [
        s_tir.transform.LowerInitBlock(),
        s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
        s_tir.transform.ConvertBlocksToOpaque(),
        s_tir.transform.CompactBufferAllocation(),
        s_tir.transform.LowerMatchBuffer(),
        s_tir.transform.LowerOpaqueBlock(),
        tvm.tirx.transform.FlattenBuffer(),
        tvm.tirx.transform.VectorizeLoop(True),
    ]
    return tvm.transform.Sequential(steps)(mod)


def test_wide_calls_split_one_call_per_register():
    """A 16-lane epilogue's `sqdmulh` and `srshl` become four 4-lane calls each; a 4-lane one is left as it is."""
    wide = _through_vectorize(neon_epilogue(64, 16))["main"]
    split = register_split.split_wide_calls(wide)
    script = split.script()
    assert "int32x16" in wide.script() and re.search(r"llvm\.aarch64\.neon\.sqdmulh", wide.script())
    calls = re.findall(r'call_llvm_pure_intrin\("(int32x\d+)", "llvm\.aarch64\.neon\.(sqdmulh|srshl)"', script)
    assert sorted(set(calls)) == [("int32x4", "sqdmulh"), ("int32x4", "srshl")] and len(calls) == 8
    narrow = _through_vectorize(neon_epilogue(64, 4))["main"]
    assert register_split.split_wide_calls(narrow).same_as(narrow)


def test_epilogue_of_16_lanes_narrows_by_saturating_compiled_only():
    """For an AArch64 CPU (compiled, not run): 16 accumulators requantized to 16 u8 codes by `sqdmulh` and `srshl`
    per register, then `sqxtn` / `sqxtn2`, `sqadd` (the zero point) and `sqxtun` / `sqxtun2`: no int32 clamp, no
    `xtn` / `uzp1`."""
    target = tvm.target.Target(AARCH64)
    mod = neon_epilogue(64, 16)
    asm = tvm.compile(mod, target=target, tir_pipeline=tir_pipeline.for_kernels(target)).mod.inspect_source("s")
    for instruction in (
        r"sqdmulh\s+v\d+\.4s",
        r"srshl\s+v\d+\.4s",
        r"sqxtn2\s+v\d+\.8h",
        r"sqadd\s+v\d+\.8h",
        r"sqxtun2\s+v\d+\.16b",
    ):
        assert re.search(instruction, asm), instruction
    assert not re.search(r"\b(smax|smin)\s+v\d+\.4s|\bxtn\s|\buzp1\s", asm)
