"""`tcc bench` and what it measures with: the qemu instruction counter (against hand counts of tiny programs),
build phases, the speed targets' judging, and one quick run end to end (schema-checked bench.json)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import jsonschema
import pytest

from tcc import targets as tg
from tests.helpers import REPO

# Each program counts down from 10: per turn one vector add, a subtract and a branch; around the loop one move
# before and three instructions to exit. By hand: 1 + 10 * 3 + 3 = 34 executed, 10 of them SIMD.
ARMV7_PROGRAM = """
.syntax unified
.arm
.global _start
_start:
    mov r0, #10
1:  vadd.i32 q0, q0, q1
    subs r0, r0, #1
    bne 1b
    mov r0, #0
    mov r7, #1
    svc #0
"""
AARCH64_PROGRAM = """
.global _start
_start:
    mov x0, #10
1:  add v0.4s, v0.4s, v1.4s
    subs x0, x0, #1
    b.ne 1b
    mov x0, #0
    mov x8, #93
    svc #0
"""


def _tools(target: str):
    platform = tg.get_platform(target)
    cc = f"{platform.triple}-gcc"
    if not (shutil.which(cc) and platform.qemu and shutil.which(platform.qemu[0])):
        pytest.skip(f"{cc} or {platform.qemu[0] if platform.qemu else 'qemu'} missing (make setup-arm)")
    return platform, cc


@pytest.mark.parametrize("target,source", [("arm-a7", ARMV7_PROGRAM), ("aarch64", AARCH64_PROGRAM)])
def test_instruction_count_equals_hand_count(target, source, tmp_path):
    from tcc.backends.tvm.measure.insn_count import count_command, summarize

    platform, cc = _tools(target)
    (tmp_path / "p.S").write_text(source)
    flags = ["-mfpu=neon"] if platform.arch == "armv7" else []
    subprocess.run([cc, "-nostdlib", "-static", *flags, "-o", str(tmp_path / "p"), str(tmp_path / "p.S")], check=True)
    counts = count_command([str(tmp_path / "p")], platform.qemu)
    s = summarize(counts, platform.arch)
    assert s["total"] == 34, counts
    assert s["simd"] == 10 and s["scalar"] == 24, counts
    # the loop's three instructions ran ten times each
    assert sorted(counts.values()) == [1, 1, 1, 1, 10, 10, 10], counts


def test_phases_nest_and_add_up():
    from tcc.process.phases import phase, recording

    with recording() as seconds:
        with phase("emit"):
            with phase("compile"):
                pass
            with phase("compile"):  # a phase run twice adds up
                pass
        with phase("self-check"):
            pass
    assert list(seconds) == ["emit/compile", "emit", "self-check"]
    assert all(v >= 0 for v in seconds.values()) and seconds["emit"] >= seconds["emit/compile"]
    with phase("outside"):  # no recording: nothing kept, nothing raised
        pass


def test_count_instructions_and_host_twin_only_on_arm(tmp_path):
    from tcc.build import build, build_settings
    from tcc.errors import BuildError

    for flag in ("count_instructions", "host_twin"):
        with pytest.raises(BuildError, match="applies to the ARM targets"):
            build(REPO / "spec" / "fastnet.yaml", build_settings("ort", **{flag: True}), tmp_path / "b")
        assert not (tmp_path / "b").exists()


def _doc(int8_dot: bool, host_int8_ratio: float | None, samples: int = 128) -> dict:
    ratios = {"host fp32 / ort fp32": {"median": 0.9}, "ort-fp32 2 threads / 1 thread": {"median": 0.65}}
    if host_int8_ratio is not None:
        ratios["host int8 / host fp32"] = {"median": host_int8_ratio}
        ratios["host int8 / ort fp32"] = {"median": 0.9 * host_int8_ratio}
    return {
        "machine": {"int8_dot": int8_dot, "isa_class": "avx512-vnni" if int8_dot else "avx2"},
        "settings": {"calib_images": samples},
        "models": {
            "ddsnet": {
                "latency_ratios": ratios,
                "calibration": {"tcc": {"ort": {"seconds": 16.0, "peak_bytes": {"32": 100, "128": 110}}}},
                "builds": {
                    "arm-a7-fp32": {"seconds": {"total": 9.5}, "instructions": {"total": 1000}},
                    "arm-a7-int8": {"instructions": {"total": 600}},
                    "aarch64-dotprod-fp32": {"instructions": {"total": 1000}},
                    "aarch64-dotprod-int8": {"instructions": {"total": 290}},
                },
            }
        },
    }


def test_targets_follow_the_cpu_class_and_never_pass_unmeasured():
    from tcc.benchmark.targets import judge

    def status(doc):
        return {r["target"]: (r["status"], r["bound"]) for r in judge(doc)}

    vnni, avx2 = status(_doc(True, 0.8)), status(_doc(False, 0.8))
    assert vnni["host-int8"] == ("FAIL", 0.5) and avx2["host-int8"] == ("PASS", 1.0)
    assert vnni["fastest-int8"] == ("FAIL", 0.35) and avx2["fastest-int8"] == ("FAIL", 0.55)  # 0.9 x 0.8 = 0.72
    assert status(_doc(False, 0.5))["fastest-int8"] == ("PASS", 0.55)  # 0.9 x 0.5: the fastest INT8 bundle
    assert vnni["ort-int8"] == ("not measured", 0.45) and avx2["ort-int8"][1] == 0.6
    assert vnni["host-fp32"][0] == "PASS" and vnni["build-arm-a7"][0] == "PASS"
    assert vnni["calibration"][0] == "FAIL" and vnni["calibration-memory"][0] == "PASS"
    assert vnni["arm-a7-int8-instructions"] == ("FAIL", 0.5)  # 600 / 1000
    assert vnni["aarch64-dotprod-int8-instructions"] == ("PASS", 0.3)  # 290 / 1000
    assert vnni["aarch64-int8-instructions"] == ("not measured", 0.5)  # no aarch64 bundles
    assert status(_doc(True, None))["host-int8"][0] == "not measured"
    assert vnni["threads-ort"] == ("FAIL", 0.6) and vnni["threads-host"][0] == "not measured"  # no --threads 2 run
    assert status(_doc(True, 0.5, samples=32))["calibration"][0] == "not measured"  # stated for 128 samples


def _run_doc(isa_class: str, measured: float, cpu: str = "AMD EPYC") -> dict:
    """A bench.json with no model sections (to_markdown takes it) and one judged target."""
    return {
        "quick": False,
        "stamp": {"date": "2026-11-25", "commit": "0123456789abcdef" * 2 + "01234567", "dirty": False},
        "machine": {
            "cpu": cpu,
            "cores": 2,
            "isa": ["avx2", "fma"],
            "isa_class": isa_class,
            "int8_dot": isa_class == "avx512-vnni",
            "load_average": [0.0, 0.0, 0.0],
        },
        "settings": {"rounds": 10, "runs_per_round": 20},
        "models": {},
        "targets": [
            {
                "target": "host-fp32",
                "model": "ddsnet",
                "what": "TVM host FP32 / ORT FP32",
                "bound": 1.0,
                "measured": measured,
                "status": "PASS",
            }
        ],
    }


def test_docs_page_keeps_one_stamped_section_per_cpu_class(tmp_path, capsys):
    """`tcc bench --docs PAGE`: the run's section for its CPU class and vendor is replaced, another class's or
    vendor's section and the hand-written text stay; the stamp names machine, flags, commit and date; a missing page
    is refused up front."""
    from tcc.benchmark.docs_page import update_page
    from tcc.cli.main import main
    from tcc.measure.machine import source_revision

    hand = "# Benchmarks\n\nWritten by hand.\n"
    once = update_page(hand, _run_doc("avx2", 0.97))
    assert once.startswith(hand) and "| host-fp32 | ddsnet | TVM host FP32 / ORT FP32 | 1.0 | 0.97 | PASS |" in once
    assert (
        "**Machine:** AMD EPYC, 2 cores · **CPU flags:** avx2 fma (class avx2) · **Commit:** `0123456` · "
        "**Date:** 2026-11-25"
    ) in once
    twice = update_page(update_page(once, _run_doc("avx512-vnni", 1.2)), _run_doc("avx2", 0.95))
    assert twice.count("### Measured by `tcc bench`: avx2, AMD") == 1 and "0.97 | PASS" not in twice
    assert "| 0.95 | PASS |" in twice and "| 1.2 | PASS |" in twice and twice.startswith(hand)
    assert update_page(twice, _run_doc("avx2", 0.95)) == twice
    intel = update_page(twice, _run_doc("avx512-vnni", 0.8, cpu="Intel(R) Xeon(R) Processor"))
    assert "<!-- tcc bench --docs: avx512-vnni-intel -->" in intel and "| 1.2 | PASS |" in intel  # AMD's stays
    assert "### Measured by `tcc bench`: avx512-vnni, Intel" in intel and "| 0.8 | PASS |" in intel
    assert main(["bench", "--docs", str(tmp_path / "missing.md"), "-o", str(tmp_path / "out")]) == 2
    assert "missing.md: no such page" in capsys.readouterr().err and not (tmp_path / "out").exists()
    revision = source_revision()  # this checkout's commit
    assert len(revision["commit"]) == 40 and isinstance(revision["dirty"], bool)


@pytest.mark.slow  # ~2-4 min: every engine built and timed (tools/slow_tests.sh)
def test_bench_quick_writes_a_valid_result(tmp_path, capsys):
    """The CI run: one small model through every section; bench.json valid against its schema, every engine
    timed, the ARM bundles' instructions counted, the targets judged, bench.md written."""
    from tcc.cli.main import main

    assert main(["bench", "--quick", "-o", str(tmp_path), "--no-progress"]) == 0
    doc = json.loads((tmp_path / "bench.json").read_text())
    jsonschema.validate(doc, json.loads((REPO / "spec" / "schema" / "bench.schema.json").read_text()))
    m = doc["models"]["fastnet-64"]
    assert m["params"] == 218_534 and m["input"] == [1, 3, 64, 64]
    built = {k for k, b in m["builds"].items() if "error" not in b}
    assert {"ort-fp32", "ort-int8", "host-fp32", "tflite-int8"} <= built
    assert {"pytorch-fp32", "ort-fp32", "ort-int8", "host-fp32", "host-int8"} <= set(m["latency_ms"])
    assert "ort int8 / ort fp32" in m["latency_ratios"]
    assert m["builds"]["host-fp32"]["seconds"]["emit/compile"] > 0
    if "arm-a7-int8" in built:
        import numpy as np

        from tcc.backends.tvm.measure.blocks import per_inference

        ins = m["builds"]["arm-a7-int8"]["instructions"]
        assert ins["arch"] == "armv7" and ins["total"] > 1_000_000 and ins["int8_mac"] > 0
        # deterministic (no clock in what is counted): the same input counted twice gives the same numbers, so a
        # manifest holding them stays byte-identical
        bundle = tmp_path / "work" / "fastnet-64" / "bundles" / "arm-a7-int8"
        x = np.random.default_rng(7).standard_normal((1, 3, 64, 64)).astype(np.float32)
        first, second = (
            per_inference(bundle / "model.so", "arm-a7", x, bundle / "kit" / "bin" / "tcc-run") for _ in range(2)
        )
        assert first == second and abs(first["total"] - ins["total"]) < 0.01 * ins["total"]
    assert {"tcc kl", "onnxruntime MinMax"} <= set(m["quality"]["results"])
    assert {r["target"] for r in doc["targets"]} >= {"host-fp32", "host-int8", "ort-int8"}
    bound = m["ort_int8_profile"]["placement_bound"]
    assert 0 < bound["bound_us"] <= bound["int8_us"] and bound["bound_ratio"] <= bound["int8_ratio"]
    assert (
        "faster of its integer and float kernels"
        in next(r for r in doc["targets"] if r["target"] == "ort-int8")["context"]
    )
    md = (tmp_path / "bench.md").read_text()
    assert "| ort-fp32 |" in md and "## Targets" in md and "- ort-int8 (fastnet-64): kernel time" in md
    assert "wrote" in capsys.readouterr().out


def test_report_table1_carries_the_paper_numbers_and_plots(tmp_path, capsys):
    """`tcc report` for the paper models: DDSNet 189,870 parameters (the paper's 0.19 M) and 283,742,064 MACs;
    FastNet 218,534 (0.22 M) and 104,934,932 (its 210.31 M FLOPs are two per MAC); plots are real PNGs."""
    from PIL import Image

    from tcc.cli.main import main

    assert (
        main(["report", str(REPO / "spec" / "ddsnet.yaml"), str(REPO / "spec" / "fastnet.yaml"), "-o", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "| ddsnet | 3x224x224 | 189,870 | 0.19 | 283,742,064 |" in out
    assert "| fastnet | 3x256x256 | 218,534 | 0.22 | 104,934,932 |" in out
    doc = json.loads((tmp_path / "report.json").read_text())
    dds = doc["models"][0]
    assert dds["int8_mib"] < dds["fp32_mib"] / 3  # one byte per weight, int32 biases
    with Image.open(tmp_path / "models.png") as im:
        assert im.format == "PNG" and im.width > 600
    assert main(["report", "--bundles", str(tmp_path)]) == 2  # not a bundle: a clear error
    assert "not a tcc bundle" in capsys.readouterr().err


# A shared library with two functions the program calls through dlopen, as tcc-run calls a model's kernels: by
# hand, func_a runs 1 + 10 * 3 + 1 = 32 instructions (10 SIMD), func_b 1 + 5 * 2 + 1 = 12, called twice.
LIBRARY = {
    "armv7": """
.syntax unified
.arm
.text
.global func_a
.type func_a, %function
func_a:
    mov r0, #10
1:  vadd.i32 q0, q0, q1
    subs r0, r0, #1
    bne 1b
    bx lr
.size func_a, .-func_a
.global func_b
.type func_b, %function
func_b:
    mov r0, #5
1:  subs r0, r0, #1
    bne 1b
    bx lr
.size func_b, .-func_b
""",
    "aarch64": """
.text
.global func_a
.type func_a, %function
func_a:
    mov x0, #10
1:  add v0.4s, v0.4s, v1.4s
    subs x0, x0, #1
    b.ne 1b
    ret
.size func_a, .-func_a
.global func_b
.type func_b, %function
func_b:
    mov x0, #5
1:  subs x0, x0, #1
    b.ne 1b
    ret
.size func_b, .-func_b
""",
}
CALLER = """
#include <dlfcn.h>
int main(int argc, char **argv) {
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) return 1;
    void (*a)(void) = (void (*)(void))dlsym(lib, "func_a");
    void (*b)(void) = (void (*)(void))dlsym(lib, "func_b");
    a(); b(); b();
    return 0;
}
"""


@pytest.mark.parametrize("target", ["arm-a7", "aarch64"])
def test_instructions_per_function_equal_hand_counts(target, tmp_path):
    from tcc.backends.tvm.measure.insn_profile import count_by_function, kind

    platform, cc = _tools(target)
    (tmp_path / "lib.S").write_text(LIBRARY[platform.arch])
    (tmp_path / "main.c").write_text(CALLER)
    flags = ["-mfpu=neon"] if platform.arch == "armv7" else []
    subprocess.run(
        [cc, "-shared", "-fPIC", *flags, "-o", str(tmp_path / "libt.so"), str(tmp_path / "lib.S")], check=True
    )
    subprocess.run([cc, "-o", str(tmp_path / "main"), str(tmp_path / "main.c"), "-ldl"], check=True)
    counts = count_by_function(
        [str(tmp_path / "main"), str(tmp_path / "libt.so")], platform.qemu, f"{platform.triple}-nm"
    )
    # the library the program's argument names is the module: its functions by their own names
    assert sum(counts["func_a"].values()) == 32, counts["func_a"]
    assert sum(counts["func_b"].values()) == 24, counts["func_b"]
    simd = "vadd.i32 q0, q0, q1" if platform.arch == "armv7" else "add v0.4s, v0.4s, v1.4s"
    assert counts["func_a"][simd] == 10
    # the rest of the run is attributed to the program, its loader and libc, by image
    assert any(name.startswith("main:") for name in counts) and any(name.startswith("libc.so") for name in counts)
    assert kind("fused_conv2d3_add8_tcc_requantize_uint85_cast8_compute_") == "conv2d_add_tcc_requantize_uint8_cast"


def test_the_build_target_judges_the_users_command():
    """`tcc build --target arm-a7` is judged on the command timed as its own process; without that record, on the
    bench's in-process build less the instruction count the bench adds (a count the plain command never runs)."""
    from tcc.benchmark.targets import TARGETS

    judge = next(t for t in TARGETS if t.key == "build-arm-a7")
    phases = {"total": 28.3, "emit": 4.9, "self-check": 3.7, "target-checks/instruction-count": 18.9}
    model = {"builds": {"arm-a7-fp32": {"seconds": phases, "bytes": 1, "artifact_bytes": 1}}}
    assert judge.measure(model) == pytest.approx(9.4)
    model["builds"]["arm-a7-fp32"]["command"] = {"argv": ["tcc", "build"], "seconds": 12.4}
    assert judge.measure(model) == 12.4


def test_the_users_build_command_is_timed_as_its_own_process(tmp_path):
    """command_build_seconds runs `tcc build` in a new interpreter (what the build target judges): its argv as the
    user would type it, its wall seconds; a failing command is an error record, not a crash."""
    from tcc.benchmark.bench import ROOT, BenchModel, command_build_seconds

    model = BenchModel("fastnet-32", ROOT / "spec" / "fastnet.yaml", overrides={"image_size": 32})
    got = command_build_seconds(model, "ort", tmp_path / "b")
    assert got["argv"] == ["tcc", "build", "spec/fastnet.yaml", "--target", "ort", "--set", "image_size=32"]
    assert got["seconds"] > 0 and (tmp_path / "b" / "manifest.json").is_file()
    bad = command_build_seconds(
        BenchModel("x", ROOT / "spec" / "fastnet.yaml", overrides={"image_size": 0}), "ort", tmp_path / "c"
    )
    assert "must be >= 1" in bad["error"] and not (tmp_path / "c").exists()


def test_threads_time_each_engine_again_and_take_ratios_to_one_thread(tmp_path, capsys):
    """`tcc bench --threads 1,2`: the ORT and TFLite bundles timed at 1 and 2 threads in the same rounds, the ratio
    per engine, the 2-thread targets judged (DDSNet's only: not for this model); bad counts refused up front."""
    from tcc.cli.main import main

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core")
    args = [
        "bench",
        "fastnet",
        "--set",
        "image_size=32",
        "--only",
        "ort-fp32,tflite-fp32",
        "--threads",
        "2",
        "--rounds",
        "2",
        "--runs",
        "3",
        "--calib-images",
        "4",
        "--held-out",
        "2",
        "--no-memory",
        "--no-placement",
        "--no-progress",
        "-o",
        str(tmp_path),
    ]
    assert main(args) == 0
    doc = json.loads((tmp_path / "bench.json").read_text())
    jsonschema.validate(doc, json.loads((REPO / "spec" / "schema" / "bench.schema.json").read_text()))
    m = doc["models"]["fastnet"]
    assert doc["settings"]["threads"] == [1, 2]
    assert {"ort-fp32", "ort-fp32@2t", "tflite-fp32", "tflite-fp32@2t"} <= set(m["latency_ms"])
    ratio = m["latency_ratios"]["ort-fp32 2 threads / 1 thread"]
    assert ratio["n"] == 2 and ratio["median"] > 0
    assert "tflite-fp32 2 threads / 1 thread" in m["latency_ratios"]
    assert "1 thread (and 2 for the bundles marked @Nt)" in (tmp_path / "bench.md").read_text()
    capsys.readouterr()
    for bad, message in (("0", "--threads 0: 0 threads on a machine of"), ("1,two", "comma-separated whole numbers")):
        assert main(["bench", "--threads", bad, "-o", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
