"""Silver: bronze events without a user or duplicated, ready for aggregation."""


from dagster import AssetIn, BackfillPolicy, asset
from pyspark.sql import DataFrame

from medallion_assets.assets.bronze import BRONZE_EVENTS, PARTITIONED_TABLE
from medallion_assets.partitions import monthly_partitions
from medallion_assets.retries import SPARK_RETRY_POLICY
from medallion_assets.transforms import clean_events

SILVER_EVENTS = ["silver", "events"]


@asset(
    key=SILVER_EVENTS,
    ins={"bronze": AssetIn(key=BRONZE_EVENTS)},
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="silver",
    kinds={"spark", "delta"},
    metadata=PARTITIONED_TABLE,
    pool="spark",
    retry_policy=SPARK_RETRY_POLICY,
    description=(
        "Bronze events with a user_id and without exact duplicates of the nine source columns. "
        "Same columns as bronze/events."
    ),
)
def silver_events(bronze: DataFrame) -> DataFrame:
    return clean_events(bronze)
