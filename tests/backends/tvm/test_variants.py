"""The INT8 kernel variants' table (backends/tvm/int8/variants/): its order (each kind's generic form last, every
record's pieces named), the docs' table generated from it, and `explain` (backends/tvm/int8/explain.py) against what
the lowering itself took, layer by layer, on every instruction set's kernel, AMX and int16 codes, without compiling;
`tcc build --explain-kernels` against the lowering of the graph it built, and refused where it does not apply."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

from tcc.backends.tvm.int8 import requantize_forms, variants
from tcc.backends.tvm.int8.explain import KernelChoice, explain, explain_graph, lines
from tcc.backends.tvm.int8.kernels import KERNELS
from tcc.backends.tvm.int8.lower import RelaxLowering, int8_graph, lowering_for
from tcc.cli.main import main
from tcc.frontend import lower_spec
from tcc.passes.base import infer_value_shapes
from tcc.quant.calibrate import calibrate_onnx
from tcc.quant.table.file import load_table
from tests.helpers import REPO
from tests.helpers.quant_models import rows_gemm
from tests.helpers.tvm_int8 import depthwise_model
from tests.helpers.tvm_util import skip_unless_runtime

DDSNET_SMALL = {"block_config": [1, 2, 1, 1], "growth": 8, "stem_ch": 16, "num_classes": 4, "image_size": 64}
# one kernel of each instruction set (None: a target without one)
KERNEL_NAMES = [
    "tcc_dot_avx512_vnni",
    "tcc_dot_avx2_madd",
    "tcc_dot_neon_s8",
    "tcc_dot_a64_sdot",
    "tcc_dot_a64_s8",
    None,
]


def test_each_kind_takes_its_generic_form_last():
    """A layer always finds a variant: the generic form of each weighted kind is the last of that kind's records,
    and every record names its pieces (what it is, a known place for its requantization)."""
    kinds = {kind for v in variants.VARIANTS for kind in v.kinds}
    assert kinds == {"conv", "pooled_conv", "gemm"}
    for kind in kinds:
        of_kind = [v for v in variants.VARIANTS if kind in v.kinds]
        assert of_kind[-1].name == f"generic_{kind}", kind
        assert all(not v.name.startswith("generic") for v in of_kind[:-1])
    names = [v.name for v in variants.VARIANTS]
    assert len(set(names)) == len(names) and all(v.about for v in variants.VARIANTS)
    assert [type(r).__name__ for r in variants.schedule_rules()] == [
        "Int8DotConv",
        "Int8DepthwiseDot",
        "Int8DepthwisePairs",
        "Int8Depthwise",
    ]


def test_the_docs_table_is_the_variants_table():
    """docs/targets/tvm.md lists the variants as the table holds them, in its order (variants.markdown)."""
    text = (REPO / "docs" / "targets" / "tvm.md").read_text(encoding="utf-8")
    want = variants.markdown()
    assert want in text, f"docs/targets/tvm.md's kernel variants table is stale; it should read:\n{want}"


@pytest.fixture(scope="module")
def graphs():
    """(name, FP32 ONNX, table): DDSNet in small (a stem and its max pool, dense blocks of depthwise-separable
    layers, average pools before 1 x 1 convs, a linear head), the depthwise model and linear rows, each at 8 and 16
    bits."""
    rng = np.random.default_rng(0)
    ddsnet = lower_spec(REPO / "spec" / "ddsnet.yaml", DDSNET_SMALL).onnx
    x = rng.standard_normal((4, 3, 64, 64)).astype(np.float32)
    out = [
        ("ddsnet", ddsnet, calibrate_onnx(ddsnet, x, method="minmax", target="tvm")),
        ("ddsnet-a16", ddsnet, calibrate_onnx(ddsnet, x, method="minmax", target="tvm", activation_bits=16)),
    ]
    dw = depthwise_model()
    x = rng.standard_normal((8, 3, 12, 11)).astype(np.float32)
    for bits in (8, 16):
        out.append(
            (f"depthwise-{bits}", dw, calibrate_onnx(dw, x, method="minmax", target="tvm", activation_bits=bits))
        )
    rows = rows_gemm()
    x = rng.standard_normal((8, 32, 4, 4)).astype(np.float32)
    for bits in (8, 16):
        table = calibrate_onnx(rows, x, method="minmax", target="tvm", activation_bits=bits, batch_size=1)
        out.append((f"rows-{bits}", rows, table))
    return out


def _taken(low: RelaxLowering) -> list[tuple[str, str, str, str]]:
    return [(name, *chosen) for name, chosen in low.chosen.items()]


def _explained(rows: list[KernelChoice]) -> list[tuple[str, str, str, str]]:
    return [(r.layer, r.variant, r.kernel, r.requantize) for r in rows]


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_explain_names_what_the_lowering_takes(graphs, kernel, monkeypatch):
    """On every instruction set's kernel (x86 with AMX too), explain's rows -- from the graph's data alone -- name
    the variant, the kernel and the requantization form that the lowering took for each weighted layer."""
    k = None if kernel is None else KERNELS[kernel]
    seen = set()
    for name, model, table in graphs:
        graph, qg = int8_graph(model, table)
        shapes = {t: dims for t, (_dtype, dims) in infer_value_shapes(graph.model, batch=1).items()}
        for amx in (False, True) if kernel == "tcc_dot_avx512_vnni" else (False,):
            with monkeypatch.context() as patch:
                if name.endswith("16"):  # x86's float32 requantization searches 20 s a layer on int16 codes
                    patch.setattr(requantize_forms, "float32_requantize_params", lambda *args: None)
                low = RelaxLowering(k, amx=amx)
                low.lower(qg, (), batch=1)
                rows = explain_graph(qg, shapes, k, amx)
            assert _explained(rows) == _taken(low), (name, amx)
            seen |= {r.variant for r in rows}
    want = {
        "tcc_dot_avx512_vnni": {"amx_stem", "dot_conv", "depthwise_rows", "affine_map", "window_digits", "dot_rows"},
        "tcc_dot_avx2_madd": {"dot_conv", "depthwise_pairs", "depthwise_taps", "affine_map", "dot_rows"},
        "tcc_dot_a64_sdot": {"digits_conv", "digits_rows", "depthwise_rows", "window_digits"},
        "tcc_dot_a64_s8": {"digits_conv", "digits_rows", "depthwise_taps"},
        "tcc_dot_neon_s8": {"dot_conv", "depthwise_taps", "window_digits", "dot_rows"},
        None: {"generic_conv", "generic_pooled_conv", "generic_gemm"},
    }[kernel]
    assert want <= seen, want - seen


def test_explain_refuses_nothing_and_prints_a_line_a_layer():
    rows = [KernelChoice("stem", "conv", "dot_conv", "tcc_dot_avx512_vnni", "float32", "dense 7 x 7 / 2")]
    text = lines(rows)
    assert text[0].split() == ["layer", "kind", "variant", "kernel", "requantization", "why"]
    assert text[1].split()[:5] == ["stem", "conv", "dot_conv", "tcc_dot_avx512_vnni", "float32"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--target", "ort", "--precision", "int8"], "applies to the TVM targets' INT8 builds"),
        (["--target", "host"], "not host fp32"),
    ],
)
def test_explain_kernels_is_refused_where_no_variant_is_chosen(tmp_path, capsys, argv, message):
    spec = REPO / "spec" / "ddsnet.yaml"
    assert main(["build", str(spec), *argv, "-o", str(tmp_path / "b"), "--explain-kernels"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_build_explains_the_kernels_its_module_took(tmp_path, capsys):
    """`tcc build --target host --precision int8 --explain-kernels` prints one row a weighted layer, and each names
    the variant and kernel that the lowering of the graph it built took (the bundle unchanged by the flag)."""
    skip_unless_runtime("host")
    spec = REPO / "spec" / "ddsnet.yaml"
    sets = [a for key, value in DDSNET_SMALL.items() for a in ("--set", f"{key}={value}")]
    data = tmp_path / "calib.npy"
    np.save(data, np.random.default_rng(1).standard_normal((4, 3, 64, 64)).astype(np.float32))
    out = tmp_path / "b"
    argv = ["build", str(spec), *sets, "--target", "host", "--precision", "int8", "--data", str(data)]
    argv += ["--method", "minmax", "--calib-size", "4", "-o", str(out), "--explain-kernels"]
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    at = printed.index("kernel variants (backends/tvm/int8/variants):")
    body = printed[at + 2 :]
    model = lower_spec(spec, DDSNET_SMALL).onnx
    table = load_table(out / "calibration.json")
    _, qg = int8_graph(model, table)
    low = lowering_for("host")
    low.lower(qg, (), batch=1)
    kinds = {n.name: n.kind for n in qg.nodes}
    assert len(body) == len(low.chosen) > 10
    for line, (name, (variant, kernel, _)) in zip(body, low.chosen.items()):
        assert line.split()[:4] == [name, kinds[name], variant, kernel]
    assert [r.variant for r in explain(model, table, "host")] == [v for v, _, _ in low.chosen.values()]
