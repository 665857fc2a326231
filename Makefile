# Lintas developer entry points. `make demo` and `make test` do the whole set-up.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench bench-fingerprint bench-check install clean

$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11+ is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lintas demo

# CI runs only `make test`, so the lint gates (layer contracts included) run here too.
test: lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) benchmarks/relay.py

# FVC2004 from ../shared/data (or $$LINTAS_DATA); DB3_B is 512 ppi.
bench-fingerprint: $(STAMP)
	$(PY) benchmarks/fingerprint.py --ppi DB3_B=512 --sizes 0

# End-to-end fingerprint check latency: hub + 2 nodes, a 100k-finger gallery at IDN.
bench-check: $(STAMP)
	$(PY) benchmarks/check.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
