"""The whole graph, bronze to gold, over generated months, checked against an independent
computation that reads the CSVs with Python's csv module and Decimal (not Spark, not our code)."""

import csv
import datetime as dt
import os
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from deltalake import DeltaTable

from medallion_assets.partitions import key_of_month_value
from medallion_assets.tools.sample_data import generate_month

MONTHS = ["2019-10", "2019-11"]
ROWS = 4000


def expected_from_csv(paths: list[Path]):
    """Bronze count, silver count, revenue by (month, brand) and the daily funnel, from the
    files."""
    bronze = 0
    silver: set[tuple] = set()
    for path in paths:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            for row in reader:
                bronze += 1
                if row[7] != "":
                    silver.add(tuple(row))
    revenue: dict[tuple, list] = defaultdict(lambda: [Decimal("0"), 0])
    funnel: dict[dt.date, dict] = defaultdict(
        lambda: {"view": 0, "cart": 0, "purchase": 0, "users": set()}
    )
    for row in silver:
        when = dt.datetime.strptime(row[0], "%Y-%m-%d %H:%M:%S UTC")
        month = when.strftime("%Y-%m")
        day = funnel[when.date()]
        day["users"].add(int(row[7]))
        if row[1] in day:
            day[row[1]] += 1
        if row[1] == "purchase":
            entry = revenue[(month, row[5] or None)]
            entry[0] += Decimal(row[6])
            entry[1] += 1
    return bronze, len(silver), {k: tuple(v) for k, v in revenue.items()}, funnel


@pytest.fixture
def two_months(landing_dir, warehouse_dir):
    paths = [generate_month(m, ROWS, landing_dir, seed=7) for m in MONTHS]
    return paths


@pytest.mark.graph
def test_two_months_in_one_run_match_an_independent_computation(
    two_months, warehouse_dir, defs, spark
):
    job = defs.resolve_job_def("medallion_monthly")
    result = job.execute_in_process(
        instance=DagsterInstance.ephemeral(),
        tags={
            ASSET_PARTITION_RANGE_START_TAG: MONTHS[0],
            ASSET_PARTITION_RANGE_END_TAG: MONTHS[-1],
        },
    )
    assert result.success
    bronze_rows, silver_rows, revenue, funnel = expected_from_csv(two_months)

    assert pl.read_delta(str(warehouse_dir / "bronze" / "events")).height == bronze_rows
    assert pl.read_delta(str(warehouse_dir / "bronze" / "events_rejected")).height == 0
    silver = pl.read_delta(str(warehouse_dir / "silver" / "events"))
    assert silver.height == silver_rows < bronze_rows  # the sample has null users and duplicates
    assert silver["user_id"].null_count() == 0

    gold = pl.read_delta(str(warehouse_dir / "gold" / "revenue_by_brand"))
    got = {
        (key_of_month_value(r["month"]), r["brand"]): (r["total_revenue"], r["purchases"])
        for r in gold.iter_rows(named=True)
    }
    assert got == revenue
    assert any(brand is None for _, brand in got)
    # The UI's preview: the ten largest (month, brand) rows of both months by revenue.
    materializations = [
        m
        for m in result.asset_materializations_for_node("gold_tables")
        if m.asset_key == AssetKey(["gold", "revenue_by_brand"])
    ]
    assert [m.partition for m in materializations] == MONTHS  # one per month, one preview
    preview = [
        (r.data["month"], None if r.data["brand"] == "(no brand)" else r.data["brand"])
        for r in materializations[0].metadata["top_brands"].value.records
    ]
    def rank(item):
        (month, brand), (total, _) = item
        return -total, brand is None, brand or "", month

    assert preview == [key for key, _ in sorted(revenue.items(), key=rank)[:10]]

    daily = pl.read_delta(str(warehouse_dir / "gold" / "daily_funnel"))
    assert daily.height == len(funnel)
    for r in daily.iter_rows(named=True):
        want = funnel[r["date"]]
        assert (r["views"], r["carts"], r["purchases"], r["distinct_users"]) == (
            want["view"],
            want["cart"],
            want["purchase"],
            len(want["users"]),
        )
        assert r["conversion"] == pytest.approx(want["purchase"] / want["view"])

    # One run wrote each table with one commit covering both months.
    for table in ("bronze/events", "silver/events", "gold/revenue_by_brand", "gold/daily_funnel"):
        history = DeltaTable(str(warehouse_dir / table)).history()
        assert len(history) == 1
        assert history[0]["dagster_partitions"] == "2019-10...2019-11"
        assert history[0]["dagster_run_id"] == result.run_id


@pytest.mark.slow
def test_the_dagster_cli_materializes_a_month_into_the_configured_directories(
    two_months, landing_dir, warehouse_dir, tmp_path
):
    env = dict(
        os.environ,
        MEDALLION_LANDING_DIR=str(landing_dir),
        MEDALLION_WAREHOUSE_DIR=str(warehouse_dir),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
    )
    (tmp_path / "dagster_home").mkdir()
    dagster = Path(sys.executable).parent / "dagster"
    completed = subprocess.run(
        [
            str(dagster),
            "asset",
            "materialize",
            "-m",
            "medallion_assets.definitions",
            "--select",
            "*",
            "--partition",
            "2019-10",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    bronze_rows, silver_rows, revenue, _ = expected_from_csv(two_months[:1])
    assert pl.read_delta(str(warehouse_dir / "bronze" / "events")).height == bronze_rows
    assert pl.read_delta(str(warehouse_dir / "silver" / "events")).height == silver_rows
    gold = pl.read_delta(str(warehouse_dir / "gold" / "revenue_by_brand"))
    assert set(gold["month"].to_list()) == {dt.date(2019, 10, 1)}
    assert dict(zip(gold["brand"].to_list(), gold["total_revenue"].to_list(), strict=True)) == {
        brand: total for (_, brand), (total, _) in revenue.items()
    }


@pytest.mark.slow
def test_an_unknown_partition_key_is_rejected_by_the_cli(tmp_path):
    dagster = Path(sys.executable).parent / "dagster"
    completed = subprocess.run(
        [
            str(dagster),
            "asset",
            "materialize",
            "-m",
            "medallion_assets.definitions",
            "--select",
            "*",
            "--partition",
            "2019-13",
        ],
        env=dict(os.environ, DAGSTER_HOME=str(tmp_path)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode != 0
    assert "2019-13" in completed.stderr
