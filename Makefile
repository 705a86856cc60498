# Two entry points: `make run` (local stack on real data) and `make test` (the whole suite).
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .venv-bootstrap/bin/uv)
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install system-packages run test lint bench clean

$(UV):
	python3 -m venv .venv-bootstrap && .venv-bootstrap/bin/pip install --quiet uv==0.13.9

install: $(UV)
	$(UV) sync --frozen --compile-bytecode

run: install
	$(VENV)/bin/stock-assets up

# Debian packages the suite drives: chromium (the app's browser test), wrk (API load bench),
# prometheus with promtool and prometheus-alertmanager (the alert rules and the dashboard's series,
# proven on a real Prometheus); the services are not started (the tests start their own).
SYSTEM_COMMANDS := chromium wrk prometheus promtool prometheus-alertmanager
system-packages:
	@for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null || missing=1; done; \
	[ -z "$$missing" ] || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
			chromium wrk prometheus prometheus-alertmanager; }

test: install system-packages
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest

lint: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(VENV)/bin/python bench/ingest_throughput.py

clean:
	rm -rf .state
