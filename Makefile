# Everything a fresh machine needs comes from here: venv, pinned dependencies, system packages.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := $(CURDIR)/.demo

.PHONY: install test demo run validate clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest

validate: install
	$(BIN)/dagster definitions validate -w workspace.yaml

# Offline: simulator -> recorder -> Dagster (UI on http://127.0.0.1:3000), data in .demo/
demo: install
	RUGS_DATA_DIR=$(DEMO)/rugs_data DAGSTER_HOME=$(DEMO)/dagster_home RUGS_SEAL_INTERVAL=10 RUGS_DERIVE_CRON="* * * * *" \
		scripts/stack.sh demo

# Live: recorder on $$RUGS_FEED_URL (default the real server) -> Dagster, data in $$RUGS_DATA_DIR
run: install
	scripts/stack.sh live

clean:
	rm -rf $(DEMO) .pytest_cache
