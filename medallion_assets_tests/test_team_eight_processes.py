"""Eight ``dagster asset materialize`` processes at once, one month each (local Spark), on the team
deployment's instance (PostgreSQL 15): all recorded in PostgreSQL, every table holding exactly the
eight months. Apart from `test_team_deployment` so that it runs beside it: it needs the database
and the instance, not the deployment's processes. The wall time is printed (``pytest -s``)."""

# ruff: noqa: F811  (the test's parameters name the fixtures imported below)
from __future__ import annotations

import time
from pathlib import Path

import pytest

# The deployment's fixtures (each test file gets its own database and months) and helpers.
from medallion_assets_tests.test_team_deployment import (  # noqa: F401
    MONTHS,
    RUN_TIMEOUT,
    TABLES,
    assert_tables_hold,
    commits_by,
    instance_env,
    materialize,
    months,
    months_of,
    postgres,
    root,
    runs_in_database,
)

pytestmark = pytest.mark.slow


def test_eight_months_materialized_by_eight_processes_at_once(
    instance_env, postgres, months, root
):
    warehouse = Path(instance_env["MEDALLION_WAREHOUSE_DIR"])
    runs_before = {run_id for run_id, _, _ in runs_in_database(postgres)}
    started = time.monotonic()
    processes = {month: materialize(instance_env, root, month) for month in MONTHS}
    outputs = {month: p.communicate(timeout=RUN_TIMEOUT)[0] for month, p in processes.items()}
    wall = time.monotonic() - started
    print(f"\neight months by eight `dagster asset materialize` processes at once: {wall:.1f} s")
    for month, process in processes.items():
        assert process.returncode == 0, f"{month}:\n{outputs[month][-4000:]}"

    runs = [r for r in runs_in_database(postgres) if r[0] not in runs_before]
    assert sorted(partition for _, _, partition in runs) == MONTHS
    assert {status for _, status, _ in runs} == {"SUCCESS"}
    run_ids = {run_id for run_id, _, _ in runs}
    # Each run's whole event stream made it in: its start and success events are in the log.
    listed = ", ".join(f"'{run_id}'" for run_id in sorted(run_ids))
    events = postgres.sql(
        f"""SELECT run_id, dagster_event_type FROM event_logs
            WHERE dagster_event_type IN ('PIPELINE_START', 'PIPELINE_SUCCESS')
            AND run_id IN ({listed})"""
    )
    assert sorted(events) == sorted(
        (run_id, kind) for run_id in run_ids for kind in ("PIPELINE_START", "PIPELINE_SUCCESS")
    )

    assert_tables_hold(warehouse, months)
    for table in TABLES:
        commits = commits_by(warehouse / table, run_ids)
        # One commit per run, each replacing its own month: the concurrent writers all committed.
        assert sorted(m for c in commits for m in months_of(c)) == MONTHS, table
        assert len({c["dagster_run_id"] for c in commits}) == len(MONTHS), table
