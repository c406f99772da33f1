"""Gold: the month's business aggregates, computed from silver.

Besides the IO manager's metadata (row counts, schema, Delta version, table URI), each gold
materialization reports its column lineage back to silver, so the UI can answer "where does this
number come from" per column, and revenue_by_brand shows its top brands as a small table.
"""


from dagster import (
    AssetIn,
    BackfillPolicy,
    MetadataValue,
    Output,
    TableColumnDep,
    TableColumnLineage,
    asset,
)
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from medallion_assets.assets.bronze import PARTITIONED_TABLE
from medallion_assets.assets.silver import SILVER_EVENTS
from medallion_assets.partitions import monthly_partitions
from medallion_assets.retries import SPARK_RETRY_POLICY
from medallion_assets.transforms import daily_funnel, revenue_by_brand

_COMMON = dict(
    ins={"silver": AssetIn(key=SILVER_EVENTS)},
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="gold",
    kinds={"spark", "delta"},
    metadata=PARTITIONED_TABLE,
    pool="spark",
    retry_policy=SPARK_RETRY_POLICY,
)

TOP_BRANDS = 10
COLUMN_LINEAGE = "dagster/column_lineage"


def _from_silver(deps_by_column: dict[str, list[str]]) -> TableColumnLineage:
    return TableColumnLineage(
        deps_by_column={
            column: [TableColumnDep(asset_key=SILVER_EVENTS, column_name=c) for c in sources]
            for column, sources in deps_by_column.items()
        }
    )


# Which silver columns each gold column is computed from; event_type counts wherever the value
# is restricted to (or counts) one kind of event.
REVENUE_BY_BRAND_LINEAGE = _from_silver(
    {
        "month": ["month"],
        "brand": ["brand"],
        "total_revenue": ["price", "event_type"],
        "purchases": ["event_type"],
    }
)
DAILY_FUNNEL_LINEAGE = _from_silver(
    {
        "month": ["month"],
        "date": ["event_time"],
        "views": ["event_type"],
        "carts": ["event_type"],
        "purchases": ["event_type"],
        "distinct_users": ["user_id"],
        "conversion": ["event_type"],
    }
)


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|")


def top_brands_markdown(revenue: DataFrame, limit: int = TOP_BRANDS) -> str:
    """A markdown table of the `limit` largest rows by revenue.

    Spark sorts and keeps the top rows (a top-k, not a full sort), so only `limit` rows ever
    reach the driver, however many brands and months the run covers.
    """
    top = (
        revenue.orderBy(
            F.col("total_revenue").desc(), F.col("brand").asc_nulls_last(), F.col("month")
        )
        .limit(limit)
        .collect()
    )
    if not top:
        return "*No purchase events in these months.*"
    lines = [
        "| month | brand | total_revenue | purchases |",
        "| --- | --- | ---: | ---: |",
    ]
    for row in top:
        brand = _cell(row["brand"]) if row["brand"] is not None else "*(no brand)*"
        lines.append(
            f"| {row['month']:%Y-%m} | {brand} | {row['total_revenue']:,.2f} | "
            f"{row['purchases']:,} |"
        )
    return "\n".join(lines)


@asset(
    key=["gold", "revenue_by_brand"],
    description=(
        "Per month and brand: total_revenue, the exact DECIMAL sum of price over purchase events "
        "only, and the number of purchases. Events without a brand form a row with brand NULL."
    ),
    **_COMMON,
)
def revenue_by_brand_asset(silver: DataFrame) -> Output[DataFrame]:
    # Kept by Spark after its first use, so the preview and the write share one aggregation
    # instead of reading silver twice; the result is one row per brand and month.
    revenue = revenue_by_brand(silver).persist()
    return Output(
        revenue,
        metadata={
            COLUMN_LINEAGE: REVENUE_BY_BRAND_LINEAGE,
            "top_brands": MetadataValue.md(top_brands_markdown(revenue)),
        },
    )


@asset(
    key=["gold", "daily_funnel"],
    description=(
        "Per UTC day: views, carts, purchases, distinct users, and conversion = purchases / views."
    ),
    **_COMMON,
)
def daily_funnel_asset(silver: DataFrame) -> Output[DataFrame]:
    return Output(daily_funnel(silver), metadata={COLUMN_LINEAGE: DAILY_FUNNEL_LINEAGE})
