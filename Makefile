# auditseal: `make test` is what CI runs (.ci/run); `make demo` shows the whole flow.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PYTEST_ARGS ?=

.PHONY: help install test lint typecheck unit bench demo up down clean

help:
	@echo "make test   - set up .venv and node_modules, then ruff, mypy and pytest"
	@echo "make bench  - run the benchmarks and rewrite docs/BENCHMARKS.md"
	@echo "make demo   - the whole flow on this machine, then everything stopped (see README)"
	@echo "make up     - the stack and pipeline kept running (dashboard http://127.0.0.1:8088/)"
	@echo "make down   - stop what make up started"

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

# mypy cannot follow the editable install's import hook, so it reads the rooms through a tree of
# links laid out like the installed package (pyproject.toml's package-dir).
TYPECHECK_TREE := build/typecheck
typecheck: $(VENV)/.installed
	rm -rf $(TYPECHECK_TREE) && mkdir -p $(TYPECHECK_TREE)/auditseal
	$(PY) -c 'import os, tomllib; dirs = tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["package-dir"]; [os.symlink(os.path.abspath(d), "$(TYPECHECK_TREE)/" + p.replace(".", "/")) for p, d in dirs.items()]'
	MYPYPATH=$(TYPECHECK_TREE) $(BIN)/mypy -p auditseal

unit: install
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

bench: install
	$(PY) -m bench.merkle
	$(PY) -m bench.ingest
	$(PY) -m bench.sealer
	$(PY) -m bench.scaleout
	$(PY) -m bench.anchor
	$(PY) -m bench.verify
	$(PY) -m bench.gateway_abuse

demo: install
	$(BIN)/auditseal demo

up: install
	$(BIN)/auditseal dev up --pipeline

down:
	$(BIN)/auditseal dev down

clean:
	rm -rf $(VENV) node_modules build .pytest_cache .mypy_cache .ruff_cache
