# Two commands matter: `make run` (local, non-TEE server) and `make test` (the whole suite).
# Both bootstrap .venv themselves; the tests start their own throwaway Postgres.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test demo bench load soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,infra,bench]'
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
