# jobq: `make run` starts the whole stack, `make test` runs the suite.
# Needs only Python 3.11+, make and a C compiler; everything else goes into .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstalls only when pyproject.toml changes.
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.DEFAULT_GOAL := run
.PHONY: install run test lint bench

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

run: install
	$(BIN)/jobq dev

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The benchmark suite (bench/suite.py); needs wrk (Debian: apt-get install wrk). ~20 minutes.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e ".[dev,bench]"
	touch $(BENCH_STAMP)
