"""Dense-block concats without copies (backends/tvm/passes/concat.py): which concats the pass removes, which it leaves,
that the module computes exactly what it computes without the pass (INT8: the integer reference's codes), and that
ARM modules keep their kernels. Speed is measured by `tcc bench`, not here."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from tests.helpers.onnx_util import make_model
from tests.helpers.tvm_util import needs_tvm, x86_options

pytestmark = needs_tvm

SHAPE = [1, 3, 9, 7]


def _dense_block(layers: int = 3, growth: int = 4, y_also_read: bool = False, stem: int = 6):
    """stem conv (`stem` channels) -> `layers` dense layers (depthwise 3x3 + ReLU, pointwise conv + ReLU, concat with
    the layer's input) -> 1x1 conv. `y_also_read`: the last layer's new channels also feed the output directly
    (an Add after a 1x1 conv), so that concat's second input has another reader."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def conv(x, out, c_in, c_out, k=1, group=1):
        w = numpy_helper.from_array(
            (rng.standard_normal((c_out, c_in // group, k, k)) * 0.4).astype(np.float32), f"w_{out}"
        )
        b = numpy_helper.from_array((rng.standard_normal(c_out) * 0.1).astype(np.float32), f"b_{out}")
        inits.extend([w, b])
        nodes.append(
            helper.make_node(
                "Conv", [x, w.name, b.name], [f"{out}_c"], kernel_shape=[k, k], group=group, pads=[k // 2] * 4
            )
        )
        nodes.append(helper.make_node("Relu", [f"{out}_c"], [out]))
        return out

    x, c = conv("input", "x0", 3, stem, k=3), stem
    for i in range(layers):
        d = conv(x, f"d{i}", c, c, k=3, group=c)
        y = conv(d, f"y{i}", c, growth)
        nodes.append(helper.make_node("Concat", [x, y], [f"x{i + 1}"], axis=1))
        x, c = f"x{i + 1}", c + growth
    out = conv(x, "head", c, growth)
    if y_also_read:
        nodes.append(helper.make_node("Add", [out, y], ["sum"]))
        out = "sum"
    nodes.append(helper.make_node("Identity", [out], ["output"]))
    return make_model(nodes, {"input": SHAPE}, {"output": [1, growth, *SHAPE[2:]]}, inits, name="dense")


def _lowered(model, target_name: str, concat_in_place: bool):
    """The module after tcc's whole Relax pipeline (kernels scheduled, before code generation)."""
    import tvm

    from tcc.backends.tvm import compile as tvm_compile

    target = tvm.target.Target(tvm_compile.resolve_tvm_target(target_name))
    pipeline = tvm_compile._relax_pipeline(target, x86_options(concat_in_place=concat_in_place))
    with target:
        return pipeline(tvm_compile.import_onnx(model, {"input": SHAPE}))


def _concat_kernels(mod) -> int:
    return sum(g.name_hint.startswith("concatenate") for g in mod.get_global_vars())


def _outputs(model, tmp_path, concat_in_place: bool) -> np.ndarray:
    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm import runner as tvm_run

    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    so = tvm_compile.compile_module(
        tvm_compile.import_onnx(model, {"input": SHAPE}),
        "host",
        tmp_path / f"m{int(concat_in_place)}.so",
        x86_options(concat_in_place=concat_in_place),
    )
    return tvm_run.run_module(so, "host", x)[0][0]


def test_dense_block_concats_are_removed_and_the_output_is_exactly_the_same(tmp_path):
    model = _dense_block()
    assert _concat_kernels(_lowered(model, "host", False)) == 3
    passed = _lowered(model, "host", True)
    assert _concat_kernels(passed) == 0
    want, got = _outputs(model, tmp_path, False), _outputs(model, tmp_path, True)
    assert got.shape == (1, 4, *SHAPE[2:]) and np.abs(got).max() > 0
    assert np.array_equal(got, want)


def test_a_concat_whose_new_channels_have_another_reader_stays(tmp_path):
    model = _dense_block(y_also_read=True)
    assert _concat_kernels(_lowered(model, "host", True)) == 1  # the last; the two before it are removed
    assert np.array_equal(_outputs(model, tmp_path, True), _outputs(model, tmp_path, False))


def test_arm_modules_keep_their_concats():
    assert _concat_kernels(_lowered(_dense_block(), "arm-a7", True)) == 3


def test_a_buffer_used_other_than_by_loads_stores_and_regions_is_refused():
    """The PrimFunc edits refuse a buffer they cannot account for (here: handed whole to an external function,
    which would assume its compact shape); loads, stores and block regions are shifted."""
    from tvm.script import tirx as T

    from tcc.backends.tvm.passes import concat as tvm_concat

    @T.prim_func(private=True, s_tir=True)
    def handed_out(a: T.Buffer((4,), "float32"), out: T.Buffer((4,), "float32")):
        for i in range(4):
            with T.sblock("b"):
                v = T.axis.remap("S", [i])
                out[v] = a[v]
        T.evaluate(T.call_extern("int32", "consume", out.data))

    with pytest.raises(tvm_concat._Unsupported):
        tvm_concat.written_at(handed_out, 1, [8], 0, 4)
    with pytest.raises(tvm_concat._Unsupported):
        tvm_concat.widened(handed_out, 1, [8])
    moved = tvm_concat.written_at(handed_out, 0, [8], 0, 4).script()
    assert "T.reads(a[v + 4])" in moved and "out[v] = a[v + 4]" in moved


@pytest.mark.parametrize("stem, growth", [(6, 4), (16, 16)])
def test_int8_dense_block_concats_are_removed_and_the_codes_stay_the_reference(stem, growth):
    """INT8 modules take the pass too: the quantized dense block loses its concat kernels and its output codes
    stay bit-exact with the integer reference. With 16k channels the depthwise convs are dot products (on a VNNI
    CPU, their windows read straight from the widened concat: its channel stride is not theirs)."""
    import tvm
    from tvm import relax

    from tcc.backends.tvm import compile as tvm_compile
    from tcc.backends.tvm.int8.lower import lower_int8
    from tcc.quant.calibrate import calibrate_onnx
    from tcc.quant.intgraph.reference import run_reference

    model = _dense_block(growth=growth, stem=stem)
    x = np.random.default_rng(2).standard_normal((8, *SHAPE[1:])).astype(np.float32)
    table = calibrate_onnx(model, x, method="minmax", target="tvm", batch_size=1)
    target = tvm.target.Target(tvm_compile.resolve_tvm_target("host"))
    pipeline = tvm_compile._relax_pipeline(target, x86_options(concat_in_place=True))
    mod = lower_int8(model, table, batch=1, target="host")  # this CPU's kernels (VNNI: the dot depthwise convs)
    with target:
        assert _concat_kernels(tvm_compile._relax_pipeline(target, x86_options())(mod)) >= 2  # without (2 or 3:
        # which of them fuse with a neighbour depends on the kernels this CPU's convs take)
        assert _concat_kernels(pipeline(mod)) == 0
    vm = relax.VirtualMachine(tvm.compile(mod, target=target, relax_pipeline=pipeline), tvm.cpu())
    for sample in x[:3]:
        got = vm["main"](tvm.runtime.tensor(sample[None]))
        assert np.array_equal(got.numpy(), run_reference(model, table, sample[None]))
