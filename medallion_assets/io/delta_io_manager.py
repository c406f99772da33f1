"""`SparkDeltaIOManager`: stores PySpark DataFrames as partitioned Delta tables, one per asset.

Why our own and not `dagster-deltalake`'s `DeltaLakeIOManager`:

- it has no PySpark type handler: its handlers hand the data to delta-rs as Arrow, which for a
  Spark DataFrame means collecting the whole table on the driver;
- with a string or naive-timestamp partition column its partition filter does not match, and the
  "partition" write silently overwrites the whole table (dagster issue 34064);
- a single-run backfill of several months matches only the window's first month.

What is sound in it is reused: its storage configuration types (`LocalConfig`, `S3Config`, ...,
held by the `Warehouse` resource) and conventions — a table per asset at
``<root_uri>/<key prefix>/<name>``, the partition column named by the ``partition_expr``
metadata entry.

How a write works (see `medallion_assets.delta.commit`):

1. Spark executors write Parquet files (INT64 microsecond timestamps) into a staging directory
   private to this write, ``<table>/_staging/<write id>/month=YYYY-MM-DD/``. A private staging
   directory keeps concurrent writers of the same table from sharing Spark's ``_temporary``.
   A run of one month writes its rows straight into ``month=YYYY-MM-DD/``, unpartitioned, each
   row checked to belong to that month (`_one_month`). A backfill's write is partitioned by
   month: each task streams its rows to one open file of their month instead of sorting them by
   month first, and only a task that meets a second month sorts the rest. The files the write
   reads are cut into equal tasks, a whole number per core (`io.balanced_splits`).
2. The driver moves each file to ``<table>/month=YYYY-MM-DD/`` (Delta's Hive-style layout; the
   file names carry Spark's per-job UUID, so they never collide), reads its Parquet footer for
   size, row count and column statistics, and commits ONE Delta transaction that replaces exactly
   the months of the run's partition time window — one month, or every month of a single-run
   backfill — and nothing else.
3. If anything fails before the commit, the files this write created are deleted and the table
   stays at its previous version. A process killed mid-write leaves only unreferenced files,
   invisible to every reader and removed by the ``delta_maintenance`` job.
4. Runs writing other months of the same table at the same time all commit; a run that commits
   the same months first makes this write fail with `ConcurrentWriteError` (nothing of it
   committed) rather than mix the two (see `delta_commit.commit_files`).

Reads go through the Delta snapshot (`Warehouse.read_months`): only the files of the requested
months are handed to Spark, which reads them in parallel; ``month`` comes back as a DATE from the
log's partition values.
"""


import contextlib
import posixpath
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from dagster import (
    ConfigurableIOManager,
    InputContext,
    MetadataValue,
    OutputContext,
    ResourceDependency,
)
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from medallion_assets.delta.commit import DataFile, commit_files, describe_file
from medallion_assets.delta.log import filesystem_for, live_files, table_version
from medallion_assets.delta.month_summaries import MONTH_SUMMARIES, encode, files_by_month
from medallion_assets.io.balanced_splits import balanced_splits
from medallion_assets.partitions import month_value
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.resources.warehouse import MissingUpstreamData, Warehouse, spark_path
from medallion_assets.schema import MONTH_COLUMN, table_schema_metadata

STAGING_DIR = "_staging"
CONCURRENT_WRITERS_CONF = "spark.sql.maxConcurrentOutputFileWriters"

__all__ = [
    "STAGING_DIR",
    "Described",
    "MissingUpstreamData",
    "NoRows",
    "SparkDeltaIOManager",
    "Summarized",
    "table_schema_metadata",
]


@dataclass(frozen=True)
class NoRows:
    """An output with no row in any month of the run, of the given schema.

    Written without Spark: the months are replaced by one zero-row Parquet file each, which is
    what a Spark write of an empty DataFrame would end in, minus a Spark job (a second or two
    on a cold JVM, the price of a month without rejected lines).
    """

    schema: T.StructType


@dataclass(frozen=True)
class Summarized:
    """A DataFrame to write, with totals per month that its write computes, recorded in the
    table's Delta commit for readers to check against (see
    `medallion_assets.delta.month_summaries`).

    ``summaries`` is called once Spark has written the files and before the commit; it returns
    per month key (``YYYY-MM``) a mapping of names to values (counts, decimals), typically what a
    Spark observation on ``frame`` counted, or None when it has nothing (the commit then records
    nothing).
    """

    frame: DataFrame
    summaries: Callable[[], Mapping[str, Mapping[str, object]] | None]


@dataclass(frozen=True)
class Described:
    """A DataFrame to write, with output metadata worked out from the rows as written.

    ``describe`` is called once the commit is made, with the run's months read back from the
    table (`Warehouse.read_months`), and returns metadata entries for the materialization. For a
    small table, such as a preview of a gold aggregate, reading back the few files just written
    costs one short Spark job, where describing ``frame`` itself would compute it twice or keep
    it cached for the write.
    """

    frame: DataFrame | Summarized
    describe: Callable[[DataFrame], Mapping[str, object]]


class SparkDeltaIOManager(ConfigurableIOManager):
    """Writes each asset's PySpark DataFrame to its own Delta table, replacing exactly the months
    of the run; loads the requested months of an upstream table as a PySpark DataFrame."""

    warehouse: ResourceDependency[Warehouse]
    spark: ResourceDependency[SparkSessionResource]

    @staticmethod
    def _partition_column(context: OutputContext | InputContext) -> str | None:
        if not context.has_asset_partitions:
            return None
        metadata = context.definition_metadata or {}
        return str(metadata.get("partition_expr", MONTH_COLUMN))

    # -- writing ---------------------------------------------------------------------------------
    def handle_output(
        self, context: OutputContext, obj: DataFrame | NoRows | Summarized | Described | None
    ) -> None:
        if obj is None:
            return
        describe = None
        if isinstance(obj, Described):
            describe, obj = obj.describe, obj.frame
        summarize = None
        if isinstance(obj, Summarized):
            summarize, obj = obj.summaries, obj.frame
        if not isinstance(obj, DataFrame | NoRows):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: expected a PySpark DataFrame, "
                f"got {type(obj).__name__}"
            )
        table_uri = self.warehouse.table_uri(context.asset_key.path)
        storage_options = self.warehouse.delta_storage_options()
        partition_column = self._partition_column(context)
        # One month, or every month of a single-run backfill (the stock IO manager takes only
        # the first month of such a window).
        months = list(context.asset_partition_keys) if partition_column else None
        month_values = [month_value(m) for m in months] if months else None

        fs, table_path = filesystem_for(table_uri)
        write_id = uuid.uuid4().hex
        staging = posixpath.join(table_path, STAGING_DIR, write_id)
        promoted: list[str] = []
        # What the table looked like before this write: a run that commits the same months in
        # the meantime makes this commit fail instead of silently racing it.
        read_version = table_version(table_uri, storage_options)
        try:
            if isinstance(obj, DataFrame):
                session = obj.sparkSession
                session.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
                # Each task keeps one month's file open instead of Spark first sorting all its
                # rows by month (which a partitioned write otherwise plans unless the month is a
                # literal): a write of one month then streams straight to Parquet. A task that
                # meets a second month sorts the rest of its rows, so a backfill still keeps at
                # most one open file per task. Silver's write of a 5M-row month: 19.7 s sorted vs
                # 18.7 s (4 rounds alternated in one session).
                session.conf.set(CONCURRENT_WRITERS_CONF, "1")
                staged_uri = posixpath.join(table_uri, STAGING_DIR, write_id)
                with balanced_splits(obj):
                    if partition_column and month_values and len(month_values) == 1:
                        # One month: written straight into its directory (see `_one_month`).
                        directory = f"{partition_column}={month_values[0]}"
                        frame = _one_month(obj, partition_column, month_values[0])
                        frame.write.mode("error").parquet(
                            spark_path(posixpath.join(staged_uri, directory))
                        )
                    else:
                        writer = obj.write.mode("error")
                        if partition_column:
                            writer = writer.partitionBy(partition_column)
                        writer.parquet(spark_path(staged_uri))
                files = self._promote(
                    fs, table_path, staging, partition_column, month_values, promoted
                )
            else:
                files = []
            arrow_schema = to_arrow_schema(obj.schema, timezone="UTC")
            if partition_column and month_values:
                files += self._mark_empty_months(
                    fs, table_path, write_id, arrow_schema, partition_column, month_values,
                    files, promoted,
                )
            window = f"{months[0]}...{months[-1]}" if months else "all"
            custom_metadata = {
                "dagster_run_id": context.run_id,
                "dagster_asset_key": context.asset_key.to_user_string(),
                "dagster_partitions": window,
            }
            summaries = summarize() if summarize is not None and partition_column else None
            if summaries:
                custom_metadata[MONTH_SUMMARIES] = encode(
                    {m: v for m, v in summaries.items() if m in (months or [])},
                    files_by_month((f.path for f in files), partition_column),
                )
            version = commit_files(
                table_uri,
                arrow_schema,
                files,
                partition_by=[partition_column] if partition_column else [],
                replace_partitions=month_values,
                custom_metadata=custom_metadata,
                storage_options=storage_options,
                name=".".join(context.asset_key.path),
                read_version=read_version,
            )
        except BaseException:
            for relative in promoted:
                with contextlib.suppress(OSError):
                    fs.delete_file(posixpath.join(table_path, relative))
            raise
        finally:
            with contextlib.suppress(OSError):
                fs.delete_dir(staging)

        rows_per_month: dict[str, int] = defaultdict(int)
        for f in files:
            key = f.partition_values.get(partition_column) if partition_column else "all"
            rows_per_month[str(key)[:7]] += f.num_records
        written = sum(f.num_records for f in files)
        table = self.warehouse.open_table(context.asset_key.path)
        total = sum(r or 0 for _, _, r in live_files(table)) if table is not None else written
        metadata = {
            "dagster/row_count": total,
            "dagster/partition_row_count": written,
            "dagster/column_schema": table_schema_metadata(obj.schema),
            "dagster/table_name": ".".join(context.asset_key.path),
            "delta/table_uri": MetadataValue.path(table_uri),
            # Identifiers and counts of files are not measurements: text, so the UI does not
            # plot them.
            "delta/version": MetadataValue.text(str(version)),
            "delta/files_written": MetadataValue.text(str(len(files))),
            "delta/bytes_written": sum(f.size for f in files),
        }
        if months:
            metadata["rows_per_month"] = MetadataValue.json(
                {m: rows_per_month.get(m, 0) for m in months}
            )
        if describe is not None:
            written_rows = self.warehouse.read_months(
                self.spark.spark_session, context.asset_key.path, months
            )
            metadata.update(describe(written_rows))
        context.add_output_metadata(metadata)

    @staticmethod
    def _promote(
        fs: pafs.FileSystem,
        table_path: str,
        staging: str,
        partition_column: str | None,
        allowed_values: list[str] | None,
        promoted: list[str],
    ) -> list[DataFile]:
        """Move the staged Parquet files into the table's layout and describe them."""
        selector = pafs.FileSelector(staging, recursive=True)
        staged = sorted(
            (i for i in fs.get_file_info(selector)
             if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")),
            key=lambda i: i.path,
        )
        files = []
        for info in staged:
            relative_dir = posixpath.relpath(posixpath.dirname(info.path), staging)
            partition_values: dict[str, str] = {}
            if partition_column:
                prefix = f"{partition_column}="
                if not relative_dir.startswith(prefix) or "/" in relative_dir:
                    raise ValueError(f"Unexpected file {info.path} in the staged write.")
                value = relative_dir[len(prefix):]
                if allowed_values is not None and value not in allowed_values:
                    raise ValueError(
                        f"The data holds rows for {partition_column}={value}, outside the run's "
                        f"partitions {allowed_values}; refusing to write them."
                    )
                partition_values[partition_column] = value
                relative = f"{relative_dir}/{info.base_name}"
            else:
                relative = info.base_name
            destination = posixpath.join(table_path, relative)
            fs.create_dir(posixpath.dirname(destination), recursive=True)
            fs.move(info.path, destination)
            promoted.append(relative)
            files.append(describe_file(fs, table_path, relative, partition_values))
        return files

    @staticmethod
    def _mark_empty_months(
        fs: pafs.FileSystem,
        table_path: str,
        write_id: str,
        arrow_schema: pa.Schema,
        partition_column: str,
        month_values: list[str],
        files: list[DataFile],
        promoted: list[str],
    ) -> list[DataFile]:
        """A zero-row Parquet file for each month of the run that got no rows.

        Spark writes no file for a partition without rows, which would leave "written, and empty"
        (a month without rejected lines, a month without purchases) indistinguishable in the log
        from "never written" — and a downstream run would refuse to read it. One empty file per
        such month, committed with the others, records that the month was written.
        """
        written = {f.partition_values.get(partition_column) for f in files}
        file_schema = pa.schema([f for f in arrow_schema if f.name != partition_column])
        marked = []
        for value in month_values:
            if value in written:
                continue
            relative = f"{partition_column}={value}/part-00000-{write_id}-empty.parquet"
            destination = posixpath.join(table_path, relative)
            fs.create_dir(posixpath.dirname(destination), recursive=True)
            promoted.append(relative)
            with fs.open_output_stream(destination) as sink:
                pq.write_table(file_schema.empty_table(), sink)
            marked.append(describe_file(fs, table_path, relative, {partition_column: value}))
        return marked

    # -- reading ---------------------------------------------------------------------------------
    def load_input(self, context: InputContext) -> DataFrame:
        months = list(context.asset_partition_keys) if context.has_asset_partitions else None
        return self.warehouse.read_months(
            self.spark.spark_session, context.asset_key.path, months
        )


def _one_month(frame: DataFrame, partition_column: str, value: str) -> DataFrame:
    """`frame`'s rows without the partition column, each checked to belong to month `value`.

    A run of one month writes its rows into that month's directory as an unpartitioned write:
    Spark's partitioned writer would otherwise work out every row's partition value and copy the
    row without it before writing: on bronze's 5M-row month, 19.0 task CPU seconds partitioned
    against 18.3 written into the directory (`benchmarks/step_profile.py`, 3 rounds on 2026-12-04,
    both with Spark's own splits; now ``bronze_partitioned`` and ``bronze``): small, inside the
    spread of either. The check
    keeps the partitioned write's guarantee that no row lands in a month the run does not own: a
    row of another month fails the write. Where the month is a literal (bronze), Spark folds the
    check away; elsewhere it is one comparison per row.
    """
    column = F.col(partition_column)
    # Compared as the column's own type (a DATE for months), not as text, so the check costs one
    # comparison of two integers per row; the message is built only for a row that fails it.
    expected = F.lit(value).cast(frame.schema[partition_column].dataType)
    belongs = F.assert_true(
        column == expected,
        F.concat(
            F.lit(f"The data holds rows for {partition_column}="),
            F.coalesce(column.cast(T.StringType()), F.lit("null")),
            F.lit(f", outside the run's partitions ['{value}']; refusing to write them."),
        ),
    )
    return frame.where(belongs.isNull()).drop(partition_column)
