# auditseal: `make test` is what CI runs (.ci/run); `make demo` shows the whole flow.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PYTEST_ARGS ?=

.PHONY: help install test lint typecheck unit bench demo clean

help:
	@echo "make test   - set up .venv and node_modules, then ruff, mypy and pytest"
	@echo "make bench  - run the benchmarks and rewrite docs/BENCHMARKS.md"
	@echo "make demo   - the whole flow on this machine (see README)"

# The venv is rebuilt when pyproject.toml changes; the stamp file records a finished install.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

install: $(VENV)/.installed node_modules/.installed

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy verifier sealer ingest infra anchor

unit: install
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

bench: install
	$(PY) -m bench.merkle
	$(PY) -m bench.ingest
	$(PY) -m bench.sealer
	$(PY) -m bench.anchor
	$(PY) -m bench.verify

demo: install
	@echo "make demo: the full pipeline demo arrives with the sealer, anchor and monitor." >&2
	@echo "Meanwhile: see README.md, 'Try the log format'." >&2
	@exit 2

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
