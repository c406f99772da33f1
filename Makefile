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

.PHONY: run test dev bench bench-scale install java clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

java:
	@scripts/check-java.sh

## make run: install, write two sample months if the landing dir is empty, materialize every asset
## for both months in one Dagster run, print the top brands from gold.
run: $(STAMP) java
	$(BIN)/medallion-sample-data --out $(LANDING) $(addprefix --month ,$(MONTHS)) --rows $(ROWS) --if-empty
	$(BIN)/dagster asset materialize -m medallion_assets.definitions --select '*' \
		--partition-range $(firstword $(MONTHS))...$(lastword $(MONTHS)) \
		--config-json '{"loggers": {"console": {"config": {"log_level": "INFO"}}}}'
	$(BIN)/medallion-top-brands

## make test: install and run the whole suite (slow real-system tests included).
test: $(STAMP) java
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make dev: the Dagster UI and daemon on http://127.0.0.1:3000 with the project's DAGSTER_HOME.
dev: $(STAMP) java
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

## make bench: one month (BENCH_ROWS=5000000 by default) through our pipeline, a plain Spark script, the
## old notebook's approach and DuckDB; prints ratios and appends to benchmarks/RESULTS.md.
BENCH_ROWS ?= 5000000
bench: $(STAMP) java
	$(BIN)/python benchmarks/bench.py --rows $(BENCH_ROWS)

## make bench-scale: a full-size month (42.4M rows) and a 12-month backfill vs 12 runs (long).
bench-scale: $(STAMP) java
	$(BIN)/python benchmarks/scale.py

clean:
	rm -rf $(VENV) data .dagster_home/storage .dagster_home/history .dagster_home/schedules .dagster_home/logs
