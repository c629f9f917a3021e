"""The per-model form of x * g(x) (TargetRules.split_patterns, CalibrationTable.split_patterns): one lookup table, or
the gate's lookup and an integer multiply. The choice (tcc.quant.choose) tries the split form last and records it;
a table that splits carries it, and every reader of the table plans with it: the integer reference, the QDQ model
on ONNX Runtime, a placement's replan."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import helper

from tcc.bundle import read_manifest
from tcc.frontend import lower_spec
from tcc.quant.calibrate import _Phases, _run, calibrate, calibrate_onnx
from tcc.quant.choose import best_trial
from tcc.quant.collect.crops import make_crops
from tcc.quant.intgraph.match import plan
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.reference import Reference
from tcc.quant.lower.qdq import run as run_qdq
from tcc.quant.lower.qdq import to_qdq
from tcc.quant.settings import CalibrationRequest, CalibrationSettings, Provenance
from tcc.quant.table.file import load_table
from tcc.quant.table.quantizer import cosine
from tcc.quant.table.rules import get_rules
from tcc.quant.table.steps import Steps, choice_lines
from tests.helpers import REPO
from tests.helpers.cli import build_from_table
from tests.helpers.onnx_util import make_model
from tests.helpers.quant_models import table_json

FAST = {"cos_steps": 10, "cos_rounds": 1}


def _hardswish_net(seed: int = 0, first_gate: str = "HardSigmoid") -> onnx.ModelProto:
    """conv -> x * hardsigmoid(x) -> conv -> x * sigmoid(x) -> conv: two x * g(x) patterns (hard-swish below opset
    14, SiLU), each the only reader of its gate."""
    rng = np.random.default_rng(seed)
    hard = {"alpha": 1 / 6, "beta": 0.5} if first_gate == "HardSigmoid" else {}
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["a"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node(first_gate, ["a"], ["ga"], name="hsig", **hard),
        helper.make_node("Mul", ["a", "ga"], ["ha"], name="hswish"),
        helper.make_node("Conv", ["ha", "w2", "b2"], ["b"], name="conv2", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Sigmoid", ["b"], ["gb"], name="sig"),
        helper.make_node("Mul", ["gb", "b"], ["sb"], name="silu"),
        helper.make_node("Conv", ["sb", "w3", "b3"], ["output"], name="conv3", kernel_shape=[1, 1]),
    ]
    inits = {
        "w1": (0.6 * rng.standard_normal((8, 3, 3, 3))).astype(np.float32),
        "b1": (0.5 * rng.standard_normal(8)).astype(np.float32),
        "w2": (0.2 * rng.standard_normal((8, 8, 3, 3))).astype(np.float32),
        "b2": (0.3 * rng.standard_normal(8)).astype(np.float32),
        "w3": (0.3 * rng.standard_normal((4, 8, 1, 1))).astype(np.float32),
        "b3": np.zeros(4, np.float32),
    }
    return make_model(nodes, {"input": ["N", 3, 8, 8]}, {"output": ["N", 4, 8, 8]}, inits, ir_version=8, check=True)


def _data(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)


def _kinds(graph) -> list[tuple[str, str]]:
    return [(n.kind, n.lookup or "") for n in graph.nodes]


def test_the_rules_split_the_patterns_they_name():
    model, ort = _hardswish_net(), get_rules("ort")
    fused = plan(model, rules=ort)
    assert fused.fused_patterns == ("hardswish", "silu") and fused.split_patterns == ()
    assert ("lookup", "hardswish") in _kinds(fused) and ("mul", "") not in _kinds(fused)
    split = plan(model, rules=ort.splitting(["hardswish"]))
    assert split.fused_patterns == ("silu",) and split.split_patterns == ("hardswish",)
    assert ("lookup", "HardSigmoid") in _kinds(split) and ("mul", "") in _kinds(split)
    assert ort.splitting([]) is ort and ort.splitting(["silu", "silu"]).split_patterns == ("silu",)
    # TFLite's rules split every pattern already: nothing left to choose
    assert plan(model, rules="tflite").fused_patterns == ()


def test_a_table_that_splits_is_read_with_its_split_everywhere(tmp_path):
    """Calibrated with hard-swish split: the table records it (schema-valid, through a file), quantize_graph plans a
    graph made with the plain rules again, and the integer reference, the QDQ model on ONNX Runtime and the FP32
    model agree."""
    model, x = _hardswish_net(), _data(16)
    rules = get_rules("ort").splitting(["hardswish"])
    table = calibrate_onnx(model, x, method="minmax", target=rules)
    assert table.split_patterns == ("hardswish",) and table.rules == rules and table.target == "ort"
    path = tmp_path / "calib.json"
    table.save(path)
    assert json.loads(path.read_text())["split_patterns"] == ["hardswish"]
    loaded = load_table(path)
    assert loaded.rules == rules
    qg = quantize_graph(plan(model, rules="ort"), loaded)  # the plain plan: planned again with the split
    assert [n.kind for n in qg.nodes] == ["conv", "lookup", "mul", "conv", "lookup", "conv"]
    assert "ga" in qg.nodes[2].inputs  # the gate's output is a quantized tensor of its own
    y = Reference().run(qg, x)
    qdq = run_qdq(to_qdq(model, loaded), x)
    fp32 = run_qdq(model, x)
    step = qg.output_scales["output"]
    assert np.abs(y - qdq).max() <= 2 * step  # within a code per op on ORT's kernels
    assert cosine(y, fp32) > 0.99
    # a table without the field reads as before: every pattern one lookup
    plain = calibrate_onnx(model, x, method="minmax", target="ort")
    assert plain.split_patterns == () and "split_patterns" not in table_json(plain)
    assert "mul" not in [n.kind for n in quantize_graph(plan(model, rules="ort"), plain).nodes]


def test_the_choice_judges_the_split_form_last_and_keeps_the_better():
    model, x = _hardswish_net(), _data(32)
    table = calibrate_onnx(model, x, target="ort", steps=Steps(bias_correction=None), **FAST)
    choice = table.steps_choice
    assert choice["free"] == ["bias_correction", "split_patterns"] and choice["complete"]
    trials = choice["trials"]
    assert [t.get("split_patterns") for t in trials] == [None, None, ["hardswish", "silu"]]
    # the split trial is the best fused one with its patterns split, and the table is the best trial's form
    assert trials[2]["steps"] == trials[best_trial(trials[:2])]["steps"]
    assert table.split_patterns == tuple(trials[best_trial(trials)].get("split_patterns", ()))
    again = calibrate_onnx(model, x, target="ort", steps=Steps(bias_correction=None), **FAST)
    assert again.without_timing() == table.without_timing()


def test_no_split_candidate_where_the_rules_split_already():
    model, x = _hardswish_net(first_gate="Sigmoid"), _data(32)  # LiteRT has no int8 hard-sigmoid
    table = calibrate_onnx(model, x, target="tflite", steps=Steps(bias_correction=None), **FAST)
    assert "split_patterns" not in table.steps_choice["free"]
    assert all("split_patterns" not in t for t in table.steps_choice["trials"])


def test_the_choice_line_names_a_split_that_won():
    trial = {"method": "minmax", "steps": ["asymmetric"], "mean_cos": 0.99, "min_cos": 0.98, "agreement": 1.0}
    choice = {
        "free": ["asymmetric", "split_patterns"],
        "fixed": {},
        "budget_s": 300.0,
        "method": "minmax",
        "chosen": ["asymmetric"],
        "split_patterns": ["hardswish"],
        "judged_samples": 12,
        "complete": True,
        "trials": [trial, {**trial, "split_patterns": ["hardswish"], "mean_cos": 0.995}],
    }
    (line,) = choice_lines(choice)
    assert "(asymmetric, split patterns)" in line
    assert "minmax with asymmetric, hardswish as gate and multiply, INT8 cosine mean 0.995000" in line
    assert "(vs minmax with asymmetric: cosine mean 0.990000" in line


def test_the_split_candidate_reuses_its_fused_self_s_search_and_gets_the_same_scales():
    """The fine search reads the layers' inputs and rows only, which splitting leaves alone: the split phases take
    the fused phases' search (one search for both) and make the table a search of their own would make."""
    model, x = _hardswish_net(), _data(16)
    run = _run(model, x, CalibrationSettings(method="kl+cos", target="ort", **FAST), Provenance(), None)
    fused = _Phases(run)
    fused.scaled(fused.measured(x, False), "kl+cos")
    split = fused.splitting(("hardswish", "silu"))
    reused = split.scaled(split.measured(x, False), "kl+cos")
    assert len(fused.searches) == 1 and split.searches is fused.searches
    fresh = _Phases(split.run)
    alone = fresh.scaled(fresh.measured(x, False), "kl+cos")
    assert len(fresh.searches) == 1
    assert "ga" in reused.table.tensors  # the gate's output: a tensor of the split graph only
    assert table_json(reused.table.without_timing()) == table_json(alone.table.without_timing())


def test_a_build_from_a_table_that_splits_runs_the_split_and_checks_itself_bit_exact(tmp_path, capsys):
    """MobileNetV3-Small's hard-swish under a table that splits it: `tcc build --calib` on ort plans the split (a
    lookup and a mul per hard-swish in the manifest's op counts) and its self-check against the integer reference
    passes."""
    make_crops(tmp_path / "crops", 8, seed=0)
    spec = REPO / "spec" / "baselines" / "mobilenet_v3_small.yaml"
    request = CalibrationRequest(CalibrationSettings(method="minmax", target=get_rules("ort").splitting(["hardswish"])))
    table = calibrate(spec, tmp_path / "crops", request, overrides={"image_size": 32}).table
    assert table.split_patterns == ("hardswish",)
    table.save(tmp_path / "calib.json")
    assert build_from_table([spec, "--set", "image_size=32"], "ort", tmp_path / "calib.json", tmp_path / "b") == 0
    assert "self-check vs the integer reference: bit-exact" in capsys.readouterr().out
    ops = read_manifest(tmp_path / "b")["quantization"]["integer_ops"]
    fused = plan(lower_spec(spec, {"image_size": 32}).onnx, rules="ort")
    hard_swishes = sum(1 for n in fused.nodes if n.lookup == "hardswish")
    fused_muls = sum(1 for n in fused.nodes if n.kind == "mul")  # the squeeze-excites' channel scales
    assert hard_swishes > 0 and ops["mul"] == fused_muls + hard_swishes
