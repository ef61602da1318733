# Every target that runs code depends on the virtualenv, so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,research]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/netalloc demo

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check controller tests benchmarks
	$(BIN)/ruff format --check controller tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/core_allocation.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
