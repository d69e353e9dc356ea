# Everyday commands. CI runs `make test` (see .ci/run).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck format unit clean bench soak screenshots

$(STAMP): pyproject.toml constraints.txt
	scripts/build-tools
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job on the embedded default: local directory store, embedded Redis, real workers.
demo: $(STAMP)
	$(VENV)/bin/pipeline demo

# Test processes side by side: most tests wait on real subprocesses, so more than the cores pay off.
TEST_WORKERS ?= 4

## Everything CI checks: system packages the tests need, lint, types, the whole suite in parallel.
## Each test process starts its own Redis and stops it at the end.
test: $(STAMP)
	scripts/test-services
	$(MAKE) lint typecheck
	$(PY) -m pytest -n $(TEST_WORKERS)

## Dashboard screenshots for docs/ (the browser tests, keeping what they see).
screenshots: $(STAMP)
	scripts/test-services
	PIPELINE_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/integration/test_admin_browser.py tests/integration/test_admin_flows_browser.py tests/integration/test_admin_usage_browser.py tests/integration/test_admin_review_browser.py

## The unit tests only: no subprocesses, no services.
unit: $(STAMP)
	$(PY) -m pytest -m "not integration"

## Style, and the design's import rules ([tool.importlinter] in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache

## Media functions against Pillow, pyvips and bare ffmpeg, then the pipeline itself (latency,
## overhead, cold start, scaling, ingest with wrk when it can be installed); writes docs/benchmarks.md.
bench: $(STAMP)
	$(PIP) install --quiet -c constraints.txt -e '.[bench]'
	command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null || echo "no wrk: ingest is loaded from an in-process client"
	$(VENV)/bin/pipeline bench functions --write docs/benchmarks.md
	$(VENV)/bin/pipeline bench system --write docs/benchmarks.md

## docs/reliability.md row 20 in full: 1,000 uploads under faults; writes the figures there.
soak: $(STAMP)
	$(VENV)/bin/pipeline soak --uploads 1000 --kills 10 --pipeline built-in --write docs/reliability.md
	$(VENV)/bin/pipeline soak --uploads 1000 --kills 10 --pipeline one-rule --write docs/reliability.md
