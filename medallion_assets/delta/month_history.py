"""What a table held for each month before, read from its Delta log: the months it holds and their
rows, and the files of the months a write is about to replace.

A month's checks compare it with the months built before it, and a rebuilt month's
materialization compares it with the version it replaces. Both would be a full scan if the
figures came from the tables; the log gives each month's rows (numRecords of its files) and
silver's recorded totals (`month_summaries`) for a few kilobytes of JSON, and names the Parquet
files of a month's previous version, which a rewrite removes from the snapshot but leaves on
storage until a vacuum.
"""

from __future__ import annotations

import posixpath
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deltalake import DeltaTable

from medallion_assets.delta.log import live_files
from medallion_assets.partitions import key_of_month_value, month_value

# How many built months before a month its median is taken over: a year, so that a slow trend
# moves the median with it, and a single odd month among them does not.
WINDOW = 12
# Fewer earlier months than this give no median worth comparing with: one odd first month would
# decide the next one's result.
MIN_HISTORY = 3


def month_rows(table: DeltaTable | None, partition_column: str) -> dict[str, int]:
    """Rows per month key of every month the table holds (a month written empty counts 0)."""
    counts: dict[str, int] = {}
    if table is None:
        return counts
    for live in live_files(table, partition_column):
        if live.partition is None:
            continue
        month = key_of_month_value(live.partition)
        counts[month] = counts.get(month, 0) + (live.num_records or 0)
    return counts


def month_files(
    table: DeltaTable | None, table_uri: str, partition_column: str, months: Sequence[str]
) -> dict[str, list[str]]:
    """For each of ``months`` the table holds, the full paths of its files in the snapshot: what
    a write of those months is about to replace. A month the table never held is left out."""
    if table is None:
        return {}
    wanted = {month_value(m): m for m in months}
    found: dict[str, list[str]] = {}
    for live in live_files(table, partition_column, wanted):
        found.setdefault(wanted[live.partition], []).append(posixpath.join(table_uri, live.path))
    return found


@dataclass(frozen=True)
class Earlier:
    """The months built before one month, and the median of their figures."""

    months: tuple[str, ...]
    median: float | None  # None when fewer than `MIN_HISTORY` months were built before


def earlier(values: Mapping[str, float], month: str, window: int = WINDOW) -> Earlier:
    """The (at most ``window``) latest months of ``values`` before ``month``, and their median
    unless there are fewer than `MIN_HISTORY`."""
    before = sorted(m for m in values if m < month)[-window:]
    if len(before) < MIN_HISTORY:
        return Earlier(tuple(before), None)
    return Earlier(tuple(before), float(statistics.median(float(values[m]) for m in before)))
