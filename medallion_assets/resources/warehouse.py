"""The warehouse: where the Delta tables live, and what can be known of them without Spark.

One resource owns the warehouse's location and storage options, so the IO manager, the checks,
the maintenance job and the report all resolve the same root the same way. Its storage options
are dagster-deltalake's configuration types (`LocalConfig`, `S3Config`, `AzureConfig`,
`GcsConfig`), reused as they are.

Per-month facts come from the Delta log alone (`medallion_assets.delta.log`): each file's add
action carries its partition value and, written at commit from the Parquet footer, its row count
and per-column statistics. Counting a month's rows or nulls therefore reads a few kilobytes of
JSON, never a data file; the resource only resolves the table and asks the log module.
"""

from __future__ import annotations

import datetime as dt
import os
import posixpath
from collections import defaultdict
from collections.abc import Sequence

from dagster import ConfigurableResource
from dagster_deltalake.config import AzureConfig, GcsConfig, LocalConfig, S3Config
from deltalake import DeltaTable
from pydantic import Field, field_validator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema

from medallion_assets.delta import log, month_summaries
from medallion_assets.partitions import key_of_month_value, month_value
from medallion_assets.schema import MONTH_COLUMN
from medallion_assets.settings import PARQUET_CODECS, Settings, parquet_codec

DEFAULT_WAREHOUSE_DIR = Settings.model_fields["warehouse_dir"].default
DEFAULT_PARQUET_CODEC = Settings.model_fields["parquet_codec"].default


class MissingUpstreamData(Exception):
    """A read asks for months its table has never been written for."""


def spark_path(uri: str) -> str:
    """The same location as Spark's Hadoop filesystems name it."""
    return "s3a://" + uri[len("s3://") :] if uri.startswith("s3://") else uri


def warehouse_uri(configured: str | None = None) -> str:
    """The warehouse root: ``configured``, else ``data/warehouse`` under the working directory;
    a local path is made absolute."""
    raw = configured or DEFAULT_WAREHOUSE_DIR
    if "://" in raw:
        return raw.rstrip("/")
    return os.path.abspath(os.path.expanduser(raw))


class Warehouse(ConfigurableResource):
    """The Delta tables' root and storage options; per-month reads and counts of a table."""

    root_uri: str = Field(
        default=DEFAULT_WAREHOUSE_DIR,
        description="Warehouse root: a local path, or s3://, az://, gs:// with storage options.",
    )
    storage_options: AzureConfig | S3Config | LocalConfig | GcsConfig = Field(
        default_factory=LocalConfig,
        discriminator="provider",
        description="delta-rs storage options for the warehouse (as in dagster-deltalake).",
    )
    parquet_codec: str = Field(
        default=DEFAULT_PARQUET_CODEC,
        description=f"Parquet compression of the tables' files: {', '.join(PARQUET_CODECS)}.",
    )

    @field_validator("parquet_codec")
    @classmethod
    def _codec(cls, value: str) -> str:
        return parquet_codec(value)

    # -- locations -------------------------------------------------------------------------------
    def uri(self) -> str:
        return warehouse_uri(self.root_uri)

    def table_uri(self, asset_path: Sequence[str]) -> str:
        return posixpath.join(self.uri(), *asset_path)

    def delta_storage_options(self) -> dict[str, str]:
        options = self.storage_options.model_dump(exclude={"provider"}, exclude_none=True)
        return {k: str(v) for k, v in options.items()}

    def open_table(self, asset_path: Sequence[str]) -> DeltaTable | None:
        """The table's current snapshot, or None when it has never been written."""
        return log.open_table(self.table_uri(asset_path), self.delta_storage_options())

    # -- facts from the log (see `medallion_assets.delta.log`) ---------------------------------
    def month_row_counts(self, asset_path: Sequence[str], months: Sequence[str]) -> dict[str, int]:
        """Rows per month key (``YYYY-MM``), from each file's numRecords in the log. A month
        without files, or a table that does not exist yet, counts 0."""
        return log.month_row_counts(
            self.open_table(asset_path), months, partition_column=MONTH_COLUMN
        )

    def row_count(self, asset_path: Sequence[str], months: Sequence[str] | None) -> int:
        """Rows of the given months (None: the whole table), from the log; 0 for a table that does
        not exist yet."""
        if months is not None:
            return sum(self.month_row_counts(asset_path, months).values())
        table = self.open_table(asset_path)
        return log.row_count(table) if table is not None else 0

    def month_null_counts(
        self, asset_path: Sequence[str], column: str, months: Sequence[str]
    ) -> dict[str, int | None]:
        """Nulls of ``column`` per month key, summed from the files' nullCount statistics in the
        log; None for a month with a file whose statistics do not say."""
        return log.month_null_counts(
            self.open_table(asset_path), column, months, partition_column=MONTH_COLUMN
        )

    def month_constants(
        self, asset_path: Sequence[str], columns: Sequence[str], months: Sequence[str]
    ) -> dict[str, dict[str, object]] | None:
        """For each month key, the one value each of ``columns`` holds in every row, from the
        files' statistics in the log; None unless each is provably constant in every month with
        rows (`medallion_assets.delta.log.month_constants`)."""
        return log.month_constants(
            self.open_table(asset_path), columns, months, partition_column=MONTH_COLUMN
        )

    def recorded_month_summaries(
        self, asset_path: Sequence[str], months: Sequence[str], read_files: Sequence[str]
    ) -> dict[str, dict[str, object] | None]:
        """Per month key, the totals the table's writer recorded for exactly the files a reader
        read (``read_files``: their paths or URIs, e.g. `DataFrame.inputFiles`), or None where it
        recorded none for them (see `medallion_assets.delta.month_summaries`)."""
        return month_summaries.recorded(
            self.open_table(asset_path),
            months,
            month_summaries.files_by_month(read_files, MONTH_COLUMN),
        )

    # -- reading with Spark ----------------------------------------------------------------------
    def read_months(
        self,
        session: SparkSession,
        asset_path: Sequence[str],
        months: Sequence[str] | None,
        *,
        columns: Sequence[str] | None = None,
    ) -> DataFrame:
        """The given months (keys ``YYYY-MM``; None: the whole table) of an asset's table.

        Only the snapshot's files of those partitions are handed to Spark, which reads them in
        parallel; ``month`` comes back as a DATE from the log's partition values. Every month
        asked for must have been written (a month written without rows has a zero-row file), so
        reading a month that was never built fails with `MissingUpstreamData` instead of
        silently giving nothing.
        """
        table_uri = self.table_uri(asset_path)
        name = "/".join(asset_path)
        table = self.open_table(asset_path)
        if table is None:
            raise MissingUpstreamData(
                f"{name} has no Delta table at {table_uri}: materialize it first."
            )
        full_schema = from_arrow_schema(log.table_arrow_schema(table), prefer_timestamp_ntz=False)
        partition_columns = list(table.metadata().partition_columns)
        partition_column = partition_columns[0] if partition_columns else None
        wanted = [month_value(m) for m in months] if months is not None else None
        if partition_column is None:
            wanted = None
        files = log.live_files(table, partition_column, wanted)
        if wanted is not None:
            missing = sorted(set(wanted) - {part for _, part, _ in files})
            if missing:
                raise MissingUpstreamData(
                    f"{name} has no data for {', '.join(map(key_of_month_value, missing))} (table "
                    f"{table_uri}, version {table.version()}): materialize those months first."
                )
        names = list(columns) if columns is not None else full_schema.names
        if partition_column and partition_column in names:
            names.remove(partition_column)
            names.append(partition_column)
        file_schema = T.StructType(
            [f for f in full_schema.fields if f.name not in partition_columns and f.name in names]
        )
        output = T.StructType([full_schema[n] for n in names])
        if not files:
            return session.createDataFrame([], output)
        by_partition: dict[str | None, list[str]] = defaultdict(list)
        for path, part, _ in files:
            by_partition[part].append(spark_path(posixpath.join(table_uri, path)))
        result = None
        for part, paths in sorted(by_partition.items(), key=lambda kv: str(kv[0])):
            frame = session.read.schema(file_schema).parquet(*paths)
            if partition_column and partition_column in names:
                value = dt.date.fromisoformat(part) if part is not None else None
                frame = frame.withColumn(partition_column, F.lit(value).cast(T.DateType()))
            frame = frame.select(*names)
            result = frame if result is None else result.unionByName(frame)
        return result
