"""The quality report (tcc.quant.report.quality) printed in the shape of Axera's own precision tables, so a user
compares
tcc's prediction with what the toolchain prints on the same model, row for row.

    pulsar2_table(report)   Pulsar2's `Quant Precision Table【PerLayer Reference】` (the `rich` box table its
                            `precision_analysis` prints and saves as quant/debug/precision_analysis_table.txt):
                            Operator | Type | Output Tensor | Shape | DType | QDType | Cosin | MSE, 5 decimals
    pulsar_table(report)    Pulsar v1's `Score compare table` (`pulsar run`, and per layer with
                            `score_compare_per_layer`): Layer: <name>  2-norm RE: <pct>%  cosine-sim: <4 decimals>

Formats: [pulsar2-docs-en] source/user_guides_advanced/advanced_build_guides.md (the table, its column names and
spellings), [pulsar-docs-en] source/user_guides_quick/quick_start.rst (`pulsar run`'s table). The Type column
holds tcc's integer op (e.g. Conv+Relu), not Pulsar2's internal op names, which tcc cannot know.
"""

from __future__ import annotations

PULSAR2_TITLE = "Quant Precision Table【PerLayer Reference】"
PULSAR2_COLUMNS = ("Operator", "Type", "Output Tensor", "Shape", "DType", "QDType", "Cosin", "MSE")


def _shape(row) -> str:
    return str(tuple(row.get("shape", ())))


def _layers(report: dict) -> tuple[list[dict], dict | None]:
    """The per-tensor rows without the graph output (the tables end with it, dequantized), and that output's row."""
    out = report["end_to_end"]["output"]
    return [r for r in report["layers"] if r["tensor"] != out], next(
        (r for r in report["layers"] if r["tensor"] == out), None
    )


def pulsar2_rows(report: dict) -> list[tuple[str, ...]]:
    """One row per quantized tensor, then the model output (dequantized: QDType FP32), as Pulsar2 prints them."""
    layers, last = _layers(report)
    rows: list[tuple[str, ...]] = [
        (
            r.get("node", r["tensor"]),
            r["op"],
            r["tensor"],
            _shape(r),
            "FP32",
            "U8",
            f"{r['cosine']:.5f}",
            f"{r['mse']:.5f}",
        )
        for r in layers
    ]
    e = report["end_to_end"]
    m = e["models"]["tcc_reference"]
    rows.append(
        (
            f"{e['output']}_DequantizeLinear",
            "DequantizeLinear",
            e["output"],
            _shape(last) if last else "",
            "FP32",
            "FP32",
            f"{m['cosine_mean']:.5f}",
            f"{m['mse']:.5f}",
        )
    )
    return rows


def pulsar2_table(report: dict) -> list[str]:
    rows = pulsar2_rows(report)
    widths = [max(len(h), *(len(r[i]) for r in rows)) + 2 for i, h in enumerate(PULSAR2_COLUMNS)]

    def line(left, mid, right, fill):
        return left + mid.join(fill * w for w in widths) + right

    def cells(values, bar):
        return (
            bar
            + bar.join(
                f" {v}".ljust(w) if i in (0, 2) else str(v).center(w) for i, (v, w) in enumerate(zip(values, widths))
            )
            + bar
        )

    out = [
        PULSAR2_TITLE.center(sum(widths) + len(widths) + 1).rstrip(),
        line("┏", "┳", "┓", "━"),
        cells(PULSAR2_COLUMNS, "┃"),
        line("┡", "╇", "┩", "━"),
    ]
    for i, r in enumerate(rows):
        if i:
            out.append(line("├", "┼", "┤", "─"))
        out.append(cells(r, "│"))
    out.append(line("└", "┴", "┘", "─"))
    return out


def pulsar_table(report: dict) -> list[str]:
    """Pulsar v1's table: a `simple` tabulate of three columns, one row per layer, then the output."""
    rows = [
        (
            f"Layer: {r.get('node', r['tensor'])}",
            f"2-norm RE: {100 * r.get('rel_l2', 0.0):.2f}%",
            f"cosine-sim: {r['cosine']:.4f}",
        )
        for r in _layers(report)[0]
    ]
    e = report["end_to_end"]
    m = e["models"]["tcc_reference"]
    rows.append(
        (
            f"Layer: {e['output']}",
            f"2-norm RE: {100 * m.get('rel_l2', 0.0):.2f}%",
            f"cosine-sim: {m['cosine_mean']:.4f}",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    rule = "  ".join("-" * w for w in widths)
    return [
        "Score compare table:",
        rule,
        *("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows),
        rule,
    ]


def npu_table(report: dict, toolchain: str) -> list[str]:
    return pulsar_table(report) if toolchain == "pulsar" else pulsar2_table(report)
