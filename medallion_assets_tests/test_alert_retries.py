"""Retrying failure alerts, with time given by the test.

The schedule of retries and the moment an alert is given up are worked out from made-up clocks:
the pure rules of `alert_retries` on their own, then `retry_pending_alerts` against a real
instance (in memory, or on disk for the sensor) and a real HTTP endpoint on 127.0.0.1 that
refuses the alert until the test says it is back. No run of the asset graph: the failed runs are
written to the instance as a run worker would record them.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    build_sensor_context,
    instance_for_test,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.utils import make_new_run_id

from medallion_assets.automation.alert_retries import (
    ABANDONED,
    DELIVERED,
    MAX_WAIT,
    PENDING,
    Delivery,
    RetryPolicy,
    after_try,
    deliveries_from_tags,
    overall,
    run_tags,
)
from medallion_assets.automation.alerts import (
    AlertAbandonedError,
    build_alert_retry_sensor,
    retry_pending_alerts,
)
from medallion_assets.resources.alert_channels import AlertChannels
from medallion_assets_tests.test_alerts import SECRET_PATH, Webhook

T0 = dt.datetime(2024, 11, 2, 6, 0, tzinfo=dt.timezone.utc)
MINUTE = dt.timedelta(minutes=1)
POLICY = RetryPolicy(first_wait=dt.timedelta(seconds=10), give_up_after=dt.timedelta(hours=1))


def test_the_wait_doubles_after_each_failed_try_up_to_an_hour():
    policy = RetryPolicy(first_wait=MINUTE, give_up_after=dt.timedelta(hours=24))

    waits = [policy.wait(n) for n in range(1, 10)]

    assert [w.total_seconds() for w in waits] == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert policy.wait(10_000) == MAX_WAIT


def test_a_refused_alert_is_pending_until_its_next_try():
    delivery = after_try("webhook", None, "HTTP 503", now=T0, failed_at=T0, policy=POLICY)

    assert (delivery.status, delivery.attempts, delivery.last_error) == (PENDING, 1, "HTTP 503")
    assert delivery.next_try(POLICY, T0) == T0 + dt.timedelta(seconds=10)
    assert not delivery.due(POLICY, T0, T0 + dt.timedelta(seconds=9))
    assert delivery.due(POLICY, T0, T0 + dt.timedelta(seconds=10))

    second = after_try(
        "webhook", delivery, "HTTP 503", now=T0 + dt.timedelta(seconds=10), failed_at=T0,
        policy=POLICY,
    )
    assert second.attempts == 2
    assert second.next_try(POLICY, T0) == T0 + dt.timedelta(seconds=30)


def test_the_last_try_is_at_the_deadline_and_its_failure_gives_the_alert_up():
    late = T0 + dt.timedelta(minutes=59, seconds=50)
    pending = after_try("email", None, "timed out", now=late, failed_at=T0, policy=POLICY)
    assert pending.status == PENDING
    # Ten seconds later would be past the hour: the next try is at the hour, not after it.
    assert pending.next_try(POLICY, T0) == T0 + dt.timedelta(hours=1)

    given_up = after_try(
        "email", pending, "timed out", now=T0 + dt.timedelta(hours=1), failed_at=T0,
        policy=POLICY,
    )

    assert (given_up.status, given_up.attempts) == (ABANDONED, 2)
    assert given_up.next_try(POLICY, T0) is None
    assert not given_up.due(POLICY, T0, T0 + dt.timedelta(days=30))


def test_a_try_that_succeeds_delivers_even_past_the_deadline_and_is_never_due_again():
    pending = after_try("webhook", None, "HTTP 500", now=T0, failed_at=T0, policy=POLICY)

    done = after_try(
        "webhook", pending, None, now=T0 + dt.timedelta(hours=2), failed_at=T0, policy=POLICY
    )

    assert (done.status, done.attempts) == (DELIVERED, 2)
    assert done.last_error == "HTTP 500"  # the history stays readable on the run
    assert not done.due(POLICY, T0, T0 + dt.timedelta(days=1))


def test_the_run_tags_hold_each_channel_and_read_back_the_same():
    webhook = Delivery("webhook", PENDING, 3, T0, "webhook http://hooks.example.com answered 502")
    email = Delivery("email", DELIVERED, 1, T0)

    tags = run_tags([webhook, email])

    assert tags == {
        "medallion/alert": "pending",
        "medallion/alert/webhook": "pending",
        "medallion/alert/webhook/attempts": "3",
        "medallion/alert/webhook/last_try": "2024-11-02T06:00:00+00:00",
        "medallion/alert/webhook/last_error": "webhook http://hooks.example.com answered 502",
        "medallion/alert/email": "delivered",
        "medallion/alert/email/attempts": "1",
        "medallion/alert/email/last_try": "2024-11-02T06:00:00+00:00",
    }
    other = {"dagster/partition": "2019-10", "medallion/alert/webhook/attempts_x": "?"}
    assert deliveries_from_tags({**tags, **other}) == {"webhook": webhook, "email": email}


def test_the_run_is_pending_while_any_channel_is_then_abandoned_if_any_gave_up():
    def states(*statuses):
        return [Delivery(f"c{i}", s, 1, T0) for i, s in enumerate(statuses)]

    assert overall(states(DELIVERED, PENDING)) == PENDING
    assert overall(states(ABANDONED, PENDING)) == PENDING
    assert overall(states(DELIVERED, ABANDONED)) == ABANDONED
    assert overall(states(DELIVERED, DELIVERED)) == DELIVERED


def test_tags_that_cannot_be_read_count_as_not_tried():
    assert deliveries_from_tags({"medallion/alert/webhook": "pending"}) == {}
    assert deliveries_from_tags(
        {
            "medallion/alert/webhook": "sent",
            "medallion/alert/webhook/attempts": "1",
            "medallion/alert/webhook/last_try": "2024-11-02T06:00:00+00:00",
        }
    ) == {}
    assert deliveries_from_tags(
        {
            "medallion/alert/email": "pending",
            "medallion/alert/email/attempts": "one",
            "medallion/alert/email/last_try": "2024-11-02T06:00:00+00:00",
        }
    ) == {}


# -- against an instance and an endpoint ---------------------------------------------------------


def failed_run(instance: DagsterInstance, failed_at: dt.datetime, tags=None) -> str:
    """A run of the project's job that failed at ``failed_at``, as its run worker records it:
    the run, then its failure event (which sets its status and end time)."""
    run_id = make_new_run_id()
    instance.add_run(
        DagsterRun(
            job_name="medallion_monthly",
            run_id=run_id,
            status=DagsterRunStatus.STARTED,
            tags={"dagster/partition": "2019-10", **(tags or {})},
        )
    )
    event = DagsterEvent(
        event_type_value=DagsterEventType.RUN_FAILURE.value,
        job_name="medallion_monthly",
        message="Execution of run for \"medallion_monthly\" failed. Steps failed: ['bronze'].",
    )
    instance.run_storage.handle_run_event(run_id, event, update_timestamp=failed_at)
    instance.store_event(
        EventLogEntry(
            error_info=None,
            level=logging.ERROR,
            user_message=event.message,
            run_id=run_id,
            timestamp=failed_at.timestamp(),
            dagster_event=event,
        )
    )
    assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
    return run_id


def refused_once(instance, run_id, failed_at, channel="webhook", policy=POLICY):
    """The failure sensor's record of a first try that the channel refused at ``failed_at``."""
    first = after_try(channel, None, "refused", now=failed_at, failed_at=failed_at, policy=policy)
    instance.add_run_tags(run_id, run_tags([first]))


def alert_state(instance, run_id) -> Delivery:
    return deliveries_from_tags(instance.get_run_by_id(run_id).tags)["webhook"]


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def quiet_log(logged: list[str]) -> logging.Logger:
    class Collect(logging.Handler):
        def emit(self, record):
            logged.append(f"{record.levelname}: {record.getMessage()}")

    log = logging.getLogger(f"test_alert_retries.{id(logged)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(Collect())
    return log


def test_an_endpoint_down_for_a_minute_gets_the_alert_once_when_it_is_back(webhook):
    """The daemon's loop every 5 s, on a made-up clock: the endpoint answers 503 for the first
    minute after the failure, then 200. Tries at +10 s, +30 s and +70 s (waits of 10, 20, 40 s):
    the third is the first after the minute, and the last; an hour of ticks later still one
    alert came through."""
    instance = DagsterInstance.ephemeral()
    failed_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    run_id = failed_run(instance, failed_at)
    refused_once(instance, run_id, failed_at)
    alerts = AlertChannels(webhook_url=webhook.url, retry_seconds=10, retry_hours=1)
    logged: list[str] = []
    log = quiet_log(logged)
    tried_at = []

    for tick in range(1, 12 * 60):  # an hour of daemon ticks
        now = failed_at + dt.timedelta(seconds=5 * tick)
        webhook.status = 503 if now < failed_at + MINUTE else 200
        before = len(webhook.requests)
        retry_pending_alerts(instance, alerts, log, now=lambda now=now: now)
        if len(webhook.requests) > before:
            tried_at.append((now - failed_at).total_seconds())

    assert tried_at == [10, 30, 70]
    assert [path for path, _, _ in webhook.requests] == [SECRET_PATH] * 3
    state = alert_state(instance, run_id)
    assert (state.status, state.attempts) == (DELIVERED, 4)  # the sensor's own try, then three
    assert instance.get_run_by_id(run_id).tags["medallion/alert"] == DELIVERED
    assert [line.split(":")[0] for line in logged] == ["WARNING", "WARNING", "INFO"]
    assert logged[-1] == f"INFO: Alert for failed run {run_id} sent by webhook (attempt 4)."


def test_an_alert_never_accepted_is_given_up_once_at_the_deadline(webhook):
    instance = DagsterInstance.ephemeral()
    failed_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    run_id = failed_run(instance, failed_at)
    refused_once(instance, run_id, failed_at)
    webhook.status = 502
    alerts = AlertChannels(webhook_url=webhook.url, retry_seconds=10, retry_hours=1)
    logged: list[str] = []
    log = quiet_log(logged)
    outcomes, tried_at = [], []

    for minute in range(1, 180):  # three hours of a sensor looking every minute
        now = failed_at + minute * MINUTE
        before = len(webhook.requests)
        outcomes.append(retry_pending_alerts(instance, alerts, log, now=lambda now=now: now))
        if len(webhook.requests) > before:
            tried_at.append(minute)

    abandoned = [(i + 1, gave_up) for i, (_, _, gave_up) in enumerate(outcomes) if gave_up]
    assert abandoned == [(60, [f"run {run_id} by webhook"])]  # at the hour, and only then
    state = alert_state(instance, run_id)
    assert state.status == ABANDONED and state.last_try == failed_at + dt.timedelta(hours=1)
    assert instance.get_run_by_id(run_id).tags["medallion/alert"] == ABANDONED
    # Due after waits of 10, 20, 40, 80, 160, 320, 640 and 1280 s, each tried at the sensor's
    # next look; the next wait (2560 s) would pass the hour, so the last try is at the hour.
    assert tried_at == [1, 2, 3, 5, 8, 14, 25, 47, 60]
    assert state.attempts == 10
    [error] = [line for line in logged if line.startswith("ERROR")]
    assert f"Alert for failed run {run_id} given up on webhook after 10 attempt(s)" in error
    assert "answered HTTP 502" in error and "Nobody was told of this failure by webhook" in error
    assert SECRET_PATH not in " ".join(logged)


def test_a_channel_failing_in_a_pass_is_not_waited_on_again_for_other_runs_in_it(webhook):
    """A channel that times out would make every pending run wait its timeout in one tick."""
    instance = DagsterInstance.ephemeral()
    failed_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    runs = [failed_run(instance, failed_at) for _ in range(3)]
    for run_id in runs:
        refused_once(instance, run_id, failed_at)
    webhook.status = 500
    alerts = AlertChannels(webhook_url=webhook.url, retry_seconds=10, retry_hours=1)
    later = failed_at + MINUTE

    sent, pending, abandoned = retry_pending_alerts(
        instance, alerts, quiet_log([]), now=lambda: later
    )

    assert len(webhook.requests) == 1
    assert (sent, abandoned) == ([], []) and pending == [f"run {runs[0]} by webhook"]
    # The others were not tried: still due, with their first attempt only.
    assert [alert_state(instance, r).attempts for r in runs] == [2, 1, 1]

    webhook.status = 200
    sent, _, _ = retry_pending_alerts(instance, alerts, quiet_log([]), now=lambda: later)
    assert sorted(sent) == sorted(f"run {r} by webhook" for r in runs[1:])


def test_the_retry_sensor_fails_its_tick_when_it_gives_an_alert_up(webhook):
    """A run that failed two days ago, its alert refused then and pending since, with a day to
    retry: the sensor's next tick tries once more, gives it up and fails, naming the run."""
    webhook.status = 503
    with instance_for_test() as instance:
        failed_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
        run_id = failed_run(instance, failed_at)
        refused_once(instance, run_id, failed_at)
        alerts = AlertChannels(webhook_url=webhook.url, retry_seconds=60, retry_hours=24)
        sensor = build_alert_retry_sensor(60)
        context = build_sensor_context(instance=instance, resources={"alerts": alerts})

        with pytest.raises(AlertAbandonedError, match=f"run {run_id} by webhook"):
            sensor(context)

        assert len(webhook.requests) == 1
        assert alert_state(instance, run_id).status == ABANDONED
        # Given up: the next tick has nothing left to do.
        result = sensor(build_sensor_context(instance=instance, resources={"alerts": alerts}))
        assert result.skip_message == "No failure alert due for a retry."
        assert len(webhook.requests) == 1
