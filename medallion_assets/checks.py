"""Data-quality gates: blocking asset checks on every month a run writes.

A check that fails with ERROR severity stops the run's downstream assets, so a month whose bronze
lost lines never reaches silver, and a silver with duplicates never reaches gold. The checked
table itself has already been committed by then (that is what is being checked); what the gate
guarantees is that nothing downstream is built from it until the month is fixed and re-run.

Every check reads only the run's months of the Delta tables: the bronze checks need row counts
only, which the Delta log holds per file (no data is read); the others read the snapshot's files of
those partitions with Spark and aggregate there, so the driver only ever sees one small row per
month. A month the table holds no file for reads as empty (a clean month has no rejected lines, a
month may have no purchase), rather than failing to load.
Results list their numbers per month in the metadata.

- ``bronze_lines_accounted_for``: accepted rows + rejected rows = data lines of the source file.
  The line count is taken by bronze from the raw text (every non-blank line but the header),
  independently of the parser, and recorded in the materialization metadata of bronze/events_rejected.
- ``bronze_rejected_share``: the share of rejected lines; WARN above one threshold, ERROR above
  another (defaults 0 % and 5 %, set in the run config or with environment variables).
- ``silver_user_id_not_null`` and ``silver_no_duplicate_events``: silver's two promises.
- ``gold_revenue_matches_silver``: total revenue by brand adds up to silver's purchase revenue.
"""

import decimal
import os
import warnings
from collections.abc import Iterable, Mapping

import pyarrow as pa
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    Config,
    MetadataValue,
    PreviewWarning,
    ResourceParam,
    asset_check,
)
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema

from medallion_assets.assets.bronze import BRONZE_EVENTS, BRONZE_REJECTED
from medallion_assets.assets.silver import SILVER_EVENTS
from medallion_assets.io.delta_io_manager import SparkDeltaIOManager, spark_path
from medallion_assets.partitions import (
    month_start,
    monthly_partitions,
    months_in_window,
    partition_key_for,
)
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.retries import SPARK_RETRY_POLICY, deterministic_failure
from medallion_assets.schema import MONTH_COLUMN, SOURCE_COLUMNS

GOLD_REVENUE_BY_BRAND = ["gold", "revenue_by_brand"]

# The checks are partitioned like their assets so that the UI shows a result per month. Dagster
# flags partitioned checks as a preview at every definition; say so once here.
warnings.filterwarnings(
    "ignore", message=r"Specifying a partitions_def on an AssetCheckSpec", category=PreviewWarning
)

WARN_PERCENT_ENV = "MEDALLION_REJECTED_WARN_PERCENT"
FAIL_PERCENT_ENV = "MEDALLION_REJECTED_FAIL_PERCENT"
DEFAULT_WARN_PERCENT = 0.0
DEFAULT_FAIL_PERCENT = 5.0

_COMMON = dict(
    blocking=True,
    partitions_def=monthly_partitions,
    retry_policy=SPARK_RETRY_POLICY,
    pool="spark",
)


def _run_months(context: AssetCheckExecutionContext) -> list[str]:
    return [partition_key_for(m) for m in months_in_window(context.partition_time_window)]


def read_months(
    session: SparkSession,
    io_manager: SparkDeltaIOManager,
    asset_path: list[str],
    months: list[str],
    columns: Iterable[str] = (),
) -> DataFrame:
    """The given months of an asset's Delta table as a Spark DataFrame of ``columns`` + ``month``.

    Only the files of those partitions are listed (a delta-rs partition predicate on the log) and
    only the wanted columns are read. A month without files, or a table that does not exist yet,
    yields no rows.
    """
    month_field = T.StructField(MONTH_COLUMN, T.DateType())
    try:
        table = DeltaTable(
            io_manager.table_uri(asset_path), storage_options=io_manager.delta_storage_options()
        )
    except TableNotFoundError:
        schema = T.StructType([T.StructField(name, T.StringType()) for name in columns])
        return session.createDataFrame([], T.StructType([*schema.fields, month_field]))
    table_schema = from_arrow_schema(pa.schema(table.schema().to_arrow()), prefer_timestamp_ntz=False)
    schema = T.StructType([table_schema[name] for name in columns])
    result = session.createDataFrame([], T.StructType([*schema.fields, month_field]))
    for month in months:
        day = month_start(month)
        uris = table.file_uris(file_pruning_predicate=[(MONTH_COLUMN, "=", day.isoformat())])
        if uris:
            frame = session.read.schema(schema).parquet(*[spark_path(u) for u in uris])
            result = result.unionByName(frame.withColumn(MONTH_COLUMN, F.lit(day)))
    return result


def _per_month(frame: DataFrame, months: Iterable[str], **aggregates) -> dict[str, dict]:
    """One small row per month: the named aggregates, computed by Spark. Months without rows get
    None for every aggregate."""
    rows = (
        frame.groupBy(MONTH_COLUMN)
        .agg(*[column.alias(name) for name, column in aggregates.items()])
        .collect()
    )
    found = {partition_key_for(row[MONTH_COLUMN]): row.asDict() for row in rows}
    return {m: found.get(m, dict.fromkeys(aggregates)) for m in months}


def _months_text(values: Mapping[str, object]) -> str:
    return ", ".join(f"{month}: {value}" for month, value in values.items())


# -- bronze ----------------------------------------------------------------------------------------


def recorded_data_lines(context: AssetCheckExecutionContext, month: str) -> int | None:
    """The data-line count bronze recorded for a month with its latest materialization (on
    bronze/events_rejected, the output bronze writes once the lines have been counted)."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(BRONZE_REJECTED), asset_partitions=[month]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    entry = records[0].asset_materialization.metadata.get("source_data_lines")
    value = entry.value if entry is not None else None
    return value.get(month) if isinstance(value, dict) else None


@asset_check(
    asset=BRONZE_EVENTS,
    additional_deps=[BRONZE_REJECTED],
    description=(
        "Every data line of the month's source file is either in bronze/events or in "
        "bronze/events_rejected: accepted rows + rejected rows = data lines (the file's non-blank "
        "lines minus the header, counted by bronze from the raw text)."
    ),
    **_COMMON,
)
def bronze_lines_accounted_for(
    context: AssetCheckExecutionContext,
    io_manager: ResourceParam[SparkDeltaIOManager],
) -> AssetCheckResult:
    months = _run_months(context)
    accepted = io_manager.month_row_counts(BRONZE_EVENTS, months)
    rejected_rows = io_manager.month_row_counts(BRONZE_REJECTED, months)
    lines = {m: recorded_data_lines(context, m) for m in months}
    unrecorded = [m for m, n in lines.items() if n is None]
    mismatched = {
        m: f"{lines[m]} lines, {accepted[m]} + {rejected_rows[m]} rows"
        for m in months
        if lines[m] is not None and accepted[m] + rejected_rows[m] != lines[m]
    }
    if unrecorded:
        description = f"No data-line count recorded by bronze for {', '.join(unrecorded)}."
    elif mismatched:
        description = "Lines lost or duplicated: " + _months_text(mismatched) + "."
    else:
        description = "Every data line is accounted for."
    return AssetCheckResult(
        passed=not unrecorded and not mismatched,
        description=description,
        metadata={
            "source_data_lines": MetadataValue.json(lines),
            "accepted_rows": MetadataValue.json(accepted),
            "rejected_rows": MetadataValue.json(rejected_rows),
        },
    )


class RejectedShareConfig(Config):
    """Thresholds for the share of a month's lines that bronze rejected, in percent.

    Unset values come from ``$MEDALLION_REJECTED_WARN_PERCENT`` and
    ``$MEDALLION_REJECTED_FAIL_PERCENT``, else 0 % (warn on any rejected line) and 5 % (fail when
    more than one line in twenty is bad).
    """

    warn_above_percent: float | None = Field(
        default=None, description=f"WARN above this share; default ${WARN_PERCENT_ENV} or 0."
    )
    fail_above_percent: float | None = Field(
        default=None,
        description=f"ERROR (blocking) above this share; default ${FAIL_PERCENT_ENV} or 5.",
    )

    def thresholds(self) -> tuple[float, float]:
        warn = _percent(self.warn_above_percent, WARN_PERCENT_ENV, DEFAULT_WARN_PERCENT)
        fail = _percent(self.fail_above_percent, FAIL_PERCENT_ENV, DEFAULT_FAIL_PERCENT)
        if not 0 <= warn <= fail <= 100:
            raise deterministic_failure(
                "Rejected-share thresholds must satisfy "
                f"0 <= warn ({warn}) <= fail ({fail}) <= 100."
            )
        return warn, fail


def _percent(configured: float | None, env: str, default: float) -> float:
    if configured is not None:
        return float(configured)
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as error:
        raise deterministic_failure(f"${env}={raw!r} is not a number of percent.") from error


@asset_check(
    asset=BRONZE_EVENTS,
    additional_deps=[BRONZE_REJECTED],
    description=(
        "Share of the month's lines that bronze rejected: WARN above the warning threshold "
        "(default 0 %), ERROR above the failing threshold (default 5 %), which stops silver and "
        "gold for the run."
    ),
    **_COMMON,
)
def bronze_rejected_share(
    context: AssetCheckExecutionContext,
    config: RejectedShareConfig,
    io_manager: ResourceParam[SparkDeltaIOManager],
) -> AssetCheckResult:
    warn, fail = config.thresholds()
    months = _run_months(context)
    accepted = io_manager.month_row_counts(BRONZE_EVENTS, months)
    rejected_rows = io_manager.month_row_counts(BRONZE_REJECTED, months)
    shares = {
        m: 100.0 * rejected_rows[m] / (accepted[m] + rejected_rows[m])
        if accepted[m] + rejected_rows[m]
        else 0.0
        for m in months
    }
    failing = {m: f"{s:.2f} %" for m, s in shares.items() if s > fail}
    warning = {m: f"{s:.2f} %" for m, s in shares.items() if s > warn}
    if failing:
        severity, description = (
            AssetCheckSeverity.ERROR,
            (f"Rejected share above {fail:g} %: " + _months_text(failing) + "."),
        )
    elif warning:
        severity, description = (
            AssetCheckSeverity.WARN,
            (f"Rejected share above {warn:g} %: " + _months_text(warning) + "."),
        )
    else:
        severity, description = AssetCheckSeverity.ERROR, "Rejected share within thresholds."
    return AssetCheckResult(
        passed=not warning,
        severity=severity,
        description=description,
        metadata={
            "rejected_share_percent": MetadataValue.json(
                {m: round(s, 4) for m, s in shares.items()}
            ),
            "rejected_rows": MetadataValue.json(rejected_rows),
            "accepted_rows": MetadataValue.json(accepted),
            "warn_above_percent": warn,
            "fail_above_percent": fail,
        },
    )


# -- silver ----------------------------------------------------------------------------------------


@asset_check(
    asset=SILVER_EVENTS,
    description="No silver event without a user_id.",
    **_COMMON,
)
def silver_user_id_not_null(
    context: AssetCheckExecutionContext,
    spark: SparkSessionResource,
    io_manager: ResourceParam[SparkDeltaIOManager],
) -> AssetCheckResult:
    months = _run_months(context)
    silver = read_months(spark.spark_session, io_manager, SILVER_EVENTS, months, ["user_id"])
    counts = _per_month(silver, months, nulls=F.count_if(F.col("user_id").isNull()))
    nulls = {m: c["nulls"] or 0 for m, c in counts.items()}
    bad = {m: n for m, n in nulls.items() if n}
    return AssetCheckResult(
        passed=not bad,
        description=(
            "Rows with a null user_id: " + _months_text(bad) + "." if bad else "No null user_id."
        ),
        metadata={"null_user_id_rows": MetadataValue.json(nulls)},
    )


_HASH = "_row_hash"
_KEY = [MONTH_COLUMN, *SOURCE_COLUMNS]


def _hashed(events: DataFrame) -> DataFrame:
    return events.withColumn(_HASH, F.xxhash64(*_KEY))


def repeated_hashes(events: DataFrame) -> DataFrame:
    """(month, row hash) pairs that more than one row has: every group of duplicates is among
    them, plus the rare rows that merely share a hash. Costs one 64-bit hash per row shuffled.

    Shuffled before counting: nearly every hash is unique, so a map-side partial count saves
    nothing and its hash table spills on big months (5M rows, 2 cores: 8.3-9.4 s with it,
    5.6-6.2 s without)."""
    hashes = _hashed(events).select(MONTH_COLUMN, _HASH).repartition(MONTH_COLUMN, _HASH)
    counts = hashes.groupBy(MONTH_COLUMN, _HASH).count()
    return counts.where(F.col("count") > 1).select(MONTH_COLUMN, _HASH)


def duplicate_groups(events: DataFrame) -> DataFrame:
    """Groups of rows equal in all nine source columns (and month) that have more than one row,
    with their ``count``: exact, at the cost of shuffling one 64-bit hash per row.

    Grouping by the nine columns would shuffle every row whole — as much data as silver's own
    de-duplication (on a 5M-row month, 25 s against silver's 37 s). Rows are grouped by a hash of
    the columns instead (`repeated_hashes`); only rows whose hash occurs more than once
    (duplicates, or the rare collision) are then grouped by their real values. Grouping rather
    than COUNT(DISTINCT ...), which skips rows with a null column, counts every copy.
    """
    repeated = repeated_hashes(events)
    # Broadcast, planned as such: left to adaptive execution, the join would shuffle every row
    # whole before learning that the repeated hashes are few. A table so broken that millions of
    # rows repeat fails this check either way.
    candidates = _hashed(events).join(F.broadcast(repeated), [MONTH_COLUMN, _HASH], "left_semi")
    return candidates.groupBy(*_KEY).count().where(F.col("count") > 1)


@asset_check(
    asset=SILVER_EVENTS,
    description="No two silver events are equal in all nine source columns.",
    **_COMMON,
)
def silver_no_duplicate_events(
    context: AssetCheckExecutionContext,
    spark: SparkSessionResource,
    io_manager: ResourceParam[SparkDeltaIOManager],
) -> AssetCheckResult:
    months = _run_months(context)
    silver = read_months(spark.spark_session, io_manager, SILVER_EVENTS, months, SOURCE_COLUMNS)
    counts = _per_month(duplicate_groups(silver), months, extra_copies=F.sum(F.col("count") - 1))
    duplicates = {m: c["extra_copies"] or 0 for m, c in counts.items()}
    bad = {m: n for m, n in duplicates.items() if n}
    return AssetCheckResult(
        passed=not bad,
        description=(
            "Duplicate events (extra copies): " + _months_text(bad) + "."
            if bad
            else "No duplicate events."
        ),
        metadata={"duplicate_rows": MetadataValue.json(duplicates)},
    )


# -- gold ------------------------------------------------------------------------------------------


@asset_check(
    asset=GOLD_REVENUE_BY_BRAND,
    additional_deps=[SILVER_EVENTS],
    description=(
        "The month's total revenue over all brands equals the sum of price over silver's purchase "
        "events, exactly (DECIMAL)."
    ),
    **_COMMON,
)
def gold_revenue_matches_silver(
    context: AssetCheckExecutionContext,
    spark: SparkSessionResource,
    io_manager: ResourceParam[SparkDeltaIOManager],
) -> AssetCheckResult:
    months = _run_months(context)
    session = spark.spark_session
    revenue_by_brand = read_months(
        session, io_manager, GOLD_REVENUE_BY_BRAND, months, ["total_revenue"]
    )
    gold_totals = _per_month(revenue_by_brand, months, revenue=F.sum("total_revenue"))
    silver = read_months(session, io_manager, SILVER_EVENTS, months, ["event_type", "price"])
    purchases = silver.where(F.col("event_type") == "purchase")
    silver_totals = _per_month(purchases, months, revenue=F.sum("price"))
    zero = decimal.Decimal("0.00")
    gold = {m: gold_totals[m]["revenue"] or zero for m in months}
    expected = {m: silver_totals[m]["revenue"] or zero for m in months}
    bad = {m: f"gold {gold[m]} vs silver {expected[m]}" for m in months if gold[m] != expected[m]}
    return AssetCheckResult(
        passed=not bad,
        description=(
            "Revenue differs: " + _months_text(bad) + "."
            if bad
            else "Gold revenue = silver revenue."
        ),
        metadata={
            "gold_total_revenue": MetadataValue.json({m: str(v) for m, v in gold.items()}),
            "silver_purchase_revenue": MetadataValue.json({m: str(v) for m, v in expected.items()}),
        },
    )


all_checks = [
    bronze_lines_accounted_for,
    bronze_rejected_share,
    silver_user_id_not_null,
    silver_no_duplicate_events,
    gold_revenue_matches_silver,
]
