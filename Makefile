# The two commands of the quick start, and what they need. Both work on a fresh machine:
# the first run creates .venv with everything installed (torch pinned by constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench

demo: $(VENV)/.installed
	$(BIN)/xterramind demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check xterramind tests tools benchmarks

bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks.model

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@
