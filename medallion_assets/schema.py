"""Column names and types of the source files and of every table.

The source schema is declared, never inferred: the notebook this project replaces used
``inferSchema``, which scans the whole file once more and turns values that do not fit the
guessed type into silent nulls. Here every column has one declared type, and a value that does
not fit it sends its row to ``bronze/events_rejected`` with a reason.
"""

from __future__ import annotations

from dagster import TableColumn, TableSchema
from pyspark.sql import types as T

SOURCE_COLUMNS: tuple[str, ...] = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
)
SOURCE_HEADER = ",".join(SOURCE_COLUMNS)

EVENT_TYPES: tuple[str, ...] = ("view", "cart", "remove_from_cart", "purchase")

PRICE_TYPE = T.DecimalType(12, 2)
MONTH_COLUMN = "month"

# The nine source columns, typed. `event_time` is a UTC instant (Spark TIMESTAMP, stored in Delta
# as `timestamp` with microsecond precision and UTC adjustment).
EVENT_FIELDS = [
    T.StructField("event_time", T.TimestampType(), False),
    T.StructField("event_type", T.StringType(), False),
    T.StructField("product_id", T.LongType(), False),
    T.StructField("category_id", T.LongType(), True),
    T.StructField("category_code", T.StringType(), True),
    T.StructField("brand", T.StringType(), True),
    T.StructField("price", PRICE_TYPE, False),
    T.StructField("user_id", T.LongType(), True),
    T.StructField("user_session", T.StringType(), True),
]

# How Spark's CSV reader reads a source file. The reader splits the line and types `event_time`
# itself; the other fields stay text. Its number parsers normalise silently what they read: a
# DECIMAL loses every comma ("12,50" -> 1250.00) and takes "+1.5", "1e3", ".5", "-0.00" and
# digits of any script, a LONG takes "+5", "007" and "١٢٣", and a value with more decimals than
# the type holds is rounded. So the numbers are typed after the split, by the project's own rule
# for the one form each is written in (`transforms.exact_integer`, `transforms.exact_price`).
SOURCE_FIELDS_SCHEMA = T.StructType(
    [
        T.StructField(f.name, f.dataType if f.name == "event_time" else T.StringType(), True)
        for f in EVENT_FIELDS
    ]
)
# The suffix is a literal, and the time is read in UTC: the pattern letter `z` takes any zone
# ("PST", "CEST", "Etc/UTC", "+00:00") and converts the time to UTC, so a line from a writer in
# another zone would be accepted with no sign of it, and an abbreviation such as "CST" names more
# than one zone (Java picks one). The literal matches in any case: "utc" is still UTC.
SOURCE_TIME_FORMAT = "yyyy-MM-dd HH:mm:ss 'UTC'"
_SOURCE_CSV_FORMAT: dict[str, str] = {
    # RFC 4180: a quote inside a quoted field is written twice (Spark's default is a backslash).
    "escape": '"',
    "timestampFormat": SOURCE_TIME_FORMAT,
    # The zone the pattern's time is in, whatever the Spark session's time zone.
    "timeZone": "UTC",
    # Without this a time in another format would be guessed at rather than rejected.
    "enableDateTimeParsingFallback": "false",
}
# The typed pass that writes bronze/events: a line the reader cannot type, or whose field count is
# not nine, is dropped rather than padded or truncated (the text pass finds it again and says why).
# Not PERMISSIVE with a corrupt-record column: the reader then copies every good row field by
# field, boxing each value, into a row with that column. On a cold JVM that measured 1.6-4 s more
# for a 5M-line month's parse and write (medians of 3-4 alternated rounds, about 35 s each); in a
# warm JVM the two were equal.
SOURCE_CSV_OPTIONS: dict[str, str] = {**_SOURCE_CSV_FORMAT, "mode": "DROPMALFORMED"}
# The text pass applies the same parser to each line (`from_csv`) in PERMISSIVE mode: the lines the
# typed pass drops are exactly those that come out with their raw text in CORRUPT_RECORD.
CORRUPT_RECORD = "_corrupt_record"
SOURCE_READ_SCHEMA = T.StructType(
    [*SOURCE_FIELDS_SCHEMA.fields, T.StructField(CORRUPT_RECORD, T.StringType(), True)]
)
SOURCE_LINE_OPTIONS: dict[str, str] = {
    **_SOURCE_CSV_FORMAT,
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": CORRUPT_RECORD,
}

BRONZE_EVENTS_SCHEMA = T.StructType(
    [
        *EVENT_FIELDS,
        T.StructField(MONTH_COLUMN, T.DateType(), False),
        T.StructField("_source_file", T.StringType(), False),
        T.StructField("_ingested_at", T.TimestampType(), False),
    ]
)

BRONZE_REJECTED_SCHEMA = T.StructType(
    [
        T.StructField(MONTH_COLUMN, T.DateType(), False),
        T.StructField("_source_file", T.StringType(), False),
        T.StructField("line", T.StringType(), True),
        T.StructField("reason", T.StringType(), False),
    ]
)

SILVER_EVENTS_SCHEMA = BRONZE_EVENTS_SCHEMA

REVENUE_TYPE = T.DecimalType(22, 2)  # what Spark's exact sum of DECIMAL(12,2) yields

GOLD_REVENUE_BY_BRAND_SCHEMA = T.StructType(
    [
        T.StructField(MONTH_COLUMN, T.DateType(), False),
        T.StructField("brand", T.StringType(), True),
        T.StructField("total_revenue", REVENUE_TYPE, False),
        T.StructField("purchases", T.LongType(), False),
    ]
)

GOLD_DAILY_FUNNEL_SCHEMA = T.StructType(
    [
        T.StructField(MONTH_COLUMN, T.DateType(), False),
        T.StructField("date", T.DateType(), False),
        T.StructField("views", T.LongType(), False),
        T.StructField("carts", T.LongType(), False),
        T.StructField("purchases", T.LongType(), False),
        T.StructField("distinct_users", T.LongType(), False),
        T.StructField("conversion", T.DoubleType(), True),
    ]
)


def column_descriptions() -> dict[str, str]:
    """Human descriptions shown in the Dagster UI's column schema."""
    return {
        "event_time": "When the event happened (UTC).",
        "event_type": "view, cart, remove_from_cart or purchase.",
        "product_id": "Product identifier.",
        "category_id": "Category identifier (int64).",
        "category_code": "Dotted category path; null when the store had none.",
        "brand": "Lower-case brand; null when unknown.",
        "price": "Product price, exact to the cent.",
        "user_id": "Shopper identifier.",
        "user_session": "Session UUID.",
        "month": "First day of the month the row belongs to (partition column).",
        "_source_file": "Landing file the row was read from.",
        "_ingested_at": "When the bronze run read the file (UTC).",
        "line": "The raw source line, exactly as read.",
        "reason": "Why the line was rejected.",
        "total_revenue": "Sum of price over purchase events.",
        "purchases": "Number of purchase events.",
        "date": "UTC calendar day.",
        "views": "Number of view events.",
        "carts": "Number of cart events.",
        "distinct_users": "Distinct user_id with any event that day.",
        "conversion": "purchases / views; null on a day without views.",
    }


def table_schema_metadata(schema: T.StructType) -> TableSchema:
    """A table schema as Dagster shows it: in the catalog before any run (definition metadata)
    and with every materialization."""
    descriptions = column_descriptions()
    return TableSchema(
        columns=[
            TableColumn(
                name=f.name,
                type=f.dataType.simpleString(),
                description=descriptions.get(f.name),
            )
            for f in schema.fields
        ]
    )
