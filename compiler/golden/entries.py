"""The golden entries: one per backend x precision that runs here, derived from the target and rules registries.

An entry id is `TARGET-PRECISION` (`ort-int8`, `arm-a7-fp32`), `pytorch-fp32` (the spec's PyTorch lowering), or
`reference-RULES` (the integer reference executor on the stored table of those rules: what an integer backend of
those rules must compute, and for the Axera targets, whose toolchains run elsewhere, tcc's prediction).

How an entry is judged (`rule`; the numbers are tcc.tolerance's and tcc.golden.judge's):
  fp32       against the stored PyTorch output by the FP32 policy (scale-aware, float64-referenced)
  bit_exact  equal, bit for bit, to the stored integer reference of its rules (`against`)
  per_op     every integer op within the backend's documented LSB bound of the reference op, run on the backend's
             own codes (ONNX Runtime); end to end against the stored reference recorded
  measured   against its own stored output within a tolerance measured when it was stored (fp16, dynamic), and
             against PyTorch FP32 by the build's rule for that precision
  scales     (`calibration-RULES`) the model calibrated again on the stored calibration data, every tensor's
             quantization range against the stored table: a change in calibration shows here, per tensor, apart
             from a change in kernels (INT8 entries are built from the stored tables)
Every INT8 entry is also compared with the stored PyTorch FP32 output: cosine and top-1, against a floor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tcc.backends import get_backend
from tcc.targets import TARGETS

from ..quant.table.rules import RULES


@dataclass(frozen=True)
class Entry:
    id: str
    target: str | None  # build target; None: PyTorch or the integer reference
    precision: str
    rules: str | None  # INT8: the rules of the calibration table it is built from
    rule: str  # fp32 | bit_exact | per_op | measured | scales
    against: str | None  # bit_exact: the entry it must equal

    @property
    def int8(self) -> bool:
        return self.precision == "int8"

    @property
    def table_rules(self) -> str:
        """The rules of the calibration table an INT8 (or scales) entry is made from: every such entry names them."""
        assert self.rules is not None, f"{self.id}: no rules"
        return self.rules

    def describe(self) -> str:
        if self.id == "pytorch-fp32":
            return "PyTorch lowering, FP32"
        if self.rule == "scales":
            return f"calibration table, {self.rules} rules"
        if self.target is None:
            return f"integer reference, {self.rules} rules"
        return f"{self.target} {self.precision}"


def _runnable_targets():
    """Targets whose artifact runs here, once each: no aliases, no kits, and no target whose backend and
    precisions another target covers (`onnx` writes ort's FP32 file)."""
    kept = []
    for t in TARGETS.values():
        if not t.runs_here or (t.platform is not None and t.name != t.platform.name):
            continue
        if any(
            o is not t and o.backend == t.backend and o.platform == t.platform and set(t.precisions) < set(o.precisions)
            for o in TARGETS.values()
        ):
            continue
        kept.append(t)
    return kept


def float_policy_variant(rules) -> bool:
    """Rules that compute like another set but keep fewer kinds as float islands (`tflite-int`: the tflite rules with
    softmax as LiteRT's int8 SOFTMAX, no islands): every integer op the two share computes alike, and each model of
    the golden set either has no node they place otherwise or is refused by them (MobileViT's LayerNorm)."""
    return any(
        set(rules.float_kinds) < set(o.float_kinds)
        and replace(rules, name=o.name, description=o.description, float_ops=o.float_ops, float_kinds=o.float_kinds)
        == o
        for o in RULES.values()
    )


def _entries() -> dict[str, Entry]:
    out = {"pytorch-fp32": Entry("pytorch-fp32", None, "fp32", None, "fp32", None)}
    for t in _runnable_targets():
        exact = get_backend(t.backend).capabilities.int8_exact
        for p in t.precisions:
            if p == "fp32":
                e = Entry(f"{t.name}-fp32", t.name, p, None, "fp32", None)
            elif p == "int8":
                e = Entry(
                    f"{t.name}-int8", t.name, p, t.rules, "bit_exact" if exact else "per_op", f"reference-{t.rules}"
                )
            else:
                e = Entry(f"{t.name}-{p}", t.name, p, None, "measured", None)
            out[e.id] = e
    # the golden tables are W8A8; a float-policy variant's entries would repeat its base's
    eight = [r for r, rules in RULES.items() if 8 in rules.activation_bits and not float_policy_variant(rules)]
    for r in eight:
        out[f"reference-{r}"] = Entry(f"reference-{r}", None, "int8", r, "bit_exact", f"reference-{r}")
    for r in eight:  # calibrated again and compared with the stored table, scale by scale
        out[f"calibration-{r}"] = Entry(f"calibration-{r}", None, "int8", r, "scales", None)
    return out


ENTRIES: dict[str, Entry] = _entries()
