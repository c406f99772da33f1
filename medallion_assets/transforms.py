"""The medallion transformations: pure functions from Spark DataFrames to Spark DataFrames.

Nothing here knows about Dagster, files or Delta, so every rule can be tested on a handful of
hand-made rows. Every function is lazy: it only builds a plan, and the IO manager's write runs it.

Bronze parsing is done on raw lines rather than with Spark's CSV reader alone, because the reader
in PERMISSIVE mode pads a short row with nulls and silently drops extra fields, and in FAILFAST
mode loses every good row of the file with the bad one. Here each line is split with
``from_csv`` (quotes, embedded commas), its field count is checked separately, and every value is
validated against its declared type; a line that fails keeps its raw text and a reason.

Time zones: ``event_time`` is parsed with its ``UTC`` suffix, and days are derived from epoch
seconds, so the results never depend on the Spark session's time zone.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medallion_assets.partitions import next_month, partition_key_for
from medallion_assets.schema import (
    BRONZE_EVENTS_SCHEMA,
    BRONZE_REJECTED_SCHEMA,
    EVENT_TYPES,
    GOLD_DAILY_FUNNEL_SCHEMA,
    GOLD_REVENUE_BY_BRAND_SCHEMA,
    MONTH_COLUMN,
    PRICE_TYPE,
    SILVER_EVENTS_SCHEMA,
    SOURCE_COLUMNS,
    SOURCE_HEADER,
)

REASON = "_reject_reason"
LINE = "_line"
_RAW = "_raw"
_INT_RE = r"^-?[0-9]{1,19}$"
_PRICE_RE = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"
_TIME_FORMAT = "yyyy-MM-dd HH:mm:ss z"
_SECONDS_PER_DAY = 86_400
# RFC 4180: a quote inside a quoted field is written twice (Spark's default escape is a backslash).
_CSV_OPTIONS = {"mode": "PERMISSIVE", "escape": '"'}
_BOM = "\ufeff"
_MAX_LINE = 1 << 30
# monotonically_increasing_id() keeps the row's position within its partition in the low 33 bits.
_ROW_IN_PARTITION_BITS = 33


def conform(df: DataFrame, schema: T.StructType) -> DataFrame:
    """Select exactly the schema's columns, in its order, cast to its types."""
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def _epoch_seconds(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())


def _blank_to_null(c: Column) -> Column:
    return F.when(c == "", F.lit(None)).otherwise(c)


def _quoted(c: Column) -> Column:
    return F.concat(F.lit("'"), F.coalesce(c, F.lit("")), F.lit("'"))


def first_line_of_file() -> Column:
    """True for the first line of a file read with ``spark.read.text``, false for every other.

    The first line is the first row of the split that starts at byte 0 of the file (Spark's CSV
    reader finds its header the same way). For rows that do not come from a file (a DataFrame
    built in memory, as in tests), the first row of the first partition.

    Must be evaluated directly over the lines, before any filter changes the row positions.
    """
    position = F.monotonically_increasing_id()
    row_in_partition = position.bitwiseAND(F.lit((1 << _ROW_IN_PARTITION_BITS) - 1))
    block_start = F.input_file_block_start()
    return F.when(block_start == -1, position == 0).otherwise(
        (block_start == 0) & (row_in_partition == 0)
    )


def parse_events(
    lines: DataFrame, *, month: dt.date, source_file: str, ingested_at: dt.datetime
) -> DataFrame:
    """Parse the lines of one month's source file (a single string column ``value``).

    Returns every data line (the file's first line, its header, and blank lines dropped; a header
    line anywhere else is a rejected line) with the typed source columns, the bronze bookkeeping
    columns, the raw line and a reject reason that is null for a valid row. Split it with
    `accepted_events` and `rejected_events`.

    The work is laid out in three projections — split the line, type each field, explain what
    failed — so that each costly expression (CSV split, regex checks, timestamp parsing) runs
    once per line. Written as one projection, the reason's CASE branches would each evaluate the
    typed values again: Spark does not share subexpressions into conditional branches, and that
    made parsing three times slower.
    """
    month_key = partition_key_for(month)
    lo, hi = _epoch_seconds(month), _epoch_seconds(next_month(month))
    raw_schema = ", ".join(f"`{c}` STRING" for c in SOURCE_COLUMNS)

    value = F.when(
        F.col("value").startswith(_BOM), F.substring(F.col("value"), 2, _MAX_LINE)
    ).otherwise(F.col("value"))
    data = lines.select(
        value.alias(LINE), first_line_of_file().alias("_first")
    ).where(~(F.col("_first") & (F.col(LINE) == SOURCE_HEADER)) & (F.trim(F.col(LINE)) != ""))

    # 1. Split: the raw fields (empty -> null) and the field count.
    # Fields outside quotes: drop quoted sections ("" escapes included), count the commas left.
    # The regular expression only runs on the few lines that hold a quote.
    line = F.col(LINE)
    unquoted = F.when(line.contains('"'), F.regexp_replace(line, r'"[^"]*"', "")).otherwise(line)
    field_count = F.length(unquoted) - F.length(F.replace(unquoted, F.lit(","), F.lit(""))) + 1
    split = data.select(
        F.col(LINE),
        field_count.alias("_fields"),
        F.from_csv(F.col(LINE), raw_schema, _CSV_OPTIONS).alias(_RAW),
    ).select(
        LINE,
        "_fields",
        *[_blank_to_null(F.col(f"{_RAW}.{c}")).alias(_raw_name(c)) for c in SOURCE_COLUMNS],
    )
    raw = {c: F.col(_raw_name(c)) for c in SOURCE_COLUMNS}

    # 2. Type: each field once; null where the raw value does not fit the type.
    def integer(name: str) -> Column:
        return F.when(raw[name].rlike(_INT_RE), raw[name].try_cast(T.LongType()))

    event_time = F.try_to_timestamp(raw["event_time"], F.lit(_TIME_FORMAT))
    typed = split.select(
        "*",
        event_time.alias("event_time"),
        F.coalesce(raw["event_type"].isin(*EVENT_TYPES), F.lit(False)).alias("_known_type"),
        integer("product_id").alias("product_id"),
        integer("category_id").alias("category_id"),
        F.when(raw["price"].rlike(_PRICE_RE), raw["price"].try_cast(PRICE_TYPE)).alias("price"),
        integer("user_id").alias("user_id"),
    ).withColumn("_seconds", F.unix_seconds(F.col("event_time")))

    # 3. Explain: the first problem of the line, in the order a reader would look for it.
    def bad_integer(name: str, required: bool) -> Column:
        missing = raw[name].isNull()
        invalid = raw[name].isNotNull() & F.col(name).isNull()
        return (missing & F.lit(required)) | invalid

    reason = (
        # Spark's text reader passes the bytes through as they are; any step that decodes them
        # (a regular expression, a write) would silently put U+FFFD in their place.
        F.when(~F.is_valid_utf8(F.col(LINE)), F.lit(
            "not valid UTF-8: the line holds bytes that are not text in UTF-8"))
        .when(F.col(LINE) == SOURCE_HEADER, F.lit(
            "header line repeated inside the file (two files concatenated?)"))
        .when(F.col("_fields") != len(SOURCE_COLUMNS), F.format_string(
            "expected %d fields, found %d", F.lit(len(SOURCE_COLUMNS)), F.col("_fields")))
        .when(raw["event_time"].isNull(), F.lit("missing event_time"))
        .when(F.col("event_time").isNull(), F.concat(
            F.lit("event_time is not 'YYYY-MM-DD HH:MM:SS UTC': "), _quoted(raw["event_time"])))
        .when((F.col("_seconds") < lo) | (F.col("_seconds") >= hi), F.concat(
            F.lit(f"event_time outside month {month_key}: "), _quoted(raw["event_time"])))
        .when(~F.col("_known_type"), F.concat(
            F.lit("unknown event_type: "), _quoted(raw["event_type"])))
        .when(bad_integer("product_id", True), F.concat(
            F.lit("product_id is not an integer: "), _quoted(raw["product_id"])))
        .when(bad_integer("category_id", False), F.concat(
            F.lit("category_id is not an integer: "), _quoted(raw["category_id"])))
        .when(F.col("price").isNull(), F.concat(
            F.lit("price is not a non-negative amount with at most 2 decimals: "),
            _quoted(raw["price"])))
        .when(bad_integer("user_id", False), F.concat(
            F.lit("user_id is not an integer: "), _quoted(raw["user_id"])))
    )
    return typed.select(
        F.col("event_time"),
        raw["event_type"].alias("event_type"),
        F.col("product_id"),
        F.col("category_id"),
        raw["category_code"].alias("category_code"),
        raw["brand"].alias("brand"),
        F.col("price"),
        F.col("user_id"),
        raw["user_session"].alias("user_session"),
        F.lit(month).alias(MONTH_COLUMN),
        F.lit(source_file).alias("_source_file"),
        F.lit(ingested_at).cast(T.TimestampType()).alias("_ingested_at"),
        F.col(LINE),
        reason.alias(REASON),
    )


def _raw_name(column: str) -> str:
    return f"_raw_{column}"


def accepted_events(parsed: DataFrame) -> DataFrame:
    """The valid rows of `parse_events`, in the `bronze/events` schema."""
    return conform(parsed.where(F.col(REASON).isNull()), BRONZE_EVENTS_SCHEMA)


def rejected_events(parsed: DataFrame) -> DataFrame:
    """The rejected lines of `parse_events`, in the `bronze/events_rejected` schema."""
    rejected = parsed.where(F.col(REASON).isNotNull()).select(
        MONTH_COLUMN,
        "_source_file",
        # Bytes that are not UTF-8 become U+FFFD here, so the table holds valid strings only.
        F.make_valid_utf8(F.col(LINE)).alias("line"),
        F.col(REASON).alias("reason"),
    )
    return conform(rejected, BRONZE_REJECTED_SCHEMA)


def clean_events(bronze: DataFrame) -> DataFrame:
    """Silver: drop events without a user and exact duplicates of the nine source columns.

    ``month`` joins the de-duplication key only so that the shuffle stays within a month; it is
    a function of ``event_time``, so it never separates two copies of one event.
    """
    with_user = bronze.where(F.col("user_id").isNotNull())
    return conform(with_user.dropDuplicates([*SOURCE_COLUMNS, MONTH_COLUMN]), SILVER_EVENTS_SCHEMA)


def revenue_by_brand(silver: DataFrame) -> DataFrame:
    """Gold: exact revenue and purchase count per month and brand, over purchase events only.

    The notebook this replaces summed ``price`` over every event (views included), which counts
    product page views as money. A null brand is kept as a row of its own.
    """
    purchases = silver.where(F.col("event_type") == "purchase")
    revenue = purchases.groupBy(MONTH_COLUMN, "brand").agg(
        F.sum("price").alias("total_revenue"), F.count(F.lit(1)).alias("purchases")
    )
    return conform(revenue, GOLD_REVENUE_BY_BRAND_SCHEMA)


def utc_date(timestamp: Column) -> Column:
    """The UTC calendar day of a timestamp, whatever the session time zone."""
    return F.date_from_unix_date(F.floor(F.unix_seconds(timestamp) / _SECONDS_PER_DAY).cast("int"))


def daily_funnel(silver: DataFrame) -> DataFrame:
    """Gold: per UTC day, views, carts, purchases, distinct users and conversion (purchases/views)."""

    def count_of(kind: str) -> Column:
        return F.count_if(F.col("event_type") == kind)

    funnel = (
        silver.withColumn("date", utc_date(F.col("event_time")))
        .groupBy(MONTH_COLUMN, "date")
        .agg(
            count_of("view").alias("views"),
            count_of("cart").alias("carts"),
            count_of("purchase").alias("purchases"),
            F.countDistinct("user_id").alias("distinct_users"),
        )
        .withColumn(
            "conversion",
            F.when(F.col("views") > 0, F.col("purchases") / F.col("views")),
        )
    )
    return conform(funnel, GOLD_DAILY_FUNNEL_SCHEMA)
