"""The same three layers in DuckDB: the single-machine speed reference.

Explicit column types (as our bronze), null-user and duplicate removal (as our silver), purchase
revenue by brand and the daily funnel (as our gold), each layer written as Parquet.

    python benchmarks/duckdb_baseline.py CSV OUT_DIR
"""

import sys
from pathlib import Path

import duckdb

COLUMNS = {
    "event_time": "VARCHAR",
    "event_type": "VARCHAR",
    "product_id": "BIGINT",
    "category_id": "BIGINT",
    "category_code": "VARCHAR",
    "brand": "VARCHAR",
    "price": "DECIMAL(12,2)",
    "user_id": "BIGINT",
    "user_session": "VARCHAR",
}


def main(csv_path: str, out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items()) + "}"
    con.execute(
        f"""
        CREATE TABLE bronze AS
        SELECT * REPLACE (strptime(event_time, '%Y-%m-%d %H:%M:%S UTC')::TIMESTAMPTZ AS event_time),
               DATE '{{month}}' AS month
        FROM read_csv('{csv_path}', header = true, columns = {columns}, auto_detect = false)
        """.replace("{month}", "2019-10-01")
    )
    con.execute(f"COPY bronze TO '{out / 'bronze.parquet'}' (FORMAT parquet)")
    con.execute(
        """
        CREATE TABLE silver AS
        SELECT DISTINCT ON (event_time, event_type, product_id, category_id, category_code, brand,
                            price, user_id, user_session) *
        FROM bronze WHERE user_id IS NOT NULL
        """
    )
    con.execute(f"COPY silver TO '{out / 'silver.parquet'}' (FORMAT parquet)")
    con.execute(
        f"""
        COPY (SELECT month, brand, sum(price) AS total_revenue, count(*) AS purchases
              FROM silver WHERE event_type = 'purchase' GROUP BY ALL)
        TO '{out / 'gold_revenue_by_brand.parquet'}' (FORMAT parquet)
        """
    )
    con.execute(
        f"""
        COPY (SELECT month, CAST(event_time AS DATE) AS date,
                     count(*) FILTER (event_type = 'view') AS views,
                     count(*) FILTER (event_type = 'cart') AS carts,
                     count(*) FILTER (event_type = 'purchase') AS purchases,
                     count(DISTINCT user_id) AS distinct_users
              FROM silver GROUP BY ALL)
        TO '{out / 'gold_daily_funnel.parquet'}' (FORMAT parquet)
        """
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
