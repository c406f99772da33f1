"""The floor: the least a Spark script can do for one month's three layers.

Spark's CSV reader with the declared schema, executors writing Parquet, bronze -> drop duplicates
-> revenue by brand; no validation, no quarantine of bad lines, no checks, no Delta commit, no
orchestration. Whatever the pipeline takes beyond this is the price of everything it adds. The
session has the pipeline's own settings (`SparkSessionResource`), so only the work differs.

    python benchmarks/floor.py CSV OUT_DIR
"""

import sys
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.schema import EVENT_FIELDS, SOURCE_TIME_FORMAT

SCHEMA = T.StructType(EVENT_FIELDS)


def main(csv_path: str, out_dir: str) -> None:
    out = Path(out_dir)
    resource = SparkSessionResource()
    builder = SparkSession.builder.master(resource.resolved_master()).appName("floor")
    for key, value in resource.effective_config().items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()

    bronze = (
        spark.read.option("header", True)
        .option("timestampFormat", SOURCE_TIME_FORMAT)
        .schema(SCHEMA)
        .csv(csv_path)
    )
    bronze.write.mode("overwrite").parquet(str(out / "bronze"))
    silver = spark.read.parquet(str(out / "bronze")).dropDuplicates()
    silver.write.mode("overwrite").parquet(str(out / "silver"))
    revenue = spark.read.parquet(str(out / "silver")).groupBy("brand").agg(
        F.sum("price").alias("total_revenue")
    )
    revenue.write.mode("overwrite").parquet(str(out / "gold_revenue"))
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:3])
