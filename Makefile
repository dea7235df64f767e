# Two commands for a newcomer: `make demo` and `make test`. Everything else is set up here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The extras installed: `make test EXTRAS=test,ray` adds Ray, whose tests skip without it
# (.ci/run does that: in CI they must run).
EXTRAS ?= test
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: demo test lint schemas bench bench-promptfoo clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ostinato needs Python 3.11+; run: make PYTHON=python3.12 ...")'
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .

schemas: $(STAMP)
	$(BIN)/python -m ostinato.protocol.openrpc schemas
	$(BIN)/python -m ostinato.protocol.mcp_tools docs/agents.md

bench: $(STAMP)
	$(BIN)/python bench/rpc.py

# promptfoo, the peer bench/trials.py measures when it is installed: its lockfile's exact
# versions, with node 22 from the npm registry (promptfoo wants node >= 22.22; Debian has 20).
# About 2 GB and a minute or two; nothing else installs it (`make test` does not).
bench-promptfoo:
	cd bench/promptfoo && npm ci --no-audit --no-fund --loglevel=error

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
