"""The `delta_maintenance` job and its schedule, on real tables in a temporary warehouse."""

import datetime as dt
import os
import time
import uuid
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetIn,
    BackfillPolicy,
    Config,
    DagsterInstance,
    DefaultScheduleStatus,
    Definitions,
    asset,
    build_schedule_context,
    materialize,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from deltalake import DeltaTable
from pyspark.sql import functions as F

from medallion_assets.delta.commit import commit_files, describe_file
from medallion_assets.delta.log import filesystem_for, table_version
from medallion_assets.io.delta_io_manager import SparkDeltaIOManager
from medallion_assets.maintenance import DEFAULT_RETENTION_HOURS, retention_sparing
from medallion_assets.partitions import monthly_partitions
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.resources.warehouse import Warehouse

SCHEMA = pa.schema([("value", pa.int64()), ("month", pa.date32())])
EIGHT_DAYS_AGO = time.time() - 8 * 24 * 3600


def write_file(table: Path, month: str, values: list[int], *, under: str = "") -> str:
    relative = f"{under}month={month}/part-{uuid.uuid4().hex}.parquet"
    (table / relative).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"value": pa.array(values, pa.int64())}), table / relative)
    return relative


def commit(table: Path, month_files: dict[str, list[list[int]]], read_version=None) -> int:
    fs, table_path = filesystem_for(str(table))
    files = [
        describe_file(fs, table_path, write_file(table, month, values), {"month": month})
        for month, batches in month_files.items()
        for values in batches
    ]
    return commit_files(str(table), SCHEMA, files, partition_by=["month"],
                        replace_partitions=list(month_files), read_version=read_version)


def backdate(path: Path) -> None:
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (EIGHT_DAYS_AGO, EIGHT_DAYS_AGO))


def files_on_disk(table: Path) -> set[str]:
    return {str(p.relative_to(table)) for p in table.rglob("*.parquet")}


def live(table: Path) -> set[str]:
    return set(DeltaTable(str(table)).get_add_actions(flatten=True).column("path").to_pylist())


def contents(table: Path) -> pl.DataFrame:
    frame = pl.read_delta(str(table))
    return frame.sort(frame.columns)


def run_maintenance(defs: Definitions, instance: DagsterInstance | None = None, **config):
    job = defs.resolve_job_def("delta_maintenance")
    return job.execute_in_process(
        run_config={"ops": {"maintain_delta_tables": {"config": config}}},
        instance=instance or DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def output_metadata(result) -> dict:
    (event,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in event.event_specific_data.metadata.items()}


def test_only_orphans_older_than_the_retention_are_removed(warehouse_dir, defs):
    table = warehouse_dir / "bronze" / "events"
    commit(table, {"2019-10-01": [[1, 2]], "2019-11-01": [[3]]})
    rows = contents(table)
    # A crash long ago: a file moved into a month directory but never committed, and its staging
    # directory. A write in progress now: the same kinds of files, fresh.
    old_orphan = write_file(table, "2019-10-01", [99])
    backdate(table / old_orphan)
    old_staging = table / "_staging" / "old-write"
    write_file(old_staging, "2019-10-01", [98])
    backdate(old_staging)
    fresh_orphan = write_file(table, "2019-11-01", [97])
    fresh_staging = table / "_staging" / "running-write"
    write_file(fresh_staging, "2019-11-01", [96])
    version = DeltaTable(str(table)).version()

    dry = run_maintenance(defs, dry_run=True)
    assert dry.success
    assert output_metadata(dry)["tables"]["bronze/events"]["files_vacuumed"] == 1
    assert output_metadata(dry)["tables"]["bronze/events"]["staging_dirs_removed"] == 1
    assert (table / old_orphan).exists() and old_staging.exists()
    assert DeltaTable(str(table)).version() == version

    result = run_maintenance(defs)  # the defaults: 168 h
    assert result.success
    assert not (table / old_orphan).exists() and not old_staging.exists()
    assert (table / fresh_orphan).exists() and fresh_staging.exists()
    assert contents(table).equals(rows)
    metadata = output_metadata(result)
    assert metadata["tables"]["bronze/events"]["files_vacuumed"] == 1
    assert metadata["tables"]["bronze/events"]["staging_dirs_removed"] == 1
    (observation,) = result.asset_observations_for_node("maintain_delta_tables")
    assert observation.asset_key.path == ["bronze", "events"]
    assert observation.metadata["files_vacuumed"].value == 1


def test_a_retention_below_seven_days_is_refused_unless_allowed(warehouse_dir, defs):
    table = warehouse_dir / "silver" / "events"
    commit(table, {"2019-10-01": [[1]]})
    orphan = write_file(table, "2019-10-01", [99])

    refused = run_maintenance(defs, retention_hours=0)
    assert not refused.success
    error = refused.get_step_failure_events()[0].step_failure_data
    assert "Refusing a retention of 0 h" in error.error.message
    assert (table / orphan).exists()

    allowed = run_maintenance(defs, retention_hours=0, allow_short_retention=True)
    assert allowed.success
    assert not (table / orphan).exists()
    assert files_on_disk(table) == live(table)


def test_compaction_is_not_a_conflict_for_a_write_in_progress(tmp_path, defs):
    """A compaction commits no new data: a write that started before it still commits."""
    table = tmp_path / "wh" / "gold" / "t"
    commit(table, {"2019-10-01": [[1], [2], [3]], "2019-11-01": [[4]]})
    started_from = table_version(str(table))
    result = run_maintenance(defs, warehouse_dir=str(tmp_path / "wh"))
    assert result.success
    assert output_metadata(result)["tables"]["gold/t"]["files_compacted"] == 3
    assert DeltaTable(str(table)).version() == started_from + 1
    assert commit(table, {"2019-10-01": [[10]]}, read_version=started_from) == started_from + 2
    assert sorted(pl.read_delta(str(table))["value"].to_list()) == [4, 10]


@asset(key=["test", "scattered"], partitions_def=monthly_partitions,
       metadata={"partition_expr": "month"}, backfill_policy=BackfillPolicy.single_run())
def scattered(spark: SparkSessionResource):
    """Two months of rows spread over many small files (six per month)."""
    frame = spark.spark_session.range(600).select(
        F.col("id").alias("value"),
        (F.col("id") / 100).cast("decimal(12,2)").alias("price"),
        F.timestamp_seconds(F.lit(1_570_000_000) + F.col("id") * 997).alias("at"),
        F.when(F.col("id") % 2 == 0, F.lit(dt.date(2019, 10, 1)))
        .otherwise(F.lit(dt.date(2019, 11, 1))).alias("month"),
    )
    return frame.repartition(6)


@asset(key=["test", "copied"], ins={"scattered": AssetIn(key=["test", "scattered"])},
       partitions_def=monthly_partitions, metadata={"partition_expr": "month"},
       backfill_policy=BackfillPolicy.single_run())
def copied(scattered):
    return scattered


def test_compaction_leaves_fewer_files_and_the_same_rows_for_every_reader(tmp_path, spark, defs):
    warehouse = tmp_path / "wh"
    session = SparkSessionResource()
    store = Warehouse(root_uri=str(warehouse))
    resources = {
        "spark": session,
        "warehouse": store,
        "io_manager": SparkDeltaIOManager(spark=session, warehouse=store),
    }
    tags = {ASSET_PARTITION_RANGE_START_TAG: "2019-10", ASSET_PARTITION_RANGE_END_TAG: "2019-11"}
    assert materialize([scattered], resources=resources, tags=tags,
                       instance=DagsterInstance.ephemeral()).success
    table = warehouse / "test" / "scattered"
    before = contents(table)
    assert before.height == 600
    files_before = live(table)
    assert len(files_before) == 12

    result = run_maintenance(
        defs, warehouse_dir=str(warehouse), retention_hours=0, allow_short_retention=True
    )
    assert result.success
    report = output_metadata(result)["tables"]["test/scattered"]
    assert report["files_compacted"] == 12 and report["files_written_by_compaction"] == 2
    assert report["live_files_before"] == 12 and report["live_files_after"] == 2
    assert sorted(report["partitions_compacted"]) == ["2019-10-01", "2019-11-01"]
    assert len(live(table)) == 2 and not live(table) & files_before
    assert files_on_disk(table) == live(table)  # replaced files vacuumed (retention 0)
    assert contents(table).equals(before)
    operations = [h["operation"] for h in DeltaTable(str(table)).history(4)]
    assert operations == ["VACUUM END", "VACUUM START", "OPTIMIZE", "OPTIMIZE"]  # one per month

    # Spark, through the IO manager, reads the compacted files just as well.
    assert materialize([scattered.to_source_asset(), copied], resources=resources, tags=tags,
                       instance=DagsterInstance.ephemeral()).success
    assert contents(warehouse / "test" / "copied").equals(before)


def test_the_schedule_is_weekly_stopped_by_default_and_runs_the_job(defs):
    schedule = defs.resolve_schedule_def("delta_maintenance_schedule")
    assert schedule.job_name == "delta_maintenance"
    assert schedule.default_status == DefaultScheduleStatus.STOPPED
    assert schedule.cron_schedule == "0 3 * * 0" and schedule.execution_timezone == "UTC"
    tick = schedule.evaluate_tick(
        build_schedule_context(
            scheduled_execution_time=dt.datetime(2024, 1, 7, 3, tzinfo=dt.timezone.utc)
        )
    )
    (request,) = tick.run_requests
    assert request.run_config in ({}, None)  # the safe defaults


class MonthRows(Config):
    rows: int


@asset(key=["test", "monthly"], partitions_def=monthly_partitions,
       metadata={"partition_expr": "month"})
def monthly(config: MonthRows, spark: SparkSessionResource):
    """October as ``config.rows`` rows, written by the project's IO manager."""
    return spark.spark_session.range(config.rows).select(
        F.col("id").alias("value"), F.lit(dt.date(2019, 10, 1)).alias("month")
    ).repartition(2)


def monthly_run(warehouse: Path, instance: DagsterInstance, rows: int):
    session = SparkSessionResource()
    store = Warehouse(root_uri=str(warehouse))
    return materialize(
        [monthly],
        resources={"spark": session, "warehouse": store,
                   "io_manager": SparkDeltaIOManager(spark=session, warehouse=store)},
        partition_key="2019-10",
        run_config={"ops": {"test__monthly": {"config": {"rows": rows}}}},
        instance=instance,
        raise_on_error=False,
    )


# Slow: the write and the maintenance run share an instance on disk, whose compute logs Dagster
# captures with a `tail` process.
@pytest.mark.slow
def test_a_vacuum_during_a_write_deletes_no_file_its_commit_names(
    tmp_path, spark, defs, monkeypatch
):
    """Maintenance may run while a run writes: the weekly schedule does not wait for the landing
    sensor's runs. The write's files sit in the month directory, named by no commit, until the
    write commits; a vacuum that removed them then would leave the new version pointing at
    missing files — a table no reader can read.

    The race needs a retention shorter than the write's files are old. They are seconds old, and
    delta-rs counts retention in whole hours, so only a retention of 0 h can reach them: the test
    uses it (allowed explicitly, as an operator clearing a crash's leftovers would do). The
    maintenance run happens at the pinned moment — files moved into the month directory, commit
    not made — and both runs are in one Dagster instance, as the schedule's run and the sensor's
    are under `make dev`.
    """
    warehouse = tmp_path / "wh"
    table = warehouse / "test" / "monthly"
    home = tmp_path / "dagster_home"
    home.mkdir()
    with DagsterInstance.from_config(str(home)) as instance:
        assert monthly_run(warehouse, instance, 300).success  # the previous version
        # A crash's leftover from two hours before the write below began: no run in progress
        # can have written it, so maintenance still removes it.
        old_orphan = write_file(table, "2019-10-01", [99])
        two_hours_ago = time.time() - 2 * 3600
        os.utime(table / old_orphan, (two_hours_ago, two_hours_ago))

        import medallion_assets.io.delta_io_manager as io_manager

        commit_files = io_manager.commit_files
        seen: dict[str, object] = {}

        def vacuum_then_commit(*args, **kwargs):
            seen["in_flight"] = files_on_disk(table) - live(table) - {old_orphan}
            seen["maintenance"] = run_maintenance(
                defs, instance, warehouse_dir=str(warehouse), retention_hours=0,
                allow_short_retention=True,
            )
            seen["kept"] = {f for f in seen["in_flight"] if (table / f).exists()}
            return commit_files(*args, **kwargs)

        monkeypatch.setattr(io_manager, "commit_files", vacuum_then_commit)
        written = monthly_run(warehouse, instance, 500)

    assert seen["maintenance"].success
    assert seen["in_flight"]  # the write's files, moved in, named by no commit yet
    assert seen["kept"] == seen["in_flight"]
    assert not (table / old_orphan).exists()
    assert written.success
    latest = live(table)
    assert latest >= seen["in_flight"]
    assert all((table / f).exists() for f in latest)
    assert sorted(pl.read_delta(str(table))["value"].to_list()) == list(range(500))


def test_a_short_retention_covers_every_unfinished_run_but_never_exceeds_the_default():
    """The rule that spares a write in progress: files written since the oldest unfinished run
    started are younger than the retention applied (whole hours, one more for delta-rs's later
    clock); a run stuck for longer than the default retention does not hold cleanup up beyond
    it, and a configured retention is never shortened."""
    now = dt.datetime(2024, 1, 7, 3, tzinfo=dt.timezone.utc)
    ago = lambda **kw: now - dt.timedelta(**kw)  # noqa: E731
    assert retention_sparing(0, None, now) == 0  # nothing running: the caller's word
    assert retention_sparing(0, now, now) == 1  # queued, nothing written yet
    assert retention_sparing(0, ago(seconds=30), now) == 2
    assert retention_sparing(5, ago(seconds=30), now) == 5
    assert retention_sparing(0, ago(hours=72), now) == 73
    assert retention_sparing(0, ago(days=30), now) == DEFAULT_RETENTION_HOURS
    assert retention_sparing(200, ago(days=1), now) == 200
