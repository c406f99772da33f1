"""The Databricks notebook's approach, in plain PySpark, as the baseline to beat.

As in the notebook: ``inferSchema=True`` (one extra pass over the file to guess types), a table
per month (``bronze_Oct``, ``silver_Oct``, ``gold_revenue_Oct``), ``dropna`` + ``dropDuplicates``
over all columns, revenue summed over every event. Parquet stands in for Delta, which Spark cannot
write here. Its revenue, over views and carts too and in floating point (the inferred ``price``
is a DOUBLE), is not the pipeline's; only its silver is the same work, and bench.py compares that.

Two ways to start its session (``--settings``):

- ``shared``: the settings every Spark run of the headline shares (`spark_settings.SHARED`, the
  pipeline's own), so that the comparison with the pipeline is of the work alone;
- ``spark-defaults``: as the notebook's approach runs today, with Spark's defaults (the driver's
  memory, the UI and the log level only; `spark_settings.SPARK_DEFAULTS_CONF`).

    python benchmarks/notebook_baseline.py CSV OUT_DIR [--settings shared|spark-defaults]
"""

import argparse
import calendar
from pathlib import Path

import spark_settings
from pyspark.sql import functions as F


def main(csv_path: str, out_dir: str, settings: str = spark_settings.SPARK_DEFAULTS) -> None:
    csv_file, out = Path(csv_path), Path(out_dir)
    stem = csv_file.name.split(".")[0]  # 2019-Oct or 2019-10
    month = stem.split("-")[1]
    if month.isdigit():
        month = calendar.month_abbr[int(month)]
    spark = spark_settings.session("notebook_baseline", settings)
    # TASK 1: BRONZE
    df = spark.read.csv(str(csv_file), header=True, inferSchema=True)
    df.write.mode("overwrite").parquet(str(out / f"bronze_{month}"))
    # TASK 2: SILVER
    bronze_df = spark.read.parquet(str(out / f"bronze_{month}"))
    silver_df = bronze_df.dropna(subset=["user_id"]).dropDuplicates()
    silver_df.write.mode("overwrite").parquet(str(out / f"silver_{month}"))
    # TASK 3: GOLD
    silver_df = spark.read.parquet(str(out / f"silver_{month}"))
    gold_df = silver_df.groupBy("brand").agg(F.sum("price").alias("total_revenue"))
    gold_df.write.mode("overwrite").parquet(str(out / f"gold_revenue_{month}"))
    spark.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("out")
    parser.add_argument(
        "--settings", choices=spark_settings.CHOICES, default=spark_settings.SPARK_DEFAULTS
    )
    args = parser.parse_args()
    main(args.csv, args.out, args.settings)
