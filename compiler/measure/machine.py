"""The machine a benchmark ran on: CPU model, the ISA flags that decide which kernels are fast, load, versions.

Speed ratios change with the instruction set (8-bit dot products make integer kernels pay off), so every bench
result carries them and the speed targets pick their bound by `int8_dot`.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

# x86 flags (as /proc/cpuinfo spells them) that change which kernels ORT, oneDNN and LLVM pick
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
)
# the x86 flags of an 8-bit dot product summing four u8 x s8 products into int32 (VPDPBUSD; AMX's tiles): what makes
# integer kernels pay off (`int8_dot`) and what keeps ONNX Runtime's u8 x s8 sums exact (`u8s8_exact`)
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
LIBRARIES = ("onnxruntime", "torch", "apache-tvm", "ai-edge-litert", "numpy", "onnx")


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def u8s8_exact(flags: set[str] | None = None, arch: str | None = None) -> bool:
    """Whether ONNX Runtime's u8 x s8 integer kernels (MLAS) sum 8-bit products exactly on this CPU: ARM64 (dot
    products or widening multiplies) and x86 with AVX-VNNI, AVX-512 VNNI or AMX (VPDPBUSD sums four products into
    int32). Other x86 CPUs add two products in a saturating int16 (VPMADDUBSW): 255 x (127 + 127) does not fit, so
    8-bit weights can give silently wrong sums there (the `ort` rules' 7-bit dense weights never do)."""
    arch = (arch or platform.machine()).lower()
    if arch in ("aarch64", "arm64"):
        return True
    return bool(INT8_DOT_FLAGS & (cpu_flags() if flags is None else flags))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def isa_class(flags: set[str]) -> str:
    """The CPU class the speed targets distinguish: "avx512-vnni", "avx-vnni", "avx512", "avx2" or "baseline"."""
    if "avx512_vnni" in flags:
        return "avx512-vnni"
    if "avx_vnni" in flags:
        return "avx-vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "baseline"


def machine_info() -> dict:
    flags = cpu_flags()

    def version(lib):
        try:
            return metadata.version(lib)
        except metadata.PackageNotFoundError:
            return None

    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "isa": sorted(f for f in ISA_FLAGS if f in flags),
        "isa_class": isa_class(flags),
        "int8_dot": bool(INT8_DOT_FLAGS & flags),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "libraries": {lib: version(lib) for lib in LIBRARIES},
    }


def source_revision() -> dict:
    """The commit of the tcc source that runs (git, where tcc runs from a checkout) and whether it has uncommitted
    changes; {"commit": None} for an installed package or without git."""
    source = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
