"""The medallion transformations: pure functions from Spark DataFrames to Spark DataFrames.

Nothing here knows about Dagster or Delta, so every rule can be tested on a handful of hand-made
rows. Every function is lazy: it only builds a plan, and the IO manager's write runs it.

Bronze is parsed by Spark's own CSV reader with the declared schema (`SOURCE_FIELDS_SCHEMA`): it
splits the line and types ``event_time`` as it goes, which is the cheapest parse Spark has. Its
mode (`SOURCE_CSV_OPTIONS`) drops any line whose time it cannot type or whose field count is not
nine, rather than padding a short line with nulls or cutting off the surplus fields of a long one.
`valid_events` adds the row rules the reader cannot know (event type, month window, required
fields, text that was not UTF-8) and types the numbers itself: a value is read exactly as written,
or its line is rejected (`exact_integer`, `exact_price`). No reason text is computed for a valid
line.

The rejected lines and their reasons (`rejected_lines`) come from a second read of the file as raw
lines, which bronze makes only when the first pass kept fewer rows than the file has data lines.
That pass types every line with the very same parser and format options (`from_csv` is the CSV
reader's parser), in the mode that keeps a line it cannot type whole in a corrupt-record column
instead of dropping it, and judges it by the same rules; so both passes agree on which lines are
rejected, and the reason is worked out only for those lines.

Time zones: ``event_time`` is parsed with its ``UTC`` suffix, and days are derived from epoch
seconds, so the results never depend on the Spark session's time zone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medallion_assets.partitions import next_month, partition_key_for
from medallion_assets.schema import (
    BRONZE_EVENTS_SCHEMA,
    BRONZE_REJECTED_SCHEMA,
    CORRUPT_RECORD,
    EVENT_TYPES,
    GOLD_DAILY_FUNNEL_SCHEMA,
    GOLD_REVENUE_BY_BRAND_SCHEMA,
    MONTH_COLUMN,
    PRICE_TYPE,
    SILVER_EVENTS_SCHEMA,
    SOURCE_COLUMNS,
    SOURCE_HEADER,
    SOURCE_LINE_OPTIONS,
    SOURCE_READ_SCHEMA,
)

VALID = "_valid"
LINE = "_line"
_RAW = "_raw"
_TYPED = "_typed"
_TIME = "_event_time"
# The one form a price is written in: no sign, no leading zero, at most ten digits before the
# point (DECIMAL(12,2)), and when there is a point, one or two digits after it. `\z` is the very
# end of the text (`$` would also match before a final line break, which the cast trims away).
PRICE_TEXT = r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?\z"
_SECONDS_PER_DAY = 86_400
_BOM = "\ufeff"
# What a decoder puts in place of bytes that are not UTF-8.
_REPLACEMENT = "\ufffd"
_MAX_LINE = 1 << 30
# A blank line is skipped by the CSV reader: nothing but characters up to U+0020 (Java's trim).
_BLANK_RE = r"^[\x00-\x20]*$"
# monotonically_increasing_id() keeps the row's position within its partition in the low 33 bits.
_ROW_IN_PARTITION_BITS = 33
_STRING_FIELDS = ("event_type", "category_code", "brand", "user_session")


def conform(df: DataFrame, schema: T.StructType) -> DataFrame:
    """Select exactly the schema's columns, in its order, cast to its types."""
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def _epoch_seconds(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())


def _month_bounds(month: dt.date) -> tuple[dt.datetime, dt.datetime]:
    def utc(day: dt.date) -> dt.datetime:
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)

    return utc(month), utc(next_month(month))


def integer_written_exactly(text: Column) -> Column:
    """True when a source field (text) is an integer as the source writes one: ``0``, or digits
    with no leading zero after an optional minus (``^(0|-?[1-9][0-9]*)$``), inside the LONG range.
    Null for a null field.

    Not Spark's CSV reader, which takes "+5", "007" and digits of other scripts ("١٢٣" -> 123).
    Spark's cast (in ANSI or ``try_`` mode) checks most of the rule itself: ASCII digits only, no
    fraction, nothing out of range; but it trims spaces and control characters and takes a sign
    or leading zeros. The first and the last character rule those out, as comparisons of the
    text's bytes: on a generated 1M-row month, a quarter cheaper than a regular expression per
    field, which decodes the text and runs a matcher.
    """
    last = F.substring(text, -1, 1)
    first = (
        ((text >= "1") & (text < ":"))  # a digit 1-9 (":" follows "9")
        | ((text >= "-1") & (text < "-:"))  # a minus, then a digit 1-9
        | (text == "0")
    )
    return text.try_cast(T.LongType()).isNotNull() & first & (last >= "0") & (last <= "9")


def exact_integer(text: Column) -> Column:
    """The LONG a source field (text) holds, or null when it is not written exactly as an integer
    (`integer_written_exactly`)."""
    return F.when(integer_written_exactly(text), text.try_cast(T.LongType()))


def exact_price(text: Column) -> Column:
    """The DECIMAL(12,2) a source field (text) holds, or null when the field is not written as the
    source writes a price (`PRICE_TEXT`): a non-negative amount with at most two decimals.

    Not Spark's CSV reader: it drops every comma of a DECIMAL ("12,50" -> 1250.00, "1,2,3" ->
    123.00), takes "+1.5", "1e3", ".5", "-0.00" and digits of other scripts, and rounds decimals
    the type cannot hold ("1.000000001" -> 1.00). Nor the cast alone, which trims spaces and rounds
    a third decimal.
    """
    return F.when(text.rlike(PRICE_TEXT), text.try_cast(PRICE_TYPE))


def valid_event(month: dt.date, *, corrupt_record: bool = True) -> Column:
    """True for a typed record (`SOURCE_FIELDS_SCHEMA`) that belongs in bronze/events for
    ``month``; with ``corrupt_record``, for a record of `SOURCE_READ_SCHEMA`, whose
    ``_corrupt_record`` holds the raw line when the reader could not type it.

    The numbers are judged on their text (`integer_written_exactly`; the price by one regular
    expression, compiled once per task). The cast of an accepted value to its type is left to
    `accepted_events`, which only sees valid rows.
    """
    c = F.col
    lo, hi = _month_bounds(month)

    def integer_ok(name: str, required: bool) -> Column:
        exact = integer_written_exactly(c(name))
        return exact if required else c(name).isNull() | exact

    text_ok = [
        F.coalesce(~F.contains(c(name), F.lit(_REPLACEMENT)), F.lit(True))
        for name in _STRING_FIELDS
    ]
    rule = (
        (c("event_time") >= F.lit(lo))
        & (c("event_time") < F.lit(hi))
        & c("event_type").isin(*EVENT_TYPES)
        & integer_ok("product_id", required=True)
        & integer_ok("category_id", required=False)
        & c("price").rlike(PRICE_TEXT)
        & integer_ok("user_id", required=False)
    )
    if corrupt_record:
        rule = c(CORRUPT_RECORD).isNull() & rule
    for term in text_ok:
        rule = rule & term
    # The reader types only the columns a query uses, and a bad value (or a wrong field count) in
    # a line whose columns it does not type is never seen. Naming every column here makes every
    # query that asks whether a record is valid (a count included) type the whole line.
    for name in SOURCE_COLUMNS:
        rule = rule & (c(name).isNull() | c(name).isNotNull())
    return F.coalesce(rule, F.lit(False))


def valid_events(
    records: DataFrame, *, month: dt.date, source_file: str, ingested_at: dt.datetime
) -> DataFrame:
    """The records of one month's file as the typed pass reads them (`SOURCE_FIELDS_SCHEMA`,
    `SOURCE_CSV_OPTIONS`), with a boolean ``_valid`` and bronze's bookkeeping columns.

    Records read with a corrupt-record column (`SOURCE_READ_SCHEMA`, `SOURCE_LINE_OPTIONS`) are
    judged with it: a line the reader could not type is then not valid either.
    """
    return records.select(
        *[F.col(name) for name in SOURCE_COLUMNS],
        valid_event(month, corrupt_record=CORRUPT_RECORD in records.columns).alias(VALID),
        F.lit(month).alias(MONTH_COLUMN),
        F.lit(source_file).alias("_source_file"),
        F.lit(ingested_at).cast(T.TimestampType()).alias("_ingested_at"),
    )


def accepted_events(records: DataFrame) -> DataFrame:
    """The valid rows of `valid_events`, in the `bronze/events` schema: each number cast from its
    text to its type, which `valid_event` has already found it is written exactly as (a cast that
    failed here would fail the write, not store a null)."""
    return conform(records.where(F.col(VALID)), BRONZE_EVENTS_SCHEMA)


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


def _blank_to_null(c: Column) -> Column:
    return F.when(c == "", F.lit(None)).otherwise(c)


def _quoted(c: Column) -> Column:
    return F.concat(F.lit("'"), F.coalesce(c, F.lit("")), F.lit("'"))


def _ddl(schema: T.StructType) -> str:
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in schema.fields)


def rejected_lines(lines: DataFrame, *, month: dt.date, source_file: str) -> DataFrame:
    """The lines of one month's file (``spark.read.text``: a single string column ``value``) that
    `valid_events` rejects, in the `bronze/events_rejected` schema: the raw line and the first
    problem a reader would look for.

    The file's first line (its header) and blank lines are skipped, as the CSV reader skips them;
    a header line anywhere else is a rejected line. Each line is typed with the reader's own
    parser and format options (`from_csv`), a line it cannot type kept whole in the corrupt-record
    column, and judged by `valid_event`: exactly the lines the typed pass dropped or ruled out
    come out. The reason is then worked out for those lines only.
    """
    month_key = partition_key_for(month)
    lo, hi = _epoch_seconds(month), _epoch_seconds(next_month(month))
    line = F.col(LINE)
    data = lines.select(F.col("value").alias(LINE), first_line_of_file().alias("_first")).where(
        ~F.col("_first") & ~line.rlike(_BLANK_RE)
    )
    typed = data.select(
        LINE, F.from_csv(line, _ddl(SOURCE_READ_SCHEMA), SOURCE_LINE_OPTIONS).alias(_TYPED)
    ).select(LINE, f"{_TYPED}.*")
    # The time as the reader typed it: the text pass has no parser of its own to disagree with it.
    rejected = typed.where(~valid_event(month)).select(LINE, F.col("event_time").alias(_TIME))

    # 1. Split as text: the raw fields (empty -> null) and the field count outside quotes.
    value = F.when(line.startswith(_BOM), F.substring(line, 2, _MAX_LINE)).otherwise(line)
    unquoted = F.when(value.contains('"'), F.regexp_replace(value, r'"[^"]*"', "")).otherwise(value)
    field_count = F.length(unquoted) - F.length(F.replace(unquoted, F.lit(","), F.lit(""))) + 1
    raw_schema = ", ".join(f"`{c}` STRING" for c in SOURCE_COLUMNS)
    split = rejected.select(
        LINE,
        _TIME,
        field_count.alias("_fields"),
        F.from_csv(value, raw_schema, {"mode": "PERMISSIVE", "escape": '"'}).alias(_RAW),
    ).select(
        LINE,
        _TIME,
        "_fields",
        *[_blank_to_null(F.col(f"{_RAW}.{c}")).alias(_raw_name(c)) for c in SOURCE_COLUMNS],
    )
    raw = {c: F.col(_raw_name(c)) for c in SOURCE_COLUMNS}

    # 2. Type each field once, in a projection of its own: Spark does not share subexpressions
    # into the branches of the CASE below, which would otherwise evaluate each again.
    typed_fields = split.select(
        "*",
        F.col(_TIME).alias("event_time"),
        F.coalesce(raw["event_type"].isin(*EVENT_TYPES), F.lit(False)).alias("_known_type"),
        exact_integer(raw["product_id"]).alias("product_id"),
        exact_integer(raw["category_id"]).alias("category_id"),
        exact_price(raw["price"]).alias("price"),
        exact_integer(raw["user_id"]).alias("user_id"),
    ).withColumn("_seconds", F.unix_seconds(F.col("event_time")))

    # 3. Explain: the first problem of the line, in the order a reader would look for it.
    def bad_integer(name: str, required: bool) -> Column:
        missing = raw[name].isNull()
        invalid = raw[name].isNotNull() & F.col(name).isNull()
        return (missing & F.lit(required)) | invalid

    reason = (
        # Spark's text reader passes the bytes through as they are, so this sees the real bytes.
        F.when(~F.is_valid_utf8(line), F.lit(
            "not valid UTF-8: the line holds bytes that are not text in UTF-8"))
        .when(line.contains(_REPLACEMENT), F.lit(
            "holds U+FFFD, the character that stands for bytes lost in a decoding upstream"))
        .when(value == SOURCE_HEADER, F.lit(
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
        # The CSV parser refused a line whose fields each look right (a quote out of place).
        .otherwise(F.lit("the line does not parse as CSV with the declared columns"))
    )
    explained = typed_fields.select(
        F.lit(month).alias(MONTH_COLUMN),
        F.lit(source_file).alias("_source_file"),
        # Bytes that are not UTF-8 become U+FFFD here, so the table holds valid strings only.
        F.make_valid_utf8(line).alias("line"),
        reason.alias("reason"),
    )
    return conform(explained, BRONZE_REJECTED_SCHEMA)


def _raw_name(column: str) -> str:
    return f"_raw_{column}"


COPIES = "_copies"
# The latest month among an event's copies; ``month`` is the earliest. They differ only for an
# event bronze holds under two months, which silver's accounting check reports.
LAST_MONTH = "_last_month"
_BOOKKEEPING = ("_source_file", "_ingested_at")
# The nine source columns say what an event is; silver groups them, and stores its rows, in this
# order: each user's events together, in time order. The bookkeeping columns are the same for every
# row of a month (a month is always written whole, from one file, by one run), so grouping by them
# as well separates nothing.
DEDUP_ORDER: tuple[str, ...] = (
    "user_id",
    "event_time",
    *(c for c in SOURCE_COLUMNS if c not in ("user_id", "event_time")),
)
_DEDUP_KEY = [*DEDUP_ORDER, *_BOOKKEEPING]


# Rows of a month per partition of silver's de-duplication shuffle, past which the shuffle is cut
# into more partitions than the session's default (see `dedup_partitions`).
ROWS_PER_DEDUP_PARTITION = 750_000


def dedup_partitions(rows: int, default: int) -> int | None:
    """How many partitions silver's de-duplication shuffle needs for `rows` bronze rows: None (the
    session's default, `default`, coalesced by adaptive execution) while that keeps a partition
    under `ROWS_PER_DEDUP_PARTITION` rows, else one partition per that many rows.

    A task sorts its whole partition in memory; past that size it spills. On 2 cores a full-size
    month (42M rows) took 124 s with 8 partitions, 104 s with 64 and 110 s with 200 (measured
    when silver aggregated by hashing), while 5M rows ran the same with 8 or 64 — and a small month
    wants one reduce task, which the default's adaptive coalescing gives and a fixed count would
    not.
    """
    if rows <= default * ROWS_PER_DEDUP_PARTITION:
        return None
    return -(-rows // ROWS_PER_DEDUP_PARTITION)


def shuffled_for_dedup(
    bronze: DataFrame, partitions: int | None, key: tuple[str, ...] | list[str] = DEDUP_ORDER
) -> DataFrame:
    """`bronze`'s events with a user, hash-partitioned by ``user_id`` into `partitions` (see
    `dedup_partitions`; None: the session's default number, which adaptive execution then
    coalesces, so that a small month gets one reduce task), each partition sorted by `key` and
    then ``month``.

    By ``user_id`` alone, a subset of every grouping key `grouped_events` uses, so its aggregation
    needs no second shuffle, and every copy of an event lands in the same partition as the others.
    Sorted, so that the aggregation streams over its input (`grouped_events`) instead of hashing
    every row into a map; the rows come out in that order, and silver's files hold each user's
    events together in time order: on a 5M-row month they were 43 % smaller than in hash order
    (120 against 210 MB), and gold's funnel, which aggregates per day and user, read them in 0.6
    against 1.0-1.3 s (one warm session, 3 rounds each; the write itself took the same time).
    At full size, silver's step went from 73 to 68 s and gold's from 15.4 to 7.4 s
    (``make bench-scale``).

    The price of partitioning by user: a user with an outsized share of a month's events makes
    one task that much longer (its sort spilling to disk when it outgrows memory). Spreading that
    user's events would also spread each user's events over several files, which is what gold's
    funnel and any per-user reader gain from.

    Not by ``month``: a partitioning satisfies an aggregation only on a subset of its grouping
    key, and ``month`` is none of `grouped_events`' keys. (When it was, a month read from the Delta
    table, a literal, was folded out of the key but not out of the partitioning, and Spark
    shuffled a full-size month's silver twice: 126 s instead of 68 s.)
    """
    with_user = bronze.where(F.col("user_id").isNotNull())
    spread = (
        with_user.repartition(partitions, "user_id")
        if partitions
        else with_user.repartition("user_id")
    )
    return spread.sortWithinPartitions(*key, MONTH_COLUMN)


def grouped_events(
    bronze: DataFrame,
    month_constants: Mapping[dt.date, Mapping[str, object]] | None = None,
    partitions: int | None = None,
) -> DataFrame:
    """Bronze events with a user, one row per distinct event, with ``_copies``: how many bronze
    rows it stands for, and ``_last_month`` (see below); in `DEDUP_ORDER`, each of the
    `partitions` (see `shuffled_for_dedup`) sorted.

    This is the de-duplication `DataFrame.dropDuplicates` does, with the copy count kept so that
    the rows removed are counted as the rows flow rather than by a second pass. Every source
    column is a grouping key: `dropDuplicates` on a subset keeps ``first()`` of the others.

    The aggregation streams over rows sorted by its key (Spark's sort-based aggregation, which the
    session setting ``spark.sql.execution.replaceHashWithSortAgg`` chooses for an input already
    in order; see `medallion_assets.resources.spark`): one comparison with the previous row
    instead of a lookup in a hash map of every distinct event, and the output keeps the order.
    Where the setting is off, Spark hashes instead: the same events and copies, in hash order.

    ``month`` is not a key but the earliest month of the event's copies, and ``_last_month`` the
    latest: ``first`` and ``last`` over copies sorted by month, all in one partition. Bronze keeps
    a month's events only when their ``event_time`` lies in that month, so the nine columns
    already tell months apart and the two are equal; an event bronze holds under two months (a
    table changed by hand) is still de-duplicated, and counted by silver's check. (``min`` and
    ``max`` would give the same values, but Spark drops a sort below an aggregation whose functions
    ignore order, and the aggregation would hash.) Why not a key: a month read from the Delta
    table is a literal, which Spark computes inside the partial aggregation, and then it cannot
    run the partial and final aggregations after `shuffled_for_dedup` as one.

    ``month_constants`` (month -> the value of each bookkeeping column in every row of that
    month, when known) lets those columns stay out of the shuffle: they are put back per month
    after it, which saves about a tenth of silver's work.
    """
    keys = list(DEDUP_ORDER) if month_constants else _DEDUP_KEY
    spread = shuffled_for_dedup(bronze.select(*keys, MONTH_COLUMN), partitions, keys)
    grouped = spread.groupBy(*keys).agg(
        F.count(F.lit(1)).alias(COPIES),
        F.first(MONTH_COLUMN).alias(MONTH_COLUMN),
        F.last(MONTH_COLUMN).alias(LAST_MONTH),
    )
    if not month_constants:
        return grouped
    for name in _BOOKKEEPING:
        value = None
        for month, constants in month_constants.items():
            literal = F.lit(constants.get(name))
            value = (
                F.when(F.col(MONTH_COLUMN) == F.lit(month), literal)
                if value is None
                else value.when(F.col(MONTH_COLUMN) == F.lit(month), literal)
            )
        grouped = grouped.withColumn(name, value)
    return grouped


def clean_events(
    bronze: DataFrame,
    month_constants: Mapping[dt.date, Mapping[str, object]] | None = None,
    partitions: int | None = None,
) -> DataFrame:
    """Silver: drop events without a user and exact duplicates of the nine source columns."""
    return conform(grouped_events(bronze, month_constants, partitions), SILVER_EVENTS_SCHEMA)


def event_totals(where: Column | None = None) -> dict[str, Column]:
    """Aggregates that total what gold's tables add up, over the rows ``where`` selects (all
    rows when None): ``revenue`` (exact DECIMAL sum of price over purchases), and the number of
    ``purchases``, ``views`` and ``carts``. Silver's write observes them per month and records
    them; gold's checks compare its tables with them."""

    def kind(name: str) -> Column:
        condition = F.col("event_type") == name
        return condition if where is None else where & condition

    return {
        "revenue": F.sum(F.when(kind("purchase"), F.col("price"))),
        "purchases": F.count_if(kind("purchase")),
        "views": F.count_if(kind("view")),
        "carts": F.count_if(kind("cart")),
    }


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
    """Gold: per UTC day, views, carts, purchases, distinct users and conversion
    (purchases / views).

    One aggregation per day, with ``countDistinct(user_id)`` beside the counts (like ``count``,
    it leaves out the events without a user), and ``month`` as the ``min`` of the day's rows
    rather than a grouping key: a day's events all lie in one month (bronze keeps an event under
    a month only when its time lies in that month), so the rows are the same. Spark plans it as
    a partial aggregation per day and user, a shuffle, then per day. Measured on silver's files
    of a full-size month of the wide shape (42.3M rows, 8.5M day-and-user pairs), one run each
    with Spark's task metrics: 12.7 task CPU seconds and no spill, against 19.4 CPU seconds and
    490 MB spilled when ``month`` was a key of both aggregations as two explicit steps (per day
    and user, then per day); a single step keyed by month and day spilled the same. Warm
    session, wall: 10.1 against 16.5 s; on 5M-row months about a tenth faster (1.0 against 1.1
    s).
    """

    def count_of(kind: str) -> Column:
        return F.count_if(F.col("event_type") == kind)

    funnel = (
        silver.select(
            MONTH_COLUMN, utc_date(F.col("event_time")).alias("date"), "user_id", "event_type"
        )
        .groupBy("date")
        .agg(
            F.min(MONTH_COLUMN).alias(MONTH_COLUMN),
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
