"""NaN and infinity in training options (tools/fuzz.py, kind `train`): NaN passes every bound of the option schemas
(each comparison with it is false), so `val_fraction: .nan` reached the stratified split as a ValueError. Now every
non-finite value is refused where it is written: the spec's train: section, a --config file, a flag."""

from __future__ import annotations

from tests.helpers import LOCAL_SPECS
from tests.helpers.damaged import tcc

SPEC = (LOCAL_SPECS / "train_tiny.yaml").read_text(encoding="utf-8")


def test_in_the_spec_train_section(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC + "train:\n  epochs: 1\n  val_fraction: .nan\n", encoding="utf-8")
    code, err = tcc("train", spec, "-o", tmp_path / "run")
    line = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err
    assert line == f"{spec}:{SPEC.count(chr(10)) + 3}:17: train.val_fraction: nan is not a finite number"


def test_in_a_config_file_and_a_flag(tmp_path):
    config = tmp_path / "config.yaml"
    for text, line in [
        ("lr: .inf\n", "1:5: lr: inf"),
        ("epochs: 1\nclass_weights: [1.0, .nan]\n", "2:16: class_weights: nan"),
    ]:
        config.write_text(text, encoding="utf-8")
        code, err = tcc("train", LOCAL_SPECS / "train_tiny.yaml", "--config", config, "-o", tmp_path / "run")
        assert code == 2 and err.strip().splitlines()[-1] == f"{config}:{line} is not a finite number"
    code, err = tcc("train", LOCAL_SPECS / "train_tiny.yaml", "--lr", ".inf", "-o", tmp_path / "run")
    assert code == 2 and err.strip().splitlines()[-1] == "error: --lr .inf: inf is not a finite number"
