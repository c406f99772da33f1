"""Where an alert stands on each channel, kept as tags of the failed run, and when to try again.

Why tags of the run: the state must outlive the process that tried to send the alert (the sensor
runs in the code server, which restarts with every deploy) and must not depend on the failure
sensor's cursor, which Dagster moves past a run whatever its evaluation did. Run tags live in the
instance's run storage, are written with one call (`DagsterInstance.add_run_tags`), can be
queried (`RunsFilter(tags=...)`) and are shown on the run's page in the UI, so whoever opens a
failed run sees whether anyone was told:

- ``medallion/alert``: ``pending`` while some channel still has to accept the alert, then
  ``delivered`` (every channel accepted it) or ``abandoned`` (some channel never did);
- ``medallion/alert/<channel>`` (``webhook``, ``email``): that channel's own status;
- ``medallion/alert/<channel>/attempts``, ``.../last_try`` (UTC, ISO 8601) and, after a failed
  try, ``.../last_error`` (the error as the sensors log it: never a secret).

Nothing here reads a clock: every function takes ``now``, so the schedule of retries and the
moment an alert is given up are tested with made-up times.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ALERT_TAG = "medallion/alert"
PENDING = "pending"
DELIVERED = "delivered"
ABANDONED = "abandoned"
STATUSES = (PENDING, DELIVERED, ABANDONED)
# Waits grow no longer than this: a channel back after a long outage is used within the hour.
MAX_WAIT = dt.timedelta(hours=1)
MAX_ERROR_CHARS = 300


def channel_tag(channel: str, field: str | None = None) -> str:
    """The tag holding ``channel``'s status, or one of its details (``attempts``, ...)."""
    return f"{ALERT_TAG}/{channel}" + (f"/{field}" if field else "")


@dataclass(frozen=True)
class RetryPolicy:
    """How an alert that a channel did not accept is retried: after ``first_wait``, then after
    twice as long each time (at most `MAX_WAIT`), until ``give_up_after`` has passed since the
    run failed; the last try is at that moment."""

    first_wait: dt.timedelta
    give_up_after: dt.timedelta
    max_wait: dt.timedelta = MAX_WAIT

    def __post_init__(self) -> None:
        if self.first_wait <= dt.timedelta(0) or self.give_up_after <= dt.timedelta(0):
            raise ValueError("the first wait and the retry period must be positive")

    def wait(self, failed_tries: int) -> dt.timedelta:
        """How long to wait after the ``failed_tries``-th failed try (1 for the first)."""
        # Capped before multiplying: 2 ** 60 seconds is no wait anyone means.
        doublings = min(max(failed_tries - 1, 0), 32)
        return min(self.first_wait * (2**doublings), self.max_wait)

    def deadline(self, failed_at: dt.datetime) -> dt.datetime:
        return failed_at + self.give_up_after


@dataclass(frozen=True)
class Delivery:
    """One channel's state for one run's alert."""

    channel: str
    status: str
    attempts: int
    last_try: dt.datetime
    last_error: str | None = None

    def next_try(self, policy: RetryPolicy, failed_at: dt.datetime) -> dt.datetime | None:
        """When the alert is due on this channel again; None once it is delivered or abandoned."""
        if self.status != PENDING:
            return None
        return min(self.last_try + policy.wait(self.attempts), policy.deadline(failed_at))

    def due(self, policy: RetryPolicy, failed_at: dt.datetime, now: dt.datetime) -> bool:
        next_try = self.next_try(policy, failed_at)
        return next_try is not None and now >= next_try

    def tags(self) -> dict[str, str]:
        tags = {
            channel_tag(self.channel): self.status,
            channel_tag(self.channel, "attempts"): str(self.attempts),
            channel_tag(self.channel, "last_try"): _timestamp(self.last_try),
        }
        if self.last_error is not None:
            tags[channel_tag(self.channel, "last_error")] = self.last_error
        return tags


def after_try(
    channel: str,
    previous: Delivery | None,
    error: str | None,
    *,
    now: dt.datetime,
    failed_at: dt.datetime,
    policy: RetryPolicy,
) -> Delivery:
    """The channel's state after a try at ``now`` that ended with ``error`` (None: the channel
    accepted the alert). A failed try at or after the deadline gives the alert up."""
    attempts = (previous.attempts if previous else 0) + 1
    last_error = previous.last_error if previous else None
    if error is None:
        return Delivery(channel, DELIVERED, attempts, now, last_error)
    error = error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"
    status = ABANDONED if now >= policy.deadline(failed_at) else PENDING
    return Delivery(channel, status, attempts, now, error)


def given_up(previous: Delivery, error: str, now: dt.datetime) -> Delivery:
    """The channel's state when its alert is given up without another try (its channel failed
    on another alert in the same tick, past this alert's deadline)."""
    return Delivery(previous.channel, ABANDONED, previous.attempts, now, error[:MAX_ERROR_CHARS])


def deliveries_from_tags(tags: Mapping[str, str]) -> dict[str, Delivery]:
    """Each channel's state as the run's tags record it. A channel whose tags are unreadable (set
    by hand, say) counts as not yet tried."""
    deliveries = {}
    prefix = ALERT_TAG + "/"
    for key, status in tags.items():
        channel = key[len(prefix) :] if key.startswith(prefix) else ""
        if not channel or "/" in channel or status not in STATUSES:
            continue
        try:
            attempts = int(tags[channel_tag(channel, "attempts")])
            last_try = _parse(tags[channel_tag(channel, "last_try")])
        except (KeyError, ValueError):
            continue
        error = tags.get(channel_tag(channel, "last_error"))
        deliveries[channel] = Delivery(channel, status, attempts, last_try, error)
    return deliveries


def overall(deliveries: Iterable[Delivery]) -> str:
    """The run's ``medallion/alert`` tag: pending while any channel is, abandoned if any channel
    gave up, delivered otherwise."""
    statuses = {d.status for d in deliveries}
    if PENDING in statuses:
        return PENDING
    return ABANDONED if ABANDONED in statuses else DELIVERED


def run_tags(deliveries: Iterable[Delivery]) -> dict[str, str]:
    """The tags recording ``deliveries`` on their run."""
    deliveries = list(deliveries)
    tags = {ALERT_TAG: overall(deliveries)}
    for delivery in deliveries:
        tags.update(delivery.tags())
    return tags


def _timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def _parse(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
