"""The records of the kernel variants' table: what a weighted layer's variant is chosen from (`Layer`, pure data:
no Relax), what a variant's matcher gives back when it takes the layer (`Match`), and the variant itself
(`Variant`: its matcher, its emission, and its compute, intrinsics, schedule rule and requantization)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tcc.quant.intgraph.qtypes import QGraph, QNode, QParams

from ..kernels import ConvShape, DotKernel

# where a variant's requantization runs (`Variant.requantize`): in its kernel's epilogue, applied to the register
# tile on its way out (on ARM the NEON forms: requantize_forms.py); after its kernel, in a kernel of its own or fused
# by Relax; none (the kernel computes the codes itself)
REQUANTIZE_AT = ("epilogue", "after", "none")


def pooled_outputs(qg: QGraph, kernel: DotKernel | None) -> set[str]:
    """The outputs of conv / gemm nodes whose only reader is a max pool that keeps their quantization (no rescale),
    not graph outputs, on an x86 target with a dot-product kernel: the pool takes their accumulators instead
    (RelaxLowering.max_pool), and so may AMX (amx_stem.py). x86 only: on ARM it executed 0.3-1% fewer instructions
    (DDSNet), but LLVM 22 aborted compiling an ARMv7 module that also exposes the conv's codes, as the self-check's
    does ("Do not know how to widen the result of this operator")."""
    if kernel is None or kernel.arch != "x86_64":
        return set()
    readers: dict[str, list[QNode]] = {}
    for node in qg.nodes:
        for i in node.inputs:
            readers.setdefault(i, []).append(node)
    out = set()
    for node in qg.nodes:
        if node.kind not in ("conv", "gemm") or node.qout[0] is None or node.outputs[0] in qg.outputs:
            continue
        r = readers.get(node.outputs[0], [])
        pool = r[0] if len(r) == 1 and r[0].kind == "max_pool" else None
        if pool is not None and not (pool.rescale or (None,))[0] and pool.qout[0] == node.qout[0]:
            out.add(node.outputs[0])
    return out


@dataclass(frozen=True)
class Layer:
    """What a weighted layer's variant is chosen from: the node (kind, weights, bias, geometry, requantization),
    its input codes' shape (channels last at rank 4; None for a dimension that is not static), type and
    quantization, the target's dot-product kernel (None: none) and whether its CPU has AMX-INT8, and whether a max
    pool alone reads the layer's accumulators (lower.py's `pool_readers`)."""

    node: QNode
    dims: tuple[int | None, ...]
    dtype: str
    params: QParams
    kernel: DotKernel | None
    amx: bool = False
    pooled: bool = False

    @property
    def weight(self) -> np.ndarray:
        assert self.node.weight is not None, self.node.name  # a weighted kind's
        return self.node.weight

    @property
    def x86(self) -> bool:
        return self.kernel is not None and self.kernel.arch == "x86_64"

    def conv_shape(self, int16: bool = False) -> ConvShape | None:
        """The conv's shape on 8-bit codes (`int16`: or int16 ones) with zero point 0 and static shapes (what tcc's
        integer kernels take), else None."""
        a = self.node.attrs
        codes = ("int8", "uint8", "int16") if int16 else ("int8", "uint8")
        dims = [d for d in self.dims if d is not None]
        if self.params.zp or self.dtype not in codes or len(self.dims) != 4 or len(dims) != 4:
            return None
        kh, kw = self.weight.shape[2:]
        n, h, w, c = dims
        return ConvShape(
            n,
            h,
            w,
            c,
            int(self.weight.shape[0]),
            int(kh),
            int(kw),
            tuple(a["strides"]),
            tuple(a["pads"]),
            tuple(a["dilations"]),
        )

    def depthwise(self, shape: ConvShape) -> bool:
        """Whether the conv of `shape` is depthwise: one input channel per output channel."""
        return self.node.attrs["group"] == shape.c and shape.co == shape.c

    def depthwise_shape(self, multiple: int = 8) -> ConvShape | None:
        """A depthwise conv's shape on 8-bit or int16 codes (int16 x int16 taps take int16 codes as they are), on a
        `multiple` of channels (8: the taps' vectors, depthwise_taps.Int8Depthwise; 1: any, the kernel computing
        more), where the target has a dot-product kernel; else None."""
        shape = self.conv_shape(int16=True) if self.kernel is not None else None
        if shape is None or not self.depthwise(shape) or shape.c % multiple:
            return None
        return shape


@dataclass(frozen=True, kw_only=True)
class Match:
    """A variant's matcher's answer where it takes the layer: what computes it (`kernel`: a dot kernel's name, or
    the intrinsic's or PrimFunc's), why this variant takes it (one line), and the conv's shape where it has one;
    a variant's own matches add what its emission needs."""

    kernel: str
    why: str
    shape: ConvShape | None = None


@dataclass(frozen=True)
class Variant:
    """One kernel variant of the weighted kinds: its name, the kinds it takes, its matcher (Layer -> Match, None
    where it does not take the layer), its emission ((lowering, node, input codes, match) -> the node's outputs,
    weighted.WeightedLowering's helpers), and for the reader and the docs the pieces it is made of: its computes
    (PrimFunc makers and weight layouts), its intrinsics, its schedule rule (a schedule.loops.Rule; None: its
    PrimFuncs are written out as scheduled loops, or a generic rule of schedule/ takes them) and where its
    requantization runs (REQUANTIZE_AT)."""

    name: str
    kinds: tuple[str, ...]
    match: Callable[[Layer], Match | None]
    emit: Callable[[Any, QNode, Any, Any], list]
    about: str
    compute: tuple[Callable, ...] = ()
    intrinsics: tuple[Callable, ...] = ()
    schedule: type | None = None
    requantize: str = "epilogue"

    def __post_init__(self):
        assert self.requantize in REQUANTIZE_AT, self.requantize


def widened(n: QNode, channels: int) -> QNode:
    """The weighted layer `n` on `channels` output channels, more than its own, so that a kernel's whole vectors
    take it (`kept_channels` keeps its own): zero filters past its own (weight [O, ...]), their bias and
    per-channel multipliers (or a float output's scales) the last channel's: defined values that are dropped."""
    assert n.weight is not None  # a weighted node's
    requant = n.requant
    if requant is not None and requant.mult.per_channel:
        mult = requant.mult
        real = None if mult.real is None else _repeated(mult.real, channels)
        mult = replace(mult, q=_repeated(mult.q, channels), shift=_repeated(mult.shift, channels), real=real)
        requant = replace(requant, mult=mult)
    acc_scale = n.acc_scale
    if acc_scale is not None and np.size(acc_scale) > 1:
        acc_scale = _repeated(acc_scale, channels)
    bias = None if n.bias is None else _repeated(n.bias, channels)
    return replace(n, weight=zero_filters(n.weight, channels), bias=bias, requant=requant, acc_scale=acc_scale)


def _repeated(per_channel: np.ndarray, channels: int) -> np.ndarray:
    """A per-channel vector with its last value repeated up to `channels`."""
    values = np.asarray(per_channel).reshape(-1)
    return np.pad(values, (0, channels - values.size), mode="edge")


def widens(layer_channels: int, channels: int, pooled: bool) -> bool:
    """Whether a layer of `layer_channels` may be computed on `channels` (`widened`): not where a max pool reads
    its accumulators (it takes the layer's own channels)."""
    return channels == layer_channels or not pooled


def zero_filters(weight: np.ndarray, channels: int) -> np.ndarray:
    """A weight [O, ...] with zero filters appended up to `channels`."""
    filters = np.zeros((channels, *weight.shape[1:]), weight.dtype)
    filters[: weight.shape[0]] = weight
    return filters
