"""`tcc setup`: everything a TVM target needs on this machine, from the installed package alone (the wheel carries
the runtime's recipe): the cross compilers and qemu-user (Debian packages: apt-get as root, else the command to run),
the pinned TVM wheels and the build tools in this Python environment (pip), then the TVM runtime and tcc-run for each
target, built or fetched once into the cache (tcc.backends.tvm.runtime). Each step is skipped when done, so it is
also the check that a machine is ready. `tools/setup_arm.sh` (`make setup-arm`) calls it.

The steps, in order, as data: STEPS.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from . import runtime as rt
from .runtime import TVM_FFI_PIN, TVM_PIN, ToolchainMissing

Log = Callable[[str], None]

DEFAULT_TARGETS = ("host", "arm-a7", "aarch64")
# MetaSchedule (--tune) needs psutil and cloudpickle; xgboost-cpu is its cost model (the CPU-only build, ~20 MB,
# not xgboost's 350 MB CUDA one; without it the tuner falls back to random search)
TUNING_PACKAGES = {"psutil": "psutil", "cloudpickle": "cloudpickle", "xgboost": "xgboost-cpu"}


@dataclass(frozen=True)
class SetupSettings:
    """What `tcc setup` may do: install Debian packages (`apt`: as root, or with sudo), rebuild cached runtimes."""

    apt: bool = True
    rebuild: bool = False


@dataclass(frozen=True)
class Step:
    """One step of the set-up: what it is called, and the function that does it (skipping what is done)."""

    name: str
    run: Callable[[Sequence[str], SetupSettings, Log], None]


def setup(targets: Sequence[str], settings: SetupSettings = SetupSettings(), log: Log = print) -> dict[str, Path]:
    """Set up the TVM `targets` (canonical names or aliases; other targets need nothing and are said so): every
    step of STEPS in order, each timed. Returns {target: its runtime's cache folder}."""
    for name in targets:
        rt.get_platform(name)  # an unknown name fails before any work
    for step in STEPS:
        t0 = time.monotonic()
        step.run(targets, settings, log)
        log(f"setup: {step.name} ({time.monotonic() - t0:.1f} s)")
    return {name: rt.runtime_dir(name) for name in targets}


# ---------------------------------------------------------------------------------------------------- the steps
def _debian_packages(targets: Sequence[str], settings: SetupSettings, log: Log) -> None:
    """The targets' cross compilers and qemu-user, and g++ for the host: apt-get where allowed, else the command."""
    packages = rt.missing_apt_packages(targets)
    if shutil.which("g++") is None:
        packages.append("g++")
    if not packages:
        log("setup: Debian packages: already installed")
        return
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    prefix = [] if os.geteuid() == 0 else ["sudo"] if shutil.which("sudo") else None
    if not settings.apt or prefix is None or shutil.which("apt-get") is None:
        raise ToolchainMissing(
            f"missing Debian packages: {' '.join(packages)}; install them as root (apt-get install -y "
            f"{' '.join(packages)}), then run `tcc setup` again"
        )
    log(f"setup: installing Debian packages: {' '.join(packages)}")
    for argv in (["apt-get", "update", "-qq"], command):
        done = subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        )
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise ToolchainMissing(f"`{' '.join(argv)}` failed (exit {done.returncode}):\n{tail}")


def _python_packages(targets: Sequence[str], settings: SetupSettings, log: Log) -> None:
    """The pinned apache-tvm / apache-tvm-ffi (both at once, so that pip cannot move the FFI off its pin), the
    tuner's packages and cmake / ninja, into this Python environment."""
    wanted = []
    if _installed("apache-tvm") != TVM_PIN or _installed("apache-tvm-ffi") != TVM_FFI_PIN:
        wanted += [f"apache-tvm=={TVM_PIN}", f"apache-tvm-ffi=={TVM_FFI_PIN}"]
    wanted += [package for module, package in TUNING_PACKAGES.items() if importlib.util.find_spec(module) is None]
    if rt.find_cmake() is None or rt.find_command("ninja") is None:
        wanted += [f"cmake>={rt.MIN_CMAKE[0]}.{rt.MIN_CMAKE[1]}", "ninja"]
    if not wanted:
        log(f"setup: Python packages: apache-tvm {TVM_PIN}, apache-tvm-ffi {TVM_FFI_PIN}, the tuner's, cmake, ninja")
        return
    log(f"setup: installing into {sys.prefix}: {' '.join(wanted)}")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *wanted], capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise ToolchainMissing(f"pip install {' '.join(wanted)} failed (exit {done.returncode}):\n{tail}")
    importlib.invalidate_caches()  # the runtimes' step looks the new packages up in this process


def _runtimes(targets: Sequence[str], settings: SetupSettings, log: Log) -> None:
    """The TVM runtime and tcc-run of each target, in the cache (arm-a7's built from source: minutes, once)."""
    for name in targets:
        folder = rt.ensure_runtime(name, rebuild=settings.rebuild, log=lambda line: log(f"setup: {line}"))
        log(f"setup: {name}: runtime and tcc-run in {folder}")


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


STEPS: tuple[Step, ...] = (
    Step("Debian packages", _debian_packages),
    Step("Python packages", _python_packages),
    Step("runtimes", _runtimes),
)
