"""End to end under a real `dagster dev` (webserver + daemon + code server), as a user runs it.

One `dagster dev` serves the module, with the project's dagster.yaml in a temporary
DAGSTER_HOME and temporary landing and warehouse directories. The tests run in file order:

1. a CSV copied into the landing directory reaches gold with no other action (the latency is
   printed);
2. two months landing together become two runs that the ``spark`` pool runs one after the
   other — never two Spark JVMs at once;
3. a backfill of three months launched through GraphQL (what the UI's "Launch backfill" sends)
   completes as one run and every month is in every table.
"""

import datetime as dt
import shutil
import threading
import time
from pathlib import Path

import polars as pl
import psutil
import pytest
from deltalake import DeltaTable

from medallion_assets.sample_data import generate_month
from medallion_assets_tests.dagster_dev import DagsterDev, dagster_dev, wait_for

pytestmark = pytest.mark.slow

ROWS = 3000
RUN_TIMEOUT = 900
TABLES = ("bronze/events", "silver/events", "gold/revenue_by_brand", "gold/daily_funnel")
ALL_ASSETS = [
    ["bronze", "events"],
    ["bronze", "events_rejected"],
    ["silver", "events"],
    ["gold", "revenue_by_brand"],
    ["gold", "daily_funnel"],
]
SENSOR_TAGS = {"dagster/sensor_name": "landing_csv_sensor"}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> DagsterDev:
    root = tmp_path_factory.mktemp("dagster_dev")
    # Short ticks keep the test quick; `make dev` uses the default of 15 s.
    with dagster_dev(root, MEDALLION_SENSOR_INTERVAL_SECONDS="5") as running:
        yield running


@pytest.fixture(scope="module")
def months(server) -> dict[str, Path]:
    """Generated month files, outside the landing directory until a test copies them in."""
    staging = server.root / "staging"
    return {m: generate_month(m, ROWS, staging, seed=11) for m in ("2019-10", "2019-11", "2019-12")}


def data_rows(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle) - 1


def months_in(table: Path) -> set[str]:
    if not (table / "_delta_log").is_dir():
        return set()
    frame = pl.read_delta(str(table), columns=["month"])
    return {m.strftime("%Y-%m") for m in frame["month"].unique().to_list()}


def rows_per_month(table: Path) -> dict[str, int]:
    frame = pl.read_delta(str(table), columns=["month"])
    counts = frame.group_by("month").len()
    return {m.strftime("%Y-%m"): n for m, n in counts.iter_rows()}


def latest_materialization(server: DagsterDev, path: list[str], month: str) -> dict:
    data = server.graphql(
        """query Mat($key: AssetKeyInput!, $partitions: [String!]) {
             assetOrError(assetKey: $key) { __typename ... on Asset {
               definition { description }
               assetMaterializations(partitions: $partitions, limit: 1) {
                 runId partition
                 metadataEntries { __typename label
                   ... on IntMetadataEntry { intRepr }
                   ... on PathMetadataEntry { path }
                   ... on MarkdownMetadataEntry { mdStr }
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


def test_a_csv_copied_into_the_landing_dir_reaches_gold_with_no_other_action(server, months):
    gold = [
        server.warehouse / "gold" / "revenue_by_brand",
        server.warehouse / "gold" / "daily_funnel",
    ]
    started = time.monotonic()
    # A plain copy, not an atomic rename: the sensor has to wait until the file stops changing.
    shutil.copyfile(months["2019-10"], server.landing / months["2019-10"].name)

    def gold_has_october():
        return True if all("2019-10" in months_in(t) for t in gold) else None

    wait_for("2019-10 in both gold tables", gold_has_october, RUN_TIMEOUT, every=0.5)
    latency = time.monotonic() - started
    print(f"\nfile landing -> gold under dagster dev (sensor interval 5 s): {latency:.1f} s")

    [run] = server.wait_for_runs(SENSOR_TAGS, 1, RUN_TIMEOUT)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/partition"] == "2019-10"
    assert tags["medallion/source_file"] == "2019-Oct.csv"
    assert run["jobName"] == "medallion_monthly"
    assert rows_per_month(server.warehouse / "bronze" / "events") == {
        "2019-10": data_rows(months["2019-10"])
    }

    # What the UI shows for the month: row counts, schema, Delta version and URI, descriptions,
    # and for gold the column lineage and the top brands.
    for path in ALL_ASSETS:
        materialization = latest_materialization(server, path, "2019-10")
        entries = materialization["entries"]
        assert materialization["runId"] == run["runId"]
        assert len(materialization["description"]) > 40
        assert int(entries["dagster/row_count"]["intRepr"]) >= 0
        assert entries["dagster/column_schema"]["schema"]["columns"]
        assert (
            int(entries["delta/version"]["intRepr"])
            == DeltaTable(str(server.warehouse.joinpath(*path))).version()
        )
        assert entries["delta/table_uri"]["path"] == str(server.warehouse.joinpath(*path))
    revenue = latest_materialization(server, ["gold", "revenue_by_brand"], "2019-10")["entries"]
    lineage = {
        e["columnName"]: e["columnDeps"] for e in revenue["dagster/column_lineage"]["lineage"]
    }
    assert {"month", "brand", "total_revenue", "purchases"} == set(lineage)
    assert {"assetKey": {"path": ["silver", "events"]}, "columnName": "price"} in lineage[
        "total_revenue"
    ]
    top = pl.read_delta(str(server.warehouse / "gold" / "revenue_by_brand")).sort(
        ["total_revenue", "brand"], descending=[True, False], nulls_last=True
    )
    preview = revenue["top_brands"]["mdStr"]
    assert preview.count("\n| 2019-10 |") == min(10, top.height)
    assert f"| {top['brand'][0] or '*(no brand)*'} | {top['total_revenue'][0]:,.2f} |" in preview
    funnel = latest_materialization(server, ["gold", "daily_funnel"], "2019-10")["entries"]
    assert "dagster/column_lineage" in funnel


class JavaWatch:
    """Samples, twice a second, how many Spark JVMs run under the `dagster dev` process."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _count(self) -> int:
        count = 0
        for child in self.root.children(recursive=True):
            try:
                count += child.name() == "java"
            except psutil.NoSuchProcess:
                pass
        return count

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.most = max(self.most, self._count())
                self.samples += 1
            except psutil.NoSuchProcess:
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


def test_months_landing_together_queue_and_run_one_after_the_other(server, months):
    with JavaWatch(server.process.pid) as java:
        for month in ("2019-11", "2019-12"):
            shutil.copyfile(months[month], server.landing / months[month].name)
        runs = server.wait_for_runs(SENSOR_TAGS, 3, RUN_TIMEOUT)
    new = sorted(
        (r for r in runs if {"key": "dagster/partition", "value": "2019-10"} not in r["tags"]),
        key=lambda r: r["startTime"],
    )
    partitions = [{t["key"]: t["value"] for t in r["tags"]}["dagster/partition"] for r in new]
    assert sorted(partitions) == ["2019-11", "2019-12"]
    first, second = new
    assert first["endTime"] <= second["startTime"], "the two Spark runs overlapped"
    assert java.samples > 10 and java.most == 1, f"{java.most} Spark JVMs at once"
    for table in TABLES:
        assert months_in(server.warehouse / table) == {"2019-10", "2019-11", "2019-12"}, table


def test_a_backfill_of_three_months_through_graphql_completes_in_one_run(server, months):
    for month, path in months.items():  # already there when the tests run in order
        if not (server.landing / path.name).exists():
            shutil.copyfile(path, server.landing / path.name)
    data = server.graphql(
        """mutation Backfill($params: LaunchBackfillParams!) {
             launchPartitionBackfill(backfillParams: $params) {
               __typename ... on LaunchBackfillSuccess { backfillId }
               ... on PythonError { message } ... on InvalidSubsetError { message } } }""",
        {
            "params": {
                "assetSelection": [{"path": p} for p in ALL_ASSETS],
                "partitionNames": ["2019-10", "2019-11", "2019-12"],
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

    for table in TABLES:
        path = server.warehouse / table
        assert months_in(path) == {"2019-10", "2019-11", "2019-12"}, table
        commits = [
            c for c in DeltaTable(str(path)).history() if c.get("dagster_run_id") == run["runId"]
        ]
        assert [c["dagster_partitions"] for c in commits] == ["2019-10...2019-12"], table
    assert rows_per_month(server.warehouse / "bronze" / "events") == {
        m: data_rows(p) for m, p in months.items()
    }
    assert (
        dt.date(2019, 12, 1)
        in pl.read_delta(str(server.warehouse / "gold" / "daily_funnel"))["month"].to_list()
    )
