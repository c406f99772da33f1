"""The floor: the least a Spark script can do for one month's three layers.

Spark's CSV reader with the declared schema, executors writing Parquet, bronze -> drop duplicates
-> revenue by brand; no validation, no quarantine of bad lines, no checks, no Delta commit, no
orchestration. Whatever the pipeline takes beyond this is the price of everything it adds. The
session has the pipeline's own settings (`SparkSessionResource`), so only the work differs.

    python benchmarks/floor.py CSV OUT_DIR
"""

import sys
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.schema import EVENT_FIELDS, SOURCE_TIME_FORMAT
from medallion_assets.settings import Settings
from medallion_assets.transforms import dedup_partitions

SCHEMA = T.StructType(EVENT_FIELDS)


def main(csv_path: str, out_dir: str) -> None:
    out = Path(out_dir)
    resource = SparkSessionResource.from_settings(Settings.from_env())
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
    # The shuffle sized as the pipeline sizes silver's (`dedup_partitions`), so that at full size
    # the floor does not spill where the pipeline does not: the row count from the footers.
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in (out / "bronze").glob("*.parquet"))
    default = int(spark.conf.get("spark.sql.shuffle.partitions"))
    partitions = dedup_partitions(rows, default)
    if partitions:
        spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
    silver = spark.read.parquet(str(out / "bronze")).dropDuplicates()
    silver.write.mode("overwrite").parquet(str(out / "silver"))
    revenue = spark.read.parquet(str(out / "silver")).groupBy("brand").agg(
        F.sum("price").alias("total_revenue")
    )
    revenue.write.mode("overwrite").parquet(str(out / "gold_revenue"))
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:3])
