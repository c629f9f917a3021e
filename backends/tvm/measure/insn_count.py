"""Executed ARM instructions per inference, counted exactly under qemu-user: the ARM cost measure that runs here.

qemu cannot time ARM code, but a TCG plugin (``qemu_plugin/insn_count.c``) counts every instruction it executes,
by disassembled text. A module's cost per inference is counted from the blocks one inference executes
(`tcc.backends.tvm.measure.blocks`); here: the plugin itself, the names of the texts qemu cannot name, and the
totals of a {text: count} table, each text classified as SIMD or scalar by the rule of the static instruction mix
(:func:`tcc.backends.tvm.measure.instruction_mix.is_simd`).

The plugin is compiled once per source hash with the host C compiler into the runtime cache.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from ..runtime import RunError, ToolchainMissing, cache_root, find_command
from .instruction_mix import is_simd

PLUGIN_SOURCE = Path(__file__).with_name("qemu_plugin") / "insn_count.c"

# Integer multiply-accumulates on 8-bit data widened on the way (what ARM's own int8 kernels are made of), and
# float multiply(-accumulate)s: the two kinds of arithmetic a conv's inner loop is built from.
_INT8_MAC = {
    "armv7": (
        "vmull.s8",
        "vmull.u8",
        "vmlal.s8",
        "vmlal.u8",
        "vpadal.s16",
        "vpadal.u16",
        "vmla.i8",
        "vmla.i16",
        "vmlal.s16",
        "vmull.s16",
        "vmlal.u16",
        "vdot.s8",
        "vsdot.s8",
    ),
    "aarch64": (
        "smull",
        "smull2",
        "smlal",
        "smlal2",
        "umull",
        "umull2",
        "umlal",
        "umlal2",
        "sadalp",
        "uadalp",
        "sdot",
        "udot",
        "mla",
    ),
}
_FLOAT_MAC = {
    "armv7": ("vmla.f32", "vfma.f32", "vmul.f32", "vmls.f32", "vfms.f32"),
    "aarch64": ("fmla", "fmul", "fmls", "fmadd", "fmsub"),
}


def plugin_path() -> Path:
    """The compiled plugin (built on first use; the cache key is the source's hash)."""
    source = PLUGIN_SOURCE.read_bytes()
    out = cache_root() / "qemu-plugin" / f"insn_count-{hashlib.sha256(source).hexdigest()[:16]}.so"
    if out.exists():
        return out
    cc = next((c for c in ("cc", "gcc", "clang") if find_command(c)), None)
    if cc is None:
        raise ToolchainMissing(
            "counting ARM instructions needs a host C compiler (Debian package gcc) to build the qemu plugin"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    proc = subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(tmp), str(PLUGIN_SOURCE)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RunError(f"building the qemu instruction-count plugin failed:\n{proc.stderr.strip()}")
    os.replace(tmp, out)  # atomic: a concurrent build writes the same bytes
    return out


# AArch64 dot products, which qemu 7.2's disassembler prints as `.byte`: (mask, value, by element) of SDOT / UDOT
# (vector, and by element), U = bit 29 (udot), Q = bit 30 (16 bytes)
_A64_DOT = ((0x9FE0FC00, 0x0E809400, False), (0x9FC0F400, 0x0F80E000, True))


def named(text: str) -> str:
    """An instruction's disassembly, or for an AArch64 dot product that qemu could not name (`.byte b0, b1, b2,
    b3`) its name and operands as objdump writes them, so that the counts class it (SIMD, int8 MAC)."""
    if not text.startswith(".byte "):
        return text
    try:
        b = [int(v, 16) for v in text[6:].split(",")]
    except ValueError:
        return text
    if len(b) != 4:
        return text
    word = int.from_bytes(bytes(b), "little")
    for mask, value, by_element in _A64_DOT:
        if word & mask == value:
            d, n, m = word & 31, (word >> 5) & 31, (word >> 16) & 31  # by element: M:Rm
            q, u = word >> 30 & 1, word >> 29 & 1
            rm = f"v{m}.4b[{(word >> 11 & 1) * 2 + (word >> 21 & 1)}]" if by_element else f"v{m}.{16 if q else 8}b"
            return f"{'u' if u else 's'}dot v{d}.{'4s' if q else '2s'}, v{n}.{16 if q else 8}b, {rm}"
    return text


def count_command(argv: list[str], qemu: list[str] | tuple[str, ...], timeout: float = 900) -> Counter:
    """Executed instructions of `argv` (a target program) under the qemu prefix `qemu`: {disassembly: count}."""
    with tempfile.TemporaryDirectory(prefix="tcc-insn-") as tmp:
        out = Path(tmp) / "counts.tsv"
        cmd = [qemu[0], "-plugin", f"{plugin_path()},out={out}", *qemu[1:], *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if "unknown option --runs" in proc.stderr:
            raise RunError(f"{argv[0]} predates `--runs` (instruction counting); rebuild the bundle with this tcc")
        if proc.returncode != 0 or not out.exists():
            raise RunError(
                f"counting instructions failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}"
            )
        counts: Counter = Counter()
        for line in out.read_text().splitlines():
            n, _, text = line.partition("\t")
            counts[named(text.strip())] += int(n)
    return counts


def summarize(counts: Counter, arch: str) -> dict[str, Any]:
    """Totals of a {disassembly: count} table: total, SIMD, scalar, int8 and float multiply-accumulates, and the
    most executed base mnemonics."""
    total = simd = int8_mac = float_mac = 0
    by_mnemonic: Counter = Counter()
    for text, n in counts.items():
        mnemonic, _, operands = text.partition(" ")
        total += n
        if is_simd(arch, mnemonic, operands):
            simd += n
        base = mnemonic.lower()
        if base.startswith(_INT8_MAC.get(arch, ())) and (
            arch != "aarch64" or ".8b" in operands or ".16b" in operands or ".8h" in operands or ".4h" in operands
        ):
            int8_mac += n
        elif base.startswith(_FLOAT_MAC.get(arch, ())):
            float_mac += n
        by_mnemonic[base] += n
    return {
        "arch": arch,
        "total": total,
        "simd": simd,
        "scalar": total - simd,
        "simd_fraction": round(simd / total, 4) if total else 0.0,
        "int8_mac": int8_mac,
        "float_mac": float_mac,
        "top_mnemonics": dict(by_mnemonic.most_common(12)),
    }
