# The few targets people type. `make demo` and `make test` set up a fresh machine first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo test test-unit test-integration chaos cluster lint format typecheck check bench stack-up stack-down stack-status clean constraints

setup:
	@bash deploy/setup.sh

demo: setup
	$(BIN)/wearmon demo

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

test-integration: setup
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

# fault injection (kill -9 / SIGSTOP of the stack's services under a running worker)
chaos: setup
	$(BIN)/pytest -m chaos -s $(PYTEST_ARGS)

# only the cluster test: wearmon on a 3-broker Kafka cluster and a 3-primary Redis Cluster, a
# broker killed mid-replay (about 70 s; make test runs it too: docs/deploy.md, "A Kafka cluster")
cluster: setup
	$(BIN)/pytest -m cluster -s $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: setup
	$(BIN)/mypy

check: lint typecheck test

# the bounded benchmark set (about 15 min, unattended): docs/benchmarks.json and the
# docs/benchmarks.md rendered from it. Longer runs: BENCH_ARGS="--soak" or "--steps ...";
# each benchmarks/bench_*.py also runs alone with its own options.
BENCH_ARGS ?=
bench: setup
	$(BIN)/python benchmarks/report.py $(BENCH_ARGS)

stack-up: setup
	$(BIN)/wearmon stack up

stack-down:
	$(BIN)/wearmon stack down

stack-status:
	$(BIN)/wearmon stack status

# Refresh the pinned versions of every dependency from the current virtual environment.
constraints:
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	-$(BIN)/wearmon stack down
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
