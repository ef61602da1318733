# Every target that runs code depends on the virtualenv, so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean cni-test-deps

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

unit: $(STAMP) cni-test-deps
	$(BIN)/pytest -q

# tests/cni chains Debian's reference CNI plugins (portmap, bandwidth, ptp, host-local) after and
# around netalloc-cni. CI is a clean clone running as root: install them there; elsewhere the tests
# that need them skip and say so.
cni-test-deps:
	@if [ ! -x /usr/lib/cni/portmap ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containernetworking-plugins iproute2 iptables; \
	fi

bench: $(STAMP)
	$(BIN)/python benchmarks/core_allocation.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
