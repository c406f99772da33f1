"""Retries: a transient failure is retried after growing, jittered waits and heals; a
deterministic one fails at once.

Transient failures are injected for real, through resources the bronze asset really uses: a
landing directory whose share is unreachable for the first attempts, and an IO manager whose
connection drops right after its first commit. Spark, Delta and Dagster's retry machinery run
unchanged, except for the clock of Dagster's in-process executor: its waits between attempts
are taken on a clock the test holds (`ExecutorClock`), so that a retry's 35 s cost nothing and
each wait is seen exactly as Dagster asked for it.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterEventType, DagsterInstance, job, materialize, op
from dagster._core.execution.plan import active as active_execution
from deltalake import DeltaTable

from medallion_assets.assets.bronze import bronze_events
from medallion_assets.io.delta_io_manager import SparkDeltaIOManager
from medallion_assets.resources.landing import LandingDirectory
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.resources.thresholds import QualityThresholds
from medallion_assets.resources.warehouse import Warehouse
from medallion_assets.retries import (
    BASE_DELAY_SECONDS,
    INTERRUPTED,
    MAX_RETRIES,
    SPARK_RETRY_POLICY,
    deterministic_failure,
    interrupts_stop_the_step,
    stops_when_interrupted,
)
from medallion_assets_tests.source_lines import good_lines, retried_steps, write_source


class ExecutorClock:
    """The clock of Dagster's in-process executor (`dagster._core.execution.plan.active`, which
    reads ``time.time()`` to know when a step waiting to retry is due and ``time.sleep()``s until
    then): it stands still except when the executor sleeps, and records each sleep."""

    def __init__(self) -> None:
        self.now = time.time()
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> ExecutorClock:
    clock = ExecutorClock()
    monkeypatch.setattr(active_execution, "time", clock)
    return clock


def _take_one(counter: str) -> bool:
    """True while the count in the file `counter` is above zero, counting it down."""
    path = Path(counter)
    left = int(path.read_text())
    if left <= 0:
        return False
    path.write_text(str(left - 1))
    return True


def failures(tmp_path: Path, count: int) -> str:
    """A counter of the failures still to inject (a file: it must outlive each attempt)."""
    path = tmp_path / "failures-left"
    path.write_text(str(count))
    return str(path)


class LandingShareDown(LandingDirectory):
    """The landing directory as a network share that is unreachable for the first attempts."""

    failures_left: str

    def source_file(self, partition_key: str) -> Path:
        if _take_one(self.failures_left):
            raise ConnectionError("landing share unreachable (injected)")
        return super().source_file(partition_key)


class StorageDropsOnceAfterCommit(SparkDeltaIOManager):
    """A warehouse whose connection drops right after the first commit of the run."""

    failures_left: str

    def handle_output(self, context, obj) -> None:
        super().handle_output(context, obj)
        if _take_one(self.failures_left):
            raise ConnectionError("storage connection reset (injected, after the first commit)")


def materialize_bronze(landing: LandingDirectory, io_manager: SparkDeltaIOManager):
    return materialize(
        [bronze_events],
        resources={
            "spark": io_manager.spark,
            "landing": landing,
            "warehouse": io_manager.warehouse,
            "thresholds": QualityThresholds(),
            "io_manager": io_manager,
        },
        partition_key="2019-10",
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def io_manager(warehouse_dir: Path) -> SparkDeltaIOManager:
    return SparkDeltaIOManager(
        spark=SparkSessionResource(), warehouse=Warehouse(root_uri=str(warehouse_dir))
    )


def retry_waits(result) -> list[float]:
    """The wait before each retry, as Dagster computed it from the retry policy."""
    return [
        e.event_specific_data.seconds_to_wait
        for e in result.all_events
        if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY
    ]


def attempts(result, step: str) -> int:
    starts = (DagsterEventType.STEP_START, DagsterEventType.STEP_RESTARTED)
    return sum(1 for e in result.all_events if e.event_type in starts and e.step_key == step)


def jitter_bounds(retry: int) -> tuple[float, float]:
    """Where the wait before retry number `retry` (1, 2, 3) must lie: exponential backoff from
    the base delay, (2^n - 1) x 5 s = 5, 15, 35 s, give or take up to the base delay."""
    centre = (2**retry - 1) * BASE_DELAY_SECONDS
    return centre - BASE_DELAY_SECONDS, centre + BASE_DELAY_SECONDS


def test_bronze_silver_and_gold_steps_carry_the_spark_retry_policy(defs):
    job_def = defs.resolve_job_def("medallion_monthly")
    policies = {node.name: node.definition.retry_policy for node in job_def.graph.nodes}
    assert len(policies) == 3  # bronze, silver, gold: one step each, checks inside
    assert set(policies.values()) == {SPARK_RETRY_POLICY}


@pytest.mark.graph
def test_a_step_failing_three_times_is_retried_three_times_after_growing_jittered_waits(
    landing_dir, warehouse_dir, tmp_path, clock, spark
):
    write_source(landing_dir, "2019-Oct.csv", good_lines(50))
    landing = LandingShareDown(path=str(landing_dir), failures_left=failures(tmp_path, 3))

    result = materialize_bronze(landing, io_manager(warehouse_dir))

    assert result.success
    assert retried_steps(result) == ["bronze_events"] * MAX_RETRIES == ["bronze_events"] * 3
    assert attempts(result, "bronze_events") == 4
    waits = retry_waits(result)
    assert len(waits) == 3
    for retry, wait in enumerate(waits, start=1):
        low, high = jitter_bounds(retry)
        assert low <= wait <= high, (retry, waits)
    assert waits == sorted(waits)  # about 5, 15 and 35 s
    # The executor waited exactly what it computed before each new attempt, and only then.
    assert clock.sleeps == pytest.approx(waits, abs=1e-3)
    assert pl.read_delta(str(warehouse_dir / "bronze" / "events")).height == 50


@pytest.mark.graph
def test_a_step_still_failing_after_its_three_retries_fails_the_run(
    landing_dir, warehouse_dir, tmp_path, clock, spark
):
    write_source(landing_dir, "2019-Oct.csv", good_lines(50))
    landing = LandingShareDown(path=str(landing_dir), failures_left=failures(tmp_path, 4))

    result = materialize_bronze(landing, io_manager(warehouse_dir))

    assert not result.success
    assert attempts(result, "bronze_events") == 4  # the first and three retries, no fifth
    assert len(retry_waits(result)) == len(clock.sleeps) == 3
    failure = result.failure_data_for_node("bronze_events")
    assert "landing share unreachable" in failure.error.to_string()
    assert not (warehouse_dir / "bronze" / "events").exists()


@pytest.mark.graph
def test_a_retry_after_a_partial_write_replaces_the_month_rather_than_adding_to_it(
    landing_dir, warehouse_dir, tmp_path, clock, spark
):
    bad = ["2019-10-05 00:00:00 UTC,click,1,2,,a,1.00,5,s", "not a row"]
    write_source(landing_dir, "2019-Oct.csv", good_lines(50) + bad)
    storage = StorageDropsOnceAfterCommit(
        spark=SparkSessionResource(),
        warehouse=Warehouse(root_uri=str(warehouse_dir)),
        failures_left=failures(tmp_path, 1),
    )

    result = materialize_bronze(LandingDirectory(path=str(landing_dir)), storage)

    assert result.success
    assert retried_steps(result) == ["bronze_events"]
    (wait,) = retry_waits(result)
    assert jitter_bounds(1)[0] <= wait <= jitter_bounds(1)[1]
    # The first attempt committed one table, then failed; the retry wrote both tables again.
    rejected = warehouse_dir / "bronze" / "events_rejected"
    events = warehouse_dir / "bronze" / "events"
    assert sorted([DeltaTable(str(rejected)).version(), DeltaTable(str(events)).version()]) == [
        0,
        1,
    ]
    assert sorted(pl.read_delta(str(rejected))["line"]) == sorted(bad)
    assert pl.read_delta(str(events)).height == 50


@pytest.mark.graph
def test_a_missing_file_fails_bronze_at_once_without_a_retry(
    landing_dir, warehouse_dir, clock, spark
):
    result = materialize_bronze(LandingDirectory(path=str(landing_dir)), io_manager(warehouse_dir))

    assert not result.success
    assert retried_steps(result) == [] and clock.sleeps == []
    assert attempts(result, "bronze_events") == 1
    assert (
        "No source file for month 2019-10"
        in result.failure_data_for_node("bronze_events").user_failure_data.description
    )


@pytest.mark.parametrize(
    "error, expected_attempts",
    [
        (ConnectionError("transient"), 1 + MAX_RETRIES),
        (deterministic_failure("the same input fails the same way"), 1),
    ],
    ids=["transient", "deterministic"],
)
def test_the_policy_retries_any_error_but_a_deterministic_failure(
    error, expected_attempts, clock
):
    """The rule itself, on an op that only raises: `deterministic_failure` overrides the policy,
    any other error is retried up to the policy's maximum."""

    @op(retry_policy=SPARK_RETRY_POLICY)
    def always_fails():
        raise error

    @job
    def failing():
        always_fails()

    result = failing.execute_in_process(raise_on_error=False)

    assert not result.success
    assert attempts(result, "always_fails") == expected_attempts
    assert len(clock.sleeps) == expected_attempts - 1


@pytest.mark.parametrize("guarded", [False, True], ids=["bare step", "interrupts_stop_the_step"])
def test_an_interrupt_is_retried_by_dagster_unless_the_step_stops_on_it(guarded, clock):
    """Ctrl-C inside a step with a retry policy: as Dagster 1.13 is, the step is retried and the
    run succeeds as if nobody had asked it to stop; under `interrupts_stop_the_step` (what the IO
    manager and the Spark assets run under) the step fails once, saying why, and the run fails.
    Should Dagster stop retrying interrupts, the first case fails and the guard can go."""
    interrupts = []

    @op(retry_policy=SPARK_RETRY_POLICY)
    def interrupted_once():
        if not interrupts:
            interrupts.append(1)
            with interrupts_stop_the_step() if guarded else contextlib.nullcontext():
                raise KeyboardInterrupt

    @job
    def interrupted():
        interrupted_once()

    result = interrupted.execute_in_process(raise_on_error=False)

    if guarded:
        assert not result.success
        assert attempts(result, "interrupted_once") == 1
        [failure] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
        assert INTERRUPTED in str(failure.event_specific_data.error)
    else:
        assert result.success
        assert attempts(result, "interrupted_once") == 2


def test_a_wrapped_step_body_keeps_its_signature_and_its_yields():
    """`stops_when_interrupted` on a generator body: Dagster still sees the body's parameters,
    and everything it yields comes through."""

    def body(context, upstream):
        yield upstream + 1
        yield upstream + 2

    wrapped = stops_when_interrupted(body)
    assert list(inspect.signature(wrapped).parameters) == ["context", "upstream"]
    assert inspect.isgeneratorfunction(wrapped)
    assert list(wrapped(None, 1)) == [2, 3]
    assert stops_when_interrupted(lambda value: value * 2)(21) == 42
