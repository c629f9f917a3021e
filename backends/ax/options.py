"""The AX kits' own build options: EmitOptions.backend for an Axera NPU target (tcc.build.BuildSettings.kit)."""

from __future__ import annotations

from dataclasses import dataclass

from tcc.errors import BuildError
from tcc.targets import Target


@dataclass(frozen=True)
class KitOptions:
    allow_cpu_fallback: bool = False  # build although some nodes must run on the CPU (recorded)
    npu_mode: str | None = None  # the toolchain's NPU / virtual-NPU mode (None: the chip's default)

    def check(self, target: Target, kit: bool) -> None:
        """Before any work: a BuildError for a target that writes no kit (`kit`: its backend's capability)."""
        if not kit and (self.allow_cpu_fallback or self.npu_mode is not None):
            raise BuildError(
                f"--allow-cpu-fallback and --npu-mode apply to the Axera NPU targets only (ax620, ax620e, "
                f"ax650), not {target.name}"
            )
