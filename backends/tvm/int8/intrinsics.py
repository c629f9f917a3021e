"""The TensorIntrins of the dot-product kernels, one per instruction set: each kernel's step (`ensure_registered`:
its description `_desc` and its implementation by LLVM intrinsics, a table keyed by the kernel's instruction,
`STEPS` -- x86 `vpmaddwd` / `vpdpbusd`, ARMv7 `vmull.s8` / `vpadal.s16`, AArch64 `sdot` or `smull` / `sadalp`) and
the sum of the dot form's partial lanes (`partial_sum_intrin`); each registered once per process (`register`,
which the kernel variants' own intrinsics use too: variants/). Their buffers are declared once (intrin_funcs.py):
a kernel's by `_operands`."""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from .intrin_funcs import Operand, step_func, store_func
from .kernels import DOT_TILE_SCOPE, TILE_SCOPE, DotKernel


def _operands(k: DotKernel) -> tuple[Operand, Operand, Operand]:
    """The buffers of a kernel's step, A (codes), B (weights), C (int32 lanes): the dot form's 16 codes against 16
    weights into 4 partial lanes; a broadcast kernel's [group] codes against [lanes, group] weights, or with pairs
    [pairs x group] against [pairs, lanes, group]."""
    if k.form == "dot":
        return Operand((16,), "int8"), Operand((16,), "int8"), Operand((4,), "int32", DOT_TILE_SCOPE)
    L, J, H = k.lanes, k.group, k.pairs
    lanes = Operand((L,), "int32", TILE_SCOPE)
    if H == 1:
        return Operand((J,), k.act_dtype), Operand((L, J), k.weight_dtype), lanes
    return Operand((H * J,), k.act_dtype), Operand((H, L, J), k.weight_dtype), lanes


def _desc(k: DotKernel):
    """C[lanes] += sum over (pairs, group) of A[...] * B[..., lane, ...], as the conv's step computes it."""
    L, J, H = k.lanes, k.group, k.pairs

    @T.macro
    def dot(A, B, C):
        for lane, hh, jj in T.grid(4, 2, 2):
            with T.sblock("update"):
                vl, vh, vj = T.axis.remap("SRR", [lane, hh, jj])
                C[vl] = C[vl] + T.Cast("int32", A[vh * 8 + vl * 2 + vj]) * T.Cast("int32", B[vh * 8 + vl * 2 + vj])

    @T.macro
    def broadcast(A, B, C):
        for i, kk in T.grid(L, J):
            with T.sblock("update"):
                vi, vk = T.axis.remap("SR", [i, kk])
                C[vi] = C[vi] + T.Cast("int32", A[vk]) * T.Cast("int32", B[vi, vk])

    @T.macro
    def pairs(A, B, C):
        for hh, i, kk in T.grid(H, L, J):
            with T.sblock("update"):
                vi, vh, vk = T.axis.remap("SRR", [i, hh, kk])
                C[vi] = C[vi] + T.Cast("int32", A[vh * J + vk]) * T.Cast("int32", B[vh, vi, vk])

    body = dot if k.form == "dot" else broadcast if H == 1 else pairs
    return step_func(*_operands(k), body)


def _broadcast_step(k: DotKernel, update):
    """A broadcast kernel's step: C[lanes] = update(A, B, C), of A [group] codes and B [lanes, group] weights in
    the kernel's types, C its int32 accumulators; `update` builds the instructions' expression as the TVMScript is
    parsed."""
    return store_func(*_operands(k), update)


def _madd_step(k: DotKernel, values: bool):
    """x86 `vpmaddwd`: an int16 pair broadcast to every lane against the lanes' pairs, summed into int32, added."""
    L = k.lanes
    madd = {4: "llvm.x86.sse2.pmadd.wd", 8: "llvm.x86.avx2.pmadd.wd", 16: "llvm.x86.avx512.pmaddw.d.512"}[L]

    def update(A, B, C):
        pair = T.reinterpret(A.vload([0], "int16x2"), dtype="int32")
        pairs = T.reinterpret(T.broadcast(pair, L), dtype=f"int16x{2 * L}")
        return C.vload([0], f"int32x{L}") + T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id(madd), pairs, B.vload([0, 0], f"int16x{2 * L}"), dtype=f"int32x{L}"
        )

    return _broadcast_step(k, update)


def _quad_step(k: DotKernel, instruction: str):
    """A quad of codes broadcast to every lane against the lanes' quads of weights, the 4 products of each added
    into its int32 lane by one `instruction` (LLVM's name) of three vectors: accumulators, codes, weights."""
    L, a_t, w_t = k.lanes, k.act_dtype, k.weight_dtype

    def update(A, B, C):
        quad = T.reinterpret(A.vload([0], f"{a_t}x4"), dtype="int32")
        return T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id(instruction),
            C.vload([0], f"int32x{L}"),
            T.reinterpret(T.broadcast(quad, L), dtype=f"{a_t}x{4 * L}"),
            B.vload([0, 0], f"{w_t}x{4 * L}"),
            dtype=f"int32x{L}",
        )

    return _broadcast_step(k, update)


def _dpbusd_step(k: DotKernel, values: bool):
    """x86 VNNI `vpdpbusd` (zmm, ymm or xmm: 16, 8 or 4 int32 lanes): u8 quads against s8 ones. LLVM 22's vpdpbusd
    takes byte vectors (TVM's own dot_16x4_vnni still passes i32 ones)."""
    return _quad_step(k, f"llvm.x86.avx512.vpdpbusd.{32 * k.lanes}")


def _dot16_step(k: DotKernel, values: bool):
    """ARM's dot form: 16 codes x 16 weights, vmull.s8 (0..7), vmlal.s8 (8..15), vpadal.s16 into 4 lanes (the safe
    twin widens each half on its own). values: the 16-code operands as values (`ensure_registered`), else local
    buffers."""
    operand = T.meta_var if values else (lambda v: v)  # TVMScript: an assigned expression is a local buffer
    mull, padal = _widening(k.arch)  # AArch64: smull, smlal2, sadalp

    def low(v):
        return T.vectorlow(v, dtype="int8x8")

    def high(v):
        return T.vectorhigh(v, dtype="int8x8")

    def update(va, vb, C):  # called as the TVMScript is parsed
        if k.safe:  # each half widened on its own
            return padal(padal(C.vload([0], "int32x4"), mull(low(va), low(vb))), mull(high(va), high(vb)))
        return padal(C.vload([0], "int32x4"), mull(low(va), low(vb)) + mull(high(va), high(vb)))

    @T.macro
    def body(A, B, C):
        va = operand(A.vload([0], "int8x16"))
        vb = operand(B.vload([0], "int8x16"))
        C[T.ramp(0, 1, 4)] = update(va, vb, C)

    return step_func(*_operands(k), body)


def _sdot_step(k: DotKernel, values: bool):
    """AArch64 `sdot`: an s8 quad broadcast to 4 lanes against 4 channels x 4 codes, one instruction."""
    return _quad_step(k, "llvm.aarch64.neon.sdot")


def _mull_padal_step(k: DotKernel, values: bool):
    """ARM's broadcast form: products of an s8 pair broadcast to 4 lanes against 4 channels x 2 codes, 2 per int16
    lane (vmull.s8, then vmlal.s8 for the second pair; the safe twin: one), pairwise-added into the int32
    accumulators (vpadal.s16); AArch64 the same in smull / smlal / sadalp (LLVM has no sadalp intrinsic: saddlp plus
    the add selects it)."""
    mull, padal = _widening(k.arch)

    def broadcast_pair(A, at: int):  # codes at, at + 1 as an int16 broadcast to 4 lanes, seen as 8 codes
        return T.reinterpret(T.broadcast(T.reinterpret(A.vload([at], "int8x2"), dtype="int16"), 4), dtype="int8x8")

    if k.pairs == 1:

        def update(A, B, C):
            return padal(C.vload([0], "int32x4"), mull(broadcast_pair(A, 0), B.vload([0, 0], "int8x8")))

        return _broadcast_step(k, update)

    @T.macro
    def body(A, B, C):
        a01 = T.meta_var(broadcast_pair(A, 0))
        a23 = T.meta_var(broadcast_pair(A, 2))
        b = T.meta_var(B.vload([0, 0, 0], "int8x16"))  # one load; its halves: the two d registers of a q
        prod = mull(a01, T.vectorlow(b, dtype="int8x8")) + mull(a23, T.vectorhigh(b, dtype="int8x8"))
        C[T.ramp(0, 1, 4)] = padal(C.vload([0], "int32x4"), prod)

    return step_func(*_operands(k), body)


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


PARTIAL_SUM = {
    "armv7": "tcc_dot_neon_sum4",  # 4 channels' 4 partial lanes summed: 6 vpadd.i32
    "aarch64": "tcc_dot_a64_sum4",
}  # 3 addp of q registers


def partial_sum_intrin(arch: str = "armv7") -> str:
    """The TensorIntrin summing the dot form's partial lanes of 4 output channels into one vector (registered);
    LLVM's own reduction of a [4, 4] tile transposed it element by element (vtrn / vext / vorr)."""
    name = PARTIAL_SUM[arch]
    if not registered(name):

        @T.macro
        def desc(P, O):
            for i in T.serial(4):
                with T.sblock("sum"):
                    vi = T.axis.remap("S", [i])
                    O[vi] = P[vi, 0] + P[vi, 1] + P[vi, 2] + P[vi, 3]

        impl = _partial_sum_a64() if arch == "aarch64" else _partial_sum_neon()
        register(name, _partial_sum_func(desc), _partial_sum_func(impl))
    return name


def _partial_sum_func(body):
    """The sum's function (description or implementation): a tile's 4 x 4 partial lanes P into 4 int32 lanes O;
    `body(P, O)`, a `T.macro` (its own template, not copy_func: that one names the buffers S and D, and the
    registered TIR keeps the names it always had)."""

    @T.prim_func(s_tir=True)
    def func(p: T.handle, o: T.handle) -> None:
        P = T.match_buffer(p, (4, 4), "int32", offset_factor=1, scope=DOT_TILE_SCOPE)
        O = T.match_buffer(o, (4,), "int32", offset_factor=1, scope=TILE_SCOPE)
        with T.sblock("root"):
            T.reads(P[0:4, 0:4])
            T.writes(O[0:4])
            body(P, O)

    return func


def _partial_sum_neon():
    """ARMv7: vpadd of each channel's two halves, then of two channels' results."""

    def vpadd(a, b):  # called while the TVMScript is parsed: the intrinsic's call, written once
        return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.arm.neon.vpadd"), a, b, dtype="int32x2")

    def halves(p):  # a channel's 4 partial lanes summed in pairs
        return vpadd(T.vectorlow(p, dtype="int32x2"), T.vectorhigh(p, dtype="int32x2"))

    @T.macro
    def impl(P, O):
        p0 = T.meta_var(P.vload([0, 0], "int32x4"))
        p1 = T.meta_var(P.vload([1, 0], "int32x4"))
        p2 = T.meta_var(P.vload([2, 0], "int32x4"))
        p3 = T.meta_var(P.vload([3, 0], "int32x4"))
        O[T.ramp(0, 1, 2)] = vpadd(halves(p0), halves(p1))
        O[T.ramp(2, 1, 2)] = vpadd(halves(p2), halves(p3))

    return impl


def _partial_sum_a64():
    """AArch64: addp of channels 0 / 1 and 2 / 3, then of the two results."""

    @T.macro
    def impl(P, O):
        addp = T.meta_var(T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.addp"))
        O[T.ramp(0, 1, 4)] = T.call_llvm_pure_intrin(
            addp,
            T.call_llvm_pure_intrin(addp, P.vload([0, 0], "int32x4"), P.vload([1, 0], "int32x4"), dtype="int32x4"),
            T.call_llvm_pure_intrin(addp, P.vload([2, 0], "int32x4"), P.vload([3, 0], "int32x4"), dtype="int32x4"),
            dtype="int32x4",
        )

    return impl


_registered: set[str] = set()


def registered(name: str) -> bool:
    """Whether the TensorIntrin `name` is registered in this process (`register`)."""
    return name in _registered


def register(name: str, desc, impl) -> str:
    """Register the TensorIntrin `name` (description, implementation), once per process; returns its name."""
    from tvm.s_tir import TensorIntrin  # deferred: the lowering imports TVM where it emits

    TensorIntrin.register(name, desc, impl, override=True)
    _registered.add(name)
    return name


def ensure_registered(k: DotKernel, values: bool = False) -> str:
    """Register the kernel's TensorIntrin (once per process); returns its name. values: the dot form's variant
    whose operands are values, for one-pixel tiles (odd widths): there LLVM keeps them in registers (FastNet:
    -1.3 M instructions and a workspace pair per row fewer), where on two-pixel tiles, with an operand shared by
    a pixel's channel vectors, it copies registers instead (DDSNet +45 M)."""
    name = f"{k.name}_values" if values else k.name
    if not registered(name):
        register(name, _desc(k), STEPS[k.instruction](k, values))
    return name
