"""Cycles per inference on a board's in-order core, estimated: qemu's executed blocks priced by LLVM's scheduling
model of the core.

qemu cannot time ARM code; it counts exactly which translated blocks one inference executes, and how often
(`blocks`). Each block is priced once by ``llvm-mca`` with the core's scheduling model (its in-order pipeline for
the Cortex-A53 and A55), run back to back in steady state, and the estimate is the sum of executions times price.
Two documented behaviours of these cores that LLVM's models leave out are added as a floor under each block's price
(`IssueRules`), and a block's closing branch is priced as predicted (a loop's back edge), not as waiting for its
flags, as LLVM's in-order models make it.

What it does not model: caches and memory (every load hits the L1, no TLB or bandwidth limit), branch
mispredictions, and effects across blocks (each block is priced as if it followed itself). It is an estimate of
the core's issue and execution limits, for comparing code on the same core, not a clock.

LLVM 14 has no model of the Cortex-A7 (its ARMv7 models are itineraries llvm-mca cannot read, or out of order);
the Cortex-R52's, an in-order dual-issue ARMv8-R AArch32 core, stands in for it, with the A7's 64-bit NEON unit as
a floor; the many NEON forms the R52's model has no timing for (its integer multiplies, `vmul.f32`, ...) are priced
as a twin on the same unit (`CycleModel.substitutes`), and the estimate lists each substitution and how often it ran.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..runtime import RunError, ToolchainMissing, find_command
from .blocks import Block, InferenceBlocks
from .cycle_models import CycleModel, beats
from .disassembly import Reading, decode
from .insn_profile import Attributor

ITERATIONS = 50  # llvm-mca's repetitions of each block: the first turn's pipeline fill is 1/50 of the price


@cache
def llvm_version() -> str:
    """`llvm-mca`'s LLVM version (the estimate depends on it: recorded beside it)."""
    out = subprocess.run(["llvm-mca", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"LLVM version (\S+)", out)
    return found.group(1) if found else "unknown"


def require_llvm() -> None:
    for tool in ("llvm-mc", "llvm-mca"):
        if not find_command(tool):
            raise ToolchainMissing(f"the cycle estimate needs `{tool}` (Debian package llvm; `tcc setup` installs it)")


# --------------------------------------------------------------------------- pricing with llvm-mca


def _shape(text: str) -> str:
    """An instruction's form without its register numbers and immediates (what a scheduling class depends on)."""
    return re.sub(r"#-?(0x)?[0-9a-f]+|\b([rdqsvxw])\d+\b", lambda m: m.group(2) + "N" if m.group(2) else "#", text)


def _mca(text: str, model: CycleModel, triple: str, iterations: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "llvm-mca",
            f"-mtriple={triple}-linux-gnu" if triple == "aarch64" else f"-mtriple={triple}-linux-gnueabihf",
            f"-mcpu={model.llvm_cpu}",
            f"-mattr={model.mattr}",
            f"-iterations={iterations}",
            "-instruction-info=0",
            "-resource-pressure=0",
        ],
        input=text,
        capture_output=True,
        text=True,
    )


@dataclass
class Pricing:
    """How each distinct instruction text is priced: as itself, as its twin (`substitutes`), or, where LLVM's
    model cannot price it, outside the model at its 64-bit beats (`unpriced`)."""

    priced: dict[str, str]
    unpriced: set[str]
    substituted: dict[str, str]


def screen(texts: Iterable[str], model: CycleModel, triple: str) -> Pricing:
    """Which texts llvm-mca prices with the model: a text its assembler refuses is left out; a form its model has
    no timing for is priced as its twin where the model names one, else left out (both priced outside)."""
    priced = {t: t for t in sorted(set(texts))}
    unpriced: set[str] = set()
    substituted: dict[str, str] = {}
    for _ in range(1000):
        lines = list(priced.values())
        proc = _mca("\n".join(lines) + "\n", model, triple, 1)
        if proc.returncode == 0:
            return Pricing(priced, unpriced, substituted)
        refused = {lines[int(n) - 1] for n in re.findall(r"<stdin>:(\d+):\d+: error", proc.stderr)}
        found = re.search(r"note: instruction:\s*(.+)", proc.stderr)
        untimed = _shape(" ".join(found.group(1).split())) if found else None
        if not refused and untimed is None:
            raise RunError(f"llvm-mca failed on the blocks' instructions:\n{proc.stderr.strip()[:2000]}")
        for text in [t for t, p in priced.items() if p in refused or _shape(p) == untimed]:
            twin = next((re.sub(p, r, text) for p, r in model.substitutes if re.search(p, text)), None)
            if twin and priced[text] == text and text not in refused:
                priced[text] = substituted[text] = twin
            else:
                del priced[text]
                substituted.pop(text, None)
                unpriced.add(text)
    raise RunError("llvm-mca kept refusing the blocks' instructions")


_DIRECT_BRANCH = re.compile(r"^(b|b\.\w+|b(eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)|cbn?z|tbn?z)(\.w|\.n)? ")


def _body(lines: list[str]) -> list[str]:
    """A block without its closing direct branch: predicted (a loop's back edge is), it issues beside the block's
    other instructions on these dual-issue cores, where LLVM's in-order models make it wait for its flags and
    issue alone. (The issue rules still count its slot.)"""
    return lines[:-1] if len(lines) > 1 and _DIRECT_BRANCH.match(lines[-1]) else lines


@dataclass(frozen=True)
class Priced:
    """Each block's cycles per execution, its reading, how its instructions were priced (per instruction set),
    and how many of its instructions were priced outside LLVM's model (their 64-bit beats each)."""

    cycles: dict[Block, float]
    readings: dict[Block, Reading]
    pricing: dict[str, Pricing]
    outside: dict[Block, int]


def price(blocks: Iterable[Block], model: CycleModel) -> Priced:
    """Cycles per execution of each block on the model's core: llvm-mca's steady state of the block, no less than
    the core's issue rules allow, plus the instructions outside the model at their beats."""
    readings = decode(blocks, model)
    cycles = dict.fromkeys(readings, 0.0)
    pricing, outside = {}, {}
    for triple in sorted({r.triple for r in readings.values()}):
        mine = [b for b, r in readings.items() if r.triple == triple]
        pricing[triple] = known = screen((t for b in mine for t in readings[b].texts if t is not None), model, triple)
        regions = []
        for b in mine:
            lines = [known.priced[t] for t in readings[b].texts if t is not None and t in known.priced]
            outside[b] = len(b.encodings) - len(lines)
            if lines:
                regions.append((b, _body(lines)))
        if not regions:
            continue
        body = "".join(
            f"# LLVM-MCA-BEGIN b{i}\n" + "\n".join(lines) + "\n# LLVM-MCA-END\n" for i, (_, lines) in enumerate(regions)
        )
        proc = _mca(body, model, triple, ITERATIONS)
        totals = _REGION_TOTAL.findall(proc.stdout)
        if proc.returncode != 0 or len(totals) != len(regions):
            raise RunError(f"llvm-mca priced {len(totals)} of {len(regions)} blocks:\n{proc.stderr.strip()[:2000]}")
        for i, total in totals:
            cycles[regions[int(i)][0]] = int(total) / ITERATIONS
    for b, r in readings.items():
        cycles[b] = max(cycles[b], model.issue.floor(t for t in r.texts if t is not None))
        cycles[b] += sum(beats(t or "") for t in r.texts if t is None or t in pricing[r.triple].unpriced)
    return Priced(cycles, readings, pricing, outside)


_REGION_TOTAL = re.compile(r"Code Region - b(\d+)\n\nIterations:\s+\d+\nInstructions:\s+\d+\nTotal Cycles:\s+(\d+)")


def _substitution(text: str, twin: str) -> str:
    """ "vmul.f32 as vadd.f32"; the forms where the mnemonic stays ("vld1.32 {dN[], dN[]}, ... as ...")."""
    a, b = text.split(" ", 1)[0], twin.split(" ", 1)[0]
    return f"{a} as {b}" if a != b else f"{_shape(text)} as {_shape(twin)}"


def estimate(run: InferenceBlocks, model: CycleModel, nm: str | None = None, top: int = 12) -> dict[str, Any]:
    """One inference's cycles on the model's core: the blocks that run differs by, priced (`price`), summed in
    total and per function (where `run` kept qemu's logs, the functions named by the symbols `nm` lists)."""
    require_llvm()
    diff = run.difference
    priced = price(diff, model)
    cycles = priced.cycles
    total = sum(n * cycles[b] for b, n in diff.items())
    instructions = sum(n * len(b.encodings) for b, n in diff.items())
    by_function: dict[str, float] = defaultdict(float)
    insn_by_function: Counter = Counter()
    if run.two.log and nm:
        names = Attributor(run.two.log, run.argv, run.sysroot, nm)
        for b, n in diff.items():
            by_function[names.name(b.address)] += n * cycles[b]
            insn_by_function[names.name(b.address)] += n * len(b.encodings)
    substituted: Counter = Counter()
    for b, n in diff.items():
        swapped = priced.pricing[priced.readings[b].triple].substituted
        for t in priced.readings[b].texts:
            if t in swapped:
                substituted[_substitution(t, swapped[t])] += n
    result: dict[str, Any] = {
        "core": model.core,
        "model": f"llvm-mca (LLVM {llvm_version()}) -mcpu={model.llvm_cpu}",
        "total": round(total),
        "instructions": instructions,
        "cycles_per_instruction": round(total / instructions, 4) if instructions else 0.0,
        "outside_model": {
            "instructions": sum(n * priced.outside[b] for b, n in diff.items()),
            "note": "instructions LLVM's model cannot price (or decode), priced at their 64-bit beats each",
        },
        "substituted": dict(sorted(substituted.items())),
        "issue_rules": model.issue.source,
        "functions": [
            {"name": name, "cycles": round(c), "instructions": insn_by_function[name]}
            for name, c in sorted(by_function.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        ],
        "method": f"qemu TCG plugin: the translated blocks of {run.method}, each "
        f"priced by llvm-mca in steady state ({ITERATIONS} turns back to back), conditional branches as predicted, "
        "under the core's issue rules; times its executions, summed",
        "not_modelled": "caches and memory (every load hits the L1), branch mispredictions, effects across blocks",
    }
    if model.stand_in:
        result["stand_in"] = model.stand_in
    return result
