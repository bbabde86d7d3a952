# One command each: `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: venv demo test lint build clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m uvicorn examples.echo.app:app --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check chatkit_asgi tests examples
	$(BIN)/ruff format --check chatkit_asgi tests examples
	$(BIN)/mypy chatkit_asgi

test: lint
	$(BIN)/python -m pytest

build: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) dist .pytest_cache .mypy_cache .ruff_cache
