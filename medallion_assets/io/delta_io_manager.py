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

A write (`SparkDeltaIOManager.handle_output`, whose docstring gives its steps) has Spark
executors write Parquet files into a staging directory private to the write, moves them into the
table's Hive-style layout (``<table>/month=YYYY-MM-DD/``) and commits them as ONE Delta
transaction (`medallion_assets.delta.commit`) that replaces exactly the months of the run's
partition time window — one month, or every month of a single-run backfill — and nothing else.
Until that commit no reader sees any of it: a failed write deletes what it created, and a process
killed mid-write leaves only unreferenced files, removed by the ``delta_maintenance`` job. Runs
writing other months of the same table at the same time all commit; a run that commits the same
months first makes this write fail with `ConcurrentWriteError` (nothing of it committed) rather
than mix the two (`medallion_assets.delta.commit.commit_files`).

Reads go through the Delta snapshot (`Warehouse.read_months`): only the files of the requested
months are handed to Spark, which reads them in parallel; ``month`` comes back as a DATE from the
log's partition values.
"""

import contextlib
import posixpath
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from dagster import (
    ConfigurableIOManager,
    DagsterInvariantViolationError,
    InputContext,
    MetadataValue,
    OutputContext,
    ResourceDependency,
    TableColumn,
    TableRecord,
    TableSchema,
)
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from medallion_assets.delta import log
from medallion_assets.delta.commit import DataFile, commit_files, describe_file
from medallion_assets.delta.month_summaries import MONTH_SUMMARIES, encode, files_by_month
from medallion_assets.io.balanced_splits import balanced_splits
from medallion_assets.io.session_settings import session_settings
from medallion_assets.partitions import key_of_month_value, month_value
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.resources.warehouse import MissingUpstreamData, Warehouse, spark_path
from medallion_assets.retries import interrupts_stop_the_step
from medallion_assets.schema import MONTH_COLUMN, table_schema_metadata

STAGING_DIR = "_staging"
CONCURRENT_WRITERS_CONF = "spark.sql.maxConcurrentOutputFileWriters"
TIMESTAMP_TYPE_CONF = "spark.sql.parquet.outputTimestampType"
# Set per write to the warehouse's codec (`Warehouse.parquet_codec`), snappy by default. Spark's
# best script gains 13 % by writing uncompressed (benchmarks/best_choices.py, "revert_codec"), but
# the pipeline does not: a 5M-row month through the CLI took 37.7 s and 70.4 CPU s uncompressed,
# 37.3 s and 69.6 CPU s with snappy, for bronze and silver twice the size (510 MB against 243 MB).
# Silver's files hold each user's events together, in time order, so they compress well, and
# neither write is bound by its codec. Uncompressed remains a setting.
CODEC_CONF = "spark.sql.parquet.compression.codec"
# The session settings of a Spark write, set for the write only (`session_settings`).
WRITE_SETTINGS = {
    # Timestamps as INT64 microseconds, the table schema's type, rather than Spark's default
    # INT96: a legacy encoding for which Parquet keeps no min/max, so the log would get none.
    TIMESTAMP_TYPE_CONF: "TIMESTAMP_MICROS",
    # Each task keeps one month's file open instead of Spark first sorting all its rows by month
    # (which a partitioned write otherwise plans unless the month is a literal): a write of one
    # month then streams straight to Parquet. A task that meets a second month sorts the rest of
    # its rows, so a backfill still keeps at most one open file per task. Silver's write of a
    # 5M-row month: 19.7 s sorted vs 18.7 s (4 rounds alternated in one session).
    CONCURRENT_WRITERS_CONF: "1",
}

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


@dataclass(frozen=True)
class _Output:
    """What an asset returned, taken apart: the rows to write and what to do around the write."""

    rows: DataFrame | NoRows
    summaries: Callable[[], Mapping[str, Mapping[str, object]] | None] | None = None
    describe: Callable[[DataFrame], Mapping[str, object]] | None = None

    @classmethod
    def of(cls, context: OutputContext, obj: object) -> "_Output":
        describe = summaries = None
        if isinstance(obj, Described):
            describe, obj = obj.describe, obj.frame
        if isinstance(obj, Summarized):
            summaries, obj = obj.summaries, obj.frame
        if not isinstance(obj, DataFrame | NoRows):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: expected a PySpark DataFrame, "
                f"got {type(obj).__name__}"
            )
        return cls(obj, summaries, describe)

    @property
    def arrow_schema(self) -> pa.Schema:
        return to_arrow_schema(self.rows.schema, timezone="UTC")


@dataclass
class _Write:
    """One write of an output into its table: where its files go, and which of them it has
    created so far in the table's layout (``created``, deleted again if the write fails)."""

    table_uri: str
    name: str
    storage_options: Mapping[str, str]
    partition_column: str | None
    # Partition keys: one month, or every month of a single-run backfill; None when unpartitioned.
    months: list[str] | None
    # The table's version before this write: a run that commits the same months in the meantime
    # makes this commit fail instead of silently racing it.
    read_version: int
    # Parquet compression of the files Spark writes (`CODEC_CONF`).
    codec: str
    write_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: list[str] = field(default_factory=list)
    fs: pafs.FileSystem = field(init=False)
    table_path: str = field(init=False)

    def __post_init__(self) -> None:
        self.fs, self.table_path = log.filesystem_for(self.table_uri)

    @property
    def month_values(self) -> list[str] | None:
        return [month_value(m) for m in self.months] if self.months else None

    @property
    def staging(self) -> str:
        return posixpath.join(self.table_path, STAGING_DIR, self.write_id)

    def _place(self, relative: str) -> str:
        """The path of a new file of the table's layout, recorded as created before it exists,
        so that a failure half-way through writing or moving it still removes it."""
        destination = posixpath.join(self.table_path, relative)
        self.fs.create_dir(posixpath.dirname(destination), recursive=True)
        self.created.append(relative)
        return destination

    def stage(self, frame: DataFrame) -> None:
        """Spark writes ``frame`` as Parquet files into this write's staging directory."""
        staged_uri = spark_path(posixpath.join(self.table_uri, STAGING_DIR, self.write_id))
        values = self.month_values
        settings = {**WRITE_SETTINGS, CODEC_CONF: self.codec}
        with session_settings(frame.sparkSession, settings), balanced_splits(frame):
            if self.partition_column and values and len(values) == 1:
                # One month: written straight into its directory (see `_one_month`).
                directory = f"{self.partition_column}={values[0]}"
                rows = _one_month(frame, self.partition_column, values[0])
                rows.write.mode("error").parquet(posixpath.join(staged_uri, directory))
            else:
                writer = frame.write.mode("error")
                if self.partition_column:
                    writer = writer.partitionBy(self.partition_column)
                writer.parquet(staged_uri)

    def promote(self) -> list[DataFile]:
        """Move the staged Parquet files into the table's layout and describe them."""
        selector = pafs.FileSelector(self.staging, recursive=True)
        staged = sorted(
            (i for i in self.fs.get_file_info(selector)
             if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")),
            key=lambda i: i.path,
        )
        allowed = self.month_values
        files = []
        for info in staged:
            relative_dir = posixpath.relpath(posixpath.dirname(info.path), self.staging)
            partition_values: dict[str, str] = {}
            relative = info.base_name
            if self.partition_column:
                prefix = f"{self.partition_column}="
                if not relative_dir.startswith(prefix) or "/" in relative_dir:
                    raise ValueError(f"Unexpected file {info.path} in the staged write.")
                value = relative_dir[len(prefix):]
                if allowed is not None and value not in allowed:
                    raise ValueError(
                        f"The data holds rows for {self.partition_column}={value}, outside the "
                        f"run's partitions {allowed}; refusing to write them."
                    )
                partition_values[self.partition_column] = value
                relative = f"{relative_dir}/{info.base_name}"
            self.fs.move(info.path, self._place(relative))
            files.append(describe_file(self.fs, self.table_path, relative, partition_values))
        return files

    def mark_empty_months(self, arrow_schema: pa.Schema, files: list[DataFile]) -> list[DataFile]:
        """A zero-row Parquet file for each month of the run that got no rows.

        Spark writes no file for a partition without rows, which would leave "written, and empty"
        (a month without rejected lines, a month without purchases) indistinguishable in the log
        from "never written" — and a downstream run would refuse to read it. One empty file per
        such month, committed with the others, records that the month was written.
        """
        column = self.partition_column
        if not column or not self.months:
            return []
        written = {f.partition_values.get(column) for f in files}
        file_schema = pa.schema([f for f in arrow_schema if f.name != column])
        marked = []
        for value in self.month_values:
            if value in written:
                continue
            relative = f"{column}={value}/part-00000-{self.write_id}-empty.parquet"
            with self.fs.open_output_stream(self._place(relative)) as sink:
                pq.write_table(file_schema.empty_table(), sink)
            marked.append(describe_file(self.fs, self.table_path, relative, {column: value}))
        return marked

    def commit(
        self, arrow_schema: pa.Schema, files: Sequence[DataFile], metadata: Mapping[str, str]
    ) -> int:
        """Commit ``files`` as one transaction replacing the run's months; the new version."""
        return commit_files(
            self.table_uri,
            arrow_schema,
            files,
            partition_by=[self.partition_column] if self.partition_column else [],
            replace_partitions=self.month_values,
            custom_metadata=metadata,
            storage_options=self.storage_options,
            name=self.name,
            read_version=self.read_version,
        )

    def discard(self) -> None:
        """Delete the files this write created in the table's layout (none is committed)."""
        for relative in self.created:
            with contextlib.suppress(OSError):
                self.fs.delete_file(posixpath.join(self.table_path, relative))

    def clear_staging(self) -> None:
        with contextlib.suppress(OSError):
            self.fs.delete_dir(self.staging)


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
        """Write ``obj`` as the run's months of the asset's table, in one Delta commit.

        1. Stage: Spark executors write the rows as Parquet (INT64 microsecond timestamps, the
           warehouse's codec, snappy by default: see `CODEC_CONF`) into a
           directory private to this write, ``<table>/_staging/<write id>/``, so that concurrent
           writers of the table never share Spark's ``_temporary``. A run of one month writes its
           rows straight into ``month=YYYY-MM-DD/``, unpartitioned, each row checked to belong to
           that month (`_one_month`); a backfill's write is partitioned by month. The files the
           write reads are cut into equal tasks, a whole number per core (`balanced_splits`).
           The session settings this needs are set for the write only (`session_settings`).
        2. Promote: each file moves into ``<table>/month=YYYY-MM-DD/`` (Delta's Hive-style layout;
           the file names carry Spark's per-job UUID, so they never collide), and its Parquet
           footer gives the log its size, row count and column statistics. A file of a month
           outside the run fails the write.
        3. Mark empty months: a month of the run without rows gets one zero-row file, so that the
           log tells "written, and empty" from "never written" (`_Write.mark_empty_months`).
        4. Summarise: totals the output computed while being written (`Summarized`) go into the
           commit, for readers to check their own results against.
        5. Commit: ONE transaction replaces exactly the run's months — one month, or every month
           of a single-run backfill — and nothing else. A run that committed the same months since
           this write began makes it fail with `ConcurrentWriteError` instead of mixing the two.
        6. Describe: the materialization's metadata, from the log (row counts, version, files)
           and, for a `Described` output, from the run's months read back as written.

        If anything fails before the commit, the files this write created are deleted and the
        table stays at its previous version; the staging directory goes in any case. An interrupt
        (Ctrl-C, a termination request) fails the step for good: Dagster would otherwise retry it
        (`medallion_assets.retries.interrupts_stop_the_step`).
        """
        if obj is None:
            return
        with interrupts_stop_the_step():
            self._write(context, obj)

    def _write(
        self, context: OutputContext, obj: DataFrame | NoRows | Summarized | Described
    ) -> None:
        output = _Output.of(context, obj)
        write = self._begin(context)
        try:
            files = []
            if isinstance(output.rows, DataFrame):
                write.stage(output.rows)
                files = write.promote()
            files += write.mark_empty_months(output.arrow_schema, files)
            metadata = {**_provenance(context, write), **_summarise(output, write, files)}
            version = write.commit(output.arrow_schema, files, metadata)
        except BaseException:
            write.discard()
            raise
        finally:
            write.clear_staging()
        context.add_output_metadata(self._describe(context, output, write, files, version))

    def _begin(self, context: OutputContext) -> _Write:
        """The write of this output: its table, the run's months, the version it starts from."""
        table_uri = self.warehouse.table_uri(context.asset_key.path)
        storage_options = self.warehouse.delta_storage_options()
        partition_column = self._partition_column(context)
        return _Write(
            table_uri=table_uri,
            name=".".join(context.asset_key.path),
            storage_options=storage_options,
            partition_column=partition_column,
            # The stock IO manager takes only the first month of a backfill's window.
            months=list(context.asset_partition_keys) if partition_column else None,
            read_version=log.table_version(table_uri, storage_options),
            codec=self.warehouse.parquet_codec,
        )

    def _describe(
        self,
        context: OutputContext,
        output: _Output,
        write: _Write,
        files: Sequence[DataFile],
        version: int,
    ) -> dict[str, object]:
        """The materialization's metadata: counts from the commit and the log, and, for a
        `Described` output, what its ``describe`` makes of the run's months as written.

        What holds for the whole table or the whole commit (the table's rows, its version) is the
        same in every month's materialization. What is a month's own — its rows, files and bytes
        — goes into that month's materialization only (`_add_month_metadata`), so that a run of
        several months shows each month's own figures in the UI's Partitions tab; the run's view
        gets them as a table of months."""
        table = self.warehouse.open_table(context.asset_key.path)
        metadata: dict[str, object] = {
            "dagster/row_count": MetadataValue.int(
                log.row_count(table) if table is not None else sum(f.num_records for f in files)
            ),
            "dagster/column_schema": table_schema_metadata(output.rows.schema),
            "dagster/table_name": write.name,
            "delta/table_uri": MetadataValue.path(write.table_uri),
            # An identifier, not a measurement: text, so the UI does not plot it.
            "delta/version": MetadataValue.text(str(version)),
        }
        if write.months:
            by_month = month_figures(write.months, write.partition_column, files)
            for month, figures in by_month.items():
                _add_month_metadata(context, month, figures.metadata())
            if len(write.months) > 1:
                metadata["months_written"] = months_table(by_month)
        else:
            metadata.update(MonthFigures.of(files).metadata())
        if output.describe is not None:
            written_rows = self.warehouse.read_months(
                self.spark.spark_session, context.asset_key.path, write.months
            )
            metadata.update(output.describe(written_rows))
        return metadata

    # -- reading ---------------------------------------------------------------------------------
    def load_input(self, context: InputContext) -> DataFrame:
        months = list(context.asset_partition_keys) if context.has_asset_partitions else None
        with interrupts_stop_the_step():
            # A step that starts the run's session starts it for the rows it reads.
            session = self.spark.session_for(
                lambda: self.warehouse.row_count(context.asset_key.path, months)
            )
            return self.warehouse.read_months(session, context.asset_key.path, months)


@dataclass(frozen=True)
class MonthFigures:
    """What one write put into one month: rows, files and bytes."""

    rows: int = 0
    files: int = 0
    bytes: int = 0

    @classmethod
    def of(cls, files: Sequence[DataFile]) -> "MonthFigures":
        return cls(
            rows=sum(f.num_records for f in files),
            files=len(files),
            bytes=sum(f.size for f in files),
        )

    def metadata(self) -> dict[str, MetadataValue]:
        return {
            "dagster/partition_row_count": MetadataValue.int(self.rows),
            # A count of files is not a measurement anyone plots: text.
            "delta/files_written": MetadataValue.text(str(self.files)),
            "delta/bytes_written": MetadataValue.int(self.bytes),
        }


def month_figures(
    months: Sequence[str], partition_column: str, files: Sequence[DataFile]
) -> dict[str, MonthFigures]:
    """Each month of the write (every one, an empty month too) and what the write put in it."""
    grouped: dict[str, list[DataFile]] = {m: [] for m in months}
    for f in files:
        grouped[key_of_month_value(f.partition_values[partition_column])].append(f)
    return {m: MonthFigures.of(grouped[m]) for m in months}


_MONTHS_SCHEMA = TableSchema(
    columns=[
        TableColumn("month", "string"),
        TableColumn("rows", "int"),
        TableColumn("files", "int"),
        TableColumn("bytes", "int"),
    ]
)


def months_table(by_month: Mapping[str, MonthFigures]) -> MetadataValue:
    """The write's months as one table, for the run's own view of a write of several months
    (its output's event in the run's log, shared by every month)."""
    return MetadataValue.table(
        [
            TableRecord({"month": m, "rows": f.rows, "files": f.files, "bytes": f.bytes})
            for m, f in by_month.items()
        ],
        schema=_MONTHS_SCHEMA,
    )


def _add_month_metadata(context: OutputContext, month: str, metadata: Mapping[str, object]) -> None:
    """Metadata for the materialization of one month only.

    `OutputContext.add_output_metadata` reaches every month's materialization alike; the step's
    context records metadata for one partition (`add_asset_metadata` with ``partition_key``,
    which Dagster merges over the output's metadata for that partition's materialization). An
    output context built outside a step (a direct test of the IO manager) has no step and no
    materialization to add to.
    """
    try:
        step = context.step_context
    except DagsterInvariantViolationError:
        return
    step.add_asset_metadata(metadata, asset_key=context.asset_key, partition_key=month)


def _provenance(context: OutputContext, write: _Write) -> dict[str, str]:
    """Who wrote the commit, recorded in it: the run, the asset and the months of the window."""
    window = f"{write.months[0]}...{write.months[-1]}" if write.months else "all"
    return {
        "dagster_run_id": context.run_id,
        "dagster_asset_key": context.asset_key.to_user_string(),
        "dagster_partitions": window,
    }


def _summarise(output: _Output, write: _Write, files: Sequence[DataFile]) -> dict[str, str]:
    """The commit's record of the totals the output computed per month while being written,
    each tied to the files it covers (`medallion_assets.delta.month_summaries`); nothing when the
    output computed none or the table has no months."""
    if output.summaries is None or not write.partition_column:
        return {}
    summaries = output.summaries()
    if not summaries:
        return {}
    months = write.months or []
    return {
        MONTH_SUMMARIES: encode(
            {m: v for m, v in summaries.items() if m in months},
            files_by_month((f.path for f in files), write.partition_column),
        )
    }


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
