"""The backend interface and the ONNX Runtime backend: registry, capability checks, FP16 conversion, FP16 builds of
the paper models, and `predict --artifact` = `predict` on the real DDSNet checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tcc.backends import BACKENDS, TARGETS, EmitOptions, get_backend, get_target
from tcc.backends.ort.fp16 import to_fp16
from tcc.build import TOLERANCES, build, build_settings
from tcc.cli.main import main
from tcc.errors import BuildError
from tcc.measure.machine import u8s8_exact
from tests.helpers import FIXTURES, REPO
from tests.helpers.cli import int8_build_argv
from tests.helpers.onnx_util import make_model, run
from tests.helpers.quant_models import tiny_spec_and_data


# ---------------------------------------------------------------------------------------------------- registry
def test_registry_is_plain_data_and_imports_nothing():
    assert set(TARGETS) >= {"onnx", "ort"} and TARGETS["ort"].precisions == ("fp32", "fp16", "int8", "dynamic")
    assert all(t.backend in BACKENDS for t in TARGETS.values())
    code = "import sys, tcc.backends; print(any(m in sys.modules for m in ('onnxruntime', 'tcc.backends.ort.backend')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(BuildError) as e:
        get_target("tensorrt")
    assert "unknown target 'tensorrt'" in str(e.value) and "onnx" in str(e.value) and "ort" in str(e.value)


def test_capabilities():
    caps = get_backend("ort").capabilities
    assert caps.name == "ort" and set(caps.targets) == {"onnx", "ort", "ort-w8"} and "fp16" in caps.precisions
    assert caps.runs_here and caps.opsets[0] <= 11 and caps.opsets[1] >= 13


# ---------------------------------------------------------------------------------------------------- check()
def _model(nodes, inits=(), opset=13, out_shape=("N", 4, 8, 8)):
    return make_model(
        nodes, {"input": ["N", 3, 8, 8]}, {"output": out_shape}, inits, name="m", opset=opset, ir_version=7
    )


def test_check_names_a_node_the_opset_cannot_express():
    m = _model([helper.make_node("HardSwish", ["input"], ["output"], name="stage1.act")], out_shape=("N", 3, 8, 8))
    with pytest.raises(BuildError) as e:
        get_backend("ort").check(m, EmitOptions("ort", opset=13))
    assert "'stage1.act'" in str(e.value) and "HardSwish" in str(e.value) and "opset >= 14" in str(e.value)
    ok = _model(list(m.graph.node), opset=14, out_shape=("N", 3, 8, 8))
    get_backend("ort").check(ok, EmitOptions("ort", opset=14))


def test_check_names_a_node_outside_the_standard_domain():
    node = helper.make_node("FusedConv", ["input"], ["output"], name="head.conv", domain="com.example")
    with pytest.raises(BuildError, match="'head.conv'.*com.example.FusedConv"):
        get_backend("ort").check(_model([node]), EmitOptions("ort"))


# ---------------------------------------------------------------------------------------------------- fp16
def _fp32_model():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
    b = rng.standard_normal(4).astype(np.float32) * 0.1
    nodes = [
        helper.make_node("Conv", ["input", "c.weight", "c.bias"], ["c"], name="c", pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["act"], name="act"),
        helper.make_node("Constant", [], ["k"], name="k", value=numpy_helper.from_array(np.float32(0.5), "k")),
        helper.make_node("Mul", ["act", "k"], ["m"], name="m"),
        helper.make_node("Add", ["m", "c"], ["output"], name="out"),
    ]
    inits = [
        numpy_helper.from_array(w, "c.weight"),
        numpy_helper.from_array(b, "c.bias"),
        numpy_helper.from_array(np.float32(0), "lo"),
        numpy_helper.from_array(np.float32(6), "hi"),
    ]
    return _model(nodes, inits)


def test_fp16_conversion_keeps_float32_io():
    m32 = _fp32_model()
    m16 = to_fp16(m32)
    assert [i.type.tensor_type.elem_type for i in m16.graph.input] == [TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in m16.graph.output] == [TensorProto.FLOAT]
    assert [o.name for o in m16.graph.output] == ["output"] and [i.name for i in m16.graph.input] == ["input"]
    assert {t.data_type for t in m16.graph.initializer} == {TensorProto.FLOAT16}
    assert m16.graph.node[0].op_type == "Cast" and m16.graph.node[-1].op_type == "Cast"
    onnx.checker.check_model(m16, full_check=True)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    y32, y16 = run(m32, x), run(m16, x)
    assert y16.dtype == np.float32
    assert np.max(np.abs(y16 - y32)) <= 1e-2 * np.max(np.abs(y32))


def test_fp16_conversion_rejects_values_beyond_its_range():
    m = _fp32_model()
    big = numpy_helper.from_array(np.full((4, 3, 3, 3), 1e5, np.float32), "c.weight")
    m.graph.initializer[0].CopyFrom(big)
    with pytest.raises(BuildError, match="'c.weight' \\(used by c\\).*float16 range"):
        to_fp16(m)


@pytest.mark.parametrize("spec", ["ddsnet", "fastnet"])
def test_fp16_build_records_its_deviation(spec, tmp_path):
    m = build(REPO / "spec" / f"{spec}.yaml", build_settings("ort", precision="fp16"), tmp_path / "b").manifest
    sc = m["self_check"]
    assert m["precision"] == "fp16" and sc["tolerance"] == TOLERANCES["fp16"]
    for r in (sc["result"], sc["float16_activations"]):
        assert r["passed"] and 0 < r["max_abs"] <= TOLERANCES["fp16"]["scaled_atol"] * r["output_scale"]
        assert r["cosine"] >= TOLERANCES["fp16"]["min_cosine"]
    model = onnx.load(tmp_path / "b" / "model.onnx")
    assert {t.data_type for t in model.graph.initializer if t.data_type in (1, 10)} == {TensorProto.FLOAT16}
    assert m["inputs"][0]["dtype"] == m["outputs"][0]["dtype"] == "float32"
    assert "float16" in m["runtime"]["note"]


def test_opset_11_build(tmp_path):
    m = build(REPO / "spec" / "fastnet.yaml", build_settings("onnx", opset=11), tmp_path / "b").manifest
    assert m["opset"] == 11 and m["self_check"]["result"]["passed"]
    assert onnx.load(tmp_path / "b" / "model.onnx").opset_import[0].version == 11


# ---------------------------------------------------------------------------------------------------- real weights
@pytest.mark.skipif(not (FIXTURES / "GC_DDS_0.0064.pth").is_file(), reason="DDSNet fixtures absent")
def test_predict_artifact_equals_predict_on_the_spec_ddsnet_gc(tmp_path, capsys):
    ckpt, image = FIXTURES / "GC_DDS_0.0064.pth", FIXTURES / "GC.png"
    spec = REPO / "spec" / "ddsnet.yaml"
    out = tmp_path / "dds"
    assert main(["build", str(spec), "--target", "ort", "-o", str(out), "--weights", str(ckpt), "--by-order"]) == 0
    err = capsys.readouterr().err
    assert "WARNING" not in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"]["import"] == "by_order" and manifest["self_check"]["result"]["passed"]
    assert main(["predict", "--artifact", str(out), "--image", str(image), "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["predict", str(spec), "--weights", str(ckpt), "--by-order", "--image", str(image), "--json"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert a["class"] == b["class"] and a["label"] == b["label"]
    np.testing.assert_allclose(a["logits"], b["logits"], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------------- ort-w8
def test_which_cpus_sum_u8_s8_products_exactly():
    """MLAS's u8 x s8 kernels: VPDPBUSD (AVX-VNNI, AVX-512 VNNI; AMX's tiles) sums four products into int32; without
    it VPMADDUBSW adds two in a saturating int16; ARM64's kernels widen or use dot products."""
    assert not u8s8_exact({"avx2", "fma"}, "x86_64") and not u8s8_exact({"avx512f", "avx512bw"}, "x86_64")
    assert u8s8_exact({"avx2", "avx_vnni"}, "x86_64") and u8s8_exact({"avx512f", "avx512_vnni"}, "x86_64")
    assert u8s8_exact(set(), "aarch64")


def _dense_weight_reach(bundle) -> int:
    """The largest |code| of the artifact's 4-D int8 initializers (the conv weights behind DequantizeLinear)."""
    model = onnx.load(str(bundle / "model.onnx"))
    codes = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == TensorProto.INT8]
    return max(int(np.abs(c.astype(np.int64)).max()) for c in codes if c.ndim == 4)


@pytest.mark.skipif(not u8s8_exact(), reason="this CPU's ONNX Runtime u8 x s8 kernels saturate (x86 without VNNI)")
def test_ort_w8_builds_8_bit_dense_weights_self_checked_on_ort(tmp_path):
    """`--target ort-w8`: the `ort` rules with 8-bit dense weights, ONNX Runtime's integer kernels within one code of
    the integer reference op by op on this CPU; `--target ort` keeps them within 7 bits."""
    spec, data = tiny_spec_and_data(tmp_path, 24)
    for target in ("ort", "ort-w8"):
        assert main(int8_build_argv([spec], target, tmp_path / target, "--data", data)) == 0
    manifest = json.loads((tmp_path / "ort-w8" / "manifest.json").read_text())
    assert manifest["self_check"]["result"]["passed"] and manifest["self_check"]["result"]["per_op"]["max_lsb"] <= 1
    assert json.loads((tmp_path / "ort-w8" / "calibration.json").read_text())["target"] == "ort-w8"
    assert _dense_weight_reach(tmp_path / "ort") <= 64 < _dense_weight_reach(tmp_path / "ort-w8") <= 127


def test_ort_w8_is_refused_before_any_work_where_the_products_saturate(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("tcc.quant.table.rules.u8s8_exact", lambda: False)
    spec, data = tiny_spec_and_data(tmp_path, 24)
    assert main(int8_build_argv([spec], "ort-w8", tmp_path / "out", "--data", data)) == 2
    err = capsys.readouterr().err
    assert "no VNNI" in err and "--target ort" in err and "nothing was written" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.skipif(not u8s8_exact(), reason="the x86 side needs u8 x s8 kernels that do not saturate (VNNI)")
def test_ort_w8_on_arm64_onnx_runtime_equals_the_vnni_hosts(tmp_path):
    """The registry's aarch64 ONNX Runtime wheel under qemu (the peers' sysroot, tcc.benchmark.peers), on an
    A53-class core (no dot product: widening multiplies) and an A55-class one (dot product), computes an `ort-w8`
    bundle's output bit for bit as this VNNI host's: ARM64 is one of the CPUs the target is for. Inputs pushed to
    the top codes, where a saturating int16 pair sum would show."""
    import shutil
    import subprocess

    from tcc.benchmark.peers import guest, sysroot

    for tool in ("qemu-aarch64", "apt-get"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} missing")
    spec, data = tiny_spec_and_data(tmp_path, 24)
    assert main(int8_build_argv([spec], "ort-w8", tmp_path / "b", "--data", data)) == 0
    x = np.abs(np.random.default_rng(5).standard_normal((4, 3, 16, 16))).astype(np.float32) * 4
    np.save(tmp_path / "x.npy", x)
    host = run(onnx.load(str(tmp_path / "b" / "model.onnx")), x)
    for core in ("a53", "a55"):
        python = sysroot.view(core) / "usr" / "bin" / "python3.11"
        out = tmp_path / f"y-{core}.npy"
        argv = [*sysroot.qemu_prefix(core), str(python), guest.__file__, "ort", str(tmp_path / "b" / "model.onnx")]
        subprocess.run([*argv, str(tmp_path / "x.npy"), str(out), "0"], check=True, capture_output=True)
        assert np.array_equal(np.load(out), host), core
