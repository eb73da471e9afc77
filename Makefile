# Set-up: `make plan` (the offline plan of the dev stack) and `make test` (lint, types, tests);
# `make rehearse` runs the local migration rehearsal.
# Both create the virtualenv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK ?= dev
STAMP := $(VENV)/.installed

.PHONY: venv plan test lint typecheck pytest docs rehearse bench image clean

$(STAMP): pyproject.toml runtime/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./runtime -e '.[dev]'
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

# The second main job: the whole migration, locally, on real protocols (moto's server, the
# Tansu Kafka broker); exits non-zero if any job is lost or applied twice.
rehearse: $(STAMP)
	$(BIN)/jobstream rehearse

# On demand, not part of `make test`: publisher throughput as ratios against the raw clients.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_publish

# The reference ML service image (examples/ml-service) with buildah, no Docker daemon needed;
# its integration tests (tests/image) run when it exists. IMAGE / BASE_IMAGE override the tags.
IMAGE ?= localhost/jobstream-ml:dev
image:
	IMAGE=$(IMAGE) ./examples/ml-service/build-image.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info

docs: $(STAMP)
	$(BIN)/python -m infra.docs
