"""`SparkDeltaIOManager`: stores PySpark DataFrames as partitioned Delta tables, one per asset.

Why our own and not `dagster-deltalake`'s `DeltaLakeIOManager`:

- it has no PySpark type handler: its handlers hand the data to delta-rs as Arrow, which for a
  Spark DataFrame means collecting the whole table on the driver;
- with a string or naive-timestamp partition column its partition filter does not match, and the
  "partition" write silently overwrites the whole table (dagster issue 34064);
- a single-run backfill of several months matches only the window's first month.

What is sound in it is reused: its storage configuration types (`LocalConfig`, `S3Config`, ...)
and conventions — a table per asset at ``<root_uri>/<key prefix>/<name>``, the partition column
named by the ``partition_expr`` metadata entry.

How a write works (see `medallion_assets.io.delta_commit`):

1. Spark executors write Parquet files (INT64 microsecond timestamps) into a staging directory
   private to this write, ``<table>/_staging/<write id>/month=YYYY-MM-DD/``. A private staging
   directory keeps concurrent writers of the same table from sharing Spark's ``_temporary``.
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

Reads go through the Delta snapshot: only the files of the requested months are handed to Spark,
which reads them in parallel; ``month`` comes back as a DATE from the log's partition values.
"""


import datetime as dt
import os
import posixpath
import uuid
from collections import defaultdict
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from dagster import (
    ConfigurableIOManager,
    InputContext,
    MetadataValue,
    OutputContext,
    ResourceDependency,
    TableColumn,
    TableSchema,
)
from dagster_deltalake.config import AzureConfig, GcsConfig, LocalConfig, S3Config
from pydantic import Field
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from medallion_assets.io.delta_commit import (
    DataFile,
    commit_files,
    describe_file,
    filesystem_for,
    live_files,
    open_table,
    table_arrow_schema,
    table_version,
)
from medallion_assets.partitions import months_in_window, partition_key_for
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.schema import MONTH_COLUMN, column_descriptions

WAREHOUSE_ENV = "MEDALLION_WAREHOUSE_DIR"
DEFAULT_WAREHOUSE_DIR = "data/warehouse"
STAGING_DIR = "_staging"


class MissingUpstreamData(Exception):
    """An input asks for months its table has never been written for."""


def spark_path(uri: str) -> str:
    """The same location as Spark's Hadoop filesystems name it."""
    return "s3a://" + uri[len("s3://") :] if uri.startswith("s3://") else uri


def table_schema_metadata(schema: T.StructType) -> TableSchema:
    descriptions = column_descriptions()
    return TableSchema(
        columns=[
            TableColumn(
                name=f.name,
                type=f.dataType.simpleString(),
                description=descriptions.get(f.name),
            )
            for f in schema.fields
        ]
    )


class SparkDeltaIOManager(ConfigurableIOManager):
    """Writes each asset's PySpark DataFrame to its own Delta table, replacing exactly the months
    of the run; loads the requested months of an upstream table as a PySpark DataFrame."""

    root_uri: str | None = Field(
        default=None,
        description=f"Warehouse root; default ${WAREHOUSE_ENV}, else {DEFAULT_WAREHOUSE_DIR}.",
    )
    storage_options: AzureConfig | S3Config | LocalConfig | GcsConfig = Field(
        default_factory=LocalConfig,
        discriminator="provider",
        description="delta-rs storage options for the warehouse (as in dagster-deltalake).",
    )
    spark: ResourceDependency[SparkSessionResource]

    # -- locations -------------------------------------------------------------------------------
    def warehouse_uri(self) -> str:
        raw = self.root_uri or os.environ.get(WAREHOUSE_ENV) or DEFAULT_WAREHOUSE_DIR
        if "://" in raw:
            return raw.rstrip("/")
        return os.path.abspath(os.path.expanduser(raw))

    def table_uri(self, asset_path: Sequence[str]) -> str:
        return posixpath.join(self.warehouse_uri(), *asset_path)

    def delta_storage_options(self) -> dict[str, str]:
        options = self.storage_options.model_dump(exclude={"provider"}, exclude_none=True)
        return {k: str(v) for k, v in options.items()}

    @staticmethod
    def _partition_column(context: OutputContext | InputContext) -> str | None:
        if not context.has_asset_partitions:
            return None
        metadata = context.definition_metadata or {}
        return str(metadata.get("partition_expr", MONTH_COLUMN))

    @staticmethod
    def _months(context: OutputContext | InputContext) -> list[dt.date]:
        return months_in_window(context.asset_partitions_time_window)

    # -- writing ---------------------------------------------------------------------------------
    def handle_output(self, context: OutputContext, obj: DataFrame | None) -> None:
        if obj is None:
            return
        if not isinstance(obj, DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a PySpark DataFrame, "
                            f"got {type(obj).__name__}")
        table_uri = self.table_uri(context.asset_key.path)
        partition_column = self._partition_column(context)
        months = self._months(context) if partition_column else None
        month_values = [m.isoformat() for m in months] if months else None

        obj.sparkSession.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        fs, table_path = filesystem_for(table_uri)
        write_id = uuid.uuid4().hex
        staging = posixpath.join(table_path, STAGING_DIR, write_id)
        promoted: list[str] = []
        # What the table looked like before this write: a run that commits the same months in
        # the meantime makes this commit fail instead of silently racing it.
        read_version = table_version(table_uri, self.delta_storage_options())
        try:
            writer = obj.write.mode("errorifexists")
            if partition_column:
                writer = writer.partitionBy(partition_column)
            writer.parquet(spark_path(posixpath.join(table_uri, STAGING_DIR, write_id)))
            files = self._promote(fs, table_path, staging, partition_column, month_values, promoted)
            arrow_schema = to_arrow_schema(obj.schema, timezone="UTC")
            if partition_column and month_values:
                files += self._mark_empty_months(
                    fs, table_path, write_id, arrow_schema, partition_column, month_values,
                    files, promoted,
                )
            window = (
                f"{partition_key_for(months[0])}...{partition_key_for(months[-1])}"
                if months else "all"
            )
            version = commit_files(
                table_uri,
                arrow_schema,
                files,
                partition_by=[partition_column] if partition_column else [],
                replace_partitions=month_values,
                custom_metadata={
                    "dagster_run_id": context.run_id,
                    "dagster_asset_key": context.asset_key.to_user_string(),
                    "dagster_partitions": window,
                },
                storage_options=self.delta_storage_options(),
                name=".".join(context.asset_key.path),
                read_version=read_version,
            )
        except BaseException:
            for relative in promoted:
                try:
                    fs.delete_file(posixpath.join(table_path, relative))
                except OSError:
                    pass
            raise
        finally:
            try:
                fs.delete_dir(staging)
            except (OSError, FileNotFoundError):
                pass

        rows_per_month: dict[str, int] = defaultdict(int)
        for f in files:
            key = f.partition_values.get(partition_column) if partition_column else "all"
            rows_per_month[str(key)[:7]] += f.num_records
        written = sum(f.num_records for f in files)
        table = open_table(table_uri, self.delta_storage_options())
        total = sum(r or 0 for _, _, r in live_files(table)) if table is not None else written
        metadata = {
            "dagster/row_count": total,
            "dagster/partition_row_count": written,
            "dagster/column_schema": table_schema_metadata(obj.schema),
            "dagster/table_name": ".".join(context.asset_key.path),
            "delta/version": version,
            "delta/table_uri": MetadataValue.path(table_uri),
            "delta/files_written": len(files),
            "delta/bytes_written": sum(f.size for f in files),
        }
        if months:
            metadata["rows_per_month"] = MetadataValue.json(
                {partition_key_for(m): rows_per_month.get(partition_key_for(m), 0) for m in months}
            )
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
    def month_row_counts(self, asset_path: Sequence[str], months: Sequence[str]) -> dict[str, int]:
        """Rows per month key (``YYYY-MM``) of an asset's table, from the Delta log's numRecords
        (taken from each file's Parquet footer at commit): no data file is read. A month without
        files, or a table that does not exist yet, counts 0."""
        counts = dict.fromkeys(months, 0)
        table = open_table(self.table_uri(asset_path), self.delta_storage_options())
        if table is None:
            return counts
        wanted = {f"{m}-01": m for m in months}
        for _, part, records in live_files(table, MONTH_COLUMN, wanted):
            counts[wanted[part]] += records or 0
        return counts

    def load_input(self, context: InputContext) -> DataFrame:
        spark = self.spark.spark_session
        asset_key = context.asset_key
        table_uri = self.table_uri(asset_key.path)
        table = open_table(table_uri, self.delta_storage_options())
        if table is None:
            raise MissingUpstreamData(
                f"{asset_key.to_user_string()} has no Delta table at {table_uri}: materialize it first."
            )
        full_schema = from_arrow_schema(table_arrow_schema(table), prefer_timestamp_ntz=False)
        partition_columns = list(table.metadata().partition_columns)
        partition_column = partition_columns[0] if partition_columns else None
        file_schema = T.StructType(
            [f for f in full_schema.fields if f.name not in partition_columns]
        )
        wanted = None
        if partition_column and context.has_asset_partitions:
            wanted = [m.isoformat() for m in self._months(context)]
        files = live_files(table, partition_column, wanted)
        if wanted is not None:
            missing = sorted(set(wanted) - {part for _, part, _ in files})
            if missing:
                raise MissingUpstreamData(
                    f"{asset_key.to_user_string()} has no data for "
                    f"{', '.join(m[:7] for m in missing)} (table {table_uri}, version "
                    f"{table.version()}): materialize those months first."
                )
        if not files:
            return spark.createDataFrame([], full_schema)
        by_partition: dict[str | None, list[str]] = defaultdict(list)
        for path, part, _ in files:
            by_partition[part].append(spark_path(posixpath.join(table_uri, path)))
        frames = []
        for part, paths in sorted(by_partition.items(), key=lambda kv: str(kv[0])):
            frame = spark.read.schema(file_schema).parquet(*paths)
            if partition_column:
                value = dt.date.fromisoformat(part) if part is not None else None
                frame = frame.withColumn(partition_column, F.lit(value).cast(T.DateType()))
            frames.append(frame.select(*full_schema.names))
        result = frames[0]
        for frame in frames[1:]:
            result = result.unionByName(frame)
        return result
