"""The kernel variants of the TVM INT8 lowering's weighted kinds (conv, pooled conv, gemm) as one ordered table,
`VARIANTS`: a layer takes the first variant of its kind whose matcher takes it (`choose`), each kind's generic form
last, the fallback (as TVM's dlight tries its rules in a listed order). A variant is a record (base.Variant: its
matcher over a pure-data view of the layer, its emission, its compute, intrinsics, schedule rule and where it
requantizes), one module per family named after its kernel:

    digits.py            int16 codes on AArch64 as two 8-bit digits (conv, linear rows)
    amx_stem.py          x86 AMX tiles for a stem a max pool alone reads
    dot_conv.py          dense convs and linear rows on the target's dot-product kernel
    depthwise_rows.py    depthwise convs, 4 rows a lane (`sdot`, `vpdpbusd`)
    depthwise_pairs.py   depthwise convs, 2 rows a lane (x86 `vpmaddwd`)
    affine_map.py        x86 1 x 1 depthwise convs as a checked float32 map
    depthwise_taps.py    depthwise convs on int16 taps
    window_digits.py     pooled convs: the window sums as two 8-bit digits on the dot kernel
    generic.py           the generic integer forms
    windows.py           (shared) the windows of rows the two depthwise dot forms read

Adding a kernel is one module and one record here; `tcc build --explain-kernels` and docs/targets/tvm.md's table
(checked against this one) say which variant each layer takes.
"""

from __future__ import annotations

from . import (
    affine_map,
    amx_stem,
    depthwise_pairs,
    depthwise_rows,
    depthwise_taps,
    digits,
    dot_conv,
    generic,
    window_digits,
)
from .base import Layer, Match, Variant

VARIANTS: tuple[Variant, ...] = (
    # conv
    digits.CONV,
    amx_stem.VARIANT,
    dot_conv.CONV,
    depthwise_rows.VARIANT,
    depthwise_pairs.VARIANT,
    affine_map.VARIANT,
    depthwise_taps.VARIANT,
    generic.CONV,
    # pooled_conv
    window_digits.VARIANT,
    generic.POOLED_CONV,
    # gemm
    digits.ROWS,
    dot_conv.ROWS,
    generic.GEMM,
)


def choose(layer: Layer) -> tuple[Variant, Match]:
    """The variant the layer takes (the first of VARIANTS for its kind whose matcher takes it) and its match."""
    for variant in VARIANTS:
        if layer.node.kind in variant.kinds:
            match = variant.match(layer)
            if match is not None:
                return variant, match
    raise ValueError(f"no kernel variant for a {layer.node.kind} (the generic forms take every weighted kind)")


def _path(variant: Variant) -> str:
    """The file of the variant's module, from the repository's root."""
    return "backends/tvm/" + variant.emit.__module__.split(".tvm.", 1)[1].replace(".", "/") + ".py"


def markdown() -> str:
    """The table as docs/targets/tvm.md shows it (tests/backends/tvm/test_variants.py checks the page against it):
    a row a variant, in order, with its module, what it is, its schedule rule and where it requantizes."""
    head = [
        "| variant | kinds | module | what | schedule rule | requantization |",
        "|---|---|---|---|---|---|",
    ]
    rows = [
        f"| `{v.name}` | {', '.join(v.kinds)} | `{_path(v)}` | {v.about} | "
        f"{'`' + v.schedule.__name__ + '`' if v.schedule else '-'} | {v.requantize} |"
        for v in VARIANTS
    ]
    return "\n".join(head + rows)


def schedule_rules() -> list:
    """The variants' own schedule rules, each once, in the table's order (schedule.default_schedule_pass)."""
    rules: list = []
    for variant in VARIANTS:
        if variant.schedule is not None and variant.schedule not in rules:
            rules.append(variant.schedule)
    return [rule() for rule in rules]


__all__ = ["VARIANTS", "Layer", "Match", "Variant", "choose", "markdown", "schedule_rules"]
