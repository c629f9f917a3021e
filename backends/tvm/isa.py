"""A registry target as TVM sees it (`resolve_tvm_target`, `tvm_target`) and what its CPU offers: ISA features from
LLVM, and the float32 SIMD shape (lanes, vector registers) that the schedules tile for. TVM is imported when a
target is asked about, not when this module loads: the INT8 kernels' table (int8/kernels.py) is read before the
build's worker has imported TVM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...targets import get_platform

ACCUMULATOR_RESERVE = 4  # vector registers kept for the weight vectors and the broadcast input of a step


@dataclass(frozen=True)
class Simd:
    """The target's float32 SIMD: lanes per vector register and the number of vector registers."""

    lanes: int
    registers: int

    @property
    def accumulators(self) -> int:
        return self.registers - ACCUMULATOR_RESERVE


def resolve_tvm_target(target_name: str) -> dict[str, Any]:
    """The registry's TVM target dict, with ``"mcpu": "native"`` replaced by this machine's CPU
    name (LLVM refuses "native" next to an explicit mtriple)."""
    d = get_platform(target_name).tvm_target_dict()
    if d.get("mcpu") == "native":
        import tvm  # deferred: an ARM build's own process need not import TVM (tvm_worker)

        d["mcpu"] = str(tvm.target.codegen.llvm_get_system_cpu())
    return d


def tvm_target(target_name: str):
    """The tvm.target.Target of a registry target (`resolve_tvm_target`)."""
    import tvm  # deferred: see the module's docstring

    return tvm.target.Target(resolve_tvm_target(target_name))


def target_has(target, feature: str) -> bool:
    """Whether the LLVM target has an ISA feature ("avx512f", "neon", ...); False for one LLVM does not know."""
    from tvm.target import codegen  # deferred: see the module's docstring

    try:
        return bool(codegen.target_has_features(feature, target))
    except Exception:
        return False


def simd_of(target) -> Simd:
    """Lanes and registers from the LLVM target: AVX-512 (16 lanes, 32 zmm), AVX/AVX2 (8 lanes, 16 ymm), NEON
    (4 lanes; 32 registers on AArch64, 16 q registers on ARMv7), else SSE-like (4 lanes, 16 registers)."""

    def has(feature: str) -> bool:
        return target_has(target, feature)

    triple = str(target.attrs.get("mtriple", ""))
    if triple.startswith("aarch64"):
        return Simd(4, 32)
    if triple.startswith("arm"):
        return Simd(4, 16)
    if has("avx512f"):
        return Simd(16, 32)
    if has("avx"):
        return Simd(8, 16)
    return Simd(4, 16)
