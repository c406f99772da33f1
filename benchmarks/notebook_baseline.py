"""The Databricks notebook's approach, in plain PySpark, as the baseline to beat.

As in the notebook: ``inferSchema=True`` (one extra pass over the file to guess types), a table
per month (``bronze_Oct``, ``silver_Oct``, ``gold_revenue_Oct``), ``dropna`` + ``dropDuplicates``
over all columns, revenue summed over every event. Parquet stands in for Delta, which Spark cannot
write here. Spark's own defaults, as a notebook would have them (UI and logs quietened only).

    python benchmarks/notebook_baseline.py CSV OUT_DIR
"""

import calendar
import sys
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F


def main(csv_path: str, out_dir: str) -> None:
    csv_file, out = Path(csv_path), Path(out_dir)
    stem = csv_file.name.split(".")[0]  # 2019-Oct or 2019-10
    month = stem.split("-")[1]
    if month.isdigit():
        month = calendar.month_abbr[int(month)]
    spark = (
        SparkSession.builder.master("local[*]")
        .appName("notebook_baseline")
        .config("spark.driver.memory", "2g")
        .config("spark.ui.enabled", "false")
        .config("spark.log.level", "WARN")
        .getOrCreate()
    )
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
    main(*sys.argv[1:3])
