"""`tcc ops`: list the op tables: spec ops, and integer ops with the backends that take them."""

from __future__ import annotations

import argparse
import json

from ..ops import OPS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ops", help="list the op tables: spec ops, and integer ops with the backends that take them")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    """The op tables: the spec language's ops (tcc.ops) and the integer ops with the lowerings that take them
    (tcc.intops), so a user sees what an INT8 build for each backend accepts before writing a spec."""
    from tcc.backends import BACKENDS, get_backend  # deferred for start-up: loads numpy
    from tcc.backends.ax.ops import OP_TABLES, kind_unit, kind_units  # deferred for start-up: loads numpy, onnx

    from ..intops import INT_OPS  # deferred for start-up: loads numpy

    by_backend = {b: get_backend(b).capabilities.int8_lowering for b in BACKENDS}

    if args.json:
        print(
            json.dumps(
                {
                    "ops": {name: {"args": [a.name for a in op.args], "doc": op.doc} for name, op in OPS.items()},
                    "integer_ops": {
                        k: {
                            "role": op.role.value,
                            "onnx": list(op.onnx),
                            "lowerings": sorted(op.lowerings),
                            "doc": op.doc,
                        }
                        for k, op in INT_OPS.items()
                    },
                    "int8_lowering_by_backend": by_backend,
                    "npu_units": {chip: kind_units(chip) for chip in OP_TABLES},
                }
            )
        )
        return 0
    print("spec ops (FP32): " + ", ".join(OPS))
    print("\ninteger ops (INT8; a model builds INT8 when every node maps onto one of these):")
    rows = [(k, op.role.value, " ".join(op.onnx), " ".join(sorted(op.lowerings))) for k, op in INT_OPS.items()]
    head = ("kind", "role", "ONNX ops", "lowerings")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(
        "\nINT8 lowering by backend: "
        + ", ".join(f"{b}: {lw}" for b, lw in by_backend.items())
        + "; patterns x * sigmoid(x), x * hardsigmoid(x), x * tanh(x) are one lookup table; an unpadded "
        "AveragePool read by a 1x1 Conv alone is one pooled_conv where the target's rules take it"
    )
    chips = list(OP_TABLES)
    print("\nAxera NPUs, by kind (the toolchains' op lists; 'partly': some of the kind's ONNX ops are not listed):")
    chip_rows = [("kind", *chips)] + [(k, *(kind_unit(c, k) for c in chips)) for k in INT_OPS]
    widths = [max(len(r[i]) for r in chip_rows) for i in range(len(chip_rows[0]))]
    for chip_row in chip_rows:
        print("  ".join(c.ljust(w) for c, w in zip(chip_row, widths)).rstrip())
    return 0
