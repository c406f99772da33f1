"""Retries: a transient failure heals on the next attempt, a deterministic one fails at once.

Transient failures are injected for real, through resources the bronze asset really uses: a
landing directory whose share is unreachable on the first attempt, and an IO manager whose
connection drops right after its first commit. Spark, Delta and Dagster's retry machinery run
unchanged.
"""

from pathlib import Path

import polars as pl
from dagster import DagsterInstance, materialize
from deltalake import DeltaTable

from medallion_assets.assets.bronze import bronze_events
from medallion_assets.definitions import defs
from medallion_assets.io.delta_io_manager import SparkDeltaIOManager
from medallion_assets.resources.landing import LandingDirectory
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.resources.warehouse import Warehouse
from medallion_assets.retries import BASE_DELAY_SECONDS, MAX_RETRIES, SPARK_RETRY_POLICY
from medallion_assets_tests.source_lines import good_lines, retried_steps, write_source


def _take(marker: str) -> bool:
    """True exactly once: the first attempt finds the marker and consumes it."""
    try:
        Path(marker).unlink()
    except FileNotFoundError:
        return False
    return True


class LandingShareDownOnce(LandingDirectory):
    """The landing directory as a network share that is unreachable on the first attempt."""

    fail_marker: str

    def source_file(self, partition_key: str) -> Path:
        if _take(self.fail_marker):
            raise ConnectionError("landing share unreachable (injected, first attempt only)")
        return super().source_file(partition_key)


class StorageDropsOnceAfterCommit(SparkDeltaIOManager):
    """A warehouse whose connection drops right after the first commit of the run."""

    fail_marker: str

    def handle_output(self, context, obj) -> None:
        super().handle_output(context, obj)
        if _take(self.fail_marker):
            raise ConnectionError("storage connection reset (injected, after the first commit)")


def materialize_bronze(landing: LandingDirectory, io_manager: SparkDeltaIOManager, spark):
    return materialize(
        [bronze_events],
        resources={
            "spark": spark,
            "landing": landing,
            "warehouse": io_manager.warehouse,
            "io_manager": io_manager,
        },
        partition_key="2019-10",
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def retry_waits(result) -> list[float]:
    return [
        e.event_specific_data.seconds_to_wait
        for e in result.all_events
        if e.event_type_value == "STEP_UP_FOR_RETRY"
    ]


def test_every_spark_step_retries_three_times_with_exponential_backoff_and_jitter():
    job = defs.resolve_job_def("medallion_monthly")
    policies = {node.name: node.definition.retry_policy for node in job.graph.nodes}
    assert len(policies) == 3  # bronze, silver, gold: one step each, checks inside
    assert set(policies.values()) == {SPARK_RETRY_POLICY}
    assert SPARK_RETRY_POLICY.max_retries == MAX_RETRIES == 3
    assert SPARK_RETRY_POLICY.backoff.value == "EXPONENTIAL"
    assert SPARK_RETRY_POLICY.jitter.value == "PLUS_MINUS"


def test_a_transient_failure_on_the_first_attempt_is_retried_and_succeeds(
    landing_dir, warehouse_dir, tmp_path, spark
):
    write_source(landing_dir, "2019-Oct.csv", good_lines(50))
    marker = tmp_path / "fail-once"
    marker.touch()
    session = SparkSessionResource()

    result = materialize_bronze(
        LandingShareDownOnce(fail_marker=str(marker)),
        SparkDeltaIOManager(spark=session, warehouse=Warehouse()),
        session,
    )

    assert result.success
    assert retried_steps(result) == ["bronze_events"]
    # First retry: 5 s base delay, plus or minus up to the base delay of jitter.
    (wait,) = retry_waits(result)
    assert 0 <= wait <= 2 * BASE_DELAY_SECONDS
    assert pl.read_delta(str(warehouse_dir / "bronze" / "events")).height == 50
    assert DeltaTable(str(warehouse_dir / "bronze" / "events")).version() == 0


def test_a_retry_after_a_partial_write_replaces_the_month_rather_than_adding_to_it(
    landing_dir, warehouse_dir, tmp_path, spark
):
    bad = ["2019-10-05 00:00:00 UTC,click,1,2,,a,1.00,5,s", "not a row"]
    write_source(landing_dir, "2019-Oct.csv", good_lines(50) + bad)
    marker = tmp_path / "fail-once"
    marker.touch()
    session = SparkSessionResource()

    result = materialize_bronze(
        LandingDirectory(),
        StorageDropsOnceAfterCommit(spark=session, warehouse=Warehouse(), fail_marker=str(marker)),
        session,
    )

    assert result.success
    assert retried_steps(result) == ["bronze_events"]
    # The first attempt committed one table, then failed; the retry wrote both tables again.
    rejected = warehouse_dir / "bronze" / "events_rejected"
    events = warehouse_dir / "bronze" / "events"
    assert sorted([DeltaTable(str(rejected)).version(), DeltaTable(str(events)).version()]) == [
        0,
        1,
    ]
    assert sorted(pl.read_delta(str(rejected))["line"]) == sorted(bad)
    assert pl.read_delta(str(events)).height == 50


def test_a_missing_file_is_not_retried(landing_dir, warehouse_dir, spark):
    session = SparkSessionResource()

    result = materialize_bronze(
        LandingDirectory(), SparkDeltaIOManager(spark=session, warehouse=Warehouse()), session
    )

    assert not result.success
    assert retried_steps(result) == []
    starts = [
        e for e in result.all_events if e.event_type_value in ("STEP_START", "STEP_RESTARTED")
    ]
    assert len(starts) == 1
    assert (
        "No source file for month 2019-10"
        in result.failure_data_for_node("bronze_events").user_failure_data.description
    )
