"""Everything read from a Delta table's transaction log, and only from it.

The log is the single source of truth of what a table holds (see `medallion_assets.delta.commit`),
and it says more than which files are live: each add action carries its file's partition value,
and, written at commit from the Parquet footer, its size, row count and per-column min, max and
null counts. Counting a month's rows or nulls, or telling whether a column holds one value per
month, therefore reads a few kilobytes of JSON, never a data file.

Reading it is kept here, in one module, so that the layout of delta-rs's add-action table (the
``partition.<column>``, ``num_records``, ``null_count.<column>`` columns of
``get_add_actions(flatten=True)``) and of the commit files in ``_delta_log`` is known in one
place: the writer's conflict check, the warehouse's per-month facts, the IO manager's row counts
and the maintenance job all ask this module.

Months are named by their partition keys (``YYYY-MM``) on the way in and out; the tables hold the
month's first day (``YYYY-MM-01``), converted by `medallion_assets.partitions`.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from medallion_assets.partitions import month_value

LOG_DIR = "_delta_log"

# The version a write "started from" when the table did not exist yet.
NO_TABLE = -1

# The partition of an add or remove action that names none it can be placed in (a whole-table
# write, or an action without partition values): it counts as touching every partition.
ANY_PARTITION = "*"


def filesystem_for(table_uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the table's path on it (local paths, file://, s3://, gs://, ...)."""
    if "://" not in table_uri:
        return pafs.LocalFileSystem(), table_uri
    return pafs.FileSystem.from_uri(table_uri)


# -- the table and its snapshot ----------------------------------------------------------------
def open_table(
    table_uri: str, storage_options: Mapping[str, str] | None = None
) -> DeltaTable | None:
    """The table's current snapshot, or None when it has never been written."""
    try:
        return DeltaTable(table_uri, storage_options=dict(storage_options or {}))
    except TableNotFoundError:
        return None


def table_version(table_uri: str, storage_options: Mapping[str, str] | None = None) -> int:
    """The table's current version, `NO_TABLE` when there is none. A writer records it before it
    starts writing so that its commit can tell what other writers committed meanwhile."""
    table = open_table(table_uri, storage_options)
    return NO_TABLE if table is None else table.version()


def table_arrow_schema(table: DeltaTable) -> pa.Schema:
    return pa.schema(table.schema().to_arrow())


def find_tables(root_uri: str, max_depth: int) -> list[str]:
    """Paths (relative to ``root_uri``, '/'-separated) of the Delta tables under it: directories
    holding a ``_delta_log``, at most ``max_depth`` levels down. Does not descend into a table,
    nor into ``_``/``.`` directories."""
    fs, root = filesystem_for(root_uri)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return []
    tables: list[str] = []
    pending = [(root, 0)]
    while pending:
        directory, depth = pending.pop()
        children = fs.get_file_info(pafs.FileSelector(directory, recursive=False))
        names = {c.base_name for c in children if c.type == pafs.FileType.Directory}
        if LOG_DIR in names:
            tables.append(posixpath.relpath(directory, root))
            continue
        if depth < max_depth:
            pending += [
                (posixpath.join(directory, name), depth + 1)
                for name in names
                if not name.startswith(("_", "."))
            ]
    return sorted(tables)


# -- the snapshot's files ------------------------------------------------------------------------
class LiveFile(NamedTuple):
    """One file of the snapshot, as its add action describes it."""

    path: str  # relative to the table root
    partition: str | None  # its partition value as text (``YYYY-MM-01``), None when unpartitioned
    num_records: int | None  # None when the add action carries no statistics


def _add_actions(table: DeltaTable) -> pa.Table:
    return pa.table(table.get_add_actions(flatten=True))


def _column(actions: pa.Table, name: str) -> list:
    """A column of the add actions, all None when no file has it (a statistic never written)."""
    if name in actions.column_names:
        return actions.column(name).to_pylist()
    return [None] * actions.num_rows


def _partition_values(actions: pa.Table, partition_column: str) -> list[str | None]:
    """Each file's partition value as the log and the directory names write it: delta-rs hands a
    DATE partition back as a date."""
    return [
        part.isoformat() if isinstance(part, dt.date) else part
        for part in actions.column(f"partition.{partition_column}").to_pylist()
    ]


def live_files(
    table: DeltaTable, partition_column: str | None = None, values: Iterable[str] | None = None
) -> list[LiveFile]:
    """The snapshot's files, optionally only those whose partition value is in ``values``."""
    actions = _add_actions(table)
    paths = actions.column("path").to_pylist()
    records = _column(actions, "num_records")
    if partition_column is None:
        return [LiveFile(p, None, r) for p, r in zip(paths, records, strict=True)]
    wanted = set(values) if values is not None else None
    parts = _partition_values(actions, partition_column)
    return [
        LiveFile(path, part, rec)
        for path, part, rec in zip(paths, parts, records, strict=True)
        if wanted is None or part in wanted
    ]


def live_file_sizes(table: DeltaTable) -> dict[str, int]:
    """Size in bytes of each of the snapshot's files, by path."""
    actions = _add_actions(table)
    return dict(
        zip(actions.column("path").to_pylist(), _column(actions, "size_bytes"), strict=True)
    )


def row_count(table: DeltaTable) -> int:
    """The snapshot's rows, from its files' numRecords."""
    return sum(f.num_records or 0 for f in live_files(table))


# -- per-month facts ----------------------------------------------------------------------------
def month_row_counts(
    table: DeltaTable | None, months: Sequence[str], *, partition_column: str
) -> dict[str, int]:
    """Rows per month key, from each file's numRecords. A month without files, or a table that
    does not exist (None), counts 0."""
    counts = dict.fromkeys(months, 0)
    if table is None:
        return counts
    wanted = {month_value(m): m for m in months}
    for live in live_files(table, partition_column, wanted):
        counts[wanted[live.partition]] += live.num_records or 0
    return counts


def month_null_counts(
    table: DeltaTable | None, column: str, months: Sequence[str], *, partition_column: str
) -> dict[str, int | None]:
    """Nulls of ``column`` per month key, summed from the files' nullCount statistics; None for a
    month with a file whose statistics do not say."""
    counts: dict[str, int | None] = dict.fromkeys(months, 0)
    if table is None:
        return counts
    wanted = {month_value(m): m for m in months}
    actions = _add_actions(table)
    rows = _column(actions, "num_records")
    nulls = _column(actions, f"null_count.{column}")
    parts = _partition_values(actions, partition_column)
    for part, records, count in zip(parts, rows, nulls, strict=True):
        # A zero-row file (a month written empty) has no column statistics, and no nulls.
        if part not in wanted or records == 0:
            continue
        key = wanted[part]
        previous = counts[key]
        counts[key] = None if count is None or previous is None else previous + count
    return counts


def month_constants(
    table: DeltaTable | None,
    columns: Sequence[str],
    months: Sequence[str],
    *,
    partition_column: str,
) -> dict[str, dict[str, object]] | None:
    """For each month key, the one value each of ``columns`` holds in every row, read from the
    files' min/max/null statistics; None unless every such column is provably constant (same min
    and max in every file, no null) in every month that has rows, and None for a table that does
    not exist.

    A month without rows maps its columns to None. The log keeps timestamps to the millisecond
    and rounds a maximum up, so a value it cannot hold exactly is never constant.
    """
    if table is None:
        return None
    actions = _add_actions(table)
    wanted = {month_value(m): m for m in months}
    found: dict[str, dict[str, set]] = {m: {c: set() for c in columns} for m in months}
    parts = _partition_values(actions, partition_column)
    rows = _column(actions, "num_records")
    for column in columns:
        stats = [f"{kind}.{column}" for kind in ("min", "max", "null_count")]
        if any(name not in actions.column_names for name in stats):
            return None
        lows, highs, nulls = (_column(actions, name) for name in stats)
        for part, records, low, high, null in zip(parts, rows, lows, highs, nulls, strict=True):
            if part not in wanted or not records:
                continue
            if low is None or low != high or null:
                return None
            found[wanted[part]][column].add(low)
    if any(len(v) > 1 for values in found.values() for v in values.values()):
        return None
    return {
        month: {c: next(iter(v), None) for c, v in values.items()}
        for month, values in found.items()
    }


# -- commits -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommitChanges:
    """What one commit did to the table's rows, as its entry in the log says."""

    version: int
    info: Mapping[str, object]  # its commitInfo: operation, custom metadata (dagster_run_id, ...)
    # Partition values whose rows it added or removed (`ANY_PARTITION` for a change that cannot
    # be placed in one); empty for a commit that changed no data (compaction, vacuum).
    partitions: frozenset[str]


def commit_infos(table: DeltaTable) -> list[dict[str, object]]:
    """Each commit's commitInfo (operation, timestamp, custom metadata), newest first; a log whose
    old commit files were cleaned up after a checkpoint no longer has theirs."""
    return table.history()


def commit_actions(fs: pafs.FileSystem, table_path: str, version: int) -> list[dict]:
    """The actions of one commit, read from its JSON file in ``_delta_log``."""
    path = posixpath.join(table_path, LOG_DIR, f"{version:020d}.json")
    with fs.open_input_stream(path) as handle:
        text = handle.read().decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def touched_partition(action: Mapping[str, object], partition_column: str | None) -> str:
    """The partition value whose rows an add/remove action changes (`ANY_PARTITION` for a
    whole-table write or when it cannot be told)."""
    if partition_column is None:
        return ANY_PARTITION
    values = action.get("partitionValues")
    if isinstance(values, Mapping) and partition_column in values:
        value = values[partition_column]
        return "<null>" if value is None else str(value)
    prefix = f"{partition_column}="
    for part in str(action.get("path", "")).split("/")[:-1]:
        if part.startswith(prefix):
            return part[len(prefix):]
    return ANY_PARTITION


def commit_changes(table_uri: str, version: int, partition_column: str | None) -> CommitChanges:
    """The rows commit ``version`` of the table changed, by partition; an `OSError` when its
    entry in the log cannot be read (a checkpoint may have cleaned it up)."""
    fs, table_path = filesystem_for(table_uri)
    info: Mapping[str, object] = {}
    touched: set[str] = set()
    for action in commit_actions(fs, table_path, version):
        if "commitInfo" in action:
            info = action["commitInfo"]
        for kind in ("add", "remove"):
            body = action.get(kind)
            if isinstance(body, Mapping) and body.get("dataChange", True):
                touched.add(touched_partition(body, partition_column))
    return CommitChanges(version=version, info=info, partitions=frozenset(touched))
