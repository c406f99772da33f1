"""The project on a real Spark Connect server, as `make dev` runs it.

The suite starts one Spark Connect server (PySpark's own ``SparkConnectServer``, bound to
127.0.0.1 on a free port) for the whole session and stops it at the end. A Python process is
either a classic PySpark process or a Connect client (PySpark switches its `functions`, `Column`
and `Observation` on ``SPARK_CONNECT_MODE_ENABLED``), and this suite's own session is classic, so
every Connect run happens in a fresh Python process with ``MEDALLION_SPARK_REMOTE`` set — exactly
what a run launched by `make dev` is. That process reports what it saw as JSON; the assertions
are made here.

What is proved on Connect: the whole job for a month (every asset, the IO manager's staging,
commit, observations and line accounting, every check) gives the same tables and the same check
outcomes as the classic session; the sensor then sees the month built; the maintenance job
compacts and vacuums what Connect runs wrote and the month still rebuilds from it; a run starts no
JVM of its own and ends its client without stopping the server; a server that is down fails the
step with the endpoint named and the retry succeeds once the server is back.

The client processes are configured as a user configures a deployment: through the environment
(``MEDALLION_SPARK_REMOTE``, ``MEDALLION_LANDING_DIR``, ...), which they read with
`Settings.from_env`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from medallion_assets.resources.spark import REMOTE_ENV
from medallion_assets.tools.dev import ConnectServer
from medallion_assets_tests.dagster_dev import free_port
from medallion_assets_tests.source_lines import (
    TABLES,
    check_evaluations,
    good_line,
    good_lines,
    run_job,
    write_source,
)

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
CLIENT_TIMEOUT = 600
# Columns that differ between two runs of the same input whatever the Spark.
PER_RUN_COLUMNS = ("_ingested_at",)


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory) -> ConnectServer:
    log = tmp_path_factory.mktemp("spark_connect") / "server.log"
    server = ConnectServer(port=free_port(), memory="1g", log_path=log)
    with server:
        yield server
    assert server.process is None


def script(*parts: str) -> str:
    """Python source made of indented parts (each dedented on its own)."""
    return "\n".join(textwrap.dedent(part) for part in parts)


def client_env(server_endpoint: str, root: Path, **env: str) -> dict[str, str]:
    """The environment of a client process: this one's without pytest's or any project
    variable of the caller's, plus the Connect endpoint and landing and warehouse directories
    under `root`."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "MEDALLION_"))
    }
    full_env.update(
        {
            REMOTE_ENV: server_endpoint,
            "MEDALLION_LANDING_DIR": str(root / "landing"),
            "MEDALLION_WAREHOUSE_DIR": str(root / "warehouse"),
            "PYTHONPATH": str(PROJECT),
            **env,
        }
    )
    return full_env


def on_connect(server_endpoint: str, root: Path, *parts: str, **env: str) -> dict:
    """Run a script in a fresh Python process whose Spark is the Connect server at
    `server_endpoint`, with landing and warehouse directories under `root`; return the JSON
    object it prints last. `parts` are the script's source, each dedented on its own."""
    completed = subprocess.run(
        [sys.executable, "-c", script(*parts)],
        cwd=root,
        env=client_env(server_endpoint, root, **env),
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
    )
    assert completed.returncode == 0, completed.stderr[-6000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


# What a client process reports after running the job for a month: the run's outcome, its check
# outcomes, which Spark it used, and whether it started a JVM of its own. Its settings are its
# environment's.
REPORT_RUN = """
    import json
    from dagster import DagsterInstance
    from pyspark.core.context import SparkContext
    from medallion_assets.settings import Settings
    from medallion_assets_tests.source_lines import check_evaluations, run_job

    SETTINGS = Settings.from_env()

    def report(result, instance):
        logs = [r.user_message for r in instance.all_logs(result.run_id) if not r.is_dagster_event]
        return {
            "run_id": result.run_id,
            "success": result.success,
            "checks": {
                name: [e.passed, e.severity.value] for name, e in check_evaluations(result).items()
            },
            "spark_logs": [m for m in logs if m.startswith("Spark: ")],
            "jvm_started_here": SparkContext._gateway is not None,
        }
"""


def month_lines() -> list[str]:
    """A month with a few malformed lines among the good ones: bronze reads it twice."""
    bad = [
        good_line(9001)[: good_line(9001).rindex(",")],  # a field short
        good_line(9002).replace(",view,", ",click,").replace(",cart,", ",click,"),
        "2019/10/02 10:00:00," + good_line(9003).split(",", 1)[1],
    ]
    lines = good_lines(3000)
    for n, line in enumerate(bad):
        lines.insert(700 * (n + 1), line)
    return lines


def table_rows(warehouse: Path, table: str) -> pl.DataFrame:
    frame = pl.read_delta(str(warehouse / table))
    frame = frame.drop([c for c in PER_RUN_COLUMNS if c in frame.columns])
    return frame.sort(frame.columns, nulls_last=True)


def test_the_whole_job_for_a_month_gives_the_same_tables_and_checks_as_a_classic_session(
    connect_server, tmp_path, settings, landing_dir, warehouse_dir, spark
):
    # The classic reference, in this process (the suite's session).
    write_source(landing_dir, "2019-Oct.csv", month_lines())
    classic = run_job(settings, "2019-10")
    assert classic.success
    classic_checks = {
        n: [e.passed, e.severity.value] for n, e in check_evaluations(classic).items()
    }

    # The same file through a Connect client process, then the sensor with that run's instance.
    root = tmp_path / "connect"
    (root / "landing").mkdir(parents=True)
    write_source(root / "landing", "2019-Oct.csv", month_lines())
    seen = on_connect(
        connect_server.endpoint,
        root,
        REPORT_RUN,
        """
        from dagster import build_sensor_context
        from medallion_assets.definitions import defs

        with DagsterInstance.ephemeral() as instance:
            result = run_job(SETTINGS, "2019-10", instance=instance)
            seen = report(result, instance)
            landing = {"landing": defs.resources["landing"]}
            sensor = defs.resolve_sensor_def("landing_csv_sensor")
            tick = sensor(build_sensor_context(instance=instance, resources=landing))
            seen["sensor_requests"] = [r.partition_key for r in tick.run_requests or []]
            seen["sensor_skip"] = tick.skip_reason.skip_message if tick.skip_reason else None
        print(json.dumps(seen))
        """,
    )

    assert seen["success"], seen
    assert seen["checks"] == classic_checks
    assert len(seen["checks"]) >= 5
    # One server-side session for the whole run: the assets and the IO manager share it.
    [how] = seen["spark_logs"]
    assert how.startswith(f"Spark: a Spark Connect client of {connect_server.endpoint} (")
    assert not seen["jvm_started_here"], "a Connect run must not start a JVM of its own"
    for table in TABLES:
        expected = table_rows(warehouse_dir, table)
        got = table_rows(root / "warehouse", table)
        assert got.schema == expected.schema, table
        assert got.equals(expected), table
    rejected = pl.read_delta(str(root / "warehouse" / "bronze" / "events_rejected"))
    assert rejected.height == 3
    assert pl.read_delta(str(root / "warehouse" / "bronze" / "events")).height == 3000
    # The sensor finds October built by that run from this very file.
    assert seen["sensor_requests"] == []
    assert "2019-Oct.csv" in seen["sensor_skip"]


def test_maintenance_compacts_what_connect_runs_wrote_and_the_month_rebuilds_from_it(
    connect_server, tmp_path
):
    (tmp_path / "landing").mkdir()
    write_source(tmp_path / "landing", "2019-Nov.csv", good_lines(2000, month="2019-11"))
    seen = on_connect(
        connect_server.endpoint,
        tmp_path,
        REPORT_RUN,
        """
        from medallion_assets.definitions import defs

        with DagsterInstance.ephemeral() as instance:
            runs = [
                report(run_job(SETTINGS, "2019-11", instance=instance), instance) for _ in range(2)
            ]
            maintenance = defs.resolve_job_def("delta_maintenance").execute_in_process(
                run_config={"ops": {"maintain_delta_tables": {"config": {
                    "retention_hours": 0, "allow_short_retention": True}}}},
                instance=instance,
            )
            observed = {
                o.asset_key.to_user_string(): {k: v.value for k, v in o.metadata.items()}
                for o in maintenance.asset_observations_for_node("maintain_delta_tables")
            }
            after = report(run_job(SETTINGS, "2019-11", instance=instance), instance)
        print(json.dumps({"runs": runs, "maintenance": maintenance.success,
                          "observed": observed, "after": after}))
        """,
    )
    assert [r["success"] for r in seen["runs"]] == [True, True]
    assert seen["maintenance"]
    bronze = seen["observed"]["bronze/events"]
    # The second run replaced the first run's files; a zero retention vacuums them.
    assert bronze["files_vacuumed"] >= 1
    assert seen["after"]["success"]
    assert all(passed for passed, _ in seen["after"]["checks"].values())
    events = pl.read_delta(str(tmp_path / "warehouse" / "bronze" / "events"))
    assert events.height == 2000


def test_a_run_ends_its_own_client_and_session_and_leaves_the_server_serving(
    connect_server, tmp_path
):
    seen = on_connect(
        connect_server.endpoint,
        tmp_path,
        """
        import json
        from dagster import asset, materialize
        from medallion_assets.resources.spark import SparkSessionResource
        from medallion_assets.settings import Settings
        from pyspark.core.context import SparkContext

        sessions = []

        def spark_of_env():
            return SparkSessionResource(remote=Settings.from_env().spark_remote)

        @asset
        def first(spark: SparkSessionResource):
            sessions.append(spark.spark_session)
            return spark.spark_session.range(10).count()

        @asset
        def second(first, spark: SparkSessionResource):
            sessions.append(spark.spark_session)
            return spark.spark_session.range(first).selectExpr("sum(id) AS s").first()["s"]

        result = materialize([first, second], resources={"spark": spark_of_env()})
        again = materialize([first, second], resources={"spark": spark_of_env()})
        print(json.dumps({
            "success": result.success and again.success,
            "sum": result.output_for_node("second"),
            "one_client_per_run": sessions[0] is sessions[1] and sessions[2] is sessions[3],
            "new_client_per_run": sessions[1] is not sessions[2],
            "session_ids": [s.session_id for s in sessions],
            "stopped_after_run": [s.is_stopped for s in sessions],
            "type": type(sessions[0]).__module__,
            "jvm_started_here": SparkContext._gateway is not None,
        }))
        """,
    )
    assert seen["success"] and seen["sum"] == 45
    assert seen["type"] == "pyspark.sql.connect.session"
    assert seen["one_client_per_run"] and seen["new_client_per_run"]
    ids = seen["session_ids"]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]
    assert all(seen["stopped_after_run"])
    assert not seen["jvm_started_here"]
    # The shared server outlived both runs and still serves a new client.
    assert connect_server.process is not None and connect_server.process.poll() is None
    again = on_connect(
        connect_server.endpoint,
        tmp_path,
        """
        import json
        from medallion_assets.resources.spark import SparkSessionResource
        from medallion_assets.settings import Settings
        spark = SparkSessionResource(remote=Settings.from_env().spark_remote).spark_session
        print(json.dumps({"count": spark.range(7).count()}))
        """,
    )
    assert again == {"count": 7}


class StepLog:
    """Reads a client's stderr, where Dagster logs each event of the run, as it is written; says
    when a line of the run's log names `event` for `step`."""

    def __init__(self, stream, step: str, event: str):
        self.lines: list[str] = []
        self.marker = f" - {step} - {event} - "
        self.seen = threading.Event()
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)
            if self.marker in line:
                self.seen.set()
        self.closed.set()

    def wait(self, timeout: float) -> None:
        """Return once the event is logged; fail if the client ends first or time runs out."""
        deadline = time.monotonic() + timeout
        while not self.seen.wait(0.5):
            if self.closed.is_set() and not self.seen.is_set():
                raise AssertionError(f"the client ended before {self.marker.strip(' -')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {self.marker.strip(' -')} within {timeout:.0f} s")

    def text(self) -> str:
        self._thread.join(timeout=30)
        return "".join(self.lines)


def test_a_server_that_is_down_fails_the_step_naming_it_and_the_retry_succeeds_once_it_is_up(
    tmp_path,
):
    """The server is started only once the client's first attempt has failed and Dagster has
    scheduled its retry, so the first attempt cannot find a server and the retries (about 5, 15
    and 35 s apart) give a starting server some 45 s before the last one."""
    port = free_port()
    endpoint = f"sc://127.0.0.1:{port}"
    (tmp_path / "landing").mkdir()
    write_source(tmp_path / "landing", "2019-Oct.csv", good_lines(200))
    code = script(
        REPORT_RUN,
        """
        from medallion_assets_tests.source_lines import retried_steps

        with DagsterInstance.ephemeral() as instance:
            result = run_job(SETTINGS, "2019-10", instance=instance)
            seen = report(result, instance)
            seen["retried"] = retried_steps(result)
            seen["failures"] = [
                e.event_specific_data.error.to_string()
                for e in result.all_events
                if e.event_type_value == "STEP_UP_FOR_RETRY"
            ]
        print(json.dumps(seen))
        """,
    )
    output = tmp_path / "client.out"
    with open(output, "w") as stdout:
        client = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=client_env(endpoint, tmp_path),
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
    log = StepLog(client.stderr, "bronze_events", "STEP_UP_FOR_RETRY")
    server = ConnectServer(port=port, memory="1g", log_path=tmp_path / "server.log")
    try:
        log.wait(CLIENT_TIMEOUT)
        first_failure = time.monotonic()
        with server:
            ready_after = time.monotonic() - first_failure
            client.wait(timeout=CLIENT_TIMEOUT)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    stderr = log.text()
    assert client.returncode == 0, stderr[-6000:]
    seen = json.loads(output.read_text().strip().splitlines()[-1])
    assert seen["success"], (f"server ready {ready_after:.0f} s after the first failure", seen)
    assert "bronze_events" in seen["retried"]
    # The first attempt failed because nothing answered, and said where it looked.
    unanswered = f"The Spark Connect server at {endpoint} (${REMOTE_ENV}) does not answer"
    assert unanswered in seen["failures"][0], seen["failures"]
    assert server.process is None
