"""Committing Parquet files that Spark has written as one Delta Lake transaction.

Spark cannot write Delta here (delta-spark's JARs come from Maven), so the work is split: Spark
executors write ordinary Parquet files, and this module, on the driver, turns those files into a
Delta commit with `deltalake` (delta-rs). Nothing here reads row data: file sizes, row counts and
column statistics all come from the Parquet footers, so driver memory grows with the number of
files, never with the number of rows.

The Delta transaction log stays the single source of truth: a file that is not named by a
committed add action does not exist for any reader (Spark via this project, delta-rs, polars,
DuckDB), which is what makes a failed or killed write invisible.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import posixpath
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions

# Delta's convention (and Spark's): string statistics are prefixes of at most 32 characters. Rather
# than truncate a max (which would then be below real values), longer strings get no min/max.
_MAX_STAT_STRING = 32


class SchemaMismatchError(ValueError):
    """The data to write does not have the table's schema."""


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


def filesystem_for(table_uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the table's path on it (local paths, file://, s3://, gs://, ...)."""
    if "://" not in table_uri:
        return pafs.LocalFileSystem(), table_uri
    return pafs.FileSystem.from_uri(table_uri)


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


def open_table(table_uri: str, storage_options: Mapping[str, str] | None = None) -> DeltaTable | None:
    try:
        return DeltaTable(table_uri, storage_options=dict(storage_options or {}))
    except TableNotFoundError:
        return None


def table_arrow_schema(table: DeltaTable) -> pa.Schema:
    return pa.schema(table.schema().to_arrow())


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
    max_commit_retries: int = 15,
) -> int:
    """Commit ``files`` to the table as ONE transaction and return the new table version.

    - No table yet: create it with exactly these files.
    - ``replace_partitions`` given: atomically remove every live file of those values of the
      (single) partition column and add ``files`` — the months of the run and nothing else.
    - ``replace_partitions`` None: replace the whole table.

    Concurrent writers of other partitions are retried by delta-rs's conflict checker; a
    concurrent writer of the same partition makes this commit fail rather than mix the two.
    """
    schema = nullable(schema)
    options = dict(storage_options or {})
    properties = CommitProperties(
        custom_metadata=dict(custom_metadata or {}), max_commit_retries=max_commit_retries
    )
    if replace_partitions is not None and len(partition_by) != 1:
        raise ValueError("replace_partitions needs exactly one partition column")
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
            return DeltaTable(table_uri, storage_options=options).version()
        except Exception as error:  # another writer created it first: replace within it
            table = open_table(table_uri, options)
            if table is None:
                raise error
    existing = table_arrow_schema(table)
    if _schema_fields(existing) != _schema_fields(schema):
        raise SchemaMismatchError(
            f"Refusing to write {table_uri}: the data's schema {_schema_fields(schema)} differs "
            f"from the table's {_schema_fields(existing)}. Drop or migrate the table first."
        )
    if list(table.metadata().partition_columns) != list(partition_by):
        raise SchemaMismatchError(
            f"Refusing to write {table_uri}: it is partitioned by "
            f"{list(table.metadata().partition_columns)}, the write by {list(partition_by)}."
        )
    filters = None
    if replace_partitions is not None:
        filters = [(partition_by[0], "in", sorted(set(replace_partitions)))]
    table.create_write_transaction(
        [f.add_action() for f in files],
        mode="overwrite",
        schema=DeltaSchema.from_arrow(schema),
        partition_by=list(partition_by) or None,
        partition_filters=filters,
        commit_properties=properties,
    )
    table.update_incremental()
    return table.version()


def live_files(
    table: DeltaTable, partition_column: str | None = None, values: Iterable[str] | None = None
) -> list[tuple[str, str | None, int]]:
    """(relative path, partition value, numRecords) of the snapshot's files, optionally only those
    whose partition value is in ``values``. Reads the log, never the data."""
    actions = pa.table(table.get_add_actions(flatten=True))
    wanted = set(values) if values is not None else None
    paths = actions.column("path").to_pylist()
    records = (
        actions.column("num_records").to_pylist()
        if "num_records" in actions.column_names
        else [None] * len(paths)
    )
    if partition_column is None:
        return [(p, None, r) for p, r in zip(paths, records)]
    parts = actions.column(f"partition.{partition_column}").to_pylist()
    out = []
    for path, part, rec in zip(paths, parts, records):
        part_str = part.isoformat() if isinstance(part, dt.date) else part
        if wanted is None or part_str in wanted:
            out.append((path, part_str, rec))
    return out
