"""Monthly partitions and the mapping between partition keys, months and landing file names.

The partition key is what the notebook this project replaces took from its ``month`` dropdown
widget. Keys are ``YYYY-MM`` (``2019-10``); every table stores the month as a DATE column
``month`` holding the first day of the month. Keys are validated here, before anything builds a
path from them, so a malformed key can never name a file outside the landing directory.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Iterable

from dagster import MonthlyPartitionsDefinition, TimeWindow

PARTITION_KEY_FORMAT = "%Y-%m"
FIRST_MONTH = "2019-10"

monthly_partitions = MonthlyPartitionsDefinition(start_date=FIRST_MONTH, fmt=PARTITION_KEY_FORMAT)

# ASCII digits only (\d also matches other scripts' digits) and nothing after the month
# (`$` would accept a trailing newline): the key goes verbatim into file names.
_KEY_RE = re.compile(r"\A([0-9]{4})-([0-9]{2})\Z")
_MONTH_ABBR = {abbr: number for number, abbr in enumerate(calendar.month_abbr) if abbr}
# `YYYY-Mon.csv` as published, or `YYYY-MM.csv`; either optionally gzip-compressed.
_FILE_RE = re.compile(r"^(?P<year>\d{4})-(?P<month>[A-Z][a-z]{2}|\d{2})\.csv(?P<gz>\.gz)?$")


class InvalidPartitionKey(ValueError):
    """A partition key that is not a month of the partitions definition."""


def month_start(partition_key: str) -> dt.date:
    """The first day of the month a partition key names; raises `InvalidPartitionKey` otherwise."""
    match = _KEY_RE.match(partition_key) if isinstance(partition_key, str) else None
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise InvalidPartitionKey(
            f"Invalid month partition key {partition_key!r}: expected YYYY-MM, e.g. {FIRST_MONTH}."
        )
    month = dt.date(int(match.group(1)), int(match.group(2)), 1)
    if month < dt.date(2019, 10, 1):
        raise InvalidPartitionKey(
            f"Month partition key {partition_key!r} is before the first partition {FIRST_MONTH}."
        )
    return month


def partition_key_for(month: dt.date) -> str:
    return month.strftime(PARTITION_KEY_FORMAT)


def months_in_window(window: TimeWindow) -> list[dt.date]:
    """Every month whose first day lies in ``[window.start, window.end)``."""
    months = []
    current = dt.date(window.start.year, window.start.month, 1)
    end = window.end.date() if isinstance(window.end, dt.datetime) else window.end
    while current < end:
        months.append(current)
        current = next_month(current)
    return months


def next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def candidate_file_names(partition_key: str) -> list[str]:
    """File names a month's CSV may have in the landing dir, in order of preference."""
    month = month_start(partition_key)
    stems = [f"{month.year}-{calendar.month_abbr[month.month]}", partition_key]
    return [f"{stem}{suffix}" for stem in stems for suffix in (".csv", ".csv.gz")]


def partition_key_from_file_name(name: str) -> str | None:
    """The partition key a landing file name stands for, or None when the name is not one of ours."""
    match = _FILE_RE.match(name)
    if not match:
        return None
    month_part = match.group("month")
    month_number = int(month_part) if month_part.isdigit() else _MONTH_ABBR.get(month_part)
    if not month_number or not 1 <= month_number <= 12:
        return None
    return f"{match.group('year')}-{month_number:02d}"


def keys_of(months: Iterable[dt.date]) -> list[str]:
    return [partition_key_for(m) for m in months]
