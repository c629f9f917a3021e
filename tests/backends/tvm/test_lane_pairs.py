"""The float64 requantization on int64 lane pairs (backends/tvm/int8/lane_pairs.py): bit-exact with the reference's
half-to-even rounding on its edge cases at every vector width, what it compiles to on an AVX-512 CPU and that an
AVX2 CPU keeps TVM's pipeline (compiled, not run: say so in the test names)."""

from __future__ import annotations

import re

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tcc.backends.tvm import compile as tvm_compile
from tcc.backends.tvm.int8 import lane_pairs, tir_pipeline
from tcc.backends.tvm.int8.requantize import FLOAT64_EXACT
from tcc.backends.tvm.isa import target_has
from tcc.quant.intgraph.reference import multiply_by_quantized_multiplier, quantize_multiplier
from tests.helpers.tir_rewrites import HASWELL, ICELAKE, lrint_requantize


def _edge_cases(n: int):
    """Multipliers below 1 and accumulators within the float64 form's bound (|acc q| < 2^53): ties (q = 2^30,
    M = 2^-s: every odd multiple of 2^(s-1)), products beside a half, the bound's extremes, zero, +-1."""
    rng = np.random.default_rng(0)
    q, shift = quantize_multiplier(rng.uniform(2.0**-31, 0.999, n))
    q[: n // 4], shift[: n // 4] = 2**30, -rng.integers(0, 21, n // 4)
    bound = np.minimum((FLOAT64_EXACT - 1) // q, 2**31 - 1)
    acc = rng.integers(-bound, bound + 1)
    ties = np.arange(n) < n // 4
    acc[ties] = (rng.integers(-(2**8), 2**8, ties.sum()) * 2 + 1) << (-shift[ties]).clip(0, 20)
    k = 31 - shift
    half = np.round((rng.integers(-(2**10), 2**10, n) + 0.5) * np.ldexp(1.0, k) / q).astype(np.int64)
    near = (np.arange(n) % 4 == 1) & ~ties & (np.abs(half) <= bound)
    acc[near] = half[near] + rng.integers(-1, 2, n)[near]
    acc[n // 4 : n // 4 + 8] = [0, 1, -1, 2, -2, 3, -3, 7]
    acc[-8:] = bound[-8:] * np.array([1, -1] * 4)
    m = np.ldexp(q.astype(np.float64), -k.astype(np.int32))
    return acc.astype(np.int32), m, multiply_by_quantized_multiplier(acc, q, shift)


@pytest.mark.parametrize("lanes", [4, 8, 16, 32])
def test_lane_pairs_bit_exact_on_edge_cases(lanes):
    """Each width the kernels' epilogues take (32: two registers), on this CPU where it has AVX-512 DQ: equal to
    the reference's half-to-even rounding of acc q / 2^k, and the rewrite took every lrint."""
    target = tvm.target.Target(tvm_compile.resolve_tvm_target("host"))
    if not target_has(target, "avx512dq"):
        pytest.skip("this CPU has no AVX-512 DQ (the rewrite is not used)")
    n = 4096
    acc, m, want = _edge_cases(n)
    mod = lrint_requantize(n, lanes)
    lowered = lane_pairs.lane_pairs_pass()(
        tvm.tirx.get_tir_pipeline("default")[0](tvm.tirx.transform.BindTarget(target.with_host(target))(mod))
    )
    script = lowered.script()
    assert "llvm.lrint" not in script and script.count("llvm.fma") >= 2
    ex = tvm.compile(mod, target=target, tir_pipeline=tir_pipeline.for_kernels(target))
    out = tvm.runtime.tensor(np.zeros(n, np.int32))
    ex["main"](tvm.runtime.tensor(acc), tvm.runtime.tensor(m), out)
    np.testing.assert_array_equal(out.numpy(), want)


def test_lane_pairs_compile_to_conversions_of_int64_lanes_compiled_only():
    """For an AVX-512 CPU (compiled, not run): the requantization converts int64 lanes (`vcvtqq2pd`) and rounds in
    the fma, with none of the int32 <-> float64 conversions whose widening and narrowing are port-5 shuffles. An
    AVX2 CPU (no int64 -> double conversion) keeps TVM's pipeline and those conversions."""
    mod = lrint_requantize(64, 16)
    icelake, haswell = tvm.target.Target(ICELAKE), tvm.target.Target(HASWELL)
    script = mod["main"].script()
    assert tir_pipeline.for_kernels(icelake, [script]) == "tcc_tir_lane_pairs"
    assert tir_pipeline.for_kernels(haswell, [script]) == "default"
    assert tir_pipeline.for_kernels(icelake, ["a kernel without an lrint"]) == "default"
    asm = tvm.compile(mod, target=icelake, tir_pipeline=tir_pipeline.for_kernels(icelake)).mod.inspect_source("s")
    assert re.search(r"vcvtqq2pd\s[^\n]*%zmm", asm) and re.search(r"vfmadd\d+pd\s[^\n]*%zmm", asm)
    assert not re.search(r"vcvtdq2pd|vcvtpd2dq", asm)
    asm = tvm.compile(mod, target=haswell, tir_pipeline=tir_pipeline.for_kernels(haswell)).mod.inspect_source("s")
    assert re.search(r"vcvtpd2dq", asm) and "vcvtqq2pd" not in asm


def test_lane_pairs_leave_other_code_alone():
    """Only lrint of Cast(float64, int32) * M is rewritten: a float32 lrint, and a function without one, stay."""
    from tvm import te, tirx

    x = te.placeholder((16,), "float32", name="x")
    y = te.compute((16,), lambda i: tirx.call_llvm_pure_intrin("int32", "llvm.lrint", x[i] * 2.0), name="y")
    func = te.create_prim_func([x, y])
    assert lane_pairs.requantize_on_lane_pairs(func).same_as(func)
