# The single entry point for people and CI. Each target bootstraps .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the console's chart library, fetched from npm into the package (scripts/build-console)
CONSOLE_VENDOR := src/pinbase/http/console/vendor/uPlot.iife.min.js

.PHONY: venv demo test check lint typecheck bench soak serve clean

$(CONSOLE_VENDOR): web/package-lock.json scripts/build-console
	scripts/build-console

$(STAMP): pyproject.toml $(CONSOLE_VENDOR)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## .venv with pinbase and the dev tools; `. .venv/bin/activate` puts them on the PATH

demo: $(STAMP)  ## run the server with a simulated demo fleet on the embedded store
	$(BIN)/pinbase demo

serve: $(STAMP)
	$(BIN)/pinbase serve

test: $(STAMP) lint typecheck  ## the whole test suite, on SQLite and on a throwaway PostgreSQL
	scripts/test

check: $(STAMP) lint typecheck  ## lint, types and the unit tests alone (well under a minute)
	$(BIN)/pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict bench

bench: $(STAMP)  ## benchmarks (SQLite, device protocols, events and webhooks, PostgreSQL, Platform API devices, CSV export, history aggregation, the console's first render); report in bench/README.md
	$(BIN)/python bench/run.py
	$(BIN)/python bench/devices.py
	$(BIN)/python bench/events.py
	$(BIN)/python bench/postgres.py
	$(BIN)/python bench/platform_devices.py
	$(BIN)/python bench/export.py
	$(BIN)/python bench/aggregate.py
	$(BIN)/python bench/console.py

SOAK_MINUTES ?= 30
soak: $(STAMP)  ## mixed load and attacks for SOAK_MINUTES (default 30); report in bench/results/soak.json
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) pinbase-data .pytest_cache .mypy_cache .ruff_cache
