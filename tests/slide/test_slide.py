"""`tcc slide`: FastNet's tissue mask and weight accumulation (eq. 1-4) against hand-checked numbers, a pyramidal TIFF
against its PNG twin (OpenSlide and the tifffile fallback), Dask against one process, an ORT bundle against the
PyTorch lowering, and bad inputs as clean errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.color
import skimage.data
import tifffile
from PIL import Image

from tcc.cli.main import main
from tcc.errors import DataError
from tcc.slide import grid as gridlib
from tcc.slide.mask import saturation, tissue_mask
from tcc.slide.reader import open_image

TINY_SPEC = """\
kind: model
name: tiny_slide
params: {num_classes: 2}
labels: [normal, tumour]
input:
  shape: [3, 32, 32]
  preprocess: {resize: [32, 32], color: RGB, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
layers:
  - {id: conv, op: conv2d, out: 8, kernel: 3, stride: 2, padding: 1}
  - {id: bn, op: batchnorm}
  - {op: relu}
  - {op: global_avgpool}
  - {op: flatten}
  - {id: fc, op: linear, out: "${num_classes}"}
"""
PATCH = "64"  # 64-pixel patches (resized to the model's 32 x 32) keep every image here small
# PyTorch's threads for every run compared bit for bit: oneDNN picks its float32 convolution algorithm by thread
# count, so a one-process run and a Dask worker agree exactly when they use the same number
THREADS = ["--threads", "1"]


# ---------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slide")


@pytest.fixture(scope="module")
def spec(work) -> Path:
    path = work / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


def _blocky_level2(seed: int = 0) -> np.ndarray:
    """125 x 93 blocks, each one colour: grey-white glass around two stained blobs, one reaching the right edge.
    Scaled up by 2 and 4 (pixel repetition) it is levels 1 and 0 of a pyramid whose every level has the same
    colour histogram up to a factor, hence the same Otsu thresholds and a level-2 mask that is exactly the
    level-0 mask at 1/4: the TIFF (mask on level 2) and its PNG twin (mask on level 0) keep the same patches."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:93, :125]
    tissue = (((yy - 40) / 30) ** 2 + ((xx - 45) / 35) ** 2 < 1) | (((yy - 62) / 25) ** 2 + ((xx - 104) / 30) ** 2 < 1)
    glass = rng.integers(243, 253, (93, 125, 1)) + rng.integers(0, 3, (93, 125, 3))
    stain = np.where(rng.random((93, 125, 1)) < 0.5, [180, 110, 165], [130, 70, 150]) + rng.integers(
        -20, 20, (93, 125, 3)
    )
    return np.where(tissue[..., None], stain, glass).astype(np.uint8)


def _write_pyramid(path: Path, levels: list[np.ndarray], subifds: bool) -> Path:
    """A tiled, deflate-compressed pyramidal TIFF: levels as top-level pages (OpenSlide's generic TIFF) or as
    SubIFDs of level 0 (OpenSlide sees level 0 only, so tcc reads it with tifffile)."""
    with tifffile.TiffWriter(path) as tw:
        for k, level in enumerate(levels):
            extra = {"subifds": len(levels) - 1} if subifds and k == 0 else {}
            tw.write(level, tile=(64, 64), compression="zlib", photometric="rgb", subfiletype=1 if k else 0, **extra)
    return path


@pytest.fixture(scope="module")
def images(work) -> dict[str, Path]:
    level2 = _blocky_level2()
    levels = [np.repeat(np.repeat(level2, f, 0), f, 1) for f in (4, 2, 1)]
    paths = {"ihc": work / "ihc.png", "blocky": work / "blocky.png"}
    Image.fromarray(skimage.data.immunohistochemistry()).save(paths["ihc"])
    Image.fromarray(levels[0]).save(paths["blocky"])
    paths["pyramid"] = _write_pyramid(work / "blocky_pyramid.tiff", levels, subifds=False)
    paths["subifds"] = _write_pyramid(work / "blocky_subifds.tiff", levels, subifds=True)
    paths["stripped"] = work / "blocky_stripped.tiff"  # one level in strips: OpenSlide refuses it, tifffile reads it
    tifffile.imwrite(paths["stripped"], levels[0], rowsperstrip=48, compression="zlib", photometric="rgb")
    return paths


def slide(spec_or_none, image, out: Path, *extra) -> dict:
    """Run `tcc slide` in this process (PyTorch threads restored after); the image's patches.json."""
    head = [str(spec_or_none)] if spec_or_none else []
    images = [str(p) for p in (image if isinstance(image, list) else [image])]
    assert (
        main(
            [
                "slide",
                *head,
                "--image",
                *images,
                "--patch-size",
                PATCH,
                "--batch-size",
                "8",
                "-o",
                str(out),
                "--no-progress",
                *extra,
            ]
        )
        == 0
    )
    return json.loads((out / "patches.json").read_text()) if len(images) == 1 else None


@pytest.fixture(scope="module")
def single(spec, images, work) -> dict[str, dict]:
    """One-process runs of the tiny model (seeded weights) on each image."""
    return {name: slide(spec, images[name], work / f"single-{name}", *THREADS) for name in ("ihc", "blocky", "pyramid")}


# ---------------------------------------------------------------------------------------------------- the mask
def _otsu_brute_force(values: np.ndarray) -> int:
    """Otsu by its definition: the t maximising the between-class variance of {<= t} and {> t}."""
    p = np.bincount(values.ravel(), minlength=256) / values.size
    best, best_t = -1.0, 0
    for t in range(255):
        w0, w1 = p[: t + 1].sum(), p[t + 1 :].sum()
        if w0 == 0 or w1 == 0:
            continue
        m0 = (np.arange(t + 1) * p[: t + 1]).sum() / w0
        m1 = (np.arange(t + 1, 256) * p[t + 1 :]).sum() / w1
        if w0 * w1 * (m0 - m1) ** 2 > best:
            best, best_t = w0 * w1 * (m0 - m1) ** 2, t
    return best_t


def test_tissue_mask_on_ihc_matches_independent_numbers():
    """skimage's immunohistochemistry sample (512 x 512). The expected numbers were checked independently: the
    thresholds by the brute-force Otsu below (and skimage.color.rgb2hsv's float saturation, whose Otsu threshold
    0.2637 is 67.2 / 255), the mask by numpy comparisons written out here, the patch count by summing the mask
    over 64 x 64 blocks (np.reshape) and counting blocks with 2 * sum >= 4096."""
    img = skimage.data.immunohistochemistry()
    mask, t = tissue_mask(img)
    assert (t.red, t.green, t.blue, t.saturation) == (180, 166, 150, 67)
    channels = (img[..., 0], img[..., 1], img[..., 2], saturation(img))
    assert [_otsu_brute_force(c) for c in channels] == [180, 166, 150, 67]
    s = np.rint(255 * skimage.color.rgb2hsv(img)[..., 1])
    assert np.abs(s - saturation(img)).max() <= 1  # only exact .5 cases round differently
    by_hand = (
        (img[..., 0] <= 180)
        & (img[..., 1] <= 166)
        & (img[..., 2] <= 150)
        & (saturation(img) > 67)
        & (img >= 50).all(-1)
        & (img <= 240).all(-1)
    )
    assert np.array_equal(mask, by_hand)
    assert mask.sum() == 91_058  # 34.74 % of the image is tissue
    grid = gridlib.bounding_grid(mask, (1.0, 1.0), 64, (512, 512))
    assert (grid.min_x, grid.min_y, grid.max_x, grid.max_y, grid.rows, grid.cols) == (0, 0, 495, 511, 8, 8)
    weights = gridlib.accumulate(mask, (1.0, 1.0), grid)
    blocks = np.zeros((512, 512), bool)
    blocks[:, :496] = mask[:, :496]
    assert np.array_equal(weights, blocks.reshape(8, 64, 8, 64).sum(axis=(1, 3)))
    assert gridlib.keep(weights, 64).sum() == 23  # 23 of the 8 x 8 = 64 patches are kept


def test_ihc_through_tcc_slide(single, work):
    doc = single["ihc"]
    assert doc["mask"]["level"] == 0 and doc["mask"]["thresholds"] == {
        "red": 180,
        "green": 166,
        "blue": 150,
        "saturation": 67,
    }
    assert doc["mask"]["tissue_fraction"] == round(91_058 / 512**2, 6)
    assert (doc["grid"]["rows"], doc["grid"]["cols"], doc["kept"], len(doc["patches"])) == (8, 8, 23, 23)
    assert doc["positive_class"] == {"index": 1, "label": "tumour"}
    for p in doc["patches"]:
        assert p["mask_fraction"] >= 0.5 and (p["x"], p["y"]) == (64 * p["j"], 64 * p["i"])
        assert p["probability"] == p["probabilities"][1] and abs(sum(p["probabilities"]) - 1) < 1e-12
    out = work / "single-ihc"
    assert Image.open(out / "mask.png").size == (512, 512) and Image.open(out / "heatmap.png").format == "PNG"
    assert np.array_equal(np.asarray(Image.open(out / "mask.png")), tissue_mask(skimage.data.immunohistochemistry())[0])


# ---------------------------------------------------------------------------------------------------- eq. 1-4
def _rect(shape, top, bottom, left, right) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : bottom + 1, left : right + 1] = True
    return mask


def test_grid_on_a_rectangle_by_hand():
    # rows 10..73 and columns 20..151, WIDTH 32: I = 63 // 32 + 1 = 2, J = 131 // 32 + 1 = 5; columns 0-3 of the
    # grid (x 20..147) lie inside, column 4 (x 148..179) holds 4 of its 32 columns: W = 4 * 32 = 128 < 512
    mask = _rect((200, 300), 10, 73, 20, 151)
    grid = gridlib.bounding_grid(mask, (1.0, 1.0), 32, (300, 200))
    assert (grid.min_x, grid.min_y, grid.max_x, grid.max_y, grid.rows, grid.cols) == (20, 10, 151, 73, 2, 5)
    weights = gridlib.accumulate(mask, (1.0, 1.0), grid)
    assert weights.tolist() == [[1024, 1024, 1024, 1024, 128]] * 2
    assert gridlib.keep(weights, 32).tolist() == [[True] * 4 + [False]] * 2
    assert grid.origin(1, 4) == (148, 42)


def test_exactly_half_is_kept_one_pixel_less_is_not():
    # columns 0..47 at WIDTH 32: patch column 1 (x 32..63) has 16 of 32 columns set, W = 512 = 32^2 / 2: kept
    half = _rect((32, 64), 0, 31, 0, 47)
    grid = gridlib.bounding_grid(half, (1.0, 1.0), 32, (64, 32))
    assert (grid.rows, grid.cols) == (1, 2)
    weights = gridlib.accumulate(half, (1.0, 1.0), grid)
    assert weights.tolist() == [[1024, 512]] and gridlib.keep(weights, 32).tolist() == [[True, True]]
    half[31, 47] = False  # W = 511
    weights = gridlib.accumulate(half, (1.0, 1.0), grid)
    assert weights.tolist() == [[1024, 511]] and gridlib.keep(weights, 32).tolist() == [[True, False]]


def test_padding_past_the_edge_counts_nothing():
    # a 40 x 40 image whose mask is all set: I = J = 39 // 32 + 1 = 2; patch (1, 1) has 8 x 8 pixels inside
    mask = np.ones((40, 40), bool)
    grid = gridlib.bounding_grid(mask, (1.0, 1.0), 32, (40, 40))
    assert gridlib.accumulate(mask, (1.0, 1.0), grid).tolist() == [[1024, 256], [256, 64]]


def test_downsampled_mask_scales_to_level_0():
    # a mask at downsample 2: pixels (0..1, 0..1) set = level-0 square 0..3; WIDTH 3, I = J = 3 // 3 + 1 = 2.
    # Patch (0, 0) is level-0 [0, 3)^2, all set: W = 9, kept. Patch (0, 1) is x in [3, 6): only x = 3 is set,
    # for y in [0, 3): W = 3 < 4.5, dropped. Patch (1, 1): the single level-0 pixel (3, 3): W = 1.
    mask = _rect((3, 3), 0, 1, 0, 1)
    grid = gridlib.bounding_grid(mask, (2.0, 2.0), 3, (6, 6))
    assert (grid.max_x, grid.max_y, grid.rows, grid.cols) == (3, 3, 2, 2)
    assert gridlib.accumulate(mask, (2.0, 2.0), grid).tolist() == [[9, 3], [3, 1]]
    # and any mask equals its pixel-repeated level-0 twin, patch by patch
    coarse = np.random.default_rng(1).random((23, 31)) < 0.4
    fine = np.repeat(np.repeat(coarse, 4, 0), 4, 1)
    g4 = gridlib.bounding_grid(coarse, (4.0, 4.0), 20, (124, 92))
    g1 = gridlib.bounding_grid(fine, (1.0, 1.0), 20, (124, 92))
    assert g4 == g1
    assert np.array_equal(gridlib.accumulate(coarse, (4.0, 4.0), g4), gridlib.accumulate(fine, (1.0, 1.0), g1))


# ---------------------------------------------------------------------------------------------------- TIFF = PNG
@pytest.mark.parametrize(
    "name, reader, level, mask_size",
    [
        ("pyramid", "openslide", 2, [125, 93]),
        ("subifds", "tifffile", 2, [125, 93]),
        ("stripped", "tifffile", 0, [500, 372]),
    ],
)
def test_tiff_keeps_the_patches_of_its_png_twin(single, spec, images, work, name, reader, level, mask_size):
    png = single["blocky"]
    tiff = single["pyramid"] if name == "pyramid" else slide(spec, images[name], work / f"single-{name}", *THREADS)
    assert open_image(images[name]).kind == reader
    assert (tiff["reader"], tiff["mask"]["level"], tiff["mask"]["size"]) == (reader, level, mask_size)
    assert (png["reader"], png["mask"]["level"], png["mask"]["size"]) == ("pillow", 0, [500, 372])
    assert tiff["mask"]["thresholds"] == png["mask"]["thresholds"]
    assert tiff["grid"] == png["grid"] and png["grid"]["cols"] * 64 > 500  # the grid reaches past the edge
    assert png["kept"] > 10 and tiff["patches"] == png["patches"]  # coordinates, mask fractions, probabilities


def test_tiff_regions_equal_the_png_pixels_padding_white(images):
    png = open_image(images["blocky"])
    for name in ("pyramid", "subifds", "stripped"):
        tiff = open_image(images[name])
        assert tiff.level_dimensions == [(500, 372), (250, 186), (125, 93)][: 1 if name == "stripped" else 3]
        for x, y, w, h in [(0, 0, 500, 372), (470, 350, 64, 64), (-10, -5, 30, 20), (130, 70, 200, 97)]:
            assert np.array_equal(tiff.read_region(x, y, w, h), png.read_region(x, y, w, h))
        assert (tiff.read_region(490, 360, 20, 20)[12:, :] == 255).all()
        if name != "stripped":
            assert np.array_equal(tiff.read_level(2), _blocky_level2())


# ---------------------------------------------------------------------------------------------------- Dask
def test_dask_local_cluster_equals_one_process(single, spec, images, work):
    out = work / "dask"
    slide(spec, [images["ihc"], images["blocky"], images["pyramid"]], out, "--workers", "2", *THREADS)
    for name, stem in (("ihc", "ihc"), ("blocky", "blocky"), ("pyramid", "blocky_pyramid")):
        assert json.loads((out / stem / "patches.json").read_text()) == single[name]


def test_a_worker_lost_while_the_local_cluster_starts_is_survived(single, spec, images, work, monkeypatch, capsys):
    """The first worker process dies while the cluster starts ("Nanny failed to start" from distributed): the
    cluster is started again, one line says so, and the run's result is the single process's."""
    import functools

    import distributed

    monkeypatch.setenv("TCC_TEST_KILL_MARK", str(work / "killed-once"))
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # the workers import the preload by name
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    monkeypatch.setattr(
        distributed, "LocalCluster", functools.partial(distributed.LocalCluster, preload=["dask_kill_first_worker"])
    )
    capsys.readouterr()
    doc = slide(spec, images["ihc"], work / "dask-lost", "--workers", "2", *THREADS)
    err = capsys.readouterr().err
    assert (work / "killed-once").exists()
    assert doc == single["ihc"]
    lines = [line for line in err.splitlines() if "local cluster" in line]
    assert len(lines) == 1 and "worker was lost while the local cluster started" in lines[0], err
    assert "Traceback" not in err


def test_existing_scheduler_equals_one_process(single, spec, images, work):
    """--scheduler ADDRESS: a cluster started elsewhere (here in this process, worker threads)."""
    import logging

    import torch
    from distributed import LocalCluster

    before = torch.get_num_threads()  # a worker sets --threads for its process, here the test's own
    try:
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None, silence_logs=logging.ERROR
        ) as cluster:
            doc = slide(spec, images["pyramid"], work / "scheduler", "--scheduler", cluster.scheduler_address, *THREADS)
    finally:
        torch.set_num_threads(before)
    assert doc == single["pyramid"]


# ---------------------------------------------------------------------------------------------------- ORT bundle
def test_ort_bundle_keeps_the_same_patches_within_float_tolerance(single, spec, images, work):
    bundle = work / "tiny-ort"
    assert main(["build", str(spec), "--target", "ort", "-o", str(bundle)]) == 0  # seed 0, as the PyTorch runs
    doc = slide(None, images["ihc"], work / "ort-ihc", "--artifact", str(bundle))
    ref = single["ihc"]
    assert doc["model"]["kind"] == "artifact" and doc["model"]["target"] == "ort"
    assert [(p["i"], p["j"], p["x"], p["y"], p["mask_fraction"]) for p in doc["patches"]] == [
        (p["i"], p["j"], p["x"], p["y"], p["mask_fraction"]) for p in ref["patches"]
    ]
    # FP32 backend vs PyTorch is 1e-5 x max(1, |logit|) on the logits (DESIGN.md); a softmax moves by at most half
    # the largest logit difference, so 1e-5 bounds the probabilities here (logits of order 1)
    diff = max(
        abs(a - b)
        for p, q in zip(doc["patches"], ref["patches"])
        for a, b in zip(p["probabilities"], q["probabilities"])
    )
    assert diff <= 1e-5, diff


# ---------------------------------------------------------------------------------------------------- bad inputs
@pytest.fixture(scope="module")
def bad_files(work) -> dict[str, Path]:
    d = work / "bad"
    d.mkdir()
    (d / "empty").mkdir()
    files = {"png": d / "broken.png", "tiff": d / "broken.tiff", "txt": d / "notes.txt", "file": d / "a-file"}
    files["png"].write_bytes(b"\x89PNG not really")
    files["tiff"].write_bytes(b"II*\x00garbage")
    files["txt"].write_text("hello")
    files["file"].write_text("x")
    files["empty"] = d / "empty"
    return files


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image", "{work}/missing.png"], "missing.png: no such image file"),
        (["--image", "{bad}/broken.png"], "broken.png: cannot read image"),
        (["--image", "{bad}/broken.tiff"], "broken.tiff: not a readable TIFF"),
        (["--image", "{bad}/notes.txt"], "notes.txt: not an image tcc slide reads"),
        (["--image", "{bad}/empty"], "empty: no images in this folder"),
        (["--image", "{work}/ihc.png", "--max-pixels", "100000"], "above --max-pixels 100,000"),
        (["--image", "{work}/blocky_pyramid.tiff", "--max-pixels", "10000"], "convert it to a tiled pyramidal TIFF"),
        (["--image", "{work}/ihc.png", "--positive-class", "cancer"], "not one of the model's classes: 0 (normal)"),
        (["--image", "{work}/ihc.png", "--positive-class", "2"], "--positive-class '2'"),
        (["--image", "{work}/ihc.png", "--mask-level", "3"], "image has levels 0..0"),
        (["--image", "{work}/ihc.png", "--patch-size", "0"], "--patch-size 0: must be at least 1"),
        (["--image", "{work}/ihc.png", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers starts"),
        (["--image", "{work}/ihc.png", "-o", "{bad}/a-file"], "exists and is not a directory"),
        (["--image", "{work}/ihc.png", "--weights", "{work}/missing.pt"], "missing.pt"),
    ],
)
def test_bad_inputs_exit_2_with_a_clear_message(spec, images, bad_files, work, capsys, args, message):
    out = work / "bad-out"
    args = [a.format(work=work, bad=work / "bad") for a in args]
    argv = (
        ["slide", str(spec), "-o", str(out), "--no-progress", *args]
        if "-o" not in args
        else ["slide", str(spec), "--no-progress", *args]
    )
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_model_choice_errors(images, work, capsys):
    assert main(["slide", "--image", str(images["ihc"]), "-o", str(work / "x")]) == 2
    assert "needs a SPEC" in capsys.readouterr().err
    assert (
        main(["slide", "spec.yaml", "--artifact", str(work), "--weights", "w.pt", "--image", str(images["ihc"])]) == 2
    )
    assert "drop SPEC, --weights" in capsys.readouterr().err


def test_failure_mid_run_leaves_no_files(spec, images, work, monkeypatch):
    from tcc.slide import pipeline

    calls = []

    def failing(*args):
        calls.append(args)
        if len(calls) == 2:
            raise DataError("worker lost")
        return np.full((len(args[3]), 2), 0.5)

    monkeypatch.setattr(pipeline, "predict_batch", failing)
    out = work / "failed"
    assert (
        main(
            [
                "slide",
                str(spec),
                "--image",
                str(images["ihc"]),
                "--patch-size",
                PATCH,
                "--batch-size",
                "8",
                "-o",
                str(out),
                "--no-progress",
            ]
        )
        == 2
    )
    assert len(calls) == 2 and not out.exists()  # created only with the first outputs
