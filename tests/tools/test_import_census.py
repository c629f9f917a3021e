"""tools/import_census.py, the census of models users bring (issue 70): on one of its models at a small size, MONAI's
U-Net (instance norms, PReLU, 3 x 3 / 2 transposed convs, skip concats), a row is the import, the spec predicting as
ONNX Runtime on the original, and INT8 judged on natural crops beside ONNX Runtime's best quantize_static; BatchNorm
statistics come from the crops, so the outputs depend on the image. (MONAI's BasicUNet imports in
tests/onnx_import/test_spatial.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

from tcc.quant.report.quality import integer_convs
from tests.helpers import load_tool


def test_a_monai_unet_imports_predicts_and_builds_int8(tmp_path):
    tool = load_tool("import_census")
    rows = {}
    for name in ("monai_unet",):
        entry = next(e for e in tool.MODELS if e.name == name)
        entry = tool.Entry(entry.name, entry.source, entry.build, 32)
        (tmp_path / name).mkdir()
        # the tool's 32 / 64 crops measure; these check the row's making
        rows[name] = tool.census(entry, tmp_path / name, judged_n=4, calib_n=8)
    for name, row in rows.items():
        assert row["stage"] == "done", (name, row)
        assert row["predict_equal"], row
        assert row["tcc"]["cosine_mean"] > 0.9 and row["rival"]["method"] in tool.METHODS  # a measurement, not a bar
        assert 0 < row["tcc"]["cosine_se"] < 0.05 and "±" in tool.markdown([row])[-1]
        for metrics in (row["tcc"], row["rival"], row["rival_w7"]):
            assert metrics["cosine_min"] <= metrics["cosine_low"] <= metrics["cosine_mean"]
        assert row["tcc"]["split"] == []  # no x * g(x) in a U-Net of PReLUs
        assert row["choice"]["trials"] == []  # 8 crops: too few to choose
        split = {**row, "tcc": {**row["tcc"], "split": ["hardswish"]}}
        assert f"({row['tcc']['method']}, split hardswish)" in tool.markdown([split])[-1]
        assert set(row["paired"]) == {"cosine", "agreement", "tail"} and row["paired"]["tail"]["verdict"] in VERDICTS
        assert f"({_word(row['paired'])})" in tool.markdown([row])[-1]
        # --target ort (7-bit dense weights): ONNX Runtime's best with 7-bit weights too, paired the same way
        assert row["rival_w7"]["method"] in tool.METHODS and set(row["paired_w7"]) == set(row["paired"])
        assert f"({row['rival_w7']['method']});" in tool.markdown([row])[-1]
        # every conv of tcc's ORT model runs on integers (a head whose output is the graph's would not)
        convs = row["tcc"]["integer_convs"]
        assert convs[1] > 1 and convs[0] >= convs[1] - 1 and f"{convs[0]}/{convs[1]}" in tool.markdown([row])[-1]
    trial = {"method": "percentile", "percentile": 99.999, "steps": ["asymmetric"], "mean_cos": 0.9}
    trial |= {"guarded_cos": 0.8, "agreement": 0.5}
    brief = tool._choice({"judged_samples": 32, "folds": 4, "trials": [trial | {"cosines": [0.9] * 32}]})
    assert brief == {"judged_samples": 32, "folds": 4, "trials": [trial]}  # the per-sample lists left out
    summary = tool.summary(list(rows.values()))
    assert "1 models: 1 imported, 1 predict as ONNX Runtime, 1 build INT8" in summary
    assert "against its best with 7-bit weights (reduce_range, as tcc's ort): " in summary
    assert "of 1 within the bar" in summary


VERDICTS = ("lower", "level", "higher")


def _word(paired: dict) -> str:
    verdicts = {v["verdict"] for v in paired.values()}
    return next(w for w in ("lower", "higher", "level") if w in verdicts)


def test_the_paired_difference_is_lower_only_beyond_two_standard_errors():
    """tcc against the rival crop by crop: the same outputs are level, clearly worse ones lower, and a top-1 lost on
    one crop of 64 is level (one crop is within the noise); the summary counts the lower rows."""
    tool = load_tool("import_census")
    rng = np.random.default_rng(0)
    fp32 = rng.normal(size=(64, 10)).astype(np.float32)
    rival = fp32 + 0.05 * rng.normal(size=fp32.shape).astype(np.float32)
    worse = fp32 + 0.3 * rng.normal(size=fp32.shape).astype(np.float32)
    assert tool.paired(fp32, rival, rival)["cosine"] == {"mean": 0.0, "se": 0.0, "verdict": "level"}
    got = tool.paired(fp32, worse, rival)
    assert got["cosine"]["verdict"] == "lower" and got["cosine"]["mean"] < -2 * got["cosine"]["se"]
    one_lost = rival.copy()
    one_lost[0] = -fp32[0]  # one crop's top-1 lost
    assert tool.paired(fp32, one_lost, rival)["agreement"]["verdict"] == "level"
    row = {"stage": "done", "tcc": {"cosine_mean": 0.9, "top1_agreement": 0.9},
           "rival": {"cosine_mean": 0.95, "top1_agreement": 0.9}, "paired": got}  # fmt: skip
    assert "1 below it beyond 2 standard errors" in tool.summary([row])


def test_a_conv_runs_on_integers_where_its_output_is_quantized_alone():
    """integer_convs: ORT fuses DequantizeLinear -> Conv (-> Relu) -> QuantizeLinear into QLinearConv; a conv whose
    output a float op reads (NNCF's before an instance norm) runs in float. The NNCF clause of the summary."""
    tool = load_tool("import_census")
    w = helper.make_tensor("w", TensorProto.INT8, [2, 2, 1, 1], [1, 0, 0, 1])
    scalars = [helper.make_tensor(n, TensorProto.FLOAT, [], [0.1]) for n in ("s", "sw")]
    zero = helper.make_tensor("z", TensorProto.UINT8, [], [0])
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "sw"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["c1"]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("QuantizeLinear", ["r1", "s", "z"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["rd"]),
        helper.make_node("Conv", ["rd", "wd"], ["c2"]),
        helper.make_node("InstanceNormalization", ["c2", "g", "b"], ["y"]),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 2, 2]) for n in ("x", "y")]
    params = [helper.make_tensor(n, TensorProto.FLOAT, [2], [1.0, 1.0]) for n in ("g", "b")]
    model = helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:], [w, zero, *scalars, *params]))
    assert integer_convs(model) == (1, 2)
    level = {k: {"mean": 0.0, "se": 0.0, "verdict": "level"} for k in ("cosine", "agreement", "tail")}
    metrics = {"cosine_mean": 0.95, "cosine_min": 0.8, "top1_agreement": 0.9}
    row = {"stage": "done", "name": "m", "source": "timm", "predict_max_abs": 0.0, "predict_equal": True,
           "tcc": metrics | {"integer_convs": (2, 2)}, "rival": metrics | {"method": "MinMax"}, "paired": level,
           "rival_nncf": metrics | {"cosine_mean": 0.96, "integer_convs": (1, 2), "method": "NNCF mixed"},
           "paired_nncf": level,
           "rival_aimet": metrics | {"cosine_mean": 0.94, "integer_convs": (2, 2), "method": "AIMET min-max"},
           "paired_aimet": level}  # fmt: skip
    summary, line = tool.summary([row]), tool.markdown([row])[-1]
    assert "against NNCF's (mixed preset): 0 of 1 within the bar, 0 below, 1 where it runs a smaller share" in summary
    assert "against AIMET's (per-channel, min-max or tf-enhanced): 1 of 1 within the bar, 0 below, 0 where" in summary
    assert (
        "| 0.96000 / 0.80000, 0.900 (NNCF mixed); " in line and "| 0.94000 / 0.80000, 0.900 (AIMET min-max); " in line
    )
    assert "| 2/2, 1/2, 2/2 |" in line and line.count("|") == tool.markdown([])[0].count("|")
    # a rival that failed on the model: its cell says so, the others stand
    del row["rival_aimet"], row["paired_aimet"]
    row["rival_errors"] = {"aimet-minmax": "ValueError: no graph"}
    line = tool.markdown([row])[-1]
    assert "| aimet-minmax: ValueError: no graph |" in line and line.count("|") == tool.markdown([])[0].count("|")
    # the method tcc's choice took, with its percentile where it is the percentile method's
    row["tcc"] |= {"method": "percentile", "percentile": 99.999, "split": ["hardswish"]}
    assert "/ 0.80000 (percentile 99.999, split hardswish) |" in tool.markdown([row])[-1]


def test_the_tail_is_lower_where_several_crops_are_not_where_one_is():
    """The tail's verdict (percentile 1 of 256 crops' cosines, its standard error bootstrapped over the crops): the
    same outputs are level, 8 crops far off make it lower, one crop far off (the worst crop alone) does not."""
    tool = load_tool("import_census")
    rng = np.random.default_rng(1)
    fp32 = rng.normal(size=(256, 10)).astype(np.float32)
    rival = fp32 + 0.1 * rng.normal(size=fp32.shape).astype(np.float32)
    assert tool.paired(fp32, rival, rival)["tail"] == {"mean": 0.0, "se": 0.0, "verdict": "level"}
    far = fp32 + 2.0 * rng.normal(size=fp32.shape).astype(np.float32)
    several, one = rival.copy(), rival.copy()
    several[:8], one[:1] = far[:8], far[:1]
    got = tool.paired(fp32, several, rival)["tail"]
    assert got["verdict"] == "lower" and got["se"] > 0, got
    assert tool.paired(fp32, one, rival)["tail"]["verdict"] == "level"
    assert tool.paired(fp32, several, rival) == tool.paired(fp32, several, rival)  # seeded resamples


def test_the_bar_takes_the_margin_on_the_mean_and_nothing_on_the_worst_crop_or_the_agreement():
    """Issue 74's bar on the census: mean cosine within 0.002 of the rival's or above, worst crop and agreement not
    lower; the literal count (both at least the rival's) beside it."""
    tool = load_tool("import_census")
    rival = {"cosine_mean": 0.95, "cosine_min": 0.80, "top1_agreement": 0.9}
    assert tool.meets_bar(rival | {"cosine_mean": 0.9485}, rival)  # within the margin
    assert not tool.at_least(rival | {"cosine_mean": 0.9485}, rival)
    assert not tool.meets_bar(rival | {"cosine_mean": 0.9475}, rival)
    assert not tool.meets_bar(rival | {"cosine_min": 0.79}, rival)
    assert not tool.meets_bar(rival | {"top1_agreement": 0.89}, rival)
    # the worst case read as a low percentile of the crops' cosines: one crop below no longer decides it
    rival = rival | {"cosine_low": 0.85}
    assert tool.meets_bar(rival | {"cosine_min": 0.79, "cosine_low": 0.86}, rival, "cosine_low")
    assert not tool.meets_bar(rival | {"cosine_low": 0.84}, rival, "cosine_low")
    assert not tool.meets_bar({k: v for k, v in rival.items() if k != "cosine_low"}, rival, "cosine_low")
    level = {"cosine": {"mean": 0.0, "se": 0.0, "verdict": "level"}}
    rows = [{"stage": "done", "tcc": t, "rival": rival, "paired": level, "rival_w7": rival | {"cosine_min": 0.9},
             "paired_w7": level} for t in (rival | {"cosine_mean": 0.9485}, rival)]  # fmt: skip
    summary = tool.summary(rows)
    assert "1 of them at least ONNX Runtime's best" in summary and "2 within issue 74's bar" in summary
    assert "7-bit weights (reduce_range, as tcc's ort): 0 of 2 within the bar, 0 below" in summary
    assert "read as percentile 1 of the crops' cosines instead of the one worst crop: 2 within the bar (2 " in summary


def test_the_batchnorm_statistics_come_from_the_crops():
    tool = load_tool("import_census")
    entry = tool.Entry("segresnet", "monai", tool._monai("SegResNet", init_filters=8), 32)
    model = tool.seeded_with_natural_statistics(entry)
    x = torch.from_numpy(tool.natural_crops(4, 32, seed=5))
    with torch.no_grad():
        y = model(x).numpy().reshape(4, -1)
    cos = y @ y.T / np.outer(np.linalg.norm(y, axis=1), np.linalg.norm(y, axis=1))
    assert cos[~np.eye(4, dtype=bool)].min() < 0.99  # different images, different outputs


@pytest.mark.parametrize("option", ["--rivals-python", "--nncf-python"])
def test_a_missing_rivals_interpreter_is_refused_before_any_model(tmp_path, capsys, option):
    """--rivals-python (or its old name) that names no executable: exit 2 and a message, before a model is exported
    or built."""
    tool = load_tool("import_census")
    out = tmp_path / "rows.json"
    assert tool.main(["lcnet_050", option, str(tmp_path / "nope"), "--json", str(out)]) == 2
    assert "--rivals-python" in capsys.readouterr().err and not out.exists()
