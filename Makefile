# Two entry points: `make run` runs the main job on the embedded DuckDB warehouse and
# `make test` runs every test. Both create the virtual environment first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE := warehouse/sample_events.jsonl.gz

export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export DBT_VERSION_CHECK := False

.PHONY: run test lint bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/usage-warehouse run

# Two workers keep both cores busy: most tests wait on one dbt or ingest process at a time.
# --dist loadfile keeps each test file on one worker, so a module's built warehouse is built once.
# --no-loadscope-reorder hands out files in collection order, which tests/python/conftest.py
# sets to slowest first. TEST_WORKERS=0 runs the tests in this process, one after another.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
	$(MAKE) lint

# sqlfluff's dbt templater compiles the project, which opens a DuckDB file: give it its own.
lint: $(STAMP)
	mkdir -p target
	USAGE_WAREHOUSE_DUCKDB=$(CURDIR)/target/lint.duckdb $(BIN)/sqlfluff lint models analyses tests/data

# Not part of `make test`: takes minutes at the default 1,000,000 events, and needs PostgreSQL
# (PG* variables, default 127.0.0.1:5432 as postgres). Example: make bench BENCH_ARGS="--events 200000"
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) warehouse target logs
