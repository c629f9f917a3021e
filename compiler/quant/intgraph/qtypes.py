"""The records of a quantized graph (a QGraph of QNodes): each quantized tensor's parameters and every integer
constant of a node, as tcc.quant.intgraph.qgraph's Quantizer computes them once and every interpreter reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

from ...intops import INT_OPS
from ..table.rules import TargetRules

ADD_LEFT_SHIFT = 20  # TFLite's int8 ADD: headroom bits so the per-input rescaling keeps ~20 bits of precision
ADD_LEFT_SHIFT_16 = 15  # TFLite's int16 ADD (16x8 mode): 16-bit codes << 15 still fit int32


@dataclass(frozen=True)
class QParams:
    """A quantized tensor's parameters: real value = (code - zp) * scale, codes in [lo, hi]."""

    scale: float
    zp: int
    lo: int
    hi: int

    @property
    def dtype(self) -> str:
        """The narrowest integer type holding codes in [lo, hi]."""
        return storage_dtype(self.lo, self.hi)

    @property
    def bits(self) -> int:
        """8 for int8 / uint8 codes, 16 for int16 ones."""
        return 8 if self.dtype in ("int8", "uint8") else 16

    @property
    def reach(self) -> int:
        """The largest |code - zero point|: what the integer kernels multiply and sum."""
        return max(abs(self.lo - self.zp), abs(self.hi - self.zp))


def window_sums(x: QParams, area: int) -> QParams:
    """The parameters of the window sums of x's zero-point-free codes over `area` elements: exact (no rounding),
    the step s / area, zero point 0 (a pooled conv's input: 10 bits for 2 x 2 windows of 8-bit codes)."""
    return QParams(x.scale / area, 0, area * (x.lo - x.zp), area * (x.hi - x.zp))


def accumulator_bound(
    kind: str, weight: np.ndarray, bias: np.ndarray | None, x: QParams, codes: tuple[int, int] | None = None
) -> np.ndarray:
    """The largest |accumulator| per output channel of a conv (OIHW weight codes) or gemm ([K, N]) on input codes
    in `codes` (default: x's whole code range), zero point subtracted, bias included; it bounds every partial sum
    too, in any order (each side sums the products of that sign only), so no kernel's int32 running sum wraps."""
    lo, hi = (x.lo, x.hi) if codes is None else codes
    a, b = np.int64(lo - x.zp), np.int64(hi - x.zp)
    w = np.asarray(weight, np.int64)
    w = INT_OPS[kind].weight_rows(w)  # [channels, products]
    wa, wb = w * a, w * b
    top = np.maximum(np.maximum(wa, wb), 0).sum(axis=1)
    bottom = np.minimum(np.minimum(wa, wb), 0).sum(axis=1)
    if bias is not None:
        bias = np.asarray(bias, np.int64)
        top, bottom = top + np.maximum(bias, 0), bottom + np.minimum(bias, 0)
    return np.maximum(top, -bottom)


def storage_dtype(lo: int, hi: int) -> str:
    if lo >= -128 and hi <= 127:
        return "int8"
    if lo >= 0 and hi <= 255:
        return "uint8"
    if lo >= -32768 and hi <= 32767:
        return "int16"
    return "int32"


@dataclass(frozen=True)
class Multiplier:
    """A real multiplier M as fixed point: M = q * 2^(shift - 31), q in [2^30, 2^31), one value or one per channel;
    `rounding` names the rule that rounds the product (tcc.quant.table.rules.ROUNDINGS)."""

    q: np.ndarray  # int64
    shift: np.ndarray  # int64
    rounding: str = "half_even"
    # M itself in float64, for rules that round acc * M in double arithmetic ("double_half_away")
    real: np.ndarray | None = field(default=None, compare=False)

    @property
    def per_channel(self) -> bool:
        return self.q.size > 1


@dataclass(frozen=True)
class Requant:
    """codes = clamp(round(acc * M) + zp, lo, hi) in the storage type of the output tensor (`out`); [lo, hi] is the
    output's code range narrowed by a folded activation."""

    mult: Multiplier
    zp: int
    lo: int
    hi: int
    out: QParams


@dataclass(frozen=True)
class AddParams:
    """TFLite's integer ADD: each input (q - zp) << left_shift, times its multiplier (to the common scale
    2 max(s_a, s_b) at 2^left_shift finer resolution), summed, then `out` requantizes to the output."""

    left_shift: int
    a: Multiplier
    b: Multiplier
    out: Requant


@dataclass(frozen=True)
class QNode:
    """One integer op with its constants. Which fields a kind uses is documented with its reference method
    (tcc.quant.intgraph.reference.Reference)."""

    kind: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    qin: tuple[QParams, ...]
    qout: tuple[QParams | None, ...]  # None: the output stays float (a weighted node's graph output)
    attrs: dict = field(default_factory=dict)  # geometry: strides, pads, dilations, group, axis, perm, shapes
    weight: np.ndarray | None = None  # weighted: int codes (int32): conv OIHW, gemm [K, N]
    weight_scale: np.ndarray | None = None  # weighted: the weight's scale per output channel (float32);
    # channel_scale with int8 factors: the factors' scale (one for PReLU's alpha, one per channel for a layer scale)
    bias: np.ndarray | None = None  # weighted: int32 codes at s_in * s_w (as int64; TFLite 16x8: int64 codes)
    acc_scale: np.ndarray | None = None  # weighted: s_in * s_w per output channel (float32)
    float_clamp: tuple[float | None, float | None] | None = None  # float output with a folded activation
    requant: Requant | None = None  # the output's requantization (weighted, mul, pools, clamp; channel_scale:
    # of codes at or above the input's zero point)
    below: Requant | None = None  # channel_scale: the requantization of codes below the input's zero point
    factors: np.ndarray | None = None  # channel_scale: [2, C] integers the zero-point-free codes are multiplied by
    # before `requant` (row 0) or `below` (row 1)
    rescale: tuple[Requant | None, ...] = ()  # per input (concat) or output (moves): None = a copy (clamped)
    add: AddParams | None = None
    table: np.ndarray | None = None  # lookup: output codes (int64) indexed by input code - qin[0].lo
    count: int = 0  # pools: the window area
    divide: bool = False  # pools (rules.pool_division): the sum of codes divided by the area, half away from zero
    precision: str = "int8"  # "float": a float island (qin / qout None where a tensor stays float)
    float_model: onnx.ModelProto | None = (
        None  # island: its FP32 ONNX sub-model (tcc.quant.intgraph.islands.island_model)
    )
    rounding: str = "half_even"  # island: how its outputs are quantized (the target's QuantizeLinear / QUANTIZE)

    @property
    def integer(self) -> bool:
        return self.precision == "int8"


@dataclass
class QGraph:
    nodes: list[QNode]
    input: str
    input_q: QParams | None  # None: only float islands read the graph input
    outputs: list[str]
    rules: TargetRules
    input_shape: tuple = ()  # the graph input's shape (batch: None or a name where symbolic)
    input_rounding: str = "half_even"  # equation (8) at the graph input: x / s rounded half to even or half away
    output_scales: dict = field(default_factory=dict)  # graph output -> its calibrated step (LSB), also when float
    producer: dict = field(default_factory=dict)  # tensor -> QNode
    reached: dict = field(default_factory=dict)  # tensor -> [lo, hi]: the codes it can hold (tcc.quant.intgraph.reach)

    def __post_init__(self):
        self.producer = {o: n for n in self.nodes for o in n.outputs}

    @property
    def islands(self) -> list[QNode]:
        return [n for n in self.nodes if not n.integer]
