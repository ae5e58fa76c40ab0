# Two commands matter: `make run` (local, non-TEE server; PORT=8081 for another port) and `make test`
# (the whole suite). Both bootstrap .venv themselves; the tests start their own throwaway Postgres.
# `make clean` deletes .venv and .mcp-tee (local Postgres cluster, dev issuer key, audit logs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Hashed lock files, written by `make lock` from pyproject.toml (see docs/ci.md):
#   build.txt    the build backend ([build-system] requires), for the image and the editable install
#   uv.txt       uv itself, the one package pip installs
#   dev.txt      everything: runtime + dev + infra + bench extras + build.txt + uv.txt
#   runtime.txt  the image's runtime set, resolved within dev.txt so both agree on every version
LOCKS := requirements/build.txt requirements/uv.txt requirements/dev.txt requirements/runtime.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCKS) | cksum | cut -d' ' -f1)

# uv resolves and installs the pinned set in seconds where pip takes minutes (pulumi-azure-native is large).
UV_VERSION := 0.13.9
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock'

.PHONY: run test install lock demo bench load soak clean

install: $(STAMP)

# A fresh venv per lock change, so nothing from an older set lingers. Every package is checked
# against its hash; the project itself goes in last, editable, with the index off: its pins and
# those of every extra must already be met by the lock, or the bootstrap stops here.
EXTRAS := dev,infra,bench
$(STAMP): pyproject.toml $(LOCKS)
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements/uv.txt
	$(BIN)/uv pip sync -q --python $(BIN)/python --require-hashes requirements/dev.txt
	@$(BIN)/uv pip install -q --python $(BIN)/python --no-index --no-build-isolation -e '.[$(EXTRAS)]' || { \
		echo "requirements/*.txt do not match pyproject.toml: run 'make lock' and commit the result" >&2; exit 1; }
	touch $@

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements/uv.txt

# Re-resolve after any dependency change in pyproject.toml (needs the package index). Existing pins
# are kept where they still fit, so a new dependency does not move unrelated packages.
lock: $(BIN)/uv
	$(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
		| $(UV_COMPILE) - -o requirements/build.txt
	echo "uv==$(UV_VERSION)" | $(UV_COMPILE) - -o requirements/uv.txt
	$(UV_COMPILE) pyproject.toml requirements/build.txt requirements/uv.txt --all-extras -o requirements/dev.txt
	$(UV_COMPILE) pyproject.toml -c requirements/dev.txt -o requirements/runtime.txt

run: $(STAMP)
	$(BIN)/mcp-tee dev $(if $(PORT),--port $(PORT))

# `make test PYTEST_ARGS='tests/infra -q'` runs a part of the suite.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

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
