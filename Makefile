# Set-up: `make plan` (the offline plan of the dev stack) and `make test` (lint, types, tests).
# Both create the virtualenv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK ?= dev
STAMP := $(VENV)/.installed

.PHONY: venv plan test lint typecheck pytest docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

plan: $(STAMP)
	$(BIN)/jobstream plan --stack $(STACK)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/zizmor --offline --min-severity medium .github/workflows

typecheck: $(STAMP)
	$(BIN)/pyright

pytest: $(STAMP)
	AWS_EC2_METADATA_DISABLED=true $(BIN)/pytest -q

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info

docs: $(STAMP)
	$(BIN)/python -m infra.docs
