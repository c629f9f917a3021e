"""AMX-INT8 stems (backends/tvm/int8/variants/amx_stem.py): the weights' tile layout and the tiles' addressing
against a plain conv (everywhere, emulated in numpy), the kernel compiled to tile instructions (everywhere), and run
bit-exact, alone, pooled and in a lowered model, on a CPU with AMX whose OS grants the tile state."""

from __future__ import annotations

import re

import numpy as np
import pytest
from onnx import helper, numpy_helper

tvm = pytest.importorskip("tvm")

from tcc.backends.tvm import compile as tvm_compile
from tcc.backends.tvm.int8 import kernels as kn
from tcc.backends.tvm.int8.lower import RelaxLowering
from tcc.backends.tvm.int8.variants import amx_stem
from tcc.backends.tvm.isa import target_has
from tcc.backends.tvm.measure.instruction_mix import instruction_mix, is_amx
from tcc.cli.build import _target_check_line
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.match import plan
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.reference import run_reference
from tests.helpers.onnx_util import make_model
from tests.helpers.tvm_util import run_lowered, skip_unless_runtime

PAD = 128  # the shifted zero of s8 codes
SHAPES = [  # (shape, pool geometry or None)
    (
        kn.ConvShape(1, 40, 38, 3, 64, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1)),  # DDSNet's stem, small: 19 wide, ragged
        {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "out_hw": [10, 10]},
    ),
    (kn.ConvShape(1, 35, 37, 3, 32, 3, 3, (2, 2), (0, 0, 0, 0), (1, 1)), None),  # FastNet's: 'valid', 18 wide
    (
        kn.ConvShape(1, 21, 41, 3, 32, 3, 5, (1, 2), (1, 2, 0, 1), (1, 1)),  # uneven strides and pads
        {"kernel": [2, 3], "strides": [1, 2], "pads": [0, 1, 1, 1], "out_hw": [20, 10]},
    ),
    (
        kn.ConvShape(1, 18, 18, 4, 80, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1)),  # 5 tiles of channels: groups of 1
        {"kernel": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1], "out_hw": [9, 9]},
    ),
]


def _conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray, shape: kn.ConvShape) -> np.ndarray:
    """int64 acc [1, oh, ow, co] of NHWC codes x padded with PAD and OIHW w."""
    pt, pl, pb, pr = shape.pads
    xp = np.full((shape.h + pt + pb, shape.w + pl + pr, shape.c), PAD, np.int64)
    xp[pt : pt + shape.h, pl : pl + shape.w] = x[0]
    (oh, ow), (sh, sw) = shape.out_hw, shape.strides
    out = np.zeros((oh, ow, shape.co), np.int64) + bias
    for ky in range(shape.kh):
        for kx in range(shape.kw):
            out += (
                xp[ky : ky + sh * (oh - 1) + 1 : sh, kx : kx + sw * (ow - 1) + 1 : sw]
                @ w[:, :, ky, kx].astype(np.int64).T
            )
    return out[None]


def _max_pool(acc: np.ndarray, pool: dict) -> np.ndarray:
    (kh, kw), (sh, sw), (pt, pl) = pool["kernel"], pool["strides"], pool["pads"][:2]
    _, h, w, c = acc.shape
    out = np.empty((1, *pool["out_hw"], c), np.int64)
    for py, px in np.ndindex(*pool["out_hw"]):
        y, x = py * sh - pt, px * sw - pl
        out[0, py, px] = acc[0, max(y, 0) : min(y + kh, h), max(x, 0) : min(x + kw, w)].reshape(-1, c).max(0)
    return out


def _case(shape: kn.ConvShape, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (1, shape.h, shape.w, shape.c), dtype=np.uint8)
    w = rng.integers(-128, 128, (shape.co, shape.c, shape.kh, shape.kw), dtype=np.int8)
    w[0] = -128  # the extremes: 255 x -128 on every code of a channel
    x[0, :3] = 255
    return x, w, rng.integers(-50_000, 50_000, shape.co).astype(np.int32)


@pytest.mark.parametrize("shape, pool", SHAPES)
def test_tiles_of_the_packed_weights_compute_the_conv(shape, pool):
    """The kernel's arithmetic in numpy: per output row, tile of 16 pixels (the last ending at the row's end) and
    kernel row, a tile of `row_codes` codes read from the padded rows at a stride of sw x c codes, times the
    packed weights' tile (`tdpbusd`: each int32 column sums 4 codes x 4 weights per row), equals the conv."""
    x, w, bias = _case(shape)
    packed = amx_stem.pack_weights(w, shape)
    codes = amx_stem.row_codes(shape)
    assert packed.shape == (shape.kh, shape.co // 16, codes // 4, 64) and packed.dtype == np.int8
    pt, pl, pb, pr = shape.pads
    row = (shape.w + pl + pr) * shape.c
    rows = np.full((shape.h + pt + pb) * row + amx_stem.TILE_CODES, PAD, np.int64)
    rows[: -amx_stem.TILE_CODES].reshape(-1, row)[
        pt : pt + shape.h, pl * shape.c : pl * shape.c + shape.w * shape.c
    ] = x[0].reshape(shape.h, -1)
    (oh, ow), (sh, sw) = shape.out_hw, shape.strides
    got = np.zeros((1, oh, ow, shape.co), np.int64)
    weights = packed.astype(np.int64).reshape(shape.kh, shape.co // 16, codes // 4, 16, 4)
    for yy in range(oh):
        for xt in range(-(-ow // 16)):
            x0 = min(xt * 16, ow - 16)
            tile = np.tile(bias.astype(np.int64), (16, 1))
            for ky in range(shape.kh):
                base = (yy * sh + ky) * row + x0 * sw * shape.c
                a = np.stack([rows[base + i * sw * shape.c : base + i * sw * shape.c + codes] for i in range(16)])
                b = weights[ky].transpose(1, 3, 0, 2).reshape(codes, shape.co)  # [codes, co]
                tile += a @ b
            got[0, yy, x0 : x0 + 16] = tile
    np.testing.assert_array_equal(got, _conv(x, w, bias, shape))


def test_what_the_tiles_take():
    """A conv the kernel cannot take says why (a window row past a tile row, ragged channels, narrow rows)."""
    ok = kn.ConvShape(1, 40, 38, 3, 64, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1))
    assert amx_stem.supports(ok) is None and amx_stem.row_codes(ok) == 24
    assert "tile row" in amx_stem.supports(kn.ConvShape(1, 40, 38, 16, 64, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1)))
    assert "multiple of 16" in amx_stem.supports(kn.ConvShape(1, 40, 38, 3, 24, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1)))
    assert "under 16" in amx_stem.supports(kn.ConvShape(1, 40, 15, 3, 32, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1)))
    assert "dilated" in amx_stem.supports(kn.ConvShape(1, 40, 38, 3, 32, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2)))
    assert "batch" in amx_stem.supports(kn.ConvShape(2, 40, 38, 3, 32, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1)))


@pytest.mark.parametrize("pooled", [False, True])
def test_the_kernel_compiles_to_tile_instructions_compiled_only(pooled):
    """Compiled for a Sapphire Rapids (not run: this machine may lack AMX): the tile configuration, tile loads,
    `tdpbusd` and stores, and the OS's grant asked for (arch_prctl)."""
    shape, pool = SHAPES[0]
    target = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "sapphirerapids"})
    assert target_has_amx(target) and not target_has_amx(
        tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "icelake-server"})
    )
    func = amx_stem.conv_primfunc(shape, PAD, pool if pooled else None).with_attr("global_symbol", "main")
    asm = tvm.compile(func, target=target).mod.inspect_source("s")
    for instruction in ("ldtilecfg", "tileloadd", "tdpbusd", "tilestored", "tilerelease", "syscall"):
        assert re.search(rf"\b{instruction}\b", asm), instruction
    assert bool(re.search(r"vpmaxsd\s[^\n]*%zmm", asm)) == pooled


def test_the_instruction_mix_counts_amx_tiles_apart():
    """`tcc build`'s instruction mix counts AMX's tile instructions apart from SSE / AVX and says so."""
    assert is_amx("tdpbusd", "%tmm7,%tmm5,%tmm0") and is_amx("tileloadd", "(%r12,%rbx,1),%tmm5")
    assert is_amx("ldtilecfg", "0x40(%rsp)") and is_amx("tilerelease", "")
    assert not is_amx("vpdpbusd", "%zmm1,%zmm2,%zmm3") and not is_amx("vmovups", "%zmm0,(%rax)")
    mix = {"simd": 10, "simd_kind": "SSE/AVX", "instructions": 100, "amx": {"tileloadd": 39, "tdpbusd": 28}}
    assert _target_check_line("instruction_mix", mix).endswith(", 67 AMX tile instructions (28 tdpbusd)")
    assert "AMX" not in _target_check_line("instruction_mix", {**mix, "amx": None})


def target_has_amx(target) -> bool:
    return all(target_has(target, f) for f in ("amx-int8", "amx-tile"))


def _host_amx():
    skip_unless_runtime("host")
    target = tvm.target.Target(tvm_compile.resolve_tvm_target("host"))
    if not amx_stem.available(target):
        pytest.skip("this CPU has no AMX-INT8, or its OS does not grant the tile state")
    return target


@pytest.mark.parametrize("shape, pool", SHAPES)
def test_the_kernel_is_bit_exact_on_this_cpu(shape, pool):
    """Run here (AMX): the conv's accumulators, and the pooled ones, equal numpy's int64 conv and max pool."""
    target = _host_amx()
    x, w, bias = _case(shape, 1)
    ref = _conv(x, w, bias, shape)
    for geometry in (None, pool) if pool else (None,):
        out_hw = shape.out_hw if geometry is None else geometry["out_hw"]
        func = amx_stem.conv_primfunc(shape, PAD, geometry).with_attr("global_symbol", "main")
        mod = tvm.compile(func, target=target)
        dev = tvm.cpu()
        args = [
            tvm.runtime.tensor(a, dev)
            for a in (x, amx_stem.pack_weights(w, shape), bias, np.zeros((1, *out_hw, shape.co), np.int32))
        ]
        mod(*args)
        want = ref if geometry is None else _max_pool(ref, geometry)
        np.testing.assert_array_equal(args[-1].numpy(), want, err_msg=str(geometry))


def stem_model(seed: int = 0):
    """conv 7 x 7 / 2 on RGB + ReLU -> max pool 3 x 3 / 2 (padded) -> GAP -> gemm: DDSNet's stem, small."""
    rng = np.random.default_rng(seed)

    def w(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [
        helper.make_node(
            "Conv", ["input", "c1.w", "c1.b"], ["c1"], name="c1", kernel_shape=[7, 7], strides=[2, 2], pads=[3, 3, 3, 3]
        ),
        helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="p1", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["p1"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["output"], name="fc", transB=1),
    ]
    inits = [w("c1.w", 32, 3, 7, 7), w("c1.b", 32), w("fc.w", 3, 32), w("fc.b", 3)]
    return make_model(nodes, {"input": ["N", 3, 40, 38]}, {"output": ["N", 3]}, inits, name="stem", ir_version=8)


def test_a_pooled_stem_on_amx_is_bit_exact(tmp_path):
    """Lowered with AMX, a stem that a max pool alone reads is one kernel (the conv, pooled) and its output, and
    every tensor of the self-check's module (which reads the conv's own codes too), equal the integer
    reference's; without AMX the lowering has no AMX kernel."""
    m = stem_model()
    rng = np.random.default_rng(1)
    table = calibrate_onnx(m, rng.standard_normal((16, 3, 40, 38)).astype(np.float32), method="kl", target="tvm")
    qg = quantize_graph(plan(m, lowering="tvm", rules="tvm"), table)
    k = kn.KERNELS["tcc_dot_avx512_vnni"]
    names = lambda mod: {gv.name_hint for gv in mod.functions}  # noqa: E731
    assert not any("amx" in n for n in names(RelaxLowering(k).lower(qg, (), batch=1)))
    lowering = RelaxLowering(k, amx=True)
    mod = lowering.lower(qg, (), batch=1)
    assert {"tcc_amx_conv", "tcc_amx_conv_max_pool"} <= names(mod)
    _host_amx()
    x = rng.standard_normal((1, 3, 40, 38)).astype(np.float32) * 1.5
    ref_out, ref_codes = run_reference(m, table, x, return_all=True)
    np.testing.assert_array_equal(run_lowered(mod, "host", x, tmp_path)[0], ref_out)
    assert instruction_mix(tmp_path / "lowered-host.so", "host")["amx_by_mnemonic"]["tdpbusd"] > 0
    exposed = list(ref_codes)
    outs = run_lowered(RelaxLowering(k, amx=True).lower(qg, tuple(exposed), batch=1), "host", x, tmp_path)
    for name, got in zip(exposed, outs[1:]):
        np.testing.assert_array_equal(got, ref_codes[name].q, err_msg=name)
