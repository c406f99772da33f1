"""End to end under a real `make dev` (Spark Connect server, webserver, daemon, code server), as a
user runs it.

Each test starts its own `make dev` (see `dagster_dev`: free ports, a temporary DAGSTER_HOME with
the project's dagster.yaml, temporary landing and warehouse directories), so each can run alone,
and stops it with Ctrl-C, failing if anything is left running.

1. `make run`, then `make dev`, then a new month's CSV copied into the landing directory: only
   that month runs, once, on the warm Connect server, and reaches gold with the metadata the UI
   shows (the latency is printed);
2. several months landing together become runs that never overlap, from the first queue pass, and
   no run starts a Spark JVM of its own;
3. a backfill of three months launched through GraphQL (what the UI's "Launch backfill" sends)
   completes as one run and every month is in every table;
4. the UI and the Connect server listen on 127.0.0.1 only, on the ports asked for, the `spark`
   pool's limit is in the instance before any run, and Ctrl-C frees both ports;
5. with a webhook in the environment, the UI shows the alert resource's webhook by its variable's
   name only, and a failed run is posted to the webhook by the daemon's failure sensor.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import polars as pl
import psutil
import pytest
from dagster import DagsterInstance
from deltalake import DeltaTable

from medallion_assets.tools.dev import SPARK_POOL
from medallion_assets.tools.sample_data import generate_month
from medallion_assets_tests.dagster_dev import (
    LOCATION,
    PROJECT,
    DagsterDev,
    dagster_dev,
    dagster_home,
    user_env,
    wait_for,
)
from medallion_assets_tests.test_alerts import SECRET_PATH, Webhook

pytestmark = pytest.mark.slow

ROWS = 3000
RUN_TIMEOUT = 900
TABLES = ("bronze/events", "silver/events", "gold/revenue_by_brand", "gold/daily_funnel")
GOLD = ("gold/revenue_by_brand", "gold/daily_funnel")
ALL_ASSETS = [
    ["bronze", "events"],
    ["bronze", "events_rejected"],
    ["silver", "events"],
    ["gold", "revenue_by_brand"],
    ["gold", "daily_funnel"],
]
SENSOR = "landing_csv_sensor"
SENSOR_TAGS = {"dagster/sensor_name": SENSOR}
ACTIVE = ("STARTING", "STARTED", "CANCELING")


def months_in(table: Path) -> set[str]:
    if not (table / "_delta_log").is_dir():
        return set()
    frame = pl.read_delta(str(table), columns=["month"])
    return {m.strftime("%Y-%m") for m in frame["month"].unique().to_list()}


def rows_per_month(table: Path) -> dict[str, int]:
    frame = pl.read_delta(str(table), columns=["month"])
    counts = frame.group_by("month").len()
    return {m.strftime("%Y-%m"): n for m, n in counts.iter_rows()}


def data_rows(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle) - 1


def tags_of(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def land(path: Path, landing: Path) -> None:
    """Copy a month's file into the landing directory the plain way: the file grows in place
    under its final name, so the sensor has to wait for it to settle."""
    shutil.copyfile(path, landing / path.name)


def latest_materialization(server: DagsterDev, path: list[str], month: str) -> dict:
    data = server.graphql(
        """query Mat($key: AssetKeyInput!, $partitions: [String!]) {
             assetOrError(assetKey: $key) { __typename ... on Asset {
               definition { description }
               assetMaterializations(partitions: $partitions, limit: 1) {
                 runId partition
                 metadataEntries { __typename label
                   ... on IntMetadataEntry { intRepr }
                   ... on TextMetadataEntry { text }
                   ... on PathMetadataEntry { path }
                   ... on TableMetadataEntry { table { records } }
                   ... on TableSchemaMetadataEntry { schema { columns { name type } } }
                   ... on TableColumnLineageMetadataEntry {
                     lineage { columnName columnDeps { assetKey { path } columnName } } }
                 } } } } }""",
        {"key": {"path": path}, "partitions": [month]},
    )
    asset = data["assetOrError"]
    [materialization] = asset["assetMaterializations"]
    materialization["description"] = asset["definition"]["description"]
    materialization["entries"] = {e["label"]: e for e in materialization["metadataEntries"]}
    return materialization


def make_run(root: Path, rows: int) -> None:
    """`make run` as a user types it, into the same DAGSTER_HOME and directories `make dev` will
    use: two sample months written and built by the Dagster CLI (a classic Spark session)."""
    completed = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(PROJECT),
            "run",
            f"ROWS={rows}",
            f"DAGSTER_HOME={dagster_home(root)}",
        ],
        cwd=root,
        env=user_env(root),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-6000:]


def test_after_make_run_a_new_month_runs_alone_on_the_warm_server_and_reaches_gold(tmp_path):
    make_run(tmp_path, ROWS)
    built = {p.name for p in (tmp_path / "landing").iterdir()}
    assert built == {"2019-Oct.csv", "2019-Nov.csv"}
    december = generate_month("2019-12", ROWS, tmp_path / "staging", seed=11)

    with dagster_dev(tmp_path) as server:
        # The first ticks find both months built by `make run` from these very files.
        def skipped_both():
            for tick in server.sensor_ticks(SENSOR):
                said = " ".join(tick["messages"])
                if all(f"Skipping {n}: " in said for n in built):
                    return tick
            return None

        tick = wait_for("a tick that skips the built months", skipped_both, 120)
        for month, name in (("2019-10", "2019-Oct.csv"), ("2019-11", "2019-Nov.csv")):
            assert any(
                m.startswith(f"Skipping {name}: {month} already built from this very file by run")
                for m in tick["messages"]
            ), tick["messages"]

        started = time.monotonic()
        land(december, server.landing)
        wait_for(
            "2019-12 in both gold tables",
            lambda: (
                True if all("2019-12" in months_in(server.warehouse / t) for t in GOLD) else None
            ),
            RUN_TIMEOUT,
            every=0.5,
        )
        latency = time.monotonic() - started
        print(f"\nfile landing -> gold under make dev ({ROWS} rows): {latency:.1f} s")

        [run] = server.wait_for_runs(SENSOR_TAGS, 1, RUN_TIMEOUT)
        # Two more ticks once the run is done: still exactly one run requested by the sensor.
        done = max(tick["timestamp"] for tick in server.sensor_ticks(SENSOR))
        wait_for(
            "two sensor ticks after the run",
            lambda: len([t for t in server.ended_ticks(SENSOR) if t["timestamp"] > done]) >= 2
            or None,
            120,
        )
        assert len(server.runs(SENSOR_TAGS)) == 1
        assert len(server.runs()) == 2  # make run's and this one
        tags = tags_of(run)
        assert tags["dagster/partition"] == "2019-12"
        assert tags["medallion/source_file"] == "2019-Dec.csv"
        assert run["jobName"] == "medallion_monthly"
        # The run was a client of the warm server `make dev` started.
        endpoint = f"sc://127.0.0.1:{server.connect_port}"
        assert any(
            m.startswith(f"Spark: a Spark Connect client of {endpoint}")
            for m in server.run_messages(run["runId"])
        )
        assert rows_per_month(server.warehouse / "bronze" / "events") == {
            "2019-10": data_rows(server.landing / "2019-Oct.csv"),
            "2019-11": data_rows(server.landing / "2019-Nov.csv"),
            "2019-12": data_rows(december),
        }

        # What the UI shows for the month: row counts, schema, Delta version and URI,
        # descriptions, and for gold the column lineage and the top brands.
        for path in ALL_ASSETS:
            table = server.warehouse.joinpath(*path)
            materialization = latest_materialization(server, path, "2019-12")
            entries = materialization["entries"]
            assert materialization["runId"] == run["runId"]
            assert len(materialization["description"]) > 40
            in_table = pl.read_delta(str(table), columns=["month"])
            month_rows = rows_per_month(table).get("2019-12", 0)
            assert int(entries["dagster/partition_row_count"]["intRepr"]) == month_rows, path
            assert int(entries["dagster/row_count"]["intRepr"]) == in_table.height, path
            assert entries["dagster/column_schema"]["schema"]["columns"]
            assert int(entries["delta/version"]["text"]) == DeltaTable(str(table)).version()
            assert entries["delta/table_uri"]["path"] == str(table)
        revenue = latest_materialization(server, ["gold", "revenue_by_brand"], "2019-12")
        entries = revenue["entries"]
        lineage = {
            e["columnName"]: e["columnDeps"] for e in entries["dagster/column_lineage"]["lineage"]
        }
        assert {"month", "brand", "total_revenue", "purchases"} == set(lineage)
        assert {"assetKey": {"path": ["silver", "events"]}, "columnName": "price"} in lineage[
            "total_revenue"
        ]
        top = (
            pl.read_delta(str(server.warehouse / "gold" / "revenue_by_brand"))
            .filter(pl.col("month").dt.strftime("%Y-%m") == "2019-12")
            .sort(["total_revenue", "brand"], descending=[True, False], nulls_last=True)
        )
        records = [json.loads(r) for r in entries["top_brands"]["table"]["records"]]
        assert len(records) == min(10, top.height)
        assert records[0]["brand"] == (top["brand"][0] or "(no brand)")
        assert records[0]["total_revenue"] == f"{top['total_revenue'][0]:,.2f}"
        funnel = latest_materialization(server, ["gold", "daily_funnel"], "2019-12")
        assert "dagster/column_lineage" in funnel["entries"]


class RunWatch:
    """Samples, twice a second, the runs in progress and the Spark JVMs under `make dev`."""

    def __init__(self, server: DagsterDev):
        self.server = server
        self.most_active = 0
        self.most_jvms = 0
        self.samples = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _jvms(self) -> int:
        count = 0
        for proc in self.server.family():
            with contextlib.suppress(psutil.NoSuchProcess):
                count += proc.name() == "java"
        return count

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                active = [r for r in self.server.runs() if r["status"] in ACTIVE]
                self.most_active = max(self.most_active, len(active))
                self.most_jvms = max(self.most_jvms, self._jvms())
                self.samples += 1
            except Exception as error:  # reported by the test, not lost in a thread
                self.error = error
                return

    def __enter__(self) -> RunWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_months_landing_together_run_one_at_a_time_from_the_first_queue_pass(tmp_path):
    staging = tmp_path / "staging"
    months = {
        m: generate_month(m, ROWS, staging, seed=7) for m in ("2019-10", "2019-11", "2019-12")
    }
    with dagster_dev(tmp_path) as server:
        with RunWatch(server) as watch:
            for path in months.values():
                os.replace(path, server.landing / path.name)  # all three at the same moment
            runs = server.wait_for_runs(SENSOR_TAGS, 3, RUN_TIMEOUT)
        assert watch.error is None, watch.error
        assert sorted(tags_of(r)["dagster/partition"] for r in runs) == sorted(months)
        ordered = sorted(runs, key=lambda r: r["startTime"])
        for first, second in itertools.pairwise(ordered):
            assert first["endTime"] <= second["startTime"], "two Spark runs overlapped"
        assert watch.samples > 10
        assert watch.most_active == 1, f"{watch.most_active} runs in progress at once"
        # The warm Connect server is the only JVM: no run started one of its own.
        assert watch.most_jvms == 1, f"{watch.most_jvms} JVMs under make dev"
        for table in TABLES:
            assert months_in(server.warehouse / table) == set(months), table


def test_a_backfill_of_three_months_through_graphql_completes_in_one_run(tmp_path):
    staging = tmp_path / "staging"
    months = {
        m: generate_month(m, ROWS, staging, seed=11) for m in ("2019-10", "2019-11", "2019-12")
    }
    # Only the backfill runs: the sensor would otherwise start a run for each file. Stopping it
    # does not end a tick the daemon already has in flight, which on a loaded machine can still
    # see the files and request their runs; an hour's settle time keeps such a tick from it.
    with dagster_dev(tmp_path, MEDALLION_SENSOR_SETTLE_SECONDS="3600") as server:
        assert server.stop_sensor(SENSOR) == "STOPPED"
        for path in months.values():
            shutil.copyfile(path, server.landing / path.name)
        data = server.graphql(
            """mutation Backfill($params: LaunchBackfillParams!) {
                 launchPartitionBackfill(backfillParams: $params) {
                   __typename ... on LaunchBackfillSuccess { backfillId }
                   ... on PythonError { message } ... on InvalidSubsetError { message } } }""",
            {
                "params": {
                    "assetSelection": [{"path": p} for p in ALL_ASSETS],
                    "partitionNames": list(months),
                    "title": "three months",
                }
            },
        )
        launched = data["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        def finished():
            backfill = server.graphql(
                """query Status($id: String!) { partitionBackfillOrError(backfillId: $id) {
                     __typename ... on PartitionBackfill { status runs { runId status } } } }""",
                {"id": backfill_id},
            )["partitionBackfillOrError"]
            if backfill["status"] in ("FAILED", "CANCELED", "COMPLETED_FAILED"):
                raise AssertionError(f"backfill ended {backfill['status']}\n{server.log_tail()}")
            return backfill if backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS") else None

        backfill = wait_for("the backfill to complete", finished, RUN_TIMEOUT, every=2)
        [run] = backfill["runs"]  # BackfillPolicy.single_run(): the three months in one run
        assert run["status"] == "SUCCESS"
        assert server.runs(SENSOR_TAGS) == []

        for table in TABLES:
            path = server.warehouse / table
            assert months_in(path) == set(months), table
            commits = [
                c
                for c in DeltaTable(str(path)).history()
                if c.get("dagster_run_id") == run["runId"]
            ]
            assert [c["dagster_partitions"] for c in commits] == ["2019-10...2019-12"], table
        assert rows_per_month(server.warehouse / "bronze" / "events") == {
            m: data_rows(p) for m, p in months.items()
        }


def listening(port: int) -> set[str]:
    """The addresses something listens on at `port` (a JVM shows IPv4 as IPv4-mapped IPv6)."""
    return {
        c.laddr.ip.removeprefix("::ffff:")
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def test_the_ui_and_the_connect_server_listen_on_loopback_only_and_ctrl_c_frees_both(tmp_path):
    with dagster_dev(tmp_path) as server:
        # The `spark` pool's limit is in the instance before any run is queued, so the queue's
        # first pass already counts against it (a default limit would be registered too late).
        with DagsterInstance.from_config(str(server.home)) as instance:
            assert SPARK_POOL in instance.event_log_storage.get_concurrency_keys()
            assert instance.event_log_storage.get_concurrency_info(SPARK_POOL).slot_count == 1
        assert server.port != 3000 and server.port == int(server.url.rsplit(":", 1)[1])
        # With no base of its own, an alert links to this UI, on whatever port it was given.
        assert server.resource_config("alerts")["webserver_url"] == {
            "type": "VALUE",
            "value": server.url.rstrip("/"),
        }
        assert listening(server.port) == {"127.0.0.1"}
        assert listening(server.connect_port) == {"127.0.0.1"}
        family = server.family()
        names = {p.name() for p in family}
        assert "java" in names  # the Connect server
    assert server.stopped_cleanly
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)
    assert listening(server.port) == set() and listening(server.connect_port) == set()


def test_a_failed_run_is_posted_to_the_webhook_of_the_environment_whose_url_the_ui_never_shows(
    tmp_path,
):
    webhook = Webhook()
    try:
        reader_url = "https://dagster.example.com"
        with dagster_dev(
            tmp_path, MEDALLION_ALERT_WEBHOOK_URL=webhook.url, MEDALLION_WEBSERVER_URL=reader_url
        ) as server:
            # The UI's Resources page: the webhook by its variable's name, the rest as it is.
            config = server.resource_config("alerts")
            assert config["webhook_url"] == {
                "type": "ENV_VAR",
                "value": "MEDALLION_ALERT_WEBHOOK_URL",
            }
            assert config["webserver_url"] == {"type": "VALUE", "value": reader_url}
            shown = json.dumps(
                server.graphql(
                    """query All($selector: RepositorySelector!) {
                         allTopLevelResourceDetailsOrError(repositorySelector: $selector) {
                           ... on ResourceDetailsList { results {
                             name configuredValues { key value type } } } } }""",
                    {
                        "selector": {
                            "repositoryLocationName": LOCATION,
                            "repositoryName": "__repository__",
                        }
                    },
                )
            )
            assert '"alerts"' in shown and SECRET_PATH not in shown

            # A month whose file never arrived: bronze fails at once, without retries.
            run_id = server.launch_run("medallion_monthly", {"dagster/partition": "2019-10"})
            wait_for(
                "the failed run's alert",
                lambda: webhook.requests or None,
                RUN_TIMEOUT,
                every=0.5,
            )
            [run] = [r for r in server.runs() if r["runId"] == run_id]
            assert run["status"] == "FAILURE"
        [(path, _, body)] = webhook.requests
        assert path == SECRET_PATH
        text = json.loads(body)["text"]
        assert "`medallion_monthly`" in text and "Partition: 2019-10" in text
        assert "Failed step: bronze_events" in text and "No source file for month 2019-10" in text
        assert f"Run: {reader_url}/runs/{run_id}" in text
        assert SECRET_PATH not in server.log_tail(10**7)
    finally:
        webhook.close()
