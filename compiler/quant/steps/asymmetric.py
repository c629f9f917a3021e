"""Asymmetric activation grids: a calibration step on the final scales, for rules that take any u8 zero point
(`ranged`: ONNX Runtime's).

A signed tensor written as u8 at zero point 128 spends its 255 steps on [-T, T], T its threshold. A hard-swish
output lives on [-0.375, 13], a conv output before a ReLU6 on a lopsided range too: half the grid or more then
holds values the tensor never takes. This step gives each such tensor 255 steps over its clipped range

    lo = max(min, -T),  hi = min(max, T),  s = (hi - lo) / 255,  zero point = round(-lo / s)

(the same clipping, never a coarser step; ONNX Runtime's quantize_static form). Tensors that share a grid (a
concat's inputs and output, pools, reshapes: the table's groups) share the union's range; a non-negative member
kept at zero point 0 (its ReLU stays fusable) takes the new step, which still covers its [0, max]. A tightly fitted
range has no slack on its short side: an input beyond the calibration data's range clips there, where the symmetric
grid had room (measured: docs/notes/asymmetric-activations.md). So the step is chosen per model on held-back
samples like bias correction (tcc.quant.choose), unless the command line or the spec fixes it.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..table.file import CalibrationTable
from ..table.records import FIXED_BY_TARGET

SIGNED_AS_U8 = 128  # the zero point of a signed tensor on the symmetric u8 grid (TargetRules.signed_as_u8)


def asymmetric_grids(table: CalibrationTable) -> list[str]:
    """Puts the table's signed 8-bit tensors (u8 at zero point 128) on grids over their clipped ranges, in place;
    returns the tensors whose zero point moved."""
    tensors = table.tensors
    grids: dict[object, list[str]] = defaultdict(list)  # a group's members share one grid; others stand alone
    for name, e in tensors.items():
        if e["kind"] == "activation" and e["bits"] == 8 and e["method"] != FIXED_BY_TARGET:
            grids[("group", e["group"]) if "group" in e else name].append(name)
    moved = []
    for members in grids.values():
        signed = [n for n in members if tensors[n]["zero_point"] == SIGNED_AS_U8 and not tensors[n]["signed"]]
        if not signed:
            continue
        t = float(tensors[signed[0]]["scale"]) * (SIGNED_AS_U8 - 1)  # the symmetric grid's threshold
        lo = max(min(tensors[n]["min"] for n in members), -t)
        hi = min(max(tensors[n]["max"] for n in members), t)
        if not lo < 0 < hi:  # nothing on one side of 0: the symmetric grid is as good
            continue
        step = (hi - lo) / 255
        zp = int(np.clip(np.rint(-lo / step), 0, 255))
        for n in members:
            tensors[n]["scale"] = step
        for n in signed:
            tensors[n]["zero_point"], tensors[n]["symmetric"] = zp, False
            moved.append(n)
    return moved
