"""Why the team deployment does not use dagster-postgres's storages as they are: the deployment of
`test_team_deployment` with stock storages, and the same database outage. Apart from it so that it
runs beside it: it starts its own database and processes."""

from __future__ import annotations

import pytest
import yaml

from medallion_assets.tools.sample_data import generate_month
from medallion_assets_tests.dagster_dev import wait_for
from medallion_assets_tests.postgres_server import postgres_server
from medallion_assets_tests.team_deployment import DEPLOY, instance_home
from medallion_assets_tests.test_team_deployment import (
    MONTHS,
    OUTAGE_SECONDS,
    ROWS,
    RUN_TIMEOUT,
    TABLES,
    event_types_of,
    is_running,
    launch_held_at_its_first_materialization,
    migrated_env,
    outage,
    started_deployment,
    table_versions,
)

pytestmark = pytest.mark.slow


def test_with_stock_dagster_postgres_the_same_outage_leaves_the_run_started_unrecorded(
    tmp_path,
):
    """Why deploy/dagster.yaml does not use dagster-postgres's storages as they are: the same
    deployment and outage with stock `PostgresRunStorage` and `PostgresEventLogStorage` (run
    monitoring on, as configured). The run process gives up on the database and exits during the
    outage, its failure written nowhere; the code server, which would mark a run whose process
    died as failed, asks the still-absent database and its thread that does this dies. Once the
    database is back the run stays STARTED through the daemon's run monitoring, which cannot ask
    the default run launcher whether the run's process lives (it ends such a run only after
    `max_runtime_seconds`, 6 h). Should a Dagster release get this right, this test fails:
    then the guarded storages can go."""
    with postgres_server() as stock_postgres:
        home = instance_home(tmp_path)
        config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
        url = {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}
        config["run_storage"] = {
            "module": "dagster_postgres.run_storage", "class": "PostgresRunStorage", "config": url,
        }
        config["event_log_storage"] = {
            "module": "dagster_postgres.event_log", "class": "PostgresEventLogStorage",
            "config": url,
        }
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
        generate_month(MONTHS[0], ROWS, tmp_path / "landing", seed=41)
        env = migrated_env(tmp_path, stock_postgres, home, MEDALLION_SPARK_MASTER="local[1]")
        with started_deployment(tmp_path, env) as deployment:
            run_id, run_process = launch_held_at_its_first_materialization(
                deployment, stock_postgres, MONTHS[0]
            )
            seen: dict[str, float] = {}

            def the_run_process_gives_up(elapsed: float) -> None:
                if "exited" not in seen and not is_running(run_process):
                    seen["exited"] = elapsed
                if "cleanup died" not in seen and (
                    "Exception in thread grpc-server-cleanup" in deployment.log_text("code")
                ):
                    seen["cleanup died"] = elapsed

            outage(stock_postgres, deployment, the_run_process_gives_up)
            print(f"\nstock dagster-postgres, {OUTAGE_SECONDS} s outage: {seen}")
            assert set(seen) == {"exited", "cleanup died"}, (seen, deployment.log_tail())
            assert "too many retries for DB connection" in deployment.log_text("code")

            # The database is back: let run monitoring look at the run twice.
            daemon_log = deployment.log_text("daemon")
            checks_before = daemon_log.count(f"Checking run {run_id}")
            wait_for(
                "run monitoring to check the run twice after the outage",
                lambda: True if deployment.log_text("daemon").count(f"Checking run {run_id}")
                >= checks_before + 2 else None,
                RUN_TIMEOUT,
                every=2,
            )
            assert deployment.run_once_answered(run_id, 120)["status"] == "STARTED"
            [(status,)] = stock_postgres.sql(f"SELECT status FROM runs WHERE run_id = '{run_id}'")
            assert status == "STARTED"
            recorded = event_types_of(stock_postgres, run_id)
            assert not recorded & {"STEP_FAILURE", "PIPELINE_FAILURE"}, recorded
            # The tables are as the guarded run leaves them: only bronze/events was committed.
            assert table_versions(tmp_path / "warehouse") == {
                table: 0 if table == "bronze/events" else None for table in TABLES
            }
