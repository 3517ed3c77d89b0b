# batchai: the local stack and the tests. `make demo` and `make test` are the two commands.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up up-cloud down demo test lint bench fuzz

$(STAMP): requirements.txt requirements-dev.txt package-lock.json pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -qq -r requirements-dev.txt
	$(BIN)/pip install -qq --no-deps -e .
	npm ci --no-audit --no-fund --silent
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/batchai stack up

up-cloud: install
	$(BIN)/batchai stack up --topology machines

down: install
	$(BIN)/batchai stack down

demo: install
	$(BIN)/python -m examples.demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/dispatch.py

# A longer, random property-based run against the swagger (the suite's own run is short and derandomized).
fuzz: install
	BATCHAI_FUZZ_EXAMPLES=$${BATCHAI_FUZZ_EXAMPLES:-300} BATCHAI_FUZZ_RANDOM=1 $(BIN)/python -m pytest -q tests/fuzz
