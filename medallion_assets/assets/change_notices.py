"""A notice to the alert channels when a rebuilt month's revenue moved.

Reports already sent for a month are wrong once the month is rebuilt with other revenue; the
people who sent them hear it from the same channels as failures, once, with the numbers: the
month's purchase revenue and purchases before → after and the brands that moved most. A move
within ``MEDALLION_REVENUE_CHANGE_NOTICE_PERCENT`` (default 0.1 %) sends nothing, nor does a first
build.

The notice is a `Message` sent through the `AlertChannels` resource (`deliver`), like a failed
run's alert. It is sent once, from
the step that wrote gold, and not retried: a channel that does not accept it is logged as a
warning, and the rebuilt month's materialization keeps the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medallion_assets.assets.rebuild_changes import MonthChange
from medallion_assets.resources.alert_channels import AlertChannels, AlertDeliveryError, deliver

# Brands named per month in a notice; the materialization has the full table.
BRANDS_IN_NOTICE = 3


@dataclass(frozen=True)
class RevenueChangeNotice:
    """What a revenue-change notice says, independent of the channel."""

    run_id: str
    run_url: str
    changes: tuple[MonthChange, ...]

    @property
    def months(self) -> str:
        return ", ".join(c.month for c in self.changes)

    @property
    def subject(self) -> str:
        return f"Revenue changed by a rebuild: {self.months}"

    def text(self) -> str:
        lines = [f"Revenue changed by a rebuild of {self.months}"]
        for change in self.changes:
            lines.append(change.summary())
            moved = ", ".join(
                f"{b.brand} {b.before:.2f} → {b.after:.2f} ({b.change:+.2f})"
                for b in change.brands[:BRANDS_IN_NOTICE]
            )
            if moved:
                lines.append(f"Brands that moved most: {moved}")
        lines.append(f"Run: {self.run_url}")
        return "\n".join(lines)

    def slack_payload(self) -> dict:
        return {"text": self.text()}


def worth_a_notice(change: MonthChange, percent: float) -> bool:
    """Whether a month's revenue moved by more than ``percent`` of what it was (a month that had
    none and now has some always did)."""
    moved = change.revenue_change_percent
    return moved is not None and abs(moved) > percent


def notify(
    changes: Sequence[MonthChange],
    *,
    percent: float,
    channels: AlertChannels,
    run_id: str,
    log,
) -> RevenueChangeNotice | None:
    """Send one notice for the months of ``changes`` whose revenue moved by more than
    ``percent``; the notice, or None when there was nothing to say."""
    moved = tuple(c for c in changes if worth_a_notice(c, percent))
    if not moved:
        return None
    notice = RevenueChangeNotice(
        run_id=run_id,
        run_url=f"{channels.webserver_url.rstrip('/')}/runs/{run_id}",
        changes=moved,
    )
    log.info(notice.text())
    if not channels.configured:
        return notice
    try:
        deliver(notice, channels)
    except AlertDeliveryError as error:
        log.warning(channels.scrub(f"Revenue-change notice not delivered: {error}"))
    return notice
