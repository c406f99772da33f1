# Two commands on a fresh machine: `make run` and `make test`. Everything else builds on them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MONTHS := 2019-10 2019-11
ROWS ?= 100000
LANDING := $(or $(MEDALLION_LANDING_DIR),data/landing)
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: run test test-fast lint dev bench-dev bench bench-scale bench-year bench-backfill install java spark-archive test-system-deps clean

install: $(STAMP)

# Byte-compiled once here, on every core and without the packages' own test suites (pip would
# compile every file on one core, in about twice the time). Where PYTHONDONTWRITEBYTECODE is set,
# a module without its .pyc is compiled again by every process that imports it.
$(STAMP): setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e ".[dev,postgres]"
	$(BIN)/python -m compileall -q -j 0 -x '/tests/' \
		"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
		medallion_assets >/dev/null
	touch $(STAMP)

## System packages (Debian names), installed when missing by scripts/system-deps.sh: with apt-get when
## run as root, otherwise it stops and prints the command to run. `make run`/`dev`/`bench` need Java;
## `make test` also needs headless Chromium and its driver for the browser test, and the PostgreSQL
## server tools (initdb, pg_ctl) for the team-deployment tests.
java:
	@scripts/system-deps.sh java

test-system-deps:
	@scripts/system-deps.sh java browser postgres

## The Spark driver's class-data-sharing archive (medallion_assets/tools/build_class_archive.py): built
## once per environment by a small month through the asset graph (about 30 s); every run's Spark
## session then starts in about half the time. Rebuilt when PySpark or Java changes.
spark-archive: java $(STAMP)
	@$(BIN)/python -m medallion_assets.tools.build_class_archive --if-missing

## make run: install, write two sample months if the landing dir is empty, materialize every asset
## for both months in one Dagster run, print the top brands from gold and, last, the months built
## with each table's rows.
run: java $(STAMP) spark-archive
	$(BIN)/medallion-sample-data --out $(LANDING) $(addprefix --month ,$(MONTHS)) --rows $(ROWS) --if-empty
	$(BIN)/dagster asset materialize -m medallion_assets.definitions --select '*' \
		--partition-range $(firstword $(MONTHS))...$(lastword $(MONTHS)) \
		--config-json '{"loggers": {"console": {"config": {"log_level": "INFO"}}}}'
	$(BIN)/medallion-top-brands

## make test: system packages, install, lint, then the whole suite (slow real-system tests included)
## on TEST_WORKERS pytest-xdist workers: most of a real-system test's time is waiting (a daemon's
## tick, a database outage, a browser), which the workers overlap. The tests of a file sharing a
## server run on one worker (medallion_assets_tests/conftest.py). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 5
test: test-system-deps $(STAMP) lint spark-archive
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

## make test-fast: the quick loop while changing code: lint, then every test that needs no server,
## no child process and no run of the asset graph, on one local Spark session (under 90 s).
test-fast: java $(STAMP) lint
	$(BIN)/python -m pytest --fast $(PYTEST_ARGS)

## make lint: ruff with the rules selected in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .

## make dev: a warm Spark Connect server on 127.0.0.1:$(CONNECT_PORT) (heap $(CONNECT_MEMORY)), then the
## Dagster UI and daemon on http://127.0.0.1:$(PORT) loading workspace.yaml with the project's DAGSTER_HOME;
## every run it launches uses the warm server, $(SPARK_RUNS) at a time. Ctrl-C stops both.
PORT ?= 3000
CONNECT_PORT ?= 15002
CONNECT_MEMORY ?= 2g
SPARK_RUNS ?= 1
dev: java $(STAMP) spark-archive
	$(BIN)/python -m medallion_assets.tools.dev --workspace workspace.yaml --port $(PORT) \
		--connect-port $(CONNECT_PORT) --connect-memory $(CONNECT_MEMORY) --spark-runs $(SPARK_RUNS)

## make bench-dev: make dev's latency from a file moved into landing to gold, 1,000-row months on the
## warm server vs a fresh one vs a JVM per run, eight months at once (about 15 minutes).
bench-dev: java $(STAMP) spark-archive
	$(BIN)/python benchmarks/dev_latency.py

## make bench: one month (BENCH_ROWS=5000000) through our pipeline, Spark's best script, the plain
## Spark script and the notebook's approach with the same Spark settings, the notebook's approach as
## it runs today and DuckDB, plus a 1,000-row month (BENCH_VARIANTS=pipeline,best,... for fewer);
## BENCH_ROUNDS rounds, each in a new order; every run's outputs
## checked against the others'; prints medians with their spread in wall and CPU seconds, the
## ratios and per-step times; appends them to benchmarks/RESULTS.md with the commit measured.
BENCH_ROWS ?= 5000000
BENCH_ROUNDS ?= 3
bench: java $(STAMP) spark-archive
	$(BIN)/python benchmarks/bench.py --rows $(BENCH_ROWS) --rounds $(BENCH_ROUNDS) \
		$(if $(BENCH_VARIANTS),--variants $(BENCH_VARIANTS))

## make bench-scale: the same at full size (42,448,764 rows, 5.7 GB; a round of every run takes about
## a quarter of an hour; BENCH_VARIANTS=pipeline,best,plain makes only those).
bench-scale: java $(STAMP) spark-archive
	$(BIN)/python benchmarks/bench.py --rows 42448764 --rounds $(BENCH_ROUNDS) --small-rows 0 \
		$(if $(BENCH_VARIANTS),--variants $(BENCH_VARIANTS))

## make bench-backfill: BACKFILL_MONTHS full-size months (42,448,764 rows each, from 2019-10) as one
## single-run backfill against one run per month, through the dagster CLI, each way on a fresh
## warehouse and instance, BACKFILL_ROUNDS rounds in alternating order: wall and CPU seconds and
## their ratio (target <= 1.05), the Spark driver's heap used (<= 4 GB) and maximum, Python and JVM
## RSS (Python <= 1 GB), the scratch disk (Spark's local dir, staged Parquet) and the warehouse;
## every gold table compared exactly, the other tables' rows per month; appends to
## benchmarks/RESULTS.md with the commit measured. Needs 5.7 GB of CSV per month under
## benchmarks/work/, generated once.
BACKFILL_MONTHS ?= 3
BACKFILL_ROUNDS ?= 1
bench-backfill: java $(STAMP) spark-archive
	$(BIN)/python benchmarks/backfill.py --months $(BACKFILL_MONTHS) --rows 42448764 \
		--rounds $(BACKFILL_ROUNDS)

## make bench-year: the same as bench-backfill for twelve 1,000,000-row months (2019-10 to 2020-09).
bench-year: java $(STAMP) spark-archive
	$(BIN)/python benchmarks/backfill.py --months 12 --rows 1000000

clean:
	rm -rf $(VENV) data .dagster_home/storage .dagster_home/history .dagster_home/schedules .dagster_home/logs
