"""Never silently bad: an INT8 build from data and `tcc calibrate` measure the INT8 model's fidelity to FP32 (mean and
worst per-sample output cosine, top-1 kept), say it in one line, warn below the floor and, with --require-cos, stop
with exit 2 and nothing written. The build judges on samples of --data that calibration did not take."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from tcc.cli.main import main
from tcc.quant.collect.data import held_back, load_calibration_data
from tcc.quant.report.fidelity import JUDGE_SAMPLES, Fidelity, FidelityError, FidelityFloor, FidelityWarning, judge
from tcc.spec.loader import load_spec
from tests.helpers.quant_models import tiny_spec_and_data


def _tcc(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def test_the_measure_the_line_and_the_floor():
    fp32 = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0]])
    int8 = np.array([[3.0, 1.1, 0.0], [0.0, 2.0, 1.2], [1.0, 2.5, 2.0]])  # the last sample's top-1 moves
    f = Fidelity.measure(fp32, int8, "3 samples")
    cos = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(fp32, int8)]
    assert f.cosine_mean == round(np.mean(cos), 6) and f.cosine_min == round(min(cos), 6) and f.top1_kept == 2
    assert f.line() == (
        f"INT8 fidelity vs FP32 on 3 samples: output cosine mean {f.cosine_mean:.6f}, worst {f.cosine_min:.6f}, "
        "top-1 kept on 2 of 3"
    )
    assert f.shortfall(FidelityFloor(cosine=0.5)) == "top-1 changed on 1 of 3 samples"
    assert f.shortfall(FidelityFloor(cosine=0.5, top1=False)) is None
    assert "mean cosine" in f.shortfall(FidelityFloor(cosine=0.9999, top1=False))
    assert Fidelity.from_json(f.to_json(FidelityFloor())) == f
    with pytest.warns(FidelityWarning, match="top-1 changed on 1 of 3 samples.*Fix: --min-cos"):
        judge(f, FidelityFloor(cosine=0.5))
    with pytest.raises(FidelityError, match="required: mean cosine >= 0.5 and every top-1 kept"):
        judge(f, FidelityFloor(cosine=0.5, required=True))
    dense = Fidelity.measure(np.ones((2, 3, 4, 4)), np.ones((2, 3, 4, 4)), "2 samples")
    assert dense.top1_kept is None and dense.cosine_min == 1.0 and "top-1" not in dense.line()


def test_a_segmenter_is_judged_by_its_mask():
    """A dense output: the pixels whose class agrees and each class's Dice join the line, the floor and the record."""
    fp32 = np.zeros((2, 2, 10, 10), np.float32)
    fp32[:, 1, :, :5] = 1  # class 1 on the left half of both samples
    int8 = fp32.copy()
    int8[0, 1, 0, :2] = -1  # two of its 100 pixels become class 0 in the first sample
    f = Fidelity.measure(fp32, int8, "2 samples")
    assert f.masks is not None and f.masks.pixels == 0.99
    # class 0: FP32 100 pixels, INT8 102, shared 100 -> 200 / 202; class 1: 100, 98, 98 -> 196 / 198
    assert f.masks.dice == (round(200 / 202, 6), round(196 / 198, 6))
    assert f.line().endswith("; pixels of the same class 99.00%, Dice (INT8 mask vs FP32 mask) lowest 0.9899 (class 1)")
    assert f.shortfall(FidelityFloor(cosine=0.5)) is None  # 99% of pixels: at the default floor
    assert f.shortfall(FidelityFloor(cosine=0.5, pixels=0.995)) == "99.00% of the pixels keep their class < 99.5%"
    assert f.shortfall(FidelityFloor(cosine=0.5, pixels=0.995, top1=False)) is None
    record = f.to_json(FidelityFloor())
    assert record["pixel_agreement"] == 0.99 and record["floor"]["pixels"] == 0.99
    assert Fidelity.from_json(record) == f


def test_held_back_samples_are_the_ones_calibration_did_not_pick(tmp_path):
    spec_path, data = tiny_spec_and_data(tmp_path, 20)
    spec = load_spec(spec_path)
    cd = load_calibration_data(data, spec.preprocess, spec.input_shape, 12, seed=3)
    rest = held_back(data, cd, spec.preprocess, spec.input_shape, seed=3, n=16)
    everything = np.load(data)
    assert rest is not None and len(rest) == 8
    rows = {r.tobytes() for r in everything}
    picked = {r.tobytes() for r in cd.array}
    assert {r.tobytes() for r in rest} == rows - picked
    all_taken = load_calibration_data(data, spec.preprocess, spec.input_shape, 20, seed=3)
    assert held_back(data, all_taken, spec.preprocess, spec.input_shape, seed=3, n=16) is None


def test_a_build_judges_on_held_back_samples_warns_below_the_floor_and_require_cos_writes_nothing(tmp_path):
    spec, data = tiny_spec_and_data(tmp_path, 40)
    base = ["build", spec, "--target", "ort", "--precision", "int8", "--data", data, "--calib-size", "16"]
    rc, out, err = _tcc(*base, "-o", tmp_path / "ok", "--fidelity-floor", "0.5")
    assert rc == 0 and "WARNING: INT8 fidelity" not in err, err
    record = json.loads((tmp_path / "ok" / "manifest.json").read_text())["quantization"]["fidelity"]
    assert record["samples"] == JUDGE_SAMPLES and record["judged_on"].startswith(f"{JUDGE_SAMPLES} held-back samples")
    assert record["below_floor"] is None and Fidelity.from_json(record).line() in out
    floor = record["cosine_mean"] + 1e-6  # just above what this build reaches
    rc, out, err = _tcc(*base, "-o", tmp_path / "warned", "--fidelity-floor", f"{floor:.7f}")
    assert rc == 0 and (tmp_path / "warned" / "manifest.json").exists()
    assert "-> BELOW THE FLOOR (mean cosine" in out
    assert err.strip().splitlines()[-2].startswith("WARNING: INT8 fidelity below the floor (mean cosine"), err
    rc, out, err = _tcc(*base, "-o", tmp_path / "refused", "--require-cos", f"{floor:.7f}")
    assert rc == 2 and "(--require-cos). Nothing written." in err and not (tmp_path / "refused").exists()
    rc, _, err = _tcc(*base[:5], "int8", "--calib", tmp_path / "t.json", "-o", tmp_path / "x", "--require-cos", "0.9")
    assert rc == 2 and "--require-cos judges the INT8 model on samples: build with --data" in err


def test_calibrate_says_its_fidelity_and_require_cos_writes_no_table(tmp_path):
    spec, data = tiny_spec_and_data(tmp_path, 16)
    base = ["calibrate", spec, "--data", data, "--no-compare", "--report-samples", "8"]
    rc, out, err = _tcc(*base, "-o", tmp_path / "a.json", "--fidelity-floor", "0.5")
    line = next(x for x in out.splitlines() if x.startswith("INT8 fidelity vs FP32 on 8 of 16 calibration samples"))
    assert rc == 0 and "WARNING: INT8 fidelity" not in err
    mean = float(line.split("mean ")[1].split(",")[0])
    rc, out, err = _tcc(*base, "-o", tmp_path / "b.json", "--require-cos", f"{mean + 1e-6:.7f}")
    assert rc == 2 and "Nothing written" in err and not (tmp_path / "b.json").exists()
    rc, out, err = _tcc(*base, "-o", tmp_path / "c.json", "--fidelity-floor", f"{mean + 1e-6:.7f}")
    assert rc == 0 and (tmp_path / "c.json").exists() and "WARNING: INT8 fidelity below the floor" in err
    rc, _, err = _tcc(*base, "-o", tmp_path / "d.json", "--require-cos", "1.5")
    assert rc == 2 and "--require-cos 1.5: a cosine in (0, 1]" in err
