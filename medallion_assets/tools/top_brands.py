"""`medallion-top-brands`: print the top brands by revenue from the gold table, without Spark.

The gold tables are plain Delta tables, so anything that reads Delta (here polars, through
delta-rs) can serve them; this is also the quickest proof after `make run` that gold is there.
Its last line says what the warehouse holds for the months shown: each table's rows, counted from
the Delta log's per-file row counts (a few kilobytes of JSON, no data file read), so that
``make run`` ends by saying what it built.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import polars as pl

from medallion_assets.assets.bronze import BRONZE_EVENTS, BRONZE_REJECTED
from medallion_assets.assets.gold import GOLD_DAILY_FUNNEL, GOLD_REVENUE_BY_BRAND
from medallion_assets.assets.silver import SILVER_EVENTS
from medallion_assets.partitions import key_of_month_value
from medallion_assets.resources.warehouse import Warehouse
from medallion_assets.schema import MONTH_COLUMN
from medallion_assets.settings import Settings

# Every table a month's run writes, in the order the pipeline writes them.
TABLES = (BRONZE_EVENTS, BRONZE_REJECTED, SILVER_EVENTS, GOLD_REVENUE_BY_BRAND, GOLD_DAILY_FUNNEL)


def top_brands(warehouse: Warehouse, limit: int = 10, month: str | None = None) -> pl.DataFrame:
    revenue = pl.read_delta(
        warehouse.table_uri(GOLD_REVENUE_BY_BRAND),
        storage_options=warehouse.delta_storage_options() or None,
    )
    if month:
        revenue = revenue.filter(pl.col("month").dt.strftime("%Y-%m") == month)
    return (
        revenue.with_columns(pl.col("month").dt.strftime("%Y-%m"))
        .sort(["month", "total_revenue", "brand"], descending=[False, True, False], nulls_last=True)
        .group_by("month", maintain_order=True)
        .head(limit)
    )


def gold_months(warehouse: Warehouse) -> list[str]:
    """The months (``YYYY-MM``) gold/revenue_by_brand's current version has files for, from its
    log; a month without purchases has a zero-row file there, so it counts too."""
    table = warehouse.open_table(GOLD_REVENUE_BY_BRAND)
    if table is None:
        return []
    return sorted({key_of_month_value(p[MONTH_COLUMN]) for p in table.partitions()})


def table_rows(warehouse: Warehouse, months: Sequence[str]) -> dict[str, int]:
    """Rows of each table (``bronze/events``: count) in ``months``, from the Delta log."""
    return {
        "/".join(table): sum(warehouse.month_row_counts(table, months).values())
        for table in TABLES
    }


def built_line(warehouse: Warehouse, months: Sequence[str]) -> str:
    """``Built 2019-10, 2019-11 in <warehouse>; rows: bronze/events 199,990, ...``"""
    counts = ", ".join(f"{name} {rows:,}" for name, rows in table_rows(warehouse, months).items())
    return f"Built {', '.join(months)} in {warehouse.uri()}; rows: {counts}."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--warehouse", help=f"warehouse root; default ${Settings.env_name('warehouse_dir')}"
    )
    parser.add_argument("--month", help="only this month (YYYY-MM)")
    parser.add_argument("-n", "--limit", type=int, default=10)
    args = parser.parse_args(argv)
    warehouse = Warehouse(root_uri=args.warehouse or Settings.from_env().warehouse_dir)
    table = warehouse.table_uri(GOLD_REVENUE_BY_BRAND)
    if warehouse.open_table(GOLD_REVENUE_BY_BRAND) is None:
        print(
            f"No gold table at {table}: materialize the assets first (make run).", file=sys.stderr
        )
        return 1
    months = [m for m in gold_months(warehouse) if args.month in (None, m)]
    if not months:
        print(f"No month {args.month} in {table}: materialize it first.", file=sys.stderr)
        return 1
    result = top_brands(warehouse, args.limit, args.month)
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, fmt_str_lengths=40):
        print(f"Top {args.limit} brands by purchase revenue per month ({table}):")
        print(result)
    print(built_line(warehouse, months))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
