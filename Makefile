# The README's contract: `make demo` and `make test` do all set-up on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STACK := $(PY) -m deploy.local.stack
SF ?=

.PHONY: help setup up down status config-check demo seed simulate dev test test-fast bench lint lock \
	topology-up topology-down images

help:
	@echo "make demo     set up, start the local stack, seed TPC-H, materialize every asset, print a summary"
	@echo "make test     set up, then run the test suite (it starts its own stack in .data/pytest)"
	@echo "make test-fast  the tests that need no stack, namespaces or JVM (under a minute)"
	@echo "make up/down  start/stop the local stack (PostgreSQL, SeaweedFS, Spark Connect); make status shows it"
	@echo "make dev      open the Dagster UI on workspace.yaml at http://127.0.0.1:3000"
	@echo "make config-check  reach every service of PLATFORM_ENV=local|prod and report each failure"
	@echo "make simulate DAYS=n  apply n days of deterministic OLTP activity (then make demo reloads it all)"
	@echo "make bench SF=0.1  benchmark each stage against the naive way and the engine's limit"
	@echo "make lint     ruff"
	@echo "make topology-up/down  the three nodes + the internet as network namespaces (root; see deploy/README.md)"
	@echo "make images   build vps_1's and vps_2's images from their Dockerfiles on a local Docker Engine (root; cached in .data/docker)"

setup:
	@./deploy/local/bootstrap.sh

up: setup
	@$(STACK) init-env
	@$(STACK) up

down:
	@if [ -x $(PY) ]; then $(STACK) down; fi

status:
	@$(STACK) status

config-check: setup  ## reach every service of $(PLATFORM_ENV) (default local), report failures by node/endpoint
	@$(PY) -m resources.config_check $(PLATFORM_ENV)

seed: up
	@$(PY) -m platform_assets.cli seed $(if $(SF),--sf $(SF))

simulate: up  ## DAYS=n days of deterministic OLTP activity (orders, fulfilment, corrections, cancellations)
	@$(PY) -m platform_assets.cli simulate --days $(or $(DAYS),1)

demo: up
	@$(PY) -m platform_assets.cli demo $(if $(SF),--sf $(SF))

dev: up
	@$(STACK) dev

# two workers (pytest-xdist), each with a stack of its own; a file's tests stay on one worker (tests/conftest.py)
TEST_WORKERS ?= 2
test: setup
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: setup  ## the edit-run loop: no stack, no namespaces, no JVM (catalog, topology, renderers, sensors, CLI)
	@$(PY) -m pytest -q -m "not slow"

bench: up  ## each stage vs the naive way and the engine's limit, plus an incremental day; SF=0.1 by default, BENCH_ARGS=--help
	@$(PY) -m benchmarks.run --sf $(or $(SF),0.1) $(BENCH_ARGS)

images: setup  ## vps_1's images (as Ansible builds them) and vps_2's Spark Connect pod, with stand-ins for upstream ones (deploy/README.md)
	@$(PY) -m deploy.sim.images vps_1 vps_2

topology-up: setup  ## the nodes as network namespaces behind their firewalls, vps_1 under Docker, vps_2 Spark Connect (root)
	@$(PY) -m deploy.sim up

topology-down:  ## idempotent
	@if [ -x $(PY) ]; then $(PY) -m deploy.sim down; fi

lint: setup
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

lock: setup  ## re-resolve requirements.lock after editing pyproject.toml (exact pins + hashes, no URLs)
	@$(VENV)/bin/uv pip compile -q pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock
