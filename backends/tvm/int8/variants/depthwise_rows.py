"""The depthwise conv on a dot-product instruction that sums 4 byte products into each int32 lane -- AArch64's
`sdot` (s8 x s8, 4 lanes), AVX-512 VNNI's `vpdpbusd` (u8 x s8, 16 lanes) -- with 4 rows of a channel in one lane:
the kernel variant `depthwise_rows`, in one place.

- takes (`match`): a depthwise conv on 8-bit codes at zero point 0, 16k channels (a tile of 4 `sdot` lanes of 4
  channels, one zmm), a kernel of 2 to 4 rows, not dilated, on a target whose dot kernel has the instruction
  (kernels.DotKernel.depthwise_rows). (A 1 x 1 one, a BN after a ReLU, would use a quarter of each instruction:
  DDSNet's three executed 4% more than on int16 taps: docs/notes/aarch64-dot-kernels.md);
- compute (`depthwise_rows_primfunc`, weights `depthwise_rows_weights`): the input's rows interleaved per channel in
  windows of 4 (windows.py), the conv on them, the bias in the accumulators;
- intrinsics: the step (`depthwise_dot_intrin`), the interleave from a padded copy (`interleave_rows_intrin`,
  AArch64) or straight from the input with masked loads (`gather_rows_intrin`, x86);
- schedule rule `Int8DepthwiseDot`; the requantization in the tile's epilogue.
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx
from tvm.script import tirx as T

from tcc.quant.intgraph.qtypes import QNode

from ...isa import target_has
from ...schedule.loops import Rule, block_domain, is_x86, parallelize
from ...schedule.tiles import neon_epilogue_lanes
from .. import compute, microkernel
from ..codes import _Codes
from ..intrin_funcs import Operand, copy_func, store_func
from ..intrinsics import register, registered
from ..kernels import DEPTHWISE_PAD_BLOCK, ConvShape, depthwise_rows_kernel
from .base import Layer, Match, Variant
from .windows import ROWS, WindowTile, column_padded, lane_rows_desc, lane_rows_operands, rows_per_window, window_tiles

# The blocks: the input's rows, 4 at a time, interleaved per channel so that a channel's 4 rows are one 32-bit
# lane, and the conv on them
DEPTHWISE_ROWS_BLOCK = "tcc_dw_rows"
DEPTHWISE_DOT_BLOCK = "tcc_dw_dot"
ROWS_PADS_ATTR = "tcc.dw_rows_pads"  # x86's windows read straight from the input: its top and left pads, "pt,pl"


# ---------------------------------------------------------------------------------------------------- compute
def depthwise_rows_weights(w_oihw: np.ndarray, shape: ConvShape) -> np.ndarray:
    """Depthwise weight codes [C, 1, kh, kw] as `depthwise_rows_primfunc` reads them: [J, kw, C, ROWS], the
    weight of window row r for the j-th output row of the window (kernel row r - j * stride, zero outside)."""
    j_rows, sh = rows_per_window(shape), shape.strides[0]
    c, _, kh, kw = w_oihw.shape
    out = np.zeros((j_rows, kw, c, ROWS), np.int64)
    for j in range(j_rows):
        for ky in range(kh):
            out[j, :, :, j * sh + ky] = np.asarray(w_oihw, np.int64)[:, 0, ky, :].T
    return out.astype(np.int8)


def reads_rows_directly(shape: ConvShape) -> bool:
    """Whether `depthwise_rows_primfunc(direct=True)` can take `shape`: its interleave (`gather_rows_intrin`)
    finds a window's first row from its offset in the input, which needs the windows' first rows to span fewer rows
    than the image has (true unless the pads add up to the kernel's height or more)."""
    j_rows = rows_per_window(shape)
    return j_rows > 0 and (shape.out_hw[0] // j_rows - 1) * j_rows * shape.strides[0] < shape.h


def depthwise_rows_primfunc(
    shape: ConvShape, offset: int, act_dtype: str = "int8", biased: bool = False, direct: bool = False
):
    """A depthwise conv on a dot-product instruction that sums 4 byte products into each int32 lane (AArch64's
    `sdot`: s8 x s8; x86's `vpdpbusd`: u8 x s8): int32 acc [n, oh, ow, c] of 8-bit codes x [n, h, w, c] and
    weights [J, kw, c, ROWS] (`depthwise_rows_weights`). The input is shifted to the instruction's `act_dtype` by
    `offset` (u8 codes for `sdot`: -128; s8 ones for `vpdpbusd`: +128; the bias takes it back) and copied as windows
    of ROWS rows interleaved per channel (`tcc_dw_rows` [n, windows, w + pads, c, ROWS]), so that one vector load
    holds 4 rows of each of its channels and one instruction against the weights sums a column of the kernel per
    channel; a window serves J output rows (`rows_per_window`), each with its own weights. The padding is the
    shifted zero: AArch64 pads the input first (`tcc_dw_pad`, column-major [n, x, y, c], so that a window's 4 rows
    of 16 channels are one (4, 16) block of its last two axes); `direct` (x86, `reads_rows_directly`): the windows
    read the input itself, past its edges too, and their interleave (`gather_rows_intrin`) loads the rows
    outside the image as zeros (masked loads), annotated with the pads (ROWS_PADS_ATTR) it needs for that."""

    i64 = lambda v: tirx.IntImm("int64", int(v))  # noqa: E731
    oh, ow = shape.out_hw
    j_rows = rows_per_window(shape)
    (sh, sw), (_, dw) = shape.strides, shape.dilations
    pt, pl, pb, pr = shape.pads
    step = j_rows * sh  # input rows between windows
    windows = oh // j_rows
    height = (windows - 1) * step + ROWS  # padded rows the windows read (the last ones may reach past the padding)
    dtype = act_dtype if offset == 0 else {"int8": "uint8", "uint8": "int8"}[act_dtype]
    x = te.placeholder([i64(d) for d in (shape.n, shape.h, shape.w, shape.c)], dtype, name="x")
    weights = te.placeholder([i64(d) for d in (j_rows, shape.kw, shape.c, ROWS)], "int8", name="weights")

    width = shape.w + pl + pr
    rows_shape = [i64(d) for d in (shape.n, windows, width, shape.c, ROWS)]
    if direct:
        if not reads_rows_directly(shape):
            raise ValueError(f"the windows of {shape} cannot read their input directly")

        def window(n, t, xx, c, r):
            code = x[n, t * step + r - pt, xx - pl, c]
            return code if offset == 0 else (code.astype("int16") + tirx.const(offset, "int16")).astype(act_dtype)

        rows = te.compute(rows_shape, window, name=DEPTHWISE_ROWS_BLOCK, attrs={ROWS_PADS_ATTR: f"{pt},{pl}"})
    else:
        src = column_padded(x, shape, height, offset, act_dtype)
        rows = te.compute(rows_shape, lambda n, t, xx, c, r: src[n, xx, t * step + r, c], name=DEPTHWISE_ROWS_BLOCK)
    kx = te.reduce_axis((i64(0), i64(shape.kw)), name="kx")
    r = te.reduce_axis((i64(0), i64(ROWS)), name="r")
    out = te.compute(
        [i64(d) for d in (shape.n, oh, ow, shape.c)],
        lambda n, y, xx, c: te.sum(
            rows[n, tirx.floordiv(y, j_rows), xx * sw + kx * dw, c, r].astype("int32")
            * weights[tirx.floormod(y, j_rows), kx, c, r].astype("int32"),
            axis=[kx, r],
        ),
        name=DEPTHWISE_DOT_BLOCK,
    )
    func = compute.reduction_primfunc([x, weights, out], shape.c, DEPTHWISE_DOT_BLOCK, biased)
    return func.with_attr("tcc.op_pattern", 4)


# ---------------------------------------------------------------------------------------------------- intrinsics
# the depthwise dot step per instruction set: (TensorIntrin name, the LLVM intrinsic); its lanes (channels per
# instruction) and codes' type are its dot kernel's (kernels.depthwise_rows_kernel)
DEPTHWISE_DOT = {
    "aarch64": ("tcc_dw_a64_sdot", "llvm.aarch64.neon.sdot"),
    "x86_64": ("tcc_dw_avx512_vnni", "llvm.x86.avx512.vpdpbusd.512"),
}


def depthwise_dot_intrin(arch: str) -> str:
    """The TensorIntrin of the depthwise dot step (`depthwise_rows_primfunc`), registered: L channels x 4
    interleaved rows of codes against their L x 4 weights, each channel's 4 products summed into its int32 lane:
    one AArch64 `sdot` (L = 4) or one AVX-512 `vpdpbusd` (L = 16) of two vectors."""
    name, llvm = DEPTHWISE_DOT[arch]
    kernel = depthwise_rows_kernel(arch)
    lanes, act = kernel.lanes, kernel.act_dtype
    if not registered(name):

        def update(A, B, C):
            return T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(llvm),
                C.vload([0], f"int32x{lanes}"),
                A.vload([0, 0], f"{act}x{4 * lanes}"),
                B.vload([0, 0], f"int8x{4 * lanes}"),
                dtype=f"int32x{lanes}",
            )

        impl = store_func(*lane_rows_operands(lanes, 4, act, "int8"), update)
        register(name, lane_rows_desc(lanes, 4, act, "int8"), impl)
    return name


# The interleave's byte order: output byte 4 c + r is row r's code of channel c
ROWS4_ORDER = [r * 16 + c for c in range(16) for r in range(4)]


def interleave_rows_intrin(dtype: str = "int8") -> str:
    """The TensorIntrin copying 4 rows of 16 codes (a row stride apart) into 16 x 4 interleaved per channel
    (`depthwise_rows_primfunc`'s windows on the padded copy, AArch64), registered: four 16-byte loads and one
    shuffle of the 64 bytes (one `st4`)."""
    name = f"tcc_interleave_rows4_{dtype}"
    if not registered(name):
        rows, interleaved = Operand((4, 16), dtype, strides=(None, 1)), Operand((16, 4), dtype)

        @T.macro
        def desc(S, D):
            for c, r in T.grid(16, 4):
                with T.sblock("copy"):
                    vc, vr = T.axis.remap("SS", [c, r])
                    D[vc, vr] = S[vr, vc]

        @T.macro
        def impl(S, D):
            D[T.int64(0), T.ramp(T.int64(0), T.int64(1), 64)] = T.Shuffle(
                [S.vload([T.int64(k), T.int64(0)], f"{dtype}x16") for k in range(4)], ROWS4_ORDER
            )

        register(name, copy_func(rows, interleaved, desc), copy_func(rows, interleaved, impl))
    return name


def gather_rows_ir(shifted: bool, vbmi: bool) -> tuple[str, str]:
    """The LLVM function (name, IR) behind `gather_rows_intrin`: `(dst, src, pitch, valid)` loads rows r = 0..3 of
    16 codes at src + r * pitch, a row whose bit of `valid` is clear as zeros without touching it (a masked
    `vmovdqu8 {z}`: the hardware suppresses faults on masked-out bytes), flips the sign bit where `shifted` (a
    shift by +-128 of 8-bit codes, which maps the padding's 0 to the shifted zero), interleaves the 64 bytes per
    channel and stores them at dst. With AVX-512 VBMI the interleave is one `vpermb` in inline assembly: LLVM turns
    a constant byte shuffle (and its own `vpermb` intrinsic with a constant index, which InstCombine makes one)
    into 8 unpacks and 3 inserts on 16-byte pieces, all on the shuffle port; without it, those unpacks."""
    name = "tcc_gather_rows4" + ("_shifted" if shifted else "") + ("_vbmi" if vbmi else "")
    order = ", ".join(f"i32 {i}" for i in ROWS4_ORDER)
    lines = [
        "declare <16 x i8> @llvm.masked.load.v16i8.p0(ptr, i32 immarg, <16 x i1>, <16 x i8>)",
        f"define i32 @{name}(ptr %dst, ptr %src, i64 %pitch, i32 %valid) #0 {{",
        "entry:",
    ]
    for r in range(4):
        lines += [
            f"  %bit{r} = and i32 %valid, {1 << r}",
            f"  %in{r} = icmp ne i32 %bit{r}, 0",
            f"  %one{r} = insertelement <16 x i1> poison, i1 %in{r}, i64 0",
            f"  %mask{r} = shufflevector <16 x i1> %one{r}, <16 x i1> poison, <16 x i32> zeroinitializer",
            f"  %at{r} = mul i64 %pitch, {r}",
            f"  %ptr{r} = getelementptr i8, ptr %src, i64 %at{r}",
            f"  %row{r} = call <16 x i8> @llvm.masked.load.v16i8.p0(ptr %ptr{r}, i32 1, <16 x i1> %mask{r},"
            " <16 x i8> zeroinitializer)",
        ]
    halves = ", ".join(f"i32 {i}" for i in range(32))
    lines += [
        f"  %rows01 = shufflevector <16 x i8> %row0, <16 x i8> %row1, <32 x i32> <{halves}>",
        f"  %rows23 = shufflevector <16 x i8> %row2, <16 x i8> %row3, <32 x i32> <{halves}>",
        "  %rows = shufflevector <32 x i8> %rows01, <32 x i8> %rows23, <64 x i32> <"
        + ", ".join(f"i32 {i}" for i in range(64))
        + ">",
    ]
    codes = "%rows"
    if shifted:
        lines.append("  %flipped = xor <64 x i8> %rows, <" + ", ".join(["i8 -128"] * 64) + ">")
        codes = "%flipped"
    if vbmi:
        lines.append(
            f'  %out = call <64 x i8> asm "vpermb $1, $2, $0", "=v,v,v"(<64 x i8> {codes}, <64 x i8> <'
            + ", ".join(f"i8 {i}" for i in ROWS4_ORDER)
            + ">)"
        )
    else:
        lines.append(f"  %out = shufflevector <64 x i8> {codes}, <64 x i8> poison, <64 x i32> <{order}>")
    lines += [
        "  store <64 x i8> %out, ptr %dst, align 1",
        "  ret i32 0",
        "}",
        "attributes #0 = { alwaysinline nounwind }",
        "",
    ]
    return name, "\n".join(lines)


def _rows_inside(source, destination, image: tuple[int, int, int], pads: tuple[int, int], rows: tuple[int, int]):
    """The bits of `gather_rows_intrin`'s rows inside the image (bit r: row r), from its buffers' offsets."""

    h, w, c = image
    pt, pl = pads
    width, channels = rows
    column = tirx.floormod(tirx.floordiv(destination, channels * 4), width) - pl
    channel = tirx.floormod(tirx.floordiv(destination, 4), channels)
    first = tirx.floormod(tirx.floordiv(source - channel - column * c, w * c) + pt, h) - pt
    flag = lambda condition: tirx.Cast("int32", condition)  # noqa: E731
    inside = [flag(tirx.all(-r <= first, first < h - r)) * (1 << r) for r in range(4)]
    return flag(tirx.all(column >= 0, column < w)) * (inside[0] + inside[1] + inside[2] + inside[3])


def gather_rows_intrin(
    image: tuple[int, int, int], pads: tuple[int, int], rows: tuple[int, int], src: str, vbmi: bool
) -> tuple[str, str]:
    """The TensorIntrin of a window's interleave read straight from the input (`depthwise_rows_primfunc`,
    direct): 4 rows of 16 codes of type `src` from the input [n, h, w, c] (`image`: (h, w, c); the conv may read
    only its first channels, as a dense block's layers do of their concat), shifted to the u8 codes of x86's
    depthwise kernel (kernels.depthwise_rows_kernel, its `act_offset`), into 16 x 4 interleaved per channel in the rows
    [.., width, channels, 4] (`rows`: (width, channels)); rows and columns outside the image (top and left `pads`)
    as the shifted zero. Returns its name, registered, and the IR (`gather_rows_ir`) that the loop must import
    (`pragma_import_llvm`).
    A TensorIntrin sees only its two buffers, so the implementation finds the window from their offsets: the
    destination's is (column x channels + channel) x 4 in the rows (whole or one window's), which gives the padded
    column and the first channel; the source's, ((image x h + row) x w + column) x c + channel, then
    gives the window's first row (in [-pt, h - pt): `reads_rows_directly`). TVM's simplifier reduces both to
    the loops' indices, so the bounds tests are on those (and LLVM hoists them)."""
    h, w, c = image
    pt, pl = pads
    kernel = depthwise_rows_kernel("x86_64")
    act, shift = kernel.act_dtype, kernel.act_offset(src)
    function, ir = gather_rows_ir(shift != 0, vbmi)
    name = f"tcc_gather_rows4_{h}x{w}x{c}_{pt}_{pl}_{rows[0]}x{rows[1]}_{src}_{act}" + ("_vbmi" if vbmi else "")
    if not registered(name):
        source, interleaved = Operand((4, 1, 16), src, strides=(w * c, c, 1)), Operand((16, 4), act)

        @T.macro
        def desc(S, D):
            for k, r in T.grid(16, 4):
                with T.sblock("copy"):
                    vk, vr = T.axis.remap("SS", [k, r])
                    if shift == 0:
                        D[vk, vr] = S[vr, 0, vk]
                    else:
                        D[vk, vr] = T.Cast(act, T.Cast("int16", S[vr, 0, vk]) + T.int16(shift))

        @T.macro
        def impl(S, D):
            valid = T.meta_var(_rows_inside(S.elem_offset, D.elem_offset, image, pads, rows))
            T.evaluate(T.call_extern("int32", function, D.access_ptr("w"), S.access_ptr("r"), T.int64(w * c), valid))

        register(name, copy_func(source, interleaved, desc), copy_func(source, interleaved, impl))
    return name, ir


# ---------------------------------------------------------------------------------------------------- schedule
# The dot depthwise tile (Int8DepthwiseDot): output rows of a window x pixels x channels, the best measured:
# AArch64 4 / J pixels x 4 `sdot` lanes of 4 (docs/notes/aarch64-dot-kernels.md), x86 8 / J pixels x 2 zmm vectors
# (docs/notes/x86-int8-zen5.md)
DEPTHWISE_DOT_PIXELS = {"aarch64": 4, "x86_64": 8}


DEPTHWISE_DOT_CHANNELS = {"aarch64": 16, "x86_64": 32}


class DirectRowsUnscheduled(Exception):
    """A depthwise conv whose windows read the input itself (`depthwise_rows_primfunc`, direct) that
    Int8DepthwiseDot could not schedule: those windows read past the input's edges, which only their interleave's
    masked loads (`gather_rows_intrin`) make right, so no generic schedule may take them instead (Rule
    falls back to one on TVM's RuntimeError and ValueError)."""


class Int8DepthwiseDot(Rule):
    """The depthwise conv on AArch64's `sdot` or AVX-512's `vpdpbusd` (`depthwise_rows_primfunc`): a window's
    interleaved rows written just before the outputs that read them (x86: read straight from the input; AArch64:
    from its padded copy); the conv in register tiles of the window's output rows x pixels x channels (AArch64: 4
    `sdot` lanes of 4 channels; x86: zmm vectors of 16), accumulated over the kernel's columns, the epilogue fused
    into the write-back."""

    def schedule(self, sch, blocks, simd) -> bool:
        names = [sch.get(b).name_hint for b in blocks]
        if names[:2] == [DEPTHWISE_ROWS_BLOCK, DEPTHWISE_DOT_BLOCK]:
            try:
                return self._schedule(sch, names, 1, simd)
            except (RuntimeError, ValueError) as err:
                raise DirectRowsUnscheduled(f"{names[1]}: {err}") from err
        if names[:3] != [DEPTHWISE_PAD_BLOCK, DEPTHWISE_ROWS_BLOCK, DEPTHWISE_DOT_BLOCK]:
            return False
        # the padded copy: 16 codes a vector, its loops kept apart (fused, each vector's bounds test recomputed the
        # pixel from the fused index: two divisions)
        pad = sch.get_sblock(DEPTHWISE_PAD_BLOCK)
        n, x, *_, c = sch.get_loops(pad)
        sch.vectorize(sch.split(c, [None, 16])[1])
        parallelize(sch, [n, x])
        return self._schedule(sch, names, 2, simd)

    def _schedule(self, sch, names, conv_at, simd) -> bool:
        """The rows and the conv, the conv's block at names[conv_at] (1: the windows read the input itself)."""
        rows = sch.get_sblock(DEPTHWISE_ROWS_BLOCK)
        arch = "x86_64" if is_x86(self.target) else "aarch64"
        lanes = depthwise_rows_kernel(arch).lanes
        channels = block_domain(sch, rows)[3]
        tile = next(w for w in (DEPTHWISE_DOT_CHANNELS[arch], 16) if channels % w == 0)  # 16k (lowering)
        epilogue_lanes = simd.lanes if arch == "x86_64" else neon_epilogue_lanes(tile)
        step = depthwise_dot_intrin(arch)
        window_tiles(
            sch,
            names,
            conv_at,
            rows,
            WindowTile(DEPTHWISE_DOT_BLOCK, lanes, tile, DEPTHWISE_DOT_PIXELS[arch], epilogue_lanes, step),
        )
        window, _, c_rows, _ = sch.get_loops(rows)[-4:]  # (window, x, c, r) under the fused loop
        group = sch.split(c_rows, [None, 16])[1]
        if conv_at == 1:
            source = sch.get(rows).reads[0].source
            h, w, c = (int(d) for d in source.shape[1:])
            pt, pl = (int(p) for p in str(sch.get(rows).annotations[ROWS_PADS_ATTR]).split(","))
            width, channels = (int(d) for d in sch.get(rows).writes[0].source.shape[2:4])
            intrin, ir = gather_rows_intrin(
                (h, w, c), (pt, pl), (width, channels), str(source.dtype), target_has(self.target, "avx512vbmi")
            )
            sch.tensorize(group, intrin)
            sch.annotate(window, microkernel.IMPORT_PRAGMA, ir)
        else:
            sch.tensorize(group, interleave_rows_intrin(str(sch.get(rows).writes[0].source.dtype)))
        return True


# ---------------------------------------------------------------------------------------------------- the variant
def match(layer: Layer) -> Match | None:
    if layer.kernel is None or not layer.kernel.depthwise_rows:
        return None
    shape = layer.conv_shape()
    if shape is None or not layer.depthwise(shape) or shape.c % 16 or shape.kh < 2 or rows_per_window(shape) == 0:
        return None
    direct = layer.x86 and reads_rows_directly(shape)
    instruction = layer.kernel.instruction
    return Match(
        kernel=DEPTHWISE_DOT[layer.kernel.arch][0],
        why=f"depthwise {shape.kh} x {shape.kw} on {shape.c} channels: 4 rows a lane for `{instruction}`, "
        f"{rows_per_window(shape)} output rows a window"
        + (", read straight from the input" if direct else ", from a padded copy"),
        shape=shape,
    )


def emit(low, n: QNode, x: _Codes, m: Match) -> list:
    """The conv as one call of `depthwise_rows_primfunc` on the codes shifted to the instruction's type (the bias
    takes the shift back), requantized in its kernel."""
    shape = m.shape
    assert shape is not None and n.weight is not None
    kernel = low.kernel
    offset = kernel.act_offset(x.expr.ty.dtype)
    bias = low.bias(n, compute.bias_correction(n.weight, offset))
    func = depthwise_rows_primfunc(
        shape,
        offset,
        kernel.act_dtype,
        bias is not None,
        direct=kernel.arch == "x86_64" and reads_rows_directly(shape),
    )
    weights = low.const(depthwise_rows_weights(n.weight, shape), "int8")
    return low.depthwise_call(n, x, shape, func, "tcc_dw_dot", weights, bias)


ABOUT = "a depthwise conv, 4 rows of a channel in one lane of `sdot` (AArch64) / `vpdpbusd` (AVX-512 VNNI)"
COMPUTE = (depthwise_rows_primfunc, depthwise_rows_weights)
INTRINSICS = (depthwise_dot_intrin, interleave_rows_intrin, gather_rows_intrin)
VARIANT = Variant("depthwise_rows", ("conv",), match, emit, ABOUT, COMPUTE, INTRINSICS, Int8DepthwiseDot)
