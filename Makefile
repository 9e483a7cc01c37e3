# Two commands: `make demo` (set up, then run a complete experiment) and `make test` (set up, then run the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision are pinned here so a fresh machine gets a matching pair; pyproject.toml only bounds them.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

# `make demo DEMO_ARGS="data.root=/path/to/data data.download=false"` uses a local MNIST copy instead of downloading.
DEMO_ARGS ?=
DEMO_DIR := outputs/demo

.PHONY: setup demo test test-all bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[dev,bench,cluster]'
	touch $@

# One epoch of the ODE-Net on the full MNIST (downloaded into ./data), then its row of the paper's Table 1.
demo: setup
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/node-run experiment=mnist_odenet trainer.max_epochs=1 hydra.run.dir=$(DEMO_DIR)/mnist_odenet $(DEMO_ARGS)
	$(VENV)/bin/node-report table1 $(DEMO_DIR)

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ''

# The training-step benchmark reads real MNIST: `make bench BENCH_ARGS="--data-root /path/to/data"` (default: ./data).
BENCH_ARGS ?= --data-root data
bench: setup
	$(PY) scripts/bench_solver.py
	$(PY) scripts/bench_training.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
