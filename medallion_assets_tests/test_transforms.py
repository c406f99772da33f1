"""The transformations on hand-made rows: no Dagster, no files, one shared Spark session."""

import datetime as dt
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import Row

from medallion_assets.assets.bronze import read_source
from medallion_assets.schema import (
    BRONZE_EVENTS_SCHEMA,
    BRONZE_REJECTED_SCHEMA,
    GOLD_DAILY_FUNNEL_SCHEMA,
    GOLD_REVENUE_BY_BRAND_SCHEMA,
    SOURCE_HEADER,
)
from medallion_assets.transforms import (
    accepted_events,
    clean_events,
    daily_funnel,
    dedup_partitions,
    grouped_events,
    rejected_lines,
    revenue_by_brand,
    shuffled_for_dedup,
    valid_events,
)

OCT = dt.date(2019, 10, 1)
INGESTED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
UTC = dt.timezone.utc
GOOD = (
    "2019-10-01 00:00:07 UTC,view,1004856,2053013555631882655,electronics.smartphone,samsung,"
    "130.76,543272936,8187d148-3c41-46d4-b0c0-9c08cd9dc564"
)


def parse_file(spark, path, month=OCT):
    """Bronze's two passes over a file: the typed read (accepted rows) and the line read (rejected
    lines with reasons)."""
    records = valid_events(
        read_source(spark, path), month=month, source_file=path.name, ingested_at=INGESTED
    )
    rejected = rejected_lines(spark.read.text(str(path)), month=month, source_file=path.name)
    return accepted_events(records), rejected


def parse(spark, lines, month=OCT):
    """`parse_file` over a file holding ``lines``, behind the header when they do not start with
    one."""
    if not lines or lines[0].lstrip("\ufeff") != SOURCE_HEADER:
        lines = [SOURCE_HEADER, *lines]
    path = Path(tempfile.mkdtemp()) / "2019-Oct.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return parse_file(spark, path, month)


def test_a_valid_line_is_typed_exactly(spark):
    events, rejected = parse(spark, [SOURCE_HEADER, GOOD])
    assert rejected.count() == 0
    assert events.schema == BRONZE_EVENTS_SCHEMA or [f.dataType for f in events.schema] == [
        f.dataType for f in BRONZE_EVENTS_SCHEMA
    ]
    row = events.collect()[0]
    assert row.event_time.astimezone(UTC) == dt.datetime(2019, 10, 1, 0, 0, 7, tzinfo=UTC)
    assert row.product_id == 1004856
    assert row.category_id == 2053013555631882655  # int64, not a rounded double
    assert row.price == Decimal("130.76")
    assert row.user_id == 543272936
    assert row.month == OCT
    assert row._source_file == "2019-Oct.csv"
    assert row._ingested_at.astimezone(UTC) == INGESTED


def test_event_time_is_the_same_utc_instant_whatever_the_session_time_zone(spark):
    previous = spark.conf.get("spark.sql.session.timeZone")
    try:
        spark.conf.set("spark.sql.session.timeZone", "America/Los_Angeles")
        events, _ = parse(spark, ["2019-10-01 00:30:00 UTC,view,1,2,,,1.00,3,s"])
        row = events.selectExpr("unix_seconds(event_time) AS s").collect()[0]
        funnel = daily_funnel(clean_events(events)).collect()
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)
    assert row.s == int(dt.datetime(2019, 10, 1, 0, 30, tzinfo=UTC).timestamp())
    # 00:30 UTC is still 30 September in Los Angeles; the funnel counts it on the UTC day.
    assert [r.date for r in funnel] == [dt.date(2019, 10, 1)]


def test_empty_fields_become_nulls_and_quoted_commas_are_kept(spark):
    line = '2019-10-01 00:00:07 UTC,view,1,2,,"acme, inc",1.00,,'
    events, rejected = parse(spark, [line])
    assert rejected.count() == 0
    row = events.collect()[0]
    assert row.category_code is None and row.user_id is None and row.user_session is None
    assert row.brand == "acme, inc"


def test_bom_header_and_blank_lines_are_not_data(spark):
    events, rejected = parse(spark, ["\ufeff" + SOURCE_HEADER, "", "  ", GOOD])
    assert events.count() == 1 and rejected.count() == 0


def test_doubled_quotes_inside_a_quoted_field_are_one_quote(spark):
    line = '2019-10-01 00:00:07 UTC,view,1,2,,"the ""best"", brand",1.00,3,s'
    events, rejected = parse(spark, [line])
    assert rejected.count() == 0
    assert events.collect()[0].brand == 'the "best", brand'


def test_a_line_that_is_not_utf8_is_rejected_not_mangled(spark, tmp_path):
    path = tmp_path / "2019-Oct.csv"
    path.write_bytes(
        (SOURCE_HEADER + "\n" + GOOD + "\n").encode()
        + GOOD.replace("samsung", "sams\xfcng").encode("latin-1")
        + b"\n"
    )
    events, rejected = parse_file(spark, path)
    rejected = rejected.collect()
    assert [r.brand for r in events.collect()] == ["samsung"]
    assert len(rejected) == 1 and "not valid UTF-8" in rejected[0].reason
    assert "sams\ufffdng" in rejected[0].line  # kept, as a valid string


def test_only_the_first_line_of_each_file_is_taken_as_its_header(spark, tmp_path):
    """A header line further down (two files concatenated) is a rejected line, also when the file
    is read as many splits and when several files' lines are unioned as in a multi-month run."""
    files = []
    for name, repeat_at in (("2019-Oct.csv", 700), ("2019-Nov.csv", None)):
        lines = [SOURCE_HEADER]
        for i in range(1500):
            if i == repeat_at:
                lines.append(SOURCE_HEADER)
            lines.append(GOOD.replace("543272936", str(i)))
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        files.append(path)
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "16k")  # ~15 splits per file
    try:
        frames = [parse_file(spark, p) for p in files]
        assert spark.read.text(str(files[0])).rdd.getNumPartitions() > 5
        assert read_source(spark, files[0]).rdd.getNumPartitions() > 5
        events = frames[0][0].unionByName(frames[1][0]).count()
        rejected = frames[0][1].unionByName(frames[1][1]).collect()
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", previous)
    assert events == 3000
    assert [(r._source_file, r.line) for r in rejected] == [("2019-Oct.csv", SOURCE_HEADER)]
    assert "header line repeated" in rejected[0].reason


MALFORMED = {
    GOOD.rsplit(",", 1)[0]: "expected 9 fields, found 8",
    GOOD + ",extra": "expected 9 fields, found 10",
    "bad line": "expected 9 fields, found 1",
    GOOD.replace("2019-10-01 00:00:07 UTC", "2019-10-01T00:00:07"): "event_time is not",
    GOOD.replace("2019-10-01 00:00:07 UTC", ""): "missing event_time",
    GOOD.replace("2019-10-01 00:00:07 UTC", "2019-11-01 00:00:00 UTC"): "outside month 2019-10",
    GOOD.replace(",view,", ",click,"): "unknown event_type: 'click'",
    GOOD.replace(",1004856,", ",10x4856,"): "product_id is not an integer: '10x4856'",
    GOOD.replace(",2053013555631882655,", ",1e18,"): "category_id is not an integer",
    GOOD.replace(",130.76,", ",abc,"): "price is not a non-negative amount",
    GOOD.replace(",130.76,", ",-1.00,"): "price is not a non-negative amount",
    GOOD.replace(",130.76,", ",1.234,"): "price is not a non-negative amount",
    GOOD.replace(",130.76,", ",10000000000.00,"): "price is not a non-negative amount",
    GOOD.replace(",543272936,", ",5.5,"): "user_id is not an integer: '5.5'",
}


def test_malformed_lines_are_rejected_with_their_raw_text_and_reason(spark):
    events, rejected = parse(spark, [GOOD, *MALFORMED, GOOD])
    assert events.count() == 2
    rows = {r.line: r for r in rejected.collect()}
    assert set(rows) == set(MALFORMED)
    for line, reason in MALFORMED.items():
        assert reason in rows[line].reason, (line, rows[line].reason)
        assert rows[line].month == OCT and rows[line]._source_file == "2019-Oct.csv"
    assert [f.name for f in rejected.schema] == [f.name for f in BRONZE_REJECTED_SCHEMA]


def _event(time, kind, user=1, brand="apple", price="10.00", product=1, session="s"):
    return Row(
        event_time=dt.datetime.fromisoformat(time).replace(tzinfo=UTC),
        event_type=kind,
        product_id=product,
        category_id=2053013555631882655,
        category_code="electronics.smartphone",
        brand=brand,
        price=Decimal(price),
        user_id=user,
        user_session=session,
        month=OCT,
        _source_file="2019-Oct.csv",
        _ingested_at=INGESTED,
    )


def bronze(spark, rows):
    return spark.createDataFrame(rows, BRONZE_EVENTS_SCHEMA)


def test_silver_drops_null_users_and_exact_duplicates_only(spark):
    rows = [
        _event("2019-10-01 10:00:00", "view", user=1),
        _event("2019-10-01 10:00:00", "view", user=1),  # exact duplicate
        _event("2019-10-01 10:00:00", "view", user=1, session="other"),  # differs in one column
        _event("2019-10-01 11:00:00", "view", user=None),
    ]
    silver = clean_events(bronze(spark, rows)).collect()
    assert len(silver) == 2
    assert {r.user_session for r in silver} == {"s", "other"}
    assert all(r.user_id is not None for r in silver)


@pytest.mark.parametrize("constants", [False, True])
def test_silver_holds_each_users_events_together_in_time_order(spark, constants):
    # Users and times interleaved, as a month's file has them, with a duplicate and a null user.
    rows = [
        _event(f"2019-10-{day:02d} {hour:02d}:00:00", "view", user=user)
        for day in (3, 1, 2)
        for hour in (5, 1)
        for user in (7, 2, 9, 4, 2, None)
    ]
    frame = bronze(spark, rows)
    month_constants = (
        {OCT: {"_source_file": "2019-Oct.csv", "_ingested_at": INGESTED}} if constants else None
    )
    silver = clean_events(frame, month_constants, partitions=3)
    partitions = silver.rdd.glom().collect()
    assert len(partitions) == 3
    users_seen = []
    for rows_of_partition in partitions:
        order = [(r.user_id, r.event_time) for r in rows_of_partition]
        # Within a partition (a file of silver), sorted by user and then time ...
        assert order == sorted(order)
        users_seen += sorted({user for user, _ in order})
    # ... and each user in one partition only, every distinct event once.
    assert sorted(users_seen) == [2, 4, 7, 9]
    assert sum(len(p) for p in partitions) == 4 * 6


def test_silver_puts_back_the_bookkeeping_columns_it_kept_out_of_the_shuffle(spark):
    nov = dt.date(2019, 11, 1)
    november = Row(
        **{
            **_event("2019-11-01 00:00:01", "view").asDict(),
            "month": nov,
            "_source_file": "2019-11.csv.gz",
        }
    )
    rows = [
        _event("2019-10-01 00:00:01", "view"),
        _event("2019-10-01 00:00:01", "view"),
        _event("2019-10-02 00:00:01", "cart"),
        november,
    ]
    frame = bronze(spark, rows)
    constants = {
        OCT: {"_source_file": "2019-Oct.csv", "_ingested_at": INGESTED},
        nov: {"_source_file": "2019-11.csv.gz", "_ingested_at": INGESTED},
    }
    with_constants = clean_events(frame, constants).collect()
    assert sorted(with_constants) == sorted(clean_events(frame).collect())
    assert sorted((r.month, r._source_file) for r in with_constants) == [
        (OCT, "2019-Oct.csv"),
        (OCT, "2019-Oct.csv"),
        (nov, "2019-11.csv.gz"),
    ]


def test_revenue_counts_purchases_only_exactly_and_keeps_null_brand(spark):
    rows = [
        _event("2019-10-01 10:00:00", "view", brand="apple", price="999.99"),
        _event("2019-10-01 10:00:01", "cart", brand="apple", price="999.99"),
        _event("2019-10-01 10:00:02", "purchase", brand="apple", price="0.10"),
        _event("2019-10-01 10:00:03", "purchase", brand="apple", price="0.20"),
        _event("2019-10-01 10:00:04", "purchase", brand=None, price="5.05"),
        _event("2019-10-01 10:00:05", "purchase", brand=None, price="0.00"),
        _event("2019-10-01 10:00:06", "view", brand="samsung", price="100.00"),
    ]
    revenue = revenue_by_brand(bronze(spark, rows))
    assert [f.dataType for f in revenue.schema] == [
        f.dataType for f in GOLD_REVENUE_BY_BRAND_SCHEMA
    ]
    got = {r.brand: (r.total_revenue, r.purchases) for r in revenue.collect()}
    # 0.10 + 0.20 is exactly 0.30 in DECIMAL (a double sum would give 0.30000000000000004).
    assert got == {"apple": (Decimal("0.30"), 2), None: (Decimal("5.05"), 2)}


def test_daily_funnel_counts_each_kind_users_and_conversion(spark):
    rows = [
        _event("2019-10-01 10:00:00", "view", user=1),
        _event("2019-10-01 11:00:00", "view", user=2),
        _event("2019-10-01 12:00:00", "view", user=2, product=2),
        _event("2019-10-01 12:30:00", "cart", user=2),
        _event("2019-10-01 13:00:00", "purchase", user=2),
        _event("2019-10-02 00:00:00", "cart", user=3),
    ]
    funnel = daily_funnel(bronze(spark, rows))
    assert [f.dataType for f in funnel.schema] == [f.dataType for f in GOLD_DAILY_FUNNEL_SCHEMA]
    got = {r.date: r for r in funnel.collect()}
    first, second = got[dt.date(2019, 10, 1)], got[dt.date(2019, 10, 2)]
    assert (first.views, first.carts, first.purchases, first.distinct_users) == (3, 1, 1, 2)
    assert first.conversion == pytest.approx(1 / 3)
    assert (second.views, second.carts, second.purchases, second.distinct_users) == (0, 1, 0, 1)
    assert second.conversion is None


def test_daily_funnel_counts_events_without_a_user_but_not_as_a_user(spark):
    # Silver has no such events; the transform alone still counts them as countDistinct would.
    rows = [
        _event("2019-10-01 10:00:00", "view", user=1),
        _event("2019-10-01 10:05:00", "view", user=None),
        _event("2019-10-01 10:06:00", "purchase", user=None),
        _event("2019-10-01 11:00:00", "view", user=1, product=2),
    ]
    (day,) = daily_funnel(bronze(spark, rows)).collect()
    assert (day.views, day.carts, day.purchases, day.distinct_users) == (3, 0, 1, 1)


def test_daily_funnel_of_two_months_gives_each_day_the_month_its_rows_belong_to(spark):
    # Grouped by day only: the month comes from the day's rows, and a user active on both days
    # counts once on each.
    rows = [
        _event("2019-10-31 23:59:59", "view", user=1),
        _event("2019-10-31 22:00:00", "purchase", user=2),
        _event("2019-11-01 00:00:00", "view", user=1).asDict() | {"month": dt.date(2019, 11, 1)},
        _event("2019-11-01 08:00:00", "cart", user=1).asDict() | {"month": dt.date(2019, 11, 1)},
    ]
    rows = [Row(**r) if isinstance(r, dict) else r for r in rows]
    got = {
        r.date: (r.month, r.views, r.carts, r.purchases, r.distinct_users)
        for r in daily_funnel(bronze(spark, rows)).collect()
    }
    assert got == {
        dt.date(2019, 10, 31): (dt.date(2019, 10, 1), 1, 0, 1, 2),
        dt.date(2019, 11, 1): (dt.date(2019, 11, 1), 1, 1, 0, 1),
    }


def test_a_large_month_is_de_duplicated_in_more_partitions_and_to_the_same_result(spark):
    # The session's default while it keeps partitions small; one per 750,000 rows past it.
    assert dedup_partitions(5_000_000, default=8) is None
    assert dedup_partitions(6_000_000, default=8) is None
    assert dedup_partitions(6_000_001, default=8) == 9
    assert dedup_partitions(42_448_764, default=8) == 57
    assert dedup_partitions(42_448_764, default=200) is None

    rows = [
        _event("2019-10-01 10:00:00", "view", user=1),
        _event("2019-10-01 10:00:00", "view", user=1),  # an exact duplicate
        _event("2019-10-02 10:00:00", "cart", user=2),
        _event("2019-10-03 10:00:00", "view", user=None),
    ]
    frame = bronze(spark, rows)
    spread = shuffled_for_dedup(frame, 5)
    assert spread.rdd.getNumPartitions() == 5
    # The session's default, which adaptive execution coalesces: a small month, one reduce task.
    default = shuffled_for_dedup(frame, None)
    assert default.rdd.getNumPartitions() == 1
    key = ["event_time", "event_type", "user_id", "month", "_copies"]
    expected = sorted(grouped_events(frame).select(key).collect())
    assert sorted(grouped_events(frame, partitions=5).select(key).collect()) == expected
    assert grouped_events(frame, partitions=5).rdd.getNumPartitions() == 5
    assert sorted(r["_copies"] for r in expected) == [1, 2]
    # Rows without a user are not shuffled at all.
    assert default.where("user_id IS NULL").count() == 0


def _plan(frame) -> str:
    return frame._jdf.queryExecution().executedPlan().toString()


def _exchanges(frame) -> int:
    return _plan(frame).count("Exchange ")


@pytest.mark.parametrize("constants", [False, True])
def test_a_spread_month_is_shuffled_once_however_its_month_column_is_made(spark, constants):
    from pyspark.sql import functions as F

    rows = [
        _event("2019-10-01 10:00:00", "view", user=1),
        _event("2019-10-01 10:00:00", "view", user=1),
        _event("2019-11-02 10:00:00", "cart", user=2),
    ]
    read = bronze(spark, rows)
    november = bronze(
        spark,
        [
            Row(**{**r.asDict(), "event_time": r.event_time + dt.timedelta(days=31)})
            for r in rows
        ],
    )
    month_constants = None
    if constants:
        month_constants = {
            m: {"_source_file": "f.csv", "_ingested_at": dt.datetime(2020, 1, 1)}
            for m in (dt.date(2019, 10, 1), dt.date(2019, 11, 1))
        }
    # As the IO manager reads one month (a literal month column), and two months unioned.
    one_month = read.withColumn("month", F.lit(dt.date(2019, 10, 1)))
    two_months = one_month.unionByName(
        november.withColumn("month", F.lit(dt.date(2019, 11, 1)))
    )
    for frame, partitions in [(f, p) for f in (one_month, two_months) for p in (3, None)]:
        events = grouped_events(frame, month_constants, partitions)
        # One shuffle, and one aggregation after it, streaming over the sorted partition: the
        # partial and final phases run as one, and no hash map holds the month's events.
        assert _exchanges(events) == 1, _plan(events)
        assert _plan(events).count("SortAggregate(") == 1, _plan(events)
        assert "HashAggregate(" not in _plan(events), _plan(events)
        assert sorted((r["month"].month, r["_copies"]) for r in events.collect()) == (
            [(10, 1), (10, 2)] if frame is one_month else [(10, 1), (10, 2), (11, 1), (11, 2)]
        )


def test_an_event_bronze_holds_under_two_months_is_kept_once_and_flagged(spark):
    from pyspark.sql import functions as F

    rows = [_event("2019-10-01 10:00:00", "view"), _event("2019-10-02 10:00:00", "view")]
    october = bronze(spark, rows).withColumn("month", F.lit(OCT))
    # The same first event again under November: only a table changed by hand can hold it.
    november = bronze(spark, rows[:1]).withColumn("month", F.lit(dt.date(2019, 11, 1)))
    events = grouped_events(october.unionByName(november)).collect()
    assert sorted((r["month"], r["_last_month"], r["_copies"]) for r in events) == [
        (OCT, OCT, 1),
        (OCT, dt.date(2019, 11, 1), 2),
    ]
