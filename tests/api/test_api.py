"""The Python API (tcc.api): the same results as the commands it stands under, typed errors, and the docs page's
example run as written."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

import tcc
from tcc.cli.main import main as cli
from tests.helpers import REPO
from tests.helpers.marks import needs_fixtures

TINY = REPO / "tests" / "specs" / "train_tiny.yaml"


def _cli(*argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert cli([str(a) for a in argv]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """train_tiny (seeded weights) calibrated on an array and built INT8 for ORT from the table object, and the same
    through the command line from the saved table."""
    work = tmp_path_factory.mktemp("api")
    model = tcc.Model.load(TINY, num_classes=3)
    data = np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32)
    table = model.calibrate(data, target="ort", method="kl", calib_size=16)
    bundle = model.build("ort", precision="int8", calib=table, out=work / "api")
    table.save(work / "calibration.json")
    _cli(
        "build",
        TINY,
        "--set",
        "num_classes=3",
        "--target",
        "ort",
        "--precision",
        "int8",
        "--calib",
        work / "calibration.json",
        "-o",
        work / "cli",
    )
    return model, data, bundle, work


def test_a_bundle_from_python_is_the_commands_byte_for_byte(built):
    model, data, bundle, work = built
    assert bundle.path == work / "api" and bundle.target == "ort" and bundle.precision == "int8"
    for name in ("manifest.json", "model.onnx", "calibration.json"):
        assert (work / "api" / name).read_bytes() == (work / "cli" / name).read_bytes(), name
    assert bundle.manifest["quantization"]["file"] == "calibration.json"


def test_predict_run_and_check(built, tmp_path):
    model, data, bundle, work = built
    x = data[:2]
    np.save(tmp_path / "x.npy", x)
    printed = json.loads(_cli("predict", TINY, "--set", "num_classes=3", "--input", tmp_path / "x.npy", "--json"))
    assert np.allclose(model.predict(x), [row["logits"] for row in printed], rtol=0, atol=1e-6)
    assert model.predict(x[0]).shape == (1, 3)  # one [C, H, W] sample
    opened = tcc.Bundle.open(work / "api")
    assert np.array_equal(opened.run(x), bundle.run(x))
    assert opened.check()["result"]["bit_exact"] is not None and opened.warning.startswith("NO WEIGHTS GIVEN")
    assert model.onnx().graph.output[0].name == "output" and not model.torch().training


def test_diff_reference_against_the_bundle(built):
    model, data, bundle, work = built
    result = tcc.diff("reference", bundle, data[:1], model=model)
    assert result["compared"] >= 5 and max(r["lsb"] for r in result["rows"]) <= 1.0


def test_errors_are_the_typed_exceptions_the_cli_maps_to_exit_2(built, tmp_path):
    model, data, bundle, work = built
    with pytest.raises(tcc.SpecError, match="no zoo model named 'ddsnt'.*did you mean 'ddsnet'"):
        tcc.Model.load("ddsnt")
    with pytest.raises(tcc.DataError, match=r"input of shape \[2, 3, 16, 16\]: the model takes float \[N, 3, 32, 32\]"):
        model.predict(np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(tcc.BuildError, match="unknown target"):
        model.build("nosuch", out=tmp_path / "x")
    (tmp_path / "copy").mkdir()
    for f in (work / "api").iterdir():
        (tmp_path / "copy" / f.name).write_bytes(f.read_bytes())
    onnx_file = tmp_path / "copy" / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-1] + b"\0")
    with pytest.raises(tcc.TccError, match="model.onnx"):
        tcc.Bundle.open(tmp_path / "copy")


def test_keywords_keep_their_meaning_and_a_misspelt_one_is_named(built, tmp_path):
    """`calib_options` (the calibration's keywords, as Model.build has always taken them) calibrates as
    `model.calibrate` does: the same table in the bundle; a misspelt keyword of any method is a TypeError naming the
    nearest one, before any work."""
    model, data, bundle, work = built
    options = {"method": "kl", "calib_size": 16}
    now = model.build("ort", precision="int8", data=data, calib_options=options, out=tmp_path / "now")
    assert (now.path / "calibration.json").read_bytes() == (work / "api" / "calibration.json").read_bytes()
    assert now.manifest["quantization"]["from"] == "data"
    with pytest.raises(TypeError, match="did you mean 'calib_size'"):
        model.calibrate(data, calib_sise=16)
    with pytest.raises(TypeError, match="did you mean 'tune'"):
        model.build("host", tunes=2, out=tmp_path / "x")
    with pytest.raises(TypeError, match="did you mean 'epochs'"):
        model.qat(data, work / "calibration.json", tmp_path / "q", epoch=2, check_only=True)
    assert not (tmp_path / "x").exists()


@needs_fixtures
def test_the_docs_page_example_runs_as_written(monkeypatch, capsys, tmp_path):
    """docs/python-api.md's example prints what its comments say, run from a folder outside the checkout that has
    the fixtures' `shared/` beside it, as the page says."""
    (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    code = re.search(r"```python\n(.*?)```", (REPO / "docs" / "python-api.md").read_text(), re.DOTALL).group(1)
    exec(compile(code, "docs/python-api.md", "exec"), {})
    assert capsys.readouterr().out.split() == ["TUM", "6", "True", "True", "63", "True"]
    assert len(list((tmp_path / "work" / "out" / "api" / "crops").glob("*.png"))) == 32


def test_every_command_stands_on_the_api():
    """Each command module's work goes through tcc.api (the CLI parses, calls the API, prints): it imports from it,
    or loads its model by tcc.cli.args.load_model, which is tcc.api's Model.load; only the listings of what tcc
    ships (zoo, ops, schema) read the spec layer directly, and completion the parser."""
    import inspect

    import tcc.cli.args as args
    import tcc.cli.parser as parser

    assert "from ..api import Model" in inspect.getsource(args.load_model)
    listings = {"zoo", "ops", "schema", "completion"}  # completion: the parser itself
    for module in parser.COMMANDS:
        name = module.__name__.rsplit(".", 1)[1]
        source = Path(module.__file__).read_text()
        assert ("from ..api import" in source or "load_model(" in source) != (name in listings), name


def test_summary_and_report_are_the_commands(tmp_path):
    model = tcc.Model.load(TINY, num_classes=3)
    assert model.summary() == json.loads(_cli("check", TINY, "--set", "num_classes=3", "--json"))
    doc = tcc.report([TINY], out=tmp_path / "api", overrides={"num_classes": 3})
    printed = json.loads(_cli("report", TINY, "--set", "num_classes=3", "-o", tmp_path / "cli", "--json"))
    assert doc["models"] == printed["models"] and doc["models"][0]["params"] == model.summary()["params"]
    with pytest.raises(tcc.DataError, match="give at least one spec"):
        tcc.report([], out=tmp_path / "none")
    with pytest.raises(tcc.DataError, match="unknown option 'patch'"):
        model.slide([tmp_path], tmp_path / "slide", patch=64)


def test_the_top_level_names_the_api_lazily_are_the_apis():
    """`tcc.X` reaches tcc.api without importing it at start-up: its list (tcc._API) is tcc.api.__all__."""
    import tcc.api

    assert sorted(tcc._API) == sorted(tcc.api.__all__)
    assert all(getattr(tcc, name) is getattr(tcc.api, name) for name in tcc.api.__all__)
