#!/usr/bin/env bash
# The tests marked `slow` (pyproject.toml), which `make test` leaves out to keep CI within its time budget: each is a
# larger-scale repeat of what a fast test checks (the full `tcc bench --quick` run, the aarch64 qemu check beside
# arm-a7's, TVM tuning). Run before a release or after a change to what they cover. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -q -n auto --dist loadfile -m slow "$@"
