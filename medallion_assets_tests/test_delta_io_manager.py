"""`SparkDeltaIOManager` through real Dagster materializations into a temporary warehouse."""

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetIn,
    BackfillPolicy,
    DagsterInstance,
    PartitionKeyRange,
    asset,
    build_output_context,
    materialize,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql import types as T

from medallion_assets.io.balanced_splits import MAX_PARTITION_BYTES_CONF
from medallion_assets.io.delta_io_manager import (
    CODEC_CONF,
    CONCURRENT_WRITERS_CONF,
    TIMESTAMP_TYPE_CONF,
    Described,
    MissingUpstreamData,
    NoRows,
    SparkDeltaIOManager,
)
from medallion_assets.partitions import month_start, monthly_partitions
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.resources.warehouse import Warehouse

# Rows each month's materialization writes; tests change it to see what a re-run replaces.
VALUES: dict[str, list[int]] = {}
ROWS_OUTSIDE_WINDOW = {"enabled": False}
# The test table, monthly-partitioned, written by a single run for a range of months.
NUMBERS_TABLE = {
    "key": ["test", "numbers"],
    "partitions_def": monthly_partitions,
    "metadata": {"partition_expr": "month"},
    "backfill_policy": BackfillPolicy.single_run(),
}


@asset(**NUMBERS_TABLE)
def numbers(context, spark: SparkSessionResource):
    return numbers_frame(context, spark)


def numbers_frame(context, spark: SparkSessionResource):
    rows = []
    for key in context.partition_keys:
        month = month_start(key)
        rows += [
            (value, month, dt.datetime(month.year, month.month, 2, tzinfo=dt.timezone.utc))
            for value in VALUES[key]
        ]
    if ROWS_OUTSIDE_WINDOW["enabled"]:
        rows.append((-1, dt.date(2021, 1, 1), dt.datetime(2021, 1, 2, tzinfo=dt.timezone.utc)))
    return spark.spark_session.createDataFrame(rows, "value bigint, month date, at timestamp")


NO_ROWS = {"enabled": False}


@asset(**NUMBERS_TABLE)
def numbers_or_no_rows(context, spark: SparkSessionResource):
    """`numbers`, or, when NO_ROWS says so, the months declared empty without a DataFrame."""
    if NO_ROWS["enabled"]:
        return NoRows(T.StructType.fromDDL("value bigint, month date, at timestamp"))
    return numbers_frame(context, spark)


@asset(
    key=["test", "doubled"],
    ins={"numbers": AssetIn(key=["test", "numbers"])},
    partitions_def=monthly_partitions,
    metadata={"partition_expr": "month"},
    backfill_policy=BackfillPolicy.single_run(),
)
def doubled(numbers):
    return numbers.withColumn("value", F.col("value") * 2)


@asset(
    key=["test", "numbers"], partitions_def=monthly_partitions, metadata={"partition_expr": "month"}
)
def failing_numbers(spark: SparkSessionResource):
    frame = spark.spark_session.createDataFrame(
        [(i, dt.date(2019, 10, 1), None) for i in range(100)],
        "value bigint, month date, at timestamp",
    )
    # Fails inside the executors, in the middle of writing the Parquet files.
    return frame.withColumn(
        "value", F.when(F.col("value") < 99, F.col("value")).otherwise(F.raise_error(F.lit("boom")))
    )


@pytest.fixture
def resources(tmp_path, spark):
    return with_codec(tmp_path, None)


def with_codec(tmp_path: Path, codec: str | None) -> dict:
    """The resources of a run writing to ``tmp_path/wh`` with ``codec`` (None: the default)."""
    session = SparkSessionResource()
    options = {} if codec is None else {"parquet_codec": codec}
    warehouse = Warehouse(root_uri=str(tmp_path / "wh"), **options)
    return {
        "spark": session,
        "warehouse": warehouse,
        "io_manager": SparkDeltaIOManager(spark=session, warehouse=warehouse),
    }


def run(assets, resources, *, key=None, start=None, end=None, raise_on_error=True, instance=None):
    tags = {}
    if start:
        tags = {ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end}
    return materialize(
        assets,
        resources=resources,
        partition_key=key,
        tags=tags,
        raise_on_error=raise_on_error,
        instance=instance or DagsterInstance.ephemeral(),
    )


def table_dir(tmp_path, name="numbers") -> Path:
    return tmp_path / "wh" / "test" / name


def data_files(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in directory.rglob("*.parquet")
    }


def test_round_trip_through_an_upstream_and_a_downstream_asset(tmp_path, resources):
    VALUES.update({"2019-10": [1, 2, 3]})
    result = run([numbers, doubled], resources, key="2019-10")
    assert result.success
    frame = pl.read_delta(str(table_dir(tmp_path, "doubled"))).sort("value")
    assert frame["value"].to_list() == [2, 4, 6]
    assert frame["month"].to_list() == [dt.date(2019, 10, 1)] * 3
    assert frame.schema["at"] == pl.Datetime("us", "UTC")
    table = DeltaTable(str(table_dir(tmp_path)))
    assert table.metadata().partition_columns == ["month"]
    metadata = result.asset_materializations_for_node("test__numbers")[0].metadata
    assert metadata["dagster/row_count"].value == 3
    assert metadata["dagster/partition_row_count"].value == 3
    assert [c.name for c in metadata["dagster/column_schema"].schema.columns] == [
        "value",
        "month",
        "at",
    ]
    assert metadata["delta/version"].value == "0"  # an identifier, not a measurement
    assert metadata["delta/table_uri"].value == str(table_dir(tmp_path))
    commit = table.history(1)[0]
    assert commit["dagster_run_id"] == result.run_id
    assert commit["dagster_asset_key"] == "test/numbers"
    assert commit["dagster_partitions"] == "2019-10...2019-10"
    assert not (table_dir(tmp_path) / "_staging").exists() or not any(
        (table_dir(tmp_path) / "_staging").iterdir()
    )


def test_rematerializing_one_month_leaves_the_other_months_files_identical(tmp_path, resources):
    VALUES.update({"2019-10": [1, 2], "2019-11": [10, 20, 30]})
    run([numbers], resources, key="2019-10")
    run([numbers], resources, key="2019-11")
    november_before = {
        k: v for k, v in data_files(table_dir(tmp_path)).items() if "2019-11-01" in k
    }
    VALUES["2019-10"] = [7]
    result = run([numbers], resources, key="2019-10")
    files_after = data_files(table_dir(tmp_path))
    assert {k: v for k, v in files_after.items() if "2019-11-01" in k} == november_before
    frame = pl.read_delta(str(table_dir(tmp_path))).sort("value")
    assert frame["value"].to_list() == [7, 10, 20, 30]
    assert DeltaTable(str(table_dir(tmp_path))).version() == 2
    metadata = result.asset_materializations_for_node("test__numbers")[0].metadata
    assert (
        metadata["dagster/row_count"].value == 4
        and metadata["dagster/partition_row_count"].value == 1
    )


def test_a_month_range_is_one_commit_replacing_exactly_those_months(tmp_path, resources):
    VALUES.update({"2019-10": [1], "2019-11": [2], "2019-12": [3]})
    run([numbers], resources, start="2019-10", end="2019-12")
    assert DeltaTable(str(table_dir(tmp_path))).version() == 0
    VALUES.update({"2019-10": [100], "2019-11": [200, 201], "2019-12": [300]})
    result = run([numbers, doubled], resources, start="2019-11", end="2019-12")
    table = DeltaTable(str(table_dir(tmp_path)))
    assert table.version() == 1  # one transaction for two months
    assert table.history(1)[0]["dagster_partitions"] == "2019-11...2019-12"
    assert sorted(pl.read_delta(str(table_dir(tmp_path)))["value"].to_list()) == [1, 200, 201, 300]
    # The downstream asset read only the two months of the run.
    assert sorted(pl.read_delta(str(table_dir(tmp_path, "doubled")))["value"].to_list()) == [
        400,
        402,
        600,
    ]
    # Each month's materialization carries that month's own figures, not the run's total.
    by_month = {
        m.partition: m.metadata for m in result.asset_materializations_for_node("test__numbers")
    }
    assert set(by_month) == {"2019-11", "2019-12"}
    assert by_month["2019-11"]["dagster/partition_row_count"].value == 2
    assert by_month["2019-12"]["dagster/partition_row_count"].value == 1
    live = pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()
    for month in ("2019-11", "2019-12"):
        in_month = [p for p in live if f"month={month}-01/" in p]
        assert by_month[month]["delta/files_written"].value == str(len(in_month))
    assert by_month["2019-12"]["dagster/row_count"].value == 4  # the table's rows, every month
    # The run's own view: one table of its months.
    months = by_month["2019-11"]["months_written"].value
    assert [(r.data["month"], r.data["rows"]) for r in months.records] == [
        ("2019-11", 2),
        ("2019-12", 1),
    ]
    assert not any(isinstance(v.value, dict) for v in by_month["2019-12"].values())


def write_plans(session, table: Path) -> list[str]:
    """The physical plans of the Spark writes into `table`'s staging directory, from the
    session's SQL status store (kept whether or not the UI runs)."""
    executions = session._jsparkSession.sharedState().statusStore().executionsList()
    plans = [executions.apply(i).physicalPlanDescription() for i in range(executions.size())]
    return [p for p in plans if "InsertIntoHadoopFsRelationCommand" in p and str(table) in p]


def test_a_month_streams_to_parquet_without_sorting_its_rows_and_a_range_still_splits(
    tmp_path, resources, spark
):
    # The month column comes from local rows, not a literal: without concurrent writers Spark
    # would plan a sort of every row by month before writing.
    VALUES.update({"2019-10": list(range(50))})
    assert run([numbers], resources, key="2019-10").success
    [plan] = write_plans(spark, table_dir(tmp_path))
    assert "WriteFiles" in plan and "Sort" not in plan
    # One month is written straight into its directory, not partitioned by month, and each row
    # is checked to belong to it.
    assert "month=2019-10-01" in plan and "raise_error" in plan
    # Several months through one task: the writer falls back to sorting the rest of the task's
    # rows, and each month still gets its own files with exactly its rows.
    VALUES.update({"2019-11": list(range(100, 130)), "2019-12": list(range(200, 210))})
    assert run([numbers], resources, start="2019-10", end="2019-12").success
    frame = pl.read_delta(str(table_dir(tmp_path)))
    by_month = {
        m: sorted(v) for m, v in frame.group_by("month").agg(pl.col("value")).iter_rows()
    }
    assert by_month == {
        dt.date(2019, 10, 1): list(range(50)),
        dt.date(2019, 11, 1): list(range(100, 130)),
        dt.date(2019, 12, 1): list(range(200, 210)),
    }
    for path in DeltaTable(str(table_dir(tmp_path))).file_uris():
        month = dt.date.fromisoformat(Path(path).parent.name.removeprefix("month="))
        values = pl.read_parquet(path)["value"].to_list()
        assert values and {10 + v // 100 for v in values} == {month.month}  # 0.., 100.., 200..


def test_a_described_output_gets_metadata_from_the_rows_of_its_months_as_written(
    tmp_path, resources
):
    @asset(**NUMBERS_TABLE)
    def described_numbers(context, spark: SparkSessionResource):
        def describe(written):
            rows = written.select("value", "month").collect()
            return {
                "values": sorted(r["value"] for r in rows),
                "months": sorted({f"{r['month']:%Y-%m}" for r in rows}),
            }

        # What the metadata sees is what was written: the frame's values, doubled on the way out.
        return Described(
            numbers_frame(context, spark).withColumn("value", F.col("value") * 2), describe
        )

    VALUES.update({"2019-10": [1, 2], "2019-11": [5]})
    run([described_numbers], resources, key="2019-10")
    result = run([described_numbers], resources, key="2019-11")
    metadata = result.asset_materializations_for_node("test__numbers")[0].metadata
    # Only the run's month, though the table holds October too.
    assert metadata["values"].value == [10]
    assert metadata["months"].value == ["2019-11"]
    assert metadata["dagster/partition_row_count"].value == 1
    assert sorted(pl.read_delta(str(table_dir(tmp_path)))["value"].to_list()) == [2, 4, 10]


def test_a_write_failing_in_the_executors_leaves_the_table_and_its_files_unchanged(
    tmp_path, resources
):
    VALUES.update({"2019-10": [1, 2]})
    run([numbers], resources, key="2019-10")
    before = data_files(table_dir(tmp_path))
    result = run([failing_numbers], resources, key="2019-10", raise_on_error=False)
    assert not result.success
    assert "boom" in str(result.get_step_failure_events()[0].step_failure_data.error)
    assert DeltaTable(str(table_dir(tmp_path))).version() == 0
    assert data_files(table_dir(tmp_path)) == before
    assert sorted(pl.read_delta(str(table_dir(tmp_path)))["value"].to_list()) == [1, 2]


def test_a_failing_commit_removes_the_files_it_wrote(tmp_path, resources):
    VALUES.update({"2019-10": [1, 2]})
    run([numbers], resources, key="2019-10")
    before = data_files(table_dir(tmp_path))

    @asset(
        key=["test", "numbers"],
        partitions_def=monthly_partitions,
        metadata={"partition_expr": "month"},
    )
    def numbers_with_another_schema(spark: SparkSessionResource):
        return spark.spark_session.createDataFrame(
            [("x", dt.date(2019, 10, 1))], "value string, month date"
        )

    result = run([numbers_with_another_schema], resources, key="2019-10", raise_on_error=False)
    assert not result.success
    assert "differs from the table's" in str(
        result.get_step_failure_events()[0].step_failure_data.error
    )
    assert data_files(table_dir(tmp_path)) == before
    assert DeltaTable(str(table_dir(tmp_path))).version() == 0


def test_rows_outside_the_runs_months_are_refused(tmp_path, resources):
    VALUES.update({"2019-10": [1]})
    ROWS_OUTSIDE_WINDOW["enabled"] = True
    try:
        result = run([numbers], resources, key="2019-10", raise_on_error=False)
    finally:
        ROWS_OUTSIDE_WINDOW["enabled"] = False
    assert not result.success
    assert "outside the run's partitions" in str(
        result.get_step_failure_events()[0].step_failure_data.error
    )
    assert not (table_dir(tmp_path) / "_delta_log").exists()
    assert data_files(table_dir(tmp_path)) == {}


def test_reading_a_month_that_was_never_written_names_it(tmp_path, resources):
    VALUES.update({"2019-10": [1]})
    run([numbers], resources, key="2019-10")
    with pytest.raises(MissingUpstreamData, match="no data for 2019-11"):
        run([numbers.to_source_asset(), doubled], resources, key="2019-11")


@pytest.mark.parametrize("no_rows", [False, True], ids=["empty DataFrame", "NoRows, no Spark"])
def test_a_month_written_empty_replaces_its_rows_and_reads_as_empty(tmp_path, resources, no_rows):
    VALUES.update({"2019-10": [1, 2], "2019-11": [3]})
    NO_ROWS["enabled"] = False
    run([numbers_or_no_rows], resources, start="2019-10", end="2019-11")
    VALUES.update({"2019-10": []})
    NO_ROWS["enabled"] = no_rows
    result = run([numbers_or_no_rows, doubled], resources, key="2019-10")
    NO_ROWS["enabled"] = False
    assert result.success
    # October's rows are gone, November's stay; downstream read October as empty, not as missing.
    assert pl.read_delta(str(table_dir(tmp_path)))["value"].to_list() == [3]
    assert pl.read_delta(str(table_dir(tmp_path, "doubled"))).height == 0
    table = DeltaTable(str(table_dir(tmp_path)))
    october = table.file_uris(file_pruning_predicate=[("month", "=", "2019-10-01")])
    assert len(october) == 1  # one zero-row file marks the month as written
    records = pa.table(table.get_add_actions(flatten=True)).column("num_records").to_pylist()
    assert sorted(records) == [0, 1]
    metadata = result.asset_materializations_for_node("test__numbers")[0].metadata
    assert metadata["dagster/partition_row_count"].value == 0
    assert metadata["delta/files_written"].value == "1"
    assert "months_written" not in metadata  # one month: its own figures say it all


WRITE_SETTINGS = (
    TIMESTAMP_TYPE_CONF, CONCURRENT_WRITERS_CONF, MAX_PARTITION_BYTES_CONF, CODEC_CONF
)


def output_context(name: str, start: str, end: str):
    """The context Dagster gives the IO manager for a single-run write of months start...end."""
    return build_output_context(
        asset_key=["test", name],
        asset_partitions_def=monthly_partitions,
        asset_partition_key_range=PartitionKeyRange(start, end),
        definition_metadata={"partition_expr": "month"},
        run_id="a-run",
    )


def test_a_write_leaves_the_sessions_settings_as_it_found_them(tmp_path, resources, spark):
    # Called directly, not through a run: the Spark resource sets some of the same settings on
    # the session when a run starts, and this is about what a write leaves behind.
    io_manager, warehouse = resources["io_manager"], resources["warehouse"]
    saved = {key: spark.conf.get(key, None) for key in WRITE_SETTINGS}
    # Of the settings a write changes, one is set beforehand (its value must come back) and the
    # others are not (they must be unset again, not left at the write's values).
    spark.conf.set(TIMESTAMP_TYPE_CONF, "INT96")
    for key in WRITE_SETTINGS[1:]:
        spark.conf.unset(key)
    try:
        before = spark.conf.getAll
        at = dt.datetime(2019, 10, 2, 12, 30, tzinfo=dt.timezone.utc)
        rows = spark.createDataFrame(
            [(1, dt.date(2019, 10, 1), at), (2, dt.date(2019, 11, 1), at)],
            "value bigint, month date, at timestamp",
        )
        io_manager.handle_output(output_context("numbers", "2019-10", "2019-11"), rows)
        after_local_rows = spark.conf.getAll
        # A write that reads files also sets how they are split (`balanced_splits`).
        read = warehouse.read_months(spark, ["test", "numbers"], ["2019-10", "2019-11"])
        doubled = read.withColumn("value", F.col("value") * 2)
        io_manager.handle_output(output_context("doubled", "2019-10", "2019-11"), doubled)
        after_files = spark.conf.getAll
    finally:
        for key, value in saved.items():
            spark.conf.unset(key) if value is None else spark.conf.set(key, value)
    assert before[TIMESTAMP_TYPE_CONF] == "INT96"
    assert not set(WRITE_SETTINGS[1:]) & set(before)
    assert after_local_rows == before
    assert after_files == before
    # The writes themselves ran with their own settings: microsecond timestamps, not INT96.
    for name in ("numbers", "doubled"):
        paths = DeltaTable(str(table_dir(tmp_path, name))).file_uris()
        assert len(paths) == 2
        for path in paths:
            assert pq.read_schema(path).field("at").type == pa.timestamp("us", tz="UTC")


def codecs_of(table: Path) -> set[str]:
    """The compression of every column chunk of the table's current files, from their footers."""
    codecs = set()
    for path in DeltaTable(str(table)).file_uris():
        meta = pq.ParquetFile(path).metadata
        for group in range(meta.num_row_groups):
            row_group = meta.row_group(group)
            codecs |= {row_group.column(c).compression for c in range(row_group.num_columns)}
    return codecs


@pytest.mark.parametrize(
    "codec, footer", [(None, "SNAPPY"), ("uncompressed", "UNCOMPRESSED"), ("zstd", "ZSTD")]
)
def test_files_are_written_with_the_warehouses_codec_and_read_back_the_same(
    tmp_path, spark, codec, footer
):
    resources = with_codec(tmp_path, codec)
    # The session's own codec is left as it is; the warehouse's setting decides.
    spark.conf.set(CODEC_CONF, "gzip")
    VALUES.update({"2019-10": list(range(1_000)), "2019-11": [5, 6]})
    try:
        assert run([numbers, doubled], resources, start="2019-10", end="2019-11").success
        assert spark.conf.get(CODEC_CONF) == "gzip"
    finally:
        spark.conf.unset(CODEC_CONF)

    for name in ("numbers", "doubled"):
        assert codecs_of(table_dir(tmp_path, name)) == {footer}, name
    values = pl.read_delta(str(table_dir(tmp_path, "doubled")))["value"].sort().to_list()
    assert values == sorted(2 * v for v in VALUES["2019-10"] + VALUES["2019-11"])


def test_months_written_with_different_codecs_read_back_as_one_table(tmp_path, spark):
    VALUES.update({"2019-10": [1, 2, 3], "2019-11": [4, 5]})
    assert run([numbers], with_codec(tmp_path, "uncompressed"), key="2019-10").success
    assert run([numbers], with_codec(tmp_path, "zstd"), key="2019-11").success
    assert codecs_of(table_dir(tmp_path)) == {"UNCOMPRESSED", "ZSTD"}

    # Read as the IO manager loads an input of both months (Spark), and by delta-rs.
    read = with_codec(tmp_path, None)["warehouse"].read_months(
        spark, ["test", "numbers"], ["2019-10", "2019-11"]
    )
    assert sorted(row.value for row in read.select("value").collect()) == [1, 2, 3, 4, 5]
    assert pl.read_delta(str(table_dir(tmp_path)))["value"].sort().to_list() == [1, 2, 3, 4, 5]


def test_a_codec_spark_cannot_write_is_refused_when_the_warehouse_is_configured(tmp_path):
    with pytest.raises(ValueError, match="expected one of snappy, zstd"):
        Warehouse(root_uri=str(tmp_path), parquet_codec="brotli")
