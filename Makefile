# Twoway developer commands. `make test` and `make demo` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
UV_VERSION := 0.13.8

.PHONY: help install system-deps lrs deploy-tools chart-inputs k8s-manifest lint fmt test test-reliability test-all test-fast contract stack-up stack-down run demo shim openapi bench clean

help:
	@echo "make demo       start everything locally, run a synthetic programme through it, report"
	@echo "make run        start Kafka + PostgreSQL locally and run the three services"
	@echo "make test       install everything and run every test, the fault-injection suite included"
	@echo "make test-reliability   the fault-injection suite alone (tests/reliability), about 8 min"
	@echo "make test-all   the same as make test"
	@echo "make test-fast  only the tests that need no broker or database (no fault-injection suite)"
	@echo "make bench      the benchmarks of docs/benchmarks.md (floor, services, programme, latency)"
	@echo "make lint       ruff and mypy (strict)"
	@echo "make contract   regenerate docs/contract (JSON Schema, AsyncAPI)"
	@echo "make openapi    regenerate docs/openapi (the services' HTTP APIs)"
	@echo "make stack-up / stack-down   the local Kafka + PostgreSQL stack alone"
	@echo "make shim       put twoway, twoway-stack and twoway-dev on your PATH (~/.local/bin)"
	@echo "make chart-inputs  regenerate the Helm chart's Kafka access list and dashboard"

# Java, Maven, PostgreSQL, Chromium (the dashboard's browser tests) and npm come from Debian's
# packages when missing (CI runs as root), and khal, a calendar application the invitation
# tests import into (skipped without it).
system-deps:
	@missing=""; \
	command -v java >/dev/null || missing="$$missing default-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v pdftoppm >/dev/null || missing="$$missing poppler-utils"; \
	command -v go >/dev/null || missing="$$missing golang-go"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	{ command -v khal >/dev/null || [ "$$(id -u)" != 0 ]; } || missing="$$missing khal"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "Please install:$$missing" >&2; exit 1; fi; \
	fi

# Byte code is compiled once here: every service process, compose worker and test process
# then starts without compiling each module again (PYTHONDONTWRITEBYTECODE machines).
install: system-deps
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q "uv==$(UV_VERSION)"
	$(UV) sync --all-packages --frozen -q --compile-bytecode
	@$(UV) run python -m compileall -q -j 2 shared/src services dev/src tests bench >/dev/null
	@test -f tests/browser/node_modules/axe-core/axe.min.js || \
	  npm install --prefix tests/browser --no-package-lock --no-audit --no-fund --loglevel=error

# Ralph (France Université Numérique's LRS) in its own virtualenv, for the xAPI tests.
RALPH_DIR := .stack/tools/ralph
lrs: install
	@test -x $(RALPH_DIR)/bin/uvicorn || { $(UV) venv -q --python $(PYTHON) $(RALPH_DIR) && \
	  $(UV) pip install -q --python $(RALPH_DIR)/bin/python "ralph-malph[lrs]==5.1.0" "requests>=2.32"; }

# helm (from its Go module), checkov and the CRD schemas for the chart checks; cached.
deploy-tools: install
	PYTHON=$(PYTHON) bash deploy/tools/install.sh

chart-inputs: install
	$(UV) run python -m twoway_dev.ops.chart_inputs

# deploy/kubernetes/twoway.yaml: the chart rendered for clusters without operators.
k8s-manifest: deploy-tools
	$(UV) run python -m twoway_dev.ops.chart_inputs --manifest

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

fmt: install
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

# Everything, the fault-injection suite (tests/reliability, about 8 min) included; make
# test-fast skips every test that needs a broker or a database, that suite among them.
test: install lrs deploy-tools
	$(UV) run pytest -q -p no:cacheprovider

test-reliability: install
	$(UV) run pytest -q -p no:cacheprovider -m reliability

test-all: install lrs deploy-tools
	$(UV) run pytest -q -p no:cacheprovider

test-fast: install
	$(UV) run pytest -q -m "not infra"

contract: install
	$(UV) run python -m twoway_shared.contract.generate

openapi: install
	$(UV) run python -m twoway_dev.openapi

stack-up: install
	$(UV) run twoway-stack up

stack-down: install
	$(UV) run twoway-stack down

run: install
	$(UV) run twoway-dev run

demo: install
	$(UV) run twoway-dev demo $(ARGS)

# On the tests' infrastructure: TWOWAY_TEST_STACK_DIR, TWOWAY_TEST_* endpoints, or its own stack.
bench: install
	$(UV) run python bench/run_all.py $(ARGS)

.PHONY: help install system-deps lrs deploy-tools chart-inputs k8s-manifest lint fmt test test-reliability test-all test-fast contract stack-up stack-down run demo shim openapi bench clean

clean:
	-$(UV) run twoway-stack down
	rm -rf .stack .demo
