"""`tcc train`: a short run on two texture classes, one process and two (torchrun), resume, determinism, the losses
against the FastNet paper's formulas and tables, the options from files and flags, the checkpoint through
`tcc build --target ort`, and bad inputs (exit 2, a clear message, nothing written).

Runs are module-scoped (each trained once, a few seconds) and shared by the tests.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import operator
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from tcc.cli.main import main
from tcc.cli.parser import build_parser
from tcc.train.config import resolve
from tcc.train.data import find_split
from tcc.train.distributed import Processes
from tcc.train.losses import Loss, class_weights
from tcc.train.modules import GlobalBatchNorm, SampleDropout
from tcc.train.sample_rng import BatchKeys
from tcc.train.sampling import train_loader, train_sampler
from tests.helpers import REPO
from tests.helpers.train_data import texture_patches

SPEC = REPO / "tests" / "specs" / "train_tiny.yaml"
# 40 patches per class: 32 train + 8 val each; 8 steps of 8 per epoch
TRAIN = ["--epochs", "4", "--batch-size", "8", "--lr", "0.05", "--no-progress"]
# 1 vs 2 processes: the same computation in another summation order (BatchNorm statistics, the loss mean,
# gradient averaging): float32 rounding only. Measured max |difference| of any weight after 4 epochs (32 SGD
# steps, weights up to ~1 in size): 1.2e-7.
PROCESS_TOL = 1e-5


def train(*args) -> tuple[int, str, str]:
    """`tcc train ARGS` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["train", *map(str, args)])
    return rc, out.getvalue(), err.getvalue()


def trained(*args) -> str:
    rc, out, err = train(*args)
    assert rc == 0, err
    return out


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def log(run: Path) -> dict:
    return json.loads((run / "log.json").read_text())


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def data(work) -> Path:
    return texture_patches(work / "data", per_class=40, size=32)


@pytest.fixture(scope="module")
def one_process(work, data) -> Path:
    trained(SPEC, "--data", data, "-o", work / "run1", *TRAIN)
    return work / "run1"


@pytest.fixture(scope="module")
def two_processes(work, data) -> Path:
    rc = main(["train", str(SPEC), "--data", str(data), "-o", str(work / "run2"), *TRAIN, "--nproc", "2"])
    assert rc == 0
    return work / "run2"


# ---------------------------------------------------------------------------------------------------- training
def test_a_short_run_lowers_the_loss_and_beats_chance(one_process):
    epochs = log(one_process)["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert epochs[-1]["train_loss"] < 0.5 * epochs[0]["train_loss"]
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"]
    assert max(e["accuracy"] for e in epochs) >= 0.875  # chance: 0.5
    last = epochs[-1]
    assert np.sum(last["confusion_matrix"]) == 16 and set(last["per_class"]) == {"brick", "grass"}
    assert {"macro_precision", "macro_recall", "macro_f1", "lr"} <= set(last)
    assert (one_process / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in one_process.iterdir()) == [
        "best.pt",
        "config.yaml",
        "curves.png",
        "last.pt",
        "log.json",
    ]  # no temp files left


def test_best_checkpoint_is_a_state_dict_by_the_specs_names(one_process):
    best = weights(one_process / "best.pt")
    from tcc.lower.to_torch import to_torch
    from tcc.spec.loader import load_spec

    assert list(best) == list(to_torch(load_spec(SPEC).graph).state_dict())
    run = log(one_process)
    assert run["best"]["epoch"] == max(run["epochs"], key=lambda e: e["macro_f1"])["epoch"]


def test_same_data_and_seed_give_a_byte_identical_checkpoint(work, data, one_process):
    trained(SPEC, "--data", data, "-o", work / "again", *TRAIN)
    assert (work / "again" / "best.pt").read_bytes() == (one_process / "best.pt").read_bytes()


def test_resume_continues_to_the_uninterrupted_result(work, data, one_process):
    run = work / "resumed"
    out = trained(SPEC, "--data", data, "-o", run, *TRAIN, "--stop-after", "2")
    assert "stopped after epoch 2 of 4" in out and len(log(run)["epochs"]) == 2
    trained(SPEC, "--resume", run, "--no-progress")
    assert (run / "best.pt").read_bytes() == (one_process / "best.pt").read_bytes()
    resumed, whole = weights(run / "last.pt")["model"], weights(one_process / "last.pt")["model"]
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)
    strip = [{k: v for k, v in e.items() if k != "seconds"} for e in log(run)["epochs"]]
    assert strip == [{k: v for k, v in e.items() if k != "seconds"} for e in log(one_process)["epochs"]]


def test_resume_refuses_other_options_and_another_spec(write, one_process):
    rc, _, err = train(SPEC, "--resume", one_process, "--lr", "0.1")
    assert rc == 2 and "--lr: --resume continues" in err and "Traceback" not in err
    other = write("other.yaml", SPEC.read_text().replace("p: 0.2", "p: 0.3"))
    rc, _, err = train(other, "--resume", one_process)
    assert rc == 2 and "trained from another model" in err


# slow (tools/slow_tests.sh), not CI: on the AMD EPYC with AVX-512 (2026-11-25), with one thread per process (as
# xdist's workers run, OMP_NUM_THREADS=1) 1 and 2 processes end 4 epochs 9e-4 to 1.2e-3 apart (the batches of 8 and
# of 4 take different float conv kernels, and SGD amplifies the difference); with 2 threads, and on the Intel Xeon
# at stop 40, 1.8e-7. Open in issue 34's note: training's process-count invariance depends on the CPU's kernels.
@pytest.mark.slow
def test_two_processes_give_the_one_process_result(one_process, two_processes):
    one, two = weights(one_process / "last.pt")["model"], weights(two_processes / "last.pt")["model"]
    assert list(one) == list(two)
    diff = max(float((one[k].double() - two[k].double()).abs().max()) for k in one)
    print(f"1 vs 2 processes: max |weight difference| {diff:.3g}")
    assert diff <= PROCESS_TOL
    a, b = log(one_process), log(two_processes)
    assert b["processes"] == 2
    for x, y in zip(a["epochs"], b["epochs"]):
        assert x["confusion_matrix"] == y["confusion_matrix"]
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-5)
        assert x["val_loss"] == pytest.approx(y["val_loss"], abs=1e-5)


@pytest.mark.parametrize("n, batch, world", [(64, 8, 2), (61, 8, 2), (50, 12, 3), (11, 4, 2)])
def test_the_processes_batches_together_are_the_one_process_batch(n, batch, world):
    data = list(range(n))

    def batches(procs):
        sampler = train_sampler(data, procs, seed=7)
        sampler.set_epoch(3)
        return [b.tolist() for b in train_loader(data, sampler, batch, procs, workers=0)]

    single = batches(Processes())
    per_rank = [batches(Processes(rank=r, world=world)) for r in range(world)]
    assert len(single) == n // batch and all(len(b) == len(single) for b in per_rank)
    for k, whole in enumerate(single):
        assert sorted(functools.reduce(operator.iadd, (b[k] for b in per_rank), [])) == sorted(whole)


def test_global_batchnorm_is_batchnorm_over_the_whole_batch(tmp_path):
    """With one process the global batch is the local one: the same output, gradients and running statistics."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        for shape in ((6, 4, 5, 5), (6, 4)):
            torch.manual_seed(0)
            bn = torch.nn.BatchNorm2d(4) if len(shape) == 4 else torch.nn.BatchNorm1d(4)
            with torch.no_grad():
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)
            ours = GlobalBatchNorm(4)
            ours.load_state_dict(bn.state_dict())
            x = torch.randn(shape) * 3 + 1
            xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
            ya, yb = bn(xa), ours(xb)
            (ya * torch.arange(ya.numel()).view(ya.shape)).sum().backward()
            (yb * torch.arange(yb.numel()).view(yb.shape)).sum().backward()
            torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(ours.weight.grad, bn.weight.grad, rtol=1e-4, atol=1e-4)
            for k, v in bn.state_dict().items():
                torch.testing.assert_close(ours.state_dict()[k], v)
    finally:
        dist.destroy_process_group()


def test_dropout_masks_belong_to_samples_not_batches():
    keys = BatchKeys(seed=3)
    drop = SampleDropout(0.5, keys, stream=1).train()
    x = torch.ones(4, 8)
    keys.set(epoch=2, indices=torch.tensor([10, 11, 12, 13]))
    whole = drop(x)
    keys.set(epoch=2, indices=torch.tensor([12, 10]))
    assert torch.equal(drop(x[:2]), whole[[2, 0]])
    keys.set(epoch=3, indices=torch.tensor([10, 11, 12, 13]))
    assert not torch.equal(drop(x), whole)  # a new epoch, new masks
    assert set(whole.unique().tolist()) <= {0.0, 2.0}


def test_auxiliary_heads_train_and_are_saved(work, data):
    run = work / "aux"
    trained(
        SPEC,
        "--set",
        "aux=true",
        "--data",
        data,
        "-o",
        run,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--loss",
        "attloss",
        "--optimizer",
        "adam",
        "--no-progress",
    )
    assert {"aux.fc.weight", "aux.fc.bias"} <= set(weights(run / "best.pt"))


def test_training_starts_from_a_checkpoint(work, data, one_process):
    run = work / "finetuned"
    trained(
        SPEC,
        "--data",
        data,
        "-o",
        run,
        "--weights",
        one_process / "best.pt",
        "--epochs",
        "1",
        "--lr",
        "0.001",
        "--num-workers",
        "1",
        "--no-progress",
    )  # DataLoader workers: the same samples
    assert log(run)["epochs"][0]["accuracy"] >= 0.875


def test_best_checkpoint_builds_for_ort_and_predicts_the_same_class(work, data, one_process):
    from tcc.artifact import open_artifact
    from tcc.data import load_image
    from tcc.frontend import reference_module
    from tcc.spec.loader import load_spec

    out = work / "bundle"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert (
            main(["build", str(SPEC), "--target", "ort", "-o", str(out), "--weights", str(one_process / "best.pt")])
            == 0
        )
    model = load_spec(SPEC)
    module, _ = reference_module(model, one_process / "best.pt")
    images = sorted(data.glob("*/*_03?.png"))
    x = np.stack([load_image(p, model.preprocess) for p in images])
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = open_artifact(out).run(x)
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert (expected.argmax(1) == [0 if "brick" in p.name else 1 for p in images]).mean() >= 0.75


def test_a_given_split_or_a_seeded_stratified_one(tmp_path, data):
    split = find_split(data, 0.2, seed=0)
    assert not split.given and split.classes == ["brick", "grass"]
    assert split.counts(split.train) == [32, 32] and split.counts(split.val) == [8, 8]
    assert {p for p, _ in split.val} != {p for p, _ in find_split(data, 0.2, seed=1).val}
    assert split.val == find_split(data, 0.2, seed=0).val
    for part, files in (("train", split.train), ("val", split.val)):
        for path, label in files:
            target = tmp_path / part / split.classes[label] / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    given = find_split(tmp_path, 0.5, seed=3)
    assert given.given and [p.name for p, _ in given.val] == [p.name for p, _ in split.val]


# ---------------------------------------------------------------------------------------------------- losses
def paper_focal(p, y, alpha, gamma):
    """FastNet eq. 6, as printed: p the probability of the positive class, y in {0, 1}."""
    return -np.mean(alpha * y * (1 - p) ** gamma * np.log(p) + (1 - alpha) * (1 - y) * p**gamma * np.log(1 - p))


def paper_attloss(p, y, alpha, gamma):
    """FastNet eq. 7, as printed."""
    return -np.mean(
        alpha**y * y * (1 - p**gamma) * np.log(p) + alpha**y * (1 - y) * (1 - (1 - p) ** gamma) * np.log(1 - p)
    )


def paper_ce(p, y):
    """FastNet eq. 5."""
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def options(**values):
    return type("Options", (), {"class_weights": None, "alpha": None, **values})


def loss_of(name, logits, y, alpha=None, gamma=2.0, weights=None):
    c = options(loss=name, alpha=alpha, class_weights=weights)
    counts = np.bincount(y, minlength=logits.shape[1]).tolist()
    return float(
        Loss(name, class_weights(c, counts), gamma)(torch.tensor(logits, dtype=torch.float32), torch.tensor(y))
    )


PAPER = {"focal": paper_focal, "attloss": paper_attloss}


@pytest.mark.parametrize(
    "name, alpha, gamma",
    [
        ("focal", 0.25, 2.0),
        ("focal", 0.5, 0.5),
        ("focal", 0.9, 1.0),
        ("focal", 0.3, 0.0),
        ("attloss", 1.0, 2.0),
        ("attloss", 2.0, 0.5),
        ("attloss", 0.5, 1.0),
        ("attloss", 3.0, 10.0),
    ],
)
def test_binary_losses_are_the_papers_equations(name, alpha, gamma):
    """Two classes: softmax probability of class 1 as the papers' p; eq. 6 (focal), eq. 7 (attloss), eq. 5 (ce)."""
    rng = np.random.default_rng(1)
    logits, y = rng.normal(0, 2, (64, 2)), rng.integers(0, 2, 64)
    p = np.exp(logits[:, 1]) / np.exp(logits).sum(1)
    assert loss_of(name, logits, y, alpha, gamma) == pytest.approx(PAPER[name](p, y, alpha, gamma), rel=1e-5)
    assert loss_of("ce", logits, y) == pytest.approx(paper_ce(p, y), rel=1e-5)


def test_multiclass_losses_weigh_the_true_class_probability():
    rng = np.random.default_rng(3)
    logits, y = rng.normal(0, 2, (50, 3)), rng.integers(0, 3, 50)
    pt = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True))[np.arange(50), y]
    focal_w, att_w = np.array([0.75, 0.25, 0.25])[y], np.array([1.0, 2.0, 2.0])[y]
    assert loss_of("focal", logits, y, 0.25, 2.0) == pytest.approx(
        np.mean(-focal_w * (1 - pt) ** 2 * np.log(pt)), rel=1e-5
    )
    assert loss_of("attloss", logits, y, 2.0, 3.0) == pytest.approx(
        np.mean(-att_w * (1 - pt**3) * np.log(pt)), rel=1e-5
    )
    counts = np.bincount(y, minlength=3)
    auto = 50 / (3 * counts)
    expected = np.mean(auto[y] * F.cross_entropy(torch.tensor(logits), torch.tensor(y), reduction="none").numpy())
    assert loss_of("ce", logits, y, weights="auto") == pytest.approx(expected, rel=1e-5)


GAMMAS = [0.1, 0.2, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
TABLE_II = [1.2, 1.4, 2.2, 5, 25, 125, 625, 3125, 15625, 78125, 390625, 1953125, 9765625]
TABLE_III = [6.39, 6.21, 5.71, 5, 3.95, 3.23, 2.73, 2.37, 2.10, 1.90, 1.75, 1.63, 1.53]


def _weight(name: str, p: float, gamma: float) -> float:
    """The loss's factor on -log p for a positive sample predicted with probability p (alpha = 1)."""
    logits = np.array([[0.0, math.log(p / (1 - p))]])
    return loss_of(name, logits, np.array([1]), [1.0, 1.0], gamma) / -math.log(p)


@pytest.mark.parametrize("gamma, table_ii, table_iii", list(zip(GAMMAS, TABLE_II, TABLE_III)))
def test_weight_ratios_of_the_papers_tables(gamma, table_ii, table_iii):
    """Tables II and III: the weight of an indistinguishable sample (p = 0.5) over a distinguishable one (0.9)."""
    focal = _weight("focal", 0.5, gamma) / _weight("focal", 0.9, gamma)
    assert focal == pytest.approx(5**gamma, rel=1e-4)  # (1 - 0.5)^g / (1 - 0.9)^g
    assert focal == pytest.approx(table_ii, rel=0.03)  # as printed: 1.2 for 1.175
    attloss = _weight("attloss", 0.5, gamma) / _weight("attloss", 0.9, gamma)
    assert attloss == pytest.approx((1 - 0.5**gamma) / (1 - 0.9**gamma), rel=1e-4)
    assert attloss == pytest.approx(table_iii, abs=0.005)


# ---------------------------------------------------------------------------------------------------- options
def options_of(*argv):
    args = build_parser().parse_args(["train", *map(str, argv)])
    return resolve(args.spec, args)


def test_options_from_the_spec_a_config_file_and_flags(write, data):
    spec = write(
        "m.yaml",
        SPEC.read_text().replace("layers:", "train:\n  epochs: 7\n  lr: 0.2\n  loss: focal\n  data: data\nlayers:", 1),
    )
    config = write("c.yaml", "lr: 0.3\nbatch_size: 4\nset: {image_size: 16}\n")
    c = options_of(spec, "--config", config, "--batch-size", "2", "--set", "num_classes=2")
    assert (c.epochs, c.lr, c.batch_size, c.loss, c.alpha) == (7, 0.3, 2, "focal", 0.25)
    assert c.set == {"image_size": 16, "num_classes": 2}
    assert c.data == str(spec.parent / "data")  # relative to the spec
    assert c.augment == ["hflip", "vflip", "rot90"] and options_of(spec, "--augment", "none").augment == []


def test_config_yaml_repeats_the_run(one_process):
    recorded = options_of(SPEC, "--config", one_process / "config.yaml")
    again = options_of(SPEC, "--data", one_process.parent / "data", *TRAIN)
    assert recorded.result_options() == again.result_options()


def _position(path: Path, needle: str) -> str:
    text = path.read_text()
    offset = text.index(needle)
    return f"{path}:{text.count(chr(10), 0, offset) + 1}:{offset - text.rfind(chr(10), 0, offset)}"


def test_a_typo_in_the_train_section_points_at_it(write, data, tmp_path):
    spec = write("m.yaml", SPEC.read_text().replace("layers:", "train:\n  epoch: 3\nlayers:", 1))
    rc, _, err = train(spec, "--data", data, "-o", tmp_path / "run")
    assert rc == 2 and err.startswith(_position(spec, "epoch: 3") + ": unknown key 'epoch' (did you mean 'epochs'?)")
    assert main(["check", str(spec)]) == 2  # the spec's own schema knows the section
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "text, needle, message",
    [
        ("loss: foca\n", "foca", "loss: 'foca' is not one of ['ce', 'focal', 'attloss'] (did you mean 'focal'?)"),
        ("batch_size: 0\n", "0", "batch_size: 0 is less than the minimum of 1"),
        ("loss: focal\nalpha: [1, 2, 3]\n", "[1", "alpha: 3 weights for 2 classes (brick, grass)"),
        ("class_weights: [1, 2]\nloss: attloss\n", "[1", "class_weights: class_weights are for ce"),
    ],
)
def test_config_file_errors_point_at_the_value(write, data, tmp_path, text, needle, message):
    config = write("c.yaml", text)
    rc, _, err = train(SPEC, "--data", data, "--config", config, "-o", tmp_path / "run")
    assert rc == 2 and err.startswith(f"{_position(config, needle)}: {message}"), err


# ---------------------------------------------------------------------------------------------------- bad input
def _bad_data(root: Path, case: str) -> Path:
    texture_patches(root, per_class=3, size=16)
    if case == "empty":
        for p in (root / "grass").iterdir():
            p.unlink()
    elif case == "unreadable":
        (root / "grass" / "grass_001.png").write_bytes(b"not a png")
    elif case == "one class":
        shutil.rmtree(root / "grass")
    elif case == "three classes":
        texture_patches(root, textures=("gravel",), per_class=3, size=16)
    return root


@pytest.mark.parametrize(
    "case, extra, message",
    [
        ("empty", [], "grass: empty class folder"),
        ("unreadable", [], "grass_001.png: cannot read image"),
        ("one class", [], "1 class folder(s) (brick)"),
        ("three classes", [], "holds 3 classes (brick, grass, gravel); pass --set num_classes=3"),
        (
            "ok",
            ["--loss", "foca"],
            "--loss foca: 'foca' is not one of ['ce', 'focal', 'attloss'] (did you mean 'focal'?)",
        ),
        ("ok", ["--batch-size", "3", "--nproc", "2"], "--batch-size: 3 does not split evenly over 2 processes"),
        ("ok", ["--batch-size", "64"], "64 is more than the 4 training images"),
        ("ok", ["--weights", "missing.pt"], "missing.pt: no such weights file"),
        ("ok", ["--stop-after", "0"], "--stop-after 0: an epoch from 1 to 10"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, case, extra, message):
    data = _bad_data(tmp_path / "data", case)
    rc, out, err = train(
        SPEC, "--set", "image_size=16", "--data", data, "-o", tmp_path / "run", "--batch-size", "2", *extra
    )
    assert rc == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_an_existing_run_is_not_overwritten(one_process, data):
    rc, _, err = train(SPEC, "--data", data, "-o", one_process)
    assert rc == 2 and "holds a run: --resume" in err
    rc, _, err = train(SPEC, "--resume", one_process.parent / "nothing")
    assert rc == 2 and "nothing to resume" in err
