# Two commands: `make demo` (set up, then run a complete experiment) and `make test` (set up, then run the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision are pinned here so a fresh machine gets a matching pair; pyproject.toml only bounds them.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test test-all bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[dev,bench,cluster]'
	touch $@

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ''

bench: setup
	$(PY) scripts/bench_solver.py

clean:
	rm -rf $(VENV) .pytest_cache
