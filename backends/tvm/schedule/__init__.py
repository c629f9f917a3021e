"""Default CPU schedules for the TVM backend: tcc's own dlight rules for channels-last conv nets.

TVM 0.27's Relax legalizes conv2d, pooling and concat to TOPI compute definitions and ships no CPU schedule for
them: compiled untuned they are plain scalar loop nests (DDSNet 29x slower than ONNX Runtime, measured), and
MetaSchedule needs minutes of tuning per model on the machine itself (impossible for an ARM board built here).
These rules give every such function a good schedule without search, for any CPU the target registry knows:

- the graph is converted to NHWC (`LAYOUT`), so every conv, depthwise conv and pool reads and writes channels
  innermost: one vector register holds `lanes` consecutive channels of one pixel;
- `WindowReduction` schedules each reduction (conv2d, group/depthwise conv2d, max/avg pool, global mean, dense)
  as a register-blocked micro-kernel: an output tile of X pixels x F channels (X * F / lanes accumulators, chosen
  to fit the target's vector registers) is accumulated in registers over the whole reduction (ky, kx, c_in),
  broadcasting one input value (or loading one vector of inputs, depthwise) against one vector of weights per
  step; the bias / ReLU / average epilogue is fused into the write-back of the tile; rows run in parallel;
- `A64FloatConv` takes a dense FP32 conv on the Cortex-A53 class (`aarch64`) first: the same register tile, its
  whole window summed by an assembly kernel written for the A53's in-order issue (backends/tvm/fp32/a64_tile.py;
  a width no tile divides is computed wider and cropped, passes/whole_tiles.py);
- `Injective` vectorizes what is left (concat, transposes, padding, elementwise) along its contiguous axis.

Vectorization runs across output channels, never along a reduction, so every output element is summed in the
same order whatever the vector width: host and ARM builds of one model differ only by FMA contraction.
A function no rule matches keeps TVM's default lowering; one MetaSchedule has tuned (`--tune`) is left alone.

Like TVM's own dlight, each rule is one `dlight.ScheduleRule` class at module level (`Rule` is their common
base), so a rule can be imported, applied and tested alone; `default_schedule_pass()` applies them in order,
`layout_passes()` converts the layout: `float_rules`, `float_tile` and `int8_rules` hold the rules (the INT8
kernel variants' own rules live with their variants, backends/tvm/int8/variants/, and come in the variants table's
order), `tiles`
their register tiles, `loops` the primitives they share. This package imports TVM: only TVM code paths import it
(compile.py, tune.py, the INT8 lowering).
"""

from __future__ import annotations

from tvm import relax
from tvm.s_tir import dlight as dl

from .float_rules import Injective, RowReduction, WindowReduction
from .float_tile import A64FloatConv
from .int8_rules import QuantizeInput

# Relax ConvertLayout: conv2d as NHWC data / HWIO weights; pooling, concat and elementwise ops follow the data; a
# transposed conv stays NCHW (Relax legalizes conv2d_transpose in NCHW only: following NHWC data it reached the VM
# codegen unlowered on aarch64)
LAYOUT = {"relax.nn.conv2d": ["NHWC", "HWIO"], "relax.nn.conv2d_transpose": ["NCHW", "IOHW"]}


def default_schedule_pass():
    """The module pass applying tcc's rules (dlight ApplyDefaultSchedule) to every PrimFunc not yet scheduled: the
    INT8 kernel variants' rules in the variants table's order (Int8DotConv, Int8DepthwiseDot, Int8DepthwisePairs,
    Int8Depthwise), then RowReduction, A64FloatConv, WindowReduction, QuantizeInput and Injective."""
    from ..int8.variants import schedule_rules  # deferred: the variants' modules import this package's loops

    return dl.ApplyDefaultSchedule(
        *schedule_rules(), RowReduction(), A64FloatConv(), WindowReduction(), QuantizeInput(), Injective()
    )


def layout_passes():
    """Relax passes that put the graph in tcc's CPU layout (before legalization)."""
    return [relax.transform.ConvertLayout(LAYOUT), relax.transform.Normalize()]
