# Set-up: `make plan` (the offline plan of the dev stack) and `make test` (lint, types, tests);
# `make test-fast` for the edit loop (lint, types, and the tests that start no server);
# `make rehearse` runs the local migration rehearsal.
# Each creates the virtualenv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK ?= dev
STAMP := $(VENV)/.installed
# pytest-xdist workers: two more than this 2-core machine's cores, because the server-backed tests
# spend much of their time waiting (the rehearsal walks the phases on the clock, Kafka group
# joins); a fifth cost more CPU than it saved in waiting (make test on 2 cores, pyright beside:
# 4 workers 128-137 s wall and 233-256 s CPU, 5 workers 148-152 s and 283-291 s, 3 workers
# 142 s and 213 s). With `--dist loadscope`, tests/conftest.py makes each test file one scope (its module
# fixtures run once) and all the files that evaluate offline plans one scope (the program is
# imported and each shared plan evaluated once); scopes go out in collection order, the
# rehearsal first.
PYTEST_WORKERS ?= 4
# Bytecode is written (to the __pycache__ folders git ignores) even where the environment sets
# PYTHONDONTWRITEBYTECODE: the suite starts many Python processes (xdist workers, the commands
# run through a pipe, the rehearsal's producers, consumers and Batch jobs), and without the
# cache each one compiles this repository's modules again (collection alone: 4.6 s -> 2.6 s).
PYTEST := AWS_EC2_METADATA_DISABLED=true PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -q -n $(PYTEST_WORKERS) \
	--dist loadscope --no-loadscope-reorder
SERVERLESS := not kafka and not postgres and not moto_server

.PHONY: venv plan test test-fast lint typecheck pytest pytest-fast docs rehearse bench bench-cli bench-plan image clean

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

# TYPECHECK_NICE: `make test` runs pyright at the lowest CPU priority, so that it takes the CPU
# the tests leave while they wait on servers and clocks instead of slowing the slowest test file
# down (it still ends well before them; `make test` 101.0-104.7 s against 109.3-112.3 s
# un-niced, alternating runs here). Not for `make test-fast`, whose tests wait on nothing:
# there a starved pyright runs on alone after them (51.5-59.4 s against 50.0-50.1 s here).
TYPECHECK_NICE ?=
typecheck: $(STAMP)
	$(TYPECHECK_NICE) $(BIN)/pyright

pytest: $(STAMP)
	$(PYTEST)

pytest-fast: $(STAMP)
	$(PYTEST) -m "$(SERVERLESS)"

# The type check (one process) beside the tests (the rehearsal's scope first: it mostly waits on
# the clock while the other workers fill the cores); each target's output is printed whole when
# it ends.
test: lint
	@$(MAKE) --no-print-directory -j2 --output-sync=target TYPECHECK_NICE="nice -n 19" \
		typecheck pytest

test-fast: lint
	@$(MAKE) --no-print-directory -j2 --output-sync=target typecheck pytest-fast

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

# On demand: the command line's start-up and the offline plan's cost against their floors.
bench-cli: $(STAMP)
	$(BIN)/python -m benchmarks.bench_cli

# On demand: how much of a plan after the first this repository's code accounts for, and the
# floor left to the Pulumi SDK.
bench-plan: $(STAMP)
	$(BIN)/python -m benchmarks.plan_time

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info

docs: $(STAMP)
	$(BIN)/python -m infra.docs
