"""A backfill over months is one run, and it writes exactly what month-by-month runs write.

`BackfillPolicy.single_run()` turns a backfill of N months into one run whose partition key
range covers them all; every asset then reads and writes the whole range at once. That is only
an optimisation if the tables come out the same as after N one-month runs — checked here row by
row on every table (``_ingested_at`` aside: it is the time of the run).
"""

import json
from decimal import Decimal

import polars as pl
import pytest
from dagster import DagsterInstance
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from deltalake import DeltaTable

from medallion_assets.definitions import build_defs
from medallion_assets.delta.month_summaries import FILES, MONTH_SUMMARIES
from medallion_assets.settings import Settings
from medallion_assets.tools.sample_data import generate_month

MONTHS = ["2019-10", "2019-11", "2019-12"]
ROWS = 3000
TABLES = [
    "bronze/events",
    "bronze/events_rejected",
    "silver/events",
    "gold/revenue_by_brand",
    "gold/daily_funnel",
]
NOT_COMPARED = {"_ingested_at"}
BAD_LINE = "2019-11-03 10:00:00 UTC,view,not-a-number,1,,,1.00,5,s\n"


def table_rows(path) -> pl.DataFrame:
    frame = pl.read_delta(str(path))
    columns = sorted(c for c in frame.columns if c not in NOT_COMPARED)
    return frame.select(columns).sort(columns, nulls_last=True)


@pytest.fixture
def three_months(landing_dir):
    paths = [generate_month(m, ROWS, landing_dir, seed=21) for m in MONTHS]
    with open(paths[1], "a") as handle:  # one unparsable line, so that rejects are compared too
        handle.write(BAD_LINE)
    return paths


def job_writing_to(settings: Settings, warehouse):
    """The project's job over the same landing directory, writing to ``warehouse``."""
    defs = build_defs(settings.model_copy(update={"warehouse_dir": str(warehouse)}))
    return defs.resolve_job_def("medallion_monthly")


@pytest.mark.graph
def test_a_three_month_backfill_run_writes_what_three_monthly_runs_write(
    three_months, settings, tmp_path, spark
):
    instance = DagsterInstance.ephemeral()

    backfill_warehouse = tmp_path / "backfill"
    backfill = job_writing_to(settings, backfill_warehouse).execute_in_process(
        instance=instance,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: MONTHS[0],
            ASSET_PARTITION_RANGE_END_TAG: MONTHS[-1],
        },
    )
    assert backfill.success

    monthly_warehouse = tmp_path / "monthly"
    monthly_job = job_writing_to(settings, monthly_warehouse)
    for month in MONTHS:
        assert monthly_job.execute_in_process(instance=instance, partition_key=month).success

    for table in TABLES:
        once = table_rows(backfill_warehouse / table)
        monthly = table_rows(monthly_warehouse / table)
        assert once.height > 0, table
        assert once.equals(monthly), f"{table}: the backfill and the monthly runs differ"
        # one commit for the range against one commit per month
        assert [
            c["dagster_partitions"] for c in DeltaTable(str(backfill_warehouse / table)).history()
        ] == [f"{MONTHS[0]}...{MONTHS[-1]}"]
        assert len(DeltaTable(str(monthly_warehouse / table)).history()) == len(MONTHS)

    months = table_rows(backfill_warehouse / "silver/events")["month"].unique().to_list()
    assert [m.strftime("%Y-%m") for m in months] == MONTHS
    rejected = table_rows(backfill_warehouse / "bronze/events_rejected")
    assert rejected.height == 1 and rejected["month"][0].strftime("%Y-%m") == "2019-11"

    # Silver's one commit records each month's own totals, and gold checked against them.
    silver = pl.read_delta(str(backfill_warehouse / "silver/events"))
    (commit,) = DeltaTable(str(backfill_warehouse / "silver/events")).history()
    recorded = json.loads(commit[MONTH_SUMMARIES])
    assert sorted(recorded) == MONTHS
    for month in MONTHS:
        rows = silver.filter(pl.col("month").dt.strftime("%Y-%m") == month)
        kinds = rows["event_type"]
        purchases = rows.filter(pl.col("event_type") == "purchase")["price"].to_list()
        assert {k: v for k, v in recorded[month].items() if k != FILES} == {
            "revenue": str(sum(purchases, Decimal("0.00"))),
            "purchases": len(purchases),
            "views": (kinds == "view").sum(),
            "carts": (kinds == "cart").sum(),
        }
    gold_checks = [
        e for e in backfill.get_asset_check_evaluations() if e.check_name.startswith("gold_")
    ]
    # Each gold check once per month of the backfill, under that month.
    assert sorted((e.check_name, e.partition) for e in gold_checks) == sorted(
        (name, month)
        for name in ("gold_funnel_matches_silver", "gold_revenue_matches_silver")
        for month in MONTHS
    )
    for check in gold_checks:
        assert check.passed
        assert check.metadata["silver_totals_from"].value == "silver's Delta commit"
