"""The cycle models of the boards' cores, a table: which LLVM scheduling model prices each core's code, the
issue rules its documentation states that the LLVM model leaves out, and, for a stand-in model, the forms it has no
timing for and the twin each is priced as. `cycles` prices blocks with them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ....targets import get_platform


@dataclass(frozen=True)
class IssueRules:
    """What a core's documentation says about issue that its LLVM model does not: instructions that issue alone
    for some cycles (`alone`), that only one issue slot takes (`slot0`), or that hold a single-issue unit for
    their 64-bit beats (`beats`). Each is a regular expression over LLVM's assembly text."""

    alone: str = ""  # issue alone, 2 cycles per 128-bit register loaded
    slot0: str = ""  # one per cycle
    beats: str = ""  # one unit, one cycle per 64 bits (a Q register 2, a D or S register 1)
    source: str = ""

    def floor(self, texts: Iterable[str]) -> float:
        """The fewest cycles the block can issue in under these rules (dual issue otherwise)."""
        alone = slot0 = unit = rest = 0
        for text in texts:
            if self.alone and re.search(self.alone, text):
                alone += 2 * max(1, _registers(text))
            else:
                rest += 1
                slot0 += bool(self.slot0 and re.search(self.slot0, text))
                unit += beats(text) if self.beats and re.search(self.beats, text) else 0
        return alone + max(math.ceil(rest / 2), slot0, unit)


def _registers(text: str) -> int:
    """How many vector registers an instruction's register list or pair names ({v0.16b, v1.16b}, q0, q1)."""
    listed = re.search(r"\{([^}]*)\}", text)
    if listed:
        return len(re.findall(r"\b[vdq]\d+", listed.group(1)))
    return len(re.findall(r"\bq\d+\b", text)) or 1


def beats(text: str) -> int:
    """64-bit beats of an ARMv7 NEON / VFP instruction: its widest register's, times the registers a load or
    store lists."""
    listed = re.search(r"\{([^}]*)\}", text)
    if listed:
        return max(1, len(re.findall(r"\bd\d+", listed.group(1))))
    return 2 if re.search(r"\bq\d+\b", text) else 1


def _dup_load(m: re.Match) -> str:
    """A load to all lanes as the plain load of the same registers (the same unit and beats)."""
    return f"vld1.{m.group(1)} {{{', '.join(r for r in m.group(2, 3) if r)}}}, [{m.group(4)}]{m.group(5)}"


# AArch64: a Q-form (128-bit) vector operand, and the 128-bit vector loads
_Q_FORM = r"\bv\d+\.(16b|8h|4s|2d)\b|\bq\d+\b"
_Q_LOAD = r"^ld(r|p|1|2|3|4|ur)\w*\s.*(\bq\d+\b|\.(16b|8h|4s|2d)\b)"


@dataclass(frozen=True)
class CycleModel:
    """How one board core's cycles are estimated: LLVM's scheduling model that prices them (`llvm_cpu`, for
    `arch`), the features to read the code with, and the rules added on top."""

    core: str
    arch: str  # "aarch64" or "armv7"
    llvm_cpu: str
    mattr: str
    issue: IssueRules
    stand_in: str = ""  # where llvm_cpu models another core: which, and how it differs
    substitutes: tuple[tuple[str, Any], ...] = ()  # (pattern, replacement) of re.sub: a form without timing -> its twin


CYCLE_MODELS: Mapping[str, CycleModel] = MappingProxyType(
    {
        "cortex-a53": CycleModel(
            core="Cortex-A53",
            arch="aarch64",
            llvm_cpu="cortex-a53",
            mattr="+neon,+crc,+aes,+sha2",
            issue=IssueRules(
                alone=_Q_LOAD,
                source="128-bit vector loads issue alone for 2 cycles (Tencent ncnn, arm-a53-a55-dual-issue.md; "
                "onnxruntime 50a6f09)",
            ),
        ),
        "cortex-a55": CycleModel(
            core="Cortex-A55",
            arch="aarch64",
            llvm_cpu="cortex-a55",
            mattr="+v8.2a,+neon,+dotprod,+fullfp16,+rcpc,+crc,+aes,+sha2,+lse",
            issue=IssueRules(
                alone=_Q_LOAD,
                slot0=rf"^(?!ld|st)\S+\s.*({_Q_FORM})",
                source="Cortex-A55 Software Optimization Guide (Arm EPM128372): Q-form vector instructions issue "
                "from slot 0 only, 128-bit loads take 2 cycles and pair with nothing (also onnxruntime 50a6f09)",
            ),
        ),
        "cortex-a7": CycleModel(
            core="Cortex-A7",
            arch="armv7",
            llvm_cpu="cortex-r52",
            mattr="+neon,+vfp4",
            issue=IssueRules(
                beats=r"^v",
                source="the Cortex-A7's NEON / VFP unit is 64 bits wide: a Q-register operation or a 128-bit load "
                "or store holds it for 2 cycles",
            ),
            stand_in="LLVM 14 has no Cortex-A7 model that llvm-mca reads; the Cortex-R52's stands in (in-order, "
            "dual issue, 8 stages, ARMv8-R AArch32 with NEON). It is a different core: not validated against A7 "
            "timings, which Arm does not publish",
            substitutes=(  # a form the R52's model has no timing for -> its twin on the same unit and width
                (r"^vmul\.f(32|64) ", r"vadd.f\1 "),  # the float multiply and add share the float pipeline
                (r"^vmla\.f32 ", "vfma.f32 "),  # VFPv4's chained multiply-accumulate as its fused one
                (r"^vml[as]l\.[su](8|16|32) ", "vqdmlal.s16 "),  # integer multiplies: the model times only
                (r"^vmull\.[su](8|16|32) ", "vqdmull.s16 "),  # the saturating doubling forms
                (r"^vml[as]\.i(8|16) ", "vqdmulh.s16 "),
                (r"^vml[as]\.i32 ", "vqdmulh.s32 "),
                (r"^vmul\.i(8|16) ", "vqdmulh.s16 "),
                (r"^vmul\.i32 ", "vqdmulh.s32 "),
                (r"^vmul\.f32 ([dq]\d+), ([dq]\d+), (d\d+\[\d\])$", r"vqrdmulh.s32 \1, \2, \3"),
                (r"^vmovl\.([su])(8|16|32) (q\d+), (d\d+)$", r"vaddl.\1\2 \3, \4, \4"),
                (r"^vshll\.([su]|i)(8|16|32) (q\d+), (d\d+), #\d+$", r"vaddl.s\2 \3, \4, \4"),
                (r"^vshr\.([su])(8|16|32|64) ", r"vrshr.\1\2 "),
                (r"^vsra\.([su])(8|16|32|64) ", r"vrshr.\1\2 "),
                (r"^vshl\.i(8|16|32|64) (.*#)", r"vqshl.s\1 \2"),
                (r"^vshl\.([su])(8|16|32|64) ([dq]\d+, [dq]\d+, [dq]\d+)$", r"vrshl.\1\2 \3"),
                (r"^vshrn\.i(16|32|64) ", r"vqshrn.s\1 "),
                (r"^vq?rshrun?\.s(16|32|64) ", r"vqshrn.s\1 "),
                (r"^vmvn(\.i(8|16|32|64))? ([dq]\d+), #\S+$", r"vdup.32 \3, r0"),
                (r"^vmvn ([dq]\d+), ([dq]\d+)$", r"vmov \1, \2"),
                (r"^vmov\.(8|16|32) (d\d+)\[\d\], (r\d+)$", r"vdup.\1 \2, \3"),
                (r"^vmovn\.i(16|32|64) ", r"vqmovn.s\1 "),
                (
                    r"^vld1\.(8|16|32) \{(d\d+)\[\](?:, (d\d+)\[\])?\}, \[(\w+)(?::\d+)?\](.*)$",
                    _dup_load,
                ),  # load to all lanes
                (r"^vstmia (\w+), (\{[^}]*\})$", r"vst1.64 \2, [\1]"),
                (r"^vldmia (\w+), (\{[^}]*\})$", r"vld1.64 \2, [\1]"),
                (r"^vmov\.i(8|16|32|64) ([dq]\d+), #\S+$", r"vdup.32 \2, r0"),  # a constant into a register
                (r"^vpush (\{[^}]*\})$", r"vst1.64 \1, [sp]"),
                (r"^vpop (\{[^}]*\})$", r"vld1.64 \1, [sp]"),
            ),
        ),
    }
)


def model_for(target: str) -> CycleModel | None:
    """The cycle model of a target's core, or None where it has none (the host, x86)."""
    platform = get_platform(target)
    return CYCLE_MODELS[platform.cycle_model] if platform.cycle_model else None
