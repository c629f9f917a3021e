"""Executed ARM instructions per function: where one inference's instructions go, counted exactly under qemu.

The instruction counter (`insn_count`) counts by instruction text; here the same TCG plugin counts by address
(its argument ``addresses=on``), and each address is attributed to the function of the image it lies in:

- the images and where they are mapped come from qemu's own log of the run (``-strace``: the ``openat`` of each
  shared library and the ``mmap2`` of its file at offset 0, which is the library's load bias; ``-d page``:
  ``start_code`` of the program itself), written to a file with ``-D``, so the program's output is untouched;
- the functions come from each image's symbol table (``nm -n``; the dynamic one where the static table was
  stripped): an address belongs to the nearest function symbol at or below it.

One inference is the difference of the runner doing two and one inferences, as in `insn_count.per_inference`,
taken per function: the module's kernels (``fused_conv2d_add_relu_compute_``, ...) and the runtime around them
(``libtvm_runtime.so:...``, ``libc.so.6:memcpy``). The total equals `insn_count.per_inference`'s total.
"""

from __future__ import annotations

import bisect
import os
import re
import struct
import subprocess
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ....targets import get_platform
from ..runtime import RunError, ToolchainMissing, find_command
from ..tensor_file import write_tensor_file
from .insn_count import named, plugin_path
from .instruction_mix import is_simd

if TYPE_CHECKING:
    import numpy as np

UNATTRIBUTED = "<unattributed>"  # an address in no image the log named (the dynamic loader's first steps)

_OPEN = re.compile(r'^\d+ open(?:at)?\((?:[^,]*,)?"([^"]+)",.*\) = (\d+)$')
_MMAP = re.compile(r"^\d+ mmap2?\([^,]*,(\d+),[^,]*,[^,]*,(\d+),(\w+)\) = (0x[0-9a-f]+)$")
_START_CODE = re.compile(r"^start_code\s+(0x[0-9a-f]+)$")
_ENTRY = re.compile(r"^entry\s+(0x[0-9a-f]+)$")


@dataclass(frozen=True)
class Image:
    """A file mapped into the guest: its path and the address range of its first mapping (the load bias on)."""

    path: str
    start: int
    end: int


def mapped_images(log: str, program: str, sysroot: str | None = None) -> list[Image]:
    """The images a run's qemu log (``-strace -d page``) shows mapped: the program (``start_code``, its span open
    ended up to the next image), its dynamic loader (where qemu's ``entry`` lies: the loader's entry point, found
    under `sysroot`) and each file opened and mapped: from its mapping at offset 0 (the load bias) to the end of
    its last mapping."""
    images, fds = [], {}
    lines = _joined(log)
    interp = _interpreter(program, sysroot)
    spans: dict[str, list] = {}  # fd -> [path, start, end] of the file it has open, once mapped
    for line in lines:
        if m := _START_CODE.match(line):
            images.append(Image(program, int(m.group(1), 16), -1))
        elif (m := _ENTRY.match(line)) and interp is not None:
            path, entry, size = interp
            start = int(m.group(1), 16) - entry
            images.append(Image(path, start, start + size))
        elif m := _OPEN.match(line):
            if m.group(2) in spans:  # the descriptor is reused: the file it had is mapped in full
                images.append(Image(*spans.pop(m.group(2))))
            fds[m.group(2)] = m.group(1)
        elif (m := _MMAP.match(line)) and m.group(2) in fds:
            size, fd, offset, at = int(m.group(1)), m.group(2), int(m.group(3), 0), int(m.group(4), 16)
            if fd not in spans and offset == 0:  # the load bias: ARMv7's loader maps the whole span here,
                spans[fd] = [fds[fd], at, at + size]  # AArch64's reserves it anonymously, then maps segments
            elif fd in spans:
                spans[fd][2] = max(spans[fd][2], at + size)
    images += [Image(*span) for span in spans.values()]
    images.sort(key=lambda im: im.start)
    return [
        im if im.end >= 0 else Image(im.path, im.start, nxt.start if nxt else 1 << 64)
        for im, nxt in zip(images, [*images[1:], None])
    ]


def _interpreter(program: str, sysroot: str | None) -> tuple[str, int, int] | None:
    """(path, entry point, file size) of a dynamic program's loader (its PT_INTERP under `sysroot`), else None."""

    try:
        data = Path(program).read_bytes()
    except OSError:
        return None
    if data[:4] != b"\x7fELF":
        return None
    wide = data[4] == 2
    if wide:  # ELF64: e_phoff at 0x20, e_phentsize / e_phnum at 0x36; ELF32: 0x1C, 0x2A
        phoff, (phentsize, phnum) = struct.unpack_from("<Q", data, 0x20)[0], struct.unpack_from("<HH", data, 0x36)
    else:
        phoff, (phentsize, phnum) = struct.unpack_from("<I", data, 0x1C)[0], struct.unpack_from("<HH", data, 0x2A)
    for i in range(phnum):
        at = phoff + i * phentsize
        if struct.unpack_from("<I", data, at)[0] != 3:  # PT_INTERP
            continue
        offset, size = (
            (struct.unpack_from("<Q", data, at + 8)[0], struct.unpack_from("<Q", data, at + 32)[0])
            if wide
            else (struct.unpack_from("<I", data, at + 4)[0], struct.unpack_from("<I", data, at + 16)[0])
        )
        path = data[offset : offset + size].rstrip(b"\0").decode()
        path = os.path.join(sysroot, path.lstrip("/")) if sysroot else path
        try:
            loader = Path(path).read_bytes()
        except OSError:
            return None
        entry = struct.unpack_from("<Q" if loader[4] == 2 else "<I", loader, 0x18)[0]
        return path, entry, len(loader)
    return None


def _joined(log: str) -> list[str]:
    """The log's lines with each syscall's result on its line: with ``-d page`` qemu writes the page table
    between a call and its `` = result``."""
    out, pending = [], None
    for line in log.splitlines():
        if re.match(r"^\d+ \w+\(", line) and " = " not in line.rsplit(")", 1)[-1]:
            pending = line.split("page layout")[0]
        elif pending is not None and line.startswith(" = "):
            out.append(pending + line)
            pending = None
        else:
            out.append(line)
    return out


class Symbols:
    """Function symbols of one ELF image: start and name, sorted by start."""

    def __init__(self, path: str, nm: str):
        rows = self._read(nm, path, [])
        if not rows:  # a stripped library: its dynamic symbols
            rows = self._read(nm, path, ["-D"])
        rows.sort()
        self.starts = [r[0] for r in rows]
        self.names = [r[1] for r in rows]

    @staticmethod
    def _read(nm: str, path: str, extra: list[str]) -> list[tuple[int, str]]:
        proc = subprocess.run([nm, "-n", "--defined-only", *extra, path], capture_output=True, text=True)
        rows = []
        for line in proc.stdout.splitlines():
            parts = line.split()  # address, type, name; text, weak and indirect (IFUNC: memcpy) functions
            if len(parts) == 3 and parts[1] in "tTwWi":
                rows.append((int(parts[0], 16) & ~1, parts[2]))  # Thumb functions have bit 0 set
        return rows

    def name(self, offset: int) -> str | None:
        """The function at `offset`: the nearest symbol at or below it. Past its size too: LLVM emits a
        function's private helpers (TVM's parallel closures) right after it, without symbols of their own."""
        i = bisect.bisect_right(self.starts, offset) - 1
        return self.names[i] if i >= 0 else None


class Attributor:
    """Names the function an address of a run lies in: the images qemu's log of the run shows mapped, each
    image's symbol table. A name is the function's symbol for the module the program loads (its argument ending
    in .so: the model) and ``image:symbol`` elsewhere; ``image:?`` for an address between an image's symbols."""

    def __init__(self, log: str, argv: list[str] | tuple[str, ...], sysroot: str | None, nm: str):
        self.images = mapped_images(log, argv[0], sysroot)
        self.starts = [im.start for im in self.images]
        self.module = _module(list(argv))
        self.nm = nm
        self.symbols: dict[str, Symbols] = {}
        self.names: dict[int, str] = {}

    def name(self, address: int) -> str:
        name = self.names.get(address)
        if name is None:
            i = bisect.bisect_right(self.starts, address) - 1
            if i < 0 or address >= self.images[i].end:
                name = UNATTRIBUTED
            else:
                im = self.images[i]
                if im.path not in self.symbols:
                    self.symbols[im.path] = Symbols(im.path, self.nm)
                base = os.path.basename(im.path)
                fn = self.symbols[im.path].name(address - im.start)
                name = fn if base.endswith(".so") and im.path == self.module and fn else f"{base}:{fn or '?'}"
            self.names[address] = name
        return name


def nm_for(target: str) -> str:
    """The symbol lister for a target's images (the cross binutils' nm, else the host's)."""
    platform = get_platform(target)
    nm = next((c for c in (f"{platform.triple}-nm", "nm") if find_command(c)), None)
    if nm is None:
        raise ToolchainMissing(f"`{platform.triple}-nm` not found (Debian package binutils-{platform.triple})")
    return nm


def count_by_function(
    argv: list[str], qemu: list[str] | tuple[str, ...], nm: str, timeout: float = 900
) -> dict[str, Counter]:
    """Executed instructions of `argv` under the qemu prefix `qemu`, per function (`Attributor`'s names):
    {name: {text: count}}."""
    with tempfile.TemporaryDirectory(prefix="tcc-insn-fn-") as tmp:
        out, log = Path(tmp) / "counts.tsv", Path(tmp) / "qemu.log"
        cmd = [
            qemu[0],
            "-plugin",
            f"{plugin_path()},out={out},addresses=on",
            "-strace",
            "-d",
            "page",
            "-D",
            str(log),
            *qemu[1:],
            *argv,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out.exists():
            raise RunError(
                f"counting instructions failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}"
            )
        sysroot = qemu[qemu.index("-L") + 1] if "-L" in qemu else None
        attributor = Attributor(log.read_text(errors="replace"), argv, sysroot, nm)
        table = out.read_text()
    by_function: dict[str, Counter] = defaultdict(Counter)
    for line in table.splitlines():
        n, hex_address, text = line.split("\t", 2)
        by_function[attributor.name(int(hex_address, 16))][named(text.strip())] += int(n)
    return by_function


def _module(argv: list[str]) -> str | None:
    """The model the runner loads: its first argument ending in .so."""
    return next((a for a in argv[1:] if a.endswith(".so")), None)


def per_function(so_path: str | os.PathLike, target: str, x: np.ndarray, runner: str | os.PathLike) -> dict:
    """Executed instructions of one inference of a compiled module per function (count(--runs 2) - count(--runs
    1), as `insn_count.per_inference`): {"arch", "total", "functions": [{"name", "instructions", "simd",
    "mnemonics": {mnemonic: count} most first}, ...] most first, "method"}."""
    platform = get_platform(target)
    if not platform.qemu:
        raise ToolchainMissing(f"target {target} runs natively here; instruction counts are for the ARM targets")
    if not find_command(platform.qemu[0]):
        raise ToolchainMissing(f"`{platform.qemu[0]}` not found (Debian package qemu-user)")
    nm = nm_for(target)
    qemu = platform.qemu  # (checked above: an ARM target runs under qemu)
    with tempfile.TemporaryDirectory(prefix="tcc-insn-fn-run-") as tmp:
        inp, out = Path(tmp) / "input.bin", Path(tmp) / "output.bin"
        write_tensor_file(inp, x)

        def run(runs: int) -> dict[str, Counter]:
            return count_by_function(
                [
                    str(runner),
                    "--quiet",
                    "--threads",
                    "1",
                    "--runs",
                    str(runs),
                    str(Path(so_path).resolve()),
                    str(inp),
                    str(out),
                ],
                qemu,
                nm,
            )

        one, two = run(1), run(2)
    rows: list[dict[str, Any]] = []
    for name in set(one) | set(two):
        diff = Counter(two.get(name, {}))
        diff.subtract(one.get(name, {}))
        n = sum(diff.values())
        if n == 0:
            continue
        mnemonics: Counter = Counter()
        simd = 0
        for text, k in diff.items():
            mnemonic, _, operands = text.partition(" ")
            mnemonics[mnemonic.lower()] += k
            simd += k if is_simd(platform.arch, mnemonic, operands) else 0
        rows.append(
            {
                "name": name,
                "instructions": n,
                "simd": simd,
                "mnemonics": {m: k for m, k in mnemonics.most_common() if k > 0},
            }
        )
    rows.sort(key=lambda r: (-r["instructions"], r["name"]))
    return {
        "arch": platform.arch,
        "total": sum(r["instructions"] for r in rows),
        "functions": rows,
        "method": "qemu TCG plugin by address, attributed with the images' symbol tables; tcc-run --threads 1 "
        "--runs 2 minus --runs 1, per function",
    }


def kind(name: str) -> str:
    """A function's name without its layer numbers: the kernels of one kind and fusion pattern together
    (``fused_conv2d3_add8_relu2_compute_`` -> ``conv2d_add_relu``); int8 / uint8 keep theirs."""
    base = re.sub(r"^fused_|_compute_$", "", name)
    base = re.sub(r"(u?int(?:8|16|32|64))\d+(?=_|$)", r"\1", base)  # uint85 -> uint8
    return re.sub(r"(?<![iu]nt)(?<=[a-z])\d+(?=_|$)", "", base)
