"""The op table's attention-score ops: what windowed attention adds to q k^T before its softmax.

`relative_position_bias` adds a learned bias looked up by the relative offset of two positions in a window (Swin,
MaxViT: a table of (2h - 1)(2w - 1) rows, one column per head, gathered by a constant index); `window_mask` adds
Swin's shifted-window mask (-100 between positions that the cyclic shift brought from different regions). Both take
the scores [..., heads, N, N] (N = h w positions of a window) and return them plus a constant or learned tensor.
The index and the mask are computed here with numpy, once, from the arguments: the same values for the PyTorch
buffer and the ONNX initializer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ShapeError
from .base import MAX_SPATIAL, REQUIRED, Arg, Attrs, OnnxEmit, OpDef, ParamSpec, Shape, TorchEmit

if TYPE_CHECKING:
    import numpy as np

MASKED = -100.0  # torchvision's value for positions of different regions (softmax makes them ~e^-100)


def relative_position_index(h: int, w: int) -> np.ndarray:
    """[h w, h w] int64: for positions i, j of an h x w window, the row of their offset (dy, dx) in a table of
    (2h - 1)(2w - 1) rows, (dy + h - 1)(2w - 1) + dx + w - 1 (torchvision's Swin and MaxViT)."""
    import numpy as np  # deferred for start-up: `import tcc` loads no numpy (tools/setup_arm.sh runs without it)

    coords = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij")).reshape(2, -1)
    offsets = coords[:, :, None] - coords[:, None, :]
    index: np.ndarray = ((offsets[0] + h - 1) * (2 * w - 1) + offsets[1] + w - 1).astype(np.int64)
    return index


def shifted_window_mask(size: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]) -> np.ndarray:
    """[windows, 1, N, N] float32: 0 between positions of one region of the shifted map, -100 between regions, as
    torchvision's shifted_window_attention builds it (regions by its slices, windows in row-major order)."""
    import numpy as np  # deferred for start-up, as above

    (H, W), (h, w), (sh, sw) = size, window, shift
    label = np.zeros((H, W), np.float32)
    count = 0
    for rows in ((0, -h), (-h, -sh), (-sh, None)):
        for cols in ((0, -w), (-w, -sw), (-sw, None)):
            label[rows[0] : rows[1], cols[0] : cols[1]] = count
            count += 1
    label = label.reshape(H // h, h, W // w, w).transpose(0, 2, 1, 3).reshape(-1, h * w)
    differs = label[:, None, :] != label[:, :, None]
    return np.where(differs, np.float32(MASKED), np.float32(0.0))[:, None]


def _window_of(a: Attrs, shapes: list[Shape], what: str) -> tuple[int, int]:
    s = shapes[0]
    h, w = a["window"]
    if len(s) < 3 or s[-1] != s[-2] or s[-1] != h * w:
        raise ShapeError(
            f"{what} takes attention scores [..., heads, N, N] with N = {h} x {w} = {h * w} positions of "
            f"a window, got {list(s)}",
            "window",
        )
    return h, w


# ---------------------------------------------------------------------------------------------------- bias
def _bias_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    _window_of(a, shapes, "relative_position_bias")
    return a


def _bias_params(a: Attrs, shapes: list[Shape]) -> dict[str, ParamSpec]:
    h, w = _window_of(a, shapes, "relative_position_bias")
    n = h * w
    index_shape = (n * n,) if a["index_layout"] == "flat" else (n, n)
    return {
        "weight": ParamSpec(((2 * h - 1) * (2 * w - 1), shapes[0][-3])),
        "index": ParamSpec(index_shape, trainable=False, dtype="int64"),
    }


def _bias_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    from ..torch_ops import RelativePositionBias  # deferred for start-up: loads torch

    h, w = a["window"]
    index = relative_position_index(h, w)
    if a["index_layout"] == "flat":
        index = index.reshape(-1)
    return emit.module(RelativePositionBias(emit.in_shapes[0][-3], (h, w), index), x)


def _bias_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    """Gather the table by the index, [N, N, heads] -> [heads, N, N], added to the scores (a constant subgraph:
    ONNX Runtime and onnxsim fold it)."""
    h, w = a["window"]
    n, heads = h * w, emit.in_shapes[0][-3]
    index = emit.param("index", (n * n,))
    rows = emit.op("Gather", [emit.param("weight"), index], suffix="gather", axis=0)
    square = emit.op("Reshape", [rows, emit.const("square_shape", [n, n, heads])], suffix="square")
    bias = emit.op("Transpose", [square], suffix="bias", perm=[2, 0, 1])
    return emit.op("Add", [x, bias])


# ---------------------------------------------------------------------------------------------------- mask
def _mask_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    h, w = _window_of(a, shapes, "window_mask")
    (H, W), (sh, sw) = a["size"], a["shift"]
    if H % h or W % w:
        raise ShapeError(f"window_mask: the map {H} x {W} is not a whole number of {h} x {w} windows", "size")
    if not (0 <= sh < h and 0 <= sw < w):
        raise ShapeError(f"window_mask: the shift {[sh, sw]} must be smaller than the window {[h, w]}", "shift")
    windows = (H // h) * (W // w)
    s = shapes[0]
    if len(s) < 4 or s[-4] != windows:
        raise ShapeError(
            f"window_mask: scores [windows, heads, N, N] with {windows} windows of the {H} x {W} map, got {list(s)}",
            "size",
        )
    return a


def _mask_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    from ..torch_ops import AddConstant  # deferred for start-up: loads torch

    return emit.module(AddConstant(shifted_window_mask(a["size"], a["window"], a["shift"])), x)


def _mask_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    return emit.op("Add", [x, emit.const("mask", shifted_window_mask(a["size"], a["window"], a["shift"]), "float32")])


_WINDOW = Arg("window", "pair", REQUIRED, lo=1, hi=64, doc="the window's [h, w] (an int: square)")

ATTENTION_OPS = [
    OpDef(
        "relative_position_bias",
        (
            _WINDOW,
            Arg(
                "index_layout",
                "str",
                "flat",
                choices=("flat", "square"),
                doc="the index buffer as torchvision stores it: flat [N N] (Swin) or square [N, N] (MaxViT)",
            ),
        ),
        lambda a, s: [s[0]],
        _bias_torch,
        prepare=_bias_prepare,
        params=_bias_params,
        to_onnx=_bias_onnx,
        doc="scores + a learned bias per head looked up by the relative offset of the two positions in a window "
        "(Swin, MaxViT): parameter `weight` [(2h - 1)(2w - 1), heads] and the constant `index` buffer",
    ),
    OpDef(
        "window_mask",
        (
            Arg("size", "pair", REQUIRED, lo=1, hi=MAX_SPATIAL, doc="the map's [H, W] that was cut into windows"),
            _WINDOW,
            Arg("shift", "pair", REQUIRED, lo=0, hi=64, doc="the cyclic shift applied before the cut (roll by -shift)"),
        ),
        lambda a, s: [s[0]],
        _mask_torch,
        prepare=_mask_prepare,
        to_onnx=_mask_onnx,
        doc="scores [windows, heads, N, N] + Swin's shifted-window mask: -100 between positions the shift brought "
        "from different regions of the map, 0 within one",
    ),
]
