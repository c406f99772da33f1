"""The plain Spark script: the reference work for one month's three layers, and nothing more.

The work every plain variant does, and that the pipeline does too, so that their outputs can be
compared: Spark's CSV reader with the declared schema, bronze written as Parquet; silver without
the rows that have no user and without exact duplicates; gold the revenue of each brand, the exact
DECIMAL sum of ``price`` over purchase events only (as the pipeline's gold/revenue_by_brand),
written as Parquet. No validation, no quarantine of bad lines, no checks, no Delta commit, no
orchestration: whatever the pipeline takes beyond this is the price of everything it adds.

The session has the settings every Spark run of the headline shares (`spark_settings.SHARED`,
the pipeline's own) and the code is what a plain script would write: none of the pipeline's own
tuning (its shuffle sized to the month, its grouped de-duplication), so that the comparison
prices that tuning as part of the pipeline rather than lending it to the reference.

    python benchmarks/floor.py CSV OUT_DIR [--settings shared|spark-defaults]

Writes OUT_DIR/bronze, OUT_DIR/silver and OUT_DIR/gold_revenue (brand, total_revenue).
"""

import argparse
from pathlib import Path

import spark_settings
from pyspark.sql import functions as F

# The pipeline's source columns and types (`medallion_assets.schema.EVENT_FIELDS`) and its time
# format, written out rather than imported: the project's schema module imports Dagster, seconds
# a plain script does not spend. bench.py checks both against the project's before it measures.
SCHEMA = (
    "event_time timestamp, event_type string, product_id bigint, category_id bigint, "
    "category_code string, brand string, price decimal(12,2), user_id bigint, user_session string"
)
TIME_FORMAT = "yyyy-MM-dd HH:mm:ss 'UTC'"


def main(csv_path: str, out_dir: str, settings: str = spark_settings.SHARED) -> None:
    out = Path(out_dir)
    spark = spark_settings.session("floor", settings)
    bronze = (
        spark.read.option("header", True)
        .option("timestampFormat", TIME_FORMAT)
        .option("timeZone", "UTC")
        .schema(SCHEMA)
        .csv(csv_path)
    )
    bronze.write.mode("overwrite").parquet(str(out / "bronze"))
    silver = spark.read.parquet(str(out / "bronze")).dropna(subset=["user_id"]).dropDuplicates()
    silver.write.mode("overwrite").parquet(str(out / "silver"))
    revenue = (
        spark.read.parquet(str(out / "silver"))
        .where(F.col("event_type") == "purchase")
        .groupBy("brand")
        .agg(F.sum("price").alias("total_revenue"))
    )
    revenue.write.mode("overwrite").parquet(str(out / "gold_revenue"))
    spark.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("out")
    parser.add_argument("--settings", choices=spark_settings.CHOICES, default=spark_settings.SHARED)
    args = parser.parse_args()
    main(args.csv, args.out, args.settings)
