"""The op table's tensor ops: what attention and token models are written with (reshape, permute, transpose,
flatten, select, slice, roll, mean, matmul of two activations, a learned tensor).

Shapes are per sample and may have any rank (`(S, D)` tokens, `(H, S, d)` heads); the batch axis stays first and
is never reshaped, moved or sliced. Axes are NCHW axes as everywhere in the table: 0 the batch, 1 the first
per-sample axis, negative axes count from the end. `ops.py` puts these `OpDef`s in the one table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ShapeError
from .base import REQUIRED, Arg, Attrs, OnnxEmit, OpDef, ParamSpec, Shape, TorchEmit, axis_of, torch_modules

MAX_RANK = 8  # per-sample axes (a window partition has 5, MobileViT's unfold 5)
_AXES: dict[str, Any] = dict(lo=-MAX_RANK, hi=MAX_RANK)


def _axes_of(axes: Iterable[int], shape: Shape, what: str, arg: str) -> list[int]:
    """Per-sample indices of NCHW `axes` (the batch axis refused), each once."""
    out = [axis_of({"axis": a}, [shape]) for a in axes]
    if len(set(out)) != len(out):
        raise ShapeError(f"{what}: axes {list(axes)} name an axis twice", arg)
    return out


def _shape_str(shape: Shape) -> str:
    return str(list(shape))


# ---------------------------------------------------------------------------------------------------- reshape
def _reshape_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    shape, n = list(a["shape"]), math.prod(shapes[0])
    if len(shape) > MAX_RANK:
        raise ShapeError(f"reshape to rank {len(shape)}: at most {MAX_RANK} per-sample axes", "shape")
    unknown = [i for i, d in enumerate(shape) if d == -1]
    if len(unknown) > 1 or any(d == 0 or d < -1 for d in shape):
        raise ShapeError(f"reshape shape {shape}: each dimension is positive, or one of them -1 (inferred)", "shape")
    known = math.prod(d for d in shape if d != -1)
    if unknown:
        if n % known:
            raise ShapeError(
                f"cannot reshape {_shape_str(shapes[0])} ({n:,} elements) to {shape}: {n:,} is not a "
                f"multiple of {known:,}",
                "shape",
            )
        shape[unknown[0]] = n // known
    if math.prod(shape) != n:
        raise ShapeError(
            f"cannot reshape {_shape_str(shapes[0])} ({n:,} elements) to {shape} ({math.prod(shape):,} elements)",
            "shape",
        )
    return {**a, "resolved": tuple(shape)}


def _reshape_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    from ..torch_ops import reshape  # deferred for start-up: loads torch

    return emit.call(reshape, x, a["resolved"])


def _reshape_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    return emit.op("Reshape", [x, emit.const("shape", [-1, *a["resolved"]])])


# ---------------------------------------------------------------------------------------------------- permute
def _permute_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    perm, rank = list(a["perm"]), len(shapes[0])
    if perm and perm[0] == 0 and all(p >= 0 for p in perm):  # the full NCHW form: [0, 2, 1]
        if sorted(perm) != list(range(rank + 1)):
            raise ShapeError(
                f"perm {perm} is not a permutation of the axes 0..{rank} of a rank-{rank + 1} tensor "
                f"({_shape_str(shapes[0])} per sample)",
                "perm",
            )
        full = perm
    elif all(p < 0 for p in perm):  # the trailing form: [-2, -3, -1] reorders the last 3 axes, the rest stay
        k = len(perm)
        if sorted(perm) != list(range(-k, 0)) or k > rank:
            raise ShapeError(
                f"perm {perm} is not a permutation of the last {k} axes (-{k}..-1) of a rank-{rank + 1} "
                f"tensor ({_shape_str(shapes[0])} per sample)",
                "perm",
            )
        full = list(range(rank + 1 - k)) + [rank + 1 + p for p in perm]
    else:
        raise ShapeError(
            f"perm {perm}: write every axis with the batch first ([0, 2, 1]) or only trailing axes as "
            f"negative numbers ([-1, -2]); the batch axis 0 stays first",
            "perm",
        )
    return {**a, "full": tuple(full)}


def _permuted(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    return [tuple(shapes[0][p - 1] for p in a["full"][1:])]


def _permute_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.call(torch.permute, x, a["full"])


def _permute_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    return emit.op("Transpose", [x], perm=list(a["full"]))


def _transpose_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    if len(a["axes"]) != 2:
        raise ShapeError(f"transpose swaps two axes, got {list(a['axes'])}", "axes")
    i, j = _axes_of(a["axes"], shapes[0], "transpose", "axes")
    full = list(range(len(shapes[0]) + 1))
    full[i + 1], full[j + 1] = full[j + 1], full[i + 1]
    return {**a, "full": tuple(full)}


# ---------------------------------------------------------------------------------------------------- flatten
def _flatten_range(a: Attrs, shape: Shape) -> tuple[int, int]:
    start, end = _axes_of([a["start"]], shape, "flatten", "start")[0], _axes_of([a["end"]], shape, "flatten", "end")[0]
    if start > end:
        raise ShapeError(f"flatten from axis {a['start']} to axis {a['end']}: the start comes after the end", "start")
    return start, end


def _flatten_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    s = shapes[0]
    start, end = _flatten_range(a, s)
    return [(*s[:start], math.prod(s[start : end + 1]), *s[end + 1 :])]


def _whole(a: Attrs, shape: Shape) -> bool:
    """flatten of every per-sample axis, the classifier's [C, H, W] -> [F] (written as before: Flatten axis 1)."""
    return _flatten_range(a, shape) == (0, len(shape) - 1)


def _flatten_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    if _whole(a, emit.in_shapes[0]):
        return emit.call(torch.flatten, x, 1)
    start, end = _flatten_range(a, emit.in_shapes[0])
    return emit.call(torch.flatten, x, start + 1, end + 1)


def _flatten_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    if _whole(a, emit.in_shapes[0]):
        return emit.op("Flatten", [x], axis=1)
    return emit.op("Reshape", [x, emit.const("shape", [-1, *emit.out_shapes[0]])])


# ---------------------------------------------------------------------------------------------------- select / slice
def _select_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    ax = _axes_of([a["axis"]], shapes[0], "select", "axis")[0]
    size, index = shapes[0][ax], a["index"]
    if not -size <= index < size:
        raise ShapeError(
            f"select index {index} is out of range for axis {a['axis']} of size {size} "
            f"({_shape_str(shapes[0])} per sample)",
            "index",
        )
    return {**a, "at": ax, "position": index % size}


def _select_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    if len(shapes[0]) < 2:
        raise ShapeError(f"select removes an axis; a {_shape_str(shapes[0])} input has only one per sample", "axis")
    return [tuple(d for i, d in enumerate(shapes[0]) if i != a["at"])]


def _select_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.call(torch.select, x, a["at"] + 1, a["position"])


def _select_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    """A one-wide Slice, then a Reshape that drops the axis: plainer for the targets than a Gather with a scalar
    index (Pulsar2's Gather takes 1-D indices only; TVM's take warns on every one)."""
    if emit.opset < 10:
        return emit.op("Gather", [x, emit.const("index", a["position"])], axis=a["at"] + 1)
    p = a["position"]
    one = emit.op(
        "Slice",
        [x, emit.const("starts", [p]), emit.const("ends", [p + 1]), emit.const("axes", [a["at"] + 1])],
        suffix="slice",
    )
    return emit.op("Reshape", [one, emit.const("shape", [-1, *emit.out_shapes[0]])])


def _slice_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    ax = _axes_of([a["axis"]], shapes[0], "slice", "axis")[0]
    size = shapes[0][ax]
    start, stop, step = slice(a["start"], a["end"], a["step"]).indices(size)
    count = len(range(start, stop, step))
    if count == 0:
        raise ShapeError(
            f"slice [{a['start']}:{a['end']}:{a['step']}] of axis {a['axis']} (size {size}) is empty", "start"
        )
    return {**a, "at": ax, "bounds": (start, start + (count - 1) * step + 1, step), "count": count}


def _slice_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    return [tuple(a["count"] if i == a["at"] else d for i, d in enumerate(shapes[0]))]


def _slice_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    from ..torch_ops import slice_axis  # deferred for start-up: loads torch

    return emit.call(slice_axis, x, a["at"] + 1, *a["bounds"])


def _slice_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    emit.require(10, "inputs for its bounds (Slice)")
    start, stop, step = a["bounds"]
    ins = [x, emit.const("starts", [start]), emit.const("ends", [stop]), emit.const("axes", [a["at"] + 1])]
    return emit.op("Slice", ins + [emit.const("steps", [step])])


# ---------------------------------------------------------------------------------------------------- roll
def _roll_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    if len(a["shifts"]) != len(a["axes"]):
        raise ShapeError(
            f"roll needs one shift per axis, got shifts {list(a['shifts'])} and axes {list(a['axes'])}", "shifts"
        )
    axes = _axes_of(a["axes"], shapes[0], "roll", "axes")
    return {**a, "at": tuple(axes)}


def _roll_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    torch, nn, F = torch_modules()
    return emit.call(torch.roll, x, list(a["shifts"]), [ax + 1 for ax in a["at"]])


def _roll_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    """torch.roll as slices and concats: y = concat(x[size - s:], x[:size - s]) along each axis."""
    emit.require(10, "inputs for its bounds (Slice)")
    moves = [(ax, shift % emit.in_shapes[0][ax]) for ax, shift in zip(a["at"], a["shifts"])]
    moves = [(ax, s) for ax, s in moves if s]
    if not moves:
        return emit.op("Identity", [x])
    for k, (ax, shift) in enumerate(moves):
        size, tag = emit.in_shapes[0][ax], f"axis{ax + 1}"
        tail = emit.op(
            "Slice",
            [
                x,
                emit.const(f"{tag}_tail_starts", [size - shift]),
                emit.const(f"{tag}_tail_ends", [size]),
                emit.const(f"{tag}_axes", [ax + 1]),
            ],
            suffix=f"{tag}_tail",
        )
        head = emit.op(
            "Slice",
            [
                x,
                emit.const(f"{tag}_head_starts", [0]),
                emit.const(f"{tag}_head_ends", [size - shift]),
                f"{emit.name}/{tag}_axes",
            ],
            suffix=f"{tag}_head",
        )
        x = emit.op("Concat", [tail, head], axis=ax + 1, suffix=None if k == len(moves) - 1 else tag)
    return x


# ---------------------------------------------------------------------------------------------------- mean / sum
def _reduce_prepare(a: Attrs, shapes: list[Shape]) -> Attrs:
    return {**a, "at": tuple(sorted(_axes_of(a["axes"], shapes[0], "a reduction", "axes")))}


def _reduce_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    s = shapes[0]
    if not a["keepdims"] and len(a["at"]) == len(s):
        raise ShapeError(
            f"a reduction over every axis of {_shape_str(s)} without keepdims leaves no per-sample axis", "axes"
        )
    return [tuple(1 if i in a["at"] else d for i, d in enumerate(s) if a["keepdims"] or i not in a["at"])]


def _reduce_torch(fn: str) -> Callable[[TorchEmit, Attrs, Any], Any]:
    def lower(emit: TorchEmit, a: Attrs, x: Any) -> Any:
        torch, nn, F = torch_modules()
        return emit.call(getattr(torch, fn), x, [ax + 1 for ax in a["at"]], a["keepdims"])

    return lower


def _reduce_onnx(op_type: str, axes_input_from: int) -> Callable[[OnnxEmit, Attrs, str], str]:
    def lower(emit: OnnxEmit, a: Attrs, x: str) -> str:
        axes, keep = [ax + 1 for ax in a["at"]], int(a["keepdims"])
        if emit.opset >= axes_input_from:  # the axes became an input (ReduceSum: opset 13, the others: 18)
            return emit.op(op_type, [x, emit.const("axes", axes)], keepdims=keep)
        return emit.op(op_type, [x], axes=axes, keepdims=keep)

    return lower


def _reduce(name: str, doc: str, onnx: str, axes_input_from: int) -> OpDef:
    return OpDef(
        name,
        (Arg("axes", "ints", REQUIRED, **_AXES), Arg("keepdims", "bool", False)),
        _reduce_infer,
        _reduce_torch(name),
        prepare=_reduce_prepare,
        to_onnx=_reduce_onnx(onnx, axes_input_from),
        doc=doc,
    )


# ---------------------------------------------------------------------------------------------------- matmul
def _matmul_infer(a: Attrs, shapes: list[Shape]) -> list[Shape]:
    sa, sb = shapes
    if len(sa) < 2 or len(sb) < 2:
        raise ShapeError(
            f"matmul multiplies matrices: both inputs need at least 2 axes per sample, got "
            f"{_shape_str(sa)} and {_shape_str(sb)}"
        )
    if len(sa) != len(sb):  # the batch axis is implicit: shapes of two ranks would align it with a sample axis
        raise ShapeError(
            f"matmul of {_shape_str(sa)} and {_shape_str(sb)}: both need the same number of axes per "
            "sample (reshape one to add size-1 axes)"
        )
    k_b, n = (sb[-1], sb[-2]) if a["transpose_b"] else (sb[-2], sb[-1])
    if sa[-1] != k_b:
        which = "last" if a["transpose_b"] else "second-to-last"
        transposed = " (b transposed)" if a["transpose_b"] else ""
        raise ShapeError(
            f"matmul of {_shape_str(sa)} and {_shape_str(sb)}{transposed}: a's last dimension {sa[-1]} "
            f"is not b's {which} dimension {k_b}"
        )
    lead = []
    for p, q in zip(sa[:-2], sb[:-2]):
        if p != q and 1 not in (p, q):
            raise ShapeError(
                f"matmul of {_shape_str(sa)} and {_shape_str(sb)}: the batch axes do not broadcast ({p} vs {q})"
            )
        lead.append(max(p, q))
    return [(*lead, sa[-2], n)]


def _matmul_torch(emit: TorchEmit, a: Attrs, x: Any, y: Any) -> Any:
    from ..torch_ops import matmul  # deferred for start-up: loads torch

    return emit.call(matmul, x, y, a["transpose_b"], a["scale"])


def _matmul_onnx(emit: OnnxEmit, a: Attrs, x: str, y: str) -> str:
    if a["transpose_b"]:
        rank = len(emit.in_shapes[1]) + 1
        y = emit.op("Transpose", [y], suffix="transpose_b", perm=[*range(rank - 2), rank - 1, rank - 2])
    if a["scale"] == 1.0:
        return emit.op("MatMul", [x, y])
    product = emit.op("MatMul", [x, y], suffix="matmul")
    return emit.op("Mul", [product, emit.const("factor", a["scale"], "float32")])


# ---------------------------------------------------------------------------------------------------- param
def _param_torch(emit: TorchEmit, a: Attrs, x: Any) -> Any:
    from ..torch_ops import LearnedTensor  # deferred for start-up: loads torch

    return emit.module(LearnedTensor(a["shape"], a["std"]), x)


def _param_onnx(emit: OnnxEmit, a: Attrs, x: str) -> str:
    """The [1, ...] tensor expanded to the batch of the input (the batch is dynamic: Shape -> Slice -> Expand)."""
    emit.require(10, "the batch taken from its input (Slice)")
    batch = emit.op(
        "Slice",
        [emit.op("Shape", [x], suffix="shape"), emit.const("zero", [0]), emit.const("one", [1])],
        suffix="batch",
    )
    target = emit.op("Concat", [batch, emit.const("sample_shape", list(a["shape"]))], suffix="expand_to", axis=0)
    return emit.op("Expand", [emit.param("weight"), target])


# ---------------------------------------------------------------------------------------------------- the ops
_AXIS = Arg("axis", "int", REQUIRED, doc="NCHW axis", **_AXES)

TENSOR_OPS = [
    OpDef(
        "reshape",
        (Arg("shape", "ints", REQUIRED, lo=-1, doc="the per-sample shape (one dimension may be -1)"),),
        lambda a, s: [a["resolved"]],
        _reshape_torch,
        prepare=_reshape_prepare,
        to_onnx=_reshape_onnx,
        doc="the same elements in another per-sample shape (the batch axis is kept); -1: the dimension that makes "
        "the element count agree",
    ),
    OpDef(
        "permute",
        (Arg("perm", "ints", REQUIRED, doc="[0, ...] every axis, or the last k axes as -k..-1", **_AXES),),
        _permuted,
        _permute_torch,
        prepare=_permute_prepare,
        to_onnx=_permute_onnx,
        doc="reorders the axes (PyTorch's permute): every axis with the batch first ([0, 2, 1]), or only the "
        "trailing ones as negative axes ([-2, -3, -1]: the last three, the leading axes stay)",
    ),
    OpDef(
        "transpose",
        (Arg("axes", "ints", REQUIRED, doc="the two NCHW axes swapped", **_AXES),),
        _permuted,
        _permute_torch,
        prepare=_transpose_prepare,
        to_onnx=_permute_onnx,
        doc="swaps two axes (PyTorch's transpose)",
    ),
    OpDef(
        "flatten",
        (
            Arg("start", "int", 1, doc="first NCHW axis merged", **_AXES),
            Arg("end", "int", -1, doc="last NCHW axis merged", **_AXES),
        ),
        _flatten_infer,
        _flatten_torch,
        to_onnx=_flatten_onnx,
        doc="merges the axes start..end into one (default: every per-sample axis, [C, H, W] -> [F])",
    ),
    OpDef(
        "select",
        (_AXIS, Arg("index", "int", REQUIRED, doc="position along the axis (negative: from the end)")),
        _select_infer,
        _select_torch,
        prepare=_select_prepare,
        to_onnx=_select_onnx,
        doc="one position along an axis, which disappears (x[:, 0]: ViT's class token)",
    ),
    OpDef(
        "slice",
        (_AXIS, Arg("start", "int", 0), Arg("end", "int", None), Arg("step", "int", 1, lo=1)),
        _slice_infer,
        _slice_torch,
        prepare=_slice_prepare,
        to_onnx=_slice_onnx,
        doc="x[start:end:step] along an axis, Python's rules (negative bounds count from the end; end none: "
        "to the end)",
    ),
    OpDef(
        "roll",
        (Arg("shifts", "ints", REQUIRED), Arg("axes", "ints", REQUIRED, **_AXES)),
        lambda a, s: [s[0]],
        _roll_torch,
        prepare=_roll_prepare,
        to_onnx=_roll_onnx,
        doc="torch.roll: shifts the elements along each axis cyclically (Swin's shifted windows)",
    ),
    _reduce("mean", "the mean over axes (kept as size 1 with keepdims)", "ReduceMean", 18),
    _reduce("sum", "the sum over axes (kept as size 1 with keepdims; MobileViTv2's context vector)", "ReduceSum", 13),
    OpDef(
        "matmul",
        (
            Arg("transpose_b", "bool", False, doc="multiply by b with its last two axes swapped"),
            Arg("scale", "float", 1.0, doc="a constant factor of the product (1 / sqrt(d) in attention)"),
        ),
        _matmul_infer,
        _matmul_torch,
        arity=(2, 2),
        to_onnx=_matmul_onnx,
        macs=lambda a, s, o: math.prod(o[0]) * s[0][-1],
        doc="the matrix product of two activations over their last two axes, the leading axes broadcast "
        "(size 1 against any; torch.matmul): attention's q k^T and its weights times v",
    ),
    OpDef(
        "param",
        (
            Arg("shape", "ints", REQUIRED, lo=1, doc="the per-sample shape"),
            Arg("std", "float", 0.0, lo=0, doc="initial values: zeros (0) or normal with this deviation"),
        ),
        lambda a, s: [tuple(a["shape"])],
        _param_torch,
        params=lambda a, s: {"weight": ParamSpec((1, *a["shape"]))},
        to_onnx=_param_onnx,
        doc="a learned tensor (a class token, a position embedding), stored [1, ...] and repeated over the batch "
        "of its input (the input gives only the batch size)",
    ),
]
