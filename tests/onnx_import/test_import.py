"""`tcc import`: zoo specs exported by tcc and read back (parameters, MACs and logits equal), ONNX files written by
torch.onnx.export from torchvision models (logits equal ONNX Runtime on the original; INT8 builds), and models it
cannot express refused up front, naming the nodes, nothing written."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

import tcc
from tcc.lower.to_torch import init_weights
from tcc.onnx_import import import_onnx
from tcc.spec.zoo import zoo_models
from tests.helpers import torchvision_reference as tv
from tests.helpers.onnx_util import make_model, run
from tests.onnx_import.common import assert_builds_int8_bit_exact, assert_predicts_as_onnx_runtime, tcc_cli

# tcc's own lowering, read back: every op kind of these (convs of every shape, BN, the activations, residual adds,
# concats, pools, linear heads, SE blocks' muls, ShuffleNet's split and channel shuffle, ConvNeXt's layer norms, GELU
# and layer scales, DenseNet's dense connections) round-trips, and the spec reads as the model's own structure: local
# blocks for what repeats, at most twice the original spec's lines (docs/import.md has all 24 at full size)
ROUND_TRIP = [
    "ddsnet",
    "fastnet",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "squeezenet1_0",
    "efficientnet_b0",
    "regnet_y_400mf",
    "shufflenet_v2_x1_0",
    "resnet18",
    "densenet121",
    "convnext_tiny",
]


def round_trip(name: str, tmp_path, **overrides):
    """The zoo spec lowered to ONNX by tcc (seeded weights), imported; the original and the import."""
    model = tcc.load_spec(name, overrides)
    module = init_weights(tcc.to_torch(model.graph, inference_only=True), seed=1)
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(tcc.to_onnx(model.graph, module.state_dict()).SerializeToString())
    return model, import_onnx(path)


def read_back_equal(name: str, tmp_path, **overrides):
    """round_trip, and the imported spec loaded: the same parameters and MACs as the original, its PyTorch lowering
    equal to ONNX Runtime's on the file within the FP32 rule, no notes. Returns (original, import, loaded import)."""
    model, imported = round_trip(name, tmp_path, **overrides)
    spec = tmp_path / "imported.yaml"
    spec.write_text(imported.spec_text)
    back = tcc.load_spec(spec)
    assert (back.graph.param_count, back.graph.macs) == (model.graph.param_count, model.graph.macs)
    assert imported.check["passed"] and not imported.notes
    return model, imported, back


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_a_zoo_spec_exported_by_tcc_reads_back_equal_and_in_blocks(name, tmp_path):
    small = {"image_size": 64} if "image_size" in tcc.load_spec(name).params else {}
    model, imported, _ = read_back_equal(name, tmp_path, **small)
    lines = len(imported.spec_text.splitlines())
    assert "\nblocks:\n" in imported.spec_text and lines <= 2 * len(model.path.read_text().splitlines())


# `tcc import` reads MobileViT's, ViT's and Swin's tensor ops back (per-sample Reshape, Transpose, Slice, MatMul of
# two activations with its 1 / sqrt(d), linear layers over tokens, learned [1, ...] tensors, the folded relative
# position bias and shifted-window mask, MaxViT's too), and MobileViTv2's ReduceSum and group norm
NOT_READ_BACK_YET: set[str] = set()


def test_attention_reads_back_with_its_tensor_ops(tmp_path):
    """MobileViT-XXS as tcc lowers it to ONNX, imported: the per-sample reshapes, permutes, q / k / v slices, the
    two matmuls of activations (q k^T with transpose_b and its 1 / sqrt(d) as the spec's `scale`, no learnable
    factor) and the linear layers over tokens (Reshape / Gemm / Reshape as `axis: -1`); parameters and MACs exactly
    the original's, its PyTorch lowering equal to ONNX Runtime's within the FP32 rule."""
    from tests.helpers.int8_zoo import SMALL

    _, imported, back = read_back_equal("mobilevit_xxs", tmp_path, **SMALL["mobilevit_xxs"])
    ops = [n.op for n in back.graph.nodes.values()]
    assert ops.count("matmul") == 6 and "scale" not in ops and {"permute", "slice", "reshape"} <= set(ops)
    text = imported.spec_text
    assert "transpose_b: true" in text and "scale: 0.25" in text and "axis: -1" in text  # heads of 16: 16^-0.5


def test_vit_reads_back_with_its_class_token_and_position_embedding(tmp_path):
    """ViT as tcc lowers it (its class token and position embedding are `param`s, which ONNX writes as an Expand
    to the batch, a constant [1, ...] once the import fixes the batch at 1): read back as two params feeding the
    Concat and the Add, parameters and MACs exactly the original's."""
    from tests.helpers.int8_zoo import SMALL

    _, _, back = read_back_equal("vit_b_16", tmp_path, **SMALL["vit_b_16"])
    assert [n.op for n in back.graph.nodes.values()].count("param") == 2


def test_swin_reads_back_its_relative_position_bias_and_shifted_window_mask(tmp_path):
    """Swin as tcc lowers it: the bias gathered from its table and the shifted-window mask are folded into constants
    added to the scores. Read back as the spec's relative_position_bias (the table recovered value for value:
    parameters exactly the original's) and window_mask (its map and shift found)."""
    from tests.helpers.int8_zoo import SMALL

    model, imported, back = read_back_equal("swin_t", tmp_path, **SMALL["swin_t"])
    ops = [n.op for n in back.graph.nodes.values()]
    original = [n.op for n in model.graph.nodes.values()]
    assert ops.count("relative_position_bias") == original.count("relative_position_bias") == 8
    assert ops.count("window_mask") == original.count("window_mask") > 0


def test_a_constant_added_to_scores_is_read_back_only_where_its_values_are_a_window_constant():
    """A [heads, N, N] constant is a relative position bias only where one table of (2w - 1)^2 rows makes it, and a
    [windows, 1, N, N] one a mask only where it is Swin's mask of some map and shift; other constants stay Adds."""
    from onnx import helper

    from tcc.onnx_import.patterns import window_attention_constants
    from tcc.ops.attention import relative_position_index, shifted_window_mask

    rng = np.random.default_rng(0)
    table = rng.standard_normal((25, 2)).astype(np.float32)  # window 3: (2 3 - 1)^2 rows, 2 heads
    bias = table[relative_position_index(3, 3)].transpose(2, 0, 1)
    mask = shifted_window_mask((6, 3), (3, 3), (1, 1))  # [2 windows, 1, 9, 9]
    shapes = {"s": (2, 2, 9, 9)}
    other = bias.copy()
    other[1, 0, 1] += 1  # one offset's value changed at one pair of positions only: no table makes it
    for const, kind in (
        (bias, "RelativePositionBias"),
        (other, "Add"),
        (mask, "WindowMask"),
        (mask[::-1].copy(), "Add"),
    ):
        nodes = window_attention_constants(
            [helper.make_node("Add", ["s", "c"], ["y"], name="add")], {"c": const}, dict(shapes)
        )
        assert [n.op_type for n in nodes] == [kind]
    found = window_attention_constants(
        [helper.make_node("Add", ["s", "c"], ["y"], name="add")], const := {"c": bias}, dict(shapes)
    )
    assert np.array_equal(const["add/table"], table)
    mask_node = window_attention_constants(
        [helper.make_node("Add", ["s", "c"], ["y"], name="add")], {"c": mask}, dict(shapes)
    )[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in mask_node.attribute}
    assert attrs == {"size": [6, 3], "window": 3, "shift": [1, 1]} and found


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in zoo_models() if n not in NOT_READ_BACK_YET])
def test_every_zoo_spec_reads_back_equal_at_full_size(name, tmp_path):
    """docs/import.md's table (tools/import_round_trip.py): each equal; all but AlexNet (nothing repeats) and
    Inception v3 and DDS-U-Net (their blocks are zoo files outside the spec's lines) in local blocks within twice the
    lines; the MobileViTs (v1 and v2), Swin and MaxViT equal, in local blocks, longer. The FP32 rule's verdict does
    not depend on the threads PyTorch runs on (onnx_import.FLOAT32_ORDERS): a pytest worker runs one."""
    model, imported, _ = read_back_equal(name, tmp_path)
    if name not in ("alexnet", "inception_v3"):
        assert imported.blocks
    longer = ("alexnet", "inception_v3", "mobilevit_xxs", "mobilevit_s", "mobilevitv2_050", "swin_t", "maxvit_t")
    # MobileViT, MobileViTv2, Swin, MaxViT: their transformer layers are written out one by one (292, 122, 336, 320
    # lines; local blocks for the rest); DDS-U-Net's blocks are zoo files (dds_layer, dds_transition, dw_separable)
    # outside its 62 lines, as Inception v3's: 135 lines imported
    if name not in longer + ("dds_unet",):
        assert len(imported.spec_text.splitlines()) <= 2 * len(model.path.read_text().splitlines())


def _torchvision_onnx(name: str, path, size: int = 64, dynamic: bool = False):
    module = init_weights(tv.build(name, num_classes=5), seed=1).eval()
    axes = {"x": {0: "n", 2: "h", 3: "w"}} if dynamic else {"x": {0: "n"}}
    torch.onnx.export(
        module,
        torch.randn(1, 3, size, size),
        path,
        dynamo=False,
        opset_version=13,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes=axes,
    )
    return path


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    """torchvision's mobilenet_v3_small (seeded weights), exported by torch.onnx.export and imported by the CLI."""
    work = tmp_path_factory.mktemp("mnv3")
    path = _torchvision_onnx("mobilenet_v3_small", work / "mobilenet_v3_small.onnx")
    rc, out, err = tcc_cli(
        "import", path, "-o", work / "m.yaml", "--mean", 0.485, 0.456, 0.406, "--std", 0.229, 0.224, 0.225
    )
    assert rc == 0, err
    np.save(work / "x.npy", np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32))
    return path, work, out


def test_torch_export_imports_and_predicts_as_onnx_runtime(mobilenet):
    path, work, out = mobilenet
    assert "(FP32 rule: passed)" in out and (work / "m.pt").is_file()
    assert_predicts_as_onnx_runtime(work / "m.yaml", work / "m.pt", path, work / "x.npy")
    text = (work / "m.yaml").read_text()
    # opset 13 has no HardSwish: torch writes x * HardSigmoid(x), read back as hardswish; the SE blocks' gates
    # (a hardsigmoid of the squeezed value times the features) stay a hardsigmoid and a mul
    assert "op: hardswish" in text and "op: hardsigmoid" in text and "preprocess: {color: RGB" in text
    weights = torch.load(work / "m.pt", weights_only=True)
    # names from the module path (features.0 ...), not torch's anonymous onnx::Conv_193
    assert "features.0.0.weight" in weights and not any("onnx" in k for k in weights)


# an imported timm model builds INT8 for host in CI (onnx_import/test_timm.py): this one's host build is slow-only
@pytest.mark.parametrize("target", ["ort", pytest.param("host", marks=pytest.mark.slow)])
def test_an_imported_model_builds_int8(mobilenet, target):
    path, work, out = mobilenet
    assert_builds_int8_bit_exact(work, target)


def test_dynamic_height_and_width_take_size(tmp_path):
    path = _torchvision_onnx("resnet18", tmp_path / "r.onnx", size=32, dynamic=True)
    rc, out, err = tcc_cli("import", path, "-o", tmp_path / "r.yaml")
    assert rc == 2 and "input 'x' has a dynamic height or width; give it with --size H W" in err
    assert not (tmp_path / "r.yaml").exists()
    rc, out, err = tcc_cli("import", path, "-o", tmp_path / "r.yaml", "--size", 48, 40)
    assert rc == 0, err
    assert "shape: [3, 48, 40]" in (tmp_path / "r.yaml").read_text()


def test_a_slice_of_two_axes_reads_back_as_two_slices(tmp_path):
    """onnxsim merges Swin's patch-merging `x[:, 0::2, 1::2]` into one Slice of two axes: read back as one slice per
    axis (the spec's slice takes one), checked against ONNX Runtime."""
    bounds = {"starts": [0, 1], "ends": [8, 8], "axes": [2, 3], "steps": [2, 2]}
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="first"),
        helper.make_node("Slice", ["a", *bounds], ["y"], name="merge"),
    ]
    path = tmp_path / "m.onnx"
    onnx.save(
        make_model(nodes, {"x": [1, 3, 8, 8]}, {"y": [1, 3, 4, 4]}, {f"#{k}": v for k, v in bounds.items()}), path
    )
    rc, out, err = tcc_cli("import", path, "-o", tmp_path / "m.yaml")
    assert rc == 0, err
    text = (tmp_path / "m.yaml").read_text()
    assert text.count("op: slice") == 2 and "(FP32 rule: passed)" in out


def test_tanh_reads_back_as_the_spec_op(tmp_path):
    """MaxViT's classifier squashes with a Tanh: the spec's tanh."""
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="first"), helper.make_node("Tanh", ["a"], ["y"], name="t")]
    path = tmp_path / "m.onnx"
    onnx.save(make_model(nodes, {"x": [1, 3, 8, 8]}, {"y": [1, 3, 8, 8]}), path)
    rc, out, err = tcc_cli("import", path, "-o", tmp_path / "m.yaml")
    assert rc == 0, err
    assert "op: tanh" in (tmp_path / "m.yaml").read_text()


def test_what_has_no_spec_op_is_refused_naming_each_node(tmp_path):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="first"),
        helper.make_node("Sin", ["a"], ["b"], name="squash"),
        helper.make_node("Clip", ["b", "lo", "hi"], ["y"], name="clamp"),
    ]
    inits = [onnx.numpy_helper.from_array(np.float32(-1), "lo"), onnx.numpy_helper.from_array(np.float32(1), "hi")]
    path = tmp_path / "m.onnx"
    onnx.save(
        helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 13)]),
        path,
    )
    rc, out, err = tcc_cli("import", path, "-o", tmp_path / "m.yaml")
    assert rc == 2 and "2 node(s) with no spec equivalent, nothing written" in err
    assert "node 'squash' (Sin): no spec op" in err
    assert "node 'clamp' (Clip): Clip to [-1.0, 1.0] (only relu6's [0, 6] and relu's [0, inf) have a spec op)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    rc, out, err = tcc_cli("import", tmp_path / "junk.onnx", "-o", tmp_path / "j.yaml")
    assert rc == 2 and "junk.onnx: not an ONNX model" in err


def test_an_onnx_file_is_taken_wherever_a_spec_is(mobilenet, tmp_path):
    """`tcc build model.onnx` / `tcc predict model.onnx`: imported in memory with its own weights; the manifest
    records the file and its sha256, and two builds are byte-identical."""
    path, work, out = mobilenet
    for k in (1, 2):
        rc, printed, err = tcc_cli("build", path, "--target", "ort", "-o", tmp_path / f"b{k}")
        assert rc == 0 and "WARNING" not in err, err
    assert (tmp_path / "b1" / "manifest.json").read_bytes() == (tmp_path / "b2" / "manifest.json").read_bytes()
    m = json.loads((tmp_path / "b1" / "manifest.json").read_text())
    assert m["model"]["source"]["onnx"] == "mobilenet_v3_small.onnx" and len(m["model"]["source"]["sha256"]) == 64
    assert m["model"]["spec"] == "mobilenet_v3_small.yaml" and "random_seed" not in m["weights"]
    x = np.random.default_rng(4).standard_normal((1, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    rc, printed, err = tcc_cli("predict", path, "--input", tmp_path / "x.npy", "--json")
    want = run(onnx.load(path), x)[0]
    np.testing.assert_allclose(
        json.loads(printed)["logits"], want, rtol=0, atol=1e-5 * max(1.0, float(abs(want).max()))
    )
    rc, printed, err = tcc_cli("build", path, "--weights", work / "m.pt", "--target", "ort", "-o", tmp_path / "b3")
    assert rc == 2 and "an ONNX file carries its weights" in err
    rc, printed, err = tcc_cli("check", path, "--json")
    assert rc == 0 and json.loads(printed)["params"] == tcc.load_spec(work / "m.yaml").graph.param_count


def test_constant_nodes_of_every_attribute_form_are_read(tmp_path):
    """Clip's bounds from Constant nodes written with value_float (not a tensor): read as relu6, no traceback."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    nodes = [
        helper.make_node("Constant", [], ["lo"], value_float=0.0),
        helper.make_node("Constant", [], ["hi"], value_float=6.0),
        helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clamp"),
    ]
    path = tmp_path / "m.onnx"
    onnx.save(
        helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 13)]), path
    )
    rc, out, err = tcc_cli("import", path, "-o", tmp_path / "m.yaml")
    assert rc == 0, err
    assert "{id: clamp, op: relu6}" in (tmp_path / "m.yaml").read_text()


def test_explain_slide_and_report_take_an_onnx_file(mobilenet, tmp_path):
    """`tcc explain model.onnx`, `tcc slide model.onnx` and `tcc report model.onnx`: imported in memory with the
    file's own weights (the explained class is `tcc predict`'s on the same file and image, itself ONNX Runtime's;
    Table 1 has the imported spec's parameters); a --weights beside it is a clean exit 2."""
    import skimage.data
    from PIL import Image

    path, work, out = mobilenet
    image = tmp_path / "ihc.png"
    Image.fromarray(skimage.data.immunohistochemistry()).save(image)
    rc, printed, err = tcc_cli("explain", path, "--image", image, "-o", tmp_path / "cam.png", "--json")
    assert rc == 0, err
    explained = json.loads(printed)
    rc, printed, err = tcc_cli("predict", path, "--image", image, "--json")
    assert rc == 0, err
    assert explained["class"] == json.loads(printed)["class"] and (tmp_path / "cam.png").is_file()
    rc, printed, err = tcc_cli(
        "slide", path, "--image", image, "--patch-size", 128, "-o", tmp_path / "slide", "--no-progress", "--threads", 1
    )
    assert rc == 0, err
    doc = json.loads((tmp_path / "slide" / "patches.json").read_text())
    assert doc["kept"] > 0 and len(doc["patches"][0]["probabilities"]) == 5
    rc, printed, err = tcc_cli("report", path, "-o", tmp_path / "report", "--json")
    assert rc == 0, err
    assert json.loads(printed)["models"][0]["params"] == tcc.load_spec(work / "m.yaml").graph.param_count
    for command in ("explain", "slide"):
        rc, printed, err = tcc_cli(
            command, path, "--weights", work / "m.pt", "--image", image, "-o", tmp_path / f"{command}-bad.png"
        )
        assert rc == 2 and "an ONNX file carries its weights" in err


def test_a_command_takes_the_import_options_of_an_onnx_file_by_set(tmp_path):
    """An ONNX file given where a spec goes: `--set size=[H,W]` fixes a dynamic input, `--set mean/std` the
    preprocessing (as `tcc import --size/--mean/--std`); a model parameter or a bad value is refused, exit 2."""
    path = _torchvision_onnx("resnet18", tmp_path / "r.onnx", size=32, dynamic=True)
    rc, out, err = tcc_cli("check", path)
    assert rc == 2 and "a command that takes the ONNX file: --set size=[H,W]" in err
    rc, out, err = tcc_cli("check", path, "--set", "size=[48,40]", "--json")
    assert rc == 0, err
    assert json.loads(out)["input"] == [3, 48, 40]
    model = tcc.Model.load(path, size=[48, 40], mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2])
    assert list(model.spec.preprocess.mean) == [0.5, 0.4, 0.3] and list(model.spec.preprocess.resize) == [48, 40]
    assert model.source["import_options"] == {"size": [48, 40], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}
    for bad, message in (
        (["size=32", "num_classes=2"], "--set num_classes: not an import option"),
        (["size=32", "mean=[0.5,0.5]"], "r.onnx: 2 mean values for an input of 3 channels"),
        (["size=32", "std=[1,0,1]"], "every std must be positive"),
        (["size=[32]"], "--set size=[32]: give a positive side or [H, W]"),
    ):
        rc, out, err = tcc_cli("check", path, *[a for pair in bad for a in ("--set", pair)])
        assert rc == 2 and message in err, err
