"""Gold: the month's business aggregates, computed from silver."""


from dagster import AssetIn, BackfillPolicy, asset
from pyspark.sql import DataFrame

from medallion_assets.assets.bronze import PARTITIONED_TABLE
from medallion_assets.assets.silver import SILVER_EVENTS
from medallion_assets.partitions import monthly_partitions
from medallion_assets.transforms import daily_funnel, revenue_by_brand

_COMMON = dict(
    ins={"silver": AssetIn(key=SILVER_EVENTS)},
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="gold",
    kinds={"spark", "delta"},
    metadata=PARTITIONED_TABLE,
    pool="spark",
)


@asset(
    key=["gold", "revenue_by_brand"],
    description=(
        "Per month and brand: total_revenue, the exact DECIMAL sum of price over purchase events "
        "only, and the number of purchases. Events without a brand form a row with brand NULL."
    ),
    **_COMMON,
)
def revenue_by_brand_asset(silver: DataFrame) -> DataFrame:
    return revenue_by_brand(silver)


@asset(
    key=["gold", "daily_funnel"],
    description=(
        "Per UTC day: views, carts, purchases, distinct users, and conversion = purchases / views."
    ),
    **_COMMON,
)
def daily_funnel_asset(silver: DataFrame) -> DataFrame:
    return daily_funnel(silver)
