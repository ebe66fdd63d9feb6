# The two commands a new machine needs: `make up` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up down status test lint unit integration e2e bench clean os-packages

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/shardline up

down: $(STAMP)
	$(BIN)/shardline down

status: $(STAMP)
	$(BIN)/shardline status

# Real servers the tests start themselves: redis-server, chromium and prometheus (with promtool)
# from the OS packages.
os-packages:
	@if ! command -v redis-server >/dev/null || ! command -v chromium >/dev/null || ! command -v promtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q redis-server chromium prometheus >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q redis-server chromium prometheus >/dev/null; }; \
	fi
	@command -v redis-server >/dev/null && command -v chromium >/dev/null && command -v promtool >/dev/null

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two pytest runs: the integration tier shares one private Ray session, and the e2e tier brings
# the whole system up on another; a process can be connected to only one Ray cluster at a time.
test: $(STAMP) os-packages lint
	$(BIN)/python -m pytest tests/unit tests/integration --durations=15
	$(BIN)/python -m pytest tests/e2e --durations=10

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP) os-packages
	$(BIN)/python -m pytest tests/integration

e2e: $(STAMP) os-packages
	$(BIN)/python -m pytest tests/e2e --durations=10

bench: $(STAMP)
	$(BIN)/shardline bench all --json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
