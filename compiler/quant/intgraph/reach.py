"""The codes each tensor of a quantized graph can hold, for every input: an interval per tensor, from the graph
input's full code range through each node's integer constants (its clamp, its table, a monotone requantization).

The quantizer's int32 guards (tcc.quant.intgraph.qgraph) bound an accumulator by the codes its input can hold, not by
the
input's whole code range: a ReLU'd tensor holds codes at or above its zero point only, a hard-swish table's
output hardly any below it, so a 16-bit conv after a ReLU sums half the worst case that the full int16 range
implies (17 of 20 zoo specs were refused at 16 bits as if every input took both signs: MobileNetV3's classifier,
ShuffleNet's fc, ResNet-18's layer2.0.conv2; the 9 whose worst case still overflows get narrower grids,
tcc.quant.intgraph.widths.fit_accumulators). The intervals are sound (nothing outside can occur), not tight: a
requantizing node is bounded by its clamp, a move
or a pool by its input's interval mapped through its (monotone) requantization.
"""

from __future__ import annotations

import numpy as np

from ...intops import QUANTIZE, Interpreter
from .fixed_point import multiply

Codes = tuple[int, int]  # [lo, hi], codes as stored (zero point included)


def mapped(rq, lo: int, hi: int) -> Codes:
    """[lo, hi] (zero-point-free codes) through a requantization: clamp(round(acc M) + zp), monotone in acc for
    every channel's M > 0, so the ends map to the ends."""
    ends = multiply(np.array([[lo], [hi]], np.int64), rq.mult) + rq.zp
    ends = np.clip(ends, rq.lo, rq.hi)
    return int(ends[0].min()), int(ends[1].max())


def within(codes: Codes, q) -> Codes:
    """codes narrowed to q's code range (a copy clamps to it)."""
    return max(codes[0], q.lo), min(codes[1], q.hi)


class Reach(Interpreter):
    """QNode + the intervals of its inputs -> the intervals of its outputs (None for a float tensor)."""

    lowering = QUANTIZE

    @staticmethod
    def _moved(x: Codes, zp_in: int, rs, out) -> Codes:
        return within(x, out) if rs is None else mapped(rs, x[0] - zp_in, x[1] - zp_in)

    @staticmethod
    def _clamped(n) -> list:
        return [(n.requant.lo, n.requant.hi)]

    def conv(self, n, x) -> list:
        return [None] if n.qout[0] is None else self._clamped(n)

    gemm = pooled_conv = conv_transpose = conv

    def add(self, n, *operands) -> list:
        return [(n.add.out.lo, n.add.out.hi)]

    add_constant = add  # one operand: the constant's codes are in the node

    def broadcast(self, n) -> list:
        return [(int(n.weight.min()), int(n.weight.max()))]

    def mul(self, n, a, b) -> list:
        return self._clamped(n)

    matmul = mul

    def channel_scale(self, n, x) -> list:
        return [(min(n.requant.lo, n.below.lo), max(n.requant.hi, n.below.hi))]

    def lookup(self, n, x) -> list:
        used = n.table[x[0] - n.qin[0].lo : x[1] - n.qin[0].lo + 1]  # the entries the input's codes index
        return [(int(used.min()), int(used.max()))]

    def softmax(self, n, x) -> list:  # (e r + 2^(k-1)) >> k >= 0: at or above the zero point
        out = n.qout[0]
        return [(max(out.zp, out.lo), out.hi)]

    def clamp(self, n, x) -> list:
        lo, hi = self._moved(x, n.qin[0].zp, n.rescale[0], n.qout[0])
        c_lo, c_hi = n.attrs["clamp"]
        return [(min(max(lo, c_lo), c_hi), max(min(hi, c_hi), c_lo))]

    def max_pool(self, n, x) -> list:  # a max of codes (padding never wins: a window holds one real code)
        return [self._moved(x, n.qin[0].zp, n.rescale[0], n.qout[0])]

    global_max_pool = max_pool

    def avg_pool(self, n, x) -> list:
        # window sums of zero-point-free codes; a counted pad adds a 0, so the sum's ends include count * 0
        lo, hi = min(x[0] - n.qin[0].zp, 0), max(x[1] - n.qin[0].zp, 0)
        if n.divide:  # the mean of codes, on the input's grid
            return [within((lo + n.qout[0].zp, hi + n.qout[0].zp), n.qout[0])]
        return [mapped(n.requant, lo * n.count, hi * n.count)]

    global_avg_pool = avg_pool

    def concat(self, n, *xs) -> list:
        parts = [self._moved(x, q.zp, rs, n.qout[0]) for x, q, rs in zip(xs, n.qin, n.rescale)]
        return [(min(p[0] for p in parts), max(p[1] for p in parts))]

    def _moves(self, n, x) -> list:
        return [self._moved(x, n.qin[0].zp, rs, q) for rs, q in zip(n.rescale, n.qout)]

    reshape = transpose = split = slice = resize_nearest = _moves
    resize_bilinear = _moves  # weights that sum to the whole: within the codes it reads

    def pad(self, n, x) -> list:  # the codes moved, and a constant pad's own code
        if n.attrs["mode"] != "constant" or x is None:
            return self._moves(n, x)
        code = n.attrs["code"]
        return self._moves(n, (min(x[0], code), max(x[1], code)))

    def float_island(self, n, *xs) -> list:
        return [None if q is None else (q.lo, q.hi) for q in n.qout]
