"""`tcc train model.onnx`: imported in memory with its weights as the starting point, the import kept in the run
(RUN/spec.yaml, RUN/imported.pt) so that --resume and `tcc build RUN/spec.yaml` need no ONNX file; the Python API's
tcc.train_model with values, not flag texts; mistakes refused before anything is written."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import yaml

import tcc
from tcc.lower.to_torch import init_weights
from tests.helpers import REPO
from tests.helpers.onnx_util import run
from tests.helpers.train_data import texture_patches
from tests.onnx_import.common import tcc_cli

SPEC = REPO / "tests" / "specs" / "train_tiny.yaml"
TRAIN = ["--epochs", "2", "--batch-size", "8", "--lr", "0.05", "--no-progress"]


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    """train_tiny lowered to ONNX by tcc with seeded weights (the user's trained model), and two texture classes."""
    work = tmp_path_factory.mktemp("train-onnx")
    model = tcc.load_spec(SPEC)
    module = init_weights(tcc.to_torch(model.graph, inference_only=True), seed=3)
    path = work / "tiny.onnx"
    path.write_bytes(tcc.to_onnx(model.graph, module.state_dict()).SerializeToString())
    return path, texture_patches(work / "data", per_class=12), work


def test_a_run_from_an_onnx_file_keeps_the_import_and_resumes_without_it(onnx_model, tmp_path):
    path, data, work = onnx_model
    run_dir = tmp_path / "run"
    rc, out, err = tcc_cli(
        "train",
        path,
        "--data",
        data,
        "-o",
        run_dir,
        *TRAIN,
        "--stop-after",
        "1",
        "--set",
        "mean=[0.45,0.45,0.45]",
        "--set",
        "std=[0.25,0.25,0.25]",
    )
    assert rc == 0, err
    assert f"tcc train --resume {run_dir}" in out
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "best.pt",
        "config.yaml",
        "curves.png",
        "imported.pt",
        "last.pt",
        "log.json",
        "spec.yaml",
    ]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["weights"] == "imported.pt" and config["set"] == {}
    log = json.loads((run_dir / "log.json").read_text())
    assert log["spec_file"] == str((run_dir / "spec.yaml").resolve())
    assert log["imported"]["onnx"] == str(path) and log["imported"]["import_options"]["std"] == [0.25] * 3
    assert "mean: [0.45, 0.45, 0.45]" in (run_dir / "spec.yaml").read_text()
    # the starting point is the ONNX file's own model: the kept spec and weights predict as ONNX Runtime does
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    start = tcc.Model.load(run_dir / "spec.yaml", weights=run_dir / "imported.pt").predict(x)
    np.testing.assert_allclose(start, run(onnx.load(path), x), rtol=0, atol=1e-5)
    (tmp_path / "moved.onnx").write_bytes(path.read_bytes())  # the ONNX file is not needed any more
    rc, out, err = tcc_cli("train", "--resume", run_dir)
    assert rc == 0, err
    assert "best: epoch" in out and f"tcc build {run_dir / 'spec.yaml'}" in out
    assert [e["epoch"] for e in json.loads((run_dir / "log.json").read_text())["epochs"]] == [1, 2]
    # the same run through the Python API, with values: equal weights (one process, the same seed)
    trained = tcc.train_model(
        path,
        data=data,
        output=tmp_path / "api",
        epochs=2,
        batch_size=8,
        lr=0.05,
        overrides={"mean": [0.45] * 3, "std": [0.25] * 3},
    )
    assert trained.run == tmp_path / "api" and [e["epoch"] for e in trained.history.epochs] == [1, 2]
    ours = torch.load(tmp_path / "api" / "best.pt", weights_only=True)
    cli = torch.load(run_dir / "best.pt", weights_only=True)
    assert all(torch.equal(ours[k], cli[k]) for k in cli)


def test_mistakes_are_refused_before_anything_is_written(onnx_model, tmp_path):
    path, data, work = onnx_model
    cases = [
        (
            ["--weights", work / "nosuch.pt"],
            "an ONNX file carries its weights, the run's starting point: drop --weights",
        ),
        (["--set", "num_classes=3"], "--set num_classes: not an import option (the import's options"),
        (["--set", "size=[0,4]"], "--set size=[0, 4]: give a positive side or [H, W]"),
    ]
    for extra, message in cases:
        rc, out, err = tcc_cli("train", path, "--data", data, "-o", tmp_path / "run", *TRAIN, *extra)
        assert rc == 2 and message in err, err
    rc, out, err = tcc_cli("train", path, "--resume", tmp_path / "run")
    assert rc == 2 and "continues with the spec the run keeps (RUN/spec.yaml)" in err, err
    assert not (tmp_path / "run").exists()
    with pytest.raises(tcc.DataError, match="unknown option 'epoch'.*did you mean 'epochs'"):
        tcc.train_model(path, data=data, output=tmp_path / "run", epoch=2)
    with pytest.raises(tcc.SpecError, match="^batch_size=0: "):
        tcc.train_model(path, data=data, output=tmp_path / "run", batch_size=0)
    assert not (tmp_path / "run").exists()


def test_qat_of_an_onnx_file_writes_the_spec_its_weights_are_for(onnx_model, tmp_path):
    """`tcc qat model.onnx`: the fine-tuned weights are by the imported spec's names, so that spec lands beside
    them (by the name the table's spec hash holds) and builds with the new table."""
    path, data, work = onnx_model
    model = tcc.Model.load(path)
    table = model.calibrate(data, target="ort", method="kl", calib_size=16)
    table.save(tmp_path / "table.json")
    rc, out, err = tcc_cli(
        "qat",
        path,
        "--calib",
        tmp_path / "table.json",
        "--data",
        data,
        "-o",
        tmp_path / "qat",
        "--epochs",
        "1",
        "--calib-size",
        "16",
    )
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "qat").iterdir()) == ["calib.json", "log.json", "tiny.yaml", "weights.pt"]
    assert f"tcc build {tmp_path / 'qat' / 'tiny.yaml'} --weights" in out
    rc, out, err = tcc_cli(
        "build",
        tmp_path / "qat" / "tiny.yaml",
        "--weights",
        tmp_path / "qat" / "weights.pt",
        "--calib",
        tmp_path / "qat" / "calib.json",
        "--precision",
        "int8",
        "--target",
        "ort",
        "-o",
        tmp_path / "bundle",
    )
    assert rc == 0 and "self-check vs the integer reference: bit-exact" in out, err
