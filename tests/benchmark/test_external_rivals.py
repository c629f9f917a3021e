"""tcc.benchmark.external_rivals: NNCF and AIMET, run in their own interpreter as a worker on files. Stand-in
packages (importable only by the child, through PYTHONPATH) mark the model they return; the real libraries run in
the census and tools/quality_compare.py (`make rivals`)."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.defs import onnx_opset_version

from tcc.benchmark import external_rivals
from tcc.benchmark.external_rivals import EXTERNAL_RIVALS, RivalError, installed_here, quantize
from tests.helpers.onnx_util import make_model

FAKE_NNCF = (
    "class Dataset:\n    def __init__(self, items, fn):\n        self.items = [fn(i) for i in items]\n"
    "class QuantizationPreset:\n    MIXED = 'mixed'\n"
    "def quantize(model, dataset, preset, subset_size):\n"
    "    model.doc_string = f'quantized {preset} on {subset_size} ({len(dataset.items)} items)'\n"
    "    return model\n"
)
# aimet_onnx's names the driver uses: the per-channel configuration file beside the package, the fold, the sim
FAKE_AIMET = {
    "__init__.py": "",
    "batch_norm_fold.py": "def fold_all_batch_norms_to_weight(model):\n    model.doc_string += 'folded; '\n",
    "quantsim.py": (
        "import os\n"
        "class QuantizationSimModel:\n"
        "    def __init__(self, model, param_type, activation_type, quant_scheme, config_file):\n"
        "        assert os.path.isfile(config_file), config_file\n"
        "        self.model, self.what = model, f'{param_type}/{activation_type} {quant_scheme}, '"
        " + os.path.basename(config_file)\n"
        "    def compute_encodings(self, inputs):\n"
        "        self.what += f' on {len(list(inputs))}'\n"
        "    def to_onnx_qdq(self):\n"
        "        self.model.doc_string += self.what\n"
        "        return self.model\n"
    ),
    "common/quantsim_config/default_config_per_channel.json": "{}",
}


def relu_model() -> onnx.ModelProto:
    relu = helper.make_node("Relu", ["x"], ["y"])
    return make_model([relu], {"x": [1, 2]}, {"y": [1, 2]}, opset=onnx_opset_version())


@pytest.fixture
def fake_libraries(tmp_path, monkeypatch):
    """Stand-in nncf and aimet_onnx on the child's PYTHONPATH (skipped where the real ones are importable here)."""
    if installed_here("nncf") or installed_here("aimet-minmax"):
        pytest.skip("a rival library is installed here: the in-process path is taken")
    (tmp_path / "fake" / "nncf").mkdir(parents=True)
    (tmp_path / "fake" / "nncf" / "__init__.py").write_text(FAKE_NNCF)
    for name, text in FAKE_AIMET.items():
        path = tmp_path / "fake" / "aimet_onnx" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake"))


def test_nncf_runs_in_another_interpreter(fake_libraries):
    got = quantize("nncf", relu_model(), np.zeros((3, 1, 2), np.float32), python=sys.executable)
    assert isinstance(got, onnx.ModelProto) and got.doc_string == "quantized mixed on 3 (3 items)"


@pytest.mark.parametrize(("rival", "scheme"), [("aimet-minmax", "min_max"), ("aimet-tfenhanced", "tf_enhanced")])
def test_aimet_folds_then_quantizes_per_channel_with_its_scheme(fake_libraries, rival, scheme):
    got = quantize(rival, relu_model(), np.zeros((5, 1, 2), np.float32), python=sys.executable)
    assert got is not None
    assert got.doc_string == f"folded; int8/int8 {scheme}, default_config_per_channel.json on 5"


def test_a_rival_installed_nowhere_is_none(tmp_path, monkeypatch):
    """Neither here nor in the other interpreter: None (the tools print "skipped"), not an error."""
    if installed_here("aimet-minmax"):
        pytest.skip("AIMET is installed here")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # no stand-ins
    assert quantize("aimet-minmax", relu_model(), np.zeros((2, 1, 2), np.float32)) is None
    assert quantize("aimet-minmax", relu_model(), np.zeros((2, 1, 2), np.float32), python=sys.executable) is None


def test_a_missing_interpreter_or_a_failing_rival_is_a_rival_error(tmp_path, fake_libraries, monkeypatch):
    with pytest.raises(RivalError, match="nope"):
        external_rivals.quantize_elsewhere("nncf", relu_model(), np.zeros((1, 2), np.float32), str(tmp_path / "nope"))
    broken = tmp_path / "broken"
    (broken / "nncf").mkdir(parents=True)
    failing = FAKE_NNCF.replace("    return model", "    raise ValueError('no graph')")
    (broken / "nncf" / "__init__.py").write_text(failing)
    monkeypatch.setenv("PYTHONPATH", str(broken))
    with pytest.raises(RivalError, match="NNCF mixed under .* failed:(.|\n)*no graph"):
        quantize("nncf", relu_model(), np.zeros((1, 1, 2), np.float32), python=sys.executable)


def test_every_rival_names_its_library_and_label():
    assert {r.library for r in EXTERNAL_RIVALS.values()} == {"nncf", "aimet_onnx"}
    assert len({r.label for r in EXTERNAL_RIVALS.values()}) == len(EXTERNAL_RIVALS)
