# The two commands: `make up` (the local cluster, controller, router and a sample model)
# and `make test` (the whole suite). Both create or reuse the virtual environment.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: up down test lint typecheck unit integration venv crds clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

up: $(STAMP)
	$(BIN)/caldera up $(UP_ARGS)

down: $(STAMP)
	$(BIN)/caldera down

lint: $(STAMP)
	$(BIN)/ruff check caldera modelserving topology placement autoscaler router webhooks enginesim tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy caldera modelserving topology placement autoscaler router webhooks enginesim

crds: $(STAMP)
	$(BIN)/caldera crds generate

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/pytest tests/integration -q $(PYTEST_ARGS)

test: lint typecheck
	$(BIN)/pytest -q -ra $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
