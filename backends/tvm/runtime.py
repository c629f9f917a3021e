"""TVM runtimes for deployment targets: toolchain checks, building / fetching the runtime and its cache.

Everything target-specific comes from :mod:`tcc.targets`.  Per target architecture the
cache holds, outside the repository,

    ~/.cache/tcc/tvm-runtime-<tvm version>-<arch>/      ($TCC_CACHE_DIR overrides ~/.cache/tcc)
        lib/libtvm_ffi.so  lib/libtvm_runtime.so       the TVM runtime for that architecture
        lib/libstdc++.so.6 lib/libgcc_s.so.1            (cross targets) the C++ runtime they need
        bin/tcc-run                                     the runner, RUNPATH $ORIGIN/../lib
        stamp.json                                      versions + recipe hashes; build time
        build.log                                       the last build's output

so ``bin/`` + ``lib/`` is the deployment kit's runtime part: copy the folder to the board.
A cached runtime is reused while the TVM versions and the recipe (runtime_recipe/, package data) are
unchanged; if only the runner changed, only the runner is rebuilt.

This module also holds the TVM pins (TVM_PIN, TVM_FFI_PIN) and the errors of the TVM modules (ToolchainMissing,
RuntimeBuildError, RunError: tcc errors, which the CLI prints without a traceback).  It imports neither tvm nor
numpy.  The rest of the TVM machinery lives in modules that may import this one (never the reverse):

    tcc.backends.tvm.compile       ONNX / Relax -> tcc's CPU pipeline -> a shared library for the target
    tcc.backends.tvm.tune          MetaSchedule tuning (host only)
    tcc.backends.tvm.runner           running a compiled module with tcc-run (under qemu for ARM targets)
    tcc.backends.tvm.tensor_file       the TCCT tensor files tcc-run reads and writes
    tcc.backends.tvm.measure.instruction_mix   vector-instruction counts of a compiled module (objdump)

Command line (`tcc setup` is the user's; these are the pieces):
    python -m tcc.backends.tvm.runtime ensure [--rebuild] TARGET...
    python -m tcc.backends.tvm.runtime check TARGET...      # what is missing, exit 1 if any
    python -m tcc.backends.tvm.runtime info TARGET...       # cache folders and stamps
    python -m tcc.backends.tvm.runtime apt-missing TARGET... # Debian packages still to install
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from tcc.errors import BuildError, TccError

# Run as `python -m tcc.backends.tvm.runtime`, never as a script: a script's folder (backends/tvm/, named like the
# real one) would come first on sys.path and shadow the real `tvm` package.
from ...targets import Platform, get_platform, known_platforms

REPO_ROOT = Path(__file__).resolve().parents[2]
TVM_PIN = "0.27.0.post1"  # what `tcc setup` installs (tcc.backends.tvm.setup)
TVM_FFI_PIN = "0.1.14.post0"  # 0.1.15.post2, pip's pick for apache-tvm 0.27.0.post1, crashes MetaSchedule
RUNTIME_SRC = Path(__file__).resolve().parent / "runtime_recipe"  # package data: the wheel carries it
MIN_CMAKE = (3, 18)
SETUP_HINT = "`tcc setup TARGET` installs the toolchains and builds the runtimes (as root for the Debian packages)"

Log = Callable[[str], None]


def _default_log(msg: str) -> None:
    print(f"[tcc-runtime] {msg}", file=sys.stderr, flush=True)


class ToolchainMissing(BuildError):
    """A command needed for a target is not installed; the message names the package. Exit code 2."""


class RuntimeBuildError(BuildError):
    """Building / fetching a TVM runtime failed; the message points at the log. Exit code 2."""


class RunError(TccError):
    """tcc-run failed on a module. Exit code 1: the module failed at run time."""

    exit_code = 1


# --------------------------------------------------------------------------- versions / paths


def tvm_versions() -> tuple[str, str]:
    """(apache-tvm, apache-tvm-ffi) versions installed in this environment."""

    try:
        return metadata.version("apache-tvm"), metadata.version("apache-tvm-ffi")
    except metadata.PackageNotFoundError:
        raise ToolchainMissing(
            f"the TVM backend needs the Python package apache-tvm (pip install apache-tvm=={TVM_PIN} "
            f"apache-tvm-ffi=={TVM_FFI_PIN}); " + SETUP_HINT
        ) from None


def cache_root() -> Path:
    env = os.environ.get("TCC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "tcc"


def runtime_dir(target_name: str) -> Path:
    """Cache folder of the target's runtime (whether or not it is built yet)."""
    platform = get_platform(target_name)
    return cache_root() / platform.runtime_cache_key(tvm_versions()[0])


def _site_dirs() -> tuple[Path, Path]:
    """site-packages/tvm and site-packages/tvm_ffi (located without importing tvm)."""

    out = []
    for mod in ("tvm", "tvm_ffi"):
        spec = importlib.util.find_spec(mod)
        if spec is None or not spec.submodule_search_locations:
            raise ToolchainMissing(f"Python package {mod} not found; " + SETUP_HINT)
        out.append(Path(next(iter(spec.submodule_search_locations))))
    return out[0], out[1]


# --------------------------------------------------------------------------- toolchain checks


def find_command(cmd: str) -> str | None:
    # Look next to the interpreter first: `pip install cmake ninja` puts them in the venv.
    local = Path(sys.executable).parent / cmd
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(cmd)


def find_cmake() -> str | None:
    """A cmake of at least MIN_CMAKE, beside the interpreter (pip's) or on PATH; None when there is none."""
    for cand in (Path(sys.executable).parent / "cmake", shutil.which("cmake")):
        if cand and Path(cand).exists():
            try:
                out = subprocess.run(
                    [str(cand), "--version"], check=False, capture_output=True, text=True, timeout=60
                ).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            m = re.search(r"version (\d+)\.(\d+)", out)
            if m and (int(m.group(1)), int(m.group(2))) >= MIN_CMAKE:
                return str(cand)
    return None


def _cmake_checked() -> str:
    """find_cmake() where require_tools has found it."""
    cmake = find_cmake()
    assert cmake is not None, "cmake: require_tools checks it first"
    return cmake


def missing_tools(target_name: str, *, build: bool = True, run: bool = True) -> list[tuple[str, str]]:
    """[(command, how to get it)] that the target still needs on this machine."""
    platform = get_platform(target_name)
    missing: list[tuple[str, str]] = []
    pkg = platform.apt_packages[0]
    if not find_command(platform.cxx):
        missing.append((platform.cxx, f"Debian package {pkg} (apt-get install -y {pkg})"))
    if run and platform.qemu and not find_command(platform.qemu[0]):
        missing.append((platform.qemu[0], "Debian package qemu-user (apt-get install -y qemu-user)"))
    if build and find_cmake() is None:
        missing.append((f"cmake>={MIN_CMAKE[0]}.{MIN_CMAKE[1]}", "pip install cmake ninja"))
    return missing


def missing_apt_packages(target_names: Iterable[str]) -> list[str]:
    """Debian packages to install so the targets' compiler and emulator commands exist, and LLVM's llvm-mca for
    the cycle estimate of the cores that have one."""
    pkgs: list[str] = []
    for name in target_names:
        platform = get_platform(name)
        wanted = [(platform.cxx, platform.apt_packages[0])]
        wanted += [(platform.qemu[0], "qemu-user")] if platform.qemu else []
        wanted += [("llvm-mca", "llvm")] if platform.cycle_model else []
        for cmd, pkg in wanted:
            if not find_command(cmd) and pkg not in pkgs:
                pkgs.append(pkg)
    return pkgs


def require_tools(target_name: str, *, build: bool = True, run: bool = True) -> None:
    missing = missing_tools(target_name, build=build, run=run)
    if missing:
        what = "; ".join(f"`{cmd}` ({how})" for cmd, how in missing)
        raise ToolchainMissing(f"target {target_name!r} needs {what}; {SETUP_HINT}")


# --------------------------------------------------------------------------- recipe hashing


def _hash_files(paths: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(set(paths)):
        h.update(str(p.relative_to(RUNTIME_SRC)).encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _recipe_hashes(platform: Platform) -> dict[str, str]:
    common = [RUNTIME_SRC / "CMakeLists.txt"]
    if platform.cmake_toolchain:
        common.append(RUNTIME_SRC / "toolchains" / platform.cmake_toolchain)
    lib_files: list[Path] = []  # wheel libraries depend on the versions only
    if platform.runtime == "source":
        lib_files = common + [p for p in (RUNTIME_SRC / "support").rglob("*") if p.is_file()]
    runner_files = common + [RUNTIME_SRC / "runner" / "tcc_run.cc"]
    return {"libs": _hash_files(lib_files), "runner": _hash_files(runner_files)}


def _expected_stamp(platform: Platform) -> dict[str, Any]:
    tvm_v, ffi_v = tvm_versions()
    return {
        "tvm_version": tvm_v,
        "tvm_ffi_version": ffi_v,
        "arch": platform.arch,
        "runtime_source": platform.runtime,
        "recipe": _recipe_hashes(platform),
    }


def read_stamp(target_name: str) -> dict[str, Any] | None:
    path = runtime_dir(target_name) / "stamp.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _cache_state(platform: Platform, d: Path) -> str:
    """'ok', 'runner' (only the runner is stale), or 'stale'."""
    try:
        stamp = json.loads((d / "stamp.json").read_text())
    except (OSError, ValueError):
        return "stale"
    want = _expected_stamp(platform)
    libs_ok = all((d / "lib" / f).is_file() for f in ("libtvm_ffi.so", "libtvm_runtime.so"))
    same = all(stamp.get(k) == want[k] for k in ("tvm_version", "tvm_ffi_version", "arch", "runtime_source"))
    if not (libs_ok and same and stamp.get("recipe", {}).get("libs") == want["recipe"]["libs"]):
        return "stale"
    if not (d / "bin" / "tcc-run").is_file() or stamp.get("recipe", {}).get("runner") != want["recipe"]["runner"]:
        return "runner"
    return "ok"


# --------------------------------------------------------------------------- building


def _run_logged(
    cmd: Sequence[str], log_file: Path, log: Log, cwd: Path | None = None, env: dict[str, str] | None = None
) -> None:
    log(" ".join(str(c) for c in cmd))
    with open(log_file, "a") as f:
        f.write(f"\n$ {' '.join(str(c) for c in cmd)}\n")
        f.flush()
        proc = subprocess.run([str(c) for c in cmd], check=False, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=env)
    if proc.returncode != 0:
        tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise RuntimeBuildError(
            f"command failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- last lines of {log_file} ---\n{tail}"
        )


def _cmake_configure_args(platform: Platform, build_dir: Path, mode: str, lib_dir: Path | None) -> list[str]:
    tvm_dir, ffi_dir = _site_dirs()
    cmake = find_cmake()
    if cmake is None:
        raise ToolchainMissing(
            f"building the TVM runtime needs cmake>={MIN_CMAKE[0]}.{MIN_CMAKE[1]} "
            "(pip install cmake ninja); " + SETUP_HINT
        )
    args = [
        cmake,
        "-S",
        str(RUNTIME_SRC),
        "-B",
        str(build_dir),
        f"-DTVM_PKG_DIR={tvm_dir}",
        f"-DTVM_FFI_PKG_DIR={ffi_dir}",
        f"-DTCC_RUNTIME_MODE={mode}",
        "-DCMAKE_BUILD_TYPE=Release",
    ]
    ninja = find_command("ninja")
    if ninja:
        args += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    if platform.cmake_toolchain:
        args.append(f"-DCMAKE_TOOLCHAIN_FILE={RUNTIME_SRC / 'toolchains' / platform.cmake_toolchain}")
    if lib_dir is not None:
        args.append(f"-DTCC_PREBUILT_LIB_DIR={lib_dir}")
    return args


def _build_libs_from_source(platform: Platform, stage: Path, work: Path, log_file: Path, log: Log) -> None:
    build_dir = work / "build-libs"
    _run_logged(_cmake_configure_args(platform, build_dir, "source", None), log_file, log)
    jobs = str(os.cpu_count() or 2)
    _run_logged(
        [_cmake_checked(), "--build", str(build_dir), "--target", "tvm_ffi", "tvm_runtime", "-j", jobs], log_file, log
    )
    for name in ("libtvm_ffi.so", "libtvm_runtime.so"):
        shutil.copy2(build_dir / name, stage / "lib" / name)


def _fetch_wheel_libs(platform: Platform, stage: Path, work: Path, log_file: Path, log: Log) -> None:
    wheel_platform = platform.runtime.split(":", 1)[1]
    tvm_v, ffi_v = tvm_versions()
    dl = work / "wheels"
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    _run_logged(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            wheel_platform,
            "--python-version",
            pyver,
            "-d",
            str(dl),
            f"apache-tvm=={tvm_v}",
            f"apache-tvm-ffi=={ffi_v}",
        ],
        log_file,
        log,
    )
    wanted = {"tvm/lib/libtvm_runtime.so": "libtvm_runtime.so", "tvm_ffi/lib/libtvm_ffi.so": "libtvm_ffi.so"}
    found = set()
    for whl in dl.glob("*.whl"):
        with zipfile.ZipFile(whl) as z:
            for member, name in wanted.items():
                if member in z.namelist():
                    with z.open(member) as src, open(stage / "lib" / name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    os.chmod(stage / "lib" / name, 0o755)
                    found.add(member)
    if found != set(wanted):
        raise RuntimeBuildError(f"the {platform} wheels lack {sorted(set(wanted) - found)}")


def _copy_host_wheel_libs(stage: Path) -> None:
    tvm_dir, ffi_dir = _site_dirs()
    shutil.copy2(tvm_dir / "lib" / "libtvm_runtime.so", stage / "lib" / "libtvm_runtime.so")
    shutil.copy2(ffi_dir / "lib" / "libtvm_ffi.so", stage / "lib" / "libtvm_ffi.so")


def _copy_cxx_runtime(platform: Platform, stage: Path) -> None:
    """Ship the cross toolchain's libstdc++/libgcc_s with the kit (found via RUNPATH)."""
    for name in ("libstdc++.so.6", "libgcc_s.so.1"):
        out = subprocess.run(
            [platform.cxx, f"-print-file-name={name}"], check=False, capture_output=True, text=True
        ).stdout.strip()
        src = Path(out)
        if src.is_absolute() and src.exists():
            shutil.copy2(src.resolve(), stage / "lib" / name)


def _build_runner(platform: Platform, stage: Path, work: Path, log_file: Path, log: Log) -> None:
    build_dir = work / "build-runner"
    _run_logged(_cmake_configure_args(platform, build_dir, "prebuilt", stage / "lib"), log_file, log)
    _run_logged([_cmake_checked(), "--build", str(build_dir), "--target", "tcc-run"], log_file, log)
    (stage / "bin").mkdir(exist_ok=True)
    shutil.copy2(build_dir / "tcc-run", stage / "bin" / "tcc-run")


def _smoke_test(platform: Platform, stage: Path, log_file: Path, log: Log) -> None:
    """Start the runner with every symbol bound now: catches unresolved runtime symbols."""
    env = dict(os.environ, LD_BIND_NOW="1")
    _run_logged([*(platform.qemu or ()), str(stage / "bin" / "tcc-run"), "--help"], log_file, log, env=env)


def _remove_dead_staging(final: Path) -> None:
    """Remove staging folders left by builds whose process is gone (killed, timed out)."""
    for d in final.parent.glob(f".{final.name}.staging-*"):
        try:
            pid = int(d.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def runtime_state(target_name: str) -> str:
    """Without building anything: 'ok' (cached and current), 'runner' (only tcc-run is out of
    date: quick to rebuild) or 'stale' (missing or outdated; a source build takes minutes)."""
    platform = get_platform(target_name)
    return _cache_state(platform, runtime_dir(target_name))


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_runtime(target_name: str, *, rebuild: bool = False, log: Log | None = None) -> Path:
    """The cache folder with ``lib/`` (TVM runtime) and ``bin/tcc-run`` for the target.

    Reused when the stamp matches; otherwise built (``source``), downloaded (``wheel:``) or copied
    (``host-wheel``) into a staging folder and moved into place.  Raises ToolchainMissing naming
    the package to install, RuntimeBuildError with the log's tail.
    """
    log = log or _default_log
    platform = get_platform(target_name)
    final = runtime_dir(target_name)
    if not (RUNTIME_SRC / "CMakeLists.txt").is_file():  # the package data, not the user's files, is incomplete
        raise RuntimeBuildError(
            f"the TVM runtime's recipe is missing from the installed tcc ({RUNTIME_SRC}): reinstall tcc"
        )
    with _locked(final.parent / f".{final.name}.lock"):
        state = "stale" if rebuild else _cache_state(platform, final)
        if state == "ok":
            return final
        require_tools(target_name, build=True, run=True)
        t0 = time.monotonic()
        stamp = _expected_stamp(platform)  # the recipe as it is when the build starts
        _remove_dead_staging(final)
        stage = final.parent / f".{final.name}.staging-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        (stage / "lib").mkdir(parents=True)
        log_file = stage / "build.log"
        try:
            with tempfile.TemporaryDirectory(prefix=f"tcc-build-{platform.arch}-") as tmp:
                work = Path(tmp)
                if state == "runner":
                    log(f"{target_name}: runtime cached in {final}; rebuilding tcc-run only")
                    old = _reuse_cached_libs(final, stage, log_file)
                else:
                    log(f"{target_name}: preparing the TVM runtime for {platform.arch} ({platform.runtime}) in {final}")
                    old = {}
                    _prepare_libs(platform, stage, work, log_file, log)
                _build_runner(platform, stage, work, log_file, log)
                _smoke_test(platform, stage, log_file, log)
            secs = round(time.monotonic() - t0, 1)
            stamp["libs_build_seconds"] = old.get("libs_build_seconds", secs)
            stamp["last_build_seconds"] = secs
            stamp["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            (stage / "stamp.json").write_text(json.dumps(stamp, indent=2) + "\n")
            if final.exists():
                shutil.rmtree(final)
            os.replace(stage, final)
        except BaseException:
            # keep the log of a failed build next to the cache for inspection
            if log_file.exists():
                shutil.copy2(log_file, final.parent / f"{final.name}.failed-build.log")
            shutil.rmtree(stage, ignore_errors=True)
            raise
        log(f"{target_name}: ready in {final} ({secs} s)")
        return final


def _reuse_cached_libs(final: Path, stage: Path, log_file: Path) -> dict:
    """The cached runtime libraries (and their build log) into the staging folder; the cache's old stamp."""
    for p in (final / "lib").iterdir():
        shutil.copy2(p, stage / "lib" / p.name)
    if (final / "build.log").exists():  # keep the library build's log
        shutil.copy2(final / "build.log", log_file)
    return json.loads((final / "stamp.json").read_text())


def _prepare_libs(platform: Platform, stage: Path, work: Path, log_file: Path, log: Log) -> None:
    """The TVM runtime libraries into the staging folder, from the platform's runtime source."""
    if platform.runtime == "source":
        log("building libtvm_ffi + libtvm_runtime from the wheel's sources (several minutes; cached afterwards)")
        _build_libs_from_source(platform, stage, work, log_file, log)
    elif platform.runtime.startswith("wheel:"):
        _fetch_wheel_libs(platform, stage, work, log_file, log)
    elif platform.runtime == "host-wheel":
        _copy_host_wheel_libs(stage)
    else:
        raise RuntimeBuildError(f"unknown runtime source {platform.runtime!r}")
    if platform.is_cross:
        _copy_cxx_runtime(platform, stage)


def runner_command(target_name: str) -> list[str]:
    """argv prefix that runs tcc-run for the target on this machine (qemu for ARM)."""
    platform = get_platform(target_name)
    d = ensure_runtime(target_name)
    return [*(platform.qemu or ()), str(d / "bin" / "tcc-run")]


# --------------------------------------------------------------------------- CLI


def _dir_size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:

    ap = argparse.ArgumentParser(prog="python -m tcc.backends.tvm.runtime", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("ensure", "check", "info", "apt-missing"):
        p = sub.add_parser(name)
        p.add_argument("targets", nargs="+", metavar="TARGET", help=f"one of {', '.join(known_platforms())}")
        if name == "ensure":
            p.add_argument("--rebuild", action="store_true", help="ignore the cache")
    args = ap.parse_args(argv)
    status = 0
    try:
        for t in args.targets:
            get_platform(t)  # unknown names fail before any work
        if args.cmd == "apt-missing":
            print(" ".join(missing_apt_packages(args.targets)))
            return 0
        for t in args.targets:
            if args.cmd == "ensure":
                d = ensure_runtime(t, rebuild=args.rebuild)
                print(f"{t}: {d} ({_dir_size(d) / 2**20:.1f} MiB)")
            elif args.cmd == "check":
                miss = missing_tools(t)
                print(f"{t}: " + ("ok" if not miss else "missing " + "; ".join(f"{c} ({h})" for c, h in miss)))
                status |= bool(miss)
            else:
                d = runtime_dir(t)
                print(
                    json.dumps(
                        {
                            "target": t,
                            "dir": str(d),
                            "exists": d.exists(),
                            "size_mib": round(_dir_size(d) / 2**20, 1) if d.exists() else None,
                            "stamp": read_stamp(t),
                        },
                        indent=2,
                    )
                )
    except (ToolchainMissing, RuntimeBuildError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
