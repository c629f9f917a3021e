"""THE target registry: every `--target` value, as plain data, in one place.

A `Target` names the backend that builds it, its precisions, the quantization rules its INT8 build needs (a key of
tcc.quant.table.rules.RULES) and, for the TVM targets, its `Platform`: how to compile for it (the TVM target dict), how
to
link (cross compiler), where the TVM runtime for the board comes from (``runtime``) and how to run the result on this
x86_64 machine (``qemu``).  ``backends/tvm/runtime.py`` uses the platforms; ``tools/setup_arm.sh`` installs what
their ``apt_packages`` name.  Nothing here imports a backend.

Runtime sources (``Platform.runtime``):
  ``host-wheel``     the x86_64 libraries of the installed apache-tvm / apache-tvm-ffi wheels
  ``wheel:<plat>``   the same-version wheels for pip platform <plat> (downloaded, libraries only)
  ``source``         built from the C++ sources inside the x86_64 wheels with the cross compiler
                     (backends/tvm/runtime_recipe/CMakeLists.txt), for architectures PyPI has no wheel for
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Platform:
    """Where a TVM target runs: the TVM target, the cross toolchain, the runtime's source, the emulator."""

    name: str
    description: str
    arch: str  # runtime architecture: "x86_64", "armv7" or "aarch64" (also the cache key's part)
    tvm_target: Mapping[str, Any]  # passed to tvm.target.Target(...)
    triple: str | None  # GNU triple of the cross toolchain; None: the host compiler
    apt_packages: tuple[str, ...]  # Debian packages that provide the toolchain / emulator
    runtime: str  # "host-wheel" | "wheel:<pip platform>" | "source"
    qemu: tuple[str, ...] | None = None  # prefix that runs a target binary here; None: native
    cmake_toolchain: str | None = None  # file in backends/tvm/runtime_recipe/toolchains/
    aliases: tuple[str, ...] = field(default=())
    cycle_model: str | None = None  # the board core's cycle model (tcc.backends.tvm.measure.cycle_models.CYCLE_MODELS)

    @property
    def cxx(self) -> str:
        """C++ compiler/linker command used for export_library and the runner."""
        return f"{self.triple}-g++" if self.triple else "g++"

    @property
    def objdump(self) -> str:
        return f"{self.triple}-objdump" if self.triple else "objdump"

    @property
    def sysroot(self) -> str | None:
        """Debian's multiarch sysroot of the cross toolchain (also qemu's -L)."""
        return f"/usr/{self.triple}" if self.triple else None

    @property
    def is_cross(self) -> bool:
        return self.triple is not None

    def runtime_cache_key(self, tvm_version: str) -> str:
        """Folder name of this target's runtime + runner in the cache (~/.cache/tcc/...)."""
        return f"tvm-runtime-{tvm_version}-{self.arch}"

    def tvm_target_dict(self) -> dict[str, Any]:
        """A fresh, mutable copy of the TVM target dict."""
        return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in self.tvm_target.items()}


@dataclass(frozen=True)
class Target:
    """One `--target` value."""

    name: str
    backend: str  # a key of tcc.backends.BACKENDS
    precisions: tuple[str, ...]
    description: str
    planned: Mapping[str, str] = field(default_factory=dict)  # precision -> why it is not available yet
    rules: str | None = None  # INT8: the quantization rules (tcc.quant.table.rules.RULES) this target's build needs
    platform: Platform | None = None  # TVM targets: compile / link / run
    runs_here: bool = True  # False: a kit for a toolchain that runs elsewhere (its INT8 result is predicted here)

    @property
    def default_precision(self) -> str:
        return self.precisions[0]


_PLATFORMS: tuple[Platform, ...] = (
    Platform(
        name="host",
        description="this machine (x86_64, LLVM, tuned for the local CPU)",
        arch="x86_64",
        # mcpu=native (resolved to this machine's CPU name by tvm_compile.resolve_tvm_target):
        # the host build is for verification and benchmarks on the build machine and is not
        # portable to older x86_64 CPUs; it is faster than generic x86-64 (docs/notes/tolerances.md).
        tvm_target=MappingProxyType({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "native"}),
        triple=None,
        apt_packages=("g++",),
        runtime="host-wheel",
    ),
    Platform(
        name="arm-a7",
        description="Cortex-A7, ARMv7-A hard-float with NEON/VFPv4 (32-bit)",
        arch="armv7",
        # mfloat-abi=hard: the Debian armhf toolchain links only hard-float objects.
        # fast-math: without it LLVM emits no NEON float vector code (ARMv7 NEON is not IEEE).
        tvm_target=MappingProxyType(
            {
                "kind": "llvm",
                "mtriple": "armv7a-linux-gnueabihf",
                "mcpu": "cortex-a7",
                "mattr": ("+neon", "+vfp4"),
                "mfloat-abi": "hard",
                "fast-math": True,
            }
        ),
        triple="arm-linux-gnueabihf",
        apt_packages=("g++-arm-linux-gnueabihf", "qemu-user"),
        runtime="source",
        qemu=("qemu-arm", "-L", "/usr/arm-linux-gnueabihf", "-cpu", "cortex-a7"),
        cmake_toolchain="armv7.cmake",
        cycle_model="cortex-a7",
    ),
    Platform(
        name="aarch64",
        description="generic ARMv8-A (64-bit) with NEON, e.g. Cortex-A53",
        arch="aarch64",
        # mcpu=cortex-a53: LLVM schedules for the A53's in-order pipeline (FastNet: 6.7% fewer estimated cycles,
        # 10% fewer instructions than the generic CPU); the code stays ARMv8.0 + NEON (no crc or crypto is emitted)
        tvm_target=MappingProxyType(
            {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a53", "mattr": ("+neon",)}
        ),
        triple="aarch64-linux-gnu",
        apt_packages=("g++-aarch64-linux-gnu", "qemu-user"),
        runtime="wheel:manylinux_2_28_aarch64",
        # the class's own core: qemu's default cpu (max) has dot products, SVE and i8mm, so a stray ARMv8.2
        # instruction in a v8.0 build would pass the self-check; cortex-a53 refuses it (SIGILL)
        qemu=("qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", "-cpu", "cortex-a53"),
        cmake_toolchain="aarch64.cmake",
        aliases=("arm-a53",),
        cycle_model="cortex-a53",
    ),
    Platform(
        name="aarch64-dotprod",
        description="ARMv8.2-A (64-bit) with NEON and the int8 dot product, e.g. the Cortex-A55 of the AX650 / AX620E",
        arch="aarch64",
        # dotprod: the INT8 convs' sdot kernel (tcc.backends.tvm.int8.choose.kernel_for)
        tvm_target=MappingProxyType(
            {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a55", "mattr": ("+neon", "+dotprod")}
        ),
        triple="aarch64-linux-gnu",
        apt_packages=("g++-aarch64-linux-gnu", "qemu-user"),
        runtime="wheel:manylinux_2_28_aarch64",
        # qemu 7.2 has no cortex-a55 model; cortex-a76 (ARMv8.2 with dotprod) executes sdot, the default cpu does not
        qemu=("qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", "-cpu", "cortex-a76"),
        cmake_toolchain="aarch64.cmake",
        aliases=("arm-a55", "ax650-a55", "ax620e-a55"),
        cycle_model="cortex-a55",
    ),
)


_QUANTIZED_ORT = "quantized ONNX: use --target ort --precision int8|dynamic"
_NPU_INT8 = MappingProxyType(
    dict.fromkeys(
        ("fp32", "fp16", "dynamic"),
        "the NPU runs 8-bit integer models: the kit holds the FP32 ONNX and the toolchain "
        "quantizes it (--precision int8, the default, with --data)",
    )
)
# int8: real integer kernels (backends/tvm/int8/lower.py), bit-exact with the reference
TVM_PRECISIONS = ("fp32", "int8")


def _tvm(name: str, p: Platform) -> Target:
    alias = f" (alias of {p.name})" if name != p.name else ""
    return Target(name, "tvm", TVM_PRECISIONS, f"TVM: {p.description}{alias}", rules="tvm", platform=p)


TARGETS: Mapping[str, Target] = MappingProxyType(
    {
        t.name: t
        for t in [
            Target(
                "onnx",
                "ort",
                ("fp32",),
                "portable FP32 ONNX after the pass pipeline (any ONNX runtime)",
                planned=MappingProxyType(
                    {"fp16": "use --target ort --precision fp16", "int8": _QUANTIZED_ORT, "dynamic": _QUANTIZED_ORT}
                ),
            ),
            Target(
                "ort",
                "ort",
                ("fp32", "fp16", "int8", "dynamic"),
                "ONNX Runtime: FP32; FP16 with FP32 I/O; INT8 QDQ (calibrated); dynamic INT8",
                rules="ort",
            ),
            Target(
                "ort-w8",
                "ort",
                ("int8",),
                "ONNX Runtime INT8 QDQ with 8-bit dense weights, for CPUs whose u8 x s8 kernels do not saturate "
                "(x86 with AVX-VNNI / AVX-512 VNNI, ARM64); built and self-checked on such a CPU",
                rules="ort-w8",
            ),
            Target(
                "tflite",
                "tflite",
                ("fp32", "fp16", "dynamic", "int8"),
                "TFLite (LiteRT): FP32; FP16 weights; dynamic-range INT8; full INT8 (calibrated, --io float|int8)",
                rules="tflite",
            ),
            Target(
                "tflite-int",
                "tflite",
                ("int8",),
                "TFLite (LiteRT) with int8 builtins only, for int8-only runtimes and delegates: no float islands, "
                "softmax as int8 SOFTMAX; refuses a model with an op that has no int8 builtin (LayerNorm)",
                rules="tflite-int",
            ),
            Target(
                "tflite16-i32",
                "tflite",
                ("int8",),
                "TFLite (LiteRT) 16x8 with int32 bias (--activation-bits 16): CONV_2D / FULLY_CONNECTED on LiteRT's "
                "optimized kernels, int32 accumulators (grids narrowed where one could overflow)",
                rules="tflite16-i32",
            ),
            *(_tvm(n, p) for p in _PLATFORMS for n in (p.name, *p.aliases)),
            # Axera's NPUs: a kit for the toolchain (backends/ax/backend.py; chips as data in backends/ax/chips.py)
            Target(
                "ax620",
                "ax",
                ("int8",),
                "Axera AX620A/U NPU: a kit for Pulsar v1 (.joint), predicted here",
                rules="ax620",
                planned=_NPU_INT8,
                runs_here=False,
            ),
            Target(
                "ax620e",
                "ax",
                ("int8",),
                "Axera AX620E NPU (AX630C, AX620Q): a kit for Pulsar2 (.axmodel), predicted here",
                rules="pulsar2",
                planned=_NPU_INT8,
                runs_here=False,
            ),
            Target(
                "ax650",
                "ax",
                ("int8",),
                "Axera AX650 NPU: a kit for Pulsar2 with tcc's scales in QDQ ONNX, predicted here",
                rules="pulsar2",
                planned=_NPU_INT8,
                runs_here=False,
            ),
        ]
    }
)

PLATFORMS: Mapping[str, Platform] = MappingProxyType({n: t.platform for n, t in TARGETS.items() if t.platform})


class UnknownTargetError(ValueError):
    """Raised for a name that is not a TVM platform in the registry."""


def known_platforms() -> list[str]:
    """All TVM platform names (canonical names and aliases), sorted."""
    return sorted(PLATFORMS)


def get_platform(name: str) -> Platform:
    """The TVM platform of target ``name`` (a canonical name or an alias)."""
    try:
        return PLATFORMS[name]
    except (KeyError, TypeError):
        raise UnknownTargetError(
            f"unknown TVM target {name!r}; known TVM targets: {', '.join(known_platforms())}"
        ) from None
