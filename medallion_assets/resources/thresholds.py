"""`QualityThresholds`: how much bad input a month may hold before its checks warn or stop it.

A resource rather than constants so that a deployment sets its own (from
`medallion_assets.settings`) and the UI shows them beside the other resources; a single run can
still override them through bronze's run config (`BronzeConfig`).
"""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field, model_validator

from medallion_assets.settings import Settings

_DEFAULTS = Settings.model_fields


class QualityThresholds(ConfigurableResource):
    """Shares of a month's source lines that bronze may reject, in percent."""

    rejected_warn_percent: float = Field(
        default=_DEFAULTS["rejected_warn_percent"].default,
        description="Bronze's rejected-share check WARNs above this share (0: any bad line).",
    )
    rejected_fail_percent: float = Field(
        default=_DEFAULTS["rejected_fail_percent"].default,
        description="Bronze's rejected-share check fails, blocking silver and gold, above this.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> QualityThresholds:
        check_thresholds(self.rejected_warn_percent, self.rejected_fail_percent)
        return self


def check_thresholds(warn: float, fail: float) -> None:
    """Raise ValueError unless 0 <= warn <= fail <= 100."""
    if not 0 <= warn <= fail <= 100:
        raise ValueError(
            f"Rejected-share thresholds must satisfy 0 <= warn ({warn}) <= fail ({fail}) <= 100."
        )
