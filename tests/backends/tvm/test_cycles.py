"""The cycle estimate (tcc.backends.tvm.measure.cycles): qemu's executed blocks priced by LLVM's scheduling models,
validated on hand-written loops whose cycles per turn follow from the cores' documented timings; how ARMv7 blocks
are read (A32 or T32); what a block's price leaves out and adds; the block counts equal to the text counts.

Derived cycles per turn (docs/notes/arm-cycle-estimate.md has the arithmetic and the sources): the Cortex-A55
Software Optimization Guide (Arm EPM128372) gives an integer ALU latency of 1 with two ALUs, an FMLA latency of 4,
Q-form vector instructions in issue slot 0 only (one per cycle) and D-form ones in either, one load per cycle, and
128-bit loads that take 2 cycles and pair with nothing (so do the A53's: Tencent ncnn's dual-issue measurements).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tcc import targets as tg
from tcc.backends.tvm.measure import cycle_models, cycles, disassembly
from tcc.backends.tvm.measure.blocks import count_blocks, instruction_counts
from tcc.backends.tvm.measure.insn_count import count_command

TURNS = 1000


def _aarch64_loop(body: list[str]) -> str:
    lines = "\n".join(f"    {line}" for line in body)
    return f"""
.global _start
_start:
    adr x1, buf
    mov x9, #{TURNS}
1:
{lines}
    subs x9, x9, #1
    b.ne 1b
    mov x0, #0
    mov x8, #93
    svc #0
.data
.balign 64
buf: .space 256
"""


# kernel: (body of the loop, {core: derived cycles per turn, the loop's subs + b.ne included})
KERNELS = {
    "dependent adds": (["add x0, x0, #1"] * 32, {"cortex-a53": 32, "cortex-a55": 32}),  # latency 1, in a chain
    "independent adds": ([f"add x{i % 8}, x{i % 8}, #1" for i in range(32)], {"cortex-a53": 17, "cortex-a55": 17}),
    "dependent Q fmla": (["fmla v0.4s, v1.4s, v2.4s"] * 8, {"cortex-a55": 32}),  # 8 x latency 4
    "independent Q fmla": ([f"fmla v{i % 8}.4s, v8.4s, v9.4s" for i in range(16)], {"cortex-a55": 16}),  # slot 0
    "independent D fmla": ([f"fmla v{i % 8}.2s, v8.2s, v9.2s" for i in range(16)], {"cortex-a55": 9}),  # 18 / 2
    "128-bit loads": ([f"ldr q{i}, [x1, #{16 * i}]" for i in range(8)], {"cortex-a53": 17, "cortex-a55": 17}),
    "64-bit loads": ([f"ldr d{i}, [x1, #{8 * i}]" for i in range(8)], {"cortex-a55": 8}),  # one load per cycle
}


def _needs(target: str):
    platform = tg.get_platform(target)
    cc = f"{platform.triple}-gcc"
    tools = [cc, platform.qemu[0] if platform.qemu else "qemu", "llvm-mca", "llvm-mc"]
    if missing := [t for t in tools if not shutil.which(t)]:
        pytest.skip(f"missing {', '.join(missing)} (make setup-arm)")
    return platform, cc


def _program(target: str, source: str, folder) -> tuple[tg.Platform, str]:
    """A static program assembled from `source` for the target: (its platform, the program's path)."""
    platform, cc = _needs(target)
    (folder / "p.S").write_text(source)
    flags = ["-mfpu=neon"] if platform.arch == "armv7" else []
    subprocess.run([cc, "-nostdlib", "-static", *flags, "-o", str(folder / "p"), str(folder / "p.S")], check=True)
    return platform, str(folder / "p")


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_estimate_within_ten_percent_of_the_derived_cycles(kernel, tmp_path):
    body, derived = KERNELS[kernel]
    platform, program = _program("aarch64-dotprod", _aarch64_loop(body), tmp_path)
    run = count_blocks([program], platform.qemu)
    for core, per_turn in derived.items():
        priced = cycles.price(run.blocks, cycle_models.CYCLE_MODELS[core])
        total = sum(n * priced.cycles[b] for b, n in run.blocks.items())
        assert total / TURNS == pytest.approx(per_turn, rel=0.10), (core, total / TURNS)


# ARMv7 code mixes A32 (TVM's kernels) and T32 (Debian's libraries, the runner): one program with both
MIXED_STATES = """
.syntax unified
.global _start
.arm
_start:
    mov r0, #10
1:  vadd.i32 q0, q0, q1
    subs r0, r0, #1
    bne 1b
    adr r1, thumb_part + 1
    bx r1
.thumb
.thumb_func
thumb_part:
    movs r0, #10
2:  adds r2, r2, #1
    add.w r3, r3, #4
    subs r0, #1
    bne 2b
    movs r0, #0
    movs r7, #1
    svc #0
"""


def test_armv7_blocks_read_in_their_own_instruction_set(tmp_path):
    platform, program = _program("arm-a7", MIXED_STATES, tmp_path)
    run = count_blocks([program], platform.qemu)
    readings = disassembly.decode(run.blocks, cycle_models.CYCLE_MODELS["cortex-a7"])
    by_first = {r.texts[0]: r for r in readings.values()}
    assert by_first["vadd.i32 q0, q0, q1"].triple == "armv7a"
    assert by_first["adds r2, #1"].triple == "thumbv7a"  # a 2-byte instruction: T32
    assert "add.w r3, r3, #4" in by_first["adds r2, #1"].texts
    assert all(t is not None for r in readings.values() for t in r.texts)
    # the block counts give exactly the text counts of the plugin's text mode
    assert instruction_counts(run.blocks) == count_command([program], platform.qemu)
    priced = cycles.price(run.blocks, cycle_models.CYCLE_MODELS["cortex-a7"])
    assert all(c > 0 for c in priced.cycles.values()) and not any(priced.outside.values())


def test_a_closing_branch_is_priced_as_predicted_and_issue_rules_floor_the_price():
    assert cycles._body(["add x0, x0, #1", "b.ne #-4"]) == ["add x0, x0, #1"]
    assert cycles._body(["adds r2, r2, #1", "bne.w #-8"]) == ["adds r2, r2, #1"]
    assert cycles._body(["cbz x0, #8"]) == ["cbz x0, #8"]  # a block of one branch keeps it
    assert cycles._body(["add x0, x0, #1", "ret"]) == ["add x0, x0, #1", "ret"]  # returns are not predicted here
    a55 = cycle_models.CYCLE_MODELS["cortex-a55"].issue
    q = ["fmla v0.4s, v1.4s, v2.4s"] * 4
    assert a55.floor(q) == 4 and a55.floor(["fmla v0.2s, v1.2s, v2.2s"] * 4) == 2
    assert a55.floor(["ldr q0, [x1]", "ld1 {v0.16b, v1.16b}, [x0]", "add x0, x0, #1"]) == 2 + 4 + 1
    a7 = cycle_models.CYCLE_MODELS["cortex-a7"].issue
    assert a7.floor(["vadd.f32 q0, q1, q2", "vadd.f32 d0, d1, d2", "vld1.32 {d0, d1, d2, d3}, [r0]"]) == 2 + 1 + 4


def test_forms_the_stand_in_model_lacks_are_priced_as_their_twin_or_outside_it():
    _needs("arm-a7")
    model = cycle_models.CYCLE_MODELS["cortex-a7"]
    texts = ["vmul.f32 q0, q1, q2", "vld1.32 {d2[], d3[]}, [r3:32], r8", "vadd.f32 q0, q1, q2", "dmb ish"]
    pricing = cycles.screen(texts, model, "armv7a")
    assert pricing.priced["vmul.f32 q0, q1, q2"] == "vadd.f32 q0, q1, q2"
    assert pricing.priced["vld1.32 {d2[], d3[]}, [r3:32], r8"] == "vld1.32 {d2, d3}, [r3], r8"
    assert pricing.priced["vadd.f32 q0, q1, q2"] == "vadd.f32 q0, q1, q2"
    assert set(pricing.substituted) == {"vmul.f32 q0, q1, q2", "vld1.32 {d2[], d3[]}, [r3:32], r8"}
    assert pricing.unpriced == {"dmb ish"}  # a barrier: no timing, no twin


def test_every_arm_core_has_a_cycle_model():
    for name in ("arm-a7", "aarch64", "aarch64-dotprod"):
        model = cycle_models.model_for(name)
        assert model is not None and model.arch == tg.get_platform(name).arch
    assert cycle_models.model_for("host") is None
    assert cycle_models.CYCLE_MODELS["cortex-a7"].stand_in and not cycle_models.CYCLE_MODELS["cortex-a55"].stand_in


# Marks: a write(2) to fd -1 before and after a loop of 10 turns (3 instructions each: 30); before the first mark a
# loop of 1,000 turns the difference must leave out
MARKED = """
.global _start
_start:
    mov x9, #1000
1:  subs x9, x9, #1
    b.ne 1b
    mov x0, #-1
    mov x8, #64
    svc #0
    mov x9, #10
2:  add x1, x1, #1
    subs x9, x9, #1
    b.ne 2b
    mov x0, #-1
    mov x8, #64
    svc #0
    mov x0, #0
    mov x8, #93
    svc #0
"""


def test_marks_take_exactly_what_ran_between_them(tmp_path):
    from tcc.backends.tvm.measure.blocks import marked_blocks

    platform, program = _program("aarch64", MARKED, tmp_path)
    run = marked_blocks([program], platform.qemu, "aarch64", "the loop between the marks")
    between = instruction_counts(run.difference)
    # after the first mark's svc: its block's tail (mov x9, #10) and the loop's 30, up to the second mark's svc
    assert between["add x1, x1, #1"] == 10 and between["subs x9, x9, #1"] == 10
    assert sum(between.values()) == 1 + 30 + 3  # mov x9; 10 turns; mov x0, mov x8, svc of the second mark


def test_without_llvm_the_estimate_names_the_package(monkeypatch):
    from tcc.backends.tvm.runtime import ToolchainMissing

    monkeypatch.setattr(cycles, "find_command", lambda name: None)
    with pytest.raises(ToolchainMissing, match="Debian package llvm; `tcc setup` installs it"):
        cycles.require_llvm()
