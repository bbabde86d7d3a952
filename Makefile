# One command each: `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The demo's own, lighter install (the `demo` extra); the full one (`dev`) includes it.
DEMO_STAMP := $(VENV)/.installed-demo-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: venv demo demo-agent demo-mongodb test test-strict test-mongodb lint build docs bench clean

venv: $(STAMP)

# Everything `make test` needs. `dev` includes `demo`, so the demo's stamp is good too.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(DEMO_STAMP)

# Only what `make demo` runs (about 40 packages instead of the toolchain's 300); a later
# `make test` installs the rest into the same venv.
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $(DEMO_STAMP)

# The demo assistant with the playground at /chatkit/, and the Agents SDK example at
# /agent/chatkit/ (offline on a scripted model unless OPENAI_API_KEY is set).
demo: $(DEMO_STAMP)
	CHATKIT_DB=chatkit-agent-demo.db $(BIN)/chatkit-asgi demo --host $(HOST) --port $(PORT) \
	  --also /agent=examples.agent.app:app

# The Agents SDK example: a scripted offline model without OPENAI_API_KEY, the real one with it.
demo-agent: $(DEMO_STAMP)
	$(BIN)/python -m uvicorn examples.agent.app:app --host $(HOST) --port $(PORT)

demo-mongodb: $(STAMP)
	$(BIN)/python -m uvicorn examples.mongodb.app:app --host $(HOST) --port $(PORT)

test-mongodb: $(STAMP)
	$(BIN)/python -m pytest tests/mongodb

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The browser test drives Debian's Chromium (never a downloaded browser).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
/usr/bin/chromium:
	$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

lint: $(STAMP)
	$(BIN)/ruff check chatkit_asgi tests examples
	$(BIN)/ruff format --check chatkit_asgi tests examples
	$(BIN)/mypy chatkit_asgi

# The ChatKit web component's SSE client (npm), which tests/streaming reads replies with.
JS_TESTS := tests/js/node_modules/.package-lock.json
$(JS_TESTS): tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund

test: lint /usr/bin/chromium $(JS_TESTS)
	$(BIN)/python -m pytest

# Storage-side enforcement of presigned uploads, against LocalStack with signature
# checks on (moto does not check them). Needs Python 3.13 for LocalStack.
LOCALSTACK_VENV := .venv-localstack
PYTHON313 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) python3.13)
$(LOCALSTACK_VENV)/.installed:
	$(PYTHON313) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/pip install --quiet "localstack-core[runtime]==2026.3.0" \
	  "cbor2==5.6.5" "pyopenssl==24.3.0" "cryptography==44.0.3" "service-identity==24.2.0" "joserfc==1.0.4"
	touch $@

test-strict: $(STAMP) $(LOCALSTACK_VENV)/.installed
	CHATKIT_LOCALSTACK_PYTHON=$(LOCALSTACK_VENV)/bin/python $(BIN)/python -m pytest tests/attachments/strict_s3.py

# Benchmarks against openai-chatkit 1.6.5 and the bare-Starlette floor (bench/README.md).
bench: $(STAMP)
	sh bench/ensure-wrk.sh
	$(BIN)/python -m bench.run $(BENCH_ARGS)

build: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) $(LOCALSTACK_VENV) dist .pytest_cache .mypy_cache .ruff_cache chatkit-attachments
