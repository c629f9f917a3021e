"""The ARM peers (tcc.benchmark.peers): ONNX Runtime and LiteRT for AArch64 under qemu, counted as tcc's bundles are;
each class's cpuinfo from the HWCAPs qemu gives its -cpu; tcc against the best peer in the targets and bench.md.
The end-to-end run (the sysroot downloaded, ORT under qemu) is slow: `tools/slow_tests.sh`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tcc.benchmark.markdown import _peer_lines
from tcc.benchmark.peers import sysroot
from tcc.benchmark.peers.compare import tcc_vs_best_peer
from tcc.benchmark.targets import TARGETS
from tests.helpers import REPO


def _record(cycles: int, instructions: int = 1000) -> dict:
    return {"instructions": {"total": instructions}, "cycles": {"total": cycles}}


MODEL = {
    "builds": {"aarch64-dotprod-int8": _record(30), "aarch64-dotprod-fp32": _record(90), "aarch64-int8": _record(70)},
    "arm_peers": {
        "a55": {
            "ort-int8": _record(60),
            "litert-xnnpack-int8": _record(50),
            "litert-builtin-int8": {"error": "no tflite-int8 bundle was built"},
            "ort-fp32": _record(100),
        },
        "a53": {"ort-int8": _record(100)},
    },
}


def test_tcc_is_judged_against_its_best_peer_of_the_same_class_and_precision():
    assert tcc_vs_best_peer(MODEL, "a55", "int8") == (30 / 50, "litert-xnnpack-int8")
    assert tcc_vs_best_peer(MODEL, "a55", "fp32") == (0.9, "ort-fp32")
    assert tcc_vs_best_peer(MODEL, "a53", "int8") == (0.7, "ort-int8")
    assert tcc_vs_best_peer(MODEL, "a53", "fp32") is None  # tcc's aarch64 FP32 not built: not measured
    judged = {t.key: (t.measure(MODEL), t.bound({}), t.context(MODEL)) for t in TARGETS if t.key.startswith("peers-")}
    assert judged["peers-a55-int8"] == (0.6, 0.6, "the best peer: litert-xnnpack-int8")
    assert judged["peers-a53-fp32"][0] is None
    lines = "\n".join(_peer_lines(MODEL))
    assert "| tcc aarch64-dotprod-int8 | 1,000 | 30 | 0.600 of litert-xnnpack-int8 |" in lines
    assert "| litert-builtin-int8 | skipped: no tflite-int8 bundle was built |" in lines


def test_peers_bring_their_bundles_into_any_matrix():
    from tcc.benchmark.bench import QUICK_MATRIX, with_peer_bundles

    got = with_peer_bundles(QUICK_MATRIX)
    assert got[: len(QUICK_MATRIX)] == QUICK_MATRIX and len(set(got)) == len(got)
    assert {("aarch64", "int8"), ("aarch64-dotprod", "fp32"), ("tflite", "int8"), ("ort", "fp32")} <= set(got)


def test_each_class_reads_the_hwcaps_qemu_gives_its_cpu():
    if not (shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-aarch64")):
        pytest.skip("aarch64-linux-gnu-gcc or qemu-aarch64 missing (make setup-arm)")
    a53, a55 = (sysroot._hwcaps(sysroot.CORE_CLASSES[k]) for k in ("a53", "a55"))
    assert {"fp", "asimd", "cpuid"} <= set(a53) and "asimddp" not in a53  # ARMv8.0: no dot product
    assert {"asimddp", "atomics", "lrcpc", "asimdhp"} <= set(a55)  # ARMv8.2 with the dot product


def _tiny_onnx(path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], np.random.default_rng(0).normal(size=216).tolist())
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["y"], ["z"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8, 32, 32])],
        [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.slow
def test_onnx_runtime_for_aarch64_runs_under_qemu_and_is_counted(tmp_path):
    import jsonschema

    from tcc.benchmark.peers.measure import measure

    for tool in ("aarch64-linux-gnu-gcc", "qemu-aarch64", "llvm-mca", "apt-get"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} missing")
    _tiny_onnx(tmp_path / "model.onnx")
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    got = measure("ort", tmp_path / "model.onnx", "a55", x)
    assert got["instructions"]["total"] > 10_000 and got["cycles"]["total"] > 0
    assert got["max_abs_vs_x86"] < 1e-4  # the same model on this machine's ORT
    assert got["instructions"]["float_mac"] > 8 * 27 * 32 * 32 / 4 / 2  # the conv ran on vectors: >= 4 lanes per fmla
    schema = json.loads((REPO / "spec" / "schema" / "bench.schema.json").read_text())
    jsonschema.validate(got, {"$defs": schema["$defs"], "$ref": "#/$defs/peer"})
