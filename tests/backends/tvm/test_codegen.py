"""The parallel LLVM code generation (backends/tvm/codegen.py): the split of a model's kernels into parts, and the
library linked from the parts computing what TVM's own one-module build computes, byte-identical whatever the
number of threads."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from tcc.backends.tvm.codegen import PARTS, partition

tvm = pytest.importorskip("tvm")

from tcc.backends.tvm import codegen as tvm_codegen
from tcc.backends.tvm import compile as tvm_compile
from tcc.backends.tvm import runner as tvm_run
from tests.helpers.onnx_util import make_model


def test_partition_heaviest_first_to_the_lightest_group():
    weights = {"a": 5, "b": 4, "c": 3, "d": 3, "e": 2, "f": 1}
    # 5 -> g0, 4 -> g1, 3 (c) -> g2, 3 (d) -> g3, 2 -> g3 (load 3 vs g2's 3: lower index g2), 1 -> g3
    assert partition(weights, 4) == [["a"], ["b"], ["c", "e"], ["d", "f"]]
    assert partition(weights, 2) == [["a", "d", "f"], ["b", "c", "e"]]


def test_partition_covers_every_name_once_and_is_order_independent():
    rng = np.random.default_rng(0)
    weights = {f"k{i}": int(w) for i, w in enumerate(rng.integers(1, 100, 40))}
    groups = partition(weights)
    assert len(groups) == PARTS and sorted(n for g in groups for n in g) == sorted(weights)
    shuffled = dict(sorted(weights.items(), key=lambda kv: rng.random()))
    assert partition(shuffled) == groups
    loads = [sum(weights[n] for n in g) for g in groups]
    assert max(loads) - min(loads) <= max(weights.values())  # the greedy rule's bound
    assert partition({"only": 1}) == [["only"]]  # fewer kernels than parts: no empty part


def _model():
    rng = np.random.default_rng(1)
    nodes, inits, x = [], [], "input"
    for i, (co, ci, k, group) in enumerate(((8, 3, 3, 1), (8, 8, 3, 8), (16, 8, 1, 1), (16, 16, 3, 16))):
        w = numpy_helper.from_array((rng.standard_normal((co, ci // group, k, k)) * 0.3).astype(np.float32), f"w{i}")
        b = numpy_helper.from_array(rng.standard_normal(co).astype(np.float32), f"b{i}")
        nodes += [
            helper.make_node(
                "Conv", [x, w.name, b.name], [f"c{i}"], kernel_shape=[k, k], group=group, pads=[k // 2] * 4
            ),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]
        inits += [w, b]
        x = f"r{i}"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["output"]))
    return make_model(nodes, {"input": [1, 3, 12, 10]}, {"output": [1, 16, 1, 1]}, inits, name="convs")


def test_split_library_equals_tvm_compile_and_is_byte_identical_on_any_thread_count(tmp_path):
    mod = tvm_compile.import_onnx(_model())
    target = tvm.target.Target(tvm_compile.resolve_tvm_target("host"))
    pipeline = tvm_compile._relax_pipeline(target, tvm_compile.CompileOptions())
    x = np.random.default_rng(2).standard_normal((1, 3, 12, 10)).astype(np.float32)

    one, two = tmp_path / "one.so", tmp_path / "two.so"
    tvm_codegen.compile_and_export(mod, target, pipeline, one, workers=1)
    tvm_codegen.compile_and_export(mod, target, pipeline, two, workers=2)
    assert one.read_bytes() == two.read_bytes()

    whole = tmp_path / "whole.so"  # TVM's own path: one LLVM module for every kernel
    tvm.compile(mod, target=target, relax_pipeline=pipeline).export_library(str(whole))
    got = tvm_run.run_module(one, "host", x)[0][0]
    want = tvm_run.run_module(whole, "host", x)[0][0]
    assert got.shape == (1, 16, 1, 1) and np.array_equal(got, want)
