"""`medallion-top-brands`: print the top brands by revenue from the gold table, without Spark.

The gold tables are plain Delta tables, so anything that reads Delta (here polars, through
delta-rs) can serve them; this is also the quickest proof after `make run` that gold is there.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import polars as pl

from medallion_assets.io.delta_io_manager import DEFAULT_WAREHOUSE_DIR, WAREHOUSE_ENV


def top_brands(warehouse: Path, limit: int = 10, month: str | None = None) -> pl.DataFrame:
    revenue = pl.read_delta(str(warehouse / "gold" / "revenue_by_brand"))
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
    parser.add_argument("--warehouse", default=os.environ.get(WAREHOUSE_ENV, DEFAULT_WAREHOUSE_DIR))
    parser.add_argument("--month", help="only this month (YYYY-MM)")
    parser.add_argument("-n", "--limit", type=int, default=10)
    args = parser.parse_args(argv)
    table = Path(args.warehouse) / "gold" / "revenue_by_brand"
    if not (table / "_delta_log").is_dir():
        print(f"No gold table at {table}: materialize the assets first (make run).", file=sys.stderr)
        return 1
    result = top_brands(Path(args.warehouse), args.limit, args.month)
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, fmt_str_lengths=40):
        print(f"Top {args.limit} brands by purchase revenue per month ({table}):")
        print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
