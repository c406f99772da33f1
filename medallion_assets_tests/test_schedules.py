"""`medallion_monthly_schedule`: monthly, stopped by default, always the month that just ended."""

import datetime as dt

import polars as pl
import pytest
from dagster import DagsterInstance, DefaultScheduleStatus, build_schedule_context

from medallion_assets.automation.schedules import SCHEDULE_NAME
from medallion_assets.tools.sample_data import generate_month

UTC = dt.timezone.utc

# Raised inside dagster's own build_schedule_from_partitioned_job, not by this project.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Function `JobDefinition.run_request_for_partition` is deprecated:DeprecationWarning"
)


def requests_at(defs, when: dt.datetime):
    schedule = defs.resolve_schedule_def(SCHEDULE_NAME)
    data = schedule.evaluate_tick(build_schedule_context(scheduled_execution_time=when))
    return list(data.run_requests or [])


def test_it_is_a_monthly_schedule_of_the_whole_graph_stopped_by_default(defs):
    definition = defs.resolve_schedule_def("medallion_monthly_schedule")
    assert definition.job_name == "medallion_monthly"
    assert definition.default_status == DefaultScheduleStatus.STOPPED
    # minute 0, 06:00, on the 1st of every month, in the partitions' time zone
    assert definition.cron_schedule == "0 6 1 * *"
    assert definition.execution_timezone == "UTC"


@pytest.mark.parametrize(
    "tick, month",
    [
        (dt.datetime(2019, 11, 1, 6, tzinfo=UTC), "2019-10"),  # the first partition
        (dt.datetime(2020, 1, 1, 6, tzinfo=UTC), "2019-12"),  # across a year
        (dt.datetime(2024, 3, 1, 6, tzinfo=UTC), "2024-02"),  # a leap February
    ],
)
def test_each_tick_requests_the_previous_month_once(defs, tick, month):
    [request] = requests_at(defs, tick)
    assert request.partition_key == month
    assert request.run_key == month  # a second tick for the same month is deduplicated


def test_a_tick_before_the_first_month_has_ended_requests_nothing(defs):
    assert requests_at(defs, dt.datetime(2019, 10, 15, 6, tzinfo=UTC)) == []


@pytest.mark.graph
def test_the_requested_run_materializes_that_month(defs, landing_dir, warehouse_dir, spark):
    for month in ("2019-10", "2019-11"):
        generate_month(month, 2000, landing_dir, seed=3)
    [request] = requests_at(defs, dt.datetime(2019, 12, 1, 6, tzinfo=UTC))
    result = defs.resolve_job_def("medallion_monthly").execute_in_process(
        instance=DagsterInstance.ephemeral(),
        partition_key=request.partition_key,
        tags=dict(request.tags),
    )
    assert result.success
    for table in ("bronze/events", "silver/events", "gold/revenue_by_brand", "gold/daily_funnel"):
        months = pl.read_delta(str(warehouse_dir / table))["month"].unique().to_list()
        assert months == [dt.date(2019, 11, 1)], table
