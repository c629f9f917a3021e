"""Quantization-aware training (tcc.train.qat, `tcc qat`): the fake-quantized forward against the integer reference
node by node under every rules family, the folded layers unfolded back into the spec's parameters, a short distilled
run whose weights and table build INT8 on ort, host and tflite (bit-exact self-checks), determinism, and bad input."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tcc
from tcc.cli.main import main
from tcc.frontend import lower_spec
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.intgraph.match import plan
from tcc.quant.intgraph.qgraph import quantize_graph
from tcc.quant.intgraph.reference import Reference
from tcc.quant.table.steps import Steps
from tcc.train.qat.model import Features, QatModel, absorb_bias_correction, fx_name
from tcc.train.qat.quant_points import QatPlanner
from tests.helpers.lowering import assert_close
from tests.helpers.onnx_util import run_all, with_outputs
from tests.helpers.train_data import texture_patches


def realistic_weights(spec: str, path: Path, seed: int = 0, **overrides) -> Path:
    """Seeded weights with BatchNorm statistics and affines away from the identity, so that every fold matters."""
    module = tcc.Model.load(spec, seed=seed, **overrides).torch()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
    torch.save(module.state_dict(), path)
    return path


def images(n: int, size: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, 3, size, size)).astype(np.float32)


DECONV = str(Path(__file__).resolve().parents[1] / "specs" / "deconv_tiny.yaml")


def per_node(spec: str, size: int, rules: str, tmp: Path, steps: Steps = Steps()) -> dict:
    """Each quantized tensor of the integer reference against the QAT model's value of it, computed from the
    reference's own values of its inputs: {tensor: (codes that differ, max |difference| in steps, elements)}."""
    weights = realistic_weights(spec, tmp / f"{Path(spec).stem}.pt", image_size=size)
    fe = lower_spec(tcc.load_spec(spec, {"image_size": size}), weights=weights)
    x = images(16, size)
    table = calibrate_onnx(fe.onnx, x, method="kl", target=rules, steps=steps)
    graph = plan(fe.onnx, rules=rules)
    qgraph = quantize_graph(graph, table)
    qat = QatModel(copy.deepcopy(fe.module), QatPlanner.of(qgraph, graph, table))
    if steps.bias_correction:
        absorb_bias_correction(qat, {k: v["shift"] for k, v in table.step("bias_correction")["layers"].items()})
    y, codes = Reference().run(qgraph, x[:4], return_all=True)
    given = {("x" if k == qgraph.input else fx_name(k)): torch.from_numpy(v.dequant()) for k, v in codes.items()}
    with torch.no_grad():
        got = qat.run_per_node(torch.from_numpy(x[:4]), given)
    out = {}
    for name, t in codes.items():
        key = "x" if name == qgraph.input else fx_name(name)
        if key not in got:  # a reshape's codes inside a linear layer over tokens: checked as the reshape's other side
            assert name in qat.plan.moves or name in qat.plan.moves.values(), name
            continue
        d = np.abs(got[key].numpy() - t.dequant()) / t.scale
        out[name] = (int((d > 0.5).sum()), float(d.max()), d.size)
    out["output"] = (0, float(np.abs(got["output"].numpy() - y).max() / qgraph.output_scales["output"]), y.size)
    return out


# Every integer op rounds once, and the fake-quantized float op rounds once: they differ only where the exact value
# lies within float32 error of a rounding tie (or, where the rules' requantization rounds twice, gemmlowp's, of its
# double rounding), and then by one step. Average pools of 2x2 windows land on exact ties often (a sum of four codes
# / 4 is k + 1/2 one time in four). Measured: DDSNet 0.05% of codes (most in its transitions' pools), FastNet 0.0001%
# (ort) to 0.1% (tflite's double rounding); at most one step everywhere.
@pytest.mark.parametrize(
    "spec, size, rules",
    [
        ("ddsnet", 64, "ort"),
        ("ddsnet", 64, "tvm"),
        ("ddsnet", 64, "tflite"),
        ("ddsnet", 64, "pulsar2"),
        ("ddsnet", 64, "ax620"),
        ("fastnet", 96, "ort"),
        ("fastnet", 96, "tflite"),
        # the same kinds as under the tvm rules (lookups, SE gates), in CI there
        pytest.param("mobilenet_v3_small", 64, "ort", marks=pytest.mark.slow),
        ("mobilenet_v3_small", 64, "tvm"),
        ("mobilevit_xxs", 128, "ort"),
        # transposed convs: the integer graph's conv of their phases, a bias per phase channel
        ("unet", 32, "ort"),
        ("unet", 32, "tflite"),
        (DECONV, 16, "ort"),
        # kept one node under the NPUs' rules (intops' conv_transpose): a scale and a bias per output channel; the
        # depthwise one a float island under Pulsar2's
        ("unet", 32, "ax620"),
        (DECONV, 16, "pulsar2"),
    ],
)
def test_the_fake_quantized_forward_is_the_integer_reference_node_by_node(spec, size, rules, tmp_path):
    nodes = per_node(spec, size, rules, tmp_path)
    worst = max(d for _, d, _ in nodes.values())
    differing = sum(n for n, _, _ in nodes.values()) / sum(e for _, _, e in nodes.values())
    assert worst <= 1.0 + 1e-4, {k: v for k, v in nodes.items() if v[1] > 1.0001}
    assert differing < 2e-3, differing


@pytest.mark.parametrize("spec, size", [("mobilenet_v3_small", 64), ("resnet18", 64), ("ddsnet", 64)])
def test_the_teachers_features_are_the_fp32_graphs_values_of_the_quantized_tensors(spec, size, tmp_path):
    """Feature distillation compares each quantized tensor with the FP32 model's value of it: for a layer with a
    BatchNorm folded after it (MobileNet's projections, ResNet's convs before the add) that is the normalized output,
    as ONNX Runtime computes it on the FP32 graph after the passes, not the bare conv's."""
    weights = realistic_weights(spec, tmp_path / "w.pt", image_size=size)
    fe = lower_spec(tcc.load_spec(spec, {"image_size": size}), weights=weights)
    x = images(2, size)
    table = calibrate_onnx(fe.onnx, x, method="minmax", target="ort")
    graph = plan(fe.onnx, rules="ort")
    qat = QatModel(copy.deepcopy(fe.module), QatPlanner.of(quantize_graph(graph, table), graph, table))
    features = Features(fe.module.eval(), qat)
    with torch.no_grad():
        features.run(torch.from_numpy(x))
    computed = {o for n in fe.onnx.graph.node for o in n.output}
    names = [t for t in qat.plan.activations if fx_name(t) in features.values and t in computed]
    assert len(names) > 0.9 * len(qat.activations)  # the rest are rewritten by the integer graph (pools moved)
    normalized = [t for t in names if fx_name(t) in qat.normalized_by.values()]
    assert normalized or spec == "ddsnet"  # DDSNet's convs read their BatchNorms: none folds after a layer
    probed = with_outputs(fe.onnx, names)
    values = dict(zip([o.name for o in probed.graph.output], run_all(probed, x)))
    for t in names:
        assert_close(features.values[fx_name(t)].numpy(), values[t], atol=1e-4, rtol=1e-4, what=t)


def test_a_tensor_the_model_does_not_compute_is_refused_before_training(tmp_path):
    """TFLite's rules split SiLU into LOGISTIC and MUL, quantizing the sigmoid between them; the PyTorch model computes
    SiLU as one op, so there is no value to fake-quantize: refused, naming the tensor."""
    fe = lower_spec(tcc.load_spec("mobilevit_xxs", {"image_size": 128}))
    table = calibrate_onnx(fe.onnx, images(2, 128), method="minmax", target="tflite")
    graph = plan(fe.onnx, rules="tflite")
    with pytest.raises(tcc.errors.DataError, match=r"tensor 'stem\.act/sigmoid'.*cannot place"):
        QatModel(copy.deepcopy(fe.module), QatPlanner.of(quantize_graph(graph, table), graph, table))


def test_absorbed_bias_correction_is_the_tables(tmp_path):
    """A table with bias correction: its shifts move into the trained biases, and the QAT model still computes the
    integer reference of that table."""
    nodes = per_node("ddsnet", 64, "ort", tmp_path, Steps(bias_correction=True))
    assert max(d for _, d, _ in nodes.values()) <= 1.0 + 1e-4


@pytest.mark.parametrize(
    "spec, size", [("ddsnet", 64), ("fastnet", 96), ("mobilenet_v3_small", 64), ("unet", 32), (DECONV, 16)]
)
def test_the_folded_layers_unfold_into_the_specs_parameters(spec, size, tmp_path):
    """write_back inverts the folds: untrained, the module's parameters come back to float32 rounding (the BN
    statistics are never touched)."""
    weights = realistic_weights(spec, tmp_path / "w.pt", image_size=size)
    fe = lower_spec(tcc.load_spec(spec, {"image_size": size}), weights=weights)
    table = calibrate_onnx(fe.onnx, images(8, size), method="minmax", target="ort")
    graph = plan(fe.onnx, rules="ort")
    qat = QatModel(copy.deepcopy(fe.module), QatPlanner.of(quantize_graph(graph, table), graph, table))
    qat.write_back()
    before, after = fe.module.state_dict(), qat.module.state_dict()
    for name, value in before.items():
        scale = value.abs().max().clamp_min(1e-3)
        assert torch.allclose(after[name], value, rtol=1e-5, atol=1e-6 * scale), name


def run(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


SPEC = str(Path(__file__).resolve().parents[1] / "specs" / "train_tiny.yaml")
QAT = ["--epochs", "3", "--batch-size", "8"]


def qat(tiny, out, *extra, calib=None, data=None) -> tuple[int, str, str]:
    """`tcc qat SPEC --weights W --calib TABLE --data DATA -o OUT` of three epochs on the tiny model: its weights,
    by default its ort table and its patches; `extra`: more options."""
    calib, data = calib or tiny["tables"]["ort"], data or tiny["data"]
    return run("qat", SPEC, "--weights", tiny["weights"], "--calib", calib, "--data", data, "-o", out, *QAT, *extra)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tests' tiny CNN with realistic weights, 24 texture patches, and a table per rules family."""
    root = tmp_path_factory.mktemp("qat")
    data = texture_patches(root / "data", per_class=12, size=32)
    weights = realistic_weights(SPEC, root / "w.pt")
    model = tcc.Model.load(SPEC, weights)
    tables = {}
    for rules in ("ort", "tvm", "tflite"):
        tables[rules] = model.calibrate(data, target=rules, calib_size=None).save(root / f"calib-{rules}.json")
    return {"root": root, "data": data, "weights": weights, "tables": tables}


@pytest.mark.parametrize("rules, target", [("ort", "ort"), ("tvm", "host"), ("tflite", "tflite")])
def test_qat_weights_and_table_build_int8_bit_exact(tiny, rules, target):
    out = tiny["root"] / f"qat-{rules}"
    rc, stdout, err = qat(tiny, out, calib=tiny["tables"][rules])
    assert rc == 0, err
    assert "epoch 3/3" in err and "INT8 vs FP32 output cosine" in err
    doc = json.loads((out / "calib.json").read_text())
    assert doc["created_by"] == "tcc qat" and doc["qat"]["epochs"] == 3
    assert doc["weights_hash"] == tcc.bundle.sha256_file(out / "weights.pt")
    log = json.loads((out / "log.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == [0, 1, 2, 3]
    bundle = tcc.Model.load(SPEC, out / "weights.pt").build(
        target, precision="int8", calib=out / "calib.json", out=tiny["root"] / f"bundle-{target}"
    )
    result = bundle.manifest["self_check"]["result"]
    assert result["passed"] and result["bit_exact"], result


def test_qat_is_deterministic(tiny):
    outs = []
    for k in range(2):
        out = tiny["root"] / f"again-{k}"
        rc, _, err = qat(tiny, out)
        assert rc == 0, err
        doc = json.loads((out / "calib.json").read_text())
        doc.pop("timing_s")
        outs.append(((out / "weights.pt").read_bytes(), doc))
    assert outs[0] == outs[1]


def test_qat_bad_input(tiny, tmp_path):
    base = [SPEC, "--calib", tiny["tables"]["ort"], "--data", tiny["data"], *QAT]
    other = realistic_weights(SPEC, tmp_path / "other.pt", seed=5)
    cases = [
        (["--weights", other], "made for a different weights"),
        ([], "pass --weights"),
        (["--weights", tiny["weights"], "--epochs", "0"], "--epochs 0"),
        (["--weights", tiny["weights"], "--augment", "flip", "--lr", "-1"], "--lr -1"),
    ]
    for extra, message in cases:
        out = tmp_path / "out"
        rc, _, err = run("qat", *base, "-o", out, *extra)
        assert rc == 2 and message in err and "Traceback" not in err, (extra, err)
        assert not out.exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    rc, _, err = run("qat", *base, "--weights", tiny["weights"], "-o", full)
    assert rc == 2 and "--force" in err and sorted(p.name for p in full.iterdir()) == ["keep.txt"]
    equalized = tcc.Model.load(SPEC, tiny["weights"]).calibrate(
        tiny["data"], target="ort", calib_size=None, step_switches={"equalization": True}
    )
    rc, _, err = qat(tiny, tmp_path / "eq", calib=equalized.save(tmp_path / "eq.json"))
    assert rc == 2 and "equalization" in err


def test_two_processes_give_the_one_process_result(tiny):
    """Under torchrun each process takes its share of every batch and the gradients are summed: the same steps in
    another summation order (float32 rounding only; the kept epoch may not differ)."""
    outs = {}
    for n in (1, 2):
        out = tiny["root"] / f"procs-{n}"
        rc, _, err = qat(tiny, out, "--nproc", n)
        assert rc == 0, err
        outs[n] = (torch.load(out / "weights.pt", weights_only=True), json.loads((out / "log.json").read_text()))
    assert outs[2][1]["processes"] == 2 and outs[1][1]["kept_epoch"] == outs[2][1]["kept_epoch"]
    for name, value in outs[1][0].items():
        assert torch.allclose(outs[2][0][name], value, rtol=1e-4, atol=1e-5), name


def test_labels_mix_with_the_distillation(tiny, tmp_path):
    """--label-weight reads DATA/<class>/image folders (the classes in output order) and adds their cross-entropy;
    unlabelled data or the wrong number of classes is refused."""
    out = tmp_path / "labelled"
    rc, _, err = qat(tiny, out, "--label-weight", "0.5")
    assert rc == 0, err
    assert json.loads((out / "calib.json").read_text())["qat"]["label_weight"] == 0.5
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, f in enumerate(sorted(Path(tiny["data"]).rglob("*.png"))[:8]):
        (flat / f"{i}.png").write_bytes(f.read_bytes())
    rc, _, err = qat(tiny, tmp_path / "no", "--label-weight", "1", data=flat)
    assert rc == 2 and "DIR/<class>/image" in err and not (tmp_path / "no").exists()
