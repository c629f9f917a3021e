"""`tcc golden check` and `tcc golden update`: run a golden set's entries and compare, or store them on purpose."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError, TccError
from ..quant.table.file import CalibrationError, load_table
from . import judge
from .entries import ENTRIES, Entry
from .golden_yaml import FORMAT, GoldenPlan, ModelPlan, load_plan
from .produce import ModelRun
from .store import GOLDEN_JSON, json_bytes, npz_bytes, read_json, read_npz, write_if_changed

INPUTS, OUTPUTS, FLOAT64 = "inputs.npz", "outputs.npz", "pytorch-fp64"


@dataclass
class Row:
    model: str
    entry: str  # an entry id, or "graph" / "inputs"
    status: str  # check: ok | FAIL; update: unchanged | changed | new | FAIL
    summary: str = ""
    details: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "entry": self.entry,
            "status": self.status,
            "summary": self.summary,
            "details": self.details,
        }


def table_path(root: Path, model: str, rules: str) -> Path:
    return root / model / "calibration" / f"{rules}.json.gz"


def selected(mp: ModelPlan, entries: list[str] | None, everything: bool) -> list[Entry]:
    ids = [e for e in mp.entries if (everything or e not in mp.slow) and (not entries or e in entries)]
    return [ENTRIES[e] for e in ids]


# ---------------------------------------------------------------------------------------------------- check
def check(
    root: str | Path,
    models: list[str] | None = None,
    entries: list[str] | None = None,
    everything: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> list[Row]:
    gp = load_plan(root)
    stored_doc = read_json(gp.root)
    rows: list[Row] = []
    for name in _models(gp, models, entries):
        mp = gp.models[name]
        record = stored_doc.get("models", {}).get(name)
        if record is None:
            rows.append(
                Row(name, "all", "FAIL", f"no golden data for {name} (tcc golden update {gp.root} --model {name})")
            )
            continue
        rows += _check_model(gp, mp, record, selected(mp, entries, everything), log)
    return rows


def _check_model(gp: GoldenPlan, mp: ModelPlan, record: dict, chosen: list[Entry], log) -> list[Row]:
    run = ModelRun(mp, log)
    rows = []
    try:
        ident = run.identity()
        if ident["fp32_onnx_sha256"] != record["identity"]["fp32_onnx_sha256"]:
            what = [k for k in ("spec_hash", "weights", "opset") if ident[k] != record["identity"][k]]
            rows.append(
                Row(
                    mp.name,
                    "graph",
                    "FAIL",
                    "the FP32 ONNX graph changed"
                    + (
                        f" ({', '.join(what)} changed)"
                        if what
                        else " (same spec and weights: the lowering or a pass changed)"
                    ),
                    [
                        "the stored calibration tables were made for the stored graph: INT8 entries cannot be built "
                        f"from them; if the change is intended: tcc golden update {gp.root} --model {mp.name} "
                        "--recalibrate"
                    ],
                )
            )
        else:
            rows.append(Row(mp.name, "graph", "ok", "FP32 ONNX graph unchanged"))
        x_stored = read_npz(gp.root / mp.name / INPUTS).get("x")
        names = [i["name"] for i in record["inputs"]]
        x_now, _ = run.inputs()
        rows.append(_check_inputs(mp.name, x_now, x_stored, names))
        if not _usable_inputs(x_now, x_stored, names):
            return rows  # no entry runs on inputs the model cannot take, or that the record does not name
        outs = read_npz(gp.root / mp.name / OUTPUTS)
        for e in chosen:
            log(f"{mp.name}: {e.id}")
            rows.append(_check_entry(gp, run, e, x_stored, names, outs, record))
    finally:
        run.close()
    return rows


def _usable_inputs(x_now, x_stored, names) -> bool:
    """Stored inputs the model takes (the shape and type of today's), one per input the record names."""
    return (
        x_stored is not None
        and x_stored.shape == x_now.shape
        and x_stored.dtype == np.float32
        and len(names) == len(x_stored)
    )


def _check_inputs(model, x_now, x_stored, names) -> Row:
    if x_stored is None:
        return Row(model, "inputs", "FAIL", f"no stored inputs ({INPUTS})")
    if not _usable_inputs(x_now, x_stored, names):
        return Row(
            model,
            "inputs",
            "FAIL",
            f"inputs now {list(x_now.shape)} float32, stored {list(x_stored.shape)} "
            f"{x_stored.dtype}, {len(names)} named in {GOLDEN_JSON}",
        )
    bad = [
        f"input {n}: the preprocessing now gives max |diff| {float(np.abs(a - b).max()):.3g} from the stored tensor"
        for n, a, b in zip(names, x_now, x_stored)
        if not np.array_equal(a, b)
    ]
    return Row(
        model,
        "inputs",
        "FAIL" if bad else "ok",
        "preprocessing changed" if bad else f"{len(names)} inputs equal to the stored ones",
        bad,
    )


def _check_entry(gp, run, e: Entry, x, names, outs, record) -> Row:
    rec = record["entries"].get(e.id)
    again = f"tcc golden update {gp.root} --model {run.plan.name} --entry {e.id}"
    if rec is None:
        return Row(run.plan.name, e.id, "FAIL", f"no stored output for {e.id} ({again})")
    if rec["rule"] != e.rule:
        return Row(
            run.plan.name, e.id, "FAIL", f"stored under the rule {rec['rule']!r}, judged now by {e.rule!r} ({again})"
        )
    try:
        if e.rule == "scales":
            v = _scales_verdict(gp, run, e)
        else:
            table = run.load_table(table_path(gp.root, run.plan.name, e.table_rules), e.table_rules) if e.int8 else None
            produced = run.produce(e, x, table)
            unusable = _unusable_stored(e, produced.output, outs)
            if unusable:
                return Row(run.plan.name, e.id, "FAIL", f"{unusable} ({again})")
            v = _verdict(e, produced, x, names, outs, rec, run.plan.int8_floor)
    except TccError as err:
        return Row(run.plan.name, e.id, "FAIL", f"{type(err).__name__}: {err}")
    where = f"{run.plan.name} / {e.describe()}"
    return Row(
        run.plan.name,
        e.id,
        "ok" if v.passed else "FAIL",
        v.summary(),
        [f"{where}: {f}" for f in v.failures] + list(v.numbers.get("notes", [])),
    )


def _stored_usable(outs: dict, key: str) -> bool:
    """Whether stored output `key` is numbers of the stored PyTorch output's shape (of any shape without it)."""
    stored, ref = outs.get(key), outs.get("pytorch-fp32")
    return stored is not None and stored.dtype.kind in "fiu" and (ref is None or stored.shape == ref.shape)


def _unusable_stored(e: Entry, got: np.ndarray, outs: dict) -> str | None:
    """Why the stored outputs `e` is judged against cannot judge it (missing from outputs.npz, or of another shape
    or kind than the entry gives), or None."""
    needed = ["pytorch-fp32", FLOAT64] + ([e.against] if e.against else []) + ([e.id] if e.rule == "measured" else [])
    for key in dict.fromkeys(needed):
        stored = outs.get(key)
        if stored is None:
            return f"no stored output {key!r} in {OUTPUTS}"
        if stored.shape != got.shape or stored.dtype.kind not in "fiu":
            return (
                f"the stored output {key!r} is {stored.dtype} {list(stored.shape)}, the entry gives "
                f"{got.dtype} {list(got.shape)}"
            )
    return None


def _verdict(e: Entry, produced, x, names, outs, rec, floor) -> judge.Verdict:
    got = produced.output
    r32, r64 = outs["pytorch-fp32"], outs[FLOAT64]
    if e.rule == "fp32":
        v = judge.fp32(got, r32, r64, names)
    elif e.rule == "bit_exact":
        v = judge.bit_exact(got, outs[e.against], names, _lsb(produced))
        if not v.passed and produced.qgraph is not None and produced.qgraph.islands and produced.codes is not None:
            # float islands: an exact backend may differ at island outputs only (tcc.tolerance), judged per op
            v = judge.per_op(got, x, produced, outs[e.against], names, exact=True)
    elif e.rule == "per_op":
        v = judge.per_op(got, x, produced, outs[e.against], names)
    elif e.rule == "measured":
        v = judge.measured(got, outs[e.id], r32, names, e.precision, rec["tolerance"]["max_abs_over_scale"])
    else:
        raise AssertionError(e.rule)
    if e.int8:
        q = judge.vs_fp32(got, r32, names, floor)
        v = judge.Verdict(v.passed and q.passed, {**v.numbers, **q.numbers}, v.failures + q.failures)
    return v


def _lsb(produced) -> float | None:
    qg = produced.qgraph
    return float(qg.output_scales[qg.outputs[0]]) if qg is not None else None


def _scales_verdict(gp, run, e: Entry) -> judge.Verdict:
    stored = run.load_table(table_path(gp.root, run.plan.name, e.table_rules), e.table_rules)
    now = run.calibrate(e.table_rules)
    return judge.scales(now.tensors, stored.tensors, now.layers, stored.layers)


# ---------------------------------------------------------------------------------------------------- update
def update(
    root: str | Path,
    models: list[str] | None = None,
    entries: list[str] | None = None,
    everything: bool = True,
    recalibrate: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> list[Row]:
    """Store the selected entries' outputs now (and the inputs, PyTorch outputs and calibration tables they rest
    on), after checking that they agree with each other by the same rules `check` applies. Returns a row per entry
    saying whether and by how much it changed; writes nothing of a model one of whose entries fails its rule (a
    Row "FAIL")."""
    gp = load_plan(root)
    doc = read_json(gp.root) or {"format": FORMAT, "models": {}}
    rows: list[Row] = []
    writes: list[tuple[Path, bytes]] = []
    for name in _models(gp, models, entries):
        mrows, mwrites, record = _update_model(
            gp,
            gp.models[name],
            doc["models"].get(name),
            selected(gp.models[name], entries, everything),
            recalibrate,
            log,
        )
        rows += mrows
        if any(r.failed for r in mrows):  # a model is stored whole or not at all
            continue
        writes += mwrites
        doc["models"][name] = record
    doc["models"] = {k: doc["models"][k] for k in sorted(doc["models"]) if k in gp.models}
    for path, data in [*writes, (gp.root / GOLDEN_JSON, json_bytes(doc))]:
        write_if_changed(path, data)
    return rows


@dataclass
class _Update:
    """One model's update: what its steps share, and the record, rows and writes they fill."""

    gp: GoldenPlan
    mp: ModelPlan
    run: ModelRun
    log: Callable[[str], None]
    x: np.ndarray  # the inputs
    names: list[str]  # their names
    record: dict  # the model's golden.json record
    rows: list[Row]
    writes: list[tuple[Path, bytes]]
    outs: dict  # the stored outputs still valid for these inputs
    new_outs: dict = field(default_factory=dict)
    refs: dict = field(default_factory=dict)  # every output an entry is judged against: stored, then new
    tables: dict = field(default_factory=dict)  # rules -> the calibration table


def _update_model(gp, mp: ModelPlan, old: dict | None, chosen: list[Entry], recalibrate: bool, log):
    run = ModelRun(mp, log)
    try:
        u, chosen = _begin(gp, mp, old, chosen, run, log)
        _references(u, chosen)
        _tables(u, chosen, recalibrate)
        for e in sorted(chosen, key=lambda e: (e.target is not None, e.rule == "scales")):  # references first
            _update_entry(u, e)
        _pytorch_row(u)
        u.writes.append((gp.root / mp.name / OUTPUTS, npz_bytes({**u.outs, **u.new_outs})))
        u.record["entries"] = dict(sorted(u.record["entries"].items()))
    finally:
        run.close()
    return u.rows, u.writes, u.record


def _begin(gp, mp: ModelPlan, old: dict | None, chosen: list[Entry], run: ModelRun, log) -> tuple[_Update, list]:
    """The inputs (every stored output is void when they changed) and the entries to store: the chosen ones, and
    the references they are judged against where those are not stored usably."""
    x, inputs = run.inputs()
    ident = run.identity()
    record = {
        "identity": ident,
        "inputs": inputs,
        "entries": dict((old or {}).get("entries", {})),
        "int8_floor": mp.int8_floor,
    }
    rows: list[Row] = []
    old_x = read_npz(gp.root / mp.name / INPUTS).get("x")
    if old_x is not None and (old_x.shape != x.shape or not np.array_equal(old_x, x)):
        record["entries"] = {}  # other inputs: every stored output is void
        rows.append(Row(mp.name, "inputs", "changed", "the inputs changed: every entry is stored again"))
        chosen = [ENTRIES[e] for e in mp.entries]
    writes = [(gp.root / mp.name / INPUTS, npz_bytes({"x": x}))]
    outs = read_npz(gp.root / mp.name / OUTPUTS) if old_x is not None and np.array_equal(old_x, x) else {}
    names = [i["name"] for i in inputs]
    # an entry judged against another's output (INT8 against its integer reference) brings that entry along
    # where its stored output is missing or unusable
    chosen = chosen + [
        ENTRIES[a]
        for a in dict.fromkeys(e.against for e in chosen if e.against)
        if not _stored_usable(outs, a) and a in mp.entries and ENTRIES[a] not in chosen
    ]
    return _Update(gp, mp, run, log, x, names, record, rows, writes, outs), chosen


def _references(u: _Update, chosen: list[Entry]) -> None:
    """The references every other entry is judged by: PyTorch in float32 and float64. Float results move by float
    rounding from one CPU to the next (oneDNN and MLAS pick kernels by instruction set): a stored float output that
    still passes its rule against this machine's references is kept, so an update on another CPU rewrites only what
    really changed."""
    pt = ENTRIES["pytorch-fp32"]
    r64 = u.run.pytorch_float64(u.x)
    u.new_outs = {FLOAT64: _kept_float64(u.outs.get(FLOAT64), r64)}
    if pt.id in {e.id for e in chosen} or "pytorch-fp32" not in u.outs:
        r32 = u.run.produce(pt, u.x).output
        old32 = u.outs.get("pytorch-fp32")
        keep = (
            old32 is not None
            and old32.shape == r32.shape
            and judge.fp32(old32, r32, u.new_outs[FLOAT64], u.names).passed
        )
        u.new_outs["pytorch-fp32"] = old32 if keep else r32
    u.refs = {**u.outs, **u.new_outs}


def _tables(u: _Update, chosen: list[Entry], recalibrate: bool) -> None:
    """The calibration table of every rules an INT8 entry needs: the stored one, or made again."""
    for rules in sorted({e.table_rules for e in chosen if e.int8}):
        path = table_path(u.gp.root, u.mp.name, rules)
        table, how = _table(u.run, path, rules, recalibrate)
        u.tables[rules] = table
        if how:
            u.writes.append((path, gzip.compress((table.to_json() + "\n").encode(), 9, mtime=0)))
            u.rows.append(Row(u.mp.name, f"calibration-{rules}", "new" if how == "new" else "changed", how))


def _update_entry(u: _Update, e: Entry) -> None:
    """One entry produced and judged by its rule: stored anew, kept (float rounding only), or failed."""
    name = u.mp.name
    if e.id == "pytorch-fp32" or e.rule == "scales":
        if e.rule == "scales":
            u.record["entries"][e.id] = {"rule": e.rule, "table": f"calibration/{e.rules}.json.gz"}
        return
    u.log(f"{name}: {e.id}")
    try:
        produced = u.run.produce(e, u.x, u.tables.get(e.rules))
    except TccError as err:
        u.rows.append(Row(name, e.id, "FAIL", f"{type(err).__name__}: {err}"))
        return
    old_rec = u.record["entries"].get(e.id)
    u.refs[e.id] = u.new_outs[e.id] = produced.output
    rec: dict[str, Any] = {"rule": e.rule, "description": e.describe()}
    if e.rule == "measured":
        tol, parts = judge.measured_tolerance(
            judge.measure_noise(produced, u.x), produced.output, u.refs["pytorch-fp32"], u.refs[FLOAT64]
        )
        rec["tolerance"] = {
            "max_abs_over_scale": tol,
            **parts,
            "how": f"the largest of {judge.NOISE_FACTOR:g} x perturbation_noise (relative "
            f"{judge.PERTURB_RELATIVE:g} input perturbations, {judge.PERTURB_SEEDS} "
            f"seeds), {judge.DISTANCE_FRACTION:g} x distance_to_fp32 and "
            f"{judge.FP32_ALLOWANCE_FACTOR:g} x fp32_allowance (tcc.golden.judge)",
        }
    unusable = _unusable_stored(e, produced.output, u.refs)
    if unusable:  # its reference, unusable as stored, is not among the plan's entries to store again
        u.rows.append(Row(name, e.id, "FAIL", f"{unusable}; {e.against} is not among the plan's entries"))
        return
    v = _verdict(e, produced, u.x, u.names, u.refs, rec, u.mp.int8_floor)
    if v.passed and _stored_still_holds(e, produced.output, u.outs.get(e.id), old_rec, u.refs, u.names):
        u.refs[e.id] = u.new_outs[e.id] = u.outs[e.id]
        u.rows.append(
            Row(name, e.id, "unchanged", "float rounding only: the stored output passes its rule here and is kept")
        )
        return
    rec["recorded"] = {k: val for k, val in v.numbers.items() if k != "notes"}
    u.record["entries"][e.id] = rec
    u.rows.append(_change_row(name, e, produced.output, u.outs.get(e.id), _lsb(produced), v))


def _pytorch_row(u: _Update) -> None:
    """The PyTorch FP32 entry's row, first: kept within the FP32 bound, or stored anew."""
    pt, new_outs, name = ENTRIES["pytorch-fp32"], u.new_outs, u.mp.name
    if "pytorch-fp32" in new_outs and new_outs["pytorch-fp32"] is u.outs.get("pytorch-fp32"):
        u.rows.insert(
            0, Row(name, pt.id, "unchanged", "the stored output is within the FP32 bound of this machine's and is kept")
        )
    elif "pytorch-fp32" in new_outs:
        u.record["entries"]["pytorch-fp32"] = {"rule": "fp32", "description": pt.describe()}
        new = new_outs["pytorch-fp32"]
        check = judge.fp32(new, new, new_outs[FLOAT64], u.names)
        u.rows.insert(0, _change_row(name, pt, new, u.outs.get("pytorch-fp32"), None, check))


def _kept_float64(old, new):
    """The stored float64 PyTorch output where this machine's agrees with it to float64 rounding (1e-12 of the
    scale: float64 results differ across CPUs only in their last bits), else the new one."""
    if old is None or old.shape != new.shape:
        return new
    scale = max(1.0, float(np.abs(new).max()))
    return old if float(np.abs(np.asarray(old, np.float64) - new).max()) <= 1e-12 * scale else new


def _stored_still_holds(e: Entry, new, old, old_rec: dict | None, refs: dict, names) -> bool:
    """A float entry (rule fp32 or measured) whose stored output and record still pass the entry's rule against
    this machine's references: the difference is float rounding, not a change, and the stored bytes are kept.
    Integer entries are never kept this way: they are exact, any difference is a change."""
    if old is None or old_rec is None or old.shape != new.shape or old_rec.get("rule") != e.rule:
        return False
    if np.array_equal(old, new):
        return False  # unchanged anyway: the normal path reports it
    if e.rule == "fp32":
        return judge.fp32(old, refs["pytorch-fp32"], refs[FLOAT64], names).passed
    if e.rule == "measured":  # the new output within the stored tolerance of the stored one
        return judge.measured(
            new, old, refs["pytorch-fp32"], names, e.precision, old_rec["tolerance"]["max_abs_over_scale"]
        ).passed
    return False


def _table(run, path: Path, rules: str, recalibrate: bool):
    """(table, why it is written or "" when the stored one is kept)."""
    if not recalibrate:
        try:
            return run.load_table(path, rules), ""
        except CalibrationError as e:
            why = f"stored table unusable ({e}); calibrated again"
            if not path.is_file():
                why = "calibrated"
    else:
        why = "calibrated again (--recalibrate)"
    table = run.calibrate(rules)
    try:  # the stored table, to say what changed (one made for another graph too); not when it is damaged
        old = load_table(path) if path.is_file() else None
    except CalibrationError:
        old = None
    if old is not None:
        v = judge.scales(table.tensors, old.tensors, table.layers, old.layers)
        numbers = v.numbers
        why += (
            f"; {numbers['changed']} of {numbers['tensors']} tensors changed (max {numbers['max_range_change']} of "
            "range)"
        )
        return table, why
    return table, "new" if why == "calibrated" else why


def _change_row(model, e: Entry, new, old, lsb, v: judge.Verdict) -> Row:
    if not v.passed:
        return Row(
            model,
            e.id,
            "FAIL",
            "the new output breaks its rule: nothing was written",
            [f"{model} / {e.describe()}: {f}" for f in v.failures],
        )
    if old is None:
        return Row(model, e.id, "new", v.summary())
    if np.array_equal(new, old):
        return Row(model, e.id, "unchanged", v.summary())
    if new.shape != old.shape:
        return Row(model, e.id, "changed", f"output shape {list(old.shape)} -> {list(new.shape)}")
    d = np.abs(np.asarray(new, np.float64) - old)
    scale = float(np.abs(old).max()) or 1.0
    how = f"max |new - old| {float(d.max()):.4g} ({float(d.max()) / scale:.3g} of scale"
    how += f", {float(d.max()) / lsb:.3g} LSB)" if lsb else ")"
    return Row(model, e.id, "changed", f"{how}; {int(np.count_nonzero(d))} of {d.size} elements")


def _models(gp: GoldenPlan, models: list[str] | None, entries: list[str] | None = None) -> list[str]:
    for e in entries or []:
        if e not in ENTRIES:
            raise SpecError(f"unknown golden entry {e!r}; known: {', '.join(ENTRIES)}")
    for m in models or []:
        if m not in gp.models:
            raise SpecError(f"{gp.file}: no model {m!r} in the golden set (models: {', '.join(gp.models)})")
    return [m for m in gp.models if not models or m in models]


def format_rows(rows: list[Row]) -> str:
    w_model = max([len(r.model) for r in rows] + [5])
    w_entry = max([len(r.entry) for r in rows] + [5])
    lines = [f"{'model'.ljust(w_model)}  {'entry'.ljust(w_entry)}  status     summary"]
    for r in rows:
        lines.append(f"{r.model.ljust(w_model)}  {r.entry.ljust(w_entry)}  {r.status.ljust(9)}  {r.summary}")
        lines += [f"    {d}" for d in r.details]
    return "\n".join(lines)
