#!/bin/sh
# Every zoo spec, not only CI's subset (tests/helpers/int8_zoo.py: CI_SUBSET), through the INT8 builds on ONNX Runtime and
# the TVM host target and the TFLite FP32 conversion, each against its recorded quality floor (tests/int8_zoo.json).
# About 10 minutes on 2 cores for the 14 specs before issue 17; its ten specs took 27 min (ort) and 42 min (host)
# more, one build at a time, on a 2-core machine shared with other work. Run before a release, or after a change to
# the integer op table.
set -e
cd "$(dirname "$0")/.."
TCC_ZOO=all exec .venv/bin/python -m pytest -q -n auto --dist load tests/zoo/test_int8_ort.py \
    tests/zoo/test_int8_host.py "tests/backends/test_tflite.py::test_every_zoo_spec_converts_fp32" "$@"
