#!/usr/bin/env bash
# Every entry of the golden set, the slow ones included (CI checks those not marked slow in tests/golden/golden.yaml).
# Before a release, or after a change to a backend CI does not cover in full. Extra arguments go to `tcc golden
# check` (e.g. --model ddsnet, --json).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/tcc golden check tests/golden --all "$@"
