# Two entry points: `make demo` (the main job on built-in defaults) and `make test`.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: venv setup-arm demo tour lint test rivals clean

venv: $(STAMP)

# torchvision's model definitions are the tests' reference for the zoo (tests/helpers/torchvision_reference.py). The
# 0.28.0 wheel (the release paired with torch 2.13) depends on the CUDA torch; --no-deps keeps the CPU torch, and
# the tests import only its plain-Python models (its compiled operators do not load beside the CPU torch).
TORCHVISION := torchvision==0.28.0
# timm's model definitions are the import tests' models from outside torchvision (tests/onnx_import/test_timm.py).
# --no-deps like torchvision: built with pretrained=False, timm needs neither huggingface_hub nor safetensors (it
# imports them only to download weights), and nothing is downloaded at run time.
TIMM := timm==1.0.29
# MONAI's 2-D networks (U-Net, BasicUNet, SegResNet, ...) are the import census's and tests' segmentation models
# (tools/import_census.py, tests/tools/test_import_census.py). --no-deps: its networks need only torch and numpy.
MONAI := monai==1.6.1

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps $(TORCHVISION) $(TIMM) $(MONAI)
	touch $(STAMP)

# TVM backend: cross compilers + qemu-user (apt-get, as root), apache-tvm/cmake/ninja (venv), and the TVM
# runtime + tcc-run per architecture cached in ~/.cache/tcc (arm-a7 built from source once, ~4 min). Idempotent.
setup-arm: venv
	PYTHON=$(BIN)/python tools/setup_arm.sh

demo: venv setup-arm
	tools/demo.sh

# the long tour after the demo (its crops, tables and trained model): ARM and x86 twins, QAT, W8A16, t-SNE,
# your own ONNX model, attention in YAML
tour: demo
	tools/tour.sh

# ruff (lint, then the formatting as a check) and mypy (tools/typecheck.py); settings in pyproject.toml
lint: venv
	$(BIN)/ruff check --quiet .
	$(BIN)/ruff format --check --quiet .
	$(BIN)/python tools/typecheck.py

# The checks, then one worker per CPU, each test file on one worker (module fixtures build their bundles once).
test: venv setup-arm lint
	$(BIN)/python -m pytest -q -n auto --dist loadfile -m 'not slow'

# The quality rivals' own environment: NNCF and AIMET pin their own numpy / onnx / torch, so they stay out of tcc's
# (`tools/quality_compare.py --rivals-python .venv-rivals/bin/python`, `tools/import_census.py --rivals-python ...`).
# torch first, pinned: AIMET needs one, and this is the CPU wheel tcc's own environment has.
RIVALS := .venv-rivals
rivals: $(RIVALS)/.installed

$(RIVALS)/.installed: Makefile
	test -x $(RIVALS)/bin/python || $(PY) -m venv $(RIVALS)
	$(RIVALS)/bin/pip install --quiet torch==2.13.0
	$(RIVALS)/bin/pip install --quiet nncf==3.4.0 aimet-onnx==2.42.0 torch==2.13.0 onnx==1.23.2 onnxruntime==1.32.0
	touch $@

clean:
	rm -rf $(VENV) $(RIVALS) build *.egg-info
