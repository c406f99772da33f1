"""Monthly partitions and the mapping between partition keys, months and landing file names.

The partition key is what the notebook this project replaces took from its ``month`` dropdown
widget. Keys are ``YYYY-MM`` (``2019-10``); every table stores the month as a DATE column
``month`` holding the first day of the month. Keys are validated here, before anything builds a
path from them, so a malformed key can never name a file outside the landing directory.
"""

from __future__ import annotations

import datetime as dt
import re

from dagster import MonthlyPartitionsDefinition

PARTITION_KEY_FORMAT = "%Y-%m"
FIRST_MONTH = "2019-10"

monthly_partitions = MonthlyPartitionsDefinition(start_date=FIRST_MONTH, fmt=PARTITION_KEY_FORMAT)

# ASCII digits only (\d also matches other scripts' digits) and nothing after the month
# (`$` would accept a trailing newline): the key goes verbatim into file names.
_KEY_RE = re.compile(r"\A([0-9]{4})-([0-9]{2})\Z")
# The English abbreviations of the published file names. Not `calendar.month_abbr`: that one
# follows the process locale.
MONTH_ABBREVIATIONS = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)
_MONTH_NUMBERS = {abbr: number for number, abbr in enumerate(MONTH_ABBREVIATIONS, start=1)}
# `YYYY-Mon.csv` as published, or `YYYY-MM.csv`; either optionally gzip-compressed.
_FILE_RE = re.compile(r"\A(?P<year>[0-9]{4})-(?P<month>[A-Z][a-z]{2}|[0-9]{2})\.csv(?P<gz>\.gz)?\Z")


class InvalidPartitionKey(ValueError):
    """A partition key that is not a month of the partitions definition."""


def parse_month_key(partition_key: str) -> dt.date:
    """The first day of the month a ``YYYY-MM`` key names, in any year; `InvalidPartitionKey`
    otherwise. The sample-data generator writes any month; the assets take `month_start`."""
    match = _KEY_RE.match(partition_key) if isinstance(partition_key, str) else None
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1:
        raise InvalidPartitionKey(
            f"Invalid month partition key {partition_key!r}: expected YYYY-MM, e.g. {FIRST_MONTH}."
        )
    return dt.date(int(match.group(1)), int(match.group(2)), 1)


def month_start(partition_key: str) -> dt.date:
    """The first day of the month a partition key names; raises `InvalidPartitionKey` for a
    malformed key or a month before the first partition."""
    month = parse_month_key(partition_key)
    if month < dt.date(2019, 10, 1):
        raise InvalidPartitionKey(
            f"Month partition key {partition_key!r} is before the first partition {FIRST_MONTH}."
        )
    return month


def partition_key_for(month: dt.date) -> str:
    return month.strftime(PARTITION_KEY_FORMAT)


def month_value(partition_key: str) -> str:
    """The tables' ``month`` partition value (``YYYY-MM-01``, as Delta's log and directory names
    hold it) of a partition key (``YYYY-MM``)."""
    return month_start(partition_key).isoformat()


def key_of_month_value(value: str | dt.date) -> str:
    """The partition key (``YYYY-MM``) of a ``month`` partition value (``YYYY-MM-01`` or a date)."""
    if isinstance(value, dt.date):
        return partition_key_for(value)
    return partition_key_for(dt.date.fromisoformat(str(value)))


def next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def landing_file_name(month: dt.date, *, published: bool = True, gzip: bool = False) -> str:
    """A month's landing file name: ``2019-Oct.csv`` as published, or ``2019-10.csv``; ``.gz``
    appended when gzip-compressed."""
    if published:
        stem = f"{month.year:04d}-{MONTH_ABBREVIATIONS[month.month - 1]}"
    else:
        stem = f"{month.year:04d}-{month.month:02d}"
    return f"{stem}.csv.gz" if gzip else f"{stem}.csv"


def candidate_file_names(partition_key: str) -> list[str]:
    """File names a month's CSV may have in the landing dir, in order of preference."""
    month = month_start(partition_key)
    return [
        landing_file_name(month, published=published, gzip=gzip)
        for published in (True, False)
        for gzip in (False, True)
    ]


def partition_key_from_file_name(name: str) -> str | None:
    """The partition key a landing file name stands for; None when the name is not one of ours."""
    match = _FILE_RE.match(name)
    if not match:
        return None
    month_part = match.group("month")
    month_number = int(month_part) if month_part.isdigit() else _MONTH_NUMBERS.get(month_part)
    if not month_number or not 1 <= month_number <= 12:
        return None
    return f"{match.group('year')}-{month_number:02d}"

