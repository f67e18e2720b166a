# mailtrack — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test lint typecheck demo bench clean install dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.dev-installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

## run: start mailtrack on SQLite (./var/mailtrack.db) at http://127.0.0.1:8000
run: install
	@mkdir -p var
	$(BIN)/mailtrack serve

lint: dev
	$(BIN)/ruff check src tests bench

typecheck: dev
	$(BIN)/mypy

## test: ruff, mypy and the whole pytest suite (pytest's "no tests" exit code 5 is not a failure)
test: dev
	@bash scripts/system-deps.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	@command -v chromium >/dev/null || echo "note: Debian chromium is missing, so the browser tests are skipped; install it with: sudo apt-get install chromium"
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) || [ $$? -eq 5 ]

## demo: start the service with the mailbox simulator and send a realistic mix of emails
demo: install
	$(BIN)/mailtrack demo

bench: dev
	$(BIN)/python bench/submit.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
