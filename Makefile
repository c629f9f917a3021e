# Two entry points: `make demo` (the main job on built-in defaults) and `make test`.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: venv setup-arm demo test clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# TVM backend: cross compilers + qemu-user (apt-get, as root), apache-tvm/cmake/ninja (venv), and the TVM
# runtime + tcc-run per architecture cached in ~/.cache/tcc (arm-a7 built from source once, ~4 min). Idempotent.
setup-arm: venv
	PYTHON=$(BIN)/python tools/setup_arm.sh

demo: venv setup-arm
	tools/demo.sh

# One worker per CPU, each test file on one worker (module fixtures build their bundles once).
test: venv setup-arm
	$(BIN)/python -m pytest -q -n auto --dist loadfile

clean:
	rm -rf $(VENV) build *.egg-info
