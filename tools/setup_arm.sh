#!/usr/bin/env bash
# `make setup-arm`: the TVM backend's toolchains and runtimes for the checkout's venv, by `tcc setup` (the same
# command a wheel user runs; tcc.backends.tvm.setup has the steps). Idempotent: each step is skipped when done.
#
#   tools/setup_arm.sh [TARGET...]        default targets: host arm-a7 aarch64
#
#   1. Debian packages: the cross compilers + qemu-user (apt-get; needs root, or sudo)
#   2. Python packages into the venv: apache-tvm + apache-tvm-ffi (pinned: tcc.backends.tvm.runtime.TVM_PIN), the
#      tuner's psutil, cloudpickle and xgboost-cpu, cmake, ninja
#   3. TVM runtime + tcc-run per target into ~/.cache/tcc/tvm-runtime-<tvm version>-<arch>/ ($TCC_CACHE_DIR
#      overrides ~/.cache/tcc); arm-a7 builds the runtime from source (several minutes, once)
#
# Environment: PYTHON (default: .venv/bin/python of the repository), TCC_SKIP_APT=1 (do not touch Debian
# packages; fail if they are missing).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"

[ -x "$PYTHON" ] || { echo "[setup_arm] ERROR: no Python at $PYTHON: make venv first, or set PYTHON=..." >&2; exit 1; }
"$PYTHON" -c 'from tcc.backends.tvm.setup import setup' 2>/dev/null \
  || { echo "[setup_arm] ERROR: cannot import tcc with $PYTHON: install the project first (make venv)" >&2; exit 1; }
apt=()
[ "${TCC_SKIP_APT:-0}" = 1 ] && apt=(--no-apt)
cd "$REPO"
exec "$PYTHON" -m tcc setup "${apt[@]}" "$@"
