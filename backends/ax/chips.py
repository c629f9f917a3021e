"""Axera's NPUs as plain data: which toolchain builds for each chip, its command, what it accepts, and where the
docs say so. Nothing here imports a backend; backends/ax/backend.py, the op checker (ax/ops.py) and the config
writers (ax/config.py) read it.

    AX620A / AX620U  Pulsar v1 (neuwizard) -> .joint     `pulsar build ... --target_hardware AX620`
    AX620E family    Pulsar2               -> .axmodel   `pulsar2 build ... --target_hardware AX620E`
      (AX630C, AX620Q)
    AX650 / M76H     Pulsar2               -> .axmodel   `pulsar2 build ... --target_hardware AX650`

Sources (public, read through the project's search tool):
  [pulsar-docs]      AXERA-TECH/pulsar-docs (Chinese; the only Pulsar v1 repository with the op list):
                     source/appendix/op_support_list.rst, source/user_guides_advanced/advanced_guides.rst,
                     source/user_guides_quick/quick_start.rst, source/appendix/precision_debug_guides.rst
  [pulsar-docs-en]   AXERA-TECH/pulsar-docs-en: source/test_configs/config.rst, source/user_guides_quick/...
  [pulsar2-docs-en]  AXERA-TECH/pulsar2-docs-en: source/user_guides_config/config.md,
                     source/appendix/op_support_list_ax620e.md, op_support_list_ax650.md,
                     source/user_guides_advanced/advanced_build_guides.md, source/user_guides_quick/quick_start_*.md
  [QAT.axera]        AXERA-TECH/QAT.axera: utils/ax_quantizer.py (the QDQ form Pulsar2 takes), pulsar2/README.md
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Toolchain:
    name: str  # "pulsar" | "pulsar2"
    docker_load: str
    docker_run: str
    artifact: str  # what the toolchain writes, relative to the kit
    config_file: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Chip:
    """One `--target` of the AX backend."""

    name: str  # the tcc target
    hardware: str  # the toolchain's --target_hardware value
    description: str
    toolchain: Toolchain
    ops: str  # the op table in tcc.backends.ax.ops.OP_TABLES
    rules: str  # tcc.quant.table.rules.RULES name
    opsets: tuple[int, int]  # ONNX opsets the toolchain takes for this chip
    npu_modes: tuple[str, ...]  # first: tcc's default
    quant_onnx: bool = False  # takes a pre-quantized QDQ ONNX (model_type QuantONNX) with tcc's own scales
    calibration_methods: tuple[str, ...] = ()  # what its config can select (Pulsar v1: none)
    min_cosine: float = 0.98  # the docs' "investigate below" output cosine
    notes: tuple[str, ...] = field(default=())


PULSAR = Toolchain(
    name="pulsar",
    docker_load="sudo docker load -i axera_neuwizard_v0.6.1.14.tar.gz   # from Axera (`sudo ./install.sh` in the "
    "release tarball)",
    docker_run="sudo docker run -it --net host --rm --shm-size 32g -v $PWD:/data axera/neuwizard:0.6.1.14",
    artifact="output/model.joint",
    config_file="config.prototxt",
    sources=(
        "[pulsar-docs] source/user_guides_quick/quick_start.rst",
        "[pulsar-docs-en] source/test_configs/config.rst",
    ),
)
PULSAR2 = Toolchain(
    name="pulsar2",
    docker_load="sudo docker load -i ax_pulsar2_${version}.tar.gz   # https://huggingface.co/AXERA-TECH/Pulsar2",
    docker_run="sudo docker run -it --net host --rm -v $PWD:/data pulsar2:${version}",
    artifact="output/compiled.axmodel",
    config_file="config.json",
    sources=(
        "[pulsar2-docs-en] source/user_guides_quick/quick_start_prepare.md",
        "[pulsar2-docs-en] source/user_guides_config/config.md",
    ),
)

CHIPS: Mapping[str, Chip] = MappingProxyType(
    {
        c.name: c
        for c in [
            Chip(
                "ax620",
                "AX620",
                "Axera AX620A / AX620U NPU (Pulsar v1, .joint), e.g. the Maix-III board of the DDSNet paper",
                PULSAR,
                ops="ax620",
                rules="ax620",
                # Conv is listed for opsets 1 and 11-13, Abs/Add/ArgMax/ArgMin for 13 ([pulsar-docs] op list,
                # efficient_op_design_guides.rst)
                opsets=(11, 13),
                npu_modes=("AX620_VIRTUAL_NPU_MODE_111", "AX620_VIRTUAL_NPU_MODE_112", "AX620_VIRTUAL_NPU_MODE_0"),
                notes=(
                    "Pulsar v1 calibrates by itself (MinMax or MSE clipping observers); a calibration table cannot be "
                    "given to it, so tcc's KL+cosine scales are a prediction of the chip's arithmetic, not the scales "
                    "the .joint will carry",
                    "vNPU 111 (half the NPU, 1.8 TOPS) is the docs' default: it is required when the ISP runs",
                ),
            ),
            Chip(
                "ax620e",
                "AX620E",
                "Axera AX620E family NPU (AX630C, AX620Q; Pulsar2, .axmodel)",
                PULSAR2,
                ops="ax620e",
                rules="pulsar2",
                opsets=(11, 21),
                npu_modes=("NPU1", "NPU2"),
                calibration_methods=("MinMax", "Percentile", "MSE", "KL"),
                notes=(
                    "model_type QuantONNX (pre-quantized QDQ) is documented for AX650 and M76H only, so this kit "
                    "has Pulsar2 calibrate: KL with EasyQuant, the closest the toolchain has to tcc's KL+cosine",
                ),
            ),
            Chip(
                "ax650",
                "AX650",
                "Axera AX650 NPU (AX650A / AX650N, M76H; Pulsar2, .axmodel)",
                PULSAR2,
                ops="ax650",
                rules="pulsar2",
                opsets=(11, 21),
                npu_modes=("NPU1", "NPU2", "NPU3"),
                quant_onnx=True,
                calibration_methods=("MinMax", "Percentile", "MSE", "KL"),
                notes=(
                    "two configs: config.json compiles model_qdq.onnx (model_type QuantONNX) with tcc's own KL+cosine "
                    "scales; config_calibrate.json has Pulsar2 calibrate model.onnx itself (KL with EasyQuant)",
                ),
            ),
        ]
    }
)


def get_chip(name: str) -> Chip:
    return CHIPS[name]
