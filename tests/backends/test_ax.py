"""The AX NPU targets (ax620: Pulsar v1; ax620e, ax650: Pulsar2): kits for the paper models and ResNet-18, the op
checker (refusal naming the node, exact rewrites, CPU fallback), the calibration archive, the configs, the QDQ
model's scales, the predicted precision table, determinism."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from PIL import Image

from tcc.backends.ax.chips import CHIPS
from tcc.backends.ax.config import Enum, check_prototxt, dump_prototxt, parse_prototxt, validate_pulsar2
from tcc.backends.ax.ops import check_model
from tcc.build import build, build_settings
from tcc.cli.main import main
from tcc.errors import BuildError
from tcc.passes.batch import fixed_batch
from tcc.quant.table.file import load_table
from tests.helpers import REPO
from tests.helpers.cli import calibrate, tcc
from tests.helpers.onnx_util import make_model, run

SPECS = {
    "ddsnet": REPO / "spec" / "ddsnet.yaml",
    "fastnet": REPO / "spec" / "fastnet.yaml",
    "resnet18": REPO / "spec" / "baselines" / "resnet18.yaml",
}
SIZE = {"image_size": 64}
CALIB = {"method": "kl", "calib_size": 6}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Ten smooth random RGB images of various sizes (the build resizes them to 64 x 64)."""
    from scipy.ndimage import uniform_filter

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(5)
    for i in range(10):
        h, w = 70 + 3 * i, 90 - 2 * i
        a = uniform_filter(rng.uniform(0, 255, (h, w, 3)), size=(7, 7, 1)) * rng.uniform(0.5, 1.5)
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(root / f"img_{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def kits(images, tmp_path_factory):
    """One kit per (spec, chip), built once for the module."""
    out = tmp_path_factory.mktemp("kits")
    cache = {}

    def get(spec: str, chip: str):
        if (spec, chip) not in cache:
            cache[spec, chip] = build(
                SPECS[spec],
                build_settings(chip, overrides=SIZE, data=images, calibration=dict(CALIB)),
                out / f"{spec}-{chip}",
            )
        return cache[spec, chip]

    return get


@pytest.mark.parametrize("chip", sorted(CHIPS))
# every chip's kit of DDSNet and FastNet in CI; ResNet-18's (plain convs, a residual add) with the slow tests
@pytest.mark.parametrize(
    "spec", [pytest.param(s, marks=pytest.mark.slow) if s == "resnet18" else s for s in sorted(SPECS)]
)
def test_kit(kits, images, spec, chip):
    from tcc.quant.collect.data import load_calibration_data
    from tcc.spec.loader import load_spec

    result = kits(spec, chip)
    kit, m = result.out, result.manifest
    c = CHIPS[chip]
    files = set(m["files"])
    want = {
        "model.onnx",
        "calibration.tar",
        "build.sh",
        "op_check.json",
        "prediction.json",
        "precision_table.txt",
        "calibration.json",
        "README.md",
        c.toolchain.config_file,
    }
    assert want <= files
    assert ("model_qdq.onnx" in files) == c.quant_onnx
    # the float model the toolchain gets: checked in ORT against PyTorch with the FP32 rule
    assert m["self_check"]["result"]["passed"] and "checked" in m["self_check"]
    assert c.opsets[0] <= m["opset"] <= c.opsets[1]
    assert onnx.load(str(kit / "model.onnx")).opset_import[0].version == m["opset"]
    # the archive: exactly the samples calibration picked, reproducing its tensors through the config's mean / std
    model = load_spec(SPECS[spec], SIZE)
    cd = load_calibration_data(images, model.preprocess, model.input_shape, CALIB["calib_size"], 0)
    with tarfile.open(kit / "calibration.tar") as tar:
        names = [t.name for t in tar.getmembers()]
        pixels = [np.asarray(Image.open(io.BytesIO(tar.extractfile(n).read())), np.float32) for n in names]
    assert names == [f"{i:04d}_{Path(f).stem}.png" for i, f in enumerate(cd.files)]
    if c.toolchain.name == "pulsar":
        cfg = parse_prototxt((kit / "config.prototxt").read_text())
        assert check_prototxt(cfg) == []
        norm = dict(dict(dict(dict(dict(cfg)["neuwizard_conf"])["operator_conf"])["input_conf_items"])["attributes"])
        mean, std = (dict(dict(norm["input_modifications"])["input_normalization"])[k] for k in ("mean", "std"))
        calib = dict(dict(cfg)["neuwizard_conf"])["dataset_conf_calibration"]
        assert dict(calib)["size"] == len(names) and dict(calib)["path"] == "calibration.tar"
    else:
        cfg = json.loads((kit / "config.json").read_text())
        validate_pulsar2(cfg)
        ic = cfg["quant"]["input_configs"][0]
        mean, std = ic["calibration_mean"], ic["calibration_std"]
        assert ic["calibration_size"] == len(names) and ic["calibration_dataset"] == "calibration.tar"
        assert cfg["model_type"] == ("QuantONNX" if c.quant_onnx else "ONNX")
        if not c.quant_onnx:
            assert cfg["quant"]["calibration_method"] == "KL" and cfg["quant"]["enable_easy_quant"] is True
    np.testing.assert_allclose(mean, [255 * v for v in model.preprocess.mean], rtol=1e-6)
    np.testing.assert_allclose(std, [255 * v for v in model.preprocess.std], rtol=1e-6)
    back = np.stack([((p - np.float32(mean)) / np.float32(std)).transpose(2, 0, 1) for p in pixels])
    np.testing.assert_allclose(back, cd.array, atol=2e-6)  # the toolchain's arithmetic, to float32 rounding
    assert m["target_checks"]["archive"]["passed"]
    # the prediction: the integer reference under the chip's rules, per layer, in the toolchain's table shape
    table = load_table(kit / "calibration.json")
    assert table.target == c.rules
    prediction = json.loads((kit / "prediction.json").read_text())
    assert len(prediction["layers"]) >= 10 and prediction["per_layer_source"] == "integer reference"
    text = (kit / "precision_table.txt").read_text()
    head = "Score compare table:" if c.toolchain.name == "pulsar" else "Quant Precision Table【PerLayer Reference】"
    assert head in text and prediction["layers"][1]["node"] in text
    p = m["target_checks"]["prediction"]
    assert 0.9 < p["output_cosine"] <= 1.0
    print(
        f"\n[ax] {spec} {chip}: {len(m['files'])} files, predicted output cosine {p['output_cosine']} (worst "
        f"{p['output_cosine_min']}), rewrites {m['target_checks']['op_check']['rewrites']}"
    )


def test_ax650_qdq_model_carries_the_tables_scales_exactly(kits):
    kit = kits("ddsnet", "ax650").out
    table = load_table(kit / "calibration.json")
    q = onnx.load(str(kit / "model_qdq.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    quantizers = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantizers) >= 20
    for n in quantizers:
        t = table.tensors[n.input[0]]
        scale, zp = inits[n.input[1]], inits[n.input[2]]
        assert scale.dtype == np.float32 and float(scale) == np.float32(t["scale"])
        assert zp.dtype == np.uint8 and int(zp) in (0, 128)  # Pulsar2's U8 activations: zero point 0 or 128
        assert int(zp) == (128 if t["zero_point"] == 128 else 0)
    weights = [
        n
        for n in q.graph.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None and inits[n.input[0]].dtype == np.int8
    ]
    assert weights
    for n in weights:
        codes, scale = inits[n.input[0]], inits[n.input[1]]
        name = n.output[0]
        entry = table.tensors[name]
        np.testing.assert_array_equal(scale, np.asarray(entry["scale"], np.float32))
        assert codes.min() >= -127 and codes.max() <= 127  # symmetric S8 weights, as Axera's exporter writes them
    assert kits("ddsnet", "ax650").manifest["target_checks"]["qdq"]["passed"]


def test_a_kit_built_twice_is_byte_identical(kits, images, tmp_path):
    first = kits("fastnet", "ax620e")
    again = build(
        SPECS["fastnet"],
        build_settings("ax620e", overrides=SIZE, data=images, calibration=dict(CALIB)),
        tmp_path / "again",
    )
    assert first.manifest["files"] == again.manifest["files"]
    for f in first.manifest["files"]:
        assert (first.out / f).read_bytes() == (again.out / f).read_bytes(), f
    assert (first.out / "manifest.json").read_bytes() == (again.out / "manifest.json").read_bytes()


def test_kit_from_a_table_made_by_tcc_calibrate(images, tmp_path, capsys):
    """`tcc calibrate --target ax620` prints the prediction as Pulsar's table; the build takes that table with the
    same --data, and refuses it with other data."""
    resnet = [SPECS["resnet18"], "--set", "image_size=64"]
    table = tmp_path / "ax620.json"
    options = ["--method", "kl", "--target", "ax620", "--report-samples", "4"]
    assert calibrate(resnet, images, table, "--calib-size", "6", *options) == 0
    out = capsys.readouterr().out
    assert "predicted AX620 NPU result" in out and "Score compare table:" in out and "cosine-sim:" in out

    def kit(calib_size: str, out):  # a kit from the table, on the images calibrated on or on other ones
        data = ["--data", images, "--calib-size", calib_size]
        return tcc("build", *resnet, "--target", "ax620", "--calib", table, *data, "-o", out)

    assert kit("6", tmp_path / "kit") == 0
    m = json.loads((tmp_path / "kit" / "manifest.json").read_text())
    assert m["quantization"]["from"] == "table"
    assert kit("5", tmp_path / "other") == 2
    assert "other calibration data" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    options = ["--method", "kl", "--target", "ax650", "--report-samples", "2"]
    assert calibrate(resnet, images, tmp_path / "t.json", "--calib-size", "4", *options) == 0
    assert "Quant Precision Table【PerLayer Reference】" in capsys.readouterr().out


def test_unsupported_nodes_are_refused_before_any_work_naming_each(images, tmp_path, capsys):
    """ShuffleNetV2's channel shuffle (a 5-D Reshape) and Split are outside Pulsar v1's op list: exit 2, every
    node named with the docs' constraint, nothing written; --allow-cpu-fallback builds and records the split."""
    spec = REPO / "spec" / "baselines" / "shufflenet_v2_x1_0.yaml"
    argv = [
        "build",
        str(spec),
        "--set",
        "image_size=64",
        "--target",
        "ax620",
        "--data",
        str(images),
        "--calib-size",
        "4",
        "--method",
        "kl",
    ]
    assert main([*argv, "-o", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "node 'stage2.0.shuffle' (Reshape): input rank 5: the docs say 'only 3-D or 4-D input tensors'" in err
    assert "node 'stage2.1.keep.split' (Split): Split is not in the ax620 op list" in err
    assert "Traceback" not in err and not (tmp_path / "refused").exists()
    assert main([*argv, "-o", str(tmp_path / "fallback"), "--allow-cpu-fallback"]) == 0
    op_check = json.loads((tmp_path / "fallback" / "op_check.json").read_text())
    assert op_check["cpu_fallback"] and len(op_check["unsupported"]) == 29
    units = [p["unit"] for p in op_check["split"]]
    assert units[0] == "NPU" and "CPU" in units and sum(p["nodes"] for p in op_check["split"]) == op_check["nodes"]
    assert "CPU fallback" in (tmp_path / "fallback" / "README.md").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--target", "ax620"], "give them with --data"),
        (["--target", "ax620", "--data", "{images}", "--opset", "17"], "takes ONNX opset 11..13"),
        (["--target", "ax650", "--data", "{images}", "--npu-mode", "NPU4"], "is not one of NPU1, NPU2, NPU3"),
        (["--target", "ax620e", "--data", "{images}", "--precision", "fp32"], "does not offer precision fp32"),
        (["--target", "ort", "--npu-mode", "NPU1"], "apply to the Axera NPU targets only"),
    ],
)
def test_user_mistakes(images, tmp_path, capsys, argv, message):
    argv = [a.format(images=images) for a in argv]
    assert main(["build", str(SPECS["ddsnet"]), "--set", "image_size=64", *argv, "-o", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "k").exists()


# ---------------------------------------------------------------------------------------------------- the checker
def _model(nodes, inits, shape=(1, 4, 8, 8), out_shape=None):
    return make_model(nodes, {"x": shape}, {"y": out_shape}, inits, name="t")


def test_rewrites_are_exact_and_recorded():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    # an average pool with padding counted in: Pulsar v1 cannot set count_include_pad -> an explicit Pad
    pool = _model(
        [
            helper.make_node(
                "AveragePool", ["x"], ["y"], name="pool", kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1
            )
        ],
        {},
    )
    r = check_model(pool, "ax620")
    assert not r.unsupported and r.rewrites[0]["node"] == "pool" and "explicit Pad" in r.rewrites[0]["rewrite"]
    assert [n.op_type for n in r.model.graph.node] == ["Pad", "AveragePool"]
    np.testing.assert_array_equal(run(r.model, x), run(pool, x))
    # Gemm's alpha / beta (Pulsar2: not supported yet) folded into its initializers
    w, b = rng.standard_normal((3, 256)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    gemm = _model(
        [
            helper.make_node("Flatten", ["x"], ["f"], name="flat"),
            helper.make_node("Gemm", ["f", "w", "b"], ["y"], name="fc", transB=1, alpha=0.5, beta=2.0),
        ],
        {"w": w, "b": b},
    )
    r = check_model(gemm, "ax650")
    assert not r.unsupported and r.rewrites[0]["node"] == "fc"
    np.testing.assert_allclose(run(r.model, x), run(gemm, x), rtol=1e-6, atol=1e-6)
    # the caller's model is untouched
    assert {a.name: a.f for a in gemm.graph.node[1].attribute if a.name in ("alpha", "beta")} == {
        "alpha": 0.5,
        "beta": 2.0,
    }
    np.testing.assert_array_equal(numpy_helper.to_array(gemm.graph.initializer[0]), w)


def test_unsupported_attributes_name_the_node_the_constraint_and_the_rewrite_tried():
    # Pulsar2 takes average pools with count_include_pad 1 only; with padding no exact rewrite sets it
    pool = _model(
        [
            helper.make_node(
                "AveragePool",
                ["x"],
                ["y"],
                name="blocks.3.pool",
                kernel_shape=[3, 3],
                pads=[1, 1, 1, 1],
                count_include_pad=0,
            )
        ],
        {},
    )
    (f,) = check_model(pool, "ax620e").unsupported
    assert f.line() == (
        "node 'blocks.3.pool' (AveragePool): count_include_pad = 0: the docs say 'count_include_pad: "
        "only 1'; rewrite tried: zero_pad_count_include_pad_one (not applicable here)"
    )
    # Pulsar v1 convs: kernel size within [1, 18], stride patterns
    w = np.zeros((4, 4, 5, 5), np.float32)
    conv = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="stem", kernel_shape=[5, 5], strides=[4, 4])],
        {"w": w},
        shape=(1, 4, 16, 16),
    )
    (f,) = check_model(conv, "ax620").unsupported
    assert f.node == "stem" and "strides [4, 4] with kernel [5, 5]" in f.problem
    assert not check_model(conv, "ax650").unsupported  # Pulsar2: strides unlimited
    # an op outside a chip's list, and a CPU-only one
    for op, chip, why in [("Erf", "ax620", "not in the ax620 op list"), ("LRN", "ax620", "runs on the CPU")]:
        attrs = {"size": 3} if op == "LRN" else {}
        r = check_model(_model([helper.make_node(op, ["x"], ["y"], name="n", **attrs)], {}), chip)
        assert why in r.unsupported[0].problem


# what Pulsar v1's documented op list refuses in the zoo, op types per spec (the rest passes)
PULSAR_V1_REFUSES = {
    "alexnet": {"Conv"},  # an 11x11 stride-4 stem: strides (4, 4) are not among the listed ones
    "convnext_tiny": {"Erf", "Sqrt"},  # GELU and the LayerNorm decomposition: not in the ax620 op list
    "mobilenet_v3_large": {"HardSigmoid"},  # hardswish in the classifier follows a Gemm: 'must follow a Conv'
    "mobilenet_v3_small": {"HardSigmoid"},
    "shufflenet_v2_x1_0": {"Reshape", "Split"},  # channel shuffle: a rank-5 Reshape, and Split
    # MobileViT: the rank-6 Reshape of unfolding patches, and LayerNormalization's Sqrt (Pulsar v1 has no LN)
    "mobilevit_xxs": {"Reshape", "Sqrt"},
    "mobilevit_s": {"Reshape", "Sqrt"},
    # Swin and MaxViT: GELU's Erf, LayerNorm's Sqrt, window partitions (rank-6 Reshape); Swin's strided patch
    # merging Slice, MaxViT's squeeze-excitation ReduceMean
    "swin_t": {"Erf", "Reshape", "Slice", "Sqrt"},
    "maxvit_t": {"Erf", "ReduceMean", "Reshape", "Sqrt"},
    "vit_b_16": {"Erf", "Expand", "ReduceMean", "Reshape", "Sqrt"},
    "mobilevitv2_050": {"InstanceNormalization", "Reshape", "Split"},  # group norm's form; q / k / v split
}


@pytest.mark.slow  # lowers all 24 zoo specs (~1 min): tools/slow_tests.sh
def test_every_zoo_spec_passes_pulsar2_and_pulsar_v1_refuses_what_its_docs_exclude():
    """The op lists against the zoo's graphs at batch 1, as the kits are compiled: Pulsar2 takes every spec
    (rewrites applied); Pulsar v1 refuses exactly the ops of PULSAR_V1_REFUSES, and its literal 'output width %
    stride_w' rule is advisory."""
    from tcc.frontend import lower_spec
    from tests.helpers.int8_zoo import SMALL, spec_path

    for name in sorted(SMALL):
        spec = spec_path(name)
        model = fixed_batch(lower_spec(spec, SMALL[name]).onnx, 1)
        for chip in ("ax620e", "ax650"):
            bad = check_model(model, chip).unsupported
            assert not bad, (spec.stem, chip, [f.line() for f in bad])  # ViT's Shape: folded at batch 1
        bad = check_model(model, "ax620").unsupported
        assert {f.op for f in bad} == PULSAR_V1_REFUSES.get(spec.stem, set()), (spec.stem, [f.line() for f in bad])


# ---------------------------------------------------------------------------------------------------- configs
DOCS_EXAMPLE = """
# basic
input_type: INPUT_TYPE_ONNX
output_type: OUTPUT_TYPE_JOINT
target_hardware: TARGET_HARDWARE_AX620
cpu_backend_settings {
    onnx_setting {
        mode: DISABLED
    }
    axe_setting {
        mode: ENABLED
        axe_param {
            optimize_slim_model: true
        }
    }
}
src_input_tensors {
    color_space: TENSOR_COLOR_SPACE_RGB
}
dst_input_tensors {
    color_space: TENSOR_COLOR_SPACE_RGB
}
neuwizard_conf {
    operator_conf {
        input_conf_items {
            attributes {
                input_modifications {
                    affine_preprocess {
                        slope: 1
                        slope_divisor: 255
                        bias: 0
                    }
                }
                input_modifications {
                    input_normalization {
                        mean: [0.485,0.456,0.406]
                        std: [0.229,0.224,0.255]
                    }
                }
            }
        }
    }
    dataset_conf_calibration {
        path: "../dataset/imagenet-1k-images.tar" # a comment
        type: DATASET_TYPE_TAR
        size: 256
        batch_size: 1
    }
}
dst_output_tensors {
    tensor_layout:NHWC
}
pulsar_conf {
    ax620_virtual_npu: AX620_VIRTUAL_NPU_MODE_111
    batch_size: 1
    debug : false
}
"""


def test_prototxt_codec_reads_the_docs_example_and_round_trips():
    msg = parse_prototxt(DOCS_EXAMPLE)
    assert check_prototxt(msg) == []
    nw = dict(msg)["neuwizard_conf"]
    mods = [v for k, v in dict(dict(nw)["operator_conf"])["input_conf_items"][0][1] if k == "input_modifications"]
    assert len(mods) == 2 and dict(mods[1])["input_normalization"][0] == ("mean", [0.485, 0.456, 0.406])
    assert dict(dict(msg)["pulsar_conf"])["ax620_virtual_npu"] == Enum("AX620_VIRTUAL_NPU_MODE_111")
    assert parse_prototxt(dump_prototxt(msg)) == msg
    bad = parse_prototxt(DOCS_EXAMPLE.replace("DATASET_TYPE_TAR", "DATASET_TYPE_ZIP").replace("size: 256", "sise: 2"))
    problems = check_prototxt(bad)
    assert any("neuwizard_conf.dataset_conf_calibration.type" in p for p in problems)
    assert any("dataset_conf_calibration.sise: not a documented field" in p for p in problems)
    with pytest.raises(BuildError, match=r"config.prototxt:3: expected ':' or '\{' after"):
        parse_prototxt("input_type: INPUT_TYPE_ONNX\n\nneuwizard_conf ]")


def test_pulsar2_schema_refuses_what_the_docs_do_not_allow(kits):
    cfg = json.loads((kits("ddsnet", "ax650").out / "config_calibrate.json").read_text())
    validate_pulsar2(cfg)
    for edit, where in [
        (lambda c: c["quant"].update(calibration_method="Entropy"), "quant/calibration_method"),
        (lambda c: c.update(npu_mod="NPU1"), "(top level)"),
        (
            lambda c: c["quant"]["input_configs"][0].update(calibration_dataset="x.rar"),
            "quant/input_configs/0/calibration_dataset",
        ),
        (lambda c: c["input_processors"][0].update(src_dtype="U7"), "input_processors/0/src_dtype"),
    ]:
        c = json.loads(json.dumps(cfg))
        edit(c)
        with pytest.raises(BuildError, match=re.escape(f"config.json: {where}")):
            validate_pulsar2(c)


def test_a_vit_kit_is_compiled_at_batch_1_with_its_shape_arithmetic_folded(images, tmp_path):
    """ViT's class token and position embedding read the batch through Shape, which Pulsar2's op lists lack: the
    kit's models are static at batch 1 with those nodes folded (the learned tensors' Expand stays), every node
    passes AX650's list, the float model checks against PyTorch and the QDQ model against the integer
    reference, sample by sample."""
    from tests.helpers.int8_zoo import SMALL, spec_path

    r = build(
        spec_path("vit_b_16"),
        build_settings("ax650", overrides=SMALL["vit_b_16"], data=images, calibration=dict(CALIB)),
        tmp_path / "vit",
    )
    m = r.manifest
    assert m["self_check"]["result"]["passed"] and m["target_checks"]["qdq"]["passed"]
    assert m["target_checks"]["op_check"]["unsupported"] == 0
    for name in ("model.onnx", "model_qdq.onnx"):
        model = onnx.load(str(r.out / name))
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1, name
        ops = {n.op_type for n in model.graph.node}
        assert "Shape" not in ops and "Expand" in ops, name


def test_a_shape_that_stays_dynamic_at_batch_1_is_refused_naming_the_node():
    """The kits are compiled at batch 1, static: a graph whose shape arithmetic reads a dynamic axis other than the
    batch is refused with the node named (exit 2), not an internal error."""
    from tcc.backends.ax.backend import _compiled_form
    from tests.helpers.onnx_util import learned_token_model

    m = learned_token_model()
    m.graph.input[0].type.tensor_type.shape.dim[2].Clear()
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "W"
    with pytest.raises(BuildError, match="target ax650: pulsar2 compiles one static shape.*node 'shape'") as err:
        _compiled_form(m, CHIPS["ax650"])
    assert err.value.exit_code == 2
    static = _compiled_form(learned_token_model(), CHIPS["ax650"])
    assert static.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
