"""Precision placement (tcc.quant.table.placement / place / place_speed): float islands in INT8 graphs on every
lowering,
the numeric contract where they are (tcc.tolerance), and the placement step's two objectives."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

from tcc.build import TOLERANCES, build, build_settings, int8_self_check
from tcc.cli.main import main
from tcc.frontend import lower_spec
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.match import plan
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.reference import Reference
from tcc.quant.lower.qdq import to_qdq
from tcc.quant.place.placer import PlaceOptions, place, reference_score
from tcc.quant.report.quality import per_sample_cosine, run_ort
from tcc.quant.table.placement import float_nodes, with_placement
from tests.helpers import REPO
from tests.helpers.onnx_util import make_model, optimized_ops

SPEC = """kind: model
name: islands
input: {shape: [3, 32, 32]}
layers:
  - {id: stem, op: conv2d, out: 8, kernel: 3, stride: 2, padding: 1}
  - {op: relu}
  - {id: dw, op: conv2d, out: 8, kernel: 3, padding: 1, groups: 8}
  - {op: relu}
  - {id: pw, op: conv2d, out: 8, kernel: 1}
  - {op: relu}
  - {id: gap, op: global_avgpool}
  - {op: flatten}
  - {id: fc, op: linear, out: 4}
"""


def _pinned(table, *names):
    return with_placement(table, {"nodes": {n: {"precision": "float", "reason": "pinned"} for n in names}})


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The spec, its FP32 graph, smooth random data and a kl table per rules (ort, tvm, tflite)."""
    from scipy.ndimage import uniform_filter

    d = tmp_path_factory.mktemp("placement")
    spec = d / "islands.yaml"
    spec.write_text(SPEC)
    fe = lower_spec(spec, {})
    rng = np.random.default_rng(5)
    x = uniform_filter(rng.standard_normal((16, 3, 32, 32)), size=(1, 1, 5, 5)).astype(np.float32) * 3
    np.save(d / "data.npy", x)
    tables = {r: calibrate_onnx(fe.onnx, x, method="kl", target=r, progress=False) for r in ("ort", "tvm", "tflite")}
    return {"dir": d, "spec": spec, "fp32": fe.onnx, "x": x, "tables": tables}


def test_islands_are_planned_and_their_tensors_stay_float_between_them(case):
    table = _pinned(case["tables"]["tvm"], "dw", "pw")
    qg = quantize_graph(plan(case["fp32"], rules="tvm"), table)  # planned again with the table's placement
    assert [n.name for n in qg.islands] == ["dw", "pw"] and float_nodes(table) == {"dw", "pw"}
    dw, pw = qg.islands
    # the stem conv gives it its accumulator dequantized (TargetRules.accumulators_into_islands); float to the next
    assert dw.qin == (None,) and dw.qout == (None,) and qg.nodes[0].qout == (None,)
    assert pw.qin == (None,) and pw.qout[0] is not None  # quantized again: the integer gap reads it
    on_ort = quantize_graph(plan(case["fp32"], rules="ort"), _pinned(case["tables"]["ort"], "dw", "pw"))
    assert on_ort.islands[0].qin[0] is not None  # ORT's: the stem's 8-bit output, dequantized in
    assert "relu_1" not in plan(case["fp32"], rules="tvm", floats={"dw", "pw"}).quantized
    with pytest.raises(Exception, match="no node of the model's integer graph.*computed by 'dw'"):
        plan(case["fp32"], rules="tvm", floats={"relu_1"})


def test_an_all_float_graph_is_the_fp32_model(case):
    """Every node an island: the graph input is never quantized and the reference computes the FP32 model (its
    slices on ONNX Runtime's float kernels)."""
    fp32, x = case["fp32"], case["x"][:4]
    names = [n.name for n in plan(fp32, rules="ort").nodes]
    qg = quantize_graph(plan(fp32, rules="ort"), _pinned(case["tables"]["ort"], *names))
    assert qg.input_q is None and not [n for n in qg.nodes if n.integer]
    np.testing.assert_allclose(Reference().run(qg, x), run_ort(fp32, x), rtol=1e-5, atol=1e-6)


def test_qdq_island_stays_float_in_onnx_runtime(case, tmp_path):
    """ORT quantizes the float weights of a Conv fed by a DequantizeLinear itself (WeightBiasQuantization): the
    island is fed by Cast / Mul instead, and ORT's optimized graph keeps a float Conv with tcc's float weights."""
    table = _pinned(case["tables"]["ort"], "dw")
    q = to_qdq(case["fp32"], table, compact=True)
    assert "Cast" in [n.op_type for n in q.graph.node]
    kinds = optimized_ops(q, tmp_path / "opt.onnx")
    assert kinds.count("QLinearConv") == 2 and any(k in ("Conv", "FusedConv") for k in kinds), kinds


@pytest.mark.parametrize("target,rules", [("ort", "ort"), ("host", "tvm"), ("tflite", "tflite")])
def test_islands_agree_with_the_reference_on_each_backend(case, tmp_path, capsys, target, rules):
    """A pinned placement built for ORT, TVM host and TFLite: each within the contract (tcc.tolerance: integer ops as
    without islands, island outputs within 1 LSB per op on the backend's own codes), the islands in the manifest and
    printed by `tcc build`."""
    path = tmp_path / "calib.json"
    _pinned(case["tables"][rules], "stem", "pw", "fc").save(path)
    out = tmp_path / "b"
    assert (
        main(
            [
                "build",
                str(case["spec"]),
                "--target",
                target,
                "--precision",
                "int8",
                "--calib",
                str(path),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "float islands: 3 node(s) of the INT8 graph run in float32: 3 pinned (stem, pw, fc)" in printed
    m = json.loads((out / "manifest.json").read_text())
    assert [i["node"] for i in m["quantization"]["float_islands"]] == ["stem", "pw", "fc"]
    r = m["self_check"]["result"]
    assert r["passed"]
    if not r["bit_exact"]:
        per_op = r["per_op"]
        assert per_op["max_lsb_islands"] <= TOLERANCES["int8"]["island_lsb_tolerance"]
        assert per_op["max_lsb_integer"] <= (TOLERANCES["int8"]["lsb_tolerance"] if target == "ort" else 0)


def test_the_island_contract_judges_integer_ops_exactly(case):
    """An exact backend with islands: a code one off at an island output passes, one off at an integer op fails."""
    table = _pinned(case["tables"]["tvm"], "dw")
    qg = quantize_graph(plan(case["fp32"], rules="tvm"), table)
    x = case["x"][:2]

    class TieBreaker(Reference):  # a backend whose float dw rounds every code the other way
        def float_island(self, n, *xs):
            out = super().float_island(n, *xs)
            out[0].q += out[0].q < out[0].hi  # every code up by one: still 1 LSB per element
            return out

    y, codes = TieBreaker().run(qg, x, return_all=True)
    codes = {k: v.q for k, v in codes.items()}
    assert not np.array_equal(y, Reference().run(qg, x))
    check = int8_self_check(y, y, qg, x, True, None, lambda: codes)["result"]
    assert check["per_op"]["max_lsb_islands"] == 1 and check["per_op"]["max_lsb_integer"] == 0 and check["passed"]
    moved = dict(codes, relu_2=codes["relu_2"].copy())  # pw's output (an integer op) one off
    moved["relu_2"].flat[0] += 1 if moved["relu_2"].flat[0] < 255 else -1
    check = int8_self_check(y, y, qg, x, True, None, moved)["result"]
    assert check["per_op"]["max_lsb_integer"] == 1 and not check["passed"]


def test_a_graph_without_islands_stays_bit_exact(case, tmp_path):
    path = tmp_path / "calib.json"
    case["tables"]["tvm"].save(path)
    r = build(case["spec"], build_settings("host", precision="int8", calib=path), tmp_path / "b")
    result = r.manifest["self_check"]["result"]
    assert result["bit_exact"] and result["required"] == "bit-exact" and "per_op" not in result
    assert "float_islands" not in r.manifest["quantization"]


def test_placement_meets_a_floor_pure_int8_cannot(case):
    """The stated floor, 0.999999 mean output cosine on the search samples, is out of reach of pure INT8 here; the
    placement reaches it, judged by the integer reference, with fewer float nodes than the model has."""
    floor = 0.999999
    fp32, table, x = case["fp32"], case["tables"]["tvm"], case["x"]
    pure = reference_score(fp32, table, x[:8], run_ort(fp32, x[:8])).mean
    assert pure < floor
    placed = place(fp32, table, x, PlaceOptions(min_cos=floor, samples=8, wide=False))
    p = placed.placement
    assert p["reference_cos_after"] >= floor and p["objectives"]["min_cos"] == floor and "widened" not in p
    assert 0 < len(float_nodes(placed)) < len(plan(fp32, rules="tvm").nodes)
    assert all(e["reason"] == "accuracy" for e in p["nodes"].values())
    qg = quantize_graph(plan(fp32, rules="tvm"), placed)
    judged = per_sample_cosine(run_ort(fp32, x[:8]), Reference().run(qg, x[:8])).mean()
    assert judged >= floor - 1e-6
    again = place(fp32, table, x, PlaceOptions(min_cos=floor, samples=8, wide=False))
    assert placed.placement == again.placement


def test_placement_meets_a_worst_sample_floor_the_mean_floor_leaves_unmet(case):
    """A floor on the lowest per-sample cosine: pure INT8 misses it, the mean floor alone (set below pure INT8's mean)
    places nothing, and --min-worst-cos keeps nodes in float until the integer reference's worst search sample is at
    least the floor, recorded in the table."""
    fp32, table, x = case["fp32"], case["tables"]["tvm"], case["x"]
    pure = reference_score(fp32, table, x[:8], run_ort(fp32, x[:8]))
    floor = 1 - (1 - pure.worst) / 10  # ten times closer to 1 than pure INT8's worst sample
    assert pure.worst < floor
    mean_floor = 1 - 1.5 * (1 - pure.mean)  # below pure INT8's mean (fake-quant's too: within 1 LSB per op)
    mean_only = place(fp32, table, x, PlaceOptions(min_cos=mean_floor, samples=8, wide=False))
    assert not float_nodes(mean_only)
    placed = place(fp32, table, x, PlaceOptions(min_cos=mean_floor, min_worst_cos=floor, samples=8, wide=False))
    p = placed.placement
    assert p["objectives"]["min_worst_cos"] == floor and p["reference_worst_cos_after"] >= floor
    assert p["worst_cos_before"] < floor and 0 < len(float_nodes(placed)) < len(plan(fp32, rules="tvm").nodes)
    judged = reference_score(fp32, placed, x[:8], run_ort(fp32, x[:8]))
    assert judged.worst >= floor - 1e-6 and judged.mean >= mean_floor


INT8_US = {"stem": 50.0, "dw": 90.0, "pw": 20.0, "gap": 5.0, "fc": 5.0}  # a profile where only dw's integer
FP32_US = {"stem": 80.0, "dw": 30.0, "pw": 25.0, "gap": 6.0, "fc": 6.0}  # kernel is slower than its float twin


def fake_profile(model, x, runs):
    """ONNX Runtime's per-kernel profile as tcc.measure.ort reads it, from the two tables above: the FP32
    model, or the INT8 model with its float islands (a layout change, the float kernel, the quantize)."""
    if not any(n.op_type == "QuantizeLinear" for n in model.graph.node):  # the FP32 model
        return [
            {"node": f"{k}_nchwc", "op": "Conv", "in": ["float"], "out": ["float"], "us": v} for k, v in FP32_US.items()
        ]
    inits = {t.name for t in model.graph.initializer}
    floats = {n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm") and n.input[1] in inits}
    prof = []
    for k, v in INT8_US.items():
        if k in floats:
            prof += [
                {"node": "Transpose", "op": "Transpose", "in": ["uint8"], "out": ["uint8"], "us": 5.0},
                {"node": f"{k}_nchwc", "op": "Conv", "in": ["float"], "out": ["float"], "us": FP32_US[k]},
                {"node": f"{k}/quantize", "op": "QuantizeLinear", "in": ["float"], "out": ["uint8"], "us": 5.0},
            ]
        else:
            prof.append({"node": f"{k}_token_1", "op": "QLinearConv", "in": ["uint8"], "out": ["uint8"], "us": v})
    return prof


def test_speed_placement_follows_the_measured_profile(case, monkeypatch):
    """Which nodes stay float for speed comes from the measured profile: a node whose integer kernel is slower than
    its float twin is a candidate, kept where its island (conversions included) measured cheaper."""
    from tcc.quant.place import speed as place_speed

    monkeypatch.setattr(place_speed, "_profile", fake_profile)
    monkeypatch.setattr(place_speed, "_measured_ratio", lambda a, b, x: 0.8)
    found, record = place_speed.speed_nodes(case["fp32"], case["tables"]["ort"], set(), case["x"][:1])
    assert set(found) == {"dw"} and found["dw"] == {"int8_us": 90.0, "float_us": 40.0}
    assert record["candidates"] == 1 and record["kept"] == 1 and record["latency_ratio_vs_int8"] == 0.8
    monkeypatch.setattr(place_speed, "_measured_ratio", lambda a, b, x: 1.02)  # the whole model not faster
    assert place_speed.speed_nodes(case["fp32"], case["tables"]["ort"], set(), case["x"][:1])[0] == {}


def test_speed_candidates_are_the_kinds_placement_weighs(monkeypatch):
    """The speed objective takes its candidates from the table as the accuracy search does (IntOp.placeable): a max
    pool and a concat move codes, so their integer kernels are never islands for speed, however slow ORT measured
    them (both were candidates before: the speed step kept its own list of moves)."""
    from tcc.quant.place import speed as place_speed

    w1 = np.random.default_rng(0).standard_normal((8, 4, 3, 3)).astype(np.float32) * 0.2
    w2 = np.random.default_rng(1).standard_normal((8, 8, 1, 1)).astype(np.float32) * 0.2
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c1"], ["mp"], name="mp", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["mp", "w2"], ["c2"], name="c2"),
        helper.make_node("Concat", ["mp", "c2"], ["y"], name="cat", axis=1),
    ]
    fp32 = make_model(nodes, {"x": ("N", 4, 8, 8)}, {"y": ("N", 16, 4, 4)}, [("w1", w1), ("w2", w2)], opset=13)
    x = np.random.default_rng(2).standard_normal((8, 4, 8, 8)).astype(np.float32)
    table = calibrate_onnx(fp32, x, method="minmax", target="ort", progress=False)

    def slower_integer_kernels(model, x, runs):  # every node's integer kernel slower than its float one
        quantized = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
        kind = ["uint8"] if quantized else ["float"]
        return [
            {"node": f"{k}_token_1", "op": "K", "in": kind, "out": kind, "us": 2.0 if quantized else 1.0}
            for k in ("c1", "mp", "c2", "cat")
        ]

    monkeypatch.setattr(place_speed, "_profile", slower_integer_kernels)
    found, record = place_speed.speed_nodes(fp32, table, set(), x[:1])
    assert record["candidates"] == 2 and found == {}  # c1, c2; no float kernel measured cheaper in the placed model


def test_placement_bound_takes_each_node_at_its_faster_kernel(case, monkeypatch):
    """The bound any placement could reach: per node the faster of its integer and float kernels (dw: 90 -> 30), the
    INT8 model's kernels that belong to no node (a layout change) as measured; sums of kernel time."""
    from tcc.quant.place import speed as place_speed

    def with_layout_change(model, x, runs):
        prof = fake_profile(model, x, runs)
        quantized = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
        return (
            prof + [{"node": "Transpose", "op": "Transpose", "in": ["uint8"], "out": ["uint8"], "us": 7.0}]
            if quantized
            else prof
        )

    monkeypatch.setattr(place_speed, "_profile", with_layout_change)
    b = place_speed.placement_bound(case["fp32"], case["tables"]["ort"], case["x"][:1])
    assert (b["fp32_us"], b["int8_us"], b["bound_us"]) == (147.0, 177.0, 117.0)
    assert b["bound_ratio"] == round(117 / 147, 4) and b["int8_ratio"] == round(177 / 147, 4)
    assert b["integer_slower"] == ["dw"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["--keep-float", "relu_1"],
            "--keep-float 'relu_1': no node of the model's integer graph (computed by node 'dw')",
        ),
        (["--speed", "--target", "tvm"], "--speed ort measures ONNX Runtime's integer kernels"),
        (["--min-cos", "1.5"], "--min-cos 1.5: a cosine floor lies in (0, 1]"),
        (["--min-worst-cos", "0"], "--min-worst-cos 0.0: a cosine floor lies in (0, 1]"),
        (["--keep-float", "dw", "--target", "ax620"], "the ax620 rules keep no float ops"),
    ],
)
def test_placement_mistakes_exit_2(case, tmp_path, capsys, argv, message):
    out = tmp_path / "t.json"
    assert (
        main(
            [
                "calibrate",
                str(case["spec"]),
                "--data",
                str(case["dir"] / "data.npy"),
                "--method",
                "kl",
                "--no-compare",
                "-o",
                str(out),
                *argv,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


def test_softmax_is_a_float_island_where_the_target_runs_float_ops(case, tmp_path, capsys):
    """No integer form under ORT's rules (their float_kinds): the split is recorded in the manifest and printed,
    never silent."""
    spec = tmp_path / "softmax.yaml"
    spec.write_text(SPEC + "  - {id: probs, op: softmax}\n")
    out = tmp_path / "b"
    assert (
        main(
            [
                "build",
                str(spec),
                "--target",
                "ort",
                "--precision",
                "int8",
                "--data",
                str(case["dir"] / "data.npy"),
                "--method",
                "kl",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert "float islands: 1 node(s) of the INT8 graph run in float32: 1 required (probs)" in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert m["quantization"]["float_islands"] == [
        {
            "node": "probs",
            "kind": "softmax",
            "reason": "required",
            "why": "no integer form on this target, or one its rules compute in float: kept in float where the target "
            "allows float ops",
        }
    ]
    assert m["self_check"]["result"]["passed"]


def test_build_says_how_much_of_the_model_its_placement_keeps_in_float(case, tmp_path, capsys):
    """`tcc build --data` with a placement prints what `tcc calibrate` does (the nodes are in the manifest), and
    warns when most of the model stays float: the 0.999 floor on MobileViT kept all 350 nodes in float."""
    graph = plan(case["fp32"], rules="ort")
    computing = [n.name for n in graph.nodes if n.integer and n.kind in ("conv", "gemm")]
    argv = [
        "build",
        str(case["spec"]),
        "--target",
        "ort",
        "--precision",
        "int8",
        "--data",
        str(case["dir"] / "data.npy"),
        "--method",
        "kl",
    ]
    assert main([*argv, *(a for name in computing for a in ("--keep-float", name)), "-o", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err  # the build's log
    assert "precision placement:" in err and "warning: the placement keeps" in err
    assert main([*argv, "--keep-float", computing[-1], "-o", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "precision placement: 1 node(s) kept in float" in err and "warning: the placement keeps" not in err


def test_an_island_computes_with_the_equalized_parameters(case, tmp_path, capsys):
    """Equalization rescales a pair's channels (dw's outputs, pw's inputs): a consumer kept in float must compute with
    its equalized weights, on the reference and on every backend, or the island reads rescaled channels with the
    original weights. The island's FP32 sub-model holds the table's parameters, and TFLite's build (its float ops
    written from the parameters) passes its self-check against the reference."""
    from onnx import numpy_helper

    from tcc.quant.table.steps import Steps, calibrated_parameters

    fp32, x = case["fp32"], case["x"]
    table = calibrate_onnx(fp32, x, method="kl", target="tflite", progress=False, steps=Steps(equalization=True))
    equalized = calibrated_parameters(fp32, table)
    assert "pw.weight" in equalized  # the dw -> relu -> pw pair was equalized: the test means something
    table = _pinned(table, "pw")
    island = next(n for n in quantize_graph(plan(fp32, rules="tflite"), table).islands if n.name == "pw")
    inits = {t.name: numpy_helper.to_array(t) for t in island.float_model.graph.initializer}
    np.testing.assert_array_equal(inits["pw.weight"], equalized["pw.weight"])
    path = tmp_path / "calib.json"
    table.save(path)
    assert (
        main(
            [
                "build",
                str(case["spec"]),
                "--target",
                "tflite",
                "--precision",
                "int8",
                "--calib",
                str(path),
                "-o",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["self_check"]["result"]["passed"]


def test_an_island_keeps_its_bias_uncorrected(case):
    """Bias correction makes up for a layer's own quantization: a layer kept in float computes with its FP32 bias
    (equalized where equalization rescaled it), so with every weighted node in float and the input kept at its
    calibrated step the output is FP32's up to the input's rounding, with or without the correction."""
    from tcc.quant.table.steps import Steps, calibrated_parameters

    fp32, x = case["fp32"], case["x"]
    corrected = calibrate_onnx(
        fp32, x, method="kl", target="ort", progress=False, steps=Steps(equalization=True, bias_correction=True)
    )
    plain = calibrate_onnx(fp32, x, method="kl", target="ort", progress=False, steps=Steps(equalization=True))
    shifted = calibrated_parameters(fp32, corrected)
    assert not np.array_equal(shifted["pw.bias"], calibrated_parameters(fp32, plain)["pw.bias"])
    weighted = [n.name for n in plan(fp32, rules="ort").weighted]
    ref = run_ort(fp32, x[:8])
    outs = []
    for t in (corrected, plain):
        placed = _pinned(t, *weighted)
        assert (
            calibrated_parameters(fp32, placed)["pw.bias"].tobytes()
            == calibrated_parameters(fp32, plain)["pw.bias"].tobytes()
        )
        outs.append(run_ort(to_qdq(fp32, placed), x[:8], optimize=False))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert per_sample_cosine(ref, outs[0]).min() > 0.9999


def test_a_chain_of_concats_between_float_nodes_is_absorbed_whole():
    """DDSNet's dense blocks chain concats (each reads the previous one): with every computing node in float, none of
    them is left quantized (a fixpoint grown from below stopped at the first, whose reader is the next concat)."""

    from tcc.quant.place.placer import absorbed

    fe = lower_spec(REPO / "spec" / "ddsnet.yaml", {"image_size": 32})
    graph = plan(fe.onnx, rules="ort")
    computing = {n.name for n in graph.nodes if n.op.placeable}
    concats = {n.name for n in graph.nodes if n.kind == "concat"}
    assert len(concats) == 16
    assert absorbed(graph, computing) == {n.name for n in graph.nodes}
    dense1 = {n for n in computing if n.startswith("dense1.")}
    assert not absorbed(graph, dense1) & concats  # the block's input comes from an integer node: its concats stay


def test_gain_counts_the_missed_objectives_or_all_when_none_is_missed():
    """The ranking's gain: only the objectives the current score misses, or every objective where it misses none
    (fake-quant can meet the floors while the integer reference does not: a ranking by it must still order nodes)."""
    from tcc.quant.place.search import Score

    both = PlaceOptions(min_cos=0.9999, min_worst_cos=0.999)
    assert both.gain(Score(0.9998, 0.9995), Score(0.99985, 0.9996)) == pytest.approx(0.00005)  # the mean's only
    assert both.gain(Score(0.99995, 0.9995), Score(0.99996, 0.9996)) == pytest.approx(0.00011)  # both met: both
    assert both.shortfall(Score(0.9998, 0.998)) == pytest.approx(0.0011) and both.shortfall(Score(1.0, 1.0)) == 0
    assert PlaceOptions(min_cos=0.9999).gain(Score(0.99995, 0.9), Score(0.99996, 0.5)) == pytest.approx(0.00001)


def test_spread_error_gets_the_cheapest_float_tail():
    """When no node gains alone (the error is spread over many layers), the greedy's last resort is the shortest
    tail of the graph in float that meets the floors (bisection), on top of the greedy's picks or without them,
    whichever costs less; not every node. A judge whose cosine rises with how much of the last dense block and the
    head is in float, and with nothing else, stands for such a model."""

    from tcc.quant.place.placer import float_remedy
    from tcc.quant.place.search import Score, Search, ends, node_cost

    fe = lower_spec(REPO / "spec" / "ddsnet.yaml", {"image_size": 32})
    graph = plan(fe.onnx, rules="ort")
    computing = [n.name for n in graph.nodes if n.integer and n.op.placeable]
    late = computing[-6:]  # needed: the last 6 computing nodes (dense4's last layers, the head)
    calls = []

    def judge(names):
        calls.append(set(names))
        return Score(0.999 + 0.00099 * sum(n in names for n in late) / len(late) + 0.00002, 0.9995)

    options = PlaceOptions(min_cos=0.9999)
    early = {computing[0]: {"precision": "float", "reason": "accuracy", "kind": "conv"}}  # a scattered, costly pick
    chosen = dict(early)
    search = Search(float_remedy(graph), graph, judge, options, lambda s: None, "test")
    got = ends(search, chosen, set(), judge(set(chosen)))
    assert options.shortfall(got) == 0
    assert set(late) <= set(chosen) and computing[0] not in chosen  # the tail without the greedy's costly pick
    assert not set(computing[:-6]) & set(chosen)  # and no computing node before the tail
    assert all(chosen[n]["reason"] == "accuracy" for n in chosen)
    assert len(calls) <= 4 * (len(computing).bit_length() + 1) + 1  # four bisections: two ends, two bases
    anchors = {n.name: n for n in graph.nodes}
    assert sum(node_cost(graph, anchors[n]) for n in chosen) < 0.2 * sum(node_cost(graph, n) for n in graph.nodes)


def test_error_made_early_gets_the_cheapest_float_head():
    """Where the error that no node takes alone enters early (DeepLabV3-MobileNetV3's stem: docs/notes/
    segmentation.md), the last resort is the shortest head of the graph in float that meets the floors, not a tail
    reaching back to it (every node after the stem). A judge whose cosine rises with how much of the stem and first
    block is in float, and with nothing else, stands for such a model; its log names the head."""

    from tcc.quant.place.placer import float_remedy
    from tcc.quant.place.search import Score, Search, ends

    fe = lower_spec(REPO / "spec" / "ddsnet.yaml", {"image_size": 32})
    graph = plan(fe.onnx, rules="ort")
    computing = [n.name for n in graph.nodes if n.integer and n.op.placeable]
    early = computing[:4]

    def judge(names):
        return Score(0.999 + 0.00099 * sum(n in names for n in early) / len(early) + 0.00002, 0.9995)

    options, chosen, logged = PlaceOptions(min_cos=0.9999), {}, []
    search = Search(float_remedy(graph), graph, judge, options, logged.append, "test")
    got = ends(search, chosen, set(), judge(set()))
    assert options.shortfall(got) == 0
    assert set(early) <= set(chosen) and not set(computing[4:]) & set(chosen)
    assert "a head of the graph at float" in logged[-1]


def test_a_pooled_conv_costs_its_multiply_accumulates():
    """A pooled conv (the tvm rules' 1 x 1 conv on an average pool's window sums) costs its output elements times
    its input channels, as a conv does: the same conv before its pool (the ort rules' order) costs 4 times as much,
    on 4 times the pixels. Before, a pooled conv cost its output elements alone, C_in times too little, and the
    accuracy search ranked it first among nodes of equal gain."""
    from tcc.quant.intgraph.match import quantized_form
    from tcc.quant.place.search import node_cost

    fe = lower_spec(REPO / "spec" / "ddsnet.yaml", {"image_size": 32})
    ort, tvm = (plan(quantized_form(fe.onnx, r), rules=r) for r in ("ort", "tvm"))
    convs = {n.name: n for n in ort.nodes}
    pooled = [n for n in tvm.nodes if n.kind == "pooled_conv"]
    assert [n.name for n in pooled] == ["trans1.conv", "trans2.conv", "trans3.conv"]
    for n in pooled:
        outputs = int(np.prod(tvm.shapes[n.outputs[0]][1:]))
        assert node_cost(tvm, n) == outputs * tvm.shapes[n.weight][1]
        assert node_cost(ort, convs[n.name]) == 4 * node_cost(tvm, n)


def test_calibrate_says_how_much_of_the_model_a_placement_keeps_in_float(case):
    """The table records the float share of the model's cost; over half of it, `tcc calibrate` warns (the result
    is hardly an INT8 model). Every computing node pinned in float: the share is the non-computing rest's."""
    from tcc.quant.place.placer import placement_lines

    graph = plan(case["fp32"], rules="tvm")
    computing = tuple(n.name for n in graph.nodes if n.integer and n.kind in ("conv", "gemm"))
    placed = place(case["fp32"], case["tables"]["tvm"], case["x"], PlaceOptions(keep_float=computing))
    share = placed.placement["float_cost_share"]
    assert 0.9 < share <= 1.0
    lines = placement_lines(placed)
    assert f"{100 * share:.1f}% of the model's cost" in lines[0] and lines[1].startswith("warning: the placement keeps")
    one = place(case["fp32"], case["tables"]["tvm"], case["x"], PlaceOptions(keep_float=("fc",)))
    assert one.placement["float_cost_share"] < 0.05
    assert not any(line.startswith("warning") for line in placement_lines(one))


@pytest.fixture(scope="module")
def coarse(case):
    """A tvm table whose 8-bit activation grids carry most of the error: minmax over data with one sample 30 times
    louder than the rest (its ranges are the outlier's), and the data."""
    x = case["x"].copy()
    x[0] *= 30
    return calibrate_onnx(case["fp32"], x, method="minmax", target="tvm", progress=False), x


def test_tvm_placement_widens_activations_before_it_keeps_nodes_in_float(case, coarse, tmp_path):
    """Under TVM's rules the accuracy search widens activations to 16 bits first: here every activation widened
    reaches a floor pure INT8 misses by far, so the placement keeps no node in float and widens only some
    nodes' outputs. Only their tensors (with their scale groups) change, marked in the table; the same table and
    data give the same placement; a host build from the table is bit-exact with the integer reference."""
    fp32, x = case["fp32"], coarse[1]
    table = coarse[0]
    floor = 0.9999
    graph = plan(fp32, rules="tvm")
    pure = reference_score(fp32, table, x[:8], run_ort(fp32, x[:8]))
    assert pure.mean < 0.999
    placed = place(fp32, table, x, PlaceOptions(min_cos=floor, samples=8))
    p = placed.placement
    assert p["reference_cos_after"] >= floor and p["objectives"]["wide"] is True
    assert not float_nodes(placed) and 0 < len(p["widened"]) < len([n for n in graph.nodes if n.op.placeable])
    wide = {k for k, e in placed.tensors.items() if e.get("widened")}
    assert len(wide) == p["widened_tensors"] and all(placed.tensors[k]["bits"] > 8 for k in wide)
    assert {k: e for k, e in placed.tensors.items() if k not in wide} == {
        k: e for k, e in table.tensors.items() if k not in wide
    }
    assert placed == place(fp32, table, x, PlaceOptions(min_cos=floor, samples=8))
    floats_only = place(fp32, table, x, PlaceOptions(min_cos=floor, samples=8, wide=False))
    assert float_nodes(floats_only) and "widened" not in floats_only.placement
    path = placed.save(tmp_path / "wide.json")
    r = build(case["spec"], build_settings("host", precision="int8", calib=path), tmp_path / "b")
    result = r.manifest["self_check"]["result"]
    assert result["bit_exact"] and result["required"] == "bit-exact"
    assert "16" in r.manifest["quantization"]["activation_bits"]


def test_widening_that_misses_the_floor_is_dropped_where_float_nodes_do_without(case, coarse):
    """Where widening every activation misses the floor (the 8-bit weights' error remains), the search keeps them
    all wide and keeps nodes in float for the rest; where those float nodes meet the floor alone (here every node
    in float), nothing stays widened. Rules whose kernels take 8-bit activations only (ORT's) never widen."""
    from tcc.quant.place.placer import widens

    fp32, x = case["fp32"], coarse[1]
    both = place(fp32, coarse[0], x, PlaceOptions(min_cos=0.999999, samples=8)).placement
    assert both["nodes"] and both["widened"] and both["reference_cos_after"] >= 0.999999
    placed = place(fp32, coarse[0], x, PlaceOptions(min_cos=0.9999999, samples=8))
    p = placed.placement
    assert float_nodes(placed) and p["reference_cos_after"] >= 0.9999999
    assert "widened" not in p and not any(e.get("widened") for e in placed.tensors.values())
    assert widens(PlaceOptions(min_cos=0.9), "tvm") and not widens(PlaceOptions(min_cos=0.9, wide=False), "tvm")
    assert not widens(PlaceOptions(min_cos=0.9), "ort") and not widens(PlaceOptions(min_cos=0.9), "tflite")


def test_calibrate_widens_unless_told_not_to(case, coarse, tmp_path, capsys):
    """`tcc calibrate --target T --min-cos C` widens on TVM's targets (host and ARM alike) and says which nodes;
    `--no-wide` keeps nodes in float only."""
    np.save(tmp_path / "coarse.npy", coarse[1])
    argv = [
        "calibrate",
        str(case["spec"]),
        "--data",
        str(tmp_path / "coarse.npy"),
        "--method",
        "minmax",
        "--min-cos",
        "0.9999",
        "--no-compare",
    ]
    runs = {"host": ["--target", "host"], "arm": ["--target", "arm-a7"], "host-no": ["--target", "host", "--no-wide"]}
    for name, extra in runs.items():
        assert main([*argv, *extra, "-o", str(tmp_path / f"{name}.json")]) == 0
        out = capsys.readouterr()
        assert ("outputs widened to 16 bits" in out.out + out.err) == (name != "host-no"), name
    placed = {name: json.loads((tmp_path / f"{name}.json").read_text())["placement"] for name in runs}
    assert placed["host"] == placed["arm"]  # one table for the tvm rules
    assert placed["host"]["widened"] and not placed["host"]["nodes"] and placed["host"]["objectives"]["wide"] is True
    no = placed["host-no"]
    assert no["nodes"] and "widened" not in no and no["objectives"]["wide"] is False


def test_placement_passes_over_a_tensor_no_wide_grid_fits():
    """A node whose output no 9- to 16-bit grid fits (its reader sums 74,000 products) does not stop the search
    (it used to refuse the table): the placement meets the floor, that output keeps its 8-bit entry, and the table
    quantizes. Here the 8-bit error sits in that very tensor, so the floor takes float nodes: its writer, or its
    reader, which then takes the writer's accumulator unrounded (TargetRules.accumulators_into_islands)."""
    from tests.helpers.quant_models import tiny_data, wide_fan_in_model

    fp32, x = wide_fan_in_model(), tiny_data(12, size=34)
    table = calibrate_onnx(fp32, x, method="minmax", target="tvm", progress=False)
    placed = place(fp32, table, x, PlaceOptions(min_cos=0.999999, samples=8))
    p = placed.placement
    assert p["objectives"]["wide"] and p["reference_cos_after"] >= 0.999999 and set(p["nodes"]) & {"c1", "big"}
    assert placed.tensors["c1"] == table.tensors["c1"] and "c1" not in p.get("widened", {})
    quantize_graph(plan(fp32, rules="tvm"), placed)


def test_nodes_the_floors_do_without_are_taken_back():
    """The greedy keeps a cheap node for its gain alone, then a costly one that gains all it gave and more: with the
    floors met, the cheap one is taken back (pruned), and the costly one, which the floors need, stays."""
    from tcc.quant.place.placer import float_remedy
    from tcc.quant.place.search import Score, Search, greedy, node_cost, pruned

    fe = lower_spec(REPO / "spec" / "ddsnet.yaml", {"image_size": 32})
    graph = plan(fe.onnx, rules="ort")
    anchors = {n.name: n for n in graph.nodes}
    computing = [n.name for n in graph.nodes if n.integer and n.op.placeable]
    costly, cheap = computing[0], computing[-1]
    assert node_cost(graph, anchors[costly]) > node_cost(graph, anchors[cheap])

    def judge(names):
        gain = 0.00097 if costly in names else 0.0005 if cheap in names else 0.0
        return Score(0.999 + gain + 0.00002, 0.9995)

    options, chosen, logged = PlaceOptions(min_cos=0.9999), {}, []
    search = Search(float_remedy(graph), graph, judge, options, logged.append, "test")
    got = greedy(search, chosen, judge(set()))
    assert set(chosen) == {cheap, costly} and options.shortfall(got) == 0  # the greedy's order: gain per cost
    got = pruned(search, chosen, set(), got)
    assert set(chosen) == {costly} and options.shortfall(got) == 0
    assert any(line.startswith(f"placement: - {cheap}") for line in logged)


PARAM_SPEC = """kind: model
name: param_added
input: {shape: [3, 16, 16]}
layers:
  - {id: conv, op: conv2d, out: 4, kernel: 3, padding: 1}
  - {id: shift, op: param, shape: [4, 16, 16]}
  - {id: add, op: add, in: [conv, shift]}
  - {op: relu}
"""


def test_a_constant_read_by_a_float_node_stays_quantized(tmp_path):
    """A parameter broadcast over the batch (a position embedding, EfficientViT's eps) takes the batch from another
    node's output in the FP32 graph: an island of its own could not be computed (its sub-model read the graph's
    input), so a float reader leaves it quantized, and pinning it is refused by name."""
    from tcc.quant.place.placer import absorbed, check_nodes

    spec = tmp_path / "param.yaml"
    spec.write_text(PARAM_SPEC)
    fp32 = lower_spec(spec, {}).onnx
    graph = plan(fp32, rules="ort")
    constant = next(n for n in graph.nodes if n.kind == "broadcast")
    assert not constant.inputs and "add" in {n.name for n in graph.nodes}
    assert constant.name not in absorbed(graph, {"add"})
    x = np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)
    table = calibrate_onnx(fp32, x, method="minmax", progress=False)
    placed = place(fp32, table, x, PlaceOptions(keep_float=("add",)))
    assert float_nodes(placed) >= {"add"} and constant.name not in float_nodes(placed)
    assert reference_score(fp32, placed, x, run_ort(fp32, x)).mean > 0.999
    with pytest.raises(Exception, match=f"'{constant.name}': a broadcast computes a constant from no input"):
        check_nodes(PlaceOptions(keep_float=(constant.name,)), graph)
