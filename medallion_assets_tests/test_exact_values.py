"""A value is read exactly as written, or its line is rejected.

Spark's typed parsing normalises some values silently: its CSV reader drops the commas of a
DECIMAL ("12,50" becomes 1250.00), takes "+5", "007", "1e3" and digits of other scripts, rounds
decimals the type cannot hold, and a time pattern with a zone letter converts a time written in
any zone. Each case below is one field of an otherwise good line, put through bronze's two passes
on the real Spark session; docs/checks.md lists the same decisions with the reasons for them.

All the cases share one file (one parse, so the suite stays fast), and each test looks up its own
line: every line must come out either accepted, with the value given here, or rejected, with the
reason given here, and never both.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from medallion_assets.schema import SOURCE_COLUMNS
from medallion_assets_tests.test_transforms import GOOD, parse

UTC = dt.timezone.utc
PRICE_REASON = "price is not a non-negative amount with at most 2 decimals: "
TIME_REASON = "event_time is not 'YYYY-MM-DD HH:MM:SS UTC': "


class Rejected:
    """A case whose line must be rejected with exactly this reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Rejected({self.reason!r})"


def price(text: str) -> Rejected:
    return Rejected(PRICE_REASON + f"'{text}'")


def integer(column: str, text: str) -> Rejected:
    return Rejected(f"{column} is not an integer: '{text}'")


def time(text: str) -> Rejected:
    return Rejected(TIME_REASON + f"'{text}'")


def at(seconds: int) -> dt.datetime:
    return dt.datetime(2019, 10, 1, tzinfo=UTC) + dt.timedelta(seconds=seconds)


# (column, the field as written in the file, what bronze must make of it). A field written in
# quotes is unquoted by CSV first: the reason quotes the field's text, not its quotes.
CASES: list[tuple[str, str, object]] = [
    # -- price: DECIMAL(12,2), written as digits, optionally a point and one or two decimals
    ("price", "130.76", Decimal("130.76")),
    ("price", "1.5", Decimal("1.50")),
    ("price", "1", Decimal("1.00")),
    ("price", "0", Decimal("0.00")),
    ("price", "0.50", Decimal("0.50")),
    ("price", "9999999999.99", Decimal("9999999999.99")),
    ("price", '"10.50"', Decimal("10.50")),
    ("price", '"12,50"', price("12,50")),  # a decimal comma: read by Spark as 1250.00
    ("price", '"1,2,3"', price("1,2,3")),  # read by Spark as 123.00
    ("price", '"1,000.00"', price("1,000.00")),  # a grouping comma: read by Spark as 1000.00
    ("price", "+1.50", price("+1.50")),
    ("price", "007.50", price("007.50")),
    ("price", " 1.50", price(" 1.50")),
    ("price", "1.50 ", price("1.50 ")),
    ("price", "1e3", price("1e3")),  # read by Spark as 1000.00
    ("price", "1E+1", price("1E+1")),
    ("price", "NaN", price("NaN")),
    ("price", "Infinity", price("Infinity")),
    ("price", "1.005", price("1.005")),
    ("price", "1.000000001", price("1.000000001")),  # rounded by Spark's reader to 1.00
    ("price", "1.0000", price("1.0000")),
    ("price", "1.", price("1.")),
    ("price", ".5", price(".5")),
    ("price", "-0.00", price("-0.00")),  # read by Spark as 0.00
    ("price", "-1.00", price("-1.00")),
    ("price", "10000000000.00", price("10000000000.00")),
    ("price", "0x10", price("0x10")),
    ("price", "١٢", price("١٢")),  # Arabic-Indic digits: read by Spark as 12.00
    ("price", "１２.５０", price("１２.５０")),  # fullwidth digits: read by Spark as 12.50
    ("price", "1_000", price("1_000")),
    # -- integers: LONG, written as decimal digits, optionally a minus, no leading zero
    ("product_id", "1004856", 1004856),
    ("product_id", "0", 0),
    ("product_id", "-5", -5),
    ("product_id", "9223372036854775807", 9223372036854775807),
    ("product_id", "-9223372036854775808", -9223372036854775808),
    ("product_id", '"77"', 77),
    ("product_id", "+5", integer("product_id", "+5")),  # read by Spark as 5
    ("product_id", "007", integer("product_id", "007")),  # read by Spark as 7
    ("product_id", "-0", integer("product_id", "-0")),
    ("product_id", "1.0", integer("product_id", "1.0")),
    ("product_id", " 12", integer("product_id", " 12")),
    ("product_id", "12 ", integer("product_id", "12 ")),
    ("product_id", "1e3", integer("product_id", "1e3")),
    ("product_id", "0x10", integer("product_id", "0x10")),
    ("product_id", '"1,2"', integer("product_id", "1,2")),
    ("product_id", "9223372036854775808", integer("product_id", "9223372036854775808")),
    ("product_id", "١٢٣", integer("product_id", "١٢٣")),  # read by Spark as 123
    ("product_id", "１２３", integer("product_id", "１２３")),  # read by Spark as 123
    ("product_id", "", integer("product_id", "")),  # required
    ("product_id", "-", integer("product_id", "-")),
    ("product_id", "--5", integer("product_id", "--5")),
    ("product_id", "-05", integer("product_id", "-05")),
    ("product_id", "5-", integer("product_id", "5-")),
    ("product_id", "1 2", integer("product_id", "1 2")),
    ("product_id", "\t12", integer("product_id", "\t12")),
    ("product_id", "12\t", integer("product_id", "12\t")),
    ("product_id", "12a", integer("product_id", "12a")),
    ("category_id", "2053013555631882655", 2053013555631882655),
    ("category_id", "", None),
    ("category_id", "+2053013555631882655", integer("category_id", "+2053013555631882655")),
    ("category_id", "2.05e18", integer("category_id", "2.05e18")),
    ("user_id", "", None),
    ("user_id", "0543272936", integer("user_id", "0543272936")),
    ("user_id", "+543272936", integer("user_id", "+543272936")),
    # -- event_time: 'YYYY-MM-DD HH:MM:SS UTC', a real time of that day
    ("event_time", "2019-10-01 00:00:07 UTC", at(7)),
    ("event_time", "2019-10-01 00:00:07 utc", at(7)),  # the same zone, the same instant
    ("event_time", '"2019-10-01 00:00:07 UTC"', at(7)),
    ("event_time", "2019-10-01 00:00:07", time("2019-10-01 00:00:07")),
    ("event_time", "2019-10-01 02:00:07 CEST", time("2019-10-01 02:00:07 CEST")),
    ("event_time", "2019-10-01 00:00:07 PST", time("2019-10-01 00:00:07 PST")),
    ("event_time", "2019-10-01 00:00:07 GMT", time("2019-10-01 00:00:07 GMT")),
    ("event_time", "2019-10-01 00:00:07 Z", time("2019-10-01 00:00:07 Z")),
    ("event_time", "2019-10-01 00:00:07 Etc/UTC", time("2019-10-01 00:00:07 Etc/UTC")),
    ("event_time", "2019-10-01 00:00:07 +00:00", time("2019-10-01 00:00:07 +00:00")),
    ("event_time", "2019-10-01 00:00:07 UTC+01:00", time("2019-10-01 00:00:07 UTC+01:00")),
    (
        "event_time",
        "2019-10-01 00:00:07 America/Los_Angeles",
        time("2019-10-01 00:00:07 America/Los_Angeles"),
    ),
    ("event_time", "2019-10-01 00:00:07 UTC x", time("2019-10-01 00:00:07 UTC x")),
    ("event_time", "2019-10-01 00:00:07 UTC ", time("2019-10-01 00:00:07 UTC ")),
    ("event_time", " 2019-10-01 00:00:07 UTC", time(" 2019-10-01 00:00:07 UTC")),
    ("event_time", "2019-10-01  00:00:07 UTC", time("2019-10-01  00:00:07 UTC")),
    ("event_time", "2019-10-01T00:00:07 UTC", time("2019-10-01T00:00:07 UTC")),
    ("event_time", "2019-10-1 0:0:7 UTC", time("2019-10-1 0:0:7 UTC")),
    ("event_time", "2019-10-01 00:00:07.5 UTC", time("2019-10-01 00:00:07.5 UTC")),
    ("event_time", "2019-10-01 24:00:00 UTC", time("2019-10-01 24:00:00 UTC")),
    ("event_time", "2019-10-01 23:59:60 UTC", time("2019-10-01 23:59:60 UTC")),
    ("event_time", "2019-10-32 00:00:00 UTC", time("2019-10-32 00:00:00 UTC")),
    # September has 30 days: a lenient parser would make this 1 October, inside the month.
    ("event_time", "2019-09-31 00:00:00 UTC", time("2019-09-31 00:00:00 UTC")),
    ("event_time", "2019-02-30 00:00:00 UTC", time("2019-02-30 00:00:00 UTC")),
    ("event_time", "+2019-10-01 00:00:07 UTC", time("+2019-10-01 00:00:07 UTC")),
    # -- event_type: one of four words, exactly
    ("event_type", "purchase", "purchase"),
    ("event_type", '"view"', "view"),
    ("event_type", "View", Rejected("unknown event_type: 'View'")),
    ("event_type", "VIEW", Rejected("unknown event_type: 'VIEW'")),
    ("event_type", " view", Rejected("unknown event_type: ' view'")),
    ("event_type", "view ", Rejected("unknown event_type: 'view '")),
    # -- free text: kept as written; empty, quoted or not, is null
    ("brand", " samsung", " samsung"),
    ("brand", "samsung ", "samsung "),
    ("brand", "  ", "  "),
    ("brand", '" x "', " x "),
    ("brand", "null", "null"),
    ("brand", "NULL", "NULL"),
    ("brand", "", None),
    ("brand", '""', None),
    ("category_code", '"a,b"', "a,b"),
    ("user_session", "", None),
]


def _line(index: int, column: str, field: str) -> str:
    """`GOOD` with one field written as given, and its ``user_session`` (or, when that is the field
    under test, its ``brand``) naming the case, so that its row can be found when accepted."""
    values = GOOD.split(",")
    tag = "brand" if column == "user_session" else "user_session"
    values[SOURCE_COLUMNS.index(tag)] = f"case-{index}"
    values[SOURCE_COLUMNS.index(column)] = field
    return ",".join(values)


LINES = [_line(i, column, field) for i, (column, field, _) in enumerate(CASES)]


@pytest.fixture(scope="module")
def outcome(spark) -> tuple[dict[str, object], dict[str, str]]:
    """Every case's line through bronze's two passes: accepted rows by case tag, and the reason of
    every rejected line by the line."""
    events, rejected = parse(spark, LINES)
    accepted = {}
    for row in events.collect():
        tag = row.brand if row.user_session is None else row.user_session
        accepted[tag] = row
    reasons = {}
    for row in rejected.collect():
        assert row.line not in reasons, f"rejected twice: {row.line!r}"
        reasons[row.line] = row.reason
    return accepted, reasons


def test_every_line_is_accepted_or_rejected_and_never_both(outcome):
    accepted, reasons = outcome
    assert len(accepted) + len(reasons) == len(LINES)
    assert set(reasons) <= set(LINES)
    for index, line in enumerate(LINES):
        assert (f"case-{index}" in accepted) != (line in reasons), line


@pytest.mark.parametrize(
    ("index", "column", "field", "expected"),
    [(i, *case) for i, case in enumerate(CASES)],
    ids=[f"{column}={field!r}" for column, field, _ in CASES],
)
def test_a_field_is_read_exactly_as_written_or_its_line_is_rejected(
    outcome, index, column, field, expected
):
    accepted, reasons = outcome
    line = LINES[index]
    if isinstance(expected, Rejected):
        assert f"case-{index}" not in accepted, f"accepted as {accepted[f'case-{index}'][column]!r}"
        assert reasons.get(line) == expected.reason
    else:
        assert line not in reasons, reasons[line]
        value = accepted[f"case-{index}"][column]
        if isinstance(value, dt.datetime):
            value = value.astimezone(UTC)
        assert value == expected
        assert type(value) is type(expected)
