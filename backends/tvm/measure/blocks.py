"""Executed translated blocks of one inference under qemu-user: what both the instruction count and the cycle
estimate (`cycles`) are made of.

The instruction-count plugin (``qemu_plugin/insn_count.c``) with ``blocks=on`` counts every block qemu translates,
one inline add per execution, and writes each block's address, its instructions' encodings and their disassembly.
One inference is the runner doing two inferences minus it doing one (as in `insn_count`), block by block: loading,
input, output and the first inference's allocations cancel. A block's instructions all run each time it runs (a
block ends at the first branch), so the executed instructions by text are the blocks' counts times their texts,
exactly what the plugin's text mode counts. Nothing in it depends on a clock, so the count is the same on every
run (the manifest stays byte-identical); the allocator may take a different path from one inference to the next,
and the instructions that moved that way are recorded (`path_differences`: hundreds against hundreds of millions).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ....targets import get_platform
from ..runtime import RunError, ToolchainMissing, find_command
from ..tensor_file import write_tensor_file
from .insn_count import named, plugin_path, summarize

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Block:
    """One translated block: its guest address, its instructions' encodings (hex, memory order) and qemu's
    disassembly of them."""

    address: int
    encodings: tuple[str, ...]
    texts: tuple[str, ...]


@dataclass(frozen=True)
class BlockRun:
    """The blocks one run executed, {block: executions}, qemu's log of the run (``-strace -d page``: where each
    image was mapped), empty unless asked for, and with marks the blocks' counts at each mark the program made."""

    blocks: Counter
    log: str = ""
    marks: tuple[Counter, ...] = ()


WRITE_SYSCALL = {"aarch64": 64, "armv7": 4}  # write(2) on the guest: a write to fd -1 is a mark (insn_count.c)


def count_blocks(
    argv: list[str],
    qemu: tuple[str, ...] | list[str],
    log: bool = False,
    timeout: float = 900,
    marks_arch: str | None = None,
) -> BlockRun:
    """The blocks `argv` (a target program) executes under the qemu prefix `qemu`, with their execution counts;
    with `marks_arch` (the guest's architecture) also their counts at each write(2) to fd -1 the program makes."""
    with tempfile.TemporaryDirectory(prefix="tcc-blocks-") as tmp:
        out, log_path = Path(tmp) / "blocks.tsv", Path(tmp) / "qemu.log"
        logging = ["-strace", "-d", "page", "-D", str(log_path)] if log else []
        marking = f",marks=on,write={WRITE_SYSCALL[marks_arch]}" if marks_arch else ""
        cmd = [qemu[0], "-plugin", f"{plugin_path()},out={out},blocks=on{marking}", *logging, *qemu[1:], *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if "unknown option --runs" in proc.stderr:
            raise RunError(f"{argv[0]} predates `--runs` (instruction counting); rebuild the bundle with this tcc")
        if proc.returncode != 0 or not out.exists():
            raise RunError(f"counting blocks failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}")
        blocks: Counter = Counter()
        at: list[Counter] = []
        for line in out.read_text(errors="replace").splitlines():
            counts, address, encodings, texts = line.split("\t", 3)
            block = Block(int(address, 16), tuple(encodings.split()), tuple(texts.split("|")))
            final, *marked = (int(c) for c in counts.split(","))
            blocks[block] += final
            at += [Counter() for _ in range(len(marked) - len(at))]
            for k, n in enumerate(marked):
                at[k][block] += n
        return BlockRun(blocks, log_path.read_text(errors="replace") if log else "", tuple(at))


def instruction_counts(blocks: Mapping[Block, int]) -> Counter:
    """{disassembly: executions} of blocks executed `blocks[b]` times each (what the plugin's text mode counts)."""
    counts: Counter = Counter()
    for block, n in blocks.items():
        for text in block.texts:
            counts[named(text.strip())] += n
    return counts


@dataclass(frozen=True)
class InferenceBlocks:
    """One inference's blocks: `two` and `one` are the runs of two and one inferences; `difference` the blocks
    whose count differs, by how much (negative where the allocator took another path in the longer run)."""

    two: BlockRun
    one: BlockRun
    argv: tuple[str, ...]  # the longer run's command (its program and module name the images)
    qemu: tuple[str, ...]  # the qemu prefix both ran under (its -L sysroot holds the images' files)
    method: str  # how the inference was isolated, in words (the records' "method" say it)

    @property
    def sysroot(self) -> str | None:
        return self.qemu[self.qemu.index("-L") + 1] if "-L" in self.qemu else None

    @property
    def difference(self) -> Counter:
        diff = Counter(self.two.blocks)
        diff.subtract(self.one.blocks)
        return Counter({b: n for b, n in diff.items() if n})


def runs_blocks(
    argv: Callable[[int], list[str]], qemu: tuple[str, ...], method: str, log: bool = False, timeout: float = 900
) -> InferenceBlocks:
    """The blocks of one inference of any program under `qemu`: `argv(n)` runs n inferences; the blocks of two
    minus those of one. `method` says what ran, for the records."""
    one = count_blocks(argv(1), qemu, log, timeout)
    two = count_blocks(argv(2), qemu, log, timeout)
    return InferenceBlocks(two, one, tuple(argv(2)), tuple(qemu), method)


def marked_blocks(
    argv: list[str], qemu: tuple[str, ...], arch: str, method: str, log: bool = False, timeout: float = 900
) -> InferenceBlocks:
    """The blocks a program executes between its first two marks (write(2) to fd -1), in one run: for a runtime
    whose start-up differs from run to run (Python, ONNX Runtime), where two runs' difference would carry that.
    `method` says what ran, for the records."""
    run = count_blocks(argv, qemu, log, timeout, marks_arch=arch)
    if len(run.marks) < 2:
        raise RunError(f"{argv[0]} made {len(run.marks)} marks; two are needed (a write to fd -1 around the inference)")
    return InferenceBlocks(
        BlockRun(run.marks[1], run.log), BlockRun(run.marks[0], run.log), tuple(argv), tuple(qemu), method
    )


def inference_blocks(
    so_path: str | os.PathLike, target: str, x: np.ndarray, runner: str | os.PathLike, log: bool = False
) -> InferenceBlocks:
    """The blocks of one inference of a compiled module on `x` by the target's runner under qemu, one thread:
    blocks(--runs 2) - blocks(--runs 1). `log`: keep qemu's logs of where each image was mapped (per-function
    attribution)."""
    platform = get_platform(target)
    if not platform.qemu:
        raise ToolchainMissing(f"target {target} runs natively here; instruction counts are for the ARM targets")
    if not find_command(platform.qemu[0]):
        raise ToolchainMissing(f"`{platform.qemu[0]}` not found (Debian package qemu-user)")
    qemu = platform.qemu  # (checked above: an ARM target runs under qemu)
    with tempfile.TemporaryDirectory(prefix="tcc-blocks-run-") as tmp:
        inp, out = Path(tmp) / "input.bin", Path(tmp) / "output.bin"
        write_tensor_file(inp, x)

        def argv(runs: int) -> list[str]:
            module = str(Path(so_path).resolve())
            return [str(runner), "--quiet", "--threads", "1", "--runs", str(runs), module, str(inp), str(out)]

        method = (
            f"tcc-run --threads 1 --runs 2 minus --runs 1 (one warm inference, batch {x.shape[0]}, plus the two "
            "instructions of the runner's loop)"
        )
        return runs_blocks(argv, qemu, method, log)


def instruction_summary(run: InferenceBlocks, arch: str) -> dict:
    """Executed instructions of one inference (`run`): `insn_count.summarize`'s totals, the instructions that
    moved between the allocator's paths, and how they were counted."""
    diff = instruction_counts(run.two.blocks)
    diff.subtract(instruction_counts(run.one.blocks))
    # An instruction text may run fewer times in the run with one more inference: the runtime's allocator takes
    # a different path when the VM frees and allocates the output again. The totals stay exact; how many
    # instructions moved between such paths is recorded beside them.
    result = summarize(diff, arch)
    result["path_differences"] = -sum(v for v in diff.values() if v < 0)
    result["method"] = f"qemu TCG plugin, executed instructions of {run.method}"
    return result


def per_inference(so_path: str | os.PathLike, target: str, x: np.ndarray, runner: str | os.PathLike) -> dict:
    """Executed instructions of one inference of a compiled module on `x` (batch as given) by the target's runner
    under qemu, one thread (`instruction_summary`)."""
    run = inference_blocks(so_path, target, x, runner)
    return instruction_summary(run, get_platform(target).arch)
