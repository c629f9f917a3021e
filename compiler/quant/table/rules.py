"""Target quantization rules, as data: how a target wants its tensors quantized and how its kernels round.

    rules = RULES["ort"]                 # by rules name (a calibration table records it as "target")
    rules = rules_for("arm-a7")          # a build target -> the rules its backend needs (tcc.targets)

A calibration table is made under one set of rules (`tcc calibrate --target`), and the integer reference
(tcc.quant.intgraph.reference) computes with that table's rules, so it reproduces the target bit for bit where the
target's
kernels are exact. Build targets name their rules in the one target registry (tcc.targets); this module is
the registry of rules, not of targets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from ...errors import DataError
from ...measure.machine import u8s8_exact
from ...targets import TARGETS

ROUNDINGS = {
    # one exact product acc * q (int64) and one arithmetic shift right, rounding half to even (ONNX
    # QuantizeLinear's rounding; tcc.quant.intgraph.reference.multiply_by_quantized_multiplier says why not gemmlowp's)
    "half_even": "requantize with one rounding, half to even, of the exact fixed-point product",
    # TFLite's MultiplyByQuantizedMultiplier: SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT (two
    # roundings, half away from zero); what LiteRT's reference kernels compute, bit for bit (measured on CONV_2D,
    # DEPTHWISE_CONV_2D, ADD, MUL)
    "gemmlowp": "requantize as gemmlowp / TFLite: a rounding doubling high multiply, then a rounding right shift",
    # LiteRT's reference FULLY_CONNECTED (per-channel int8) does not round twice. Measured with
    # tests/backends/test_tflite.py's constructed cases: near ties (product 20.49986 LSB: gemmlowp 21, LiteRT 20) agree
    # only with one rounding of the exact product, and exact ties (M = 1/64) go away from zero
    "single_half_away": "requantize with one rounding, half away from zero, of the exact fixed-point product",
    # LiteRT's per-channel FULLY_CONNECTED as measured at 16 bits (accumulators to 2^25): acc times its float64
    # multiplier, rounded once half away; at 8 bits the same as single_half_away except within 2^-31 of a tie
    "double_half_away": "requantize with one rounding, half away from zero, of acc times the float64 multiplier",
    # TFLite's MultiplyByQuantizedMultiplier(int64_t x, ...) (kernels/internal/common.cc), what its 16x8 kernels
    # requantize their int64 accumulators with: the Q31 multiplier reduced to 16 bits ((q + 2^15) >> 16, at most
    # 2^15 - 1), the product acc * q16 + 2^(14 - shift) shifted right by 15 - shift: one rounding, half up
    "tflite_int64": "requantize as TFLite's int64 overload: a 16-bit multiplier, one rounding half up",
}


@dataclass(frozen=True)
class WideRules:
    """How a target's integer kernels work on 16-bit activations (`activation_bits` 16) where that differs from
    its 8-bit ones: which kinds of the integer op table it has 16-bit kernels for, the rounding of their
    requantization, the width of bias codes and accumulators, whether zero points must be 0."""

    kinds: tuple[str, ...] | None = None  # None: every kind the target takes at 8 bits
    rounding: str | None = None  # conv / depthwise conv (None: the rules' own)
    gemm_rounding: str | None = None  # a linear layer's (None: `rounding`, else the rules' gemm rounding)
    bias_bits: int = 32  # the stored bias codes of a conv / linear layer
    accumulator_bits: int = 32  # what the worst-case accumulator (bias included) must fit, sign included
    symmetric: bool = False  # zero point 0 (TFLite's 16x8 kernels check it)
    # a matmul of two activations: its rounding and accumulator where they differ from the convs' (None / 0: theirs).
    # LiteRT's 16x8 BATCH_MATMUL sums in int64 and rounds as its int64 MultiplyByQuantizedMultiplier, whatever bias
    # type its convs take
    matmul_rounding: str | None = None
    matmul_accumulator_bits: int = 0
    # lookups (the ONNX ops of `lookup` nodes) the 16-bit kernels compute (None: every one the rules take)
    lookups: tuple[str, ...] | None = None
    # outputs the 16-bit kernels fix, as TargetRules.fixed_outputs (LiteRT's int16 LOGISTIC: 2^-15, zero point 0)
    fixed_outputs: tuple[tuple[str, float, int], ...] = ()
    # a depthwise conv's, where its kernels differ from the other convs' (None: these). LiteRT's 16x8
    # DEPTHWISE_CONV_2D takes an int64 bias only, whatever CONV_2D and FULLY_CONNECTED are given
    depthwise: WideRules | None = None


@dataclass(frozen=True)
class TargetRules:
    """How a target wants its tensors: unsigned activations allowed (u8, zp 0), asymmetric activations (int8 with
    a zero point), concat sharing one scale, the rounding of its requantization."""

    name: str
    description: str = ""
    unsigned_ok: bool = True
    asymmetric: bool = False
    share_concat: bool = True
    split_mixed_groups: bool = False  # share only among tensors of one signedness (ORT: keeps ReLUs fusable)
    signed_as_u8: bool = False  # write signed tensors as u8 with zero point 128: the same grid as s8 zero point 0,
    # in the type ORT's x86 integer kernels take (s8 activations leave depthwise convs, concats, pools in float)
    # the `asymmetric` step (tcc.quant.steps.asymmetric) may put a signed tensor on a u8 grid over its clipped range
    # [max(min, -T), min(max, T)], the zero point where 0 falls (ONNX Runtime's own quantize_static form), instead
    # of [-T, T] around 128: ORT's kernels take any zero point alike
    ranged: bool = False
    kernel_rewrites: bool = False  # to_qdq's exact rewrites for ORT's kernels (AveragePool as depthwise conv,
    # space-to-depth stem): QLinearAveragePool and the 3-channel stem are ORT's slowest integer kernels
    dense_weight_bits: int = 8  # weights of non-depthwise convs and of linear layers (depthwise: always 8).
    # ORT: 7. Its x86 u8s8 kernels without VNNI (AVX2, AVX-512 before Cascade Lake) multiply with VPMADDUBSW, which
    # adds two u8 x s8 products in a saturating int16: 255 * (127 + 127) overflows it and the result is silently
    # wrong. Codes in [-64, 63] keep 255 * (64 + 64) = 32640 inside int16, so the integer result is exact on every
    # CPU (ORT's `reduce_range`). Depthwise kernels widen to int16 first and do not saturate. u8 weights (zero point
    # 128) avoid it too, through the u8u8 kernels, but are no faster than FP32 (measured: docs/targets/ort.md,
    # 7-bit dense weights).
    # the QDQ form runs on ONNX Runtime's integer kernels (its QDQ fusions: QLinearConv, QGemm, ...), which
    # requantize in float: exact (within one code per op) wherever their u8 x s8 products do not saturate
    # (`exact_on_ort_here`)
    ort_kernels: bool = False
    rounding: str = "half_even"  # a key of ROUNDINGS
    gemm_rounding: str | None = None  # a linear layer's, where the target's kernel differs (None: `rounding`)
    # the graph input's quantization: x / s rounded half to even (ONNX QuantizeLinear) or half away from zero
    # (TFLite's QUANTIZE, TfLiteRound)
    input_rounding: str = "half_even"
    # lookup tables: f of each input code's value in float64, quantized half to even (tcc's own), or TFLite's
    # LUTPopulate: dequantize, f and rescale in float32, round half away (LOGISTIC / TANH in every LiteRT kernel)
    lookup_arithmetic: str = "float64"
    # average pools: requantize the window sum by s_in / (s_out n), or, input and output at one scale, TFLite's
    # rounded division of the sum of codes by n (half away from zero)
    pool_division: bool = False
    narrow_weights: bool = False  # weight codes in [-127, 127] (TFLite's int8 spec), not [-128, 127]
    float_outputs: bool = True  # a conv / gemm graph output is dequantized from its int32 accumulator
    fuse_patterns: bool = True  # x * g(x) as one lookup table (TFLite has no such op: LOGISTIC, then MUL)
    # the patterns (tcc.intops.PATTERNS names) computed as the gate's lookup, then an integer multiply, although
    # the rules could make them one lookup: a table's per-model choice (CalibrationTable.split_patterns; on
    # DeepLabV3 the hard-swish of two roundings is the closer one: docs/notes/segmentation.md)
    split_patterns: tuple[str, ...] = ()
    # channel_scale (PReLU, layer scale): "exact", each factor its own fixed-point multiplier, or "int8", the factor
    # as int8 codes as TFLite's kernels store it (PRELU's alpha at one scale, a 1x1 depthwise conv's weights)
    channel_factors: str = "exact"
    shared_kinds: tuple[str, ...] = ()  # more kinds whose output takes the input's scale (TFLite: global pooling,
    # a standalone clamp: MAXIMUM / MINIMUM on one grid)
    # ops whose output quantization is fixed by the target (lookups, softmax): ONNX op -> (scale, zero point)
    fixed_outputs: tuple[tuple[str, float, int], ...] = ()
    # the integer softmax's arithmetic: "exp_table", tcc's own (a table of exp of code distances, one integer
    # division per row: tcc.quant.intgraph.node_constants), or "gemmlowp", LiteRT's reference int8 SOFTMAX
    # (gemmlowp fixed point, output at 1/256 and -128: tcc.quant.intgraph.gemmlowp)
    softmax: str = "exp_table"
    # float islands (tcc.quant.table.placement): the target can run a node of an INT8 model in float (inputs
    # dequantized, outputs quantized again). ORT, TVM and TFLite run float ops beside integer ones; Pulsar2's
    # config pins layers to FP32 (`quant.layer_configs`); Pulsar v1's documented config has no per-layer precision
    float_ops: bool = True
    # kinds of the integer op table whose integer form this target's kernels do not compute: a float island here
    # (where float_ops allows one, else refused). Softmax: ONNX Runtime's QLinearSoftmax rounds otherwise than
    # either of tcc's forms (`softmax`), and the NPUs' toolchains quantize it themselves
    float_kinds: tuple[str, ...] = ()
    # a float island also computes the elementwise activation that alone reads its output, so that the island's output
    # is quantized once, after the activation (tcc.quant.intgraph.match: an instance norm's output quantized before
    # its LeakyReLU cost MONAI's U-Nets more than any other quantization: docs/notes/dense-prediction.md). TFLite's
    # island is the kind's own float builtin (backends/tflite), so there the activation stays its own node
    island_activations: bool = True
    # a conv / gemm whose output only float islands read gives them its int32 accumulator dequantized (as a float
    # graph output: float_outputs), no 8-bit rounding between: on MONAI's DynUNet the conv outputs quantized before
    # their instance norms cost 0.018 of mean output cosine (docs/notes/dense-prediction.md). Not on ORT: without a
    # QuantizeLinear after it, ORT runs the conv in float on its dequantized input and weights (DynUNet at 96 x 96,
    # 1 thread: 33.7 ms against 11.9 ms, FP32 28.3 ms; its ConvInteger is slower still). TFLite's convs write int8
    # only; the NPUs' toolchains quantize every tensor they compute in integers
    accumulators_into_islands: bool = True
    # a float division's divisor is never an 8-bit code: the nodes that only move it or add a constant to it (an eps)
    # run in float, back to and including the node that computes it (tcc.quant.intgraph.match._divisor_floats). A
    # divisor near zero rounded to code 0 makes the quotient |x| / eps: EfficientViT's linear attention divides by
    # a sum of products plus 1e-15, and its quantized quotients reached 3.8e17 (docs/notes/dense-prediction.md).
    # TFLite's islands are the kind's own float builtins, which tcc lowers for the float-only kinds alone; the NPUs'
    # toolchains quantize every tensor they compute
    float_divisors: bool = True
    # a node that writes a graph output and computes its codes (not a conv / gemm: float_outputs; not one that only
    # moves codes) is a float island on its dequantized inputs (tcc.quant.intgraph.match._output_floats): ONNX
    # Runtime's QDQ graph has no QuantizeLinear after a graph output (tcc.quant.lower.qdq), so no integer kernel
    # forms there and ORT computes the op in float. Requantized to the output's calibrated range instead, the
    # reference clipped what ORT did not: MONAI UNet's last residual add, 12 LSB apart, failed its build's
    # self-check (docs/notes/census-rivals.md)
    float_graph_outputs: bool = False
    # a transposed convolution computed by the integer conv: one Conv of its stride's phases, interleaved
    # (tcc.passes.conv_transpose, in the graph the rules quantize). The NPUs' toolchains take ConvTranspose itself
    transposed_conv_as_conv: bool = True
    # the widths an activation tensor may have (a table entry's `bits`): 16 where the target's integer kernels take
    # int16 codes (tcc's TVM lowering: every kind widens its codes anyway; TFLite's 16x8 mode: `wide` says which
    # kinds and how). ORT's integer kernels (QLinearConv, ConvInteger) take 8-bit activations only; the NPUs' int16
    # is not modelled here
    activation_bits: tuple[int, ...] = (8,)
    # an average pool before a 1 x 1 conv (tcc.passes.pool) is one `pooled_conv` node on the exact window sums of
    # its input's codes (tcc's TVM kernels: two dot products of 8-bit digits of the sums). False: the pool is an
    # 8-bit tensor of its own, then the conv: ORT's and TFLite's integer convs read 8-bit codes only (ORT's
    # alternatives, slower or less close, measured: docs/notes/pool-before-conv.md, Tried, not kept), and the NPUs'
    # toolchains quantize every tensor they are given
    pooled_conv: bool = True
    wide: WideRules = WideRules()  # the 16-bit conventions where activation_bits has 16

    def fuses(self, pattern: str) -> bool:
        """Whether the pattern x * g(x) named `pattern` is one lookup under these rules."""
        return self.fuse_patterns and pattern not in self.split_patterns

    def splitting(self, patterns: Iterable[str]) -> TargetRules:
        """These rules with `patterns` computed in two ops (the same rules when there are none)."""
        patterns = tuple(sorted(set(patterns)))
        return replace(self, split_patterns=patterns) if patterns != self.split_patterns else self

    def takes_activation_bits(self, bits: int) -> bool:
        """Whether a table entry of `bits` bits runs here: one of `activation_bits`, or 9..15 where 16 is one (a
        16-bit calibration narrows the grid of a tensor whose readers' int32 accumulators need the headroom,
        tcc.quant.calibrate: its codes stay int16)."""
        return bits in self.activation_bits or (16 in self.activation_bits and 8 < bits < 16)

    def fixed_outputs_at(self, bits: int) -> tuple[tuple[str, float, int], ...]:
        """The outputs the target fixes for activations of `bits` bits (ONNX op, scale, zero point)."""
        return self.wide.fixed_outputs if bits > 8 and 16 in self.activation_bits else self.fixed_outputs

    def wide_for(self, kind: str, attrs: dict, weight: np.ndarray) -> WideRules:
        """The 16-bit conventions of one conv / gemm layer (`kind`, its attrs and weight codes in the integer op
        table's layout): the depthwise ones where the rules give depthwise convs their own."""
        if self.wide.depthwise is not None and kind == "conv" and _depthwise(attrs, weight):
            return self.wide.depthwise
        return self.wide

    def weight_bits(self, op_type: str, attrs: dict, weight: np.ndarray) -> int:
        return 8 if op_type == "Conv" and _depthwise(attrs, weight) else self.dense_weight_bits

    def exact_on_every_cpu(self) -> bool:
        """Whether ONNX Runtime's integer kernels compute what these rules describe on every CPU: rules of ORT's
        kernels whose dense weights keep within 7 bits (255 x 128 fits the int16 pair sums of x86 without VNNI)."""
        return self.ort_kernels and self.dense_weight_bits <= 7

    def exact_on_ort_here(self) -> bool:
        """Whether ONNX Runtime's integer kernels on this machine compute what these rules describe: on every CPU
        (`exact_on_every_cpu`), or, for 8-bit dense weights, on a CPU whose u8 x s8 products do not saturate
        (tcc.measure.machine.u8s8_exact)."""
        return self.exact_on_every_cpu() or (self.ort_kernels and u8s8_exact())


def _depthwise(attrs: dict, weight: np.ndarray) -> bool:
    """A conv with one input channel per group (OIHW weights: I == 1) and more than one group."""
    return int(attrs.get("group", 1)) > 1 and weight.shape[1] == 1


RULES: dict[str, TargetRules] = {
    r.name: r
    for r in [
        TargetRules(
            "ort",
            "ONNX Runtime QDQ: u8 activations (non-negative ones at zero point 0; signed ones at 128, or with the "
            "asymmetric step over their clipped range), s8 per-channel weights, 7-bit dense weights",
            unsigned_ok=True,
            split_mixed_groups=True,
            signed_as_u8=True,
            ranged=True,
            kernel_rewrites=True,
            dense_weight_bits=7,
            ort_kernels=True,
            float_kinds=("softmax",),
            pooled_conv=False,
            accumulators_into_islands=False,
            float_graph_outputs=True,
        ),
        TargetRules(
            "tvm",
            "tcc's TVM integer kernels: s8 / u8 activations (zero point 0), or s16 ones "
            "(`tcc calibrate --activation-bits 16`), s8 per-channel weights",
            unsigned_ok=True,
            activation_bits=(8, 16),
        ),
        TargetRules(
            "tflite",
            "TFLite int8 (its quantization spec; LiteRT's reference kernels bit for bit): asymmetric "
            "int8 activations, symmetric per-channel int8 weights in [-127, 127], gemmlowp rounding (FULLY_CONNECTED: "
            "one rounding); "
            "or its 16x8 mode (`--activation-bits 16`): int16 activations at zero point 0, int64 bias",
            unsigned_ok=False,
            asymmetric=True,
            rounding="gemmlowp",
            gemm_rounding="double_half_away",
            input_rounding="half_away",
            lookup_arithmetic="float32",
            pool_division=True,
            narrow_weights=True,
            float_outputs=False,
            fuse_patterns=False,
            shared_kinds=("global_avg_pool", "clamp"),
            channel_factors="int8",
            fixed_outputs=(("Sigmoid", 1 / 256, -128), ("Tanh", 1 / 128, 0), ("Softmax", 1 / 256, -128)),
            # LiteRT's int8 SOFTMAX, bit for bit, where softmax is integer (`tflite-int`); here a float island,
            # faster and closer to FP32 on LiteRT's default kernels (measured: docs/notes/attention-int8.md)
            softmax="gemmlowp",
            float_kinds=("softmax",),
            island_activations=False,
            accumulators_into_islands=False,
            float_divisors=False,
            pooled_conv=False,
            # LiteRT's 16x8 mode (`--activation-bits 16`): int16 activations at zero point 0, int8 per-channel
            # weights, int64 bias and accumulators for CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED,
            # requantized by the int64 MultiplyByQuantizedMultiplier; pools, concatenation, reshape, transpose,
            # slices, splits and clamps move int16 codes by their int8 rules; ADD, MUL and BATCH_MATMUL at
            # int16; LOGISTIC by its int16 kernel (a 256-entry table of sigmoid(i / 24) interpolated, output at
            # 2^-15); softmax and the norms float islands. Kinds measured bit for bit against LiteRT's reference
            # kernels (tests/backends/test_tflite16.py); the others are refused at 16 bits before any work
            activation_bits=(8, 16),
            wide=WideRules(
                kinds=(
                    "conv",
                    "gemm",
                    "max_pool",
                    "avg_pool",
                    "global_avg_pool",
                    "concat",
                    "reshape",
                    "transpose",
                    "slice",
                    "split",
                    "add",
                    "mul",
                    "matmul",
                    "lookup",
                    "channel_scale",
                    "clamp",
                ),
                lookups=("Sigmoid",),
                fixed_outputs=(("Sigmoid", 2.0**-15, 0),),
                matmul_rounding="tflite_int64",
                matmul_accumulator_bits=48,
                # FULLY_CONNECTED (per channel) rounds acc x its double scale once, half away,
                # as at 8 bits
                rounding="tflite_int64",
                gemm_rounding="double_half_away",
                bias_bits=64,
                accumulator_bits=48,
                symmetric=True,
            ),
        ),
        # Axera's NPUs, from their toolchains' public docs (AXERA-TECH/pulsar-docs, pulsar2-docs(-en), QAT.axera;
        # tcc.backends.ax.chips cites them per chip). Documented: activations unsigned 8-bit (Pulsar v1
        # `input_feature_type: UINT8`; Pulsar2 `data_type` default U8, per tensor, asymmetric: its quant_axmodel.json
        # says PER_TENSOR, ASYMMETRICAL, quant_min 0), weights signed 8-bit (`weight_type: INT8`, `weight_data_type`
        # S8), Pulsar2's conv bias S32 at s_in * s_w (`conv_bias_data_type` S32). From Axera's own QDQ exporter for
        # Pulsar2: weights per output channel, symmetric, in [-127, 127]. Not documented: the rounding (half to even
        # assumed, ONNX QuantizeLinear's; Pulsar2's docs say its board and its reference differ by at most one code).
        # tcc's tables use two points of the U8 grid: zero point 0 (non-negative tensors) and 128 (signed ones).
        TargetRules(
            "ax620",
            "Axera AX620A/U NPU (Pulsar v1): u8 activations per tensor, s8 per-channel weights in "
            "[-127, 127] (its own calibration: tcc predicts it with tcc's scales)",
            unsigned_ok=True,
            signed_as_u8=True,
            narrow_weights=True,
            float_ops=False,
            float_kinds=("softmax",),
            pooled_conv=False,
            transposed_conv_as_conv=False,
            accumulators_into_islands=False,
            float_divisors=False,
        ),
        TargetRules(
            "pulsar2",
            "Axera AX620E / AX650 NPUs (Pulsar2): u8 asymmetric activations per tensor, s8 "
            "per-channel symmetric weights in [-127, 127], s32 conv bias",
            unsigned_ok=True,
            signed_as_u8=True,
            narrow_weights=True,
            float_kinds=("softmax",),
            pooled_conv=False,
            transposed_conv_as_conv=False,
            accumulators_into_islands=False,
            float_divisors=False,
        ),
    ]
}
# LiteRT's other 16x8 path: CONV_2D and FULLY_CONNECTED with int32 bias (`quantized_bias_type` INT32: without it
# LiteRT reads a 16x8 bias as int64). conv.cc's
# EvalQuantizedPerChannel16x8 runs it on optimized_integer_ops::ConvPerChannel (im2col + gemm) when every zero point
# is 0, and fully_connected.cc on ruy for an int16 input at zero point 0 with a non-int64 bias; the reference kernels
# accumulate in int32 and requantize with the int32 MultiplyByQuantizedMultiplier (gemmlowp's two roundings; FC: one,
# as at 8 bits). int32 accumulators: the 16-bit calibration narrows a grid where one could overflow
# (tcc.quant.intgraph.widths.fit_accumulators). DEPTHWISE_CONV_2D at 16x8 takes an int64 bias only: the `tflite`
# rules'.
RULES["tflite16-i32"] = replace(
    RULES["tflite"],
    name="tflite16-i32",
    description="TFLite's 16x8 mode with int32 bias (`--target tflite16-i32 --activation-bits 16`): int16 "
    "activations at zero point 0, int8 per-channel weights, int32 bias and accumulators for CONV_2D and "
    "FULLY_CONNECTED (LiteRT's optimized 16x8 kernels), int64 for DEPTHWISE_CONV_2D",
    activation_bits=(16,),
    wide=replace(
        RULES["tflite"].wide, rounding="gemmlowp", bias_bits=32, accumulator_bits=32, depthwise=RULES["tflite"].wide
    ),
)

# ONNX Runtime's QDQ form with 8-bit dense weights, as its own quantize_static writes them by default: for the CPUs
# whose u8 x s8 kernels sum products exactly (x86 with AVX-VNNI / AVX-512 VNNI / AMX, ARM64), where the `ort` rules'
# 7-bit dense weights give away one bit of every dense layer. A separate target, so that an artifact never depends on
# the machine that built it; its build refuses, before any work, to self-check on a CPU that saturates them
RULES["ort-w8"] = replace(
    RULES["ort"],
    name="ort-w8",
    description="ONNX Runtime QDQ with 8-bit dense weights (`--target ort-w8`), exact on CPUs whose u8 x s8 kernels "
    "do not saturate (x86 with AVX-VNNI / AVX-512 VNNI, ARM64): the ort rules otherwise",
    dense_weight_bits=8,
)

# TFLite with integer builtins only (int8-only runtimes and delegates: LiteRT for Microcontrollers, NPU delegates):
# no float islands, softmax as LiteRT's int8 SOFTMAX; a node without an int8 builtin (LayerNorm) is refused
RULES["tflite-int"] = replace(
    RULES["tflite"],
    name="tflite-int",
    description="TFLite with int8 builtins only (`--target tflite-int`): the tflite rules without float islands, "
    "softmax as LiteRT's int8 SOFTMAX (output at 1/256, zero point -128)",
    float_ops=False,
    float_kinds=(),
    pooled_conv=False,
)


# The rules a calibration table is read under when it records none (`target`): only a hand-made table; every table
# tcc writes records the rules it was made under, and its readers take them from it (CalibrationTable.rules).
# tcc's own integer kernels: every kind of the integer op table, 8- and 16-bit activations.
DEFAULT_RULES = "tvm"


def get_rules(rules: str | TargetRules) -> TargetRules:
    """A rules object from its name (what a table records) or itself."""
    if isinstance(rules, TargetRules):
        return rules
    try:
        return RULES[rules]
    except (KeyError, TypeError):
        raise DataError(
            f"unknown calibration target {rules!r} (quantization rules); expected one of {', '.join(RULES)}"
        ) from None


def rules_for(target: str) -> TargetRules:
    """The rules for a `tcc calibrate --target` value: a rules name (ort, tvm, tflite, ax620, pulsar2) or a build target
    (`arm-a7` -> the rules its entry in the target registry names), so a table is made for the target one builds."""
    if target in RULES:
        return RULES[target]
    entry = TARGETS.get(target)
    if entry is not None and entry.rules:
        return RULES[entry.rules]
    known = sorted(set(RULES) | {t for t, e in TARGETS.items() if e.rules})
    raise DataError(f"unknown calibration target {target!r}; expected one of {', '.join(known)}")
