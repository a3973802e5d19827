# One command to set up and run, one to test. Everything installs into .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_HOME ?= $(CURDIR)/.prefect
export DVC_NO_ANALYTICS ?= 1

.PHONY: setup repro test test-slow bench clean-data ui

$(BIN)/activate: requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip "setuptools<81" wheel
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(BIN)/activate

setup: $(BIN)/activate  ## create .venv with pinned dependencies

repro: setup  ## run the whole DVC pipeline on params.yaml (default: the synthetic corpus)
	PATH="$(CURDIR)/$(BIN):$$PATH" PYTHON=$(BIN)/python scripts/prefect_session.sh $(BIN)/dvc repro

test: setup  ## the default (fast) test suite
	$(BIN)/python -m pytest

test-slow: setup  ## the slow tests only
	$(BIN)/python -m pytest -m slow

bench: setup  ## print throughput figures (see benchmarks/)
	$(BIN)/python benchmarks/bench_data.py

ui: setup  ## serve the Prefect UI on http://127.0.0.1:4200 (then: export PREFECT_API_URL=http://127.0.0.1:4200/api)
	$(BIN)/prefect server start --host 127.0.0.1
