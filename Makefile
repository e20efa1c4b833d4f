# reprolib — one command per table; everything runs inside .venv.
# `make table4` is the main job (embedded default); `make test` runs the test suite.
SHELL := /bin/bash
PYTHON_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= demo
DATA ?=
SEED ?= 0
WORLD ?= data/world

.PHONY: setup test lint demo world clean-venv help

help:
	@echo "make setup      create .venv with the pinned stack (idempotent)"
	@echo "make demo       generate the embedded driving world and its gallery"
	@echo "make test       run the test suite"
	@echo "make lint       ruff"

# The stamp depends on the requirement files: a second call does no work.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check reprolib tests benchmarks

world: $(STAMP)
	$(PY) -m reprolib.world --out $(WORLD) --seed $(SEED)

demo: world
	@echo "gallery: $(WORLD)/gallery.png"

clean-venv:
	rm -rf $(VENV)
