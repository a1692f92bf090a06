# kit — a Kaggle submission kit for Digit Recognizer.
# Every target installs what it needs on first use (through the .venv stamp).
# `make` alone lists the targets.

.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What `make setup` installs beside the kit: a Keras backend and the dev tools. For a CUDA box,
# EXTRAS=gpu,dev (TensorFlow) or jax-cuda,dev; see README.md, "GPUs".
EXTRAS ?= cpu,dev
STAMP := $(VENV)/.installed-$(EXTRAS)
KIT := $(BIN)/kit

# Options passed through to the CLI (empty by default).
FROM ?=
FOLDS ?= 5
REPEATS ?= 1
REMOTE_REPEATS ?= 3
RUN ?=
MSG ?=
ARGS ?=

# What `make lint` and `make format` look at.
LINT_PATHS := kit tests scripts

.PHONY: help setup test test-fast lint format download train-scratch train-cnn train-all train-ensemble remote-ensemble \
        ensemble submission submit scores leaderboard report demo bench device-prep fixture clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[$(EXTRAS)]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the kit, TensorFlow and the dev tools (EXTRAS=gpu,dev for CUDA); every target does it first

test: $(STAMP) ## Run the whole test suite, what CI runs (ARGS="-k ensemble" to pick tests)
	$(BIN)/pytest $(ARGS)

test-fast: $(STAMP) ## The inner loop: the tests not marked slow (no TensorFlow training, no demo)
	$(BIN)/pytest -m "not slow" $(ARGS)

lint: $(STAMP) ## ruff: lint and check the formatting (CI runs it before the tests)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

format: $(STAMP) ## ruff: apply the safe lint fixes, format, then list what is left to fix by hand
	$(BIN)/ruff check --fix-only $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check $(LINT_PATHS)

download: $(STAMP) ## Download and verify the competition data (FROM=zip-or-folder to use a local copy)
	$(KIT) download $(if $(FROM),--from "$(FROM)") $(ARGS)

train-scratch: $(STAMP) ## Train the from-scratch NumPy network (ARGS="--preset best")
	$(KIT) train scratch $(ARGS)

train-cnn: $(STAMP) ## Train the augmented Keras CNN (ARGS="--preset reference --epochs 5")
	$(KIT) train cnn $(ARGS)

train-all: train-scratch train-cnn ## Train the NumPy network, then the CNN

# The ensembles' recipe: the default CNN without the eval blur, the winner of the out-of-fold
# study (docs/decisions.md, "Ensembles judged out of fold").
ENSEMBLE_RECIPE := --blur 0

train-ensemble: $(STAMP) ## A cross-validated CNN group (FOLDS x REPEATS members, all 42,000 rows), judged out of fold
	$(KIT) train cnn --folds $(FOLDS) --repeats $(REPEATS) $(ENSEMBLE_RECIPE) $(ARGS)

remote-ensemble: $(STAMP) ## The same on Kaggle's GPUs (kit remote; FOLDS x REMOTE_REPEATS, 2 at once per T4 pair), then its submission CSV
	$(KIT) remote train cnn --folds $(FOLDS) --repeats $(REMOTE_REPEATS) --jobs 2 $(ENSEMBLE_RECIPE) $(ARGS)
	$(KIT) ensemble
	$(KIT) predict

ensemble: $(STAMP) ## Ensemble the latest run of each model (RUN="run run ..." to choose the members)
	$(KIT) ensemble $(RUN)

submission: $(STAMP) ## Write a timestamped submission CSV from RUN (default: the run that finished last)
	$(KIT) predict $(RUN)

submit: $(STAMP) ## Write a submission if needed, upload it, wait for its score (MSG="...")
	$(KIT) submit $(if $(MSG),-m "$(MSG)") $(ARGS)

scores: $(STAMP) ## Every submission with its leaderboard score (table and submissions/scores.png)
	$(KIT) scores --sync --plot $(ARGS)

leaderboard: $(STAMP) ## Our rank on the competition leaderboard
	$(KIT) leaderboard

report: $(STAMP) ## Write an HTML report of the latest runs to reports/ (RUN="run ..." to choose)
	$(KIT) report $(RUN)

demo: $(STAMP) ## The whole flow offline against the local Kaggle emulator (fixture data)
	$(BIN)/python scripts/demo.py

bench: $(STAMP) ## Benchmarks into docs/bench/*.json and docs/benchmarks.md (ARGS="load"; needs the real data)
	$(BIN)/python scripts/bench.py $(ARGS)

device-prep: $(STAMP) ## What scripts/device_gpu.sh carries to a lent GPU: the wheels it lacks in .whl/, the data zip (FROM=) in .devdata/
	@test -n "$(FROM)" || { echo "FROM=path/to/digit-recognizer.zip is needed (the competition zip)"; exit 1; }
	rm -rf .whl && mkdir -p .devdata && cp "$(FROM)" .devdata/digit-recognizer.zip
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
	    $$($(BIN)/python -m pip list --format=freeze 2>/dev/null | grep -iE '^(keras|namex|optree)==')
	@ls .whl .devdata

fixture: $(STAMP) ## Build the small fixture competition from scikit-learn's digits
	$(KIT) fixture

clean: ## Remove the virtual environment and caches (keeps data, runs, submissions)
	rm -rf $(VENV) .pytest_cache .cache
