"""`QualityThresholds`: how much bad input a month may hold before its checks warn or stop it, and
how far a month may stray from its predecessors, or a rebuild from what it replaces, before
someone is told.

A resource rather than constants so that a deployment sets its own (from
`medallion_assets.settings`) and the UI shows them beside the other resources; a single run can
still override the rejected-share ones through bronze's run config (`BronzeConfig`).
"""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field, model_validator

from medallion_assets.settings import Settings

_DEFAULTS = Settings.model_fields


class QualityThresholds(ConfigurableResource):
    """Shares of a month's source lines that bronze may reject, deviations from the months before
    it, and the revenue change of a rebuild worth a notice; all in percent."""

    rejected_warn_percent: float = Field(
        default=_DEFAULTS["rejected_warn_percent"].default,
        description="Bronze's rejected-share check WARNs above this share (0: any bad line).",
    )
    rejected_fail_percent: float = Field(
        default=_DEFAULTS["rejected_fail_percent"].default,
        description="Bronze's rejected-share check fails, blocking silver and gold, above this.",
    )
    volume_warn_percent: float = Field(
        default=_DEFAULTS["volume_warn_percent"].default,
        ge=0,
        description=(
            "The in-line checks (accepted rows, purchase revenue) WARN beyond this deviation from "
            "the median of the months before, either way."
        ),
    )
    volume_fail_drop_percent: float = Field(
        default=_DEFAULTS["volume_fail_drop_percent"].default,
        ge=0,
        le=100,
        description="The in-line checks fail (blocking) on a drop below the median beyond this.",
    )
    revenue_change_notice_percent: float = Field(
        default=_DEFAULTS["revenue_change_notice_percent"].default,
        ge=0,
        description="A rebuilt month whose revenue moves by more than this sends a notice.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> QualityThresholds:
        check_thresholds(self.rejected_warn_percent, self.rejected_fail_percent)
        return self

    @classmethod
    def of_settings(cls, settings: Settings) -> QualityThresholds:
        return cls(
            rejected_warn_percent=settings.rejected_warn_percent,
            rejected_fail_percent=settings.rejected_fail_percent,
            volume_warn_percent=settings.volume_warn_percent,
            volume_fail_drop_percent=settings.volume_fail_drop_percent,
            revenue_change_notice_percent=settings.revenue_change_notice_percent,
        )


def check_thresholds(warn: float, fail: float) -> None:
    """Raise ValueError unless 0 <= warn <= fail <= 100."""
    if not 0 <= warn <= fail <= 100:
        raise ValueError(
            f"Rejected-share thresholds must satisfy 0 <= warn ({warn}) <= fail ({fail}) <= 100."
        )
