"""The same three layers in DuckDB: the single-machine speed reference from outside Spark.

Explicit column types and the same row rules as our bronze (lines that do not parse kept aside
with DuckDB's reject tables; event type, month window, required product, price >= 0 with at most
two decimals), the rejected rows written too; null-user and duplicate removal (as our silver);
purchase revenue by brand and the daily funnel (as our gold); each layer written as Parquet.

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
    "price": "DECIMAL(18,8)",
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
        CREATE TABLE typed AS
        SELECT * REPLACE (
                   try_strptime(event_time, '%Y-%m-%d %H:%M:%S UTC')::TIMESTAMPTZ AS event_time
               ),
               DATE '2019-10-01' AS month
        FROM read_csv('{csv_path}', header = true, columns = {columns}, auto_detect = false,
                      store_rejects = true)
        """
    )
    valid = """
        event_time >= TIMESTAMPTZ '2019-10-01 00:00:00+00'
        AND event_time < TIMESTAMPTZ '2019-11-01 00:00:00+00'
        AND event_type IN ('view', 'cart', 'remove_from_cart', 'purchase')
        AND product_id IS NOT NULL AND price >= 0 AND price < 1e10 AND price = round(price, 2)
    """
    con.execute(
        f"CREATE TABLE bronze AS SELECT * REPLACE (price::DECIMAL(12,2) AS price) "
        f"FROM typed WHERE {valid}"
    )
    con.execute(f"CREATE TABLE rejected AS SELECT * FROM typed WHERE NOT coalesce({valid}, false)")
    con.execute(f"COPY rejected TO '{out / 'bronze_rejected.parquet'}' (FORMAT parquet)")
    con.execute(
        f"COPY (FROM reject_errors) TO '{out / 'bronze_unparsed.parquet'}' (FORMAT parquet)"
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
        TO '{out / "gold_revenue_by_brand.parquet"}' (FORMAT parquet)
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
        TO '{out / "gold_daily_funnel.parquet"}' (FORMAT parquet)
        """
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
