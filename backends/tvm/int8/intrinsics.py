"""The TensorIntrins of the INT8 schedules, one per instruction set: each dot-product kernel's step
(`ensure_registered`: its description `_desc` and its implementation by LLVM intrinsics, STEPS -- x86
`vpmaddwd` / `vpdpbusd`, ARMv7 `vmull.s8` / `vpadal.s16`, AArch64 `sdot` or `smull` / `sadalp`), the ARM depthwise
tap (`depthwise_intrin`), the depthwise steps on 4 rows a lane (`depthwise_dot_intrin`) or on int16 pairs of rows
(`depthwise_madd_intrin`) with their interleaves, and the sum of the dot form's partial lanes (`partial_sum_intrin`);
each registered once per process."""

from __future__ import annotations

from .kernels import DOT_TILE_SCOPE, TILE_SCOPE, DotKernel, depthwise_rows_kernel


def _desc(k: DotKernel):
    """C[lanes] += sum over (pairs, group) of A[...] * B[..., lane, ...], as the conv's step computes it."""
    from tvm.script import tirx as T

    if k.form == "dot":

        @T.prim_func(s_tir=True)
        def desc_dot(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (16,), "int8", offset_factor=1)
            B = T.match_buffer(b, (16,), "int8", offset_factor=1)
            C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope=DOT_TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:4], A[0:16], B[0:16])
                T.writes(C[0:4])
                for lane, hh, jj in T.grid(4, 2, 2):
                    with T.sblock("update"):
                        vl, vh, vj = T.axis.remap("SRR", [lane, hh, jj])
                        C[vl] = C[vl] + T.Cast("int32", A[vh * 8 + vl * 2 + vj]) * T.Cast(
                            "int32", B[vh * 8 + vl * 2 + vj]
                        )

        return desc_dot

    L, J, H = k.lanes, k.group, k.pairs
    a_t, w_t = k.act_dtype, k.weight_dtype
    if H == 1:

        @T.prim_func(s_tir=True)
        def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (J,), a_t, offset_factor=1)
            B = T.match_buffer(b, (L, J), w_t, offset_factor=1)
            C = T.match_buffer(c, (L,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:L], A[0:J], B[0:L, 0:J])
                T.writes(C[0:L])
                for i, kk in T.grid(L, J):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, kk])
                        C[vi] = C[vi] + T.Cast("int32", A[vk]) * T.Cast("int32", B[vi, vk])

        return desc

    @T.prim_func(s_tir=True)
    def desc_pairs(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (H * J,), a_t, offset_factor=1)
        B = T.match_buffer(b, (H, L, J), w_t, offset_factor=1)
        C = T.match_buffer(c, (L,), "int32", offset_factor=1, scope=TILE_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:L], A[0 : H * J], B[0:H, 0:L, 0:J])
            T.writes(C[0:L])
            for hh, i, kk in T.grid(H, L, J):
                with T.sblock("update"):
                    vi, vh, vk = T.axis.remap("SRR", [i, hh, kk])
                    C[vi] = C[vi] + T.Cast("int32", A[vh * J + vk]) * T.Cast("int32", B[vh, vi, vk])

    return desc_pairs


def _madd_step(k: DotKernel, values: bool):
    """x86 `vpmaddwd`: an int16 pair broadcast to every lane against the lanes' pairs, summed into int32, added."""
    from tvm.script import tirx as T

    L, J = k.lanes, k.group
    madd = {4: "llvm.x86.sse2.pmadd.wd", 8: "llvm.x86.avx2.pmadd.wd", 16: "llvm.x86.avx512.pmaddw.d.512"}[L]

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (J,), "int16", offset_factor=1)
        B = T.match_buffer(b, (L, J), "int16", offset_factor=1)
        C = T.match_buffer(c, (L,), "int32", offset_factor=1, scope=TILE_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:L], A[0:J], B[0:L, 0:J])
            T.writes(C[0:L])
            pair = T.meta_var(T.reinterpret(A.vload([0], "int16x2"), dtype="int32"))
            pairs = T.meta_var(T.reinterpret(T.broadcast(pair, L), dtype=f"int16x{2 * L}"))
            C[T.ramp(0, 1, L)] = C.vload([0], f"int32x{L}") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(madd), pairs, B.vload([0, 0], f"int16x{2 * L}"), dtype=f"int32x{L}"
            )

    return impl


def _dpbusd_step(k: DotKernel, values: bool):
    """x86 VNNI `vpdpbusd`: a u8 quad broadcast to every lane against the lanes' s8 quads, added into int32."""
    from tvm.script import tirx as T

    L, J = k.lanes, k.group
    dpbusd = f"llvm.x86.avx512.vpdpbusd.{32 * L}"  # zmm, ymm or xmm: 16, 8 or 4 int32 lanes

    @T.prim_func(s_tir=True)
    def impl_vnni(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (J,), "uint8", offset_factor=1)
        B = T.match_buffer(b, (L, J), "int8", offset_factor=1)
        C = T.match_buffer(c, (L,), "int32", offset_factor=1, scope=TILE_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:L], A[0:J], B[0:L, 0:J])
            T.writes(C[0:L])
            quad = T.meta_var(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"))
            # LLVM 22's vpdpbusd takes byte vectors (TVM's own dot_16x4_vnni still passes i32 ones)
            C[T.ramp(0, 1, L)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(dpbusd),
                C.vload([0], f"int32x{L}"),
                T.reinterpret(T.broadcast(quad, L), dtype=f"uint8x{4 * L}"),
                B.vload([0, 0], f"int8x{4 * L}"),
                dtype=f"int32x{L}",
            )

    return impl_vnni


def _dot16_step(k: DotKernel, values: bool):
    """ARM's dot form: 16 codes x 16 weights, vmull.s8 (0..7), vmlal.s8 (8..15), vpadal.s16 into 4 lanes (the safe
    twin widens each half on its own). values: the 16-code operands as values (`ensure_registered`), else local
    buffers."""
    from tvm.script import tirx as T

    operand = T.meta_var if values else (lambda v: v)  # TVMScript: an assigned expression is a local buffer
    mull, padal = _widening(k.arch)  # AArch64: smull, smlal2, sadalp

    @T.prim_func(s_tir=True)
    def impl_dot(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (16,), "int8", offset_factor=1)
        B = T.match_buffer(b, (16,), "int8", offset_factor=1)
        C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope=DOT_TILE_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:4], A[0:16], B[0:16])
            T.writes(C[0:4])
            va = operand(A.vload([0], "int8x16"))
            vb = operand(B.vload([0], "int8x16"))
            C[T.ramp(0, 1, 4)] = padal(
                C.vload([0], "int32x4"),
                mull(T.vectorlow(va, dtype="int8x8"), T.vectorlow(vb, dtype="int8x8"))
                + mull(T.vectorhigh(va, dtype="int8x8"), T.vectorhigh(vb, dtype="int8x8")),
            )

    @T.prim_func(s_tir=True)
    def impl_dot_pairs(a: T.handle, b: T.handle, c: T.handle) -> None:  # each half widened on its own
        A = T.match_buffer(a, (16,), "int8", offset_factor=1)
        B = T.match_buffer(b, (16,), "int8", offset_factor=1)
        C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope=DOT_TILE_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:4], A[0:16], B[0:16])
            T.writes(C[0:4])
            va = operand(A.vload([0], "int8x16"))
            vb = operand(B.vload([0], "int8x16"))
            C[T.ramp(0, 1, 4)] = padal(
                padal(C.vload([0], "int32x4"), mull(T.vectorlow(va, dtype="int8x8"), T.vectorlow(vb, dtype="int8x8"))),
                mull(T.vectorhigh(va, dtype="int8x8"), T.vectorhigh(vb, dtype="int8x8")),
            )

    return impl_dot_pairs if k.safe else impl_dot


def _sdot_step(k: DotKernel, values: bool):
    """AArch64 `sdot`: an s8 quad broadcast to 4 lanes against 4 channels x 4 codes, one instruction."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl_sdot(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "int8", offset_factor=1)
        B = T.match_buffer(b, (4, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope=TILE_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:4, 0:4])
            T.writes(C[0:4])
            quad = T.meta_var(T.reinterpret(A.vload([0], "int8x4"), dtype="int32"))
            C[T.ramp(0, 1, 4)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.sdot"),
                C.vload([0], "int32x4"),
                T.reinterpret(T.broadcast(quad, 4), dtype="int8x16"),
                B.vload([0, 0], "int8x16"),
                dtype="int32x4",
            )

    return impl_sdot


def _mull_padal_step(k: DotKernel, values: bool):
    """ARM's broadcast form: products of an s8 pair broadcast to 4 lanes against 4 channels x 2 codes, 2 per int16
    lane (vmull.s8, then vmlal.s8 for the second pair; the safe twin: one), pairwise-added into the int32
    accumulators (vpadal.s16); AArch64 the same in smull / smlal / sadalp (LLVM has no sadalp intrinsic: saddlp plus
    the add selects it)."""
    from tvm.script import tirx as T

    L, J, H = k.lanes, k.group, k.pairs
    mull, padal = _widening(k.arch)
    if H == 1:

        @T.prim_func(s_tir=True)
        def impl_pairs(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (J,), "int8", offset_factor=1)
            B = T.match_buffer(b, (L, J), "int8", offset_factor=1)
            C = T.match_buffer(c, (L,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:L], A[0:J], B[0:L, 0:J])
                T.writes(C[0:L])
                a01 = T.meta_var(
                    T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int8x2"), dtype="int16"), 4), dtype="int8x8")
                )
                C[T.ramp(0, 1, 4)] = padal(C.vload([0], "int32x4"), mull(a01, B.vload([0, 0], "int8x8")))

        return impl_pairs

    @T.prim_func(s_tir=True)
    def impl_neon(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "int8", offset_factor=1)
        B = T.match_buffer(b, (2, 4, 2), "int8", offset_factor=1)
        C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope=TILE_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:2, 0:4, 0:2])
            T.writes(C[0:4])
            a01 = T.meta_var(
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int8x2"), dtype="int16"), 4), dtype="int8x8")
            )
            a23 = T.meta_var(
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([2], "int8x2"), dtype="int16"), 4), dtype="int8x8")
            )
            b = T.meta_var(B.vload([0, 0, 0], "int8x16"))  # one load; its halves: the two d registers of a q
            prod = mull(a01, T.vectorlow(b, dtype="int8x8")) + mull(a23, T.vectorhigh(b, dtype="int8x8"))
            C[T.ramp(0, 1, 4)] = padal(C.vload([0], "int32x4"), prod)

    return impl_neon


# each kernel's step, by its instruction (DotKernel.instruction): (kernel, values) -> the TensorIntrin's
# implementation
STEPS = {
    "vpmaddwd": _madd_step,
    "vpdpbusd": _dpbusd_step,
    "dot16": _dot16_step,
    "sdot": _sdot_step,
    "mull+padal": _mull_padal_step,
}


def _widening(arch: str):
    """(mull, padal) of the ARM broadcast kernels: int8x8 x int8x8 -> int16x8, and acc int32x4 + the pairwise
    sums of an int16x8; ARMv7's intrinsics or AArch64's."""
    from tvm import tirx

    def call(name, *args, dtype):
        return tirx.call_llvm_pure_intrin(dtype, name, *args)

    if arch == "armv7":
        return (
            lambda a, b: call("llvm.arm.neon.vmulls", a, b, dtype="int16x8"),
            lambda acc, p: call("llvm.arm.neon.vpadals", acc, p, dtype="int32x4"),
        )
    return (
        lambda a, b: call("llvm.aarch64.neon.smull", a, b, dtype="int16x8"),
        lambda acc, p: acc + call("llvm.aarch64.neon.saddlp", p, dtype="int32x4"),
    )


# C[8] += A[8] * B[8] on int16 codes: two vmlal.s16 (ARMv7), two smlal (AArch64)
DEPTHWISE_NEON = {
    "arm": ("tcc_dw_neon_s16", "llvm.arm.neon.vmulls"),
    "aarch64": ("tcc_dw_a64_s16", "llvm.aarch64.neon.smull"),
}


def depthwise_intrin(target) -> str | None:
    """The TensorIntrin of a depthwise tap (8 channels) for a target, registered; None: LLVM's vectorizer. On
    ARMv7 LLVM hoisted the widened weights out of the pixel loop (int32, spilled) and multiplied 32-bit lanes;
    the intrinsic keeps the widening multiply-accumulate. On AArch64 LLVM 22 failed on the vectorized int16 conv
    ("Do not know how to split the result of this operator")."""
    triple = str(target.attrs.get("mtriple", ""))
    arch = next((a for a in DEPTHWISE_NEON if triple.startswith(a)), None)
    if arch is None:
        return None
    name, mull = DEPTHWISE_NEON[arch]
    if name not in _registered:
        from tvm.s_tir import TensorIntrin
        from tvm.script import tirx as T

        @T.prim_func(s_tir=True)
        def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (8,), "int16", offset_factor=1)
            B = T.match_buffer(b, (8,), "int16", offset_factor=1)
            C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:8], A[0:8], B[0:8])
                T.writes(C[0:8])
                for i in T.serial(8):
                    with T.sblock("update"):
                        vi = T.axis.remap("S", [i])
                        C[vi] = C[vi] + T.Cast("int32", A[vi]) * T.Cast("int32", B[vi])

        @T.prim_func(s_tir=True)
        def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (8,), "int16", offset_factor=1)
            B = T.match_buffer(b, (8,), "int16", offset_factor=1)
            C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:8], A[0:8], B[0:8])
                T.writes(C[0:8])
                a = T.meta_var(A.vload([0], "int16x8"))  # one q load each; the halves are its d registers
                b = T.meta_var(B.vload([0], "int16x8"))
                C[T.ramp(0, 1, 4)] = C.vload([0], "int32x4") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(mull),
                    T.vectorlow(a, dtype="int16x4"),
                    T.vectorlow(b, dtype="int16x4"),
                    dtype="int32x4",
                )
                C[T.ramp(4, 1, 4)] = C.vload([4], "int32x4") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(mull),
                    T.vectorhigh(a, dtype="int16x4"),
                    T.vectorhigh(b, dtype="int16x4"),
                    dtype="int32x4",
                )

        TensorIntrin.register(name, desc, impl, override=True)
        _registered.add(name)
    return name


def _lane_rows_desc(lanes: int, rows: int, act: str, weight: str):
    """A depthwise step's description: C[lanes] += sum over r < rows of A[lane, r] * B[lane, r] (each channel's
    rows of one kernel column against their weights, summed into its int32 lane)."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (lanes, rows), act, offset_factor=1)
        B = T.match_buffer(b, (lanes, rows), weight, offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope=TILE_SCOPE)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:lanes, 0:rows], B[0:lanes, 0:rows])
            T.writes(C[0:lanes])
            for lane, r in T.grid(lanes, rows):
                with T.sblock("update"):
                    vl, vr = T.axis.remap("SR", [lane, r])
                    C[vl] = C[vl] + T.Cast("int32", A[vl, vr]) * T.Cast("int32", B[vl, vr])

    return desc


# the depthwise dot step per instruction set: (TensorIntrin name, the LLVM intrinsic); its lanes (channels per
# instruction) and codes' type are its dot kernel's (kernels.depthwise_rows_kernel)
DEPTHWISE_DOT = {
    "aarch64": ("tcc_dw_a64_sdot", "llvm.aarch64.neon.sdot"),
    "x86_64": ("tcc_dw_avx512_vnni", "llvm.x86.avx512.vpdpbusd.512"),
}


def depthwise_dot_intrin(arch: str) -> str:
    """The TensorIntrin of the depthwise dot step (compute.depthwise_rows_primfunc), registered: L channels x 4
    interleaved rows of codes against their L x 4 weights, each channel's 4 products summed into its int32 lane:
    one AArch64 `sdot` (L = 4) or one AVX-512 `vpdpbusd` (L = 16) of two vectors."""
    name, llvm = DEPTHWISE_DOT[arch]
    kernel = depthwise_rows_kernel(arch)
    lanes, act = kernel.lanes, kernel.act_dtype
    if name not in _registered:
        from tvm.s_tir import TensorIntrin
        from tvm.script import tirx as T

        @T.prim_func(s_tir=True)
        def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (lanes, 4), act, offset_factor=1)
            B = T.match_buffer(b, (lanes, 4), "int8", offset_factor=1)
            C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:lanes], A[0:lanes, 0:4], B[0:lanes, 0:4])
                T.writes(C[0:lanes])
                C[T.ramp(0, 1, lanes)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(llvm),
                    C.vload([0], f"int32x{lanes}"),
                    A.vload([0, 0], f"{act}x{4 * lanes}"),
                    B.vload([0, 0], f"int8x{4 * lanes}"),
                    dtype=f"int32x{lanes}",
                )

        TensorIntrin.register(name, _lane_rows_desc(lanes, 4, act, "int8"), impl, override=True)
        _registered.add(name)
    return name


# x86 without VNNI: the depthwise step on int16 pairs of rows (compute.depthwise_pairs_primfunc), by its lanes
DEPTHWISE_MADD = {8: "llvm.x86.avx2.pmadd.wd", 16: "llvm.x86.avx512.pmaddw.d.512"}


def depthwise_madd_intrin(lanes: int) -> str:
    """The TensorIntrin of the depthwise pairs step, registered: L channels x 2 rows of int16 codes against their
    L x 2 int16 weights, each channel's 2 products summed into its int32 lane: one `vpmaddwd` (ymm: L = 8, zmm: 16)
    and one `vpaddd`."""
    name = f"tcc_dw_madd{lanes}"
    if name not in _registered:
        from tvm.s_tir import TensorIntrin
        from tvm.script import tirx as T

        madd, half = DEPTHWISE_MADD[lanes], f"int16x{2 * lanes}"

        @T.prim_func(s_tir=True)
        def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (lanes, 2), "int16", offset_factor=1)
            B = T.match_buffer(b, (lanes, 2), "int16", offset_factor=1)
            C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(C[0:lanes], A[0:lanes, 0:2], B[0:lanes, 0:2])
                T.writes(C[0:lanes])
                C[T.ramp(0, 1, lanes)] = C.vload([0], f"int32x{lanes}") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(madd),
                    A.vload([0, 0], half),
                    B.vload([0, 0], half),
                    dtype=f"int32x{lanes}",
                )

        TensorIntrin.register(name, _lane_rows_desc(lanes, 2, "int16", "int16"), impl, override=True)
        _registered.add(name)
    return name


def interleave_pairs_intrin(dtype: str, lanes: int) -> str:
    """The TensorIntrin widening 2 rows of L codes of `dtype` (a row stride apart) to int16 and interleaving them
    per channel, L x 2 (compute.depthwise_pairs_primfunc's windows), registered: two loads, one shuffle, one
    widening."""
    name = f"tcc_interleave_pairs{lanes}_{dtype}"
    if name not in _registered:
        from tvm.s_tir import TensorIntrin
        from tvm.script import tirx as T

        order = [r * lanes + c for c in range(lanes) for r in range(2)]

        @T.prim_func(s_tir=True)
        def desc(s: T.handle, d: T.handle) -> None:
            S = T.match_buffer(s, (2, lanes), dtype, offset_factor=1, strides=[T.int64(), 1])
            D = T.match_buffer(d, (lanes, 2), "int16", offset_factor=1)
            with T.sblock("root"):
                T.reads(S[0:2, 0:lanes])
                T.writes(D[0:lanes, 0:2])
                for c, r in T.grid(lanes, 2):
                    with T.sblock("copy"):
                        vc, vr = T.axis.remap("SS", [c, r])
                        D[vc, vr] = T.Cast("int16", S[vr, vc])

        @T.prim_func(s_tir=True)
        def impl(s: T.handle, d: T.handle) -> None:
            S = T.match_buffer(s, (2, lanes), dtype, offset_factor=1, strides=[T.int64(), 1])
            D = T.match_buffer(d, (lanes, 2), "int16", offset_factor=1)
            with T.sblock("root"):
                T.reads(S[0:2, 0:lanes])
                T.writes(D[0:lanes, 0:2])
                D[T.int64(0), T.ramp(T.int64(0), T.int64(1), 2 * lanes)] = T.Cast(
                    f"int16x{2 * lanes}",
                    T.Shuffle([S.vload([T.int64(r), T.int64(0)], f"{dtype}x{lanes}") for r in range(2)], order),
                )

        TensorIntrin.register(name, desc, impl, override=True)
        _registered.add(name)
    return name


# The interleave's byte order: output byte 4 c + r is row r's code of channel c
ROWS4_ORDER = [r * 16 + c for c in range(16) for r in range(4)]


def interleave_rows_intrin(dtype: str = "int8") -> str:
    """The TensorIntrin copying 4 rows of 16 codes (a row stride apart) into 16 x 4 interleaved per channel
    (compute.depthwise_rows_primfunc's windows on the padded copy, AArch64), registered: four 16-byte loads and one
    shuffle of the 64 bytes (one `st4`)."""
    name = f"tcc_interleave_rows4_{dtype}"
    if name not in _registered:
        from tvm.s_tir import TensorIntrin
        from tvm.script import tirx as T

        @T.prim_func(s_tir=True)
        def desc(s: T.handle, d: T.handle) -> None:
            S = T.match_buffer(s, (4, 16), dtype, offset_factor=1, strides=[T.int64(), 1])
            D = T.match_buffer(d, (16, 4), dtype, offset_factor=1)
            with T.sblock("root"):
                T.reads(S[0:4, 0:16])
                T.writes(D[0:16, 0:4])
                for c, r in T.grid(16, 4):
                    with T.sblock("copy"):
                        vc, vr = T.axis.remap("SS", [c, r])
                        D[vc, vr] = S[vr, vc]

        @T.prim_func(s_tir=True)
        def impl(s: T.handle, d: T.handle) -> None:
            S = T.match_buffer(s, (4, 16), dtype, offset_factor=1, strides=[T.int64(), 1])
            D = T.match_buffer(d, (16, 4), dtype, offset_factor=1)
            with T.sblock("root"):
                T.reads(S[0:4, 0:16])
                T.writes(D[0:16, 0:4])
                D[T.int64(0), T.ramp(T.int64(0), T.int64(1), 64)] = T.Shuffle(
                    [S.vload([T.int64(k), T.int64(0)], f"{dtype}x16") for k in range(4)], ROWS4_ORDER
                )

        TensorIntrin.register(name, desc, impl, override=True)
        _registered.add(name)
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
    from tvm import tirx

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
    """The TensorIntrin of a window's interleave read straight from the input (compute.depthwise_rows_primfunc,
    direct): 4 rows of 16 codes of type `src` from the input [n, h, w, c] (`image`: (h, w, c); the conv may read
    only its first channels, as a dense block's layers do of their concat), shifted to the u8 codes of x86's
    depthwise kernel (kernels.depthwise_rows_kernel, its `act_offset`), into 16 x 4 interleaved per channel in the rows
    [.., width, channels, 4] (`rows`: (width, channels)); rows and columns outside the image (top and left `pads`)
    as the shifted zero. Returns its name, registered, and the IR (`gather_rows_ir`) that the loop must import
    (`pragma_import_llvm`).
    A TensorIntrin sees only its two buffers, so the implementation finds the window from their offsets: the
    destination's is (column x channels + channel) x 4 in the rows (whole or one window's), which gives the padded
    column and the first channel; the source's, ((image x h + row) x w + column) x c + channel, then
    gives the window's first row (in [-pt, h - pt): compute.reads_rows_directly). TVM's simplifier reduces both to
    the loops' indices, so the bounds tests are on those (and LLVM hoists them)."""
    h, w, c = image
    pt, pl = pads
    kernel = depthwise_rows_kernel("x86_64")
    act, shift = kernel.act_dtype, kernel.act_offset(src)
    function, ir = gather_rows_ir(shift != 0, vbmi)
    name = f"tcc_gather_rows4_{h}x{w}x{c}_{pt}_{pl}_{rows[0]}x{rows[1]}_{src}_{act}" + ("_vbmi" if vbmi else "")
    if name not in _registered:
        from tvm.s_tir import TensorIntrin
        from tvm.script import tirx as T

        @T.prim_func(s_tir=True)
        def desc(s: T.handle, d: T.handle) -> None:
            S = T.match_buffer(s, (4, 1, 16), src, offset_factor=1, strides=[w * c, c, 1])
            D = T.match_buffer(d, (16, 4), act, offset_factor=1)
            with T.sblock("root"):
                T.reads(S[0:4, 0:1, 0:16])
                T.writes(D[0:16, 0:4])
                for k, r in T.grid(16, 4):
                    with T.sblock("copy"):
                        vk, vr = T.axis.remap("SS", [k, r])
                        if shift == 0:
                            D[vk, vr] = S[vr, 0, vk]
                        else:
                            D[vk, vr] = T.Cast(act, T.Cast("int16", S[vr, 0, vk]) + T.int16(shift))

        @T.prim_func(s_tir=True)
        def impl(s: T.handle, d: T.handle) -> None:
            S = T.match_buffer(s, (4, 1, 16), src, offset_factor=1, strides=[w * c, c, 1])
            D = T.match_buffer(d, (16, 4), act, offset_factor=1)
            with T.sblock("root"):
                T.reads(S[0:4, 0:1, 0:16])
                T.writes(D[0:16, 0:4])
                valid = T.meta_var(_rows_inside(S.elem_offset, D.elem_offset, image, pads, rows))
                T.evaluate(
                    T.call_extern("int32", function, D.access_ptr("w"), S.access_ptr("r"), T.int64(w * c), valid)
                )

        TensorIntrin.register(name, desc, impl, override=True)
        _registered.add(name)
    return name, ir


PARTIAL_SUM = {
    "armv7": "tcc_dot_neon_sum4",  # 4 channels' 4 partial lanes summed: 6 vpadd.i32
    "aarch64": "tcc_dot_a64_sum4",
}  # 3 addp of q registers


def partial_sum_intrin(arch: str = "armv7") -> str:
    """The TensorIntrin summing the dot form's partial lanes of 4 output channels into one vector (registered);
    LLVM's own reduction of a [4, 4] tile transposed it element by element (vtrn / vext / vorr)."""
    name = PARTIAL_SUM[arch]
    if name not in _registered:
        from tvm.s_tir import TensorIntrin
        from tvm.script import tirx as T

        @T.prim_func(s_tir=True)
        def desc(p: T.handle, o: T.handle) -> None:
            P = T.match_buffer(p, (4, 4), "int32", offset_factor=1, scope=DOT_TILE_SCOPE)
            O = T.match_buffer(o, (4,), "int32", offset_factor=1, scope=TILE_SCOPE)
            with T.sblock("root"):
                T.reads(P[0:4, 0:4])
                T.writes(O[0:4])
                for i in T.serial(4):
                    with T.sblock("sum"):
                        vi = T.axis.remap("S", [i])
                        O[vi] = P[vi, 0] + P[vi, 1] + P[vi, 2] + P[vi, 3]

        TensorIntrin.register(
            name, desc, _partial_sum_a64() if arch == "aarch64" else _partial_sum_neon(), override=True
        )
        _registered.add(name)
    return name


def _partial_sum_neon():
    """ARMv7: vpadd of each channel's two halves, then of two channels' results."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl(p: T.handle, o: T.handle) -> None:
        P = T.match_buffer(p, (4, 4), "int32", offset_factor=1, scope=DOT_TILE_SCOPE)
        O = T.match_buffer(o, (4,), "int32", offset_factor=1, scope=TILE_SCOPE)
        with T.sblock("root"):
            T.reads(P[0:4, 0:4])
            T.writes(O[0:4])
            p0 = T.meta_var(P.vload([0, 0], "int32x4"))
            p1 = T.meta_var(P.vload([1, 0], "int32x4"))
            p2 = T.meta_var(P.vload([2, 0], "int32x4"))
            p3 = T.meta_var(P.vload([3, 0], "int32x4"))
            O[T.ramp(0, 1, 2)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadd"),
                T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadd"),
                    T.vectorlow(p0, dtype="int32x2"),
                    T.vectorhigh(p0, dtype="int32x2"),
                    dtype="int32x2",
                ),
                T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadd"),
                    T.vectorlow(p1, dtype="int32x2"),
                    T.vectorhigh(p1, dtype="int32x2"),
                    dtype="int32x2",
                ),
                dtype="int32x2",
            )
            O[T.ramp(2, 1, 2)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadd"),
                T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadd"),
                    T.vectorlow(p2, dtype="int32x2"),
                    T.vectorhigh(p2, dtype="int32x2"),
                    dtype="int32x2",
                ),
                T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadd"),
                    T.vectorlow(p3, dtype="int32x2"),
                    T.vectorhigh(p3, dtype="int32x2"),
                    dtype="int32x2",
                ),
                dtype="int32x2",
            )

    return impl


def _partial_sum_a64():
    """AArch64: addp of channels 0 / 1 and 2 / 3, then of the two results."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl(p: T.handle, o: T.handle) -> None:
        P = T.match_buffer(p, (4, 4), "int32", offset_factor=1, scope=DOT_TILE_SCOPE)
        O = T.match_buffer(o, (4,), "int32", offset_factor=1, scope=TILE_SCOPE)
        with T.sblock("root"):
            T.reads(P[0:4, 0:4])
            T.writes(O[0:4])
            addp = T.meta_var(T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.addp"))
            O[T.ramp(0, 1, 4)] = T.call_llvm_pure_intrin(
                addp,
                T.call_llvm_pure_intrin(addp, P.vload([0, 0], "int32x4"), P.vload([1, 0], "int32x4"), dtype="int32x4"),
                T.call_llvm_pure_intrin(addp, P.vload([2, 0], "int32x4"), P.vload([3, 0], "int32x4"), dtype="int32x4"),
                dtype="int32x4",
            )

    return impl


_registered: set[str] = set()


def ensure_registered(k: DotKernel, values: bool = False) -> str:
    """Register the kernel's TensorIntrin (once per process); returns its name. values: the dot form's variant
    whose operands are values, for one-pixel tiles (odd widths): there LLVM keeps them in registers (FastNet:
    -1.3 M instructions and a workspace pair per row fewer), where on two-pixel tiles, with an operand shared by
    a pixel's channel vectors, it copies registers instead (DDSNet +45 M)."""
    name = f"{k.name}_values" if values else k.name
    if name not in _registered:
        from tvm.s_tir import TensorIntrin

        TensorIntrin.register(name, _desc(k), STEPS[k.instruction](k, values), override=True)
        _registered.add(name)
    return name
