"""A month whose data does not come by its deadline is noticed: `month_deadline_sensor`.

The rules are tested as pure functions of an injected time. The sensor itself is evaluated as the
daemon evaluates it — each tick with the previous tick's cursor, against a Dagster instance on
disk, the check runs it requests executed in that instance — with its clock moved by the test,
and its alerts posted to an HTTP server the tests start on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetMaterialization,
    DefaultSensorStatus,
    build_sensor_context,
    instance_for_test,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.base import PartitionKeyFilter
from dagster._core.storage.tags import PARTITION_NAME_TAG

from medallion_assets.automation.deadlines import (
    CHECK_JOB_NAME,
    CHECK_NAME,
    DEADLINE_TAG,
    EMAIL,
    GOLD_KEY,
    LANDING_KEY,
    REPEAT_SECONDS,
    SENSOR_NAME,
    WEBHOOK,
    DeadlineState,
    MonthDeadline,
    OverdueMonth,
    build_deadline_sensor,
    overdue_months,
    plan_tick,
)
from medallion_assets.definitions import build_defs
from medallion_assets.resources.alert_channels import AlertChannels
from medallion_assets.resources.landing import LandingDirectory
from medallion_assets.settings import Settings
from medallion_assets_tests.test_alerts import SECRET_PATH, Webhook

UTC = dt.timezone.utc
DEFAULT = MonthDeadline.of_settings(Settings())
OCT_FILES = ("2019-Oct.csv", "2019-Oct.csv.gz", "2019-10.csv", "2019-10.csv.gz")
DAY = 24 * 3600.0


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def overdue(now: str, *, files=(), built=(), first="2019-10", deadline=DEFAULT):
    return overdue_months(
        at(now),
        landing_files=set(files),
        built_months=set(built),
        first_month=first,
        deadline=deadline,
    )


# -- the deadline ------------------------------------------------------------------------------
def test_by_default_a_month_is_due_on_the_2nd_of_the_next_month_at_6_utc():
    assert DEFAULT.of("2019-10") == at("2019-11-02 06:00")
    assert DEFAULT.of("2019-12") == at("2020-01-02 06:00")  # across the year
    assert str(DEFAULT) == "2T06:00"


def test_the_deadline_setting_moves_the_day_and_time():
    deadline = MonthDeadline.of_settings(Settings(month_deadline="15T23:30"))
    assert deadline.of("2020-02") == at("2020-03-15 23:30")


def test_a_month_is_overdue_from_its_deadline_on_not_a_second_before():
    assert overdue("2019-11-02 05:59:59", first="2019-10") == []
    [month] = overdue("2019-11-02 06:00:00", first="2019-10")
    assert (month.key, month.deadline) == ("2019-10", at("2019-11-02 06:00"))


def test_an_overdue_month_without_a_file_names_every_file_name_looked_for():
    [month] = overdue("2019-11-03 00:00", files={"2019-Nov.csv", "notes.txt"})
    assert month.looked_for == OCT_FILES
    assert month.found is None
    assert month.problem() == (
        "no file for 2019-10 in the landing directory (looked for " + ", ".join(OCT_FILES) + ")"
    )


def test_a_month_whose_file_came_but_was_not_built_is_overdue_and_names_the_file():
    [month] = overdue("2019-11-03 00:00", files={"2019-10.csv.gz"})
    assert month.found == "2019-10.csv.gz"
    assert "2019-10.csv.gz is in the landing directory" in month.problem()
    assert "gold/revenue_by_brand has not been built for 2019-10" in month.problem()


def test_a_month_gold_holds_is_never_overdue_file_or_not():
    assert overdue("2020-06-01 00:00", built={"2019-10"}, first="2019-10")[0].key == "2019-11"
    assert [m.key for m in overdue("2019-12-03 00:00", built={"2019-10", "2019-11"})] == []


def test_every_month_past_its_deadline_is_listed_oldest_first_from_the_first_month_on():
    months = overdue("2020-02-02 06:00", first="2019-11", built={"2019-12"})
    assert [m.key for m in months] == ["2019-11", "2020-01"]


def test_without_a_first_month_only_deadlines_after_the_first_tick_are_watched():
    # First tick on 2026-12-05: November's deadline (12-02) had passed, December's has not.
    assert DEFAULT.first_month_due_after(at("2026-12-05 08:00")) == "2026-12"
    # First tick on 12-02 at 05:00: November's deadline is still ahead.
    assert DEFAULT.first_month_due_after(at("2026-12-02 05:00")) == "2026-11"
    assert DEFAULT.first_month_due_after(at("2026-12-02 06:00")) == "2026-12"
    # Never before the partitions' first month.
    assert DEFAULT.first_month_due_after(at("2001-01-01 00:00")) == "2019-10"


# -- the ticks' decisions ------------------------------------------------------------------------
def month(key: str, found: str | None = None) -> OverdueMonth:
    return OverdueMonth(key, DEFAULT.of(key), ("x.csv",), found)


def sent(tick, channels=(WEBHOOK,)):
    """Every due alert delivered, as the sensor marks it."""
    for key, due in tick.alerts_due.items():
        for channel in due:
            if channel in channels:
                tick.mark_sent(key, channel)
        tick.mark_alerted(key)
    return tick.state


def test_a_newly_overdue_month_gets_one_failed_check_and_one_alert_per_channel():
    tick = plan_tick(
        DeadlineState(since=0),
        [month("2019-10")],
        now=100,
        built_months=set(),
        channels=[WEBHOOK, EMAIL],
    )
    assert [m.key for m in tick.failed] == ["2019-10"]
    assert tick.alerts_due == {"2019-10": [WEBHOOK, EMAIL]}
    assert tick.passed == []


def test_an_alert_is_not_repeated_within_a_day_and_is_after_a_day():
    assert REPEAT_SECONDS == DAY
    state = sent(
        plan_tick(DeadlineState(), [month("2019-10")], now=0, built_months=(), channels=[WEBHOOK])
    )
    almost = plan_tick(state, [month("2019-10")], now=DAY - 1, built_months=(), channels=[WEBHOOK])
    assert almost.alerts_due == {} and almost.failed == []
    later = plan_tick(state, [month("2019-10")], now=DAY, built_months=(), channels=[WEBHOOK])
    assert later.alerts_due == {"2019-10": [WEBHOOK]}
    assert [m.key for m in later.failed] == ["2019-10"]  # the check's overdue time refreshed


def test_a_channel_that_failed_is_due_again_at_the_next_tick_the_other_is_not():
    tick = plan_tick(
        DeadlineState(), [month("2019-10")], now=0, built_months=(), channels=[WEBHOOK, EMAIL]
    )
    state = sent(tick, channels=(EMAIL,))  # the webhook was down
    retry = plan_tick(state, [month("2019-10")], now=60, built_months=(), channels=[WEBHOOK, EMAIL])
    assert retry.alerts_due == {"2019-10": [WEBHOOK]}


def test_a_file_arriving_late_updates_the_check_without_a_new_alert():
    state = sent(
        plan_tick(DeadlineState(), [month("2019-10")], now=0, built_months=(), channels=[WEBHOOK])
    )
    tick = plan_tick(
        state, [month("2019-10", found="2019-Oct.csv")], now=60, built_months=(), channels=[WEBHOOK]
    )
    assert [m.found for m in tick.failed] == ["2019-Oct.csv"]
    assert tick.alerts_due == {}


def test_a_month_built_after_its_deadline_passes_its_check_and_is_forgotten():
    state = sent(
        plan_tick(
            DeadlineState(),
            [month("2019-10"), month("2019-11")],
            now=0,
            built_months=(),
            channels=[WEBHOOK],
        )
    )
    tick = plan_tick(
        state, [month("2019-11")], now=60, built_months={"2019-10"}, channels=[WEBHOOK]
    )
    assert tick.passed == ["2019-10"]
    assert set(tick.state.months) == {"2019-11"}
    later = plan_tick(tick.state, [], now=2 * DAY, built_months={"2019-10"}, channels=[WEBHOOK])
    assert later.passed == [] and later.alerts_due == {}


def test_the_state_survives_the_cursor_and_an_unreadable_cursor_starts_afresh():
    state = sent(
        plan_tick(
            DeadlineState(since=5.0), [month("2019-10")], now=7, built_months=(), channels=[WEBHOOK]
        )
    )
    again = DeadlineState.from_cursor(state.to_cursor())
    assert again == state
    assert again.months["2019-10"].sent == {WEBHOOK: 7} and again.months["2019-10"].alerts == 1
    for cursor in (
        None,
        "",
        "not json",
        "[]",
        json.dumps({"version": 99, "months": {}}),
        json.dumps({"version": 1, "since": 1, "months": {"2019-10": {}}}),
    ):
        assert DeadlineState.from_cursor(cursor) == DeadlineState()


# -- the sensor, tick by tick ----------------------------------------------------------------
class Ticks:
    """The deadline sensor evaluated as the daemon evaluates it: each tick with the previous
    tick's cursor, the check runs it requests executed in the instance; at the time `now`, which
    only the test moves (the check runs judge on the real clock, later than any `now` here)."""

    def __init__(self, instance, landing: Path, alerts: AlertChannels, *, first_month, now):
        self.instance = instance
        self.defs = build_defs(
            Settings(landing_dir=str(landing), warehouse_dir=str(landing.parent / "warehouse"))
        )
        self.requested: list[tuple[str, str]] = []
        self.now = now.timestamp()
        self.sensor = build_deadline_sensor(
            deadline=DEFAULT, first_month=first_month, clock=lambda: self.now
        )
        self.resources = {"landing": LandingDirectory(path=str(landing)), "alerts": alerts}
        self.cursor: str | None = None
        self.messages: list[str] = []

    def __call__(self):
        context = build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources=self.resources,
            definitions=self.defs,
        )
        messages = self.messages

        class Collect(logging.Handler):
            def emit(self, record):
                messages.append(record.getMessage())

        context.log.addHandler(Collect())
        data = self.sensor.evaluate_tick(context)
        # The sensor's one target, which the daemon launches each request of.
        job = self.defs.resolve_job_def(self.sensor.job_name)
        assert job.name == CHECK_JOB_NAME
        for request in data.run_requests:
            self.requested.append((request.tags[PARTITION_NAME_TAG], request.tags[DEADLINE_TAG]))
            result = job.execute_in_process(instance=self.instance, tags=request.tags)
            assert result.success
        self.cursor = data.cursor
        return data

    def advance(self, seconds: float) -> None:
        self.now += seconds


def latest_check(instance, key: str):
    """The UI's latest result of the deadline check on month ``key``."""
    check_key = AssetCheckKey(LANDING_KEY, CHECK_NAME)
    records = instance.event_log_storage.get_asset_check_execution_history(
        check_key, limit=1, partition_filter=PartitionKeyFilter(key=key)
    )
    return records[0] if records else None


def evaluation_of(record):
    return record.event.dagster_event.event_specific_data


def build_gold(instance, key: str) -> None:
    instance.report_runless_asset_event(AssetMaterialization(asset_key=GOLD_KEY, partition=key))


@pytest.fixture
def instance():
    """A Dagster instance on disk. Without captured step logs: capturing them starts a ``tail``
    process per step, and these tests are of the fast tier."""
    no_capture = {
        "module": "dagster._core.storage.noop_compute_log_manager",
        "class": "NoOpComputeLogManager",
    }
    with instance_for_test(overrides={"compute_logs": no_capture}) as instance:
        yield instance


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def texts(webhook) -> list[str]:
    return [json.loads(body)["text"] for _, _, body in webhook.requests]


def test_overdue_months_fail_their_check_and_alert_once_a_day_until_built(
    instance, landing_dir, webhook
):
    # 2026-09 is built; 2026-10 never came; 2026-11's file is there but was not built; 2026-12
    # is not due yet. The first tick is on 2026-12-05.
    build_gold(instance, "2026-09")
    (landing_dir / "2026-Nov.csv").write_text("event_time\n")
    alerts = AlertChannels(webhook_url=webhook.url, webserver_url="http://dagster.example:3000")
    ticks = Ticks(instance, landing_dir, alerts, first_month="2026-09", now=at("2026-12-05 08:00"))

    ticks()

    # One failed check per overdue month, on that month's partition of the landing asset.
    assert latest_check(instance, "2026-09") is None
    assert latest_check(instance, "2026-12") is None
    october = latest_check(instance, "2026-10")
    assert october.status == AssetCheckExecutionRecordStatus.FAILED
    evaluation = evaluation_of(october)
    assert evaluation.description == (
        "2026-10 was due by 2026-11-02 06:00 UTC: no file for 2026-10 in the landing directory "
        "(looked for 2026-Oct.csv, 2026-Oct.csv.gz, 2026-10.csv, 2026-10.csv.gz)."
    )
    metadata = {k: v.value for k, v in evaluation.metadata.items()}
    assert metadata["deadline"] == "2026-11-02 06:00 UTC"
    assert metadata["looked_for"] == "2026-Oct.csv, 2026-Oct.csv.gz, 2026-10.csv, 2026-10.csv.gz"
    assert metadata["file_found"] == "none" and metadata["gold_built"] is False
    # Judged when the check ran, on the real clock: not before the tick.
    assert metadata["overdue_hours"] >= 33 * 24 + 2
    november = evaluation_of(latest_check(instance, "2026-11"))
    assert not november.passed and "2026-Nov.csv is in the landing directory" in (
        november.description
    )
    assert ticks.requested == [("2026-10", "overdue"), ("2026-11", "overdue")]
    assert "Overdue: 2026-10, 2026-11." in ticks.messages

    # One message per month, naming the month, the file names and the deadline.
    assert [path for path, _, _ in webhook.requests] == [SECRET_PATH] * 2
    october_text, november_text = texts(webhook)
    assert october_text.splitlines()[0] == (
        "Month 2026-10 missed its deadline: its data was due by 2026-11-02 06:00 UTC."
    )
    assert "2026-Oct.csv, 2026-Oct.csv.gz, 2026-10.csv, 2026-10.csv.gz" in october_text
    assert f"Landing directory: {landing_dir}" in october_text
    assert "Check: http://dagster.example:3000/assets/landing/events_csv?view=checks" in (
        october_text
    )
    assert november_text.startswith("Month 2026-11 missed its deadline")
    assert "2026-Nov.csv is in the landing directory" in november_text

    # Ticks within the day: no new message, no new check result.
    checks_before = latest_check(instance, "2026-10").id
    for _ in range(3):
        ticks.advance(3600)
        ticks()
    assert len(webhook.requests) == 2
    assert latest_check(instance, "2026-10").id == checks_before

    # A day after the first alert: each month again, once, said to be a reminder.
    ticks.advance(DAY - 3 * 3600)
    ticks()
    assert len(webhook.requests) == 4
    reminders = texts(webhook)[2:]
    assert [t.splitlines()[0][:13] for t in reminders] == ["Month 2026-10", "Month 2026-11"]
    assert all("alert 2, the first sent 2026-12-05 08:00 UTC" in t for t in reminders)
    assert latest_check(instance, "2026-10").id != checks_before

    # November is built: its check passes, it is never alerted again; October still is.
    build_gold(instance, "2026-11")
    ticks.advance(60)
    ticks()
    passed = latest_check(instance, "2026-11")
    assert passed.status == AssetCheckExecutionRecordStatus.SUCCEEDED
    assert evaluation_of(passed).description.startswith("2026-11 is built")
    ticks.advance(DAY)
    ticks()
    assert [t.splitlines()[0][:13] for t in texts(webhook)[4:]] == ["Month 2026-10"]


def test_what_was_alerted_is_kept_in_the_cursor_not_in_the_sensor(instance, landing_dir, webhook):
    """A new sensor object (a restarted daemon or code server) given the stored cursor does not
    alert again within the day."""
    alerts = AlertChannels(webhook_url=webhook.url)
    ticks = Ticks(instance, landing_dir, alerts, first_month="2026-10", now=at("2026-12-05 08:00"))
    ticks()
    assert len(webhook.requests) == 2

    restarted = Ticks(
        instance, landing_dir, alerts, first_month="2026-10", now=at("2026-12-05 20:00")
    )
    restarted.cursor = ticks.cursor
    restarted()
    assert len(webhook.requests) == 2
    restarted.advance(13 * 3600)
    restarted()
    assert len(webhook.requests) == 4


def test_a_webhook_that_is_down_is_tried_again_at_the_next_tick_and_the_check_still_fails(
    instance, landing_dir, webhook
):
    alerts = AlertChannels(webhook_url=webhook.url)
    ticks = Ticks(instance, landing_dir, alerts, first_month="2026-11", now=at("2026-12-05 08:00"))
    webhook.status = 503

    ticks()

    assert len(webhook.requests) == 1
    assert latest_check(instance, "2026-11").status == AssetCheckExecutionRecordStatus.FAILED
    said = " ".join(ticks.messages)
    assert "Alerts not delivered, tried again next tick: 2026-11 by webhook" in said
    assert "HTTP 503" in said and SECRET_PATH not in said

    webhook.status = 200
    ticks.advance(60)
    ticks()
    assert len(webhook.requests) == 2
    ticks.advance(60)
    ticks()
    assert len(webhook.requests) == 2


def test_without_a_first_month_a_deadline_that_passes_while_watching_is_noticed(
    instance, landing_dir, webhook
):
    alerts = AlertChannels(webhook_url=webhook.url)
    # First tick on 12-01: November is not due yet; October's deadline was before the first
    # tick, so October is never alerted.
    ticks = Ticks(instance, landing_dir, alerts, first_month=None, now=at("2026-12-01 12:00"))
    result = ticks()
    assert webhook.requests == [] and ticks.requested == []
    assert result.skip_message.startswith("No month from 2026-11 on is overdue")

    ticks.advance(DAY)  # 12-02 12:00: past November's deadline
    ticks()
    assert [t.splitlines()[0] for t in texts(webhook)] == [
        "Month 2026-11 missed its deadline: its data was due by 2026-12-02 06:00 UTC."
    ]
    assert latest_check(instance, "2026-10") is None


def test_with_no_alert_channel_the_failed_check_is_still_reported(instance, landing_dir):
    ticks = Ticks(
        instance, landing_dir, AlertChannels(), first_month="2026-11", now=at("2026-12-05 08:00")
    )
    ticks()
    assert latest_check(instance, "2026-11").status == AssetCheckExecutionRecordStatus.FAILED
    assert any("No alert channel configured" in m for m in ticks.messages)


# -- the definitions -------------------------------------------------------------------------
def test_the_sensor_runs_by_default_with_the_settings_and_the_ui_lists_the_check(settings):
    defs = build_defs(
        settings.model_copy(update={"first_month": "2020-01", "month_deadline": "5T12:00"})
    )
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert sensor.required_resource_keys == {"landing", "alerts"}
    assert "from 2020-01 on" in sensor.description and "5T12:00" in sensor.description
    graph = defs.resolve_asset_graph()
    check_key = AssetCheckKey(LANDING_KEY, CHECK_NAME)
    assert check_key in graph.asset_check_keys
    assert graph.get_check_spec(check_key).partitions_def is not None
    # The monthly job never runs it: it is the sensor's (or a person's, from the UI).
    job = defs.resolve_job_def("medallion_monthly")
    assert check_key not in job.asset_layer.asset_graph.asset_check_keys
