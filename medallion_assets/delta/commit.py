"""Committing Parquet files that Spark has written as one Delta Lake transaction.

Spark cannot write Delta here (delta-spark's JARs come from Maven), so the work is split: Spark
executors write ordinary Parquet files, and this module, on the driver, turns those files into a
Delta commit with `deltalake` (delta-rs). Nothing here reads row data: file sizes, row counts and
column statistics all come from the Parquet footers, so driver memory grows with the number of
files, never with the number of rows.

The Delta transaction log stays the single source of truth: a file that is not named by a
committed add action does not exist for any reader (Spark via this project, delta-rs, polars,
DuckDB), which is what makes a failed or killed write invisible.

Concurrent writers are arbitrated here rather than by delta-rs's conflict checker, which does not
scope a partition overwrite made with ``create_write_transaction`` to its partitions: it rejects a
writer of another month whenever the winner replaced files ("a concurrent transaction deleted data
this operation read"), yet lets two first writers of the same month both commit, which doubles
that month. So each attempt commits with delta-rs retries off; when another writer took the next
version, the commits made since the write started are read from the log
(`medallion_assets.delta.log.commit_changes`): if none added or removed rows of this write's
partitions the commit is retried on the new snapshot, otherwise the write fails with
`ConcurrentWriteError` and the other writer's data stays as committed.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import posixpath
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions

from medallion_assets.delta.log import (
    ANY_PARTITION,
    NO_TABLE,
    commit_changes,
    open_table,
    table_arrow_schema,
    table_version,
)

# Delta's convention (and Spark's): string statistics are prefixes of at most 32 characters. Rather
# than truncate a max (which would then be below real values), longer strings get no min/max.
_MAX_STAT_STRING = 32


class SchemaMismatchError(ValueError):
    """The data to write does not have the table's schema."""


class ConcurrentWriteError(RuntimeError):
    """Another writer committed rows of the same partitions while this write was in progress.

    Nothing of this write was committed; the table holds the other writer's data, whole."""


@dataclass(frozen=True)
class DataFile:
    """A Parquet file already in the table directory, described for a Delta add action."""

    path: str  # relative to the table root, '/'-separated
    size: int
    partition_values: Mapping[str, str | None]
    modification_time_ms: int
    num_records: int
    stats: Mapping[str, object] = field(default_factory=dict)

    def add_action(self) -> AddAction:
        return AddAction(
            path=self.path,
            size=self.size,
            partition_values=dict(self.partition_values),
            modification_time=self.modification_time_ms,
            data_change=True,
            stats=json.dumps(self.stats, separators=(",", ":")),
        )


def _stat_value(value: object, *, is_max: bool) -> object | None:
    """A Parquet statistic as Delta writes it in JSON, or None when it cannot be represented."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        value = value.astimezone(dt.timezone.utc)
        millis = value.replace(microsecond=(value.microsecond // 1000) * 1000)
        if is_max and millis != value:  # Delta keeps milliseconds: round a max up, never down
            millis += dt.timedelta(milliseconds=1)
        return millis.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis.microsecond // 1000:03d}Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return value if len(value) <= _MAX_STAT_STRING else None
    return None


def footer_stats(metadata: pq.FileMetaData) -> dict[str, object]:
    """Delta file statistics (numRecords, minValues, maxValues, nullCount) from a Parquet footer.

    A column whose statistics are missing in any row group gets no entry, so readers never skip a
    file on the strength of an incomplete min/max.
    """
    arrow_schema = metadata.schema.to_arrow_schema()
    mins: dict[str, object] = {}
    maxs: dict[str, object] = {}
    nulls: dict[str, int] = {}
    for index, column in enumerate(arrow_schema):
        if pa.types.is_nested(column.type):
            continue
        lo = hi = None
        null_count = 0
        complete = True
        for group in range(metadata.num_row_groups):
            stats = metadata.row_group(group).column(index).statistics
            if stats is None or not stats.has_null_count:
                complete = False
                break
            null_count += stats.null_count
            if stats.has_min_max:
                lo = stats.min if lo is None else min(lo, stats.min)
                hi = stats.max if hi is None else max(hi, stats.max)
            elif stats.null_count != metadata.row_group(group).num_rows:
                complete = False
                break
        if not complete:
            continue
        nulls[column.name] = null_count
        lo_value, hi_value = _stat_value(lo, is_max=False), _stat_value(hi, is_max=True)
        if lo_value is not None and hi_value is not None:
            mins[column.name] = lo_value
            maxs[column.name] = hi_value
    return {
        "numRecords": metadata.num_rows,
        "minValues": mins,
        "maxValues": maxs,
        "nullCount": nulls,
    }


def describe_file(
    fs: pafs.FileSystem, table_path: str, relative_path: str, partition_values: Mapping[str, str]
) -> DataFile:
    """Read one file's footer (not its data) and describe it for the transaction log."""
    full_path = posixpath.join(table_path, relative_path)
    info = fs.get_file_info(full_path)
    with fs.open_input_file(full_path) as handle:
        metadata = pq.ParquetFile(handle).metadata
    mtime = info.mtime_ns // 1_000_000 if info.mtime_ns is not None else int(time.time() * 1000)
    return DataFile(
        path=relative_path,
        size=info.size,
        partition_values=dict(partition_values),
        modification_time_ms=mtime,
        num_records=metadata.num_rows,
        stats=footer_stats(metadata),
    )


def _schema_fields(schema: pa.Schema) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in schema]


def nullable(schema: pa.Schema) -> pa.Schema:
    """Every field nullable: a column's nullability follows from Spark's plan, not from intent,
    and would otherwise make two writes of the same table disagree on its schema."""
    return pa.schema([f.with_nullable(True) for f in schema])


def check_no_conflicting_commits(
    table_uri: str,
    started_from: int,
    current: int,
    partition_column: str | None,
    partitions: Sequence[str] | None,
) -> None:
    """Raise `ConcurrentWriteError` if a commit after ``started_from`` (up to ``current``) added or
    removed rows of ``partitions`` (of any partition when None).

    Commits that change no data (compaction, vacuum) do not conflict: an overwrite replaces
    whatever files hold its partitions when it commits.
    """
    wanted = set(partitions) if partitions is not None else None
    for version in range(started_from + 1, current + 1):
        try:
            changes = commit_changes(table_uri, version, partition_column)
        except OSError as error:
            raise ConcurrentWriteError(
                f"{table_uri}: cannot read commit {version} made while this write was in "
                f"progress, so cannot tell whether it touched the same data ({error}). Nothing of "
                "this write was committed; run it again."
            ) from error
        touched = changes.partitions
        if not touched:
            continue
        if wanted is None:
            what = "rows of the table"
        elif ANY_PARTITION in touched:
            what = f"rows it cannot place in a {partition_column} (so possibly of this write's)"
        elif touched & wanted:
            what = ", ".join(f"{partition_column}={v}" for v in sorted(touched & wanted))
        else:
            continue
        who = changes.info.get("dagster_run_id")
        operation = changes.info.get("operation", "write")
        by = f"Dagster run {who}" if who else f"a {operation} operation"
        raise ConcurrentWriteError(
            f"{table_uri}: {by} committed {what} as version {version} while this write of the "
            f"same data was in progress (it started from version {started_from}). Nothing of "
            "this write was committed: the table keeps that commit, whole. Run this write again "
            "if its data should replace it."
        )


def _backoff(attempt: int) -> None:
    """Spread retries out so that writers that collided do not collide again in lockstep."""
    time.sleep(min(0.05 * 2 ** (attempt - 1), 2.0) * random.uniform(0.5, 1.5))


def commit_files(
    table_uri: str,
    schema: pa.Schema,
    files: Sequence[DataFile],
    *,
    partition_by: Sequence[str] = (),
    replace_partitions: Sequence[str] | None = None,
    custom_metadata: Mapping[str, str] | None = None,
    storage_options: Mapping[str, str] | None = None,
    name: str | None = None,
    description: str | None = None,
    read_version: int | None = None,
    max_commit_retries: int = 15,
) -> int:
    """Commit ``files`` to the table as ONE transaction and return the new table version.

    - No table yet: create it with exactly these files.
    - ``replace_partitions`` given: atomically remove every live file of those values of the
      (single) partition column and add ``files`` — the months of the run and nothing else.
    - ``replace_partitions`` None: replace the whole table.

    ``read_version`` is the table version the write started from (`table_version` before writing
    any file; `NO_TABLE` if there was no table); None means "the version found now". A commit by
    another writer since then that changed rows of the same partitions (of any, for a whole-table
    write) raises `ConcurrentWriteError`; commits of other partitions only make this commit retry
    on the newer snapshot, up to ``max_commit_retries`` times.
    """
    schema = nullable(schema)
    options = dict(storage_options or {})
    properties = CommitProperties(custom_metadata=dict(custom_metadata or {}), max_commit_retries=0)
    if replace_partitions is not None and len(partition_by) != 1:
        raise ValueError("replace_partitions needs exactly one partition column")
    partition_column = partition_by[0] if replace_partitions is not None else None
    partitions = sorted(set(replace_partitions)) if replace_partitions is not None else None
    started_from = read_version
    for attempt in range(max_commit_retries + 1):
        if attempt:
            _backoff(attempt)
        table = open_table(table_uri, options)
        if table is None:
            try:
                create_table_with_add_actions(
                    table_uri,
                    DeltaSchema.from_arrow(schema),
                    [f.add_action() for f in files],
                    mode="error",
                    partition_by=list(partition_by) or None,
                    name=name,
                    description=description,
                    storage_options=options or None,
                    commit_properties=properties,
                )
                return 0
            except Exception:
                if open_table(table_uri, options) is None:
                    raise
                # Another first writer created the table: from here on, an ordinary conflict.
                started_from = NO_TABLE if started_from is None else started_from
                continue
        current = table.version()
        if started_from is None:
            started_from = current
        check_no_conflicting_commits(table_uri, started_from, current, partition_column, partitions)
        existing = table_arrow_schema(table)
        if _schema_fields(existing) != _schema_fields(schema):
            raise SchemaMismatchError(
                f"Refusing to write {table_uri}: the data's schema {_schema_fields(schema)} "
                f"differs from the table's {_schema_fields(existing)}. Drop or migrate the "
                "table first."
            )
        if list(table.metadata().partition_columns) != list(partition_by):
            raise SchemaMismatchError(
                f"Refusing to write {table_uri}: it is partitioned by "
                f"{list(table.metadata().partition_columns)}, the write by {list(partition_by)}."
            )
        filters = [(partition_by[0], "in", partitions)] if partitions is not None else None
        try:
            table.create_write_transaction(
                [f.add_action() for f in files],
                mode="overwrite",
                schema=DeltaSchema.from_arrow(schema),
                partition_by=list(partition_by) or None,
                partition_filters=filters,
                commit_properties=properties,
            )
        except CommitFailedError:
            if table_version(table_uri, options) <= current:
                raise  # not a lost race for the next version: a real failure
            continue  # another writer took version current + 1: check what it did, retry
        # Retries are off, so the commit is exactly the version after the snapshot it was built on.
        return current + 1
    raise ConcurrentWriteError(
        f"{table_uri}: gave up after {max_commit_retries + 1} attempts to commit — other writers "
        "kept committing first. Nothing of this write was committed; run it again."
    )

