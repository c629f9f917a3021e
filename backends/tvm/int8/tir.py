"""TIR building blocks of the INT8 Relax lowering and the PrimFuncs of its elementwise steps.

- the fixed-point multiply of the reference (multiply_by_quantized_multiplier): its constants (`fixed_point`) and
  its TIR form (`_half_even_mul`), shared with the requantization forms (requantize.py);
- extents: `_dims` (int64, symbolic where not an int), `_static` (a dimension's int, None where symbolic);
- the graph input's quantization (`quantize_input_primfunc`), with its division-free quotient for targets without
  a vector division (`exact_quotient`, choose.reciprocal_division);
- TFLite's integer ADD as one kernel (`add_primfunc`).
"""

from __future__ import annotations

import numpy as np

from tcc.quant.intgraph.qtypes import QParams

from .codes import _Codes
from .kernels import QUANTIZE_BLOCK


def fixed_point(q, shift) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q, k, below_half) as int64 arrays for reference.multiply_by_quantized_multiplier(acc, q, shift): the
    product acc * q shifted right by k = 31 - shift, below_half = 2^(k - 1) - 1 (see `_half_even_mul`)."""
    q, shift = np.atleast_1d(np.asarray(q, np.int64)), np.atleast_1d(np.asarray(shift, np.int64))
    k = 31 - shift
    if np.any(k < 1):
        raise OverflowError("requantization multiplier >= 2^30 is not supported")
    k = np.minimum(k, 62)  # |acc * q| < 2^62: shifting 62 gives 0, as in the reference
    return q, k, (np.int64(1) << (k - 1)) - 1


def _half_even_mul(x, q, k, below_half):
    """TIR: multiply_by_quantized_multiplier(x, q, shift) for int64 x (|x| < 2^31) with k = 31 - shift and
    below_half = 2^(k - 1) - 1: the exact product p = x * q divided by 2^k with one rounding, half to even, as in
    the reference: (p + 2^(k-1) - 1 + b) >> k with b = bit k of p (the floor's parity). With f = p >> k and the
    remainder r, that is f + 1 exactly where r + 2^(k-1) - 1 + b >= 2^k: r > 2^(k-1), or r = 2^(k-1) with f odd.
    No comparison: only multiplies, shifts, ands and adds, which vectorize on every target (ARMv7 NEON has no
    64-bit compare; the compare form ran as scalar code there)."""
    from tvm import tirx  # deferred: TVM loads where a PrimFunc is built

    prod = x * q
    odd = (prod >> k) & tirx.const(1, "int64")
    return (prod + below_half + odd) >> k


def tie_free(q: int, shift: int, bound: int, zeros: int = 0) -> int | None:
    """s = -shift where x M (M = q 2^(shift - 31)) rounded once, half to even, equals ((x q >> 31) + 2^(s-1)) >> s
    for every |x| <= bound whose lowest `zeros` bits are 0 (`_tie_free_mul`); None where it may not. With k = 31 +
    s and v the trailing zero bits of q, x q has tz(x) + v trailing zero bits and lies half way between two
    results exactly when that is k - 1: below 2^(k - 1 - v) or with more than k - 1 - v zero bits, no x can. Then
    the floor of x q / 2^31 (its remainder under half of 2^(s-1) or not) rounds by one rounding shift. s = 0 (M in
    [1/2, 1)): only where x q / 2^31 is an integer (zeros + v >= 31: an ADD's larger input at M = 1/2). The
    int32 arithmetic needs bound < 2^30."""
    q, s = int(q), -int(shift)
    if q <= 0 or q >= 1 << 31 or not 0 <= s <= 31 or bound >= 1 << 30:
        return None
    v = (q & -q).bit_length() - 1
    if s == 0:
        return 0 if zeros + v >= 31 else None
    return s if 30 + s - v < zeros or bound < 1 << (30 + s - v) else None


def high_half(x, q):
    """TIR: floor(x q / 2^31) in int32 for int32 x and q (the int64 product shifted; |x q| / 2^31 must fit)."""
    from tvm import tirx  # deferred: TVM loads where a PrimFunc is built

    return ((x.astype("int64") * q.astype("int64")) >> tirx.const(31, "int64")).astype("int32")


def _tie_free_mul(x, q: int, s: int):
    """TIR: x M for int32 x as `tie_free` allows it: the high half of the int64 product, then one rounding shift, in
    int32 (vectorizes on every target: ARMv7 vmull.s32 and shifts, where the int64 half-even form ran as scalar
    code; x86 vpmuldq)."""
    from tvm import tirx  # deferred: TVM loads where a PrimFunc is built

    high = high_half(x, tirx.const(q, "int32"))
    return high if s == 0 else (high + tirx.const(1 << (s - 1), "int32")) >> tirx.const(s, "int32")


def _static(d) -> int | None:
    try:
        return int(d)
    except TypeError:  # a symbolic dimension
        return None


def _dims(shape):
    """int64 extents, like Relax's shapes (int32 ones make FuseTIR see two different buffers); anything but an int
    (a symbolic batch) becomes a symbolic dimension."""
    from tvm import tirx  # deferred: TVM loads where a PrimFunc is built

    return [
        tirx.IntImm("int64", int(d)) if isinstance(d, (int, tirx.IntImm)) else tirx.Var(f"d{i}", "int64")
        for i, d in enumerate(shape)
    ]


def quantize_input_primfunc(shape, p: QParams, reciprocal: bool = False):
    """Equation (8) in float32 like the reference (reference.quantize_input): clamp(rint(x / s) + zp, lo, hi),
    computed as rint(clamp(x / s, lo - zp, hi - zp)) + zp (the same: rint is monotone and keeps integers), the
    rounding by the float32 adder itself: v + 1.5 * 2^23 lies in [2^23, 2^24), where float32 holds integers
    exactly and IEEE addition rounds half to even, so its bits minus those of 1.5 * 2^23 are rint(v), for
    |v| < 2^22. No call of libm's rint per element (ARMv7 has no rounding instruction); the reinterpretation
    keeps the simplifier from folding (v + c) - c to v.
    reciprocal: x / s as `exact_quotient` computes it, by multiply-adds (targets without a vector division,
    `reciprocal_division`); where its bounds do not hold for these parameters, the division."""
    from tvm import te, tirx  # deferred: TVM loads where a PrimFunc is built

    dims = _dims(shape)
    x = te.placeholder(dims, "float32", name="x")
    magic = np.float32(1.5 * 2.0**23)
    bits = int(magic.view(np.int32))
    by_reciprocal = reciprocal and exact_quotient_applies(p)

    def fma(a, b, c):
        return tirx.call_llvm_pure_intrin("float32", "llvm.fma", a, b, c)

    def clamp(v, lo, hi):
        return tirx.min(tirx.max(v, tirx.const(lo, "float32")), tirx.const(hi, "float32"))

    def one(*idx):
        if by_reciprocal:
            v = exact_quotient(x[idx], p.scale, fma, clamp)
        else:
            v = x[idx] / tirx.const(np.float32(p.scale), "float32")
        v = clamp(v, float(p.lo - p.zp), float(p.hi - p.zp))
        r = tirx.reinterpret("int32", v + tirx.const(magic, "float32")) - tirx.const(bits - p.zp, "int32")
        return r.astype(p.dtype)

    out = te.compute(dims, one, name=QUANTIZE_BLOCK)
    return te.create_prim_func([x, out]).without_attr("global_symbol").with_attr("tcc.op_pattern", 0)


# x / s by `exact_quotient`: s within these powers of two (no reciprocal, product or residual leaves float32's
# normal range for the inputs that decide a code), codes within QUOTIENT_CLAMP of the zero point
QUOTIENT_SCALES = (2.0**-100, 2.0**100)
QUOTIENT_CLAMP = 1024


def exact_quotient_applies(p: QParams) -> bool:
    return (
        QUOTIENT_SCALES[0] <= p.scale <= QUOTIENT_SCALES[1] and max(abs(p.lo - p.zp), abs(p.hi - p.zp)) < QUOTIENT_CLAMP
    )


def exact_quotient(x, scale: float, fma, clamp):
    """fl(x / s) for float32 x (clamped to +-QUOTIENT_CLAMP * s first: the quotient past every code bound, as
    the division's, infinities included) without a division: r = fl(1 / s), y = fl(x r), then two Newton
    corrections q' = fma(fma(-q, s, x), r, q). The first makes q faithful (within one ulp of x / s; y alone is
    only within 1.5 ulps); from a faithful q the residual fma(-q, s, x) is exact and the second correction is
    the correctly rounded quotient (Markstein's theorem, round to nearest even; Muller et al., Handbook of
    Floating-Point Arithmetic, on division by fused multiply-adds). Generic in the arithmetic: fma(a, b, c) and
    clamp(v, lo, hi) are TIR calls in the kernel and float32 emulations in the tests
    (tests/backends/tvm/test_int8_quantize.py). Where it differs from
    a division: NEON flushes subnormals to zero, so a subnormal x gives 0, which is the code zp as x / s
    (|x / s| < 1/2 for every s that `exact_quotient_applies` takes)."""
    s = np.float32(scale)
    r = np.float32(1) / s
    bound = s * np.float32(QUOTIENT_CLAMP)  # exact: a power of two
    x = clamp(x, -bound, bound)
    q = x * r
    for _ in range(2):
        q = fma(fma(-q, s, x), r, q)
    return q


def _tie_free_add(a: QParams, b: QParams, p) -> tuple | None:
    """((q, s) of input a, of input b, of the output) where each of the ADD's three multiplies can be `tie_free` on
    the values it meets: (code - zp) << left_shift (its low left_shift bits 0), their rescaled sum (bounded by the
    inputs' code ranges); None where one cannot, or a clamp bound leaves int32."""

    def input_bound(x: QParams) -> int:
        return max(x.hi - x.zp, x.zp - x.lo) << p.left_shift

    steps, total = [], 0
    if any(m.rounding != "half_even" for m in (p.a, p.b, p.out.mult)):
        return None
    for x, m in ((a, p.a), (b, p.b)):
        q, shift = int(np.ravel(m.q)[0]), int(np.ravel(m.shift)[0])
        bound = input_bound(x)
        s = tie_free(q, shift, bound, zeros=p.left_shift)
        if s is None:
            return None
        steps.append((q, s))
        total += int(np.ceil(bound * q / 2.0 ** (31 + s))) + 1
    q, shift = int(np.ravel(p.out.mult.q)[0]), int(np.ravel(p.out.mult.shift)[0])
    s = tie_free(q, shift, total)
    if s is None or not (p.out.lo - p.out.zp >= -(1 << 31) and p.out.hi - p.out.zp < 1 << 31):
        return None
    return (*steps, (q, s))


def add_primfunc(a: _Codes, b: _Codes, p, shape):
    """TFLite's integer ADD (reference.add_codes) on codes a, b of equal rank (broadcast where a dimension is 1),
    the fixed-point constants of `p` (qgraph.AddParams) baked in: per element, in int64,

        sa = mul((a - za) << 20, qa, shift_a); sb = mul((b - zb) << 20, qb, shift_b)
        out = clamp(mul(sa + sb, q_out, shift_out) + z_out, lo, hi)

    with mul the half-to-even fixed-point multiply (`_half_even_mul`). One kernel instead of ~20 int64 Relax ops:
    the same arithmetic, a tenth of the compile time (ResNet-34 INT8 at 64 x 64: 93 s -> 9 s). Where no multiply
    can meet a tie (`_tie_free_add`: 8-bit codes, the zoo's scales) the same results in int32 lanes, each multiply
    a high half and one rounding shift (`_tie_free_mul`)."""
    from tvm import te, tirx  # deferred: TVM loads where a PrimFunc is built

    dims = _dims(shape)
    one_ = tirx.IntImm("int64", 1)
    c = lambda v: tirx.const(int(v), "int64")  # noqa: E731

    def operand(codes: _Codes, name: str):
        """The operand's placeholder (the output's dimensions, 1 where it broadcasts) and its broadcast axes."""
        bcast = [_static(d) == 1 and _static(o) != 1 for d, o in zip(codes.expr.ty.shape, shape)]
        return te.placeholder([one_ if b else d for b, d in zip(bcast, dims)], codes.params.dtype, name=name), bcast

    (ta, bcast_a), (tb, bcast_b) = operand(a, "a"), operand(b, "b")
    narrow = _tie_free_add(a.params, b.params, p)
    if narrow is not None:
        (qa, sa), (qb, sb), (qo, so) = narrow
        c32 = lambda v: tirx.const(int(v), "int32")  # noqa: E731

        def scaled32(t, bcast, zp, q, s, idx):
            index = tuple(tirx.IntImm("int64", 0) if bc else i for i, bc in zip(idx, bcast))
            return _tie_free_mul((t[index].astype("int32") - c32(zp)) << c32(p.left_shift), q, s)

        def one32(*idx):
            total = scaled32(ta, bcast_a, a.zp, qa, sa, idx) + scaled32(tb, bcast_b, b.zp, qb, sb, idx)
            y = _tie_free_mul(total, qo, so)
            return (tirx.min(tirx.max(y, c32(p.out.lo - p.out.zp)), c32(p.out.hi - p.out.zp)) + c32(p.out.zp)).astype(
                p.out.out.dtype
            )

        out = te.compute(dims, one32, name="add")
        func = te.create_prim_func([ta, tb, out]).without_attr("global_symbol")
        return func.with_attr("tcc.op_pattern", 1)

    def scaled(t, bcast, zp, m, idx):
        index = tuple(tirx.IntImm("int64", 0) if bc else i for i, bc in zip(idx, bcast))
        q, k, below_half = fixed_point(m.q, m.shift)
        x = (t[index].astype("int64") - c(zp)) << c(p.left_shift)
        return _half_even_mul(x, c(q[0]), c(k[0]), c(below_half[0]))

    q, k, below_half = fixed_point(p.out.mult.q, p.out.mult.shift)

    def one(*idx):
        total = scaled(ta, bcast_a, a.zp, p.a, idx) + scaled(tb, bcast_b, b.zp, p.b, idx)
        y = _half_even_mul(total, c(q[0]), c(k[0]), c(below_half[0])) + c(p.out.zp)
        return tirx.min(tirx.max(y, c(p.out.lo)), c(p.out.hi)).astype(p.out.out.dtype)

    out = te.compute(dims, one, name="add")
    func = te.create_prim_func([ta, tb, out]).without_attr("global_symbol")
    return func.with_attr("tcc.op_pattern", 1)  # broadcast: fuses with the elementwise ops around it
