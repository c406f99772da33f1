"""Failure alerts: someone is told when a run fails, with what they need to act on it.

The job this project replaces only sent an e-mail saying that something failed. A failed run here
posts one message naming the job, the month(s), the failed step, the error and a link to the run in
the Dagster UI (based at ``MEDALLION_WEBSERVER_URL``), on the channels of the `AlertChannels`
resource (`medallion_assets.resources.alert_channels`: a Slack-compatible webhook and/or e-mail).

A run that Dagster will re-execute (run retries, tag ``dagster/will_retry=true``) does not alert:
only the last attempt does, so a transient failure that heals itself wakes nobody up. Step
retries inside a run never reach the sensor at all: the run only fails once they are used up.

No alert is lost to a channel that is down. Dagster 1.13 evaluates a run-status sensor once per
run: its cursor moves past a run whether the evaluation succeeded or raised
(`run_status_sensor_definition.py`), so an error raised there would only mark the tick. Instead
`failure_alert_sensor` tries each channel once and records the outcome as tags of the failed run
(`medallion_assets.automation.alert_retries`), in the instance rather than in a process;
`alert_retry_sensor` finds runs whose alert is still pending and tries again the channels that did
not accept it, waiting ``MEDALLION_ALERT_RETRY_SECONDS`` and then twice as long each time, until
they do or ``MEDALLION_ALERT_RETRY_HOURS`` have passed since the run failed. Then the alert is given
up: the tick logs that error and fails, and the run keeps ``medallion/alert=abandoned``. A channel
that accepted a run's alert is never sent it again, by either sensor. (A channel that accepts an
alert but does not answer within the timeout counts as failed and may get it twice.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from dagster import (
    AssetCheckSeverity,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRecord,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)

# Dagster's own run tags; it exports no public names for them.
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
    WILL_RETRY_TAG,
)

from medallion_assets.automation.alert_retries import (
    ABANDONED,
    ALERT_TAG,
    DELIVERED,
    PENDING,
    Delivery,
    RetryPolicy,
    after_try,
    channel_tag,
    deliveries_from_tags,
    given_up,
    run_tags,
)
from medallion_assets.resources.alert_channels import (
    WEBHOOK_ENV,
    AlertChannels,
    AlertDeliveryError,
)
from medallion_assets.settings import Settings

RETRY_SECONDS_ENV = Settings.env_name("alert_retry_seconds")
RETRY_HOURS_ENV = Settings.env_name("alert_retry_hours")
MAX_ERROR_CHARS = 1500
FAILURE_SENSOR = "medallion_failure_alerts"
RETRY_SENSOR = "medallion_alert_retries"
# Runs whose alert one tick of the retry sensor looks at, oldest first: a tick stays well within
# the daemon's time limit for a sensor evaluation even when every try waits for its timeout.
RUNS_PER_TICK = 20


class AlertAbandonedError(RuntimeError):
    """An alert was given up on some channel: the retry sensor's tick fails with this, so the
    sensor's history in the UI shows that someone was not told of a failed run."""


@dataclass(frozen=True)
class FailureAlert:
    """What a failure alert says, independent of the channel."""

    job: str
    run_id: str
    partitions: str | None
    failed_steps: tuple[str, ...]
    error: str
    run_url: str
    failed_checks: tuple[str, ...] = field(default_factory=tuple)
    # Set when the alert goes out on a retry: readers learn it is not news.
    late: str | None = None

    @property
    def subject(self) -> str:
        where = f" for {self.partitions}" if self.partitions else ""
        return f"Dagster run failed: {self.job}{where}"

    def text(self) -> str:
        steps = ", ".join(self.failed_steps) or "(none: the run failed outside a step)"
        lines = [
            f"Dagster run failed: job `{self.job}`",
            f"Partition: {self.partitions or '(none)'}",
            f"Failed step: {steps}",
            f"Error: {self.error}",
        ]
        lines += [f"Failed check: {c}" for c in self.failed_checks]
        if self.late:
            lines.append(f"Sent late: {self.late}")
        lines.append(f"Run: {self.run_url}")
        return "\n".join(lines)

    def slack_payload(self) -> dict:
        return {"text": self.text()}


def _partitions(tags: dict[str, str]) -> str | None:
    if tags.get(PARTITION_NAME_TAG):
        return tags[PARTITION_NAME_TAG]
    start, end = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}...{end}"
    return None


def _error_text(error) -> str:
    """The error and its causes, without stack traces, cut to a readable length."""
    parts = []
    while error is not None and len(parts) < 4:
        message = (error.message or "").strip()
        if message and message not in parts:
            parts.append(message)
        error = error.cause
    text = " | caused by: ".join(parts) or "unknown error"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def build_alert(
    instance: DagsterInstance,
    run: DagsterRun,
    webserver_url: str,
    failure_message: str | None = None,
) -> FailureAlert:
    """The alert for failed ``run``, from what the instance holds of it (so the retry sensor,
    long after the failure, sends the same text); ``failure_message`` is the run's failure event's
    message when the caller has it."""
    step_failures = [
        record.event_log_entry.dagster_event
        for record in instance.get_records_for_run(
            run_id=run.run_id, of_type=DagsterEventType.STEP_FAILURE
        ).records
    ]
    errors = []
    for event in step_failures:
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            errors.append(data.user_failure_data.description)
        elif data.error is not None:
            errors.append(_error_text(data.error))
    if not errors:
        if failure_message is None:
            failures = instance.get_records_for_run(
                run_id=run.run_id, of_type=DagsterEventType.RUN_FAILURE
            ).records
            if failures:
                failure_message = failures[-1].event_log_entry.dagster_event.message
        errors.append(failure_message or "unknown error")
    checks = []
    for record in instance.get_records_for_run(
        run_id=run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records:
        evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
        if not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR:
            checks.append(
                f"{evaluation.check_name} on {evaluation.asset_key.to_user_string()}: "
                f"{evaluation.description or 'failed'}"
            )
    error = " / ".join(errors)
    return FailureAlert(
        job=run.job_name,
        run_id=run.run_id,
        partitions=_partitions(dict(run.tags)),
        failed_steps=tuple(e.step_key for e in step_failures if e.step_key),
        error=error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…",
        run_url=f"{webserver_url.rstrip('/')}/runs/{run.run_id}",
        failed_checks=tuple(checks),
    )


def retry_policy(alerts: AlertChannels) -> RetryPolicy:
    """The channels' retry settings as `alert_retries` applies them."""
    return RetryPolicy(
        first_wait=dt.timedelta(seconds=alerts.retry_seconds),
        give_up_after=dt.timedelta(hours=alerts.retry_hours),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _failed_at(record: RunRecord) -> dt.datetime:
    """When the run ended, as its record says: the start of the retry period. (A run whose
    record has no end time, written by other means than a run worker: when it was created.)"""
    if record.end_time:
        return dt.datetime.fromtimestamp(record.end_time, dt.timezone.utc)
    created = record.create_timestamp
    return created if created.tzinfo else created.replace(tzinfo=dt.timezone.utc)


def _try(
    channel: str,
    send: Callable[[FailureAlert], None] | None,
    alert: FailureAlert,
    alerts: AlertChannels,
) -> str | None:
    """Send ``alert`` on ``channel``; None if it was accepted, else why not (without secrets)."""
    if send is None:
        return f"the {channel} channel is no longer configured"
    try:
        send(alert)
    except AlertDeliveryError as error:
        return alerts.scrub(str(error))
    except Exception as error:  # a bug or a library's surprise must not lose the record
        return alerts.scrub(f"{type(error).__name__}: {error}")
    return None


def _report(
    log, delivery: Delivery, run_id: str, policy: RetryPolicy, failed_at: dt.datetime
) -> None:
    """One line in the tick's log for a try on one channel."""
    channel, attempt = delivery.channel, delivery.attempts
    if delivery.status == DELIVERED:
        late = f" (attempt {attempt})" if attempt > 1 else ""
        log.info(f"Alert for failed run {run_id} sent by {channel}{late}.")
    elif delivery.status == PENDING:
        log.warning(
            f"Alert for failed run {run_id} not accepted by {channel} (attempt {attempt}): "
            f"{delivery.last_error}. Kept as pending in the run's tags ({channel_tag(channel)}); "
            f"{RETRY_SENSOR} tries again at {_utc(delivery.next_try(policy, failed_at))}, "
            f"until {_utc(policy.deadline(failed_at))}."
        )
    else:
        log.error(
            f"Alert for failed run {run_id} given up on {channel} after {attempt} attempt(s), "
            f"{policy.give_up_after.total_seconds() / 3600:g} h after the run failed "
            f"(${RETRY_HOURS_ENV}): {delivery.last_error}. Nobody was told of this failure by "
            f"{channel}; the run is tagged {channel_tag(channel)}={ABANDONED}."
        )


def will_be_retried(context: RunFailureSensorContext) -> bool:
    run = context.instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
    return run.tags.get(WILL_RETRY_TAG, "").lower() == "true"


@run_failure_sensor(
    name=FAILURE_SENSOR,
    description=(
        "Posts every failed run (job, months, failed step, error, link) to "
        f"${WEBHOOK_ENV} and/or e-mails it when SMTP settings are given; runs that Dagster "
        f"will retry do not alert. A channel that does not accept the alert leaves it pending "
        f"in the run's tags ({ALERT_TAG}) for {RETRY_SENSOR}."
    ),
    default_status=DefaultSensorStatus.RUNNING,
)
def failure_alert_sensor(context: RunFailureSensorContext, alerts: AlertChannels) -> None:
    """Tries each channel once. It never raises for a channel that failed: Dagster would not
    evaluate the run again anyway; the pending tags are what makes the alert go out later."""
    run_id = context.dagster_run.run_id
    if will_be_retried(context):
        context.log.info(f"Run {run_id} failed but will be retried: no alert.")
        return
    senders = alerts.senders()
    if not senders:
        context.log.info(f"Run {run_id} failed; no alert channel configured (${WEBHOOK_ENV}).")
        return
    instance = context.instance
    run = instance.get_run_by_id(run_id) or context.dagster_run
    # Channels with a recorded state were tried by an earlier evaluation of this run (a daemon
    # that stopped before moving its cursor); each channel gets a run's alert once.
    known = deliveries_from_tags(run.tags)
    todo = [channel for channel in senders if channel not in known]
    if not todo:
        context.log.info(f"Alert for failed run {run_id} already handled: {sorted(known)}.")
        return
    alert = build_alert(instance, run, alerts.webserver_url, context.failure_event.message)
    policy = retry_policy(alerts)
    record = instance.get_run_record_by_id(run_id)
    failed_at = _failed_at(record) if record is not None else _now()
    tried = {}
    for channel in todo:
        error = _try(channel, senders[channel], alert, alerts)
        tried[channel] = after_try(
            channel, None, error, now=_now(), failed_at=failed_at, policy=policy
        )
    instance.add_run_tags(run_id, run_tags({**known, **tried}.values()))
    for delivery in tried.values():
        _report(context.log, delivery, run_id, policy, failed_at)


def retry_pending_alerts(
    instance: DagsterInstance, alerts: AlertChannels, log, now: Callable[[], dt.datetime] = _now
) -> tuple[list[str], list[str], list[str]]:
    """One pass of the retry sensor: every channel whose try is due on a failed run with a
    pending alert is tried again, and the outcome written to that run's tags before the next
    run is looked at. Returns what happened as (sent, still pending, given up) lines. Once a
    channel fails in a pass, the pass does not wait on it again for other runs: their due tries
    are left for the next pass (or given up, past their deadline)."""
    policy = retry_policy(alerts)
    senders = alerts.senders()
    records = instance.get_run_records(
        filters=RunsFilter(tags={ALERT_TAG: PENDING}, statuses=[DagsterRunStatus.FAILURE]),
        limit=RUNS_PER_TICK,
        ascending=True,
    )
    sent, pending, abandoned = [], [], []
    failing: dict[str, str] = {}  # channel -> its error in this pass
    for record in records:
        run = record.dagster_run
        deliveries = deliveries_from_tags(run.tags)
        failed_at = _failed_at(record)
        alert = None
        changed = {}
        for channel, delivery in deliveries.items():
            moment = now()
            if not delivery.due(policy, failed_at, moment):
                continue
            if channel in failing:
                if moment >= policy.deadline(failed_at):
                    changed[channel] = given_up(delivery, failing[channel], moment)
                continue
            if alert is None:
                alert = dataclasses.replace(
                    build_alert(instance, run, alerts.webserver_url),
                    late=f"the run failed at {_utc(failed_at)}.",
                )
            error = _try(channel, senders.get(channel), alert, alerts)
            if error is not None:
                failing[channel] = error
            changed[channel] = after_try(
                channel, delivery, error, now=now(), failed_at=failed_at, policy=policy
            )
        if not changed:
            continue
        instance.add_run_tags(run.run_id, run_tags({**deliveries, **changed}.values()))
        for delivery in changed.values():
            _report(log, delivery, run.run_id, policy, failed_at)
            line = f"run {run.run_id} by {delivery.channel}"
            {DELIVERED: sent, PENDING: pending, ABANDONED: abandoned}[delivery.status].append(
                line
            )
    return sent, pending, abandoned


def build_alert_retry_sensor(interval_seconds: int) -> SensorDefinition:
    """The sensor retrying pending alerts, looking every ``interval_seconds`` (the first wait
    before a retry: looking more often would find nothing due)."""

    @sensor(
        name=RETRY_SENSOR,
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Sends again the failure alerts that a channel did not accept (runs tagged "
            f"{ALERT_TAG}={PENDING}): after ${RETRY_SECONDS_ENV}, then twice as long each "
            f"time, until delivered or ${RETRY_HOURS_ENV} after the run failed; a given-up "
            "alert fails the tick."
        ),
    )
    def alert_retry_sensor(context: SensorEvaluationContext, alerts: AlertChannels):
        sent, pending, abandoned = retry_pending_alerts(context.instance, alerts, context.log)
        if abandoned:
            raise AlertAbandonedError(
                "Failure alert given up (nobody was told by that channel): "
                + "; ".join(abandoned)
            )
        if not (sent or pending):
            return SkipReason("No failure alert due for a retry.")
        parts = []
        if sent:
            parts.append("sent: " + "; ".join(sent))
        if pending:
            parts.append("not accepted, still pending: " + "; ".join(pending))
        return SkipReason("Failure alerts retried — " + ". ".join(parts) + ".")

    return alert_retry_sensor
