# Everything a fresh machine needs comes from here: venv, pinned dependencies, system packages.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := $(CURDIR)/.demo

.PHONY: install browser postgres-server test demo run validate clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test,rl,consumers]'
	touch $(STAMP)

# Debian's Chromium for the browser test (rugs_pipeline_tests/test_ui_browser.py). Installing it
# needs root; where it cannot, that test skips and the rest of the suite still runs.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } \
		|| echo "chromium could not be installed: the browser test will skip" >&2

# Debian's PostgreSQL server for the Postgres instance test (rugs_pipeline_tests/test_postgres.py),
# which starts a server of its own on 127.0.0.1 and stops it. Installing needs root; where it
# cannot, that test skips and the rest of the suite still runs.
postgres-server:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; } \
		|| echo "postgresql could not be installed: the Postgres instance test will skip" >&2

# Two workers, each taking one whole test file at a time (loadfile): a file's tests share its module
# fixtures (the demo stack, the Postgres and S3 servers) and some run in file order. Most of the suite
# waits on daemons and subprocesses rather than computing, so two files at once on two cores cuts the
# wall time; conftest.py hands out the longest files first. `make test TEST_ARGS=` runs in one process.
TEST_ARGS ?= -n 2 --dist loadfile --no-loadscope-reorder
test: install browser postgres-server
	$(BIN)/python -m pytest $(TEST_ARGS)

validate: install
	$(BIN)/dagster definitions validate -w workspace.yaml

# Capture under load: kill -9 at 10,000 frames/s, then a 10-minute soak at 10,000 frames/s
# (RUGS_SOAK_S, RUGS_SOAK_RATE) that prints the recorder's memory over time, and the long fuzz run of
# the recorder (RUGS_FUZZ_EXAMPLES, 500 generated server scripts).
.PHONY: soak
soak: install
	$(BIN)/python -m pytest -m slow -s rugs_pipeline_tests/test_capture_crash.py rugs_pipeline_tests/test_capture_soak.py \
		rugs_pipeline_tests/test_capture_fuzz.py

# Performance: ten figures about a synthetic day of feed, each beside its goal. The first run builds
# and caches the day (~5 min, ~5 GB in ~/.cache/rugs_pipeline/bench); BENCH_ARGS="--frames 250000" etc.
.PHONY: bench
bench: install
	$(BIN)/rugs-pipeline bench $(BENCH_ARGS)

# Offline: simulator -> recorder -> Dagster (UI on http://127.0.0.1:3000), data in .demo/
demo: install
	RUGS_DATA_DIR=$(DEMO)/rugs_data DAGSTER_HOME=$(DEMO)/dagster_home RUGS_SEAL_INTERVAL=10 RUGS_DERIVE_CRON="* * * * *" RUGS_EXECUTOR=in_process \
		scripts/stack.sh demo

# Live: recorder on $$RUGS_FEED_URL (default the real server) -> Dagster, data in $$RUGS_DATA_DIR
run: install
	scripts/stack.sh live

# Stop what `make demo` and `make run` started (this checkout's demo store, and $$RUGS_DATA_DIR's stack), the
# recorder sealing first: for a stack running in another terminal or in the background.
.PHONY: stop
stop:
	@RUGS_DATA_DIR=$(DEMO)/rugs_data DAGSTER_HOME=$(DEMO)/dagster_home scripts/stack.sh stop
	@scripts/stack.sh stop

clean:
	rm -rf $(DEMO) .pytest_cache
