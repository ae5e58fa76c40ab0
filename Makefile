# Two commands matter: `make run` (local, non-TEE server) and `make test` (the whole suite).
# Both bootstrap .venv themselves; the tests start their own throwaway Postgres.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test demo bench load soak clean

# uv resolves and installs the pinned set in seconds where pip takes minutes (pulumi-azure-native is large).
UV_VERSION := 0.13.9

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev,infra,bench]'
	rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(BIN)/mcp-tee dev

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .mcp-tee .pytest_cache .hypothesis

demo: $(STAMP)
	$(BIN)/python -m app.devstack.demo

# Heavy suites, not part of `make test`: they start their own Postgres, stand-ins and server.
SESSIONS ?= 200
CALLS ?= 50
DURATION ?= 60

load: $(STAMP)
	$(BIN)/python bench/load.py --sessions $(SESSIONS) --calls $(CALLS)

soak: $(STAMP)
	$(BIN)/python bench/soak.py --duration $(DURATION)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py
