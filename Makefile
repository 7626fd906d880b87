# Two commands on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export DEEPKIT_DATA ?= $(abspath ../shared/datasets)

.PHONY: demo test test-all bench lint install clean

# torch is installed first, pinned, so that deepkit's own range (which 2.13.0 satisfies)
# pulls nothing more: an unpinned torch on an empty venv would fetch several GB of CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/deepkit train digits_cnn --out runs/demo --overwrite
	$(BIN)/deepkit predict runs/demo runs/demo/samples/*.png

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The browser test drives a real headless Chromium; its download needs network access to Playwright's host.
# Without it the test skips and says why, so a failed install does not fail `make test-all`.
test-all: $(STAMP)
	$(BIN)/python -m playwright install chromium || echo "warning: Chromium for Playwright could not be installed; tests/test_serve_browser.py will skip"
	$(BIN)/python -m pytest -q -m ""

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/quality.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf runs build dist src/*.egg-info .pytest_cache
