"""Weight codes: the integer codes of a weight under its calibration-table entry, the one definition that the QDQ
lowering, the quantized graph (so the integer reference and every backend lowering) and the calibration steps
share. Equation (8) per output channel, or the rounding that the table's rounding step chose and stored as one bit
per weight (tcc.quant.steps.rounding chooses it; this module reads and writes the stored form)."""

from __future__ import annotations

import base64

import numpy as np

from ...errors import CalibrationError
from .file import CalibrationTable
from .quantizer import quantize
from .records import TensorEntry


def code_range(bits: int, narrow: bool) -> tuple[int, int]:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return (lo + 1 if narrow else lo), hi


def rounded(table: CalibrationTable, name: str) -> bool:
    """Whether the table's rounding step chose the codes of weight `name` (tcc.quant.steps.rounding)."""
    return _stored_rounding(table, name) is not None


def _stored_rounding(table: CalibrationTable, name: str) -> str | None:
    """The rounding bits the table's rounding step stored for weight `name` (None: equation (8)'s rounding)."""
    rounding = table.step("rounding")
    return rounding.get("weights", {}).get(name) if rounding else None


def weight_codes(table: CalibrationTable, name: str, w: np.ndarray) -> np.ndarray:
    """The integer codes (int32) of weight `w` (as tcc.quant.table.steps.calibrated_parameters gives it) under its
    entry: equation (8) per output channel with the entry's bit width (8, or 7 where the target's kernels need
    headroom), or the rounding the table's rounding step chose."""
    t = table.tensors[name]
    bits, narrow, axis = t.get("bits", 8), bool(t.get("narrow_range")), t.get("axis", 0)
    _check_fits(name, t, np.shape(w), axis)
    stored = _stored_rounding(table, name)
    if stored is not None:
        return decode(stored, np.asarray(w, np.float32), table.weight_scale(name), axis, bits, narrow)
    codes = quantize(w, table.weight_scale(name), bits, True, axis)
    if narrow:  # symmetric codes [-(2^(b-1) - 1), 2^(b-1) - 1] (TFLite's int8 weights)
        codes = np.maximum(codes, -(1 << (bits - 1)) + 1)
    return codes


def _check_fits(name: str, entry: TensorEntry, shape: tuple[int, ...], axis: object) -> None:
    """One scale per channel along the weight's channel axis, as quantize_graph checks it: the QDQ lowering reads the
    table here without that check first (a damaged table was numpy's broadcast error in `tcc diff`)."""
    if not isinstance(axis, int) or isinstance(axis, bool) or not 0 <= axis < len(shape):
        raise CalibrationError(
            f"calibration table: weight {name!r}: channel axis {axis!r} is not one of its "
            f"{len(shape)}; recalibrate with `tcc calibrate`"
        )
    scale = entry.get("scale")
    if not isinstance(scale, list) or len(scale) != shape[axis]:
        raise CalibrationError(
            f"calibration table: weight {name!r} has {shape[axis]} output channels, the table "
            f"{len(scale) if isinstance(scale, list) else scale!r} scales; recalibrate with "
            "`tcc calibrate`"
        )


def encode(codes: np.ndarray, w: np.ndarray, scale: np.ndarray, axis: int) -> str:
    """One bit per weight, whether its code is above floor(w / s), packed and base64-encoded (C order)."""
    up = codes > np.floor(w / _along(scale, w, axis))
    return base64.b64encode(np.packbits(up.ravel()).tobytes()).decode("ascii")


def decode(bits_b64: str, w: np.ndarray, scale: np.ndarray, axis: int, bits: int, narrow: bool) -> np.ndarray:
    """The codes a stored rounding gives `w` at `scale` (int32), clipped to the code range."""
    packed = np.frombuffer(base64.b64decode(bits_b64, validate=True), np.uint8)
    if len(packed) != (w.size + 7) // 8:
        raise ValueError(f"{len(packed) * 8} rounding bits stored for {w.size} weights")
    up = np.unpackbits(packed, count=w.size).reshape(w.shape)
    lo, hi = code_range(bits, narrow)
    codes: np.ndarray = np.clip(np.floor(w / _along(scale, w, axis)) + up, lo, hi).astype(np.int32)
    return codes


def _along(scale: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    shape = [1] * w.ndim
    shape[axis] = -1
    return np.asarray(scale, np.float32).reshape(shape)
