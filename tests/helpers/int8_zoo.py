"""The zoo's INT8 builds at test sizes (shared by zoo/test_int8_ort.py and zoo/test_int8_host.py): every spec, its
small settings, and the recorded quality of its INT8 bundle (tests/int8_zoo.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.helpers import REPO, TESTS

RECORD = TESTS / "int8_zoo.json"
# small enough for CI, the structure of each net kept: every kind of integer op the zoo uses
SMALL = {
    "ddsnet": {"image_size": 64},
    "fastnet": {"image_size": 64},
    "densenet121": {"image_size": 64, "block_config": [2, 2, 2, 2]},
    "efficientnet_b0": {"image_size": 64},
    "googlenet": {"image_size": 64},
    "inception_v3": {"image_size": 80},
    "mobilenet_v2": {"image_size": 64},
    "resnet18": {"image_size": 64},
    "resnet34": {"image_size": 64},
    "shufflenet_v2_x1_0": {"image_size": 64},
    "squeezenet1_0": {"image_size": 64},
    "squeezenet1_1": {"image_size": 64},
    "vgg11": {"cfg": [[8], [16], [16, 16], [32, 32], [32, 32]], "hidden": 64},
    "vgg16": {"cfg": [[8, 8], [16, 16], [16, 16, 16], [32, 32, 32], [32, 32, 32]], "hidden": 64},
    # issue 17's specs; AlexNet's 6x6 adaptive pool is one ONNX AveragePool only at 224 (the features end at 6x6)
    "alexnet": {"hidden": 64},
    "convnext_tiny": {"image_size": 32},
    "efficientnet_v2_s": {"image_size": 64},
    "mnasnet1_0": {"image_size": 64},
    "mobilenet_v3_large": {"image_size": 64},
    "mobilenet_v3_small": {"image_size": 64},
    "regnet_x_400mf": {"image_size": 64},
    "regnet_y_400mf": {"image_size": 64, "depths": [1, 1, 2, 1]},
    "resnext50_32x4d": {"image_size": 64},
    "wide_resnet50_2": {"image_size": 64, "depths": [1, 1, 1, 1]},
    # issue 35's MobileViTs (matmul of two activations, slices, softmax and LayerNorm as float islands): 128, so
    # that every MobileViT block attends over several patches (at 64 the last has one, and its softmax folds away)
    "mobilevit_xxs": {"image_size": 128, "transformer_depths": [1, 1, 1]},
    "mobilevit_s": {"image_size": 128, "transformer_depths": [1, 1, 1]},
    # Swin (shifted windows: the relative position bias and the mask are constants added to the scores) at 224, so
    # that three stages shift; MaxViT (block and grid attention with relative position bias) at 96
    "swin_t": {"embed_dim": 24, "depths": [2, 2, 2, 2], "heads": [1, 2, 2, 4]},
    "maxvit_t": {
        "image_size": 96,
        "stem_channels": 8,
        "block_channels": [8, 16],
        "block_layers": [1, 2],
        "head_dim": 4,
        "partition_size": 3,
    },
    # ViT: the class token and the position embedding are constants broadcast over the batch
    "vit_b_16": {"image_size": 32, "patch_size": 8, "layers": 2, "heads": 4, "hidden": 48, "mlp_dim": 96},
    # MobileViTv2: group norm and the context's ReduceSum as float islands; 128 so that its softmax has patches
    "mobilevitv2_050": {"image_size": 128},
    # U-Net (dense output; transposed convs as the integer conv of their phases, skip concats)
    "unet": {"image_size": 64, "base": 8, "depth": 3},
    # DDS-U-Net (DDSNet's dense blocks as a U-Net's encoder, bilinear decoder steps)
    "dds_unet": {"image_size": 64},
}
# CI builds the specs that between them use every integer kind and structure of the zoo (lookups and gates, channel
# shuffle, ceil-mode pools, dense concats, residual adds and clamps, the paper models); the rest repeat those at more
# cost. `TCC_ZOO=all` (tools/int8_zoo_sweep.sh) runs every spec, as before a release.
# DDSNet, FastNet, MobileNetV2 and EfficientNet-B0 are in the golden set (tests/golden), whose CI run builds each
# INT8 for ort (every op within 1 LSB), TVM host and TFLite (bit-exact) and holds it to an INT8-vs-FP32 floor.
CI_SUBSET = ("densenet121", "googlenet", "shufflenet_v2_x1_0")
# INT8 in CI also builds MobileNetV3 (hardswish and hardsigmoid lookups, squeeze-excitation), RegNetY (grouped
# convs, projection shortcuts first, squeeze-excitation with a sigmoid gate; two fewer blocks than its 400MF depth)
# MobileViT-XXS (attention: matmul of two activations, slices, softmax and LayerNorm float islands), MaxViT
# (a constant relative position bias added to the scores) and ViT (a class token broadcast over the batch)
CI_INT8 = ("mobilenet_v3_small", "regnet_y_400mf", "mobilevit_xxs", "maxvit_t", "vit_b_16")
CALIBRATION = {"method": "kl", "calib_size": 8}
HELD_OUT = 4


def zoo_names(int8: bool = False) -> list[str]:
    """The specs a zoo test runs: all of them with TCC_ZOO=all, else CI's subset (INT8 tests: and CI_INT8)."""
    import os

    if os.environ.get("TCC_ZOO") == "all":
        return sorted(SMALL)
    return sorted(CI_SUBSET + (CI_INT8 if int8 else ()))


def spec_path(name: str) -> Path:
    return (
        REPO
        / "spec"
        / (f"{name}.yaml" if name in ("ddsnet", "fastnet", "unet", "dds_unet") else f"baselines/{name}.yaml")
    )


def inputs(shape, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def build_and_measure(name: str, target: str, tmp: Path, activation_bits: int = 8) -> tuple[dict, float]:
    """Build `name` INT8 for `target` (calibrated on 8 seeded N(0, 1) inputs, kl; `activation_bits` 16: W8A16, the
    TVM targets only) and measure the bundle's mean output cosine vs the PyTorch FP32 lowering on HELD_OUT other
    seeded inputs. Returns (manifest, cosine)."""
    import torch

    from tcc.backends import get_backend
    from tcc.build import build, build_settings
    from tcc.frontend import lower_spec

    fe = lower_spec(spec_path(name), SMALL[name])
    shape = fe.model.input_shape
    data = tmp / "calib.npy"
    np.save(data, inputs(shape, CALIBRATION["calib_size"], 0))
    result = build(
        spec_path(name),
        build_settings(
            target,
            precision="int8",
            overrides=SMALL[name],
            data=data,
            calibration=dict(CALIBRATION, activation_bits=activation_bits),
        ),
        tmp / "bundle",
    )
    x = inputs(shape, HELD_OUT, 1)
    backend = get_backend(result.manifest["backend"])
    got = backend.run(backend.load(result.out), x).reshape(len(x), -1).astype(np.float64)
    with torch.no_grad():
        want = fe.module(torch.from_numpy(x)).numpy().reshape(len(x), -1).astype(np.float64)
    cos = np.einsum("ij,ij->i", got, want) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    return result.manifest, float(cos.mean())


def recorded(name: str, target: str) -> dict:
    return json.loads(RECORD.read_text())[name][target]
