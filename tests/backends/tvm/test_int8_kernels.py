"""The integer dot-product kernels of the TVM INT8 convs (backends/tvm/int8/kernels.py): bit-exact against the
integer reference on odd shapes (input channels not a multiple of the step, strides, asymmetric padding, a 7x7
stem on 3 channels, signed and unsigned codes, output channels the kernel cannot take), the weight packing, the
per-layer fallback of the ARM kernel, and the instruction each x86 kernel compiles to for CPUs this machine may
not have (compiled, not run: say so in the test names)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from onnx import helper, numpy_helper

tvm = pytest.importorskip("tvm")

from tcc.backends.tvm import compile as tvm_compile
from tcc.backends.tvm import runner as tvm_run
from tcc.backends.tvm.int8 import choose, compute, microkernel
from tcc.backends.tvm.int8 import kernels as kn
from tcc.backends.tvm.int8.lower import RelaxLowering
from tcc.backends.tvm.int8.variants import depthwise_rows, depthwise_taps, windows
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.match import plan
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.reference import run_reference
from tests.helpers.onnx_util import make_model
from tests.helpers.tvm_int8 import depthwise_case
from tests.helpers.tvm_int8 import lowered as _lowered
from tests.helpers.tvm_int8 import prim_scripts as _scripts
from tests.helpers.tvm_util import IEEE, run_lowered, skip_unless_runtime


def odd_convs_model(seed: int = 0):
    """stem 7x7 s2 on 3 channels (flat form) + ReLU (u8 codes) -> 3x3 16->24 (signed out) -> depthwise 3x3 s2,
    asymmetric pads + ReLU -> 1x1 24->16 -> 3x3 s2 asymmetric pads 16->8 + ReLU -> depthwise 3x3 on 8 channels (signed
    out) -> 3x3 8->5 (5 outputs: computed on 8, whole vectors of every kernel's narrowest twin, and sliced) -> 3x3
    5->16 + ReLU (5 input channels: flat) -> grouped 1x1 (generic) -> 1x1 16->20 (a multiple of ARM's 4 lanes, not
    of x86's 8 or 16) -> depthwise 3x3 on 20 channels (ARM: on 24, sliced; x86: the generic conv) -> GAP -> gemm."""
    rng = np.random.default_rng(seed)

    def conv(name, x, co, ci, k, stride=1, pads=(0, 0, 0, 0), group=1, relu=False):  # noqa: PLR0913
        w = rng.standard_normal((co, ci // group, k, k)) * 0.3
        w = numpy_helper.from_array(w.astype(np.float32), f"{name}.w")
        b = numpy_helper.from_array((rng.standard_normal(co) * 0.2).astype(np.float32), f"{name}.b")
        nodes = [
            helper.make_node(
                "Conv",
                [x, w.name, b.name],
                [name],
                name=name,
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=list(pads),
                group=group,
            )
        ]
        if relu:
            nodes.append(helper.make_node("Relu", [name], [f"{name}.relu"], name=f"{name}.relu"))
        return nodes, [w, b], nodes[-1].output[0]

    nodes, inits, x = [], [], "input"
    for args in (
        ("stem", 16, 3, 7, 2, (3, 3, 3, 3), 1, True),
        ("c2", 24, 16, 3, 1, (1, 1, 1, 1)),
        ("dw", 24, 24, 3, 2, (1, 0, 0, 1), 24, True),
        ("c3", 16, 24, 1, 1),
        ("c4", 8, 16, 3, 2, (0, 1, 1, 0), 1, True),
        ("dw2", 8, 8, 3, 1, (1, 1, 1, 1), 8),
        ("c5", 5, 8, 3, 1, (1, 1, 1, 1)),
        ("c6", 16, 5, 3, 1, (1, 1, 1, 1), 1, True),
        ("g", 16, 16, 1, 1, (0, 0, 0, 0), 2),
        ("c7", 20, 16, 1, 1),
        ("dw3", 20, 20, 3, 1, (1, 1, 1, 1), 20),
    ):
        name, co, ci, k, *rest = args
        n, i, x = conv(name, x, co, ci, k, *rest)
        nodes += n
        inits += i
    wf = numpy_helper.from_array((rng.standard_normal((3, 20)) * 0.5).astype(np.float32), "fc.w")
    bf = numpy_helper.from_array(np.zeros(3, np.float32), "fc.b")
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["output"], name="fc", transB=1),
    ]
    return make_model(
        nodes, {"input": ["N", 3, 19, 17]}, {"output": ["N", 3]}, inits + [wf, bf], name="odd", ir_version=8
    )


@pytest.fixture(scope="module")
def odd():
    m = odd_convs_model()
    rng = np.random.default_rng(1)
    table = calibrate_onnx(m, rng.standard_normal((16, 3, 19, 17)).astype(np.float32), method="kl", target="tvm")
    x = rng.standard_normal((1, 3, 19, 17)).astype(np.float32) * 1.5
    out, codes = run_reference(m, table, x, return_all=True)
    return m, table, x, out, codes


def _out_channels(model, node) -> int:
    return next(len(numpy_helper.to_array(t)) for t in model.graph.initializer if t.name == node.input[1])


@pytest.mark.parametrize(
    "target, kernel",
    [
        ("host", None),  # this machine's kernel (kernel_for: AVX2 vpmaddwd here, vpdpbusd on a VNNI CPU)
        ("arm-a7", "tcc_dot_neon_s8"),
        ("arm-a7", "tcc_dot_neon_s8_pairs"),  # the fallbacks for weights pairing two -128 codes, on every layer
        ("arm-a7", "tcc_dot_neon_dot16_pairs"),
        ("aarch64-dotprod", None),  # kernel_for: sdot (ARMv8.2 dotprod), run by qemu's cortex-a76
        ("aarch64", None),  # kernel_for: smull / smlal / sadalp (ARMv8.0)
        ("aarch64", "tcc_dot_a64_s8_pairs"),
        ("aarch64", "tcc_dot_a64_dot16_pairs"),  # AArch64's dot form, its pairs twin on every layer
    ],
)
def test_dot_kernels_bit_exact_on_odd_convs(odd, target, kernel, tmp_path):
    skip_unless_runtime(target)
    model, table, x, ref_out, ref_codes = odd
    k = kn.KERNELS[kernel] if kernel else choose.kernel_for(tvm.target.Target(tvm_compile.resolve_tvm_target(target)))
    if k is None:
        pytest.skip("this CPU has no integer dot-product kernel (no AVX2)")
    assert kernel or k.name == {"aarch64-dotprod": "tcc_dot_a64_sdot", "aarch64": "tcc_dot_a64_s8"}.get(target, k.name)
    names = list(ref_codes)
    mod = _lowered(model, table, k, names)
    assert any(k.name in s for s in _scripts(mod))
    calls = sum(s.count("tcc_dot_conv") > 0 for s in _scripts(mod))
    # the depthwise convs of 8k channels on int16 taps (on x86 the one of stride 1 on int16 pairs of rows), and on
    # ARM the one of 20 channels too, on 24
    pairs = sum("tcc_dw_pairs" in s for s in _scripts(mod))
    arm = k.arch != "x86_64"
    assert pairs == (not arm) and sum(s.count("tcc_dw_conv") > 0 for s in _scripts(mod)) == 2 - pairs + arm
    narrow = k  # x86: the narrowest of the kernel's half-width twins, for the others
    while narrow.narrow is not None:
        narrow = kn.KERNELS[narrow.narrow]
    dense = [
        n
        for n in model.graph.node
        if n.op_type == "Conv" and helper.get_attribute_value(next(a for a in n.attribute if a.name == "group")) == 1
    ]
    # every dense conv, c5's 5 output channels computed on 8 and sliced
    assert calls == len(dense) >= 6 and any(_out_channels(model, n) % narrow.lanes for n in dense)
    if narrow is not k:  # c7's 20 output channels: not a multiple of 8 or 16
        assert any(narrow.name in s for s in _scripts(mod))
    outs = run_lowered(mod, target, x, tmp_path)
    np.testing.assert_array_equal(outs[0], ref_out)
    for name, got in zip(names, outs[1:]):
        np.testing.assert_array_equal(got, ref_codes[name].q, err_msg=f"{k.name}: {name}")


def test_x86_int32_requantization_bit_exact_on_odd_convs(odd, monkeypatch, tmp_path):
    """The odd convs on this machine's kernel with the float32 and float64 requantizations turned off (no
    accumulator bound small enough): every layer's epilogue in the int32 form
    (int8.requantize.requantize_int32_primfunc), bit-exact."""
    from tcc.backends.tvm.int8 import requantize as tvm_requantize
    from tcc.backends.tvm.int8 import requantize_float32

    skip_unless_runtime("host")
    model, table, x, ref_out, ref_codes = odd
    k = choose.kernel_for(tvm.target.Target(tvm_compile.resolve_tvm_target("host")))
    if k is None or k.name.startswith("tcc_dot_neon"):
        pytest.skip("no x86 integer dot-product kernel on this machine")
    monkeypatch.setattr(tvm_requantize, "FLOAT64_EXACT", 0)
    monkeypatch.setattr(requantize_float32, "FLOAT32_EXACT", 0)
    names = list(ref_codes)
    mod = _lowered(model, table, k, names)
    assert not any("llvm.lrint" in s for s in _scripts(mod))
    outs = run_lowered(mod, "host", x, tmp_path)
    np.testing.assert_array_equal(outs[0], ref_out)
    for name, got in zip(names, outs[1:]):
        np.testing.assert_array_equal(got, ref_codes[name].q, err_msg=name)


def test_pack_weights_layout_and_bias_correction():
    """The packed weights hold w[co, c, ky, kx] where the conv's step reads it; the correction restores the sum of
    shifted codes."""
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (16, 5, 3, 3))
    for k in (kn.KERNELS["tcc_dot_avx2_madd"], kn.KERNELS["tcc_dot_neon_s8"], kn.KERNELS["tcc_dot_avx512_vnni"]):
        for c in (5, 8):  # flat (5 channels: not a multiple of the step) and direct
            shape = kn.ConvShape(1, 6, 6, c, 16, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1))
            wc = w[:, :c] if c <= 5 else rng.integers(-128, 128, (16, c, 3, 3))
            p = compute.pack_weights(wc, shape, k).astype(np.int64)
            m = shape.tile_vectors(k)
            if k.pairs == 1:
                p = p[..., None, :, :]  # the pairs axis, before (lanes, group)
            flat = shape.flat(k)
            for co in (0, 5, 15):
                for ky in range(3):
                    for e in range(shape.steps(k) * k.step if flat else c):
                        g, r = divmod(e, k.step)
                        h, j = divmod(r, k.group)
                        tile, vec, lane = co // (k.lanes * m), (co // k.lanes) % m, co % k.lanes
                        if flat:
                            kx, ci = divmod(e, c)
                            want = wc[co, ci, ky, kx] if kx < 3 else 0
                            got = p[tile, ky, g, vec, h, lane, j]
                        else:
                            want = wc[co, e, ky, 1]
                            got = p[tile, ky, 1, g, vec, h, lane, j]
                        assert got == want, (k.name, c, co, ky, e)
    a = rng.integers(0, 256, 45)
    ww = rng.integers(-128, 128, (4, 45))
    for offset in (-128, 128):
        shifted = (a + offset) @ ww.T
        np.testing.assert_array_equal(shifted + compute.bias_correction(ww[:, :, None, None], offset), a @ ww.T)


def test_the_kernels_relations_name_kernels_of_their_kind():
    """Each twin a kernel record names (kernels.DotKernel) is a record of KERNELS of the relation's kind: the
    narrower twin half the lanes of the same instruction, the int16 twin reading int16 codes, the safe twin one
    product per 16-bit lane in the same form, the form twin the other form and back; every instruction has its
    step's implementation (intrinsics.STEPS), every target kernel (choose.TARGET_KERNELS) a record."""
    from tcc.backends.tvm.int8.intrinsics import STEPS

    for k in kn.KERNELS.values():
        assert k.instruction in STEPS, k.name
        if k.narrow is not None:
            twin = kn.KERNELS[k.narrow]
            assert (twin.lanes, twin.instruction, twin.act_dtype) == (k.lanes // 2, k.instruction, k.act_dtype)
        if k.int16_twin is not None:
            twin = kn.KERNELS[k.int16_twin]
            assert k.act_dtype != "int16" and (twin.act_dtype, twin.lanes) == ("int16", k.lanes)
        if k.safe_twin is not None:
            twin = kn.KERNELS[k.safe_twin]
            assert twin.safe and not k.safe and (twin.form, twin.arch, twin.lanes) == (k.form, k.arch, k.lanes)
        if k.form_twin is not None:
            twin = kn.KERNELS[k.form_twin]
            assert twin.form != k.form and twin.form_twin == k.name and twin.safe == k.safe
    assert all(name in kn.KERNELS for _, _, name in choose.TARGET_KERNELS)
    assert {k.arch for k in kn.KERNELS.values() if k.depthwise_rows} == {"aarch64", "x86_64"}


def test_neon_kernel_falls_back_where_two_minus_128_share_a_lane():
    k = kn.KERNELS["tcc_dot_neon_s8"]
    shape = kn.ConvShape(1, 4, 4, 8, 8, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1))
    w = np.full((8, 8, 1, 1), 5)
    assert choose.layer_kernel(k, compute.pack_weights(w, shape, k)) is k
    w[3, 0], w[3, 2] = -128, -128  # codes 0 and 2 of channel 3: one lane (h = 0, 1; j = 0) of the same step
    assert choose.layer_kernel(k, compute.pack_weights(w, shape, k)).name == "tcc_dot_neon_s8_pairs"
    w[3, 2] = -127
    w[3, 1] = -128  # codes 0 and 1: two lanes of a pair, summed only in the int32 accumulator
    assert choose.layer_kernel(k, compute.pack_weights(w, shape, k)) is k
    dot = kn.KERNELS["tcc_dot_neon_dot16"]  # the dot form: codes m and m + 8 of a step share an int16 lane
    shape16 = kn.ConvShape(1, 4, 4, 32, 8, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1))
    assert choose.dot_form(shape16, k) == (dot, False)
    w = np.full((8, 32, 1, 1), 5)
    w[6, 17], w[6, 26] = -128, -128  # step 1, codes 1 and 10: not one lane
    assert choose.layer_kernel(dot, compute.pack_weights(w, shape16, dot)) is dot
    w[6, 25] = -128  # codes 9 and 1 of step 1: one lane
    assert choose.layer_kernel(dot, compute.pack_weights(w, shape16, dot)).name == "tcc_dot_neon_dot16_pairs"


@pytest.mark.parametrize(
    "mcpu, kernel, instruction",
    [
        ("icelake-server", "tcc_dot_avx512_vnni", r"vpdpbusd\s[^\n]*%zmm"),
        ("alderlake", "tcc_dot_avx_vnni", r"vpdpbusd\s[^\n]*%ymm"),
        ("skylake-avx512", "tcc_dot_avx512_madd", r"vpmaddwd\s[^\n]*%zmm"),
        ("znver2", "tcc_dot_avx2_madd", r"vpmaddwd\s[^\n]*%ymm"),
    ],
)
def test_x86_kernel_follows_the_isa_compiled_only(mcpu, kernel, instruction):
    """The kernel each x86 CPU class gets, compiled for that CPU (not run: this machine may lack the ISA) into the
    instruction it is for."""
    from tcc.backends.tvm.schedule import int8_rules as ts

    target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu})
    k = choose.kernel_for(target)
    assert k is not None and k.name == kernel
    shape = kn.ConvShape(1, 6, 10, 3, 32, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1))
    func = compute.conv_primfunc(shape, k, k.act_offset("uint8")).with_attr("global_symbol", "main")
    sch = ts.Int8DotConv().apply(func, target, False)
    assert sch is not None
    asm = tvm.compile(sch.mod, target=target).mod.inspect_source("s")
    assert re.search(instruction, asm)


@pytest.mark.parametrize(
    "mcpu, co, kernel, instruction",
    [
        ("icelake-server", 24, "tcc_dot_avx_vnni", r"vpdpbusd\s[^\n]*%ymm"),  # AVX512-VL: the EVEX ymm form
        ("icelake-server", 12, "tcc_dot_vnni_xmm", r"vpdpbusd\s[^\n]*%xmm"),
        ("alderlake", 12, "tcc_dot_vnni_xmm", r"vpdpbusd\s[^\n]*%xmm"),  # AVX-VNNI: the VEX form
        ("skylake-avx512", 24, "tcc_dot_avx2_madd", r"vpmaddwd\s[^\n]*%ymm"),
    ],
)
def test_narrow_layers_take_the_kernels_narrower_twin_compiled_only(mcpu, co, kernel, instruction):
    """A conv whose output channels fill only part of the CPU kernel's vector takes its narrower twin, compiled for
    that CPU into the narrower instruction (DDSNet on the AVX-512 VNNI Xeon: host INT8 / FP32 0.72 -> 0.43)."""
    from tcc.backends.tvm.schedule import int8_rules as ts

    target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu})
    shape = kn.ConvShape(1, 6, 10, 16, co, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1))
    k = choose.narrow_kernel(shape, choose.kernel_for(target))
    assert k.name == kernel and choose.supports(shape, k) is None
    func = compute.conv_primfunc(shape, k, k.act_offset("uint8")).with_attr("global_symbol", "main")
    sch = ts.Int8DotConv().apply(func, target, False)
    assert sch is not None
    assert re.search(instruction, tvm.compile(sch.mod, target=target).mod.inspect_source("s"))


@pytest.mark.parametrize(
    "mcpu, kernel, instruction",
    [
        ("icelake-server", "tcc_dot_avx512_madd", r"vpmaddwd\s[^\n]*%zmm"),
        ("alderlake", "tcc_dot_avx2_madd", r"vpmaddwd\s[^\n]*%ymm"),
        ("znver2", "tcc_dot_avx2_madd", r"vpmaddwd\s[^\n]*%ymm"),  # its own kernel reads int16 already
    ],
)
def test_x86_int16_codes_take_the_kernel_of_int16_pairs_compiled_only(mcpu, kernel, instruction):
    """A layer on 16-bit codes (W8A16, or widened by the placement) takes the kernel that multiplies int16 pairs
    where the CPU's own kernel reads 8-bit codes (VNNI), not the generic conv of 32-bit products; ARM's s8 kernels
    have no such twin; 8-bit codes keep the CPU's kernel."""
    from tcc.backends.tvm.schedule import int8_rules as ts

    target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu})
    own = choose.kernel_for(target)
    k = choose.codes_kernel(own, "int16")
    assert k.name == kernel and choose.codes_kernel(own, "uint8") is own
    shape = kn.ConvShape(1, 6, 10, 16, 32, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1))
    func = compute.conv_primfunc(shape, k, 0).with_attr("global_symbol", "main")
    sch = ts.Int8DotConv().apply(func, target, False)
    assert sch is not None
    assert re.search(instruction, tvm.compile(sch.mod, target=target).mod.inspect_source("s"))
    arm = choose.kernel_for(
        tvm.target.Target({"kind": "llvm", "mtriple": "armv7a-linux-gnueabihf", "mattr": ["+neon"]})
    )
    assert choose.codes_kernel(arm, "int16") is None and choose.codes_kernel(arm, "int8") is arm


@pytest.mark.parametrize(
    "target, kernel",
    [
        ({"mattr": ["+neon"]}, "tcc_dot_a64_s8"),  # the registry's aarch64 (ARMv8.0)
        ({"mcpu": "cortex-a53"}, "tcc_dot_a64_s8"),
        ({"mcpu": "cortex-a55"}, "tcc_dot_a64_sdot"),  # the CPU has dotprod (ARMv8.2)
        ({"mattr": ["+neon", "+dotprod"]}, "tcc_dot_a64_sdot"),
    ],
)
def test_aarch64_kernel_is_sdot_only_with_dotprod(target, kernel):
    target = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", **target})
    assert choose.kernel_for(target).name == kernel
    assert choose.dot_kernel("aarch64").name == "tcc_dot_a64_s8"
    assert choose.dot_kernel("aarch64-dotprod").name == choose.dot_kernel("arm-a55").name == "tcc_dot_a64_sdot"


def test_counter_names_the_dot_products_that_qemu_prints_as_bytes():
    """qemu 7.2 disassembles AArch64's sdot / udot as `.byte`; the instruction counter names them as objdump does
    (encodings from aarch64-linux-gnu-as), so that they count as SIMD int8 multiply-accumulates."""
    from collections import Counter

    from tcc.backends.tvm.measure.insn_count import named, summarize

    for word, text in (
        (0x4E819420, "sdot v0.4s, v1.16b, v1.16b"),
        (0x2E9F9441, "udot v1.2s, v2.8b, v31.8b"),
        (0x4FB1E8A3, "sdot v3.4s, v5.16b, v17.4b[3]"),
        (0x6F89E907, "udot v7.4s, v8.16b, v9.4b[2]"),
    ):
        assert named(".byte " + ", ".join(hex(b) for b in word.to_bytes(4, "little"))) == text
    lse = ".byte 0x41, 0x7c, 0xe0, 0x88"  # casa (LSE atomics): left as it is
    assert named(lse) == lse
    s = summarize(Counter({named(".byte 0x20, 0x94, 0x81, 0x4e"): 3, lse: 1}), "aarch64")
    assert (s["total"], s["simd"], s["int8_mac"]) == (4, 3, 3)


@pytest.mark.parametrize(
    "target, kernel, instructions",
    [
        ("aarch64-dotprod", "tcc_dot_a64_sdot", (r"sdot\s+v\d+\.4s, v\d+\.16b, v\d+\.16b",)),
        ("aarch64", "tcc_dot_a64_s8", (r"smull\s", r"smlal\s", r"sadalp\s")),
        ("aarch64", "tcc_dot_a64_s8_pairs", (r"smull\s", r"sadalp\s")),
        ("aarch64", "tcc_dot_a64_dot16", (r"smull\s", r"smlal2\s", r"sadalp\s", r"addp\s+v\d+\.4s")),
        ("aarch64", "tcc_dot_a64_dot16_pairs", (r"smull\s", r"smull2\s", r"sadalp\s")),
    ],
)
def test_aarch64_kernel_compiles_to_its_instructions(target, kernel, instructions):
    """Each AArch64 kernel's conv, scheduled and compiled for its target, is made of the instructions it is for."""
    from tcc.backends.tvm.schedule import int8_rules as ts

    tvm_target = tvm.target.Target(tvm_compile.resolve_tvm_target(target))
    k = kn.KERNELS[kernel]
    shape = kn.ConvShape(1, 6, 8, 16, 32, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1))
    if k.form == "dot":  # its schedule takes it with an epilogue (the requantization's place)
        x, w, acc = compute.dot_conv_tensors(shape, k, 0)
        func = tvm.te.create_prim_func([x, w, tvm.te.compute(acc.shape, lambda *i: acc(*i) >> 1, name="epilogue")])
    else:
        func = compute.conv_primfunc(shape, k, 0)
    func = func.with_attr("global_symbol", "main")
    sch = ts.Int8DotConv().apply(func, tvm_target, False)
    assert sch is not None
    asm = tvm.compile(sch.mod, target=tvm_target).mod.inspect_source("s")
    assert all(re.search(i, asm) for i in instructions), kernel


def _run_requantize(func, params, acc, dtype, target, so, lanes: int = 4):
    """One requantization PrimFunc (every params row a tensor) vectorized by `lanes` (tcc's ARM kernels: up to 16,
    their NEON calls split by register: int8/register_split.py), run under qemu on int32 accumulators [1, n]."""
    from tvm import relax, s_tir

    n = acc.size
    sch = s_tir.Schedule(func.with_attr("global_symbol", "main"))
    _, i = sch.get_loops(sch.get_sblock("requantize"))
    sch.vectorize(sch.split(i, [None, lanes])[1])
    bb = relax.BlockBuilder()
    x = relax.Var("acc", relax.TensorType([1, n], "int32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            gv = bb.add_func(
                sch.mod["main"].with_attr("tirx.is_scheduled", True).without_attr("global_symbol"), "requantize"
            )
            out = bb.emit_output(relax.call_tir(gv, [x, relax.const(params, "int32")], relax.TensorType([1, n], dtype)))
        bb.emit_func_output(out)
    so = tvm_compile.compile_module(bb.get(), target, so, IEEE)
    return tvm_run.run_module(so, target, acc.astype(np.int32).reshape(1, -1))[0][0].ravel()


@pytest.mark.parametrize(
    "target, arch, lanes",
    [("arm-a7", "armv7", 4), ("aarch64", "aarch64", 4), ("arm-a7", "armv7", 16), ("aarch64", "aarch64", 16)],
)
def test_neon_requantization_bit_exact_on_edge_cases(target, arch, lanes, tmp_path):
    """ARM's 32-bit requantization (int8.requantize.requantize_neon_primfunc; ARMv7 vqdmulh / vshl, AArch64 sqdmulh /
    sshl), run under qemu on the accumulators and multipliers that hit its branches: ties (q = 2^30: M = 2^-s,
    every odd multiple a tie), the int32 extremes, shifts 1..22, odd and even q (the low-bits test), saturating
    sums, zero points; 8-bit codes through the saturating narrowings, the int32 extremes past int16 included;
    vectors of one register and of four (the calls split by register)."""
    skip_unless_runtime(target)
    from tcc.backends.tvm.int8.requantize import neon_requantize_params, requantize_neon_primfunc
    from tcc.quant.intgraph.reference import multiply_by_quantized_multiplier, quantize_multiplier
    from tests.helpers.tvm_int8 import _requant

    rng = np.random.default_rng(0)
    n = 4096
    q, shift = quantize_multiplier(rng.uniform(2.0**-22, 0.49, n))
    q[:512], shift[:512] = 2**30, -rng.integers(1, 23, 512)  # M = 2^(shift - 1): ties at every odd multiple
    q[512:1024] &= ~np.int64(0xFF)  # q with trailing zero bits
    acc = rng.integers(-(2**31), 2**31, n)
    acc[:1024] = rng.integers(-(2**12), 2**12, 1024) * rng.choice([1, 2**10, 2**19], 1024) + 1  # ties and near
    acc[1024:1032] = [-(2**31), 2**31 - 1, 0, -1, 1, 2**30, -(2**30), 12345]
    for zp, lo, hi, dtype in (
        (-3, -128, 127, "int8"),
        (0, 0, 255, "uint8"),
        (100, -(2**15), 2**15 - 1, "int16"),
        (-128, -128, -1, "int8"),
        (7, 10, 200, "uint8"),
    ):
        rq = _requant(q, shift, zp, lo, hi, dtype)
        params = neon_requantize_params(rq, n)
        assert params is not None
        uniform = {k: int(params[k, 0]) for k in (5, 6, 7)}  # the bounds and zero point, as the lowering makes them
        got = _run_requantize(
            requantize_neon_primfunc(dtype, [1, n], uniform, arch=arch),
            params[:5],
            acc,
            dtype,
            target,
            tmp_path / f"rq-{dtype}-{lo}.so",
            lanes,
        )
        want = np.clip(multiply_by_quantized_multiplier(acc, q, shift) + zp, lo, hi)
        np.testing.assert_array_equal(got, want, err_msg=dtype)


@pytest.mark.parametrize(
    "target, arch, form, lanes",
    [
        ("arm-a7", "armv7", "neon", 4),
        ("aarch64", "aarch64", "neon", 4),
        ("aarch64", "aarch64", "neon", 16),
        ("arm-a7", "armv7", "plain", 4),
        ("host", "x86_64", "plain", 4),
    ],
)
def test_tie_free_requantization_bit_exact_within_its_bound(target, arch, form, lanes, tmp_path):
    """The one-rounding-shift forms (requantize_neon_tie_free_primfunc: sqdmulh, then srshl / vrshl;
    requantize_tie_free_primfunc: the int64 product's high half, a rounding shift in int32) equal the reference's
    half-to-even rounding on every accumulator within the bound that their params accepted: the bound's extremes,
    products just beside a half (acc q = m 2^k + 2^(k-1) +- d), random ones; multipliers with trailing zero bits,
    shifts 1..31. Where a tie fits within the bound (M = 2^-s, q = 2^30), the forms are refused."""
    if target != "host":
        skip_unless_runtime(target)
    import functools

    from tcc.backends.tvm.int8 import requantize as rqz
    from tcc.quant.intgraph.reference import multiply_by_quantized_multiplier, quantize_multiplier
    from tests.helpers.tvm_int8 import _requant

    params_for, make = (
        (rqz.neon_tie_free_params, functools.partial(rqz.requantize_neon_tie_free_primfunc, arch=arch))
        if form == "neon"
        else (rqz.tie_free_params, rqz.requantize_tie_free_primfunc)
    )

    rng = np.random.default_rng(1)
    n = 4096
    q, shift = quantize_multiplier(rng.uniform(2.0**-31, 0.49, n))
    q[:1024] &= ~np.int64(0xFFF)  # 12 or more trailing zero bits
    k = 31 - shift
    trailing = np.array([(int(v) & -int(v)).bit_length() - 1 for v in q])
    bound = np.minimum((np.int64(1) << (k - 1 - trailing)) - 1, 2**30 - 1)  # the largest without a tie
    acc = rng.integers(-bound, bound + 1)
    acc[:8], acc[8:16] = bound[:8], -bound[8:16]
    # the accumulators whose products lie nearest a half: acc = round((m + 1/2) 2^k / q) for a few m, +-1
    m = rng.integers(-(2**8), 2**8, n)
    near = np.round((m + 0.5) * np.ldexp(1.0, k) / q).astype(np.int64) + rng.integers(-1, 2, n)
    pick = (np.abs(near) <= bound) & (np.arange(n) % 2 == 1)
    acc[pick] = near[pick]
    zp, lo, hi, dtype = 5, -128, 127, "int8"
    rq = _requant(q, shift, zp, lo, hi, dtype)
    params = params_for(rq, n, bound)
    assert params is not None
    assert params_for(rq, n, bound + 1) is None  # one more and a tie fits (acc = 2^(k-1-v))
    assert params_for(rq, n, None) is None
    tie = _requant(np.full(n, 2**30), np.full(n, -3), zp, lo, hi, dtype)  # M = 1/16: ties at 8 (mod 16)
    assert params_for(tie, n, np.full(n, 7)) is not None
    assert params_for(tie, n, np.full(n, 8)) is None
    if form == "neon":  # the bounds and zero point compiled in, as the lowering makes them: saturating narrowings
        func = make(dtype, [1, n], {k: int(params[k, 0]) for k in (2, 3, 4)})
        params = params[:2]
    else:
        func = make(dtype, [1, n])
    got = _run_requantize(func, params, acc, dtype, target, tmp_path / "rq.so", lanes)
    want = np.clip(multiply_by_quantized_multiplier(acc, q, shift) + zp, lo, hi)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "target, width, unrolled", [("arm-a7", 15, ("ky", "kx")), ("arm-a7", 16, ("kx",)), ("aarch64", 16, ("ky", "kx"))]
)
def test_arm_depthwise_unrolls_its_taps(target, width, unrolled):
    """ARM depthwise: a width with no two-pixel tile (FastNet's 127, 63, 31, 15) has its 3 x 3 taps unrolled
    (the per-tap loop was a third of its instructions); ARMv7's two-pixel tiles unroll a row's taps (all nine
    spill its 16 registers: DDSNet 122.8 M -> 135.2 M instructions, a row's 118.2 M); AArch64's 32 registers take
    all nine."""
    from tvm import s_tir

    shape = kn.ConvShape(1, width, width, 16, 16, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1))
    func = depthwise_taps.depthwise_primfunc(shape, "int8").with_attr("global_symbol", "main")
    sch = depthwise_taps.Int8Depthwise().apply(func, tvm.target.Target(tvm_compile.resolve_tvm_target(target)), False)
    assert isinstance(sch, s_tir.Schedule)
    loops = [line.strip() for line in sch.mod["main"].script().splitlines() if line.strip().startswith("for ")]
    taps = {
        re.match(r"for (ky|kx)\b", line).group(1): "T.unroll" in line
        for line in loops
        if re.match(r"for (ky|kx)\b", line)
    }
    assert taps == {tap: tap in unrolled for tap in ("ky", "kx")}, loops


@pytest.mark.parametrize(
    "size, channels, form, width",
    [(224, 3, "dot", 112), (256, 3, "dot", 128), (256, 1, "broadcast", 127)],  # outputs 112 and 127 pixels wide
)
def test_arm_stem_im2col_form(size, channels, form, width):
    """A 3 x 3 s2 stem reads an im2col copy. Where the dot form's micro-kernel takes the copy (two blocks of 16
    codes at least: RGB's 27 in 32), the dot form, on a copy padded to whole 2-pixel tiles (FastNet's 127 -> 128,
    cropped after: fewer estimated cycles than the broadcast form's one-pixel tiles); a grey stem's 9 codes (one
    block) on an odd width: the broadcast kernel (one-pixel tiles, no partial-lane sums)."""
    shape = kn.ConvShape(1, size, size, channels, 64, 3, 3, (2, 2), (0,) * 4 if size == 256 else (1,) * 4, (1, 1))
    kernel, im2col = choose.dot_form(shape, kn.KERNELS["tcc_dot_neon_s8"])
    assert im2col and kernel.form == form
    flat = compute.im2col_shape(shape, kernel)
    assert flat.w == width and flat.out_hw[1] == width
    assert flat.c % kernel.group == 0 and flat.c - 9 * channels < kernel.step and choose.supports(flat, kernel) is None
    assert (microkernel.tile_of(kernel, flat) is not None) == (form == "dot")


def _add_case(rng, signed_a: bool, signed_b: bool):
    """Random ADD parameters as the quantizer makes them (reference.add_params), codes of both inputs' whole ranges:
    a [256, 1] against b [1, 256], every pair of codes."""
    from tcc.quant.intgraph.qtypes import AddParams, Multiplier, QParams, Requant
    from tcc.quant.intgraph.reference import add_params

    s_a, s_b, s_o = np.exp(rng.uniform(-5, 1, 3))
    p = add_params(s_a, s_b, s_o)
    mult = lambda key: Multiplier(np.array([p[key][0]], np.int64), np.array([p[key][1]], np.int64))  # noqa: E731
    out = QParams(float(s_o), int(rng.integers(-20, 20)), -128, 127)
    params = AddParams(p["left_shift"], mult("a"), mult("b"), Requant(mult("out"), out.zp, -128, 127, out))
    qa, qb = (
        QParams(float(s), int(rng.integers(-5, 5)) if signed else 0, -128 if signed else 0, 127 if signed else 255)
        for s, signed in ((s_a, signed_a), (s_b, signed_b))
    )
    a = np.arange(qa.lo, qa.hi + 1).reshape(-1, 1)
    b = np.arange(qb.lo, qb.hi + 1).reshape(1, -1)
    return params, qa, qb, a, b


@pytest.mark.parametrize("target", ["host", "arm-a7"])
def test_add_in_int32_lanes_bit_exact_on_every_pair_of_codes(target, tmp_path):
    """The integer ADD where no multiply can meet a tie (tir._tie_free_add: int32 lanes, a high half and one rounding
    shift per multiply) equals the reference's add_codes on every pair of input codes, for random scales (the
    larger input at M = 1/2, the smaller one and the output at 31-bit fractions), signed and unsigned codes; the
    16-bit codes' ADD keeps the int64 form."""
    if target != "host":
        skip_unless_runtime(target)
    from tvm import relax

    from tcc.backends.tvm.int8.codes import _Codes
    from tcc.backends.tvm.int8.tir import _tie_free_add, add_primfunc
    from tcc.quant.intgraph.qtypes import QParams
    from tcc.quant.intgraph.reference import add_codes

    rng = np.random.default_rng(3)
    for case in range(4):
        params, qa, qb, a, b = _add_case(rng, case % 2 == 1, case >= 2)
        assert _tie_free_add(qa, qb, params) is not None
        wide = QParams(qa.scale, 0, -(2**15), 2**15 - 1)
        assert _tie_free_add(wide, qb, params) is None  # 16-bit codes << 15 do not fit its int32 bound
        want = add_codes(a, qa.zp, b, qb.zp, params)
        shape = [a.shape[0], b.shape[1]]
        bb = relax.BlockBuilder()
        x = relax.Var("a", relax.TensorType(list(a.shape), qa.dtype))
        with bb.function("main", [x]):
            with bb.dataflow():
                codes_a = _Codes(x, qa)
                codes_b = _Codes(relax.const(b.astype(qb.dtype)), qb)
                gv = bb.add_func(add_primfunc(codes_a, codes_b, params, shape), "tcc_add")
                out = bb.emit_output(relax.call_tir(gv, [x, codes_b.expr], relax.TensorType(shape, "int8")))
            bb.emit_func_output(out)
        so = tvm_compile.compile_module(bb.get(), target, tmp_path / f"add{case}.so")
        got = tvm_run.run_module(so, target, a.astype(qa.dtype))[0][0]
        np.testing.assert_array_equal(got, want, err_msg=f"case {case}")


@pytest.mark.parametrize(
    "target, pixels, width, channels, out_channels, kernel, crop",
    [
        (*case, None)
        for case in [
            ("arm-a7", 2, 8, 32, 8, "tcc_dot_neon_dot16"),
            ("arm-a7", 1, 7, 48, 12, "tcc_dot_neon_dot16"),
            ("arm-a7", 2, 6, 160, 4, "tcc_dot_neon_dot16_pairs"),
            ("arm-a7", 1, 5, 64, 8, "tcc_dot_neon_dot16_pairs"),
            ("aarch64-dotprod", 4, 8, 32, 16, "tcc_dot_a64_sdot"),
            ("aarch64-dotprod", 3, 6, 16, 12, "tcc_dot_a64_sdot"),
            ("aarch64-dotprod", 1, 7, 160, 8, "tcc_dot_a64_sdot"),
            ("aarch64", 4, 8, 32, 8, "tcc_dot_a64_dot16"),
            ("aarch64", 2, 10, 48, 4, "tcc_dot_a64_dot16_pairs"),
            ("aarch64", 3, 9, 32, 12, "tcc_dot_a64_dot16"),
            ("aarch64-dotprod", 4, 8, 148, 16, "tcc_dot_a64_sdot"),
            ("aarch64-dotprod", 2, 10, 40, 8, "tcc_dot_a64_sdot"),
            ("aarch64-dotprod", 3, 6, 28, 12, "tcc_dot_a64_sdot"),
            ("aarch64-dotprod", 1, 7, 20, 4, "tcc_dot_a64_sdot"),
            ("aarch64-dotprod", 2, 8, 1500, 4, "tcc_dot_a64_sdot"),
        ]
    ]
    + [
        ("arm-a7", 2, 8, 32, 64, "tcc_dot_neon_dot16", 7),  # FastNet's stem: 4 calls a write-back, cropped
        ("arm-a7", 1, 5, 32, 16, "tcc_dot_neon_dot16", None),
        ("aarch64-dotprod", 4, 8, 28, 16, "tcc_dot_a64_sdot", 7),
        ("aarch64-dotprod", 4, 16, 576, 8, "tcc_dot_a64_sdot", 13),
    ],
)
def test_arm_dot_microkernel_bit_exact(target, pixels, width, channels, out_channels, kernel, crop, tmp_path):
    """The ARM micro-kernels (int8/microkernel.py: a 1 x 1 conv's whole reduction per call; the dot form on ARMv7
    and AArch64, AArch64's `sdot` by element) equal the exact sums on codes of the whole s8 range, the extremes
    included: 127 x -128 and -128 x -128 products, and a -128 pair on one int16 lane for the pairs kernel (each half
    widened on its own); tiles of 1 to 4 pixels, 1 to 4 vectors of channels; `sdot` on 1 to 3 steps of 4 codes
    after its blocks (148 codes: an im2col'd 7 x 7 x 3 window; pixel strides past `ldur`'s reach; 1,500 codes: a
    fourth pixel past what a pointer's `add` reaches, so two pixels a tile), its accumulators started from a
    bias; computed wider than its output and cropped (`crop`: an im2col copy of padded width, the last tile's
    stores past the width skipped); on ARMv7 up to 4 calls of 4 channels filling one write-back (the sums' pixel
    stride that of the wider tile)."""
    skip_unless_runtime(target)
    from tvm import relax, s_tir, te

    from tcc.backends.tvm.int8 import microkernel
    from tcc.backends.tvm.isa import simd_of
    from tcc.backends.tvm.schedule.int8_rules import Int8DotConv

    k = kn.KERNELS[kernel]
    shape = kn.ConvShape(1, 3, width, channels, out_channels, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1))
    tile = microkernel.tile_of(k, shape)
    assert tile is not None and tile.pixels == pixels
    x, w, acc = compute.microkernel_tensors(shape, k, tile, crop)
    assert int(acc.shape[2]) == (crop or width)
    out = te.compute(acc.shape, lambda *i: acc[i] + 1, name="epilogue")
    tvm_target = tvm.target.Target(tvm_compile.resolve_tvm_target(target))
    biased = k.name == "tcc_dot_a64_sdot"
    func = compute.reduction_primfunc([x, w, out], out_channels, kn.CONV_BLOCK, biased)
    sch = s_tir.Schedule(func.with_attr("global_symbol", "main"))
    rule = Int8DotConv()
    rule.target = tvm_target
    assert rule.schedule(sch, sch.get_child_blocks(sch.get_sblock("root")), simd_of(tvm_target))
    assert tile.name in sch.mod["main"].script()
    rng = np.random.default_rng(pixels)
    codes = rng.integers(-128, 128, (1, 3, width, channels))
    codes[0, 0] = -128  # a row of the extremes
    weights = rng.integers(-127 if kernel.endswith(("_s8", "dot16")) else -128, 128, (out_channels, channels, 1, 1))
    weights[0] = -128 if kernel.endswith("_pairs") else 127
    weights[-1, ::2] = -127
    packed = compute.pack_weights(weights, shape, k)
    _, packed, started = compute.dense_conv(shape, k, 0, packed, biased, crop)
    assert packed.shape == tuple(int(d) for d in w.shape) and started == biased
    bias = rng.integers(-(2**20), 2**20, out_channels) if biased else np.zeros(out_channels, np.int64)
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType(list(codes.shape), "int8"))
    with bb.function("main", [xv]):
        with bb.dataflow():
            gv = bb.add_func(sch.mod["main"].with_attr("tirx.is_scheduled", True).without_attr("global_symbol"), "conv")
            args = [xv, relax.const(packed, "int8")] + ([relax.const(bias.astype(np.int32))] if biased else [])
            y = bb.emit_output(relax.call_tir(gv, args, relax.TensorType([1, 3, crop or width, out_channels], "int32")))
        bb.emit_func_output(y)
    so = tvm_compile.compile_module(bb.get(), target, tmp_path / "conv.so", IEEE)
    got = tvm_run.run_module(so, target, codes.astype(np.int8))[0][0]
    want = np.einsum("nhwc,oc->nhwo", codes, weights[:, :, 0, 0]) + bias + 1
    np.testing.assert_array_equal(got, want[:, :, : crop or width])


@pytest.mark.parametrize("target, kernel", [("aarch64-dotprod", "tcc_dot_a64_sdot"), ("host", "tcc_dot_avx512_vnni")])
def test_dot_depthwise_bit_exact(target, kernel, tmp_path):
    """Depthwise convs on a 4-products-a-lane instruction (depthwise_rows.depthwise_rows_primfunc): AArch64's `sdot`
    (s8 x s8, run by qemu's cortex-a76) and AVX-512's `vpdpbusd` (u8 x s8, on this CPU where it has VNNI); a
    channel's 4 rows in one lane, a window of 4 interleaved rows serving 1, 2 or 3 output rows; codes shifted to
    the instruction's type (the bias takes the shift back) or not; x86's windows read from the input with its
    padding as masked loads, asymmetric pads included; every tensor equal to the integer reference's.
    Kernels of 5 rows keep the int16 taps, and so does the 1 x 1 one on AArch64 (x86: a float32 map,
    variants/affine_map.py)."""
    skip_unless_runtime(target)
    k = kn.KERNELS[kernel]
    if target == "host" and choose.kernel_for(tvm.target.Target(tvm_compile.resolve_tvm_target("host"))) is not k:
        pytest.skip("this CPU has no AVX-512 VNNI")
    x, ref_out, ref_codes, mod = depthwise_case(k)
    names = list(ref_codes)
    scripts = _scripts(mod)
    affine = target == "host"
    assert sum("tcc_dw_rows" in s for s in scripts) == 4
    # x86's windows read the input itself, AArch64's a padded copy
    assert sum("tcc_dw_rows" in s and "tcc_dw_pad" in s for s in scripts) == (0 if target == "host" else 4)
    assert sum("tcc_dw_conv" in s for s in scripts) == 2 - affine and sum("tcc_affine" in s for s in scripts) == affine
    outs = run_lowered(mod, target, x, tmp_path)
    np.testing.assert_array_equal(outs[0], ref_out)
    for name, got in zip(names, outs[1:]):
        np.testing.assert_array_equal(got, ref_codes[name].q, err_msg=name)


@pytest.mark.parametrize(
    "mtriple, mcpu, instruction, vpermb",
    [
        ("aarch64-linux-gnu", "cortex-a55", r"sdot\s+v\d+\.4s, v\d+\.16b, v\d+\.16b", False),
        ("x86_64-linux-gnu", "icelake-server", r"vpdpbusd\s[^\n]*%zmm", True),
        ("x86_64-linux-gnu", "cascadelake", r"vpdpbusd\s[^\n]*%zmm", False),
    ],
)  # VNNI without VBMI
def test_dot_depthwise_compiles_to_its_instruction_compiled_only(mtriple, mcpu, instruction, vpermb):
    """The dot depthwise's schedule tensorizes the step into `sdot` / `vpdpbusd` of two whole vectors, and on x86
    with AVX-512 VBMI a window's interleave into one `vpermb` of its 64 contiguous bytes (the blocked padded copy)
    (compiled for a CPU this machine may not have, not run)."""

    target = tvm.target.Target(
        {
            "kind": "llvm",
            "mtriple": mtriple,
            "mcpu": mcpu,
            **({"mattr": ["+neon", "+dotprod"]} if mtriple.startswith("aarch64") else {}),
        }
    )
    k = choose.kernel_for(target)
    shape = kn.ConvShape(1, 8, 10, 32, 32, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1))
    func = depthwise_rows.depthwise_rows_primfunc(
        shape, k.act_offset("uint8"), k.act_dtype, direct=mtriple.startswith("x86")
    ).with_attr("global_symbol", "main")
    sch = depthwise_rows.Int8DepthwiseDot().apply(func, target, False)
    assert sch is not None
    assembly = tvm.compile(sch.mod, target=target).mod.inspect_source("s")
    assert re.search(instruction, assembly)
    assert bool(re.search(r"vpermb\s[^\n]*%zmm", assembly)) == vpermb
    assert ("punpcklbw" in assembly) == (mtriple.startswith("x86") and not vpermb)  # the unpacks it replaces
    assert bool(re.search(r"vmovdqu8\s[^\n]*\{%k\d\} ?\{z\}", assembly)) == mtriple.startswith("x86")  # the padding
    # pads that add up to the kernel's height: the windows' first rows span the whole image, so x86 takes the
    # padded copy too (depthwise_rows.reads_rows_directly)
    odd = kn.ConvShape(1, 6, 6, 32, 32, 2, 2, (1, 1), (1, 1, 1, 1), (1, 1))
    assert not depthwise_rows.reads_rows_directly(odd)
    func = depthwise_rows.depthwise_rows_primfunc(odd, k.act_offset("uint8"), k.act_dtype).with_attr(
        "global_symbol", "main"
    )
    sch = depthwise_rows.Int8DepthwiseDot().apply(func, target, False)
    assert sch is not None and re.search(instruction, tvm.compile(sch.mod, target=target).mod.inspect_source("s"))


@pytest.mark.parametrize(
    "h, w, stride, pads, signed",
    [(9, 7, 1, (1, 1, 1, 1), False), (10, 9, 2, (1, 0, 0, 1), True), (5, 6, 1, (0, 1, 1, 0), True)],
)
def test_dot_depthwise_windows_read_from_the_input_are_exact(h, w, stride, pads, signed):
    """x86's windows read straight from the input (depthwise_rows.depthwise_rows_primfunc, direct): the rows outside the
    image load as the shifted zero whatever the window, column, image of a batch of 2, or pads, against a numpy
    conv of the padded codes (run where this CPU has AVX-512 VNNI)."""

    target = tvm.target.Target(tvm_compile.resolve_tvm_target("host"))
    k = choose.kernel_for(target)
    if k is not kn.KERNELS["tcc_dot_avx512_vnni"]:
        pytest.skip("this CPU has no AVX-512 VNNI")
    c = 32
    shape = kn.ConvShape(2, h, w, c, c, 3, 3, (stride, stride), pads, (1, 1))
    offset = k.act_offset("int8" if signed else "uint8")
    func = depthwise_rows.depthwise_rows_primfunc(shape, offset, k.act_dtype, direct=True).with_attr(
        "global_symbol", "main"
    )
    sch = depthwise_rows.Int8DepthwiseDot().apply(func, target, False)
    assert sch is not None
    rng = np.random.default_rng(h)
    x = (
        rng.integers(-128, 128, (2, h, w, c)).astype(np.int8)
        if signed
        else rng.integers(0, 256, (2, h, w, c)).astype(np.uint8)
    )
    weights = rng.integers(-128, 128, (c, 1, 3, 3)).astype(np.int8)
    oh, ow = shape.out_hw
    pt, pl, pb, pr = pads
    padded = np.pad(x.astype(np.int64) + offset, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=offset)
    want = sum(
        padded[:, ky : ky + stride * (oh - 1) + 1 : stride, kx : kx + stride * (ow - 1) + 1 : stride]
        * weights[:, 0, ky, kx]
        for ky in range(3)
        for kx in range(3)
    )
    got = tvm.runtime.tensor(np.zeros((2, oh, ow, c), np.int32))
    tvm.compile(sch.mod, target=target)["main"](
        tvm.runtime.tensor(x), tvm.runtime.tensor(depthwise_rows.depthwise_rows_weights(weights, shape)), got
    )
    np.testing.assert_array_equal(got.numpy(), want)


def test_dot_depthwise_windows_read_from_the_input_are_never_left_to_a_generic_schedule(monkeypatch):
    """Those windows read past the input's edges, which only their interleave's masked loads make right: where the
    rule cannot schedule them it raises, rather than let the module fall back to a generic schedule."""

    def refused(*_args):
        raise RuntimeError("no")

    target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "icelake-server"})
    k = choose.kernel_for(target)
    shape = kn.ConvShape(1, 8, 10, 32, 32, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1))
    func = depthwise_rows.depthwise_rows_primfunc(shape, k.act_offset("uint8"), k.act_dtype, direct=True)
    assert depthwise_rows.Int8DepthwiseDot().apply(func, target, False) is not None
    monkeypatch.setattr(depthwise_rows, "gather_rows_intrin", refused)
    with pytest.raises(depthwise_rows.DirectRowsUnscheduled, match="tcc_dw_dot"):
        depthwise_rows.Int8DepthwiseDot().apply(func, target, False)


def test_depthwise_rows_weights_place_each_kernel_row_for_each_output_row():
    """[J, kw, c, 4]: for output row j of a window, window row r holds kernel row r - j * stride (zero elsewhere);
    3x3 stride 1: 2 rows a window, stride 2: 1, 2x2: 3 (4 - 2 + 1), and fewer where they do not divide the
    output's height."""
    w = np.arange(2 * 3 * 3).reshape(2, 1, 3, 3) - 9
    s1 = kn.ConvShape(1, 8, 8, 2, 2, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1))
    got = depthwise_rows.depthwise_rows_weights(w, s1)
    assert got.shape == (2, 3, 2, 4)
    np.testing.assert_array_equal(got[0, :, :, :3], w[:, 0].transpose(2, 0, 1))
    np.testing.assert_array_equal(got[1, :, :, 1:], w[:, 0].transpose(2, 0, 1))
    assert not got[0, :, :, 3].any() and not got[1, :, :, 0].any()
    s2 = kn.ConvShape(1, 8, 8, 2, 2, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1))
    assert windows.rows_per_window(s2) == 1
    two = kn.ConvShape(1, 6, 6, 2, 2, 2, 2, (1, 1), (1, 1, 1, 1), (1, 1))  # 7 output rows: 3 does not divide
    assert windows.rows_per_window(two) == 1
    assert windows.rows_per_window(kn.ConvShape(1, 5, 5, 2, 2, 2, 2, (1, 1), (1, 1, 1, 1), (1, 1))) == 3
    assert windows.rows_per_window(kn.ConvShape(1, 8, 8, 2, 2, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1))) == 0


def pooled_model(seed: int = 0):
    """conv 3x3 + ReLU -> max pool 3x3 / 2 (padded) -> conv 1x1 -> (max pool 2x2 / 2, and a second reader: an add)
    -> GAP -> gemm: the first pool alone reads its conv; the second conv's output has two readers."""
    rng = np.random.default_rng(seed)

    def w(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.4).astype(np.float32), name)

    inits = [
        w("c1.w", 16, 3, 3, 3),
        w("c1.b", 16),
        w("c2.w", 16, 16, 1, 1),
        w("c2.b", 16),
        w("fc.w", 3, 16),
        w("fc.b", 3),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "c1.w", "c1.b"], ["c1"], name="c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="p1", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["p1", "c2.w", "c2.b"], ["c2"], name="c2", kernel_shape=[1, 1]),
        helper.make_node("MaxPool", ["c2"], ["p2"], name="p2", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p2"], ["g2"], name="g2"),
        helper.make_node("GlobalAveragePool", ["c2"], ["g3"], name="g3"),
        helper.make_node("Add", ["g2", "g3"], ["gap"], name="sum"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["output"], name="fc", transB=1),
    ]
    return make_model(nodes, {"input": ["N", 3, 15, 13]}, {"output": ["N", 3]}, inits, name="pooled", ir_version=8)


def test_a_max_pool_alone_after_a_conv_pools_its_accumulators(tmp_path):
    """On x86 a max pool that alone reads a conv takes the conv's int32 accumulators and requantizes its (fewer)
    outputs: requantization is non-decreasing, so max and requantization commute exactly, and the pool's padding
    never wins. Every tensor equals the integer reference's; a conv with a second reader keeps its order; ARM
    keeps it everywhere (RelaxLowering.lower says why)."""
    from tcc.backends.tvm.int8.variants.base import pooled_outputs

    m = pooled_model()
    rng = np.random.default_rng(1)
    table = calibrate_onnx(m, rng.standard_normal((16, 3, 15, 13)).astype(np.float32), method="kl", target="tvm")
    qg = quantize_graph(plan(m, lowering="tvm", rules="tvm"), table)
    conv = next(n for n in qg.nodes if n.kind == "conv")
    assert pooled_outputs(qg, kn.KERNELS["tcc_dot_avx2_madd"]) == {conv.outputs[0]}
    assert pooled_outputs(qg, kn.KERNELS["tcc_dot_neon_s8"]) == set()
    arm = RelaxLowering(kn.KERNELS["tcc_dot_neon_s8"])
    arm.lower(qg, (), batch=1)
    assert not arm.pooled_accs
    skip_unless_runtime("host")
    k = choose.kernel_for(tvm.target.Target(tvm_compile.resolve_tvm_target("host")))
    if k is None:
        pytest.skip("this CPU has no integer dot-product kernel (no AVX2)")
    x = rng.standard_normal((1, 3, 15, 13)).astype(np.float32) * 1.5
    ref_out, ref_codes = run_reference(m, table, x, return_all=True)
    lowering = RelaxLowering(k)
    mod = lowering.lower(qg, (), batch=1)
    assert set(lowering.pooled_accs) == {conv.outputs[0]}
    np.testing.assert_array_equal(run_lowered(mod, "host", x, tmp_path)[0], ref_out)
    names = list(ref_codes)
    outs = run_lowered(_lowered(m, table, k, names), "host", x, tmp_path)
    for name, got in zip(names, outs[1:]):
        np.testing.assert_array_equal(got, ref_codes[name].q, err_msg=name)


def test_im2col_copies_each_window_row_in_whole_vectors():
    """A window row of kw * c codes (compute._runs): vectors of 16, 8 or 4 codes inside the row, then one vector
    ending at its end; together they cover every code of the row (7 x 3: 16 + 8, overlapping by 3)."""
    assert compute._runs(21) == (16, 1, 8) and compute._runs(9) == (8, 1, 4) and compute._runs(3) == (3, 1, 0)
    for run in range(1, 70):
        width, count, tail = compute._runs(run)
        covered = {e for v in range(count) for e in range(v * width, (v + 1) * width)}
        covered |= set(range(run - tail, run))
        assert covered == set(range(run)) and tail <= run, run


@pytest.mark.parametrize(
    "size, channels, stride, width, im2col",
    [
        (256, 3, 2, 128, True),
        (127, 64, 2, 64, True),
        (31, 16, 2, 16, True),
        (224, 3, 2, 112, True),
        (11, 3, 2, 8, True),
        (58, 64, 1, None, False),
        (57, 32, 2, None, False),
        (255, 256, 1, None, False),
    ],
)
def test_sdot_convs_of_ragged_width_read_an_im2col_copy_of_whole_tiles(size, channels, stride, width, im2col, tmp_path):
    """AArch64's `sdot` takes a 3 x 3 valid conv through an im2col copy where its input channels are few (a stem) or
    its output width is no multiple of 4 pixels (FastNet's 127, 63 and 15: the direct form's tiles would be one or
    three pixels), unless the copy would pass IM2COL_MAX_BYTES (253 x 256 x 2,304 codes: 149 MB); the copy's width
    rounded up to 4 (`microkernel.padded_width`), its extra pixels zeros, what the conv computes there cropped. The
    copy equals the windows (ky, kx, c) of the input, codes of the whole s8 range."""
    from tcc.backends.tvm.int8 import microkernel

    k = kn.KERNELS["tcc_dot_a64_sdot"]
    shape = kn.ConvShape(1, size, size, channels, 8, 3, 3, (stride, stride), (0,) * 4, (1, 1))
    kernel, copied = choose.dot_form(shape, k)
    assert copied == im2col and kernel is k
    if not im2col:
        return
    flat = compute.im2col_shape(shape, k)
    assert flat.w == width == microkernel.padded_width(shape.out_hw[1]) and flat.c % 4 == 0
    tile = microkernel.tile_of(k, flat)
    assert tile is not None and tile.pixels == 4
    if size > 64:  # the copy itself: one small case on the host
        return
    from tvm import relax

    rng = np.random.default_rng(size)
    codes = rng.integers(-128, 128, (1, size, size, channels)).astype(np.int8)
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType(list(codes.shape), "int8"))
    with bb.function("main", [xv]):
        with bb.dataflow():
            gv = bb.add_func(compute.im2col_primfunc(shape, flat.c, "int8", 0, flat.w), "im2col")
            y = bb.emit_output(relax.call_tir(gv, [xv], relax.TensorType([1, flat.h, flat.w, flat.c], "int8")))
        bb.emit_func_output(y)
    so = tvm_compile.compile_module(bb.get(), "host", tmp_path / "im2col.so")
    got = tvm_run.run_module(so, "host", codes)[0][0]
    oh, ow = shape.out_hw
    want = np.zeros((1, oh, flat.w, flat.c), np.int8)
    for y in range(oh):
        for x in range(ow):
            window = codes[0, y * stride : y * stride + 3, x * stride : x * stride + 3, :].reshape(-1)
            want[0, y, x, : window.size] = window
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("target, kernel", [("aarch64", "tcc_dot_a64_s8"), ("host", None)])
def test_broadcast_conv_on_a_padded_im2col_width_cropped_bit_exact(target, kernel, tmp_path):
    """ARMv8.0's broadcast form on a stem of odd output width (FastNet's 127, here 7: one-pixel tiles) reads an
    im2col copy of whole 4-pixel tiles (`im2col_shape`); the conv computed over them and cropped (CROP_BLOCK), its
    requantization's stand-in (+ 1) fused behind, equals the exact sums over the real width, its accumulators
    started from a bias; the same crop on the host's kernel (8 columns cropped to 7)."""
    if target != "host":
        skip_unless_runtime(target)
    from tvm import relax

    tvm_target = tvm.target.Target(tvm_compile.resolve_tvm_target(target))
    k = kn.KERNELS[kernel] if kernel else choose.kernel_for(tvm_target)
    stem = kn.ConvShape(1, 15, 15, 3, 16, 3, 3, (2, 2), (0,) * 4, (1, 1))  # 7 x 7 outputs
    if kernel:
        used, copied = choose.dot_form(stem, k)
        assert copied and used is k
    flat = compute.im2col_shape(stem, k)
    width = stem.out_hw[1]
    assert flat.w == (8 if kernel else width)
    shape = kn.ConvShape(1, 2, 8, flat.c, 16, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1))  # 8 columns cropped to 7
    rng = np.random.default_rng(7)
    codes = rng.integers(-128 if k.act_dtype == "int8" else 0, 128, (1, 2, 8, flat.c))
    weights = rng.integers(-127, 128, (16, flat.c, 1, 1))
    bias = rng.integers(-(2**20), 2**20, 16)
    packed = compute.pack_weights(weights, shape, k)
    func, packed, started = compute.dense_conv(shape, k, 0, packed, True, width)
    assert started and kn.CROP_BLOCK in func.script()
    out_type = relax.TensorType([1, 2, width, 16], "int32")
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType(list(codes.shape), k.act_dtype))
    with bb.function("main", [xv]):
        with bb.dataflow():
            conv = bb.add_func(func, "conv")
            y = bb.emit(
                relax.call_tir(
                    conv, [xv, relax.const(packed, k.weight_dtype), relax.const(bias.astype(np.int32))], out_type
                )
            )
            y = bb.emit_output(relax.op.add(y, relax.const(np.int32(1))))
        bb.emit_func_output(y)
    so = tvm_compile.compile_module(bb.get(), target, tmp_path / "conv.so", IEEE)
    got = tvm_run.run_module(so, target, codes.astype(k.act_dtype))[0][0]
    want = np.einsum("nhwc,oc->nhwo", codes, weights[:, :, 0, 0]) + bias + 1
    np.testing.assert_array_equal(got, want[:, :, :width])


def test_sdot_tile_addresses_its_pixels_with_encodable_offsets():
    """The `sdot` micro-kernel's pixels (microkernel._pixel_bases): a stride with a tail of steps takes further
    pointers, each an `add` immediate below 4096, and a tile shrinks where its pixels would need more; every load's
    offset is one `ldr` takes."""
    from tcc.backends.tvm.int8 import microkernel

    k = kn.KERNELS["tcc_dot_a64_sdot"]
    for channels, width, pixels in ((148, 112, 4), (1500, 8, 2), (1504, 8, 4), (20, 7, 1)):
        shape = kn.ConvShape(1, 2, width, channels, 16, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1))
        tile = microkernel.tile_of(k, shape)
        assert tile is not None and tile.pixels == pixels, channels
        asm = microkernel._sdot_assembly(tile)
        for line in asm:
            add = re.fullmatch(r"add x(9|10|11), \$0, #(\d+)", line)
            assert add is None or int(add.group(2)) < 4096, line
            load = re.fullmatch(r"ldr ([qds])\d+, \[(?:\$0|x9|x10|x11), #(-?\d+)\]", line)
            if load:
                assert microkernel.addressable(int(load.group(2)), {"q": 16, "d": 8, "s": 4}[load.group(1)]), line
