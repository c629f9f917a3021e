"""Dense outputs (tcc.dense): how an INT8 segmenter's mask agrees with its FP32 model's, per pixel and per class
(Dice), against numbers counted by hand and against scikit-learn's F1 (Dice is the F1 score of a class's pixels)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tcc.dense import MaskAgreement, class_masks, dice


def test_dice_by_hand():
    ref = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    got = np.array([[0, 1, 1, 1], [0, 2, 0, 1]])
    # class 0: ref 3 pixels, got 3, both 2 -> 4/6; class 1: ref 3, got 4, both 3 -> 6/7; class 2: 2, 1, 1 -> 2/3
    assert dice(ref, got, 4) == [round(4 / 6, 6), round(6 / 7, 6), round(2 / 3, 6), None]


def test_dice_is_f1_of_each_class():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 5, (3, 40, 50))
    got = np.where(rng.random(ref.shape) < 0.8, ref, rng.integers(0, 5, ref.shape))
    expected = f1_score(ref.ravel(), got.ravel(), average=None, labels=range(5))
    assert np.allclose(dice(ref, got, 5), expected, atol=1e-6)


def test_agreement_of_two_outputs():
    rng = np.random.default_rng(1)
    fp32 = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    int8 = fp32 + rng.normal(0, 0.3, fp32.shape).astype(np.float32)
    a = MaskAgreement.measure(fp32, int8)
    same = class_masks(fp32) == class_masks(int8)
    assert a.pixels == pytest.approx(same.mean(), abs=1e-6) and 0.5 < a.pixels < 1
    assert len(a.dice) == 3 and a.worst() == min(enumerate(a.dice), key=lambda cd: cd[1])
    perfect = MaskAgreement.measure(fp32, fp32)
    assert perfect.pixels == 1 and perfect.dice == (1.0, 1.0, 1.0)
    single = MaskAgreement.measure(fp32[:, :1], -fp32[:, :1])  # one logit: foreground above 0, every pixel flips
    assert single.pixels == 0 and single.dice == (0.0, 0.0)
