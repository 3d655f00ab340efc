# wsb_gpu: `make demo` runs the pipeline on synthetic data; `make test` runs the suite.
# Both create (or refresh) .venv from scratch with nothing but Python installed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The CPU install. torch is pinned in the same pip command as everything else, so that no
# other requirement can pull a newer torch with its CUDA wheels (GPU users install
# through environment.yml or the `gpu` extra instead; see docs/gpu.md).
TORCH_CPU ?= torch==2.13.0
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: demo test test-fast lint bench gpu-check install slurm-up slurm-down clean help

help:
	@echo "make demo   - synthetic WSB + CRSP data -> full pipeline -> ./demo-run/report.md"
	@echo "make test   - install, start a single-node Slurm, run the whole test suite"
	@echo "make lint   - ruff check, ruff format --check and mypy (part of make test)"
	@echo "make bench  - run the benchmarks (appends to benchmarks/RESULTS.md)"
	@echo "make gpu-check - on a GPU node: GPU install, wsb-gpu info, GPU tests, GPU benchmarks"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[cpu,demo]' '$(TORCH_CPU)'
	touch $(STAMP)

# Tests also need pytest and the benchmark peers (PySpark), whose plumbing is tested.
$(DEVSTAMP): $(STAMP)
	$(PIP) install -q -e '.[cpu,dev,demo,bench]' '$(TORCH_CPU)'
	touch $(DEVSTAMP)

install: $(DEVSTAMP)

demo: $(STAMP)
	$(VENV)/bin/wsb-gpu demo --out demo-run

slurm-up:
	bash tests/slurm_up.sh

slurm-down:
	bash tests/slurm_down.sh

lint: $(DEVSTAMP)
	$(VENV)/bin/ruff check wsb_gpu benchmarks tests
	$(VENV)/bin/ruff format --check wsb_gpu benchmarks tests
	$(VENV)/bin/mypy

test: $(DEVSTAMP) lint
	bash tests/slurm_up.sh || { [ "$${CI:-}" != "true" ] && echo "Slurm could not be started: the slurm tests will be skipped"; }
	$(PY) -m pytest -rA -v --durations=25 --doctest-modules wsb_gpu benchmarks/common.py benchmarks/harness.py benchmarks/scaling.py scripts/import_graph.py tests

test-fast: $(DEVSTAMP)
	$(PY) -m pytest -q -m "not slurm and not slow" tests

# On a GPU node: installs .venv-gpu, runs the GPU tests and benchmarks (scripts/gpu_check.sh).
gpu-check:
	bash scripts/gpu_check.sh

bench: $(DEVSTAMP)
	$(PY) -m benchmarks --stage all --backend cpu

clean:
	rm -rf $(VENV) demo-run .pytest_cache
