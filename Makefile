# Two entry points: `make demo` (the main job on built-in defaults) and `make test`.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: venv demo test clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: venv
	$(BIN)/tcc check spec/ddsnet.yaml
	$(BIN)/tcc predict spec/ddsnet.yaml --weights ../shared/fixtures/ddsnet/GC_DDS_0.0064.pth --by-order --image ../shared/fixtures/ddsnet/GC.png --json

test: venv
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
