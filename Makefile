# Altalune developer commands. `make run` sets everything up and serves on an embedded PostgreSQL;
# `make test` runs the whole test suite. Both work on a fresh clone (they create .venv first).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Node client of the e2e suite (tests/e2e/test_node_client.py): installed when npm is on PATH.
NODE_DIR := tests/e2e/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed
NPM := $(shell command -v npm 2>/dev/null)

.PHONY: setup run migrate test test-unit test-integration test-e2e lint format typecheck generate \
	generate-check proto-lint proto-breaking check bench bench-scale bench-blocks bench-ratelimit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

setup: $(STAMP) $(if $(NPM),$(NODE_STAMP)) ## create .venv and install the project with its dev tools (and the e2e Node client's packages, with npm)

run: setup ## migrate, bootstrap an admin (prints its token once), serve gRPC on :50051 and Connect on :8080
	$(BIN)/altalune bootstrap
	$(BIN)/altalune serve --migrate

migrate: setup
	$(BIN)/altalune migrate up

test: setup ## unit, integration (real PostgreSQL) and e2e (real servers and clients) tests
	$(BIN)/pytest -q

test-unit: setup
	$(BIN)/pytest -q tests/unit

test-integration: setup
	$(BIN)/pytest -q tests/integration

test-e2e: setup
	$(BIN)/pytest -q tests/e2e

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: setup
	$(BIN)/mypy

generate: setup ## regenerate gen/ from proto/ (offline: buf + local plugins)
	$(PY) tools/codegen/codegen.py generate

generate-check: setup ## fail if gen/ is stale
	$(PY) tools/codegen/codegen.py check

proto-lint: setup
	$(PY) tools/codegen/codegen.py lint

proto-breaking: setup ## compare proto/ with the last landed main
	$(PY) tools/codegen/codegen.py breaking --against '.git#branch=main'

check: lint typecheck proto-lint generate-check test ## everything CI runs

bench: setup ## benchmarks that print figures (not timed tests)
	$(PY) tools/bench/run.py

bench-scale: setup ## projects as tenants at scale (10 / 10,000 / 100,000 projects built in bulk): figures per N, slow
	$(PY) tools/bench/scale.py

bench-blocks: setup ## what the block size of project partitions costs, in bare SQL (docs/tenancy.md)
	$(PY) tools/bench/blocks.py

bench-ratelimit: setup ## what one rate-limit check costs, lone and shared across processes (docs/rate-limits.md)
	$(PY) tools/bench/ratelimit.py

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache *.egg-info $(NODE_DIR)/node_modules
