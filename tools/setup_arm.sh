#!/usr/bin/env bash
# Set up the TVM backend's toolchains and runtimes.  Idempotent: each step is skipped when done.
#
#   tools/setup_arm.sh [TARGET...]        default targets: host arm-a7 aarch64
#
#   1. Debian packages: the cross compilers + qemu-user (apt-get; needs root, or sudo)
#   2. Python packages into the venv: apache-tvm + apache-tvm-ffi (pinned), MetaSchedule's psutil, cloudpickle and
#      xgboost-cpu (for `tcc build --target host --tune N`), cmake, ninja
#   3. TVM runtime + tcc-run per target into ~/.cache/tcc/tvm-runtime-<tvm version>-<arch>/
#      ($TCC_CACHE_DIR overrides ~/.cache/tcc).  arm-a7 builds the runtime from source
#      (several minutes, once); aarch64 takes it from PyPI's aarch64 wheel; host from the venv.
#
# Environment: PYTHON (default: .venv/bin/python of the repository), TCC_TVM_VERSION, TCC_TVM_FFI_VERSION,
# TCC_SKIP_APT=1 (do not touch Debian packages; fail if they are missing).
#
# Why apache-tvm-ffi is pinned: apache-tvm 0.27.0.post1 asks for apache-tvm-ffi>=0.1.14.post0 and pip picks
# 0.1.15.post2, with which tvm.ir.save_json segfaults (ffi::ToJSONGraph), and MetaSchedule serializes every module
# it tunes with it.  0.1.14.post0 works (host, and PyPI has its aarch64 wheel for the aarch64 runtime).  A venv
# with another apache-tvm-ffi is switched to the pin; the cached runtimes, keyed by both versions, are rebuilt.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(host arm-a7 aarch64)

say() { printf '[setup_arm] %s\n' "$*" >&2; }
die() { printf '[setup_arm] ERROR: %s\n' "$*" >&2; exit 1; }

[ -x "$PYTHON" ] || die "no Python at $PYTHON: create the venv first (make venv), or set PYTHON=..."
# the pins are defined once, in backends/tvm/runtime.py (TVM_PIN, TVM_FFI_PIN)
pins="$("$PYTHON" -c 'from tcc.backends.tvm.runtime import TVM_PIN, TVM_FFI_PIN; print(TVM_PIN, TVM_FFI_PIN)')" \
  || die "cannot import tcc with $PYTHON: install the project first (make venv)"
read -r PIN_TVM PIN_FFI <<< "$pins"
TVM_VERSION="${TCC_TVM_VERSION:-$PIN_TVM}"
TVM_FFI_VERSION="${TCC_TVM_FFI_VERSION:-$PIN_FFI}"

# ---------------------------------------------------------------- 1. Debian packages
# The target registry (backends/targets.py) names the packages; unknown targets fail here.
pkg_list="$("$PYTHON" -m tcc.backends.tvm.runtime apt-missing "${TARGETS[@]}")" \
  || die "cannot resolve targets: ${TARGETS[*]}"
need_pkgs=()
[ -n "$pkg_list" ] && read -r -a need_pkgs <<< "$pkg_list"
command -v g++ >/dev/null 2>&1 || need_pkgs+=(g++)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  # shellcheck disable=SC2207
  need_pkgs=($(printf '%s\n' "${need_pkgs[@]}" | sort -u))
  [ "${TCC_SKIP_APT:-0}" = 1 ] && die "missing Debian packages: ${need_pkgs[*]} (TCC_SKIP_APT=1 set)"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "missing Debian packages ${need_pkgs[*]}; run as root: apt-get install -y ${need_pkgs[*]}"
    SUDO="sudo"
  fi
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: install ${need_pkgs[*]} (or equivalents) by hand"
  say "installing Debian packages: ${need_pkgs[*]}"
  t0=$SECONDS
  $SUDO apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null \
    || die "apt-get install ${need_pkgs[*]} failed"
  say "Debian packages installed in $((SECONDS - t0)) s"
else
  say "Debian packages: already installed"
fi

# ---------------------------------------------------------------- 2. Python packages
have_tvm="$("$PYTHON" - <<'EOF' 2>/dev/null || true
from importlib import metadata
for name in ("apache-tvm", "apache-tvm-ffi"):
    try:
        print(metadata.version(name), end=" ")
    except metadata.PackageNotFoundError:
        print("-", end=" ")
EOF
)"
pip_pkgs=()
# both together, so that pip cannot move apache-tvm-ffi off the pin when it installs apache-tvm
[ "$have_tvm" = "$TVM_VERSION $TVM_FFI_VERSION " ] || pip_pkgs+=("apache-tvm==$TVM_VERSION" "apache-tvm-ffi==$TVM_FFI_VERSION")
# MetaSchedule (--tune): psutil + cloudpickle are required; xgboost-cpu (its cost model; the CPU-only build, ~20 MB,
# not xgboost's 350 MB CUDA/NCCL one) is optional: without it the tuner falls back to random search
for mod_pkg in psutil:psutil cloudpickle:cloudpickle xgboost:xgboost-cpu; do
  "$PYTHON" -c "import ${mod_pkg%%:*}" 2>/dev/null || pip_pkgs+=("${mod_pkg#*:}")
done
"$PYTHON" - <<'EOF' 2>/dev/null || pip_pkgs+=("cmake>=3.26" "ninja")
import os, re, subprocess, sys
bindir = os.path.dirname(sys.executable)
out = subprocess.run([os.path.join(bindir, "cmake"), "--version"], capture_output=True, text=True).stdout
m = re.search(r"version (\d+)\.(\d+)", out)
assert m and (int(m.group(1)), int(m.group(2))) >= (3, 18)
assert os.access(os.path.join(bindir, "ninja"), os.X_OK)
EOF
if [ ${#pip_pkgs[@]} -gt 0 ]; then
  say "installing into $("$PYTHON" -c 'import sys; print(sys.prefix)'): ${pip_pkgs[*]}"
  t0=$SECONDS
  "$PYTHON" -m pip install --quiet "${pip_pkgs[@]}" || die "pip install ${pip_pkgs[*]} failed"
  say "Python packages installed in $((SECONDS - t0)) s"
else
  say "Python packages: apache-tvm $TVM_VERSION, apache-tvm-ffi $TVM_FFI_VERSION, psutil, cloudpickle, xgboost, cmake, ninja already installed"
fi

# ---------------------------------------------------------------- 3. runtimes + tcc-run
say "TVM runtimes + tcc-run for: ${TARGETS[*]}"
cd "$REPO"
"$PYTHON" -m tcc.backends.tvm.runtime ensure "${TARGETS[@]}" \
  || die "building the TVM runtimes failed (see the log named above)"
say "done"
