"""A month out of line with the months before it: the check bronze makes of a month's accepted
rows and silver of its purchase revenue.

A file cut short, a source that stopped sending one kind of event, a month landed twice: each
leaves every line valid and every count adding up, and only shows against what the same month
looked like before. Each month is compared with the median of the months built before it (at
most a year of them, `month_history.WINDOW`), read from the Delta log rather than the tables: the
rows of each month's files, silver's recorded revenue (`month_summaries`). The log is read after
the run's own write, so a range run compares each of its months with the earlier months of the
same run too, as if they had been built one by one.

A deviation beyond ``warn`` percent either way WARNs; a drop beyond ``fail_drop`` percent is a
blocking ERROR, which stops what is built from the month: losing most of a month is the fault
that would otherwise reach the reports unnoticed. A month with fewer than `MIN_HISTORY` built
months before it passes, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from medallion_assets.delta.month_history import MIN_HISTORY, earlier


def in_line(
    *,
    check_name: str,
    asset_key: Sequence[str],
    what: str,
    month: str,
    values: Mapping[str, float],
    warn: float,
    fail_drop: float,
) -> AssetCheckResult:
    """One month's ``what`` (``values[month]``) against the median of the months before it in
    ``values`` (month key -> figure, every month built)."""
    value = float(values[month])
    history = earlier(values, month)
    metadata: dict[str, object] = {
        "value": MetadataValue.float(value),
        "months_compared": MetadataValue.int(len(history.months)),
        "compared_months": MetadataValue.text(", ".join(history.months) or "(none)"),
        "warn_beyond_percent": MetadataValue.float(float(warn)),
        "fail_drop_beyond_percent": MetadataValue.float(float(fail_drop)),
    }
    severity = AssetCheckSeverity.ERROR
    if history.median is None:
        built = len(history.months)
        passed = True
        description = (
            f"No comparison: {built} month{'s' if built != 1 else ''} built before {month}, "
            f"at least {MIN_HISTORY} are needed for a median."
        )
    else:
        median = history.median
        metadata["median"] = MetadataValue.float(median)
        if median == 0:
            deviation = 0.0 if value == 0 else None
        else:
            deviation = 100.0 * (value - median) / median
        shown = f"{what} {value:,.2f} against a median of {median:,.2f} over {history.months[0]}"
        shown += f"...{history.months[-1]}"
        if deviation is None:
            passed, severity = False, AssetCheckSeverity.WARN
            description = f"{shown}: the earlier months had none."
        else:
            metadata["deviation_percent"] = MetadataValue.float(round(deviation, 2))
            shown += f" ({deviation:+.1f} %)"
            if -deviation > fail_drop:
                passed = False
                description = f"{shown}: a drop of more than {fail_drop:g} %."
            elif abs(deviation) > warn:
                passed, severity = False, AssetCheckSeverity.WARN
                description = f"{shown}: more than {warn:g} % off."
            else:
                passed = True
                description = f"{shown}: in line."
    return AssetCheckResult(
        check_name=check_name,
        asset_key=list(asset_key),
        passed=passed,
        severity=severity,
        description=description,
        metadata=metadata,
    )
