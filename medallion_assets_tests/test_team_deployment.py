"""The team deployment (``deploy/``) on real parts: a PostgreSQL 15 server, the Procfile's code
server, webserver and daemon as separate processes, and a Spark standalone cluster.

The tests share one database, one landing directory of eight generated months and one warehouse,
but none relies on another having run: each runs alone and in any order. A test that needs the
eight months in the warehouse asks for the `eight_months_built` fixture, which builds them in one
run unless they are there already.

* the deployment's instance settings as the processes load them;
* (in `test_team_eight_processes`, with this file's fixtures) eight ``dagster asset materialize``
  processes at once, one month each (local Spark), all recorded in PostgreSQL, every table
  holding exactly the eight months;
* the deployment — code server, webserver and daemon from deploy/Procfile, runs on the standalone
  cluster: a backfill of the eight months launched over GraphQL completes although the daemon is
  SIGKILLed while it runs and started again; each month committed once per table, no run left in
  progress;
* PostgreSQL down for `OUTAGE_SECONDS` while a run is in progress: the run fails with a message
  naming the instance storage once the database is back, every table stays at a committed
  version, and the next run of that month succeeds; (in `test_stock_postgres_outage`) the same
  outage under stock dagster-postgres leaves the run STARTED with no failure recorded (why
  deploy/dagster.yaml uses `medallion_assets.tools.instance_storage`);
* a month launched as the UI launches it runs through the daemon on the cluster with the per-run
  sizes of deploy/spark/spark-defaults.conf.

What the tables must hold is computed independently from the CSV files with polars, not with the
project's code. The wall times are printed (``pytest -s``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import psutil
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from polars.testing import assert_frame_equal

from medallion_assets.resources import class_archive
from medallion_assets.tools.sample_data import generate_month
from medallion_assets_tests.dagster_dev import wait_for
from medallion_assets_tests.postgres_server import PostgresServer, postgres_server
from medallion_assets_tests.team_deployment import (
    DEPLOY,
    TeamDeployment,
    base_env,
    instance_home,
    master_state,
    standalone_cluster,
    team_deployment,
)

pytestmark = pytest.mark.slow

MONTHS = ["2019-10", "2019-11", "2019-12", "2020-01", "2020-02", "2020-03", "2020-04", "2020-05"]
ROWS = 2000
RUN_TIMEOUT = 600
TABLES = (
    "bronze/events",
    "bronze/events_rejected",
    "silver/events",
    "gold/revenue_by_brand",
    "gold/daily_funnel",
)
ALL_ASSETS = [t.split("/") for t in TABLES]
SOURCE_COLUMNS = [
    "event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price",
    "user_id", "user_session",
]
# Eight Spark drivers at once on a 2-core, 24 GB machine: a small heap each is plenty for these
# months (the project's local default is 2g), one core each, the serial collector, and the JVM's
# quick compiler only (the suite's JAVA_TOOL_OPTIONS, conftest.py) — for a run this short,
# optimizing compilation costs more CPU than it saves. The driver still starts from the
# environment's class archive, as every run's does (`class_archive`): these options replace the
# project's, so they name it again.
_ARCHIVE_OPTION = class_archive.java_options(class_archive.archive_path(None, None)) or ""
CLI_RUN_CONFIG = {
    "resources": {
        "spark": {
            "config": {
                "master": "local[1]",
                "spark_config": {
                    "spark.driver.memory": "640m",
                    "spark.driver.extraJavaOptions": f"-XX:+UseSerialGC {_ARCHIVE_OPTION}".strip(),
                },
            }
        }
    }
}
WAITING = "Dagster's instance storage is unreachable: waiting up to"
# Holds (until the server stops under it) the insert of the first materialization written.
HOLD_FIRST_MATERIALIZATION = """
CREATE OR REPLACE FUNCTION hold_materialization() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(600);
    RETURN NEW;
END $$;
CREATE TRIGGER hold_first_materialization BEFORE INSERT ON event_logs FOR EACH ROW
WHEN (NEW.dagster_event_type = 'ASSET_MATERIALIZATION') EXECUTE FUNCTION hold_materialization();
"""
IN_PROGRESS = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
# How long the database is down in the outage tests: longer than a run process survives it under
# stock dagster-postgres (it retries each write about 6 s and exited 46 s after the server
# stopped, measured twice) plus the code server's own retries when it then looks at the dead
# process (about 6 s), with room for a loaded machine. A database restart or failover takes that.
OUTAGE_SECONDS = 90


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("team")


@pytest.fixture(scope="module")
def postgres() -> PostgresServer:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def months(root) -> dict[str, Path]:
    landing = root / "landing"
    return {m: generate_month(m, ROWS, landing, seed=41) for m in MONTHS}


def migrated_env(
    root: Path, postgres: PostgresServer, home: Path, **extra: str
) -> dict[str, str]:
    """The environment of deploy/env.example for the instance in ``home``, with landing and
    warehouse under ``root`` and the instance's tables created as the README's setup does
    (`dagster instance migrate`, once, before anything else starts)."""
    env = base_env(
        DAGSTER_HOME=str(home),
        DAGSTER_POSTGRES_URL=postgres.url,
        MEDALLION_LANDING_DIR=str(root / "landing"),
        MEDALLION_WAREHOUSE_DIR=str(root / "warehouse"),
        SPARK_LOCAL_IP="127.0.0.1",
        **extra,
    )
    migrated = subprocess.run(["dagster", "instance", "migrate"], env=env, cwd=root,
                              capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    return env


@pytest.fixture(scope="module")
def instance_env(root, postgres, months) -> dict[str, str]:
    return migrated_env(root, postgres, instance_home(root))


@pytest.fixture(scope="module")
def eight_months_built(instance_env, months) -> Path:
    """The warehouse holding the eight months, as the source files define them: built in one
    run of the deployment's instance unless every table holds exactly them already."""
    warehouse = Path(instance_env["MEDALLION_WAREHOUSE_DIR"])
    if not all_tables_hold_exactly(warehouse, MONTHS):
        config = {"resources": {"spark": {"config": {"master": "local[2]"}}}}
        built = subprocess.run(
            ["dagster", "asset", "materialize", "-m", "medallion_assets.definitions",
             "--select", "*", "--partition-range", f"{MONTHS[0]}...{MONTHS[-1]}",
             "--config-json", json.dumps(config)],
            env=instance_env, cwd=warehouse.parent, capture_output=True, text=True,
            timeout=RUN_TIMEOUT,
        )
        assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    assert_tables_hold(warehouse, months)
    return warehouse


@pytest.fixture(scope="module")
def cluster(root):
    # One executor of 2 cores and 2g per run (deploy/spark/spark-defaults.conf) must fit the worker.
    with standalone_cluster(root, cores=2, memory="3g") as running:
        yield running


@contextmanager
def started_deployment(root: Path, env: dict[str, str]) -> Iterator[TeamDeployment]:
    """deploy/Procfile's processes in ``env``; the landing sensor stopped before the daemon first
    ticks: it would otherwise turn the files already in the landing directory into runs of its
    own, beside the ones a test launches."""
    with team_deployment(root, env) as running:
        assert running.stop_sensor("landing_csv_sensor") == "STOPPED"
        running.start_daemon()
        yield running


@pytest.fixture(scope="module")
def deployment(root, instance_env, cluster) -> TeamDeployment:
    master_url, _ = cluster
    env = dict(instance_env, MEDALLION_SPARK_MASTER=master_url,
               SPARK_CONF_DIR=str(DEPLOY / "spark"))
    with started_deployment(root, env) as running:
        yield running


# -- what the tables must hold, computed without the project ------------------------------
def source_frame(path: Path, month: str) -> pl.DataFrame:
    frame = pl.read_csv(path, schema={c: pl.String for c in SOURCE_COLUMNS})
    return frame.select(
        pl.col("event_time").str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S UTC")
        .dt.replace_time_zone("UTC"),
        "event_type",
        pl.col("product_id").cast(pl.Int64),
        pl.col("category_id").cast(pl.Int64),
        "category_code",
        "brand",
        pl.col("price").cast(pl.Decimal(12, 2)),
        pl.col("user_id").cast(pl.Int64),
        "user_session",
        pl.lit(dt.date.fromisoformat(f"{month}-01")).alias("month"),
    )


def expected_tables(files: dict[str, Path]) -> dict[str, pl.DataFrame]:
    bronze = pl.concat([source_frame(path, month) for month, path in files.items()])
    silver = bronze.filter(pl.col("user_id").is_not_null()).unique()
    purchases = silver.filter(pl.col("event_type") == "purchase")
    revenue = purchases.group_by("month", "brand").agg(
        pl.col("price").sum().alias("total_revenue"), pl.len().cast(pl.Int64).alias("purchases")
    )
    funnel = (
        silver.with_columns(pl.col("event_time").dt.date().alias("date"))
        .group_by("month", "date")
        .agg(
            (pl.col("event_type") == "view").sum().cast(pl.Int64).alias("views"),
            (pl.col("event_type") == "cart").sum().cast(pl.Int64).alias("carts"),
            (pl.col("event_type") == "purchase").sum().cast(pl.Int64).alias("purchases"),
            pl.col("user_id").n_unique().cast(pl.Int64).alias("distinct_users"),
        )
    )
    return {
        "bronze/events": bronze,
        "silver/events": silver,
        "gold/revenue_by_brand": revenue,
        "gold/daily_funnel": funnel,
    }


def same_rows(actual: pl.DataFrame, expected: pl.DataFrame, what: str) -> None:
    columns = expected.columns
    actual = actual.select(columns).cast(dict(expected.schema)).sort(columns, nulls_last=True)
    expected = expected.sort(columns, nulls_last=True)
    assert actual.height == expected.height, f"{what}: {actual.height} rows, not {expected.height}"
    assert_frame_equal(actual, expected, check_exact=True)


def delta_months(table: Path) -> list[str]:
    """The months the table's current version has files for, from the Delta log (an empty month
    is a zero-row file there, so this sees months that hold no rows too)."""
    return sorted({p["month"][:7] for p in DeltaTable(str(table)).partitions()})


def all_tables_hold_exactly(warehouse: Path, months: list[str]) -> bool:
    try:
        return all(delta_months(warehouse / table) == sorted(months) for table in TABLES)
    except TableNotFoundError:
        return False


def assert_tables_hold(warehouse: Path, files: dict[str, Path]) -> None:
    for table in TABLES:
        assert delta_months(warehouse / table) == sorted(files), table
    for table, expected in expected_tables(files).items():
        same_rows(pl.read_delta(str(warehouse / table)), expected, table)
    # Generated months hold no invalid line: every line is in bronze/events, none rejected.
    assert pl.read_delta(str(warehouse / "bronze/events_rejected")).height == 0


def table_versions(warehouse: Path) -> dict[str, int | None]:
    """Each table's current Delta version; None for a table never written."""
    versions: dict[str, int | None] = {}
    for table in TABLES:
        try:
            versions[table] = DeltaTable(str(warehouse / table)).version()
        except TableNotFoundError:
            versions[table] = None
    return versions


def months_of(commit: dict) -> list[str]:
    """The months a commit replaced, from its `dagster_partitions` (``first...last``)."""
    first, _, last = commit["dagster_partitions"].partition("...")
    last = last or first
    out, year, month = [], int(first[:4]), int(first[5:7])
    while f"{year:04d}-{month:02d}" <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def commits_by(table: Path, run_ids: set[str]) -> list[dict]:
    return [c for c in DeltaTable(str(table)).history() if c.get("dagster_run_id") in run_ids]


def runs_in_database(postgres: PostgresServer) -> list[tuple[str, str, str | None]]:
    """(run id, status, partition) of every run, read with SQL from Dagster's tables."""
    return postgres.sql(
        """SELECT r.run_id, r.status, t.value FROM runs r
           LEFT JOIN run_tags t ON t.run_id = r.run_id AND t.key = 'dagster/partition'"""
    )


def event_types_of(postgres: PostgresServer, run_id: str) -> set[str]:
    """The kinds of Dagster event the database holds for a run."""
    rows = postgres.sql(
        f"SELECT DISTINCT dagster_event_type FROM event_logs WHERE run_id = '{run_id}'"
    )
    return {kind for (kind,) in rows if kind}


def materialize(env: dict[str, str], cwd: Path, month: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["dagster", "asset", "materialize", "-m", "medallion_assets.definitions", "--select", "*",
         "--partition", month, "--config-json", json.dumps(CLI_RUN_CONFIG)],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


# -- the database outage ---------------------------------------------------------------------
def launch_held_at_its_first_materialization(
    deployment: TeamDeployment, postgres: PostgresServer, month: str
) -> tuple[str, psutil.Process]:
    """Launch the month's run as the UI does, with a trigger holding the insert of its first
    materialization (bronze/events', written right after that table's commit) until the server
    stops under it; return the run's id and its process once the insert is held.

    The outage is pinned to one moment instead of raced against the run: polling for the
    committed event and then stopping the server let silver's commit slip in between on a loaded
    machine."""
    postgres.execute(HOLD_FIRST_MATERIALIZATION)
    run_id = deployment.launch_job("medallion_monthly", month)
    wait_for("the run's first materialization to be held", lambda: True if postgres.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
    )[0][0] else None, RUN_TIMEOUT, every=0.5)
    # The run process logs its events with its pid: "<run id> - <pid> - RUN_START - ...".
    started = re.search(rf"{run_id} - (\d+) - RUN_START", deployment.log_text("code"))
    assert started, deployment.log_tail()
    return run_id, psutil.Process(int(started.group(1)))


def is_running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def outage(postgres: PostgresServer, deployment: TeamDeployment, watch) -> None:
    """Stop the server (``fast``: clients disconnected, as an administrator does) for
    `OUTAGE_SECONDS`, calling ``watch(seconds since the stop)`` every second meanwhile and
    checking that the long-lived processes survive; then start it again and drop the trigger."""
    stopped = time.monotonic()
    postgres.stop("fast")
    try:
        while (elapsed := time.monotonic() - stopped) < OUTAGE_SECONDS:
            for name in ("code", "webserver", "daemon"):
                assert deployment.alive(name), f"{name} died:\n{deployment.log_tail()}"
            watch(elapsed)
            time.sleep(1)
    finally:
        postgres.start()
        postgres.execute("DROP TRIGGER IF EXISTS hold_first_materialization ON event_logs")


# -- the instance settings ---------------------------------------------------------------------
def test_the_deployment_instance_reads_its_settings(instance_env, monkeypatch):
    """deploy/dagster.yaml as the processes load it: PostgreSQL from DAGSTER_POSTGRES_URL (runs
    and the event log through the guarded storages), runs queued, the `spark` pool limited per
    run, run monitoring on, telemetry off."""
    from dagster import DagsterInstance, QueuedRunCoordinator
    from dagster_postgres import PostgresScheduleStorage

    from medallion_assets.tools.instance_storage import GuardedEventLogStorage, GuardedRunStorage

    # The instance reads the URL from its environment (`env:` in dagster.yaml), as processes do.
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", instance_env["DAGSTER_POSTGRES_URL"])
    with DagsterInstance.from_config(instance_env["DAGSTER_HOME"]) as instance:
        assert type(instance.run_storage) is GuardedRunStorage
        assert type(instance.event_log_storage) is GuardedEventLogStorage
        assert type(instance.schedule_storage) is PostgresScheduleStorage
        for storage in (instance.run_storage, instance.event_log_storage,
                        instance.schedule_storage):
            assert storage.postgres_url == instance_env["DAGSTER_POSTGRES_URL"]
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        pools = instance.get_concurrency_config().pool_config
        assert (pools.pool_granularity.value, pools.default_pool_limit) == ("run", 4)
        assert instance.run_monitoring_enabled
        assert not instance.telemetry_enabled


# -- backfill through the daemon, daemon killed mid-way ------------------------------
def test_a_backfill_completes_through_a_daemon_killed_and_restarted(
    deployment, postgres, months, cluster
):
    warehouse = Path(deployment.env["MEDALLION_WAREHOUSE_DIR"])
    _, ui_port = cluster
    apps_before = {a["id"] for a in master_state(ui_port)["completedapps"]}
    started = time.monotonic()
    backfill_id = deployment.launch_backfill(ALL_ASSETS, MONTHS, "eight months")

    def a_run_in_progress() -> dict | None:
        backfill = deployment.backfill(backfill_id)
        assert backfill["status"] == "REQUESTED", backfill
        running = [r for r in backfill["runs"] if r["status"] == "STARTED"]
        return backfill if running else None

    at_kill = wait_for("a run of the backfill to be executing", a_run_in_progress, RUN_TIMEOUT, 0.5)
    deployment.kill("daemon")
    killed_at = time.monotonic() - started
    deployment.start_daemon()

    def completed() -> dict | None:
        backfill = deployment.backfill(backfill_id)
        assert backfill["status"] not in ("FAILED", "CANCELED", "COMPLETED_FAILED"), (
            f"{backfill}\n{deployment.log_tail()}"
        )
        return backfill if backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS") else None

    backfill = wait_for("the backfill to complete", completed, RUN_TIMEOUT, every=2)
    took = time.monotonic() - started
    print(f"\nbackfill of eight months through the daemon: {took:.1f} s "
          f"(daemon SIGKILLed at {killed_at:.1f} s, runs then: {at_kill['runs']})")

    run_ids = {r["runId"] for r in backfill["runs"]}
    assert {r["status"] for r in backfill["runs"]} == {"SUCCESS"}
    # Nothing left in progress anywhere in the instance, and no run the backfill does not know of.
    assert not [r for r in runs_in_database(postgres) if r[1] in IN_PROGRESS]
    backfill_runs = postgres.sql(
        f"SELECT run_id FROM run_tags WHERE key = 'dagster/backfill' AND value = '{backfill_id}'"
    )
    assert {r for (r,) in backfill_runs} == run_ids
    for table in TABLES:
        committed = sorted(m for c in commits_by(warehouse / table, run_ids) for m in months_of(c))
        assert committed == MONTHS, f"{table}: months committed by the backfill {committed}"
    assert_tables_hold(warehouse, months)
    # The backfill's Spark work ran on the standalone cluster: one application per run.
    new_apps = [a for a in master_state(ui_port)["completedapps"] if a["id"] not in apps_before]
    assert len(new_apps) == len(run_ids)


# -- the database stops while a run is in progress ----------------------------------------
def test_a_run_that_loses_the_database_fails_clearly_and_leaves_committed_tables(
    eight_months_built, deployment, postgres, months
):
    warehouse = eight_months_built
    month = MONTHS[0]
    before = table_versions(warehouse)
    run_id, run_process = launch_held_at_its_first_materialization(deployment, postgres, month)

    def the_run_process_waits(elapsed: float) -> None:
        assert is_running(run_process), (
            f"the run process exited {elapsed:.0f} s into the outage:\n{deployment.log_tail()}"
        )

    outage(postgres, deployment, the_run_process_waits)
    # It said why it waits: it failed the held insert and waits to record its failure.
    assert WAITING in deployment.log_text("code"), deployment.log_tail()

    run = deployment.wait_for_run(run_id, RUN_TIMEOUT)
    assert run["status"] == "FAILURE"
    errors = [
        e["error"]["message"]
        for e in run["eventConnection"]["events"]
        if e.get("error")
    ]
    storage = f"PostgreSQL database 'dagster' at 127.0.0.1:{postgres.port}"
    assert any(
        "Dagster's instance storage is unreachable: the " + storage in m
        and "stops before its next step; every Delta table keeps its last committed version" in m
        for m in errors
    ), errors

    # bronze/events holds this run's commit (made before the lost event); the step failed at that
    # event, so no other table was touched, not even bronze's second output.
    changed = {}
    for table, version in table_versions(warehouse).items():
        if version != before[table]:
            changed[table] = DeltaTable(str(warehouse / table)).history(1)[0]["dagster_run_id"]
    assert changed == {"bronze/events": run_id}, changed
    assert_tables_hold(warehouse, months)

    # What the error tells the user to do works: the failed run holds nothing (no queue place,
    # no `spark` pool slot), and the month's next run succeeds and commits every table.
    rerun_id = deployment.launch_job("medallion_monthly", month)
    rerun = deployment.wait_for_run(rerun_id, RUN_TIMEOUT)
    assert rerun["status"] == "SUCCESS", rerun
    for table in TABLES:
        assert [months_of(c) for c in commits_by(warehouse / table, {rerun_id})] == [[month]]
    assert_tables_hold(warehouse, months)
    assert not [r for r in runs_in_database(postgres) if r[1] in IN_PROGRESS]


# -- a run on the cluster --------------------------------------------------------------
def test_a_month_launched_like_the_ui_runs_through_the_daemon_on_the_standalone_cluster(
    eight_months_built, deployment, postgres, months, cluster
):
    warehouse = eight_months_built
    month = MONTHS[0]
    _, ui_port = cluster
    apps_before = {a["id"] for a in master_state(ui_port)["completedapps"]}
    started = time.monotonic()
    run_id = deployment.launch_job("medallion_monthly", month)
    run = deployment.wait_for_run(run_id, RUN_TIMEOUT)
    assert run["status"] == "SUCCESS", run
    print(f"\none month through the daemon on the standalone cluster: "
          f"{time.monotonic() - started:.1f} s from launch to success")
    for table in TABLES:
        assert [months_of(c) for c in commits_by(warehouse / table, {run_id})] == [[month]]
    assert_tables_hold(warehouse, months)
    [app] = [a for a in master_state(ui_port)["completedapps"] if a["id"] not in apps_before]
    assert app["name"] == "medallion_assets"
    assert app["cores"] == 2 and app["memoryperexecutor"] == 2048, app
    assert not [r for r in runs_in_database(postgres) if r[1] in IN_PROGRESS]
