"""The project's Spark transformations as a plain script: no Dagster, no Delta commit.

This is the yardstick for orchestration cost: the pipeline runs the same transformations with the
same session settings, so what it takes beyond this script is Dagster plus the Delta commit.
Layers are written as Parquet partitioned by month, like the pipeline's data files.

    python benchmarks/plain_spark.py CSV OUT_DIR
"""

import datetime as dt
import sys
from pathlib import Path

from pyspark.sql import Observation, SparkSession
from pyspark.sql import functions as F

from medallion_assets.partitions import month_start, partition_key_from_file_name
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.transforms import (
    REASON,
    accepted_events,
    clean_events,
    daily_funnel,
    parse_events,
    rejected_events,
    revenue_by_brand,
)


def main(csv_path: str, out_dir: str) -> None:
    csv_file, out = Path(csv_path), Path(out_dir)
    month = month_start(partition_key_from_file_name(csv_file.name))
    resource = SparkSessionResource()
    builder = SparkSession.builder.master(resource.resolved_master()).appName("plain_spark")
    for key, value in resource.effective_config().items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()

    def write(frame, name):
        frame.write.mode("overwrite").partitionBy("month").parquet(str(out / name))
        return spark.read.schema(frame.schema).parquet(str(out / name))

    rejects = Observation("rejects")
    parsed = parse_events(
        spark.read.text(str(csv_file)),
        month=month,
        source_file=csv_file.name,
        ingested_at=dt.datetime.now(dt.timezone.utc),
    ).observe(rejects, F.count_if(F.col(REASON).isNotNull()).alias("rejected"))
    bronze = write(accepted_events(parsed), "bronze_events")
    # As in the pipeline: the file is read a second time only when some line was rejected.
    if rejects.get["rejected"]:
        write(rejected_events(parsed), "bronze_events_rejected")
    silver = write(clean_events(bronze), "silver_events")
    write(revenue_by_brand(silver), "gold_revenue_by_brand")
    write(daily_funnel(silver), "gold_daily_funnel")
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:3])
