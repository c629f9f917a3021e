"""The TVM backend's own build options: EmitOptions.backend for a TVM target (tcc.build.BuildSettings.tvm)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tcc.errors import BuildError
from tcc.targets import Target


@dataclass(frozen=True)
class TvmOptions:
    tune: int = 0  # MetaSchedule tuning trials (the host target); 0: untuned default schedules
    tune_log: str | Path | None = None  # where tuning records are kept and reused (None: tcc's cache)
    count_instructions: bool = False  # ARM targets: executed instructions per inference under qemu (insn_count)
    host_twin: bool = False  # ARM targets: also compile for the host and compare (ARM-specific codegen problems)

    def check(self, target: Target) -> None:
        """The ARM-only options, before any work: a BuildError for a target that does not run under qemu."""
        for flag, on in (("--count-instructions", self.count_instructions), ("--host-twin", self.host_twin)):
            if on and not (target.platform and target.platform.qemu):
                raise BuildError(f"{flag} applies to the ARM targets (arm-a7, aarch64), not {target.name}")
