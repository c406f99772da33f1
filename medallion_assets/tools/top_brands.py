"""`medallion-top-brands`: print the top brands by revenue from the gold table, without Spark.

The gold tables are plain Delta tables, so anything that reads Delta (here polars, through
delta-rs) can serve them; this is also the quickest proof after `make run` that gold is there.
"""

from __future__ import annotations

import argparse
import sys

import polars as pl

from medallion_assets.assets.gold import GOLD_REVENUE_BY_BRAND
from medallion_assets.resources.warehouse import Warehouse
from medallion_assets.settings import Settings


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
    result = top_brands(warehouse, args.limit, args.month)
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, fmt_str_lengths=40):
        print(f"Top {args.limit} brands by purchase revenue per month ({table}):")
        print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
