# The README's two commands: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --constraint constraints.txt

.PHONY: demo test lint system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.core: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

$(VENV)/.all: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e ".[all]"
	touch $@ $(VENV)/.core

demo: $(VENV)/.core
	$(BIN)/lrkit demo

# PostgreSQL (sweep tests) and Chromium (browser tests) come from Debian's packages.
system-deps:
	@bash scripts/system-deps.sh

test: $(VENV)/.all system-deps
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(VENV)/.all
	$(BIN)/ruff check src tests benchmarks
