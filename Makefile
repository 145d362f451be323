# The two commands of the README, plus developer chores. Both create and reuse .venv/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: run test test-gpu test-slurm test-all lint format clean-results

run: $(STAMP)  ## Run the main job on the embedded default (synthetic data, CPU).
	$(BIN)/snakemake --cores 2
	@echo; cat results/compare.md  # the headline numbers, reference rows in italics

test: $(STAMP)  ## Run the test suite (no GPU, no SLURM, no slow tests).
	$(BIN)/python -m pytest -m "not slow and not gpu and not slurm"

test-gpu: $(STAMP)  ## Run the GPU tests: every trainer on CUDA (they skip without a GPU).
	$(BIN)/python -m pytest -m gpu

# A real one-node SLURM cluster (munge, MariaDB + slurmdbd, fake GPUs) runs the tiny workflow
# through `--profile slurm`. Needs root and Debian's packages, which it installs (tests/slurm/).
test-slurm: $(STAMP)  ## Run the workflow on a throw-away SLURM cluster (root, apt).
	tests/slurm/cluster.sh install
	VLCORE_REQUIRE_SLURM=1 $(BIN)/python -m pytest -m slurm tests/test_slurm.py

test-all: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt .

# (Re)install when pyproject.toml changes. torch and torchvision come from this machine's
# local files (pip's constraint); the rest from PyPI, pinned in pyproject.toml.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)
