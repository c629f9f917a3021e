"""The AArch64 sysroot the peers run in under qemu: Debian's arm64 Python 3.11 and the registry's aarch64 wheels of
the venv's ONNX Runtime, LiteRT and numpy, unpacked (nothing installed on this machine), and one view of it per CPU
class with its own ``/proc/cpuinfo``.

qemu-user 7.2 shows an AArch64 guest the host's ``/proc/cpuinfo``, on which ``import onnxruntime`` crashes; each
class's view (its ``-L`` root) has a ``proc/cpuinfo`` naming the core's part number and the HWCAPs qemu gives that
``-cpu`` (read from a probe run under it), so MLAS, XNNPACK and ruy choose their kernels for that core.

Cached under the runtime cache (``~/.cache/tcc/arm-peers-<hash>/``, keyed by the packages and versions); made on
first use: ``apt-get download`` (needs the arm64 architecture in dpkg: added as root, else the command is named) and
``pip download``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tcc.backends.tvm.runtime import RunError, ToolchainMissing, cache_root
from tcc.targets import get_platform


@dataclass(frozen=True)
class CoreClass:
    """An AArch64 CPU class the peers run on: tcc's target of that class (its qemu -cpu and cycle model) and the
    part number its cpuinfo names."""

    key: str
    target: str
    part: str  # MIDR part number (Arm: 0xd03 Cortex-A53, 0xd05 Cortex-A55)
    variant: str  # MIDR variant, the rN of rNpM: pytorch/cpuinfo (MLAS, XNNPACK) takes an A55 r0 to lack the dot
    revision: str  # product and to dual-issue less, so the A55 class is an r2p0 (the common one); the A53 an r0p4


CORE_CLASSES = {
    "a53": CoreClass("a53", "aarch64", "0xd03", "0x0", "4"),
    "a55": CoreClass("a55", "aarch64-dotprod", "0xd05", "0x2", "0"),
}

DEBIAN_PACKAGES = (  # Debian bookworm arm64: the interpreter and what its standard library links
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "libstdc++6",
    "libgcc-s1",
    "zlib1g",
    "libexpat1",
    "libffi8",
    "libssl3",
    "libbz2-1.0",
    "liblzma5",
    "libsqlite3-0",
    "libncursesw6",
    "libtinfo6",
    "libreadline8",
    "libuuid1",
    "libcrypt1",
)
WHEELS = ("onnxruntime", "ai-edge-litert", "numpy")  # at the venv's versions, with their dependencies
_PLATFORMS = ("manylinux_2_17_aarch64", "manylinux2014_aarch64", "manylinux_2_27_aarch64", "manylinux_2_28_aarch64")
PYTHON = "usr/bin/python3.11"
SITE = "usr/lib/python3/dist-packages"

# Linux's arm64 HWCAP bits, in order (arch/arm64/kernel/cpuinfo.c), as /proc/cpuinfo names them
_HWCAPS = [
    "fp",
    "asimd",
    "evtstrm",
    "aes",
    "pmull",
    "sha1",
    "sha2",
    "crc32",
    "atomics",
    "fphp",
    "asimdhp",
    "cpuid",
    "asimdrdm",
    "jscvt",
    "fcma",
    "lrcpc",
    "dcpop",
    "sha3",
    "sm3",
    "sm4",
    "asimddp",
    "sha512",
    "sve",
    "asimdfhm",
    "dit",
    "uscat",
    "ilrcpc",
    "flagm",
    "ssbs",
    "sb",
    "paca",
    "pacg",
]
_PROBE = '#include <stdio.h>\n#include <sys/auxv.h>\nint main(void){printf("%lx\\n", getauxval(AT_HWCAP));}\n'


def versions() -> dict[str, str]:
    """The venv's versions of the peers' wheels (what the sysroot pins)."""
    try:
        return {name: importlib.metadata.version(name) for name in WHEELS}
    except importlib.metadata.PackageNotFoundError as e:
        raise ToolchainMissing(f"the ARM peers pin the venv's {e.name}, which is not installed") from None


def sysroot() -> Path:
    """The sysroot, made on first use; its views per class are `view(key)`."""
    pins = versions()
    key = hashlib.sha256(repr((DEBIAN_PACKAGES, sorted(pins.items()), _PLATFORMS)).encode()).hexdigest()[:12]
    root = cache_root() / f"arm-peers-{key}"
    if (root / "ready").exists():
        return root
    for tool in ("apt-get", "dpkg", "aarch64-linux-gnu-gcc", "qemu-aarch64"):
        if shutil.which(tool) is None:
            raise ToolchainMissing(f"the ARM peers' sysroot needs `{tool}` (make setup-arm)")
    wanted = ", ".join(f"{k} {v}" for k, v in pins.items())
    print(f"tcc: making the ARM peers' sysroot in {root} (once): Debian's arm64 Python 3.11, {wanted}", file=sys.stderr)
    shutil.rmtree(root, ignore_errors=True)
    tree = root / "tree"
    tree.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="tcc-peers-") as tmp:
        for deb in _download_debs(Path(tmp)):
            _run(["dpkg", "-x", str(deb), str(tree)], "unpacking a Debian package")
        wheels = Path(tmp) / "wheels"
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--only-binary=:all:",
                *[f"--platform={p}" for p in _PLATFORMS],
                "--python-version=3.11",
                "--implementation=cp",
                "--abi=cp311",
                "-d",
                str(wheels),
                *[f"{name}=={v}" for name, v in pins.items()],
            ],
            "downloading the peers' aarch64 wheels",
        )
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as z:
                z.extractall(tree / SITE)
    (root / "ready").write_text(repr(sorted(pins.items())) + "\n")
    return root


def view(key: str) -> Path:
    """The sysroot as the class `key` sees it (qemu's -L): the shared tree and the class's own /proc/cpuinfo."""
    root = sysroot()
    _write_view(root, CORE_CLASSES[key])
    return root / key


def qemu_prefix(key: str) -> tuple[str, ...]:
    """qemu's prefix for a peer of the class: its view as the sysroot, the class's -cpu."""
    platform = get_platform(CORE_CLASSES[key].target)
    qemu = platform.qemu or ()
    cpu = list(qemu[qemu.index("-cpu") : qemu.index("-cpu") + 2]) if "-cpu" in qemu else []
    return ("qemu-aarch64", "-L", str(view(key)), *cpu)


def _download_debs(into: Path) -> list[Path]:
    """Debian's arm64 packages downloaded (not installed); the arm64 architecture added to dpkg first where it
    is missing and this is root."""
    command = ["apt-get", "download", *[f"{p}:arm64" for p in DEBIAN_PACKAGES]]
    done = subprocess.run(command, cwd=into, capture_output=True, text=True)
    if done.returncode != 0:
        arches = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout
        if "arm64" in arches.split() or os.geteuid() != 0:
            raise ToolchainMissing(
                "downloading Debian's arm64 Python failed; as root: dpkg --add-architecture arm64 && apt-get "
                f"update (apt-get said: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else '?'})"
            )
        print("tcc: dpkg --add-architecture arm64 && apt-get update (to download arm64 packages)", file=sys.stderr)
        _run(["dpkg", "--add-architecture", "arm64"], "adding the arm64 architecture")
        _run(["apt-get", "update", "-qq"], "apt-get update")
        _run(command, "downloading Debian's arm64 Python", cwd=into)
    return sorted(into.glob("*.deb"))


def _write_view(root: Path, core: CoreClass) -> None:
    """The class's view: links to the shared tree, and its /proc/cpuinfo with the HWCAPs qemu gives its -cpu."""
    folder = root / core.key
    (folder / "proc").mkdir(parents=True, exist_ok=True)
    for top in ("etc", "lib", "usr"):
        if not (folder / top).is_symlink():
            (folder / top).symlink_to(Path("..") / "tree" / top)
    features = " ".join(_hwcaps(core))
    cpuinfo = (
        f"processor\t: 0\nBogoMIPS\t: 100.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: {core.variant}\nCPU part\t: {core.part}\n"
        f"CPU revision\t: {core.revision}\n\n"
    )
    if not (folder / "proc" / "cpuinfo").exists() or (folder / "proc" / "cpuinfo").read_text() != cpuinfo:
        (folder / "proc" / "cpuinfo").write_text(cpuinfo)


@cache
def _hwcaps(core: CoreClass) -> list[str]:
    """The HWCAP names qemu gives a program under the class's -cpu (a probe compiled and run there)."""
    platform = get_platform(core.target)
    with tempfile.TemporaryDirectory(prefix="tcc-hwcap-") as tmp:
        src, exe = Path(tmp) / "probe.c", Path(tmp) / "probe"
        src.write_text(_PROBE)
        _run(["aarch64-linux-gnu-gcc", "-static", "-O1", "-o", str(exe), str(src)], "compiling the HWCAP probe")
        bits = int(_run([*(platform.qemu or ()), str(exe)], "running the HWCAP probe").strip(), 16)
    return [name for i, name in enumerate(_HWCAPS) if bits >> i & 1]


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        raise RunError(f"{what} failed (exit {done.returncode}): {' '.join(argv)}\n{done.stderr.strip()[-2000:]}")
    return done.stdout
