# One command to set up and run, one to test. Everything installs into .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_HOME ?= $(CURDIR)/.prefect
export DVC_NO_ANALYTICS ?= 1

.PHONY: setup repro lint test test-slow bench clean-data ui

# pyproject.toml lists the dependencies, constraints.txt pins their versions.
$(BIN)/activate: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt setuptools wheel
	$(BIN)/pip install --quiet --no-build-isolation -c constraints.txt -e ".[test]"
	touch $(BIN)/activate

setup: $(BIN)/activate  ## create .venv with pinned dependencies

repro: setup  ## run the whole DVC pipeline on params.yaml (default: the synthetic corpus)
	PATH="$(CURDIR)/$(BIN):$$PATH" PYTHON=$(BIN)/python scripts/prefect_session.sh $(BIN)/dvc repro

lint: setup  ## ruff (rules in pyproject.toml)
	$(BIN)/ruff check .

test: setup lint  ## lint, then the default (fast) test suite
	$(BIN)/python -m pytest

test-slow: setup  ## the slow tests only
	$(BIN)/python -m pytest -m slow

bench: setup  ## print throughput figures (see benchmarks/)
	$(BIN)/python benchmarks/bench_data.py

ui: setup  ## serve the Prefect UI on http://127.0.0.1:4200 (then: export PREFECT_API_URL=http://127.0.0.1:4200/api)
	$(BIN)/prefect server start --host 127.0.0.1
