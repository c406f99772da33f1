"""Bronze: the month's source file, typed, with every unusable line kept aside with its reason."""


import datetime as dt

from dagster import (
    AssetExecutionContext,
    AssetOut,
    BackfillPolicy,
    Output,
    multi_asset,
)
from pyspark.sql import DataFrame

from medallion_assets.partitions import monthly_partitions, months_in_window, partition_key_for
from medallion_assets.resources.landing import LandingDirectory
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.transforms import accepted_events, parse_events, rejected_events

BRONZE_EVENTS = ["bronze", "events"]
BRONZE_REJECTED = ["bronze", "events_rejected"]
PARTITIONED_TABLE = {"partition_expr": "month"}


@multi_asset(
    outs={
        "events": AssetOut(
            key=BRONZE_EVENTS,
            description=(
                "The month's raw events, typed with a declared schema: event_time as a UTC "
                "timestamp, price as DECIMAL(12,2), ids as BIGINT, plus month, _source_file and "
                "_ingested_at. One Delta table partitioned by month."
            ),
            metadata=PARTITIONED_TABLE,
            kinds={"spark", "delta"},
        ),
        "events_rejected": AssetOut(
            key=BRONZE_REJECTED,
            description=(
                "Source lines that could not be parsed (wrong field count, bad number, bad "
                "timestamp, unknown event type, ...), each with the raw line and the reason."
            ),
            metadata=PARTITIONED_TABLE,
            kinds={"spark", "delta"},
        ),
    },
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="bronze",
    pool="spark",
)
def bronze_events(
    context: AssetExecutionContext, spark: SparkSessionResource, landing: LandingDirectory
):
    """Read each month of the run from the landing directory and parse it."""
    session = spark.spark_session
    ingested_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    parsed: DataFrame | None = None
    for month in months_in_window(context.partition_time_window):
        key = partition_key_for(month)
        path = landing.source_file(key)
        landing.check_header(path)
        context.log.info(f"Reading {path} for {key}")
        lines = session.read.text(str(path))
        month_rows = parse_events(
            lines, month=month, source_file=path.name, ingested_at=ingested_at
        )
        parsed = month_rows if parsed is None else parsed.unionByName(month_rows)
    assert parsed is not None
    yield Output(accepted_events(parsed), output_name="events")
    yield Output(rejected_events(parsed), output_name="events_rejected")
