"""`month_deadline_sensor`: a month whose data has not come by its deadline is noticed.

Why: the landing sensor reacts to files, so a file that never comes makes it do nothing, and with
the schedule stopped (its default) no run fails either. Each month is therefore due by a deadline
(``$MEDALLION_MONTH_DEADLINE``, by default the 2nd of the following month at 06:00 UTC). Once it
has passed, a month whose ``gold/revenue_by_brand`` has not been materialized is *overdue*,
whether its file never came or came and was not built (a failed run, a run still queued).

What the sensor does, running by default and looking every `INTERVAL_SECONDS`:

* For each overdue month, a run of ``month_deadline_check`` for that month, whose
  ``month_ready_by_deadline`` check of ``landing/events_csv`` fails on the month's partition (the
  UI's asset page, *Checks*), saying what is missing — no file, with the names looked for, or a
  file that gold has not been built from — and when it was due. Again once a day while the month
  stays overdue, and when what is missing changes (the file came, gold is not built yet).
* One alert per overdue month on the `AlertChannels` (webhook, e-mail), repeated at most once a
  day (`REPEAT_SECONDS`) until the month is built; then one more check run, which passes, and no
  more alerts. Alerts for several months are separate messages: each month is acted on alone.
* Which months were alerted on which channel, and when, travels in the sensor's cursor (stored in
  the instance with each tick), so a restart of the daemon neither forgets nor repeats an alert. A
  channel that cannot be reached is tried again at the next tick; the tick's log and its skip
  reason say so. Each channel is tracked alone, so the one that works is not repeated meanwhile.

Which months are watched: from ``$MEDALLION_FIRST_MONTH`` on; unset, those whose deadline falls
after the sensor's first tick (recorded in its cursor). Why not from the partitions' first month
(2019-10): a new deployment — or ``make dev`` on sample data — would raise one alert per month
since 2019 on its first tick, every one of them about history nobody expected to be there. A
deployment that wants its history watched sets the variable.

The decisions are pure functions of the time, the landing directory's file names, the months gold
holds and the previous cursor (`overdue_months`, `plan_tick`), tested with injected time; the
sensor is a thin wrapper that reads those from the directory and the instance.

The check's body (`build_deadline_check`) judges its month with the same function as the sensor,
at the time it runs; *Execute* in the UI runs it for any month. Why runs, and not check results
the sensor reports itself: see `deadline_check_job`. The check targets the external landing
asset, so ``medallion_monthly`` (``AssetSelection.all()``: materializable assets and their checks)
never runs it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    asset_check,
    define_asset_job,
    sensor,
)

# Dagster's own run tag for a run's partition; it exports no public name for it.
from dagster._core.storage.tags import PARTITION_NAME_TAG

from medallion_assets.assets.bronze import LANDING_EVENTS
from medallion_assets.assets.gold import GOLD_REVENUE_BY_BRAND
from medallion_assets.partitions import (
    FIRST_MONTH,
    candidate_file_names,
    month_start,
    monthly_partitions,
    next_month,
    parse_month_key,
    partition_key_for,
)
from medallion_assets.resources.alert_channels import AlertChannels, AlertDeliveryError, deliver
from medallion_assets.resources.landing import LandingDirectory
from medallion_assets.settings import Settings, parse_month_deadline

SENSOR_NAME = "month_deadline_sensor"
CHECK_NAME = "month_ready_by_deadline"
LANDING_KEY = AssetKey(LANDING_EVENTS)
GOLD_KEY = AssetKey(GOLD_REVENUE_BY_BRAND)
CHECK_KEY = AssetCheckKey(LANDING_KEY, CHECK_NAME)
CHECK_JOB_NAME = "month_deadline_check"
# On the check's runs: why the sensor asked for it (the month is "overdue", or "built" since).
DEADLINE_TAG = "medallion/deadline"
# A deadline is a matter of hours; a look a minute is plenty and costs one directory listing and
# one query of the instance.
INTERVAL_SECONDS = 60
# An overdue month is alerted again, on each channel, at most this often.
REPEAT_SECONDS = 24 * 3600
CURSOR_VERSION = 1
WEBHOOK = "webhook"
EMAIL = "email"


# -- the deadline -------------------------------------------------------------------------------
@dataclass(frozen=True)
class MonthDeadline:
    """When a month's data is due: a day and a UTC time of the following month."""

    day: int
    hour: int
    minute: int

    @classmethod
    def parse(cls, text: str) -> MonthDeadline:
        """From ``$MEDALLION_MONTH_DEADLINE``'s format, ``DTHH:MM`` (`parse_month_deadline`)."""
        return cls(*parse_month_deadline(text))

    @classmethod
    def of_settings(cls, settings: Settings) -> MonthDeadline:
        return cls.parse(settings.month_deadline)

    def of(self, key: str) -> dt.datetime:
        """The deadline of month ``key`` (``YYYY-MM``), in UTC."""
        due = next_month(parse_month_key(key))
        return dt.datetime(
            due.year, due.month, self.day, self.hour, self.minute, tzinfo=dt.timezone.utc
        )

    def first_month_due_after(self, moment: dt.datetime) -> str:
        """The first month (not before the partitions' first) whose deadline is after
        ``moment``."""
        key = max(partition_key_for(_months_before(moment.date(), 2)), FIRST_MONTH)
        while self.of(key) <= moment:
            key = _following(key)
        return key

    def __str__(self) -> str:
        return f"{self.day}T{self.hour:02d}:{self.minute:02d}"


def _months_before(day: dt.date, count: int) -> dt.date:
    index = day.year * 12 + day.month - 1 - count
    return dt.date(index // 12, index % 12 + 1, 1)


def _following(key: str) -> str:
    return partition_key_for(next_month(month_start(key)))


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float) -> str:
    hours = int(max(seconds, 0) // 3600)
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if days else f"{hours} h"


# -- which months are overdue -------------------------------------------------------------------
@dataclass(frozen=True)
class OverdueMonth:
    """A month past its deadline without gold: what is missing and what was looked for."""

    key: str
    deadline: dt.datetime
    looked_for: tuple[str, ...]
    # The month's file when it is in the landing directory (gold was not built from it yet).
    found: str | None = None

    def problem(self) -> str:
        if self.found:
            return (
                f"{self.found} is in the landing directory, but "
                f"{GOLD_KEY.to_user_string()} has not been built for {self.key}"
            )
        return (
            f"no file for {self.key} in the landing directory (looked for "
            + ", ".join(self.looked_for)
            + ")"
        )


def overdue_month(
    key: str,
    now: dt.datetime,
    *,
    landing_files: Collection[str],
    built_months: Collection[str],
    deadline: MonthDeadline,
) -> OverdueMonth | None:
    """Month ``key`` if it is overdue at ``now``: past its deadline and not in
    ``built_months``."""
    due = deadline.of(key)
    if now < due or key in built_months:
        return None
    names = tuple(candidate_file_names(key))
    found = next((name for name in names if name in landing_files), None)
    return OverdueMonth(key=key, deadline=due, looked_for=names, found=found)


def overdue_months(
    now: dt.datetime,
    *,
    landing_files: Collection[str],
    built_months: Collection[str],
    first_month: str,
    deadline: MonthDeadline,
) -> list[OverdueMonth]:
    """Every month from ``first_month`` on whose deadline has passed at ``now`` and that gold does
    not hold (``built_months``), oldest first. ``landing_files`` are the names in the landing
    directory; they only say which of the overdue months' files is there."""
    months = []
    key = first_month
    while deadline.of(key) <= now:
        month = overdue_month(
            key, now, landing_files=landing_files, built_months=built_months, deadline=deadline
        )
        if month is not None:
            months.append(month)
        key = _following(key)
    return months


# -- what the ticks remember --------------------------------------------------------------------
@dataclass
class MonthState:
    """An overdue month as the ticks left it: when it was first found overdue, when its last
    failed check was reported and what it said, and when each channel last got its alert."""

    noticed: float
    checked: float
    problem: str
    sent: dict[str, float] = field(default_factory=dict)
    alerts: int = 0
    first_alert: float | None = None

    def to_json(self) -> dict:
        return {
            "noticed": self.noticed,
            "checked": self.checked,
            "problem": self.problem,
            "sent": self.sent,
            "alerts": self.alerts,
            "first_alert": self.first_alert,
        }

    @classmethod
    def from_json(cls, raw: Mapping) -> MonthState:
        return cls(
            noticed=float(raw["noticed"]),
            checked=float(raw["checked"]),
            problem=str(raw["problem"]),
            sent={str(k): float(v) for k, v in dict(raw.get("sent", {})).items()},
            alerts=int(raw.get("alerts", 0)),
            first_alert=None if raw.get("first_alert") is None else float(raw["first_alert"]),
        )


@dataclass
class DeadlineState:
    """The sensor's cursor: when it first ticked (the watched months start after it unless
    ``$MEDALLION_FIRST_MONTH`` is set) and each overdue month's `MonthState`."""

    since: float | None = None
    months: dict[str, MonthState] = field(default_factory=dict)

    def to_cursor(self) -> str:
        return json.dumps(
            {
                "version": CURSOR_VERSION,
                "since": self.since,
                "months": {key: state.to_json() for key, state in sorted(self.months.items())},
            },
            sort_keys=True,
        )

    @classmethod
    def from_cursor(cls, cursor: str | None) -> DeadlineState:
        """The state in ``cursor``; an empty one when there is none or it cannot be read (an
        unreadable cursor costs at most a repeated alert, never a tick)."""
        if not cursor:
            return cls()
        try:
            raw = json.loads(cursor)
            if raw.get("version") != CURSOR_VERSION:
                return cls()
            since = raw.get("since")
            return cls(
                since=None if since is None else float(since),
                months={str(k): MonthState.from_json(v) for k, v in raw["months"].items()},
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls()


# -- one tick's decisions ----------------------------------------------------------------------
@dataclass
class Tick:
    """What one tick reports and sends; ``state`` is the cursor once the alerts are sent (each
    delivery then marks its channel in it with `mark_sent`)."""

    failed: list[OverdueMonth]
    passed: list[str]
    alerts_due: dict[str, list[str]]
    overdue: dict[str, OverdueMonth]
    state: DeadlineState
    now: float

    def mark_sent(self, key: str, channel: str) -> None:
        month = self.state.months[key]
        month.sent[channel] = self.now

    def mark_alerted(self, key: str) -> None:
        """Some channel took the month's alert at this tick."""
        month = self.state.months[key]
        month.alerts += 1
        if month.first_alert is None:
            month.first_alert = self.now


def plan_tick(
    previous: DeadlineState,
    overdue: Iterable[OverdueMonth],
    *,
    now: float,
    built_months: Collection[str],
    channels: Sequence[str],
    repeat: float = REPEAT_SECONDS,
) -> Tick:
    """Which failed and passing checks to report and which alerts are due, at ``now``.

    * A month newly overdue, or whose problem changed (its file came but gold is not built yet),
      gets a failed check; so does one whose last failed check is ``repeat`` old, which keeps the
      UI's overdue time current.
    * Each configured channel gets a month's alert when it never got one, or its last one is
      ``repeat`` old: at most one a day per month and channel.
    * A month that was overdue and is now in ``built_months`` gets a passing check and is
      forgotten. One that left the watched months (``$MEDALLION_FIRST_MONTH`` moved) is only
      forgotten: it was not built.
    """
    state = DeadlineState(since=previous.since)
    failed: list[OverdueMonth] = []
    alerts_due: dict[str, list[str]] = {}
    by_key = {month.key: month for month in overdue}
    for key, month in by_key.items():
        before = previous.months.get(key)
        problem = month.problem()
        if before is None:
            current = MonthState(noticed=now, checked=now, problem=problem)
            failed.append(month)
        else:
            current = MonthState(
                noticed=before.noticed,
                checked=before.checked,
                problem=before.problem,
                sent=dict(before.sent),
                alerts=before.alerts,
                first_alert=before.first_alert,
            )
            if before.problem != problem or now - before.checked >= repeat:
                current.checked, current.problem = now, problem
                failed.append(month)
        state.months[key] = current
        due = [c for c in channels if c not in current.sent or now - current.sent[c] >= repeat]
        if due:
            alerts_due[key] = due
    passed = sorted(key for key in previous.months if key not in by_key and key in built_months)
    return Tick(
        failed=failed,
        passed=passed,
        alerts_due=alerts_due,
        overdue=by_key,
        state=state,
        now=now,
    )


# -- what the UI and the channels get -----------------------------------------------------------
def check_metadata(month: OverdueMonth, now: dt.datetime, landing_dir: Path) -> dict:
    return {
        "deadline": MetadataValue.text(_utc(month.deadline)),
        "overdue_hours": MetadataValue.float(
            round((now - month.deadline).total_seconds() / 3600, 1)
        ),
        "looked_for": MetadataValue.text(", ".join(month.looked_for)),
        "file_found": MetadataValue.text(month.found or "none"),
        "landing_dir": MetadataValue.path(str(landing_dir)),
        "gold_built": MetadataValue.bool(False),
    }


def failed_description(month: OverdueMonth) -> str:
    return f"{month.key} was due by {_utc(month.deadline)}: {month.problem()}."


def built_description(key: str, deadline: MonthDeadline) -> str:
    due = _utc(deadline.of(key))
    return f"{key} is built: {GOLD_KEY.to_user_string()} holds it (due by {due})."


def passed_metadata(key: str, deadline: MonthDeadline) -> dict:
    return {
        "deadline": MetadataValue.text(_utc(deadline.of(key))),
        "gold_built": MetadataValue.bool(True),
    }


@dataclass(frozen=True)
class MissedDeadlineAlert:
    """The message about one overdue month, whatever the channel. It has what `deliver` sends
    (``subject``, ``text()``, ``slack_payload()``) and ``run_id``, which `deliver` names when a
    channel refuses it: a missed deadline has no run, so it names the month."""

    month: str
    deadline: dt.datetime
    problem: str
    landing_dir: str
    overdue_for: str
    first_alerted: str | None
    alert_number: int
    check_url: str

    @property
    def run_id(self) -> str:
        return f"(none: month {self.month} missed its deadline)"

    @property
    def subject(self) -> str:
        return f"Month {self.month} missed its deadline ({_utc(self.deadline)})"

    def text(self) -> str:
        lines = [
            f"Month {self.month} missed its deadline: its data was due by {_utc(self.deadline)}.",
            f"Missing: {self.problem}.",
            f"Landing directory: {self.landing_dir}",
            f"Overdue by: {self.overdue_for}",
        ]
        if self.first_alerted:
            lines.append(
                f"Still missing: alert {self.alert_number}, the first sent {self.first_alerted}."
            )
        lines.append(
            f"Repeated once a day until {GOLD_KEY.to_user_string()} is built for {self.month}."
        )
        lines.append(f"Check: {self.check_url}")
        return "\n".join(lines)

    def slack_payload(self) -> dict:
        return {"text": self.text()}


def build_message(
    month: OverdueMonth,
    state: MonthState,
    *,
    now: dt.datetime,
    landing_dir: Path,
    webserver_url: str,
) -> MissedDeadlineAlert:
    first = state.first_alert
    return MissedDeadlineAlert(
        month=month.key,
        deadline=month.deadline,
        problem=month.problem(),
        landing_dir=str(landing_dir),
        overdue_for=_duration((now - month.deadline).total_seconds()),
        first_alerted=(
            None if first is None else _utc(dt.datetime.fromtimestamp(first, dt.timezone.utc))
        ),
        alert_number=state.alerts + 1,
        check_url=(f"{webserver_url.rstrip('/')}/assets/{'/'.join(LANDING_EVENTS)}?view=checks"),
    )


def channels_of(alerts: AlertChannels) -> dict[str, AlertChannels]:
    """Each configured channel alone, so that a month's alert is delivered, and remembered, per
    channel: a webhook that is down does not make the e-mail go out again at every retry."""
    channels = {}
    if alerts.webhook_url:
        channels[WEBHOOK] = alerts.model_copy(update={"smtp_host": None})
    if alerts.smtp() is not None:
        channels[EMAIL] = alerts.model_copy(update={"webhook_url": None})
    return channels


# -- reading the world --------------------------------------------------------------------------
def landing_file_names(directory: Path) -> frozenset[str]:
    """Names of the entries of the landing directory (none when it does not exist)."""
    try:
        with os.scandir(directory) as entries:
            return frozenset(entry.name for entry in entries if entry.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()


def built_months(instance) -> set[str]:
    """The months gold/revenue_by_brand has been materialized for, from the instance."""
    return set(instance.get_materialized_partitions(GOLD_KEY))


# -- the sensor -------------------------------------------------------------------------------
def evaluate(
    context: SensorEvaluationContext,
    directory: Path,
    alerts: AlertChannels,
    *,
    now: float,
    deadline: MonthDeadline,
    first_month: str | None,
) -> SensorResult:
    """One tick at ``now``: the overdue months' checks reported, their due alerts sent, the
    cursor advanced."""
    previous = DeadlineState.from_cursor(context.cursor)
    if previous.since is None:
        previous.since = now
    moment = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    first = first_month or deadline.first_month_due_after(
        dt.datetime.fromtimestamp(previous.since, dt.timezone.utc)
    )
    built = built_months(context.instance)
    overdue = overdue_months(
        moment,
        landing_files=landing_file_names(directory),
        built_months=built,
        first_month=first,
        deadline=deadline,
    )
    channels = channels_of(alerts)
    tick = plan_tick(previous, overdue, now=now, built_months=built, channels=list(channels))

    requests = [check_run(month.key, "overdue") for month in tick.failed]
    requests += [check_run(key, "built") for key in tick.passed]
    for month in tick.failed:
        context.log.warning(f"{month.key} is overdue: {failed_description(month)}")
    for key in tick.passed:
        context.log.info(f"{key} is built: its deadline check runs again; no more alerts.")

    undelivered = []
    for key, due in tick.alerts_due.items():
        message = build_message(
            tick.overdue[key],
            tick.state.months[key],
            now=moment,
            landing_dir=directory,
            webserver_url=alerts.webserver_url,
        )
        sent = []
        for name in due:
            try:
                deliver(message, channels[name])
            except AlertDeliveryError as error:
                undelivered.append(f"{key} by {name}: {error}")
                context.log.error(f"Deadline alert for {key} not delivered by {name}: {error}")
                continue
            tick.mark_sent(key, name)
            sent.append(name)
        if sent:
            tick.mark_alerted(key)
            context.log.info(f"Deadline alert for {key} sent by {', '.join(sent)}.")

    if not channels and tick.failed:
        context.log.info("No alert channel configured: the failed checks are the only notice.")
    summary = _summary(first, tick, moment, undelivered)
    for line in summary:
        context.log.info(line)
    cursor = tick.state.to_cursor()
    if requests:
        return SensorResult(run_requests=requests, cursor=cursor)
    return SensorResult(skip_reason=" ".join(summary), cursor=cursor)


def _summary(first: str, tick: Tick, now: dt.datetime, undelivered: list[str]) -> list[str]:
    if tick.overdue:
        lines = ["Overdue: " + ", ".join(sorted(tick.overdue)) + "."]
    else:
        lines = [f"No month from {first} on is overdue at {_utc(now)}."]
    if undelivered:
        lines.append("Alerts not delivered, tried again next tick: " + "; ".join(undelivered))
    return lines


def build_deadline_sensor(
    *,
    deadline: MonthDeadline,
    first_month: str | None,
    clock: Callable[[], float] = time.time,
) -> SensorDefinition:
    """The deadline sensor for months due by ``deadline`` (``$MEDALLION_MONTH_DEADLINE``), from
    ``first_month`` (``$MEDALLION_FIRST_MONTH``) on. ``clock`` is the time a tick judges by:
    tests move it by days between ticks, which the real clock cannot."""
    watched = (
        f"from {first_month} on" if first_month else "whose deadline falls after its first tick"
    )

    @sensor(
        name=SENSOR_NAME,
        job=deadline_check_job,
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Each month is due by day {deadline} (UTC) of the following month. Past it, a month "
            f"without {GOLD_KEY.to_user_string()} fails the {CHECK_NAME} check of "
            f"{LANDING_KEY.to_user_string()} and is alerted, once a day until it is built. "
            f"Watches the months {watched}."
        ),
    )
    def month_deadline_sensor(
        context: SensorEvaluationContext, landing: LandingDirectory, alerts: AlertChannels
    ):
        return evaluate(
            context,
            landing.directory(),
            alerts,
            now=clock(),
            deadline=deadline,
            first_month=first_month,
        )

    return month_deadline_sensor


# The check alone, for one month. Its results come from runs rather than from events the sensor
# reports itself: Dagster 1.13 stores a check result reported outside a run under the run id ""
# in a table unique on (asset, check, run id, partition), so a second one for the same month
# fails to store (`SqlEventLogStorage._store_runless_asset_check_evaluation`), and the daemon
# with it, before the cursor is saved.
deadline_check_job = define_asset_job(
    CHECK_JOB_NAME,
    selection=AssetSelection.checks(CHECK_KEY),
    description=(
        f"Runs {CHECK_NAME} for one month; {SENSOR_NAME} requests it when a month becomes "
        "overdue, once a day while it stays so, and once it is built."
    ),
)


def check_run(key: str, why: str) -> RunRequest:
    """A run of `deadline_check_job` for month ``key``. The month goes in Dagster's partition tag
    rather than ``partition_key``: a job of checks alone has no partitions definition for Dagster
    to resolve a key against (it infers one from selected assets only, and the explicit parameter
    is deprecated), while the check's step takes its partition from that tag."""
    return RunRequest(tags={PARTITION_NAME_TAG: key, DEADLINE_TAG: why})


def build_deadline_check(deadline: MonthDeadline) -> AssetChecksDefinition:
    """The ``month_ready_by_deadline`` check of ``landing/events_csv``, one result per month.

    The sensor reports its results; this body is what *Execute* in the UI runs for a month: the
    same judgement, now. A month not yet due passes.
    """

    @asset_check(
        asset=LANDING_KEY,
        name=CHECK_NAME,
        partitions_def=monthly_partitions,
        description=(
            f"The month's data came and {GOLD_KEY.to_user_string()} was built by its deadline "
            f"(day {deadline} UTC of the following month). Reported by {SENSOR_NAME}."
        ),
    )
    def month_ready_by_deadline(context, landing: LandingDirectory) -> AssetCheckResult:
        key = context.partition_key
        now = dt.datetime.now(dt.timezone.utc)
        directory = landing.directory()
        month = overdue_month(
            key,
            now,
            landing_files=landing_file_names(directory),
            built_months=built_months(context.instance),
            deadline=deadline,
        )
        if month is not None:
            return AssetCheckResult(
                passed=False,
                severity=AssetCheckSeverity.ERROR,
                description=failed_description(month),
                metadata=check_metadata(month, now, directory),
            )
        due = deadline.of(key)
        if now < due:
            return AssetCheckResult(
                passed=True,
                description=f"{key} is due by {_utc(due)}: not overdue yet.",
                metadata={"deadline": MetadataValue.text(_utc(due))},
            )
        return AssetCheckResult(
            passed=True,
            description=built_description(key, deadline),
            metadata=passed_metadata(key, deadline),
        )

    return month_ready_by_deadline
