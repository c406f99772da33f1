"""The data-quality gates on tables written with known defects.

Stand-in assets with the real asset keys write hand-made months through the real Spark -> Delta IO
manager; the project's checks then run against those tables in real Dagster runs. Each check is
shown failing on the defect it exists for, per month, and a failing check is shown stopping what
depends on the checked asset.
"""

import datetime as dt
from decimal import Decimal

import pytest
from dagster import (
    AssetCheckSeverity,
    AssetOut,
    AssetSelection,
    BackfillPolicy,
    DagsterInstance,
    Failure,
    Output,
    asset,
    materialize,
    multi_asset,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from medallion_assets.checks import (
    FAIL_PERCENT_ENV,
    WARN_PERCENT_ENV,
    RejectedShareConfig,
    bronze_lines_accounted_for,
    bronze_rejected_share,
    duplicate_groups,
    gold_revenue_matches_silver,
    silver_no_duplicate_events,
    silver_user_id_not_null,
)
from medallion_assets.io.delta_io_manager import SparkDeltaIOManager
from medallion_assets.partitions import monthly_partitions
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets_tests.source_lines import check_evaluations, started_steps

EVENT_COLUMNS = (
    "event_time timestamp, event_type string, product_id bigint, category_id bigint, "
    "category_code string, brand string, price decimal(12,2), user_id bigint, user_session string, "
    "month date"
)
PARTITIONED = dict(
    partitions_def=monthly_partitions,
    metadata={"partition_expr": "month"},
    backfill_policy=BackfillPolicy.single_run(),
)
OCT, NOV, DEC = dt.date(2019, 10, 1), dt.date(2019, 11, 1), dt.date(2019, 12, 1)


def event(month: dt.date, n: int, *, kind="view", brand="apple", price="1.00", user=7):
    at = dt.datetime(month.year, month.month, 2, 0, 0, n, tzinfo=dt.timezone.utc)
    return (at, kind, 100 + n, 5, None, brand, Decimal(price), user, f"s{n}", month)


# What the stand-in assets write, per month; each test fills it.
SILVER: dict[dt.date, list[tuple]] = {}
GOLD_REVENUE: dict[dt.date, list[tuple]] = {}
BRONZE: dict[dt.date, tuple[int, int, int | None]] = {}  # accepted, rejected, recorded lines


@asset(key=["silver", "events"], **PARTITIONED)
def silver_stand_in(context, spark: SparkSessionResource):
    rows = [r for key in context.partition_keys for r in SILVER.get(_month(key), [])]
    return spark.spark_session.createDataFrame(rows, EVENT_COLUMNS)


@asset(key=["gold", "downstream_of_silver"], deps=[silver_stand_in], **PARTITIONED)
def downstream_of_silver() -> None:
    """Depends on silver: must not run when a blocking silver check fails."""


@asset(key=["gold", "revenue_by_brand"], deps=[silver_stand_in], **PARTITIONED)
def revenue_stand_in(context, spark: SparkSessionResource):
    rows = [r for key in context.partition_keys for r in GOLD_REVENUE.get(_month(key), [])]
    return spark.spark_session.createDataFrame(
        rows, "month date, brand string, total_revenue decimal(22,2), purchases bigint"
    )


@multi_asset(
    outs={
        "events": AssetOut(key=["bronze", "events"], metadata={"partition_expr": "month"}),
        "events_rejected": AssetOut(
            key=["bronze", "events_rejected"], metadata={"partition_expr": "month"}
        ),
    },
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
)
def bronze_stand_in(context, spark: SparkSessionResource):
    session = spark.spark_session
    months = [_month(key) for key in context.partition_keys]
    accepted = [event(m, n) for m in months for n in range(BRONZE[m][0])]
    rejected = [
        (m, "2019-Oct.csv", f"bad {n}", "reason") for m in months for n in range(BRONZE[m][1])
    ]
    lines = {m.strftime("%Y-%m"): BRONZE[m][2] for m in months if BRONZE[m][2] is not None}
    yield Output(session.createDataFrame(accepted, EVENT_COLUMNS), output_name="events")
    yield Output(
        session.createDataFrame(
            rejected, "month date, _source_file string, line string, reason string"
        ),
        output_name="events_rejected",
        metadata={"source_data_lines": lines},
    )


def _month(key: str) -> dt.date:
    return dt.date.fromisoformat(key + "-01")


@pytest.fixture
def resources(tmp_path, spark):
    session = SparkSessionResource()
    return {
        "spark": session,
        "io_manager": SparkDeltaIOManager(root_uri=str(tmp_path / "wh"), spark=session),
    }


def run(definitions, resources, start, end, instance=None, run_config=None):
    return materialize(
        definitions,
        resources=resources,
        tags={ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end},
        instance=instance or DagsterInstance.ephemeral(),
        raise_on_error=False,
        run_config=run_config,
    )


def test_silver_checks_count_nulls_and_duplicates_per_month_and_block_downstream(resources):
    clean = [event(OCT, n) for n in range(5)]
    SILVER.clear()
    SILVER[OCT] = clean
    SILVER[NOV] = [
        event(NOV, 1),
        event(NOV, 2, user=None),
        event(NOV, 3, user=None),
        event(NOV, 4),
        event(NOV, 4),  # an exact duplicate
        event(NOV, 5, brand=None),
        event(NOV, 5, brand=None),  # a duplicate with a null column
    ]
    instance = DagsterInstance.ephemeral()
    definitions = [
        silver_stand_in,
        downstream_of_silver,
        silver_user_id_not_null,
        silver_no_duplicate_events,
    ]

    result = run(definitions, resources, "2019-10", "2019-11", instance)

    assert not result.success
    checks = check_evaluations(result)
    nulls, duplicates = checks["silver_user_id_not_null"], checks["silver_no_duplicate_events"]
    assert not nulls.passed and nulls.severity == AssetCheckSeverity.ERROR
    assert nulls.metadata["null_user_id_rows"].value == {"2019-10": 0, "2019-11": 2}
    assert not duplicates.passed
    assert duplicates.metadata["duplicate_rows"].value == {"2019-10": 0, "2019-11": 2}
    assert "gold__downstream_of_silver" not in started_steps(result)

    # The checks read only the months they are asked about: October alone is clean.
    october = materialize(
        definitions,
        resources=resources,
        tags={ASSET_PARTITION_RANGE_START_TAG: "2019-10", ASSET_PARTITION_RANGE_END_TAG: "2019-10"},
        instance=instance,
        selection=AssetSelection.checks_for_assets(silver_stand_in),
    )
    assert october.success
    assert "silver__events" not in started_steps(october)  # only the checks ran
    assert all(e.passed for e in october.get_asset_check_evaluations())
    assert len(october.get_asset_check_evaluations()) == 2


def test_gold_revenue_must_equal_silver_purchase_revenue_per_month(resources):
    SILVER.clear()
    SILVER[OCT] = [
        event(OCT, 1, kind="purchase", price="10.10"),
        event(OCT, 2, kind="purchase", price="0.05", brand=None),
        event(OCT, 3, kind="view", price="99.00"),
    ]
    SILVER[NOV] = [event(NOV, 1, kind="purchase", price="3.00"), event(NOV, 2, kind="cart")]
    SILVER[DEC] = [event(DEC, 1, kind="view")]  # no purchase: gold holds no row for December
    GOLD_REVENUE.clear()
    GOLD_REVENUE[OCT] = [(OCT, "apple", Decimal("10.10"), 1), (OCT, None, Decimal("0.05"), 1)]
    GOLD_REVENUE[NOV] = [(NOV, "apple", Decimal("3.01"), 1)]  # a cent too much

    result = run(
        [silver_stand_in, revenue_stand_in, gold_revenue_matches_silver],
        resources,
        "2019-10",
        "2019-12",
    )

    assert not result.success
    check = check_evaluations(result)["gold_revenue_matches_silver"]
    assert not check.passed
    assert check.metadata["gold_total_revenue"].value == {
        "2019-10": "10.15",
        "2019-11": "3.01",
        "2019-12": "0.00",
    }
    assert check.metadata["silver_purchase_revenue"].value == {
        "2019-10": "10.15",
        "2019-11": "3.00",
        "2019-12": "0.00",
    }
    assert "2019-11: gold 3.01 vs silver 3.00" in check.description
    assert "2019-10" not in check.description and "2019-12" not in check.description


def test_bronze_rows_must_add_up_to_the_recorded_data_lines(resources):
    BRONZE.clear()
    BRONZE[OCT] = (6, 2, 8)  # every line accounted for
    BRONZE[NOV] = (6, 2, 9)  # one line neither accepted nor rejected

    result = run([bronze_stand_in, bronze_lines_accounted_for], resources, "2019-10", "2019-11")

    assert not result.success
    check = check_evaluations(result)["bronze_lines_accounted_for"]
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert check.metadata["source_data_lines"].value == {"2019-10": 8, "2019-11": 9}
    assert check.metadata["accepted_rows"].value == {"2019-10": 6, "2019-11": 6}
    assert check.metadata["rejected_rows"].value == {"2019-10": 2, "2019-11": 2}
    assert "2019-11: 9 lines, 6 + 2 rows" in check.description
    assert "2019-10" not in check.description


def test_a_month_without_a_recorded_line_count_fails_the_line_check(resources):
    BRONZE.clear()
    BRONZE[OCT] = (3, 0, None)

    result = run([bronze_stand_in, bronze_lines_accounted_for], resources, "2019-10", "2019-10")

    check = check_evaluations(result)["bronze_lines_accounted_for"]
    assert not check.passed
    assert "No data-line count recorded by bronze for 2019-10" in check.description


# -- thresholds of the rejected share --------------------------------------------------------------


def test_the_failing_threshold_is_set_in_the_run_config(resources, monkeypatch):
    monkeypatch.delenv(WARN_PERCENT_ENV, raising=False)
    monkeypatch.delenv(FAIL_PERCENT_ENV, raising=False)
    BRONZE.clear()
    BRONZE[OCT] = (18, 2, 20)  # 10 % rejected: above the default 5 %
    config = {
        "ops": {"bronze__events_bronze_rejected_share": {"config": {"fail_above_percent": 12.5}}}
    }

    result = run(
        [bronze_stand_in, bronze_rejected_share], resources, "2019-10", "2019-10", run_config=config
    )

    assert result.success  # a warning does not stop the run
    check = check_evaluations(result)["bronze_rejected_share"]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.metadata["fail_above_percent"].value == 12.5
    assert check.metadata["rejected_share_percent"].value == {"2019-10": 10.0}


def test_rejected_share_thresholds_default_to_zero_and_five_percent(monkeypatch):
    monkeypatch.delenv(WARN_PERCENT_ENV, raising=False)
    monkeypatch.delenv(FAIL_PERCENT_ENV, raising=False)
    assert RejectedShareConfig().thresholds() == (0.0, 5.0)


def test_rejected_share_thresholds_come_from_the_environment_unless_configured(monkeypatch):
    monkeypatch.setenv(WARN_PERCENT_ENV, "1.5")
    monkeypatch.setenv(FAIL_PERCENT_ENV, "10")
    assert RejectedShareConfig().thresholds() == (1.5, 10.0)
    assert RejectedShareConfig(fail_above_percent=20).thresholds() == (1.5, 20.0)


@pytest.mark.parametrize(
    "warn,fail,env",
    [(6, 5, {}), (-1, 5, {}), (0, 101, {}), (None, None, {FAIL_PERCENT_ENV: "five"})],
)
def test_nonsensical_thresholds_fail_without_retry(warn, fail, env, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(Failure) as error:
        RejectedShareConfig(warn_above_percent=warn, fail_above_percent=fail).thresholds()
    assert error.value.allow_retries is False


def test_duplicate_groups_are_exact_despite_hash_collisions(spark):
    """Spark's row hash skips nulls, so ("a", null) and (null, "a") hash alike: the check must
    still tell them apart, and still count true copies that hold nulls."""
    month = dt.date(2019, 10, 1)
    at = dt.datetime(2019, 10, 1, tzinfo=dt.timezone.utc)
    rows = [
        (at, "view", 1, None, "a", None, Decimal("1.00"), 7, "s", month),
        (at, "view", 1, None, None, "a", Decimal("1.00"), 7, "s", month),  # same hash, not a copy
        (at, "cart", 2, None, None, None, Decimal("2.00"), 7, None, month),
        (at, "cart", 2, None, None, None, Decimal("2.00"), 7, None, month),  # a copy, with nulls
        (at, "cart", 2, None, None, None, Decimal("2.00"), 7, None, month),  # and another
        (at, "cart", 2, None, None, None, Decimal("2.00"), 7, None, dt.date(2019, 11, 1)),
    ]
    schema = (
        "event_time timestamp, event_type string, product_id bigint, category_id bigint, "
        "category_code string, brand string, price decimal(12,2), user_id bigint, "
        "user_session string, month date"
    )
    groups = duplicate_groups(spark.createDataFrame(rows, schema)).collect()
    assert [(g.event_type, g.month, g["count"]) for g in groups] == [("cart", month, 3)]
