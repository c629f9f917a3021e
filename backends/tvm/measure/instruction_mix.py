"""Vector-instruction evidence for a compiled module: ``objdump -d`` (the target's) counted by kind.

NEON on ARMv7, AdvSIMD on AArch64, SSE/AVX on x86_64; the TVM backend reports it per bundle (extra_checks).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from typing import Any

from ....targets import get_platform
from ..runtime import ToolchainMissing, find_command

_ARMV7_NEON_ONLY = re.compile(
    r"^v(ld[1-4]|st[1-4]|dup|ext|zip|uzp|trn|tbl|tbx|bsl|bit|bif|rev(16|32|64)|movl|movn|qmovn|qmovun|"
    r"pad[dl]?|pmax|pmin|padal|recpe|recps|rsqrte|rsqrts|cnt|clz|cls|swp|shl|shr|sra|sli|sri|qshl|rshr|"
    r"rsra|qrshl|qrshr|addl|addw|subl|subw|mull|mlal|mlsl|qdmull|qdmulh|qrdmulh|tst|and|orr|eor|bic|orn)"
)


def _is_armv7_neon(mnemonic: str, operands: str) -> bool:
    if not mnemonic.startswith("v"):
        return False
    if re.search(r"\bq\d+\b", operands):
        return True
    base = mnemonic.split(".")[0]
    if _ARMV7_NEON_ONLY.match(base):
        return True
    # VFP's only d-register arithmetic is .f64; any other typed op on d registers is NEON.
    return bool(
        re.search(r"\bd\d+\b", operands)
        and re.search(r"\.(f32|f16|[isu]\d+)\b", mnemonic)
        and base not in ("vmov", "vldr", "vstr", "vpush", "vpop", "vldmia", "vstmia", "vcvt")
    )


def _is_aarch64_simd(mnemonic: str, operands: str) -> bool:
    return bool(
        re.search(r"\bv\d+\.\d*[bhsd]\b", operands)
        or (mnemonic.startswith(("ld", "st")) and re.search(r"\bq\d+\b", operands))
    )


def is_simd(arch: str, mnemonic: str, operands: str) -> bool:
    """Whether one disassembled instruction is a vector one: NEON (armv7), AdvSIMD (aarch64), SSE/AVX (x86_64).
    The static mix here and the executed counts (insn_count) classify with this one rule."""
    if arch == "armv7":
        return _is_armv7_neon(mnemonic, operands)
    if arch == "aarch64":
        return _is_aarch64_simd(mnemonic, operands)
    return bool(re.search(r"%[xyz]mm\d+", operands)) and mnemonic.startswith("v")


def is_amx(mnemonic: str, operands: str) -> bool:
    """Whether one disassembled x86 instruction is an AMX one: on tile registers (`tdpbusd`, `tileloadd`, ...), or
    the tile configuration's (`ldtilecfg`, `sttilecfg`, `tilerelease`)."""
    return bool(re.search(r"%tmm\d+", operands)) or mnemonic in ("ldtilecfg", "sttilecfg", "tilerelease")


def instruction_mix(so_path: str | os.PathLike, target_name: str) -> dict[str, Any]:
    """Vector-instruction evidence from ``objdump -d`` of a compiled module.

    Returns {"arch", "total" (instructions), "simd" (NEON/AdvSIMD instructions), "simd_by_mnemonic"
    (Counter, base mnemonic without type suffix), "simd_by_full_mnemonic", "amx_by_mnemonic"}.  host: AVX/SSE
    (ymm/zmm/xmm operands) is counted as simd, AMX's tile instructions apart (`is_amx`).
    """
    platform = get_platform(target_name)
    objdump = platform.objdump
    if not find_command(objdump):
        raise ToolchainMissing(f"`{objdump}` not found (Debian package {platform.apt_packages[0]})")
    text = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", str(so_path)], capture_output=True, text=True, check=True
    ).stdout
    total, simd = 0, 0
    by_base: Counter[str] = Counter()
    by_full: Counter[str] = Counter()
    amx: Counter[str] = Counter()
    for line in text.splitlines():
        m = re.match(r"^\s*[0-9a-f]+:\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        mnem, ops = m.group(1), m.group(2).split(";")[0].split("//")[0].split("@")[0]
        if mnem.startswith(".") or mnem == "(bad)":
            continue
        total += 1
        if platform.arch == "x86_64" and is_amx(mnem, ops):
            amx[mnem] += 1
        elif is_simd(platform.arch, mnem, ops):
            simd += 1
            by_base[mnem.split(".")[0]] += 1
            by_full[mnem] += 1
    return {
        "arch": platform.arch,
        "total": total,
        "simd": simd,
        "simd_by_mnemonic": dict(by_base.most_common()),
        "simd_by_full_mnemonic": dict(by_full.most_common()),
        "amx_by_mnemonic": dict(amx.most_common()),
    }
