"""TVM runtimes for deployment targets: build-and-cache, compile ONNX, run (under qemu).

Everything target-specific comes from :mod:`tcc.backends.targets`.  Per target architecture the
cache holds, outside the repository,

    ~/.cache/tcc/tvm-runtime-<tvm version>-<arch>/      ($TCC_CACHE_DIR overrides ~/.cache/tcc)
        lib/libtvm_ffi.so  lib/libtvm_runtime.so       the TVM runtime for that architecture
        lib/libstdc++.so.6 lib/libgcc_s.so.1            (cross targets) the C++ runtime they need
        bin/tcc-run                                     the runner, RUNPATH $ORIGIN/../lib
        stamp.json                                      versions + recipe hashes; build time
        build.log                                       the last build's output

so ``bin/`` + ``lib/`` is the deployment kit's runtime part: copy the folder to the board.
A cached runtime is reused while the TVM versions and the recipe (tools/arm_runtime) are
unchanged; if only the runner changed, only the runner is rebuilt.

Command line (used by tools/setup_arm.sh):
    python -m tcc.backends.tvm_runtime ensure [--rebuild] TARGET...
    python -m tcc.backends.tvm_runtime check TARGET...      # what is missing, exit 1 if any
    python -m tcc.backends.tvm_runtime info TARGET...       # cache folders and stamps
    python -m tcc.backends.tvm_runtime apt-missing TARGET... # Debian packages still to install
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where used: the CLI (setup_arm.sh) runs without it
    import numpy as np

# Run as `python -m tcc.backends.tvm_runtime`, never as a script: a script's folder (backends/, which holds tvm.py)
# would come first on sys.path and shadow the real `tvm` package.
from .targets import Platform as TargetSpec, get_platform as get_target, known_platforms as known_targets

REPO_ROOT = Path(__file__).resolve().parent.parent
TVM_PIN = "0.27.0.post1"  # what tools/setup_arm.sh installs (TVM_VERSION, TVM_FFI_VERSION there)
TVM_FFI_PIN = "0.1.14.post0"  # 0.1.15.post2, pip's pick for apache-tvm 0.27.0.post1, crashes MetaSchedule
RUNTIME_SRC = REPO_ROOT / "tools" / "arm_runtime"
MIN_CMAKE = (3, 18)
SETUP_HINT = "run tools/setup_arm.sh (as root) to install the toolchains and build the runtimes"

Log = Callable[[str], None]


def _default_log(msg: str) -> None:
    print(f"[tcc-runtime] {msg}", file=sys.stderr, flush=True)


class ToolchainMissing(RuntimeError):
    """A command needed for a target is not installed; the message names the package."""


class RuntimeBuildError(RuntimeError):
    """Building / fetching a TVM runtime failed; the message points at the log."""


class RunError(RuntimeError):
    """tcc-run failed on a module."""


# --------------------------------------------------------------------------- versions / paths


def tvm_versions() -> tuple[str, str]:
    """(apache-tvm, apache-tvm-ffi) versions installed in this environment."""
    from importlib import metadata

    try:
        return metadata.version("apache-tvm"), metadata.version("apache-tvm-ffi")
    except metadata.PackageNotFoundError:
        raise ToolchainMissing(
            f"the TVM backend needs the Python package apache-tvm (pip install apache-tvm=={TVM_PIN} "
            f"apache-tvm-ffi=={TVM_FFI_PIN}); "
            + SETUP_HINT
        ) from None


def cache_root() -> Path:
    env = os.environ.get("TCC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "tcc"


def runtime_dir(target_name: str) -> Path:
    """Cache folder of the target's runtime (whether or not it is built yet)."""
    spec = get_target(target_name)
    return cache_root() / spec.runtime_cache_key(tvm_versions()[0])


def _site_dirs() -> tuple[Path, Path]:
    """site-packages/tvm and site-packages/tvm_ffi (located without importing tvm)."""
    import importlib.util

    out = []
    for mod in ("tvm", "tvm_ffi"):
        spec = importlib.util.find_spec(mod)
        if spec is None or not spec.submodule_search_locations:
            raise ToolchainMissing(f"Python package {mod} not found; " + SETUP_HINT)
        out.append(Path(next(iter(spec.submodule_search_locations))))
    return out[0], out[1]


# --------------------------------------------------------------------------- toolchain checks


def _which(cmd: str) -> str | None:
    # Look next to the interpreter first: `pip install cmake ninja` puts them in the venv.
    local = Path(sys.executable).parent / cmd
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(cmd)


def _cmake() -> str | None:
    for cand in (Path(sys.executable).parent / "cmake", shutil.which("cmake")):
        if cand and Path(cand).exists():
            try:
                out = subprocess.run([str(cand), "--version"], check=False, capture_output=True, text=True, timeout=60).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            m = re.search(r"version (\d+)\.(\d+)", out)
            if m and (int(m.group(1)), int(m.group(2))) >= MIN_CMAKE:
                return str(cand)
    return None


def missing_tools(target_name: str, *, build: bool = True, run: bool = True) -> list[tuple[str, str]]:
    """[(command, how to get it)] that the target still needs on this machine."""
    spec = get_target(target_name)
    missing: list[tuple[str, str]] = []
    pkg = spec.apt_packages[0]
    if not _which(spec.cxx):
        missing.append((spec.cxx, f"Debian package {pkg} (apt-get install -y {pkg})"))
    if run and spec.qemu and not _which(spec.qemu[0]):
        missing.append((spec.qemu[0], "Debian package qemu-user (apt-get install -y qemu-user)"))
    if build and _cmake() is None:
        missing.append((f"cmake>={MIN_CMAKE[0]}.{MIN_CMAKE[1]}", "pip install cmake ninja"))
    return missing


def missing_apt_packages(target_names: Iterable[str]) -> list[str]:
    """Debian packages to install so the targets' compiler and emulator commands exist."""
    pkgs: list[str] = []
    for name in target_names:
        spec = get_target(name)
        cmds = [spec.cxx] + ([spec.qemu[0]] if spec.qemu else [])
        for cmd, pkg in zip(cmds, (spec.apt_packages[0], "qemu-user")):
            if not _which(cmd) and pkg not in pkgs:
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


def _recipe_hashes(spec: TargetSpec) -> dict[str, str]:
    common = [RUNTIME_SRC / "CMakeLists.txt"]
    if spec.cmake_toolchain:
        common.append(RUNTIME_SRC / "toolchains" / spec.cmake_toolchain)
    lib_files: list[Path] = []  # wheel libraries depend on the versions only
    if spec.runtime == "source":
        lib_files = common + [p for p in (RUNTIME_SRC / "support").rglob("*") if p.is_file()]
    runner_files = common + [RUNTIME_SRC / "runner" / "tcc_run.cc"]
    return {"libs": _hash_files(lib_files), "runner": _hash_files(runner_files)}


def _expected_stamp(spec: TargetSpec) -> dict[str, Any]:
    tvm_v, ffi_v = tvm_versions()
    return {
        "tvm_version": tvm_v,
        "tvm_ffi_version": ffi_v,
        "arch": spec.arch,
        "runtime_source": spec.runtime,
        "recipe": _recipe_hashes(spec),
    }


def read_stamp(target_name: str) -> dict[str, Any] | None:
    path = runtime_dir(target_name) / "stamp.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _cache_state(spec: TargetSpec, d: Path) -> str:
    """'ok', 'runner' (only the runner is stale), or 'stale'."""
    try:
        stamp = json.loads((d / "stamp.json").read_text())
    except (OSError, ValueError):
        return "stale"
    want = _expected_stamp(spec)
    libs_ok = all((d / "lib" / f).is_file() for f in ("libtvm_ffi.so", "libtvm_runtime.so"))
    same = all(stamp.get(k) == want[k] for k in ("tvm_version", "tvm_ffi_version", "arch", "runtime_source"))
    if not (libs_ok and same and stamp.get("recipe", {}).get("libs") == want["recipe"]["libs"]):
        return "stale"
    if not (d / "bin" / "tcc-run").is_file() or stamp.get("recipe", {}).get("runner") != want["recipe"]["runner"]:
        return "runner"
    return "ok"


# --------------------------------------------------------------------------- building


def _run_logged(cmd: Sequence[str], log_file: Path, log: Log, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> None:
    log(" ".join(str(c) for c in cmd))
    with open(log_file, "a") as f:
        f.write(f"\n$ {' '.join(str(c) for c in cmd)}\n")
        f.flush()
        proc = subprocess.run([str(c) for c in cmd], check=False, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=env)
    if proc.returncode != 0:
        tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise RuntimeBuildError(f"command failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n"
                                f"--- last lines of {log_file} ---\n{tail}")


def _cmake_configure_args(spec: TargetSpec, build_dir: Path, mode: str, lib_dir: Path | None) -> list[str]:
    tvm_dir, ffi_dir = _site_dirs()
    cmake = _cmake()
    if cmake is None:
        raise ToolchainMissing(f"building the TVM runtime needs cmake>={MIN_CMAKE[0]}.{MIN_CMAKE[1]} "
                               "(pip install cmake ninja); " + SETUP_HINT)
    args = [cmake, "-S", str(RUNTIME_SRC), "-B", str(build_dir),
            f"-DTVM_PKG_DIR={tvm_dir}", f"-DTVM_FFI_PKG_DIR={ffi_dir}", f"-DTCC_RUNTIME_MODE={mode}",
            "-DCMAKE_BUILD_TYPE=Release"]
    ninja = _which("ninja")
    if ninja:
        args += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    if spec.cmake_toolchain:
        args.append(f"-DCMAKE_TOOLCHAIN_FILE={RUNTIME_SRC / 'toolchains' / spec.cmake_toolchain}")
    if lib_dir is not None:
        args.append(f"-DTCC_PREBUILT_LIB_DIR={lib_dir}")
    return args


def _build_libs_from_source(spec: TargetSpec, stage: Path, work: Path, log_file: Path, log: Log) -> None:
    build_dir = work / "build-libs"
    _run_logged(_cmake_configure_args(spec, build_dir, "source", None), log_file, log)
    jobs = str(os.cpu_count() or 2)
    _run_logged([_cmake(), "--build", str(build_dir), "--target", "tvm_ffi", "tvm_runtime", "-j", jobs],
                log_file, log)
    for name in ("libtvm_ffi.so", "libtvm_runtime.so"):
        shutil.copy2(build_dir / name, stage / "lib" / name)


def _fetch_wheel_libs(spec: TargetSpec, stage: Path, work: Path, log_file: Path, log: Log) -> None:
    platform = spec.runtime.split(":", 1)[1]
    tvm_v, ffi_v = tvm_versions()
    dl = work / "wheels"
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    _run_logged([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                 "--platform", platform, "--python-version", pyver, "-d", str(dl),
                 f"apache-tvm=={tvm_v}", f"apache-tvm-ffi=={ffi_v}"], log_file, log)
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


def _copy_cxx_runtime(spec: TargetSpec, stage: Path) -> None:
    """Ship the cross toolchain's libstdc++/libgcc_s with the kit (found via RUNPATH)."""
    for name in ("libstdc++.so.6", "libgcc_s.so.1"):
        out = subprocess.run([spec.cxx, f"-print-file-name={name}"], check=False, capture_output=True,
                             text=True).stdout.strip()
        src = Path(out)
        if src.is_absolute() and src.exists():
            shutil.copy2(src.resolve(), stage / "lib" / name)


def _build_runner(spec: TargetSpec, stage: Path, work: Path, log_file: Path, log: Log) -> None:
    build_dir = work / "build-runner"
    _run_logged(_cmake_configure_args(spec, build_dir, "prebuilt", stage / "lib"), log_file, log)
    _run_logged([_cmake(), "--build", str(build_dir), "--target", "tcc-run"], log_file, log)
    (stage / "bin").mkdir(exist_ok=True)
    shutil.copy2(build_dir / "tcc-run", stage / "bin" / "tcc-run")


def _smoke_test(spec: TargetSpec, stage: Path, log_file: Path, log: Log) -> None:
    """Start the runner with every symbol bound now: catches unresolved runtime symbols."""
    env = dict(os.environ, LD_BIND_NOW="1")
    _run_logged([*(spec.qemu or ()), str(stage / "bin" / "tcc-run"), "--help"], log_file, log, env=env)


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
    spec = get_target(target_name)
    return _cache_state(spec, runtime_dir(target_name))


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
    spec = get_target(target_name)
    final = runtime_dir(target_name)
    with _locked(final.parent / f".{final.name}.lock"):
        state = "stale" if rebuild else _cache_state(spec, final)
        if state == "ok":
            return final
        require_tools(target_name, build=True, run=True)
        t0 = time.monotonic()
        stamp = _expected_stamp(spec)  # the recipe as it is when the build starts
        _remove_dead_staging(final)
        stage = final.parent / f".{final.name}.staging-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        (stage / "lib").mkdir(parents=True)
        log_file = stage / "build.log"
        try:
            with tempfile.TemporaryDirectory(prefix=f"tcc-build-{spec.arch}-") as tmp:
                work = Path(tmp)
                if state == "runner":
                    log(f"{target_name}: runtime cached in {final}; rebuilding tcc-run only")
                    for p in (final / "lib").iterdir():
                        shutil.copy2(p, stage / "lib" / p.name)
                    if (final / "build.log").exists():  # keep the library build's log
                        shutil.copy2(final / "build.log", log_file)
                    old = json.loads((final / "stamp.json").read_text())
                else:
                    log(f"{target_name}: preparing the TVM runtime for {spec.arch} ({spec.runtime}) in {final}")
                    old = {}
                    if spec.runtime == "source":
                        log("building libtvm_ffi + libtvm_runtime from the wheel's sources "
                            "(several minutes; cached afterwards)")
                        _build_libs_from_source(spec, stage, work, log_file, log)
                    elif spec.runtime.startswith("wheel:"):
                        _fetch_wheel_libs(spec, stage, work, log_file, log)
                    elif spec.runtime == "host-wheel":
                        _copy_host_wheel_libs(stage)
                    else:
                        raise RuntimeBuildError(f"unknown runtime source {spec.runtime!r}")
                    if spec.is_cross:
                        _copy_cxx_runtime(spec, stage)
                _build_runner(spec, stage, work, log_file, log)
                _smoke_test(spec, stage, log_file, log)
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


def runner_command(target_name: str) -> list[str]:
    """argv prefix that runs tcc-run for the target on this machine (qemu for ARM)."""
    spec = get_target(target_name)
    d = ensure_runtime(target_name)
    return [*(spec.qemu or ()), str(d / "bin" / "tcc-run")]


# --------------------------------------------------------------------------- tensor files (TCCT)

_MAGIC = b"TCCT"


def _dtype_table() -> dict[Any, tuple[int, int]]:
    """numpy dtype -> (DLPack type code, bits)."""
    import numpy as np

    return {
        np.dtype(np.float32): (2, 32), np.dtype(np.float16): (2, 16), np.dtype(np.float64): (2, 64),
        np.dtype(np.int8): (0, 8), np.dtype(np.int16): (0, 16), np.dtype(np.int32): (0, 32),
        np.dtype(np.int64): (0, 64), np.dtype(np.uint8): (1, 8),
    }


def tensor_file_bytes(arr: np.ndarray) -> bytes:
    """One TCCT record (the runner's tensor file format) for ``arr``."""
    import numpy as np

    table = _dtype_table()
    arr = np.ascontiguousarray(arr)
    if arr.dtype not in table:
        raise TypeError(f"unsupported dtype {arr.dtype} for a tensor file")
    code, bits = table[arr.dtype]
    head = _MAGIC + np.array([1, code, bits, arr.ndim, 0], "<u4").tobytes()
    return head + np.array(arr.shape, "<i8").tobytes() + arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def write_tensor_file(path: str | os.PathLike, arr: np.ndarray) -> None:
    Path(path).write_bytes(tensor_file_bytes(arr))


def read_tensor_file(path: str | os.PathLike) -> list[np.ndarray]:
    """All TCCT records in a file (an output file holds one per model output)."""
    import numpy as np

    from_code = {v: k for k, v in _dtype_table().items()}
    buf = Path(path).read_bytes()
    out, off = [], 0
    while off < len(buf):
        if buf[off:off + 4] != _MAGIC or len(buf) - off < 24:
            raise ValueError(f"{path}: not a TCCT tensor record at byte {off}")
        version, code, bits, ndim, _ = np.frombuffer(buf, "<u4", 5, off + 4)
        if version != 1 or (int(code), int(bits)) not in from_code:
            raise ValueError(f"{path}: unsupported record (version {version}, dtype {code}/{bits})")
        dtype = from_code[(int(code), int(bits))]
        shape = tuple(int(d) for d in np.frombuffer(buf, "<i8", int(ndim), off + 24))
        off += 24 + 8 * int(ndim)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if off + n > len(buf):
            raise ValueError(f"{path}: truncated tensor data")
        out.append(np.frombuffer(buf, dtype.newbyteorder("<"), n // dtype.itemsize, off).astype(dtype).reshape(shape))
        off += n
    return out


# --------------------------------------------------------------------------- compile / run


def _relax_pipeline(target: Any, fuse: bool, dlight: bool, tune_dir: str | None = None,
                    tune_trials: int = 0, schedule: bool = True):
    """Relax lowering for CPU: cpu_generic (fusion + constant folding) with ``schedule``: the graph in NHWC and
    tcc's default CPU schedules (backends/tvm_schedule.py) on the fused TIR; optionally dlight's own CPU rules,
    and MetaSchedule: with ``tune_dir`` the fused TIR functions are tuned (``tune_trials`` > 0, records appended
    to the JSON database in ``tune_dir``) and/or the best records of that database are applied.
    Nothing set: tvm.compile's default (unfused, unscheduled)."""
    import tvm
    from tvm import relax
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

    from . import tvm_schedule

    if not fuse and not dlight and not tune_dir and not schedule:
        return "default"
    passes: list[Any] = tvm_schedule.layout_passes() if schedule else []
    passes += list(cpu_generic.library_dispatch_passes(target))
    if fuse:  # cpu_generic's legalization, with PrimFuncs that declare their fusion pattern keeping it
        legalize = list(cpu_generic.legalize_passes(target))
        at = next(i for i, p in enumerate(legalize) if p.info.name == "AnnotateTIROpPattern") + 1
        passes += legalize[:at] + [_declared_op_patterns()] + legalize[at:]
    else:
        passes.append(relax.transform.LegalizeOps())
    if tune_dir:
        if tune_trials > 0:
            passes.append(_meta_schedule_tune(target, tune_dir, tune_trials))
        with target:  # the pass reads the target when it is constructed
            passes.append(relax.transform.MetaScheduleApplyDatabase(tune_dir))
    if schedule:  # after MetaSchedule: what it tuned is marked scheduled and left alone
        passes.append(tvm_schedule.default_schedule_pass())
    if dlight:
        from tvm.s_tir import dlight as dl

        passes.append(dl.ApplyDefaultSchedule(dl.cpu.GEMV(), dl.cpu.Reduction()))
    passes += list(cpu_generic.dataflow_lower_passes(target)) + list(cpu_generic.finalize_passes(target))
    return tvm.transform.Sequential(passes, name="tcc_cpu_pipeline")


def _declared_op_patterns():
    """A module pass: PrimFuncs carrying "tcc.op_pattern" get that as their "op_pattern" (which FuseOps reads),
    overriding AnnotateTIROpPattern's guess (see tvm_int8.requantize_primfunc)."""
    import tvm

    @tvm.transform.module_pass(opt_level=0, name="TccDeclaredOpPatterns")
    def apply(mod, _ctx):
        for gv, func in list(mod.functions_items()):
            pattern = func.attrs.get("tcc.op_pattern") if isinstance(func, tvm.tirx.PrimFunc) and func.attrs else None
            if pattern is not None:
                mod[gv] = func.with_attr("op_pattern", int(pattern))
        return mod

    return apply


_SAVE_JSON_PROBE = """
import tvm
from tvm import te
a = te.placeholder((4,), name="a")
tvm.ir.save_json(tvm.IRModule({"main": te.create_prim_func([a, te.compute((4,), lambda i: a[i] + 1)])}))
"""


def meta_schedule_problem() -> str | None:
    """Why MetaSchedule tuning cannot run with the installed TVM, or None.

    MetaSchedule serializes every IRModule it tunes (its database, TuneContext, the builder's worker processes)
    with tvm.ir.save_json.  apache-tvm 0.27.0.post1 next to apache-tvm-ffi 0.1.15.post2 (pip's choice for
    `apache-tvm-ffi>=0.1.14.post0`) crashes there (SIGSEGV in ffi::ToJSONGraph: the two binaries disagree), even for
    a 4-element PrimFunc; with apache-tvm-ffi 0.1.14.post0, which tools/setup_arm.sh pins (TVM_FFI_PIN), the same
    call works and tuning runs.  The probe runs in a child process so the crash cannot take the build down."""
    import importlib.util

    proc = subprocess.run([sys.executable, "-c", _SAVE_JSON_PROBE], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        why = "crashes (segmentation fault)" if proc.returncode in (-11, 139) else f"fails (exit {proc.returncode})"
        tvm_v, ffi_v = tvm_versions()
        return (f"MetaSchedule tuning is not usable with apache-tvm {tvm_v} + apache-tvm-ffi {ffi_v}: serializing "
                f"an IRModule (tvm.ir.save_json, which MetaSchedule needs) {why}; apache-tvm-ffi {TVM_FFI_PIN} "
                f"does not have this problem (tools/setup_arm.sh installs it; by hand: pip install "
                f"apache-tvm-ffi=={TVM_FFI_PIN}, then tools/setup_arm.sh to rebuild the cached runtimes)")
    missing = [m for m in ("psutil", "cloudpickle") if importlib.util.find_spec(m) is None]
    if missing:
        return (f"MetaSchedule tuning needs the Python package(s) {', '.join(missing)} (pip install "
                f"{' '.join(missing)}; tools/setup_arm.sh installs them)")
    return None


def _meta_schedule_build(mod: Any, target: Any, _params: Any) -> Any:
    """MetaSchedule's builder function (run in its builder worker processes): its default_build without the
    ``import tvm.s_tir.tensor_intrin`` in front.  That import registers every tensor intrinsic (CUDA, ROCm, ARM,
    Hexagon, ...) by parsing TVMScript, ~30 s per process on this 2-core machine (inspect.getsource walks
    sys.modules for each of them); LocalBuilder starts fresh workers for every batch, so with the default each
    build hit the 30 s timeout and no candidate was ever measured.  Building lowers already scheduled (and, for
    tensorized candidates, already tensorized) TIR: the registry is not needed here."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)


@contextlib.contextmanager
def _quick_inspect_stack():
    """inspect.stack() without resolving each frame's module, while MetaSchedule starts.

    TuneContext imports tvm.s_tir.tensor_intrin, whose ~250 TVMScript PrimFuncs each call inspect.stack() (the
    parser looks for enclosing frames' locals and the decorator's line).  For every frame whose file does not exist
    (``<frozen importlib._bootstrap>``: the import machinery) inspect.getmodule scans all of sys.modules, so the
    import took 30-60 s here, scaling with the number of loaded modules.  This stand-in returns the same
    FrameInfo records (frame, file, line number, function, the current line as code_context) straight from the
    frames, without the module scan: the import takes ~3 s."""
    import inspect
    import linecache

    original = inspect.stack

    def stack(context: int = 1):
        out, frame = [], sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            line = linecache.getline(code.co_filename, frame.f_lineno, frame.f_globals) if context > 0 else ""
            out.append(inspect.FrameInfo(frame, code.co_filename, frame.f_lineno, code.co_name,
                                         [line] if line else None, 0 if line else None))
            frame = frame.f_back
        return out

    inspect.stack = stack
    try:
        yield
    finally:
        inspect.stack = original


TUNE_POPULATION = 128  # EvolutionarySearch's population (default 512: ~25 s per search iteration here, 128: ~6 s)
TUNE_TRIALS_PER_TASK = 32  # a budget of N trials tunes the N // 32 heaviest functions (at least one)


def _tune_plan(tasks: list[Any], trials: int) -> tuple[list[Any], int, int]:
    """(tasks to tune, trials per task, trials per search iteration) for a budget of ``trials``.

    MetaSchedule would spread the budget over every fused function (DDSNet: 64, 18 of them concats and transposes
    that tcc's Injective rule already vectorizes) in rounds of 64 trials each, so a budget of a few hundred trials
    would tune the first few functions in whatever order the extraction gives.  Instead the budget goes to the
    functions with the most floating-point work (weight x estimated FLOPs; DDSNet's 7x7 stem conv alone is 41% of
    the model), at least TUNE_TRIALS_PER_TASK trials each; everything else keeps tcc's default schedules."""
    import tvm

    def work(task) -> float:
        return float(task.weight) * float(tvm.s_tir.analysis.estimate_tir_flops(task.dispatched[0]))

    heavy = sorted((t for t in tasks if work(t) > 0), key=work, reverse=True)
    if not heavy:
        return [], 0, 0
    n = max(1, min(len(heavy), trials // TUNE_TRIALS_PER_TASK))
    per_task = max(1, trials // n)
    # a search iteration costs seconds whatever its size (the population is evolved, then the batch is built in
    # fresh worker processes): small budgets run in one iteration, larger ones in iterations of 16..64 trials so
    # that the cost model learns in between
    return heavy[:n], per_task, min(per_task, 64, max(16, per_task // 2))


def _record_default_schedules(tasks: list[Any], target: Any, database: Any, builder: Any, runner: Any) -> int:
    """Measure tcc's own schedule (backends/tvm_schedule.py) of each task with MetaSchedule's builder and runner and
    commit it to the database as a tuning record (its trace replays to the same TIR).  So the search competes with
    it: MetaScheduleApplyDatabase applies whichever measured faster, a small budget never leaves a function slower
    than the untuned build (up to timing noise), and the evolutionary search's initial population includes it.
    Returns the number of records added."""
    from tvm.s_tir import meta_schedule as ms

    from . import tvm_schedule

    rules = tvm_schedule.default_schedule_pass().rules
    todo = []
    for task in tasks:
        workload_mod = task.dispatched[0]
        func = workload_mod["main"]
        sch = next((s for s in (r.apply(func, target, False) for r in rules) if s is not None), None)
        if isinstance(sch, list):
            sch = sch[0] if sch else None
        if sch is None:
            continue
        workload = database.commit_workload(workload_mod)
        trace = str(sch.trace)
        if any(str(rec.trace) == trace for rec in database.get_top_k(workload, 1 << 20)):
            continue  # measured by an earlier build
        todo.append((sch, workload, func))
    if not todo:
        return 0
    built = builder.build([ms.builder.BuilderInput(sch.mod, target) for sch, _, _ in todo])
    inputs, kept = [], []
    for (sch, workload, func), b in zip(todo, built):
        if b.error_msg is None:
            inputs.append(ms.runner.RunnerInput(b.artifact_path, "cpu", ms.arg_info.ArgInfo.from_prim_func(func)))
            kept.append((sch, workload, func))
    added = 0
    for (sch, workload, func), future in zip(kept, runner.run(inputs)):
        res = future.result()
        if res.error_msg is None and res.run_secs:
            database.commit_tuning_record(ms.database.TuningRecord(
                sch.trace, workload, res.run_secs, target, ms.arg_info.ArgInfo.from_prim_func(func)))
            added += 1
    return added


def _meta_schedule_tune(target: Any, work_dir: str, trials: int):
    """A module pass that tunes the heaviest fused TIR functions with MetaSchedule (_tune_plan) and appends the
    records to the JSON database in ``work_dir`` (applied by MetaScheduleApplyDatabase after it), tcc's own
    schedule of each of them recorded first as the one to beat (_record_default_schedules).  Like
    relax.transform.MetaScheduleTuneIRMod otherwise, but the cost model falls back to random search when xgboost
    is not installed (MetaScheduleTuneIRMod insists on xgboost), the search is seeded, and the builder skips the
    tensor-intrinsic registry (_meta_schedule_build).  Candidates are timed with the TVM runtime's default thread
    count (TVM_NUM_THREADS when set)."""
    import tvm

    @tvm.transform.module_pass(opt_level=0, name="TccMetaScheduleTune")
    def tune(mod, _ctx):
        import importlib.util

        from tvm.s_tir import meta_schedule as ms

        with _quick_inspect_stack():
            import tvm.s_tir.tensor_intrin  # noqa: F401  (what TuneContext imports first)
        rel = ms.relax_integration
        tasks, per_task, per_iter = _tune_plan(rel.extract_tasks(mod, target), trials)
        if not tasks:
            return mod
        database = ms.database.JSONDatabase(work_dir=work_dir)
        builder = ms.builder.LocalBuilder(f_build=_meta_schedule_build)
        runner = ms.runner.LocalRunner()
        _record_default_schedules(tasks, target, database, builder, runner)
        strategy = ms.search_strategy.EvolutionarySearch(population_size=TUNE_POPULATION)
        contexts, weights = rel.extracted_tasks_to_tune_contexts(tasks, work_dir, strategy=strategy, seed=0)
        ms.tune_tasks(tasks=contexts, task_weights=weights, work_dir=work_dir,
                      max_trials_global=per_task * len(tasks), max_trials_per_task=per_task,
                      num_trials_per_iter=per_iter, builder=builder, runner=runner, database=database,
                      cost_model="xgb" if importlib.util.find_spec("xgboost") else "random")
        return mod

    return tune


def resolve_tvm_target(target_name: str) -> dict[str, Any]:
    """The registry's TVM target dict, with ``"mcpu": "native"`` replaced by this machine's CPU
    name (LLVM refuses "native" next to an explicit mtriple)."""
    import tvm

    d = get_target(target_name).tvm_target_dict()
    if d.get("mcpu") == "native":
        d["mcpu"] = str(tvm.target.codegen.llvm_get_system_cpu())
    return d


def import_onnx(onnx_model: Any, shape_dict: dict[str, list[int]] | None = None) -> Any:
    """ONNX (ModelProto or path) -> Relax IRModule with the weights as constants."""
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    model = onnx.load(str(onnx_model)) if isinstance(onnx_model, (str, os.PathLike)) else onnx_model
    return relax_clips(from_onnx(model, shape_dict=shape_dict, keep_params_in_input=False))


def relax_clips(mod: Any) -> Any:
    """The frontend's Clip with constant bounds -- prebuilt TE kernels, call_tir(maximum / minimum, x, bound) --
    as the Relax ops R.maximum / R.minimum: the same values. Why: Relax's ConvertLayout cannot move a call_tir to
    NHWC, so every ReLU6 of FastNet / MobileNetV2 was wrapped in two transposes. (Rewriting the ONNX Clip as
    Max / Min instead does not work: the frontend turns those into broadcast + stack + reduce.)"""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    call_tir = tvm.ir.Op.get("relax.call_tir")
    ops = {"maximum": (relax.op.maximum, "T.max("), "minimum": (relax.op.minimum, "T.min(")}

    @mutator
    class Clips(PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if call.op != call_tir or not isinstance(call.args[1], relax.Tuple) or len(call.args[1].fields) != 2:
                return call
            kind = next((k for k in ops if call.args[0].name_hint.startswith(k)), None)
            x, bound = call.args[1].fields
            if isinstance(bound, relax.Var):
                bound = self.lookup_binding(bound)
            if (kind is None or not isinstance(bound, tvm.ir.GenericConst) or len(bound.ty.shape) != 0
                    or ops[kind][1] not in mod[call.args[0]].script()):
                return call
            return ops[kind][0](x, bound)

    mod = relax.transform.FoldConstant()(mod)  # the frontend's NaN guards on the bounds become constants
    mod["main"] = Clips(mod).visit_expr(mod["main"])
    return relax.transform.DeadCodeElimination()(mod)


def _physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def compile_module(mod: Any, target_name: str, out_path: str | os.PathLike | None = None, *,
                   fuse: bool = True, dlight: bool = False, tune_dir: str | os.PathLike | None = None,
                   tune_trials: int = 0, schedule: bool = True, ieee: bool = False) -> Path:
    """Compile a Relax IRModule (``main``) for a target and export it as a shared library linked
    by the target's (cross) C++ compiler; returns the .so path.  See compile_onnx for the options;
    ``ieee``: drop the target's fast-math (INT8 modules: their float steps -- quantizing the input,
    dequantizing the output -- must round exactly like the reference; fast-math turns x / s into
    x * (1 / s), which moves codes at ties)."""
    import tvm
    from tvm.support import cc

    spec = get_target(target_name)
    require_tools(target_name, build=False, run=False)
    target_dict = resolve_tvm_target(target_name)
    if ieee:
        target_dict.pop("fast-math", None)
    if tune_dir:  # MetaSchedule sizes its parallel schedules by the threads the candidates are timed with
        Path(tune_dir).mkdir(parents=True, exist_ok=True)
        threads = os.environ.get("TVM_NUM_THREADS", "")
        target_dict["num-cores"] = int(threads) if threads.isdigit() and int(threads) > 0 else _physical_cores()
    target = tvm.target.Target(target_dict)
    pipeline = _relax_pipeline(target, fuse, dlight, str(tune_dir) if tune_dir else None, tune_trials, schedule)
    ex = tvm.compile(mod, target=target, relax_pipeline=pipeline)
    if out_path is None:
        out_dir = Path(tempfile.mkdtemp(prefix=f"tcc-{spec.name}-"))
        out_path = out_dir / f"model-{spec.name}.so"
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fcompile = cc.cross_compiler(spec.cxx) if spec.is_cross else None
    if fcompile is None:
        ex.export_library(str(out_path))
    else:
        ex.export_library(str(out_path), fcompile=fcompile)
    return out_path


def compile_onnx(onnx_model: Any, target_name: str, out_path: str | os.PathLike | None = None, *,
                 fuse: bool = True, dlight: bool = False, shape_dict: dict[str, list[int]] | None = None,
                 tune_dir: str | os.PathLike | None = None, tune_trials: int = 0, schedule: bool = True) -> Path:
    """Compile an ONNX model (ModelProto or path) FP32 for a target; returns the exported .so.

    Relax ONNX frontend -> tvm.compile(target dict from the registry) -> export_library linked by
    the target's (cross) C++ compiler.  ``fuse``: cpu_generic pipeline (FuseOps/FuseTIR/
    FoldConstant) instead of tvm.compile's unfused default; ``schedule``: NHWC layout and tcc's CPU
    schedules (backends/tvm_schedule.py; DDSNet 217 ms -> 7.9 ms on one core);
    ``dlight``: add dlight's CPU rules (GEMV, Reduction) -- off by default: on a conv+GAP+gemm
    net they made the host code 4x slower (0.09 ms vs 0.02 ms), they target LLM-style GEMV.
    ``tune_dir``/``tune_trials``: MetaSchedule (see _relax_pipeline); tuning measures candidates
    on this machine, so it is meant for the host target.
    """
    require_tools(target_name, build=False, run=False)
    mod = import_onnx(onnx_model, shape_dict)
    return compile_module(mod, target_name, out_path, fuse=fuse, dlight=dlight, tune_dir=tune_dir,
                          tune_trials=tune_trials, schedule=schedule)


def run_module(so_path: str | os.PathLike, target_name: str, inputs: np.ndarray | Sequence[np.ndarray], *,
               threads: int | None = 1, repeat: int = 0, timeout: float = 600,
               extra_args: Sequence[str] = (), runner: str | os.PathLike | None = None,
               ) -> tuple[list[np.ndarray], float | None]:
    """Run a compiled module with the target's tcc-run (under qemu for ARM targets).

    ``runner``: a tcc-run to use instead of the cache's (a bundle's kit/bin/tcc-run).
    Returns (outputs, median latency in ms if repeat > 0).  threads=None: runtime default.
    """
    import numpy as np

    if runner is None:
        cmd_prefix = runner_command(target_name)
    else:
        cmd_prefix = [*(get_target(target_name).qemu or ()), str(runner)]
    arrays = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    with tempfile.TemporaryDirectory(prefix="tcc-run-") as tmp:
        in_paths = []
        for i, a in enumerate(arrays):
            p = Path(tmp) / f"input{i}.bin"
            write_tensor_file(p, np.asarray(a))
            in_paths.append(str(p))
        out_path = Path(tmp) / "output.bin"
        cmd = [*cmd_prefix, "--quiet"]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        if repeat:
            cmd += ["--repeat", str(repeat)]
        cmd += [*extra_args, str(so_path), *in_paths, str(out_path)]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RunError(f"tcc-run failed for {target_name} (exit {proc.returncode}): "
                           f"{' '.join(cmd)}\n{proc.stderr.strip()}")
        outs = read_tensor_file(out_path)
    latency = None
    m = re.search(r"latency_ms median ([0-9.eE+-]+)", proc.stderr)
    if m:
        latency = float(m.group(1))
    return outs, latency


def run_under_qemu(so_path: str | os.PathLike, target_name: str,
                   inputs: np.ndarray | Sequence[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """Run a compiled module on its target via the runner (qemu for ARM, natively for host).

    Returns the output array (a list of arrays when the model has several outputs)."""
    outs, _ = run_module(so_path, target_name, inputs)
    return outs[0] if len(outs) == 1 else outs


# --------------------------------------------------------------------------- instruction mix

_ARMV7_NEON_ONLY = re.compile(
    r"^v(ld[1-4]|st[1-4]|dup|ext|zip|uzp|trn|tbl|tbx|bsl|bit|bif|rev(16|32|64)|movl|movn|qmovn|qmovun|"
    r"pad[dl]?|pmax|pmin|padal|recpe|recps|rsqrte|rsqrts|cnt|clz|cls|swp|shl|shr|sra|sli|sri|qshl|rshr|"
    r"rsra|qrshl|qrshr|addl|addw|subl|subw|mull|mlal|mlsl|qdmull|qdmulh|qrdmulh|tst|and|orr|eor|bic|orn)")


def _is_armv7_neon(mnemonic: str, operands: str) -> bool:
    if not mnemonic.startswith("v"):
        return False
    if re.search(r"\bq\d+\b", operands):
        return True
    base = mnemonic.split(".")[0]
    if _ARMV7_NEON_ONLY.match(base):
        return True
    # VFP's only d-register arithmetic is .f64; any other typed op on d registers is NEON.
    return bool(re.search(r"\bd\d+\b", operands) and re.search(r"\.(f32|f16|[isu]\d+)\b", mnemonic)
                and base not in ("vmov", "vldr", "vstr", "vpush", "vpop", "vldmia", "vstmia", "vcvt"))


def _is_aarch64_simd(mnemonic: str, operands: str) -> bool:
    return bool(re.search(r"\bv\d+\.\d*[bhsd]\b", operands) or
                (mnemonic.startswith(("ld", "st")) and re.search(r"\bq\d+\b", operands)))


def instruction_mix(so_path: str | os.PathLike, target_name: str) -> dict[str, Any]:
    """Vector-instruction evidence from ``objdump -d`` of a compiled module.

    Returns {"arch", "total" (instructions), "simd" (NEON/AdvSIMD instructions), "simd_by_mnemonic"
    (Counter, base mnemonic without type suffix), "simd_by_full_mnemonic"}.  host: AVX/SSE
    (ymm/zmm/xmm operands) is counted as simd.
    """
    spec = get_target(target_name)
    objdump = spec.objdump
    if not _which(objdump):
        raise ToolchainMissing(f"`{objdump}` not found (Debian package {spec.apt_packages[0]})")
    text = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(so_path)], capture_output=True, text=True,
                          check=True).stdout
    total, simd = 0, 0
    by_base: Counter[str] = Counter()
    by_full: Counter[str] = Counter()
    for line in text.splitlines():
        m = re.match(r"^\s*[0-9a-f]+:\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        mnem, ops = m.group(1), m.group(2).split(";")[0].split("//")[0].split("@")[0]
        if mnem.startswith(".") or mnem == "(bad)":
            continue
        total += 1
        if spec.arch == "armv7":
            is_simd = _is_armv7_neon(mnem, ops)
        elif spec.arch == "aarch64":
            is_simd = _is_aarch64_simd(mnem, ops)
        else:
            is_simd = bool(re.search(r"%[xyz]mm\d+", ops)) and mnem.startswith("v")
        if is_simd:
            simd += 1
            by_base[mnem.split(".")[0]] += 1
            by_full[mnem] += 1
    return {"arch": spec.arch, "total": total, "simd": simd,
            "simd_by_mnemonic": dict(by_base.most_common()), "simd_by_full_mnemonic": dict(by_full.most_common())}


# --------------------------------------------------------------------------- CLI


def _dir_size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tcc.backends.tvm_runtime", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("ensure", "check", "info", "apt-missing"):
        p = sub.add_parser(name)
        p.add_argument("targets", nargs="+", metavar="TARGET", help=f"one of {', '.join(known_targets())}")
        if name == "ensure":
            p.add_argument("--rebuild", action="store_true", help="ignore the cache")
    args = ap.parse_args(argv)
    status = 0
    try:
        for t in args.targets:
            get_target(t)  # unknown names fail before any work
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
                print(json.dumps({"target": t, "dir": str(d), "exists": d.exists(),
                                  "size_mib": round(_dir_size(d) / 2**20, 1) if d.exists() else None,
                                  "stamp": read_stamp(t)}, indent=2))
    except (ToolchainMissing, RuntimeBuildError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
