"""A month out of line with the months built before it: ``bronze_rows_in_line`` on its accepted
rows, ``silver_revenue_in_line`` on its purchase revenue.

The logic is shown on numbers (`in_line`), then on real range runs of the project's job: each month
of a backfill is compared with the months before it, those of the same run included.
"""

from __future__ import annotations

import statistics
from decimal import Decimal

import pytest
from dagster import AssetCheckSeverity, DagsterInstance

from medallion_assets.assets.in_line import in_line
from medallion_assets_tests.source_lines import good_lines, write_source
from medallion_assets_tests.test_checks import evaluations_by_month, run_range

ROWS = "bronze_rows_in_line"
REVENUE = "silver_revenue_in_line"


def check(values: dict[str, float], month: str, warn: float = 50, fail_drop: float = 80):
    return in_line(
        check_name=ROWS,
        asset_key=["bronze", "events"],
        what="accepted rows",
        month=month,
        values=values,
        warn=warn,
        fail_drop=fail_drop,
    )


NORMAL = {"2019-10": 1000, "2019-11": 900, "2019-12": 1100}


@pytest.mark.parametrize(
    "value,passed,severity,deviation",
    [
        (150, False, AssetCheckSeverity.ERROR, -85.0),  # a drop beyond 80 %
        (300, False, AssetCheckSeverity.WARN, -70.0),  # a drop beyond 50 %, within 80 %
        (1600, False, AssetCheckSeverity.WARN, 60.0),  # a rise beyond 50 % only warns
        (1400, True, AssetCheckSeverity.ERROR, 40.0),
        (500, True, AssetCheckSeverity.ERROR, -50.0),  # exactly 50 % is not beyond it
    ],
)
def test_a_month_is_compared_with_the_median_of_the_months_before(
    value, passed, severity, deviation
):
    result = check({**NORMAL, "2020-01": value}, "2020-01")
    assert (result.passed, result.severity) == (passed, severity)
    assert result.metadata["value"].value == value
    assert result.metadata["median"].value == 1000.0
    assert result.metadata["months_compared"].value == 3
    assert result.metadata["compared_months"].value == "2019-10, 2019-11, 2019-12"
    assert result.metadata["deviation_percent"].value == deviation


def test_later_months_are_not_history_of_earlier_ones():
    values = {**NORMAL, "2020-01": 1000, "2020-02": 10}
    assert check(values, "2020-01").passed  # February's collapse is after January


def test_the_first_months_pass_and_say_why():
    for month, built in (("2019-10", 0), ("2019-11", 1), ("2019-12", 2)):
        result = check({"2019-10": 1000, "2019-11": 10, "2019-12": 5000}, month)
        assert result.passed, month
        assert result.description == (
            f"No comparison: {built} month{'s' if built != 1 else ''} built before {month}, "
            "at least 3 are needed for a median."
        )
        assert result.metadata["months_compared"].value == built
        assert "median" not in result.metadata


def test_the_median_covers_at_most_the_last_twelve_months():
    values = {f"2018-{m:02d}": 10 for m in range(1, 13)} | {"2019-01": 10, "2019-02": 1000}
    values |= {f"2019-{m:02d}": 1000 for m in range(3, 13)} | {"2020-01": 1000}
    result = check(values, "2020-01")
    assert result.metadata["months_compared"].value == 12
    assert result.metadata["compared_months"].value.startswith("2019-01, 2019-02, 2019-03")
    assert result.metadata["median"].value == 1000.0 and result.passed


def revenue(lines: list[str]) -> Decimal:
    return sum((Decimal(x.split(",")[6]) for x in lines if ",purchase," in x), Decimal("0"))


MONTHS = ["2019-10", "2019-11", "2019-12", "2020-01", "2020-02"]
NAMES = ["2019-Oct.csv", "2019-Nov.csv", "2019-Dec.csv", "2020-Jan.csv", "2020-Feb.csv"]


@pytest.mark.graph
def test_a_backfill_compares_each_month_with_the_months_before_it_in_the_same_run(
    spark, landing_dir, settings
):
    # Three normal months, then one with 30 % of their rows and one with 140 %.
    sizes = [200, 200, 200, 60, 280]
    for index, (month, name, size) in enumerate(zip(MONTHS, NAMES, sizes, strict=True)):
        write_source(landing_dir, name, good_lines(size, month=month, start=1000 * index))
    # Thresholds under which both odd months stand out (the defaults, 50 % and a drop of 80 %,
    # would let both through).
    deployment = settings.model_copy(
        update={"volume_warn_percent": 25.0, "volume_fail_drop_percent": 60.0}
    )

    result = run_range(deployment, DagsterInstance.ephemeral(), MONTHS[0], MONTHS[-1])

    checks = evaluations_by_month(result)[ROWS]
    assert set(checks) == set(MONTHS)
    for month in MONTHS[:3]:
        assert checks[month].passed and "No comparison" in checks[month].description
    january, february = checks["2020-01"], checks["2020-02"]
    assert not january.passed and january.severity == AssetCheckSeverity.ERROR
    assert january.metadata["value"].value == 60
    assert january.metadata["median"].value == 200.0
    assert january.metadata["months_compared"].value == 3
    assert january.metadata["deviation_percent"].value == -70.0
    # February's median includes January, built earlier in the same run.
    assert not february.passed and february.severity == AssetCheckSeverity.WARN
    assert february.metadata["compared_months"].value == "2019-10, 2019-11, 2019-12, 2020-01"
    assert february.metadata["median"].value == 200.0
    assert february.metadata["deviation_percent"].value == 40.0
    # January's blocking ERROR stops silver for the run.
    assert not result.success
    assert "blocking asset check" in result.failure_data_for_node("bronze_events").error.message


@pytest.mark.graph
def test_silver_compares_each_months_purchase_revenue_with_the_months_before(
    spark, landing_dir, settings
):
    sizes = [200, 200, 200, 280]
    lines = {
        month: good_lines(size, month=month, start=1000 * index)
        for index, (month, size) in enumerate(zip(MONTHS, sizes, strict=False))
    }
    for month_lines, name in zip(lines.values(), NAMES, strict=False):
        write_source(landing_dir, name, month_lines)
    deployment = settings.model_copy(update={"volume_warn_percent": 25.0})

    result = run_range(deployment, DagsterInstance.ephemeral(), MONTHS[0], MONTHS[3])

    assert result.success  # a WARN does not stop the run
    checks = evaluations_by_month(result)[REVENUE]
    assert [checks[m].passed for m in MONTHS[:3]] == [True, True, True]
    revenues = {m: revenue(x) for m, x in lines.items()}
    median = statistics.median(revenues[m] for m in MONTHS[:3])
    deviation = float(100 * (revenues["2020-01"] - median) / median)
    assert deviation > 25  # the file's larger month has more revenue too
    january = checks["2020-01"]
    assert not january.passed and january.severity == AssetCheckSeverity.WARN
    assert january.metadata["value"].value == float(revenues["2020-01"])
    assert january.metadata["median"].value == float(median)
    assert january.metadata["deviation_percent"].value == round(deviation, 2)
    rows = evaluations_by_month(result)[ROWS]["2020-01"]
    assert rows.severity == AssetCheckSeverity.WARN
    assert rows.metadata["deviation_percent"].value == 40.0
