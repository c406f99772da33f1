"""The data-quality gates: each check shown failing on the fault it exists for.

The checks are computed inside each layer's step from what the write observed and from the Delta
log, so the faults are made the way they would happen: a transform that loses or invents rows
(patched into the real asset for one test), or numbers that disagree (the pure check functions).
Every end-to-end test runs the project's real job on a real file.
"""

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    Failure,
    MetadataValue,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from deltalake import DeltaTable
from pyspark.sql import functions as F

from medallion_assets.assets import gold, silver
from medallion_assets.assets.bronze import BronzeConfig, lines_accounted_for, rejected_share
from medallion_assets.assets.gold import funnel_matches_silver, revenue_matches_silver
from medallion_assets.assets.silver import rows_accounted_for, user_id_not_null
from medallion_assets.definitions import build_defs
from medallion_assets.delta.commit import commit_files, describe_file
from medallion_assets.delta.log import filesystem_for, live_files, table_arrow_schema
from medallion_assets.delta.month_summaries import MONTH_SUMMARIES
from medallion_assets.partitions import month_value, monthly_partitions
from medallion_assets.resources.thresholds import QualityThresholds
from medallion_assets.settings import Settings
from medallion_assets.transforms import grouped_events, revenue_by_brand
from medallion_assets_tests.source_lines import (
    DOWNSTREAM_STEPS,
    check_evaluations,
    good_lines,
    retried_steps,
    run_job,
    started_steps,
    write_source,
)

MONTHS = ["2019-10", "2019-11"]


# -- bronze ---------------------------------------------------------------------------------------


def test_bronze_rows_must_add_up_to_the_files_data_lines():
    result = lines_accounted_for(
        data_lines=9,  # one line in neither table
        observed={"accepted": 6, "rejected": 2},
        accepted_rows=6,
        rejected_rows=2,
    )
    assert not result.passed
    assert "9 lines in the file, 6 + 2 rows in the tables" in result.description
    # Plain numbers, which the UI shows as they are and plots across runs.
    assert result.metadata["source_data_lines"] == MetadataValue.int(9)
    assert result.metadata["accepted_rows"] == MetadataValue.int(6)


def test_bronze_tables_must_hold_what_the_parser_counted():
    result = lines_accounted_for(
        data_lines=8,
        observed={"accepted": 7, "rejected": 1},
        accepted_rows=6,  # a row lost between the parser and the commit...
        rejected_rows=2,  # ...and one rejected twice
    )
    assert not result.passed
    assert "the parser accepted 7 and rejected 1, the tables hold 6 and 2" in result.description
    assert lines_accounted_for(8, {"accepted": 6, "rejected": 2}, 6, 2).passed


def test_bronze_counts_missing_from_spark_fail_the_check():
    result = lines_accounted_for(3, None, 3, 0)
    assert not result.passed and "did not report" in result.description


@pytest.mark.parametrize(
    "rejected,passed,severity",
    [
        (0, True, AssetCheckSeverity.ERROR),
        (1, False, AssetCheckSeverity.WARN),
        (6, False, AssetCheckSeverity.ERROR),
    ],
)
def test_rejected_share_warns_then_fails(rejected, passed, severity):
    result = rejected_share(100 - rejected, rejected, warn=0.0, fail=5.0)
    assert (result.passed, result.severity) == (passed, severity)
    assert result.metadata["rejected_share_percent"] == MetadataValue.float(float(rejected))
    assert result.metadata["rejected_rows"] == MetadataValue.int(rejected)


@pytest.mark.graph
def test_a_run_sets_the_failing_threshold_and_the_deployment_the_warning_one(
    landing_dir, settings
):
    lines = [*good_lines(18), "bad line", good_lines(1)[0].replace(",view,", ",click,")]
    write_source(landing_dir, "2019-Oct.csv", lines)  # 10 % rejected: above the default 5 %
    deployment = settings.model_copy(update={"rejected_warn_percent": 1.5})

    result = run_job(
        deployment,
        run_config={"ops": {"bronze_events": {"config": {"fail_above_percent": 12.5}}}},
    )

    assert result.success  # a warning does not stop the run
    check = check_evaluations(result)["bronze_rejected_share"]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.metadata["warn_above_percent"].value == 1.5
    assert check.metadata["fail_above_percent"].value == 12.5
    assert check.metadata["rejected_share_percent"].value == 10.0


def thresholds_of(settings: Settings) -> QualityThresholds:
    """The thresholds resource the project's definitions give bronze under ``settings``."""
    return build_defs(settings).resources["thresholds"]


def test_rejected_share_thresholds_default_to_zero_and_five_percent():
    assert BronzeConfig().thresholds(thresholds_of(Settings())) == (0.0, 5.0)


def test_rejected_share_thresholds_come_from_the_environment_unless_configured():
    settings = Settings.from_env(
        {
            Settings.env_name("rejected_warn_percent"): "1.5",
            Settings.env_name("rejected_fail_percent"): "10",
        }
    )
    deployed = thresholds_of(settings)
    assert BronzeConfig().thresholds(deployed) == (1.5, 10.0)
    assert BronzeConfig(fail_above_percent=20).thresholds(deployed) == (1.5, 20.0)


@pytest.mark.parametrize(
    "warn,fail,deployed",
    [
        (6, 5, QualityThresholds()),
        (-1, 5, QualityThresholds()),
        (0, 101, QualityThresholds()),
        # The run's failing threshold below the deployment's warning threshold.
        (None, 2, QualityThresholds(rejected_warn_percent=3, rejected_fail_percent=5)),
    ],
)
def test_nonsensical_thresholds_fail_without_retry(warn, fail, deployed):
    with pytest.raises(Failure) as error:
        BronzeConfig(warn_above_percent=warn, fail_above_percent=fail).thresholds(deployed)
    assert error.value.allow_retries is False


# -- silver ---------------------------------------------------------------------------------------

OBSERVED = {"silver_rows": 7, "duplicates_removed": 1}


def accounted(observed, bronze_rows=10, nulls=2, silver_rows=7):
    return rows_accounted_for(
        observed, bronze_rows=bronze_rows, bronze_null_users=nulls, silver_rows=silver_rows
    )


def test_silver_rows_add_up_to_bronze():
    result = accounted(OBSERVED)
    assert result.passed, result.description
    assert result.metadata["duplicates_removed"].value == 1
    assert result.metadata["null_user_rows"].value == 2


@pytest.mark.parametrize(
    "observed,bronze_rows,nulls,silver_rows,message",
    [
        (OBSERVED, 11, 2, 7, "11 rows read != 7 kept + 1 extra copies + 2 without a user"),
        (OBSERVED, 10, 3, 7, "10 rows read != 7 kept + 1 extra copies + 3 without a user"),
        ({**OBSERVED, "silver_rows": 8}, 10, 2, 8, "10 rows read != 8 kept + 1 extra copies + 2"),
        (OBSERVED, 10, 2, 6, "7 rows written, silver's table holds 6"),
        ({**OBSERVED, "silver_rows": None}, 10, 2, 7, "did not report"),
        (OBSERVED, 10, None, 7, "bronze's Delta log has no user_id null counts for the month"),
        (
            {**OBSERVED, "events_in_two_months": 1},
            10,
            2,
            7,
            "1 events are in bronze under two months, kept once under the earlier",
        ),
    ],
)
def test_silver_accounting_names_what_does_not_add_up(
    observed, bronze_rows, nulls, silver_rows, message
):
    result = accounted(observed, bronze_rows, nulls, silver_rows)
    assert not result.passed and message in result.description


def test_a_month_without_bronze_rows_needs_no_null_counts():
    result = accounted({"silver_rows": 0, "duplicates_removed": 0}, 0, None, 0)
    assert result.passed, result.description


def test_silver_nulls_come_from_the_log_statistics():
    assert user_id_not_null(0).passed
    failed = user_id_not_null(3)
    assert not failed.passed and "3 rows with a null user_id" in failed.description
    assert failed.metadata["null_user_id_rows"] == MetadataValue.int(3)
    unknown = user_id_not_null(None)
    assert not unknown.passed and "No null counts" in unknown.description


@pytest.mark.graph
def test_a_silver_that_loses_a_row_fails_its_check_blocks_gold_and_is_not_retried(
    landing_dir, settings, monkeypatch
):
    write_source(landing_dir, "2019-Oct.csv", good_lines(50))

    def losing_one(bronze, month_constants=None, partitions=None):
        # A de-duplication bug: one distinct event dropped after the copies were counted.
        events = grouped_events(bronze, month_constants, partitions)
        return events.where(F.col("product_id") != 1000)

    monkeypatch.setattr(silver, "grouped_events", losing_one)
    result = run_job(settings)

    assert not result.success
    check = check_evaluations(result)["silver_rows_accounted_for"]
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert "50 rows read != 49 kept + 0 extra copies + 0 without a user" in check.description
    failure = result.failure_data_for_node("silver_events")
    assert "blocking asset check" in failure.error.message
    assert retried_steps(result) == []  # a failed check is a fact about data: no retry
    assert "gold_tables" not in started_steps(result)
    assert set(DOWNSTREAM_STEPS) - {"gold_tables"} <= set(started_steps(result))


# -- gold -----------------------------------------------------------------------------------------

SILVER_TOTALS = {"revenue": Decimal("10.15"), "purchases": 2, "views": 5, "carts": 1}


def test_gold_revenue_must_equal_silver_purchase_revenue():
    good = revenue_matches_silver(SILVER_TOTALS, {"revenue": Decimal("10.15"), "purchases": 2})
    assert good.passed and good.metadata["gold_revenue"].value == "10.15"
    bad = revenue_matches_silver(SILVER_TOTALS, {"revenue": Decimal("10.16"), "purchases": 2})
    assert not bad.passed and "revenue: gold 10.16 vs silver 10.15" in bad.description
    # A month without purchases sums to NULL on both sides: zero, equal.
    empty = revenue_matches_silver(
        {"revenue": None, "purchases": 0}, {"revenue": None, "purchases": None}
    )
    assert empty.passed


def test_gold_compares_exactly_with_silver_totals_recorded_as_text():
    # Silver's commit records a month's revenue as text, so that no digit is lost.
    recorded = {"revenue": "10.15", "purchases": 2, "views": 5, "carts": 1}
    good = revenue_matches_silver(recorded, {"revenue": Decimal("10.15"), "purchases": 2})
    assert good.passed, good.description
    assert good.metadata["silver_revenue"] == MetadataValue.text("10.15")
    assert good.metadata["gold_purchases"] == MetadataValue.int(2)
    bad = revenue_matches_silver(recorded, {"revenue": Decimal("10.14"), "purchases": 2})
    assert not bad.passed and "revenue: gold 10.14 vs silver 10.15" in bad.description


def test_gold_funnel_must_count_silver_events():
    good = funnel_matches_silver(SILVER_TOTALS, {"views": 5, "carts": 1, "purchases": 2})
    assert good.passed and good.metadata["gold_views"].value == 5
    bad = funnel_matches_silver(SILVER_TOTALS, {"views": 4, "carts": 1, "purchases": 2})
    assert not bad.passed and "views: gold 4 vs silver 5" in bad.description


@pytest.mark.graph
def test_a_gold_aggregate_that_drops_the_null_brand_fails_its_check(
    landing_dir, settings, monkeypatch
):
    write_source(landing_dir, "2019-Oct.csv", good_lines(60))

    def without_null_brand(frame):
        return revenue_by_brand(frame).where(F.col("brand").isNotNull())

    monkeypatch.setattr(gold, "revenue_by_brand", without_null_brand)
    result = run_job(settings)

    assert not result.success
    checks = check_evaluations(result)
    revenue = checks["gold_revenue_matches_silver"]
    assert not revenue.passed and "revenue: gold" in revenue.description
    assert checks["gold_funnel_matches_silver"].passed
    assert retried_steps(result) == []


@pytest.mark.graph
def test_gold_checks_pass_on_real_data_with_exact_decimals(landing_dir, settings):
    write_source(landing_dir, "2019-Oct.csv", good_lines(75))
    result = run_job(settings)
    assert result.success
    checks = check_evaluations(result)
    assert set(checks) == {
        "bronze_lines_accounted_for",
        "bronze_rejected_share",
        "bronze_rows_in_line",
        "silver_rows_accounted_for",
        "silver_user_id_not_null",
        "silver_revenue_in_line",
        "gold_revenue_matches_silver",
        "gold_funnel_matches_silver",
    }
    assert all(c.passed for c in checks.values())
    expected = sum(Decimal(line.split(",")[6]) for line in good_lines(75) if ",purchase," in line)
    assert checks["gold_revenue_matches_silver"].metadata["silver_revenue"].value == str(expected)
    assert checks["bronze_lines_accounted_for"].metadata["source_data_lines"].value == 75


# -- silver's recorded totals --------------------------------------------------------------------

GOLD_ONLY = [AssetKey(["gold", "revenue_by_brand"]), AssetKey(["gold", "daily_funnel"])]


def _silver_month_files(warehouse_dir: Path) -> list[Path]:
    table = DeltaTable(str(warehouse_dir / "silver" / "events"))
    return [warehouse_dir / "silver" / "events" / p for p, _, _ in live_files(table)]


@pytest.mark.graph
def test_silver_records_its_months_totals_and_gold_checks_against_them(
    landing_dir, warehouse_dir, settings
):
    lines = good_lines(80)
    write_source(landing_dir, "2019-Oct.csv", lines)
    result = run_job(settings)
    assert result.success

    history = DeltaTable(str(warehouse_dir / "silver" / "events")).history(1)
    summary = json.loads(history[0][MONTH_SUMMARIES])["2019-10"]
    purchases = [line for line in lines if ",purchase," in line]
    assert Decimal(summary["revenue"]) == sum(Decimal(line.split(",")[6]) for line in purchases)
    assert summary["purchases"] == len(purchases)
    assert summary["views"] == sum(",view," in line for line in lines)
    assert summary["carts"] == sum(",cart," in line for line in lines)
    checks = check_evaluations(result)
    for name in ("gold_revenue_matches_silver", "gold_funnel_matches_silver"):
        assert checks[name].passed
        assert checks[name].metadata["silver_totals_from"].value == "silver's Delta commit"


@pytest.mark.graph
def test_a_silver_file_changed_after_its_commit_fails_gold_checks(
    landing_dir, warehouse_dir, settings
):
    write_source(landing_dir, "2019-Oct.csv", good_lines(80))
    assert run_job(settings).success
    # The month's file rewritten in place without one purchase: the log still names it, so gold
    # reads it, and a count on gold's own read would agree with what gold then writes.
    (path,) = _silver_month_files(warehouse_dir)
    rows = pq.read_table(path)
    first = pc.index(rows["event_type"], "purchase").as_py()
    pq.write_table(pa.concat_tables([rows.slice(0, first), rows.slice(first + 1)]), path)
    purchases = pc.sum(pc.equal(rows["event_type"], "purchase")).as_py()

    result = run_job(settings, asset_selection=GOLD_ONLY)

    assert not result.success
    checks = check_evaluations(result)
    revenue, funnel = checks["gold_revenue_matches_silver"], checks["gold_funnel_matches_silver"]
    lost_one = f"purchases: gold {purchases - 1} vs silver {purchases}"
    assert not revenue.passed and lost_one in revenue.description
    assert not funnel.passed and lost_one in funnel.description
    assert retried_steps(result) == []


@pytest.mark.graph
def test_gold_counts_silver_itself_when_silver_recorded_nothing_for_its_files(
    landing_dir, warehouse_dir, settings
):
    write_source(landing_dir, "2019-Oct.csv", good_lines(80))
    assert run_job(settings).success
    # The month's file replaced by a copy under another name, committed without totals (as an
    # older version of the pipeline, or a compaction, would leave it).
    table_uri = str(warehouse_dir / "silver" / "events")
    table = DeltaTable(table_uri)
    ((relative, _, _),) = live_files(table)
    copy = relative.replace("part-", "part-copy-")
    shutil.copy(warehouse_dir / "silver" / "events" / relative, Path(table_uri) / copy)
    fs, table_path = filesystem_for(table_uri)
    commit_files(
        table_uri,
        table_arrow_schema(table),
        [describe_file(fs, table_path, copy, {"month": month_value("2019-10")})],
        partition_by=["month"],
        replace_partitions=[month_value("2019-10")],
    )

    result = run_job(settings, asset_selection=GOLD_ONLY)

    assert result.success
    checks = check_evaluations(result)
    for name in ("gold_revenue_matches_silver", "gold_funnel_matches_silver"):
        assert checks[name].passed
        assert checks[name].metadata["silver_totals_from"].value == "gold's read of silver"


@pytest.mark.graph
def test_a_month_without_purchases_passes_every_check(landing_dir, settings):
    # Spark reports no observation for a write it proves empty (no revenue rows): the checks
    # take the table's zero rows from the log instead of failing for want of counts.
    write_source(
        landing_dir, "2019-Oct.csv", [x for x in good_lines(60) if ",purchase," not in x]
    )
    result = run_job(settings)
    checks = check_evaluations(result)
    assert result.success, {n: c.description for n, c in checks.items() if not c.passed}
    revenue = checks["gold_revenue_matches_silver"]
    assert revenue.metadata["gold_revenue"].value == "0.00"
    assert revenue.metadata["gold_purchases"].value == 0


@pytest.mark.graph
def test_a_month_where_no_event_has_a_user_passes_every_check(landing_dir, settings):
    lines = []
    for line in good_lines(30):
        fields = line.split(",")
        fields[7] = ""  # user_id
        lines.append(",".join(fields))
    write_source(landing_dir, "2019-Oct.csv", lines)
    result = run_job(settings)
    checks = check_evaluations(result)
    assert result.success, {n: c.description for n, c in checks.items() if not c.passed}
    assert checks["silver_user_id_not_null"].metadata["null_user_id_rows"].value == 0
    assert checks["silver_rows_accounted_for"].metadata["null_user_rows"].value == 30
    assert checks["gold_funnel_matches_silver"].metadata["gold_views"].value == 0


# -- a range run: every month its own results -----------------------------------------------------

CHECKS = {
    ("bronze", "events"): (
        "bronze_lines_accounted_for", "bronze_rejected_share", "bronze_rows_in_line",
    ),
    ("silver", "events"): (
        "silver_rows_accounted_for", "silver_user_id_not_null", "silver_revenue_in_line",
    ),
    ("gold", "revenue_by_brand"): ("gold_revenue_matches_silver",),
    ("gold", "daily_funnel"): ("gold_funnel_matches_silver",),
}


def run_range(settings: Settings, instance: DagsterInstance, start: str, end: str):
    """The project's job for the months start...end in one run, as a backfill with
    `BackfillPolicy.single_run` launches it."""
    job = build_defs(settings).resolve_job_def("medallion_monthly")
    return job.execute_in_process(
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end},
        raise_on_error=False,
    )


def evaluations_by_month(result) -> dict[str, dict[str, object]]:
    """check name -> month -> its evaluation; a second evaluation of a check and month fails."""
    found: dict[str, dict[str, object]] = {}
    for evaluation in result.get_asset_check_evaluations():
        months = found.setdefault(evaluation.check_name, {})
        assert evaluation.partition not in months, (evaluation.check_name, evaluation.partition)
        months[evaluation.partition] = evaluation
    return found


def ui_check_statuses(instance: DagsterInstance) -> dict[str, dict[str, list[str]]]:
    """What the UI shows for each check, per status: the months, as the webserver works them out
    from the instance (the check's partition status, from its planned and recorded results)."""
    keys = [
        (AssetCheckKey(AssetKey(list(asset)), name), monthly_partitions)
        for asset, names in CHECKS.items()
        for name in names
    ]
    states = instance.event_log_storage.get_asset_check_state(keys)
    return {
        key.name: {
            status.value: sorted(subset.subset_value.get_partition_keys())
            for status, subset in states[key].subsets.items()
            if not subset.is_empty
        }
        for key, _ in keys
    }


def materializations_by_month(instance: DagsterInstance, asset: tuple[str, ...]) -> dict:
    records = instance.fetch_materializations(AssetKey(list(asset)), limit=100).records
    latest: dict[str, dict[str, object]] = {}
    for record in records:  # newest first
        event = record.asset_materialization
        latest.setdefault(event.partition, {k: v.value for k, v in event.metadata.items()})
    return latest


@pytest.mark.graph
def test_a_two_month_run_records_each_months_checks_and_rows_under_that_month(
    landing_dir, settings
):
    october = good_lines(40)
    november = [*good_lines(30, month="2019-11", start=100), "a line bronze rejects"]
    write_source(landing_dir, "2019-Oct.csv", october)
    write_source(landing_dir, "2019-Nov.csv", november)
    instance = DagsterInstance.ephemeral()

    result = run_range(settings, instance, "2019-10", "2019-11")

    assert result.success  # November's 3.2 % rejected is a warning, below the failing 5 %
    checks = evaluations_by_month(result)
    assert set(checks) == {name for names in CHECKS.values() for name in names}
    for name, by_month in checks.items():
        assert set(by_month) == {"2019-10", "2019-11"}, name
    lines = checks["bronze_lines_accounted_for"]
    assert lines["2019-10"].passed and lines["2019-11"].passed
    assert lines["2019-10"].metadata["source_data_lines"].value == 40
    assert lines["2019-11"].metadata["source_data_lines"].value == 31
    assert lines["2019-11"].metadata["rejected_rows"].value == 1
    share = checks["bronze_rejected_share"]
    assert share["2019-10"].passed
    assert share["2019-10"].metadata["rejected_share_percent"].value == 0.0
    assert not share["2019-11"].passed and share["2019-11"].severity == AssetCheckSeverity.WARN
    assert share["2019-11"].metadata["rejected_share_percent"].value == round(100 / 31, 4)
    silver_rows = checks["silver_rows_accounted_for"]
    assert silver_rows["2019-10"].metadata["bronze_rows"].value == 40
    assert silver_rows["2019-11"].metadata["bronze_rows"].value == 30
    assert silver_rows["2019-11"].metadata["silver_rows"].value == 30
    for month, month_lines in (("2019-10", october), ("2019-11", november)):
        purchases = [x for x in month_lines if ",purchase," in x]
        revenue = checks["gold_revenue_matches_silver"][month]
        assert revenue.passed
        assert revenue.metadata["gold_purchases"].value == len(purchases)
        assert revenue.metadata["silver_revenue"].value == str(
            sum(Decimal(x.split(",")[6]) for x in purchases)
        )
        funnel = checks["gold_funnel_matches_silver"][month]
        assert funnel.metadata["gold_views"].value == sum(",view," in x for x in month_lines)
    # No number in any result is a JSON blob that a reader would have to decode.
    for by_month in checks.values():
        for evaluation in by_month.values():
            assert all(not isinstance(v.value, dict | list) for v in evaluation.metadata.values())

    # What the UI shows: each built month checked, none "skipped", November's warning failed.
    statuses = ui_check_statuses(instance)
    for name in statuses:
        expected = {"SUCCEEDED": ["2019-10", "2019-11"]}
        if name == "bronze_rejected_share":
            expected = {"SUCCEEDED": ["2019-10"], "FAILED": ["2019-11"]}
        assert statuses[name] == expected, name

    # And each month's materialization holds its own rows, not the run's total.
    bronze = materializations_by_month(instance, ("bronze", "events"))
    assert bronze["2019-10"]["dagster/partition_row_count"] == 40
    assert bronze["2019-11"]["dagster/partition_row_count"] == 30
    assert bronze["2019-11"]["source_file"] == "2019-Nov.csv"
    assert bronze["2019-11"]["source_size"].endswith(
        f"({(landing_dir / '2019-Nov.csv').stat().st_size:,} bytes)"
    )
    assert bronze["2019-10"]["source_modified"] == (
        (landing_dir / "2019-Oct.csv").stat().st_mtime_ns / 1e9
    )
    # The run's own view of its months (the same in both months' materializations).
    files = bronze["2019-10"]["source_files_by_month"].records
    assert [(r.data["month"], r.data["file"]) for r in files] == [
        ("2019-10", "2019-Oct.csv"),
        ("2019-11", "2019-Nov.csv"),
    ]
    rejected = materializations_by_month(instance, ("bronze", "events_rejected"))
    assert rejected["2019-10"]["dagster/partition_row_count"] == 0
    assert rejected["2019-11"]["dagster/partition_row_count"] == 1
    assert (rejected["2019-11"]["source_data_lines"], rejected["2019-11"]["accepted_rows"]) == (
        31,
        30,
    )
    table = rejected["2019-11"]["lines_by_month"].records
    assert [(r.data["month"], r.data["rejected_rows"]) for r in table] == [
        ("2019-10", 0),
        ("2019-11", 1),
    ]
    silver_events = materializations_by_month(instance, ("silver", "events"))
    assert silver_events["2019-10"]["dagster/partition_row_count"] == 40
    assert silver_events["2019-11"]["dagster/row_count"] == 70  # the table's rows, both months


@pytest.mark.graph
def test_a_month_failing_a_blocking_check_in_a_range_run_stops_silver_and_fails_only_itself(
    landing_dir, settings
):
    write_source(landing_dir, "2019-Oct.csv", good_lines(40))
    november = [*good_lines(18, month="2019-11", start=100), "bad", "worse"]  # 10 % rejected
    write_source(landing_dir, "2019-Nov.csv", november)
    instance = DagsterInstance.ephemeral()

    result = run_range(settings, instance, "2019-10", "2019-11")

    assert not result.success
    share = evaluations_by_month(result)["bronze_rejected_share"]
    assert share["2019-10"].passed
    assert not share["2019-11"].passed and share["2019-11"].severity == AssetCheckSeverity.ERROR
    assert share["2019-11"].metadata["rejected_share_percent"].value == 10.0
    assert "blocking asset check" in result.failure_data_for_node("bronze_events").error.message
    assert "silver_events" not in started_steps(result)
    statuses = ui_check_statuses(instance)
    assert statuses["bronze_rejected_share"] == {"SUCCEEDED": ["2019-10"], "FAILED": ["2019-11"]}
    assert statuses["bronze_lines_accounted_for"] == {"SUCCEEDED": ["2019-10", "2019-11"]}


@pytest.mark.graph
def test_a_one_month_run_records_its_checks_under_its_month(landing_dir, settings):
    write_source(landing_dir, "2019-Oct.csv", good_lines(20))
    instance = DagsterInstance.ephemeral()
    result = run_job(settings, instance=instance)
    assert result.success
    assert {e.partition for e in result.get_asset_check_evaluations()} == {"2019-10"}
    assert len(result.get_asset_check_evaluations()) == sum(map(len, CHECKS.values()))
    assert all(v == {"SUCCEEDED": ["2019-10"]} for v in ui_check_statuses(instance).values())
