"""Silver: bronze events without a user or duplicated, ready for aggregation; and silver's checks.

Both checks are worked out from what the write saw and from the Delta log, without reading a
table again:

- ``silver_rows_accounted_for``: every bronze row of the month is in silver, or was dropped for a
  null user, or was an extra copy of an event. Bronze's rows and its rows without a user come from
  bronze's Delta log (numRecords and the ``user_id`` null counts of its files' footers); the rows
  kept and the extra copies removed are observed as silver's write runs, after the de-duplication;
  silver's table must hold exactly the rows written. It catches a silver built from other data than
  bronze's table holds, rows lost or doubled between the de-duplication and the commit, a write
  or commit that lost rows, and an event bronze holds under two months (which the
  de-duplication, keyed on the event's own columns, keeps once). (Counting bronze's rows and null
  users as silver read them, a second observation before the shuffle, cost 1.2-2.5 s of a 5M-row
  month's 13 s silver step; the log gives the same numbers for nothing.)
- ``silver_user_id_not_null``: the committed files' null counts for ``user_id`` (Parquet footer
  statistics, recorded in the Delta log) are zero.

The same observation totals each month's purchase revenue and events of each kind
(`transforms.event_totals`); the IO manager records them in silver's Delta commit, keyed by the
month's files (`medallion_assets.delta.month_summaries`). Gold checks its tables against them: a
comparison with what silver's write saw, at the cost of a few sums on rows already flowing
(gold counting silver's totals on its own read of silver cost 0.8 s of a 5M-row month's 4.5 s).

- ``silver_revenue_in_line``: the month's purchase revenue, as silver's commits recorded it,
  against the median of the months built before it (`medallion_assets.assets.in_line`).

A rebuilt month's materialization says what changed against the silver it replaces: rows,
purchase revenue and purchases before (the log, and the totals the replaced write recorded) and
after (what this write counted); a first build says so (`medallion_assets.assets.rebuild_changes`).

(Silver has no duplicate check of its own any more: de-duplication guarantees it by construction,
and re-verifying it cost a full shuffle of the table; the accounting check above catches a
de-duplication that loses or doubles rows.)
"""


import decimal
from collections.abc import Mapping

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetIn,
    BackfillPolicy,
    MetadataValue,
    Output,
    multi_asset,
)
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from medallion_assets.assets.bronze import BRONZE_EVENTS
from medallion_assets.assets.in_line import in_line
from medallion_assets.assets.rebuild_changes import Figures, MonthChange
from medallion_assets.assets.tables import blocking_check, delta_table, month_evaluations
from medallion_assets.delta.month_history import month_rows
from medallion_assets.delta.month_summaries import recorded_for_live_files
from medallion_assets.io.delta_io_manager import Summarized
from medallion_assets.observations import Observed
from medallion_assets.partitions import month_start, monthly_partitions
from medallion_assets.resources.thresholds import QualityThresholds
from medallion_assets.resources.warehouse import Warehouse
from medallion_assets.retries import SPARK_RETRY_POLICY, stops_when_interrupted
from medallion_assets.schema import MONTH_COLUMN, SILVER_EVENTS_SCHEMA
from medallion_assets.transforms import (
    COPIES,
    LAST_MONTH,
    conform,
    dedup_partitions,
    event_totals,
    grouped_events,
)

SILVER_EVENTS = ["silver", "events"]
ROWS_ACCOUNTED_FOR = "silver_rows_accounted_for"
USER_ID_NOT_NULL = "silver_user_id_not_null"
REVENUE_IN_LINE = "silver_revenue_in_line"
_ZERO = decimal.Decimal("0.00")


# A multi-asset of one table, like bronze and gold, so that its table is declared by the same
# `delta_table` and its step is named like theirs.
@multi_asset(
    outs={
        "events": delta_table(
            SILVER_EVENTS,
            schema=SILVER_EVENTS_SCHEMA,
            layer="silver",
            description=(
                "Bronze events with a user_id and without exact duplicates of the nine source "
                "columns. Same columns as bronze/events; each file holds a set of users, their "
                "events sorted by user_id and event_time."
            ),
        ),
    },
    ins={"bronze": AssetIn(key=BRONZE_EVENTS)},
    check_specs=[
        blocking_check(
            ROWS_ACCOUNTED_FOR,
            asset=SILVER_EVENTS,
            additional_deps=[BRONZE_EVENTS],
            description=(
                "bronze rows = silver rows + extra copies of an event removed + rows without a "
                "user_id, with bronze's rows as its Delta table holds them and silver's as "
                "committed."
            ),
        ),
        blocking_check(
            USER_ID_NOT_NULL,
            asset=SILVER_EVENTS,
            description="No silver event without a user_id (the committed files' null counts).",
        ),
        blocking_check(
            REVENUE_IN_LINE,
            asset=SILVER_EVENTS,
            description=(
                "The month's purchase revenue against the median of the (up to 12) months built "
                "before it: WARN beyond the allowed deviation either way (default 50 %), ERROR "
                "on a drop beyond the failing one (default 80 %). Passes while fewer than 3 "
                "months were built before it."
            ),
        ),
    ],
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="silver",
    pool="spark",
    retry_policy=SPARK_RETRY_POLICY,
)
@stops_when_interrupted
def silver_events(
    context: AssetExecutionContext,
    bronze: DataFrame,
    warehouse: Warehouse,
    thresholds: QualityThresholds,
):
    months = list(context.partition_keys)
    # The months as the write replaces them, for each rebuilt month's change: rows from the log,
    # revenue and purchases from what the replaced write recorded.
    before = replaced_figures(warehouse, months)
    kept = Observed("silver_out", **month_counts(months), **month_totals(months))
    # The bookkeeping columns are constant within a month; when bronze's log proves it, they stay
    # out of the shuffle.
    constants = warehouse.month_constants(BRONZE_EVENTS, ["_source_file", "_ingested_at"], months)
    if constants is not None:
        constants = {month_start(m): c for m, c in constants.items()}
    # A full-size month needs more shuffle partitions than a small one (see `dedup_partitions`).
    bronze_rows = warehouse.month_row_counts(BRONZE_EVENTS, months)
    bronze_null_users = warehouse.month_null_counts(BRONZE_EVENTS, "user_id", months)
    default = int(bronze.sparkSession.conf.get("spark.sql.shuffle.partitions") or 200)
    rows = sum(bronze_rows.values())
    partitions = dedup_partitions(rows, default)
    if partitions:
        context.log.info(f"De-duplicating {rows:,} rows in {partitions} shuffle partitions.")
    events = kept.attach(grouped_events(bronze, constants, partitions))

    def summaries() -> dict[str, dict[str, object]] | None:
        # Called once the files are written, before the commit: the write's counts are known,
        # and go into each month's materialization beside what they replace.
        observed = kept.values() or {}
        totals = totals_by_month(months, observed)
        for month in months:
            change = MonthChange(month, before.get(month), figures_of(month, observed, totals))
            context.add_asset_metadata(
                change.metadata(), asset_key=SILVER_EVENTS, partition_key=month
            )
        return totals

    yield Output(
        Summarized(conform(events, SILVER_EVENTS_SCHEMA), summaries=summaries),
        output_name="events",
    )

    observed = kept.values() or {}
    silver_rows = warehouse.month_row_counts(SILVER_EVENTS, months)
    yield from month_evaluations(
        context,
        {
            m: rows_accounted_for(
                counts_of(m, observed),
                bronze_rows=bronze_rows[m],
                bronze_null_users=bronze_null_users.get(m),
                silver_rows=silver_rows[m],
            )
            for m in months
        },
    )
    nulls = warehouse.month_null_counts(SILVER_EVENTS, "user_id", months)
    yield from month_evaluations(context, {m: user_id_not_null(nulls.get(m)) for m in months})
    yield from month_evaluations(context, revenue_in_line(warehouse, months, thresholds))


def replaced_figures(warehouse: Warehouse, months: list[str]) -> dict[str, Figures]:
    """Each of ``months`` that silver holds, as it holds it: its rows, and the revenue and
    purchases its write recorded (None when it recorded none for those files)."""
    table = warehouse.open_table(SILVER_EVENTS)
    rows = month_rows(table, MONTH_COLUMN)
    built = [m for m in months if m in rows]
    recorded = recorded_for_live_files(table, MONTH_COLUMN, built) if built else {}
    figures = {}
    for month in built:
        summary = recorded.get(month) or {}
        revenue = summary.get("revenue")
        purchases = summary.get("purchases")
        figures[month] = Figures(
            rows=rows[month],
            revenue=decimal.Decimal(str(revenue)) if revenue is not None else None,
            purchases=int(purchases) if purchases is not None else None,
        )
    return figures


def figures_of(
    month: str,
    observed: Mapping[str, object],
    totals: Mapping[str, Mapping[str, object]] | None,
) -> Figures:
    """What this write put into ``month``, as its observation counted it."""
    rows = observed.get(_total_name("silver_rows", month))
    values = (totals or {}).get(month) or {}
    revenue, purchases = values.get("revenue"), values.get("purchases")
    return Figures(
        rows=int(rows) if rows is not None else None,
        revenue=decimal.Decimal(str(revenue)) if revenue is not None else None,
        purchases=int(purchases) if purchases is not None else None,
    )


def revenue_in_line(
    warehouse: Warehouse, months: list[str], thresholds: QualityThresholds
) -> dict[str, AssetCheckResult]:
    """`in_line` of each month's purchase revenue, as silver's commits recorded it for the files
    each month holds now (this write's months included); a month of the run without recorded
    totals fails, a month before it without them is left out of its history."""
    recorded = recorded_for_live_files(warehouse.open_table(SILVER_EVENTS), MONTH_COLUMN)
    revenues = {
        m: float(decimal.Decimal(str(s["revenue"])))
        for m, s in recorded.items()
        if s is not None and s.get("revenue") is not None
    }
    results = {}
    for month in months:
        if month not in revenues:
            results[month] = AssetCheckResult(
                check_name=REVENUE_IN_LINE,
                asset_key=SILVER_EVENTS,
                passed=False,
                description="Silver recorded no purchase revenue for the month's files.",
            )
            continue
        results[month] = in_line(
            check_name=REVENUE_IN_LINE,
            asset_key=SILVER_EVENTS,
            what="purchase revenue",
            month=month,
            values=revenues,
            warn=thresholds.volume_warn_percent,
            fail_drop=thresholds.volume_fail_drop_percent,
        )
    return results


def _total_name(name: str, month: str) -> str:
    return f"{name}__{month.replace('-', '_')}"


def _in_month(months: list[str], month: str) -> Column | None:
    """The rows of ``month``; None (every row) when the run has only that month."""
    return None if len(months) == 1 else F.col(MONTH_COLUMN) == F.lit(month_start(month))


def month_counts(months: list[str]) -> dict[str, Column]:
    """What silver's write counts for its accounting check, for each month of the run: the rows
    kept, the extra copies of an event removed, and the events bronze holds under two months (an
    event is counted in both of its months)."""
    counts: dict[str, Column] = {}
    for month in months:
        where = _in_month(months, month)
        this = F.lit(True) if where is None else where
        also_later = F.col(LAST_MONTH) == F.lit(month_start(month))
        counts[_total_name("silver_rows", month)] = F.count_if(this)
        counts[_total_name("duplicates_removed", month)] = F.coalesce(
            F.sum(F.when(this, F.col(COPIES) - 1)), F.lit(0)
        )
        counts[_total_name("events_in_two_months", month)] = F.count_if(
            (this | also_later) & (F.col(MONTH_COLUMN) != F.col(LAST_MONTH))
        )
    return counts


def counts_of(month: str, observed: Mapping[str, object]) -> dict[str, object]:
    """`month_counts`' values for one month (None where Spark reported nothing)."""
    return {
        name: observed.get(_total_name(name, month))
        for name in ("silver_rows", "duplicates_removed", "events_in_two_months")
    }


def month_totals(months: list[str]) -> dict[str, Column]:
    """`event_totals` for each month of the run, as named aggregates of one observation."""
    totals: dict[str, Column] = {}
    for month in months:
        for name, column in event_totals(_in_month(months, month)).items():
            totals[_total_name(name, month)] = column
    return totals


def totals_by_month(
    months: list[str], observed: Mapping[str, object] | None
) -> dict[str, dict[str, object]] | None:
    """`month_totals`' values per month key, as silver's commit records them (a month without
    purchases has revenue 0.00); None when Spark reported nothing."""
    if not observed:
        return None
    names = list(event_totals())
    if any(_total_name(n, m) not in observed for n in names for m in months):
        return None
    totals: dict[str, dict[str, object]] = {}
    for month in months:
        values = {n: observed[_total_name(n, month)] for n in names}
        values["revenue"] = values["revenue"] if values["revenue"] is not None else _ZERO
        totals[month] = {n: v if n == "revenue" else int(v or 0) for n, v in values.items()}
    return totals


def rows_accounted_for(
    observed: Mapping[str, object],
    *,
    bronze_rows: int,
    bronze_null_users: int | None,
    silver_rows: int,
) -> AssetCheckResult:
    """One month: bronze's rows = silver's rows + extra copies removed + rows without a user.

    ``observed`` holds what silver's write counted for the month (``silver_rows``,
    ``duplicates_removed``, ``events_in_two_months``); the other counts come from the Delta log.
    """
    problems = []
    nulls = bronze_null_users or 0
    counts: dict[str, object] = {
        "bronze_rows": MetadataValue.int(bronze_rows),
        "null_user_rows": MetadataValue.int(nulls),
        "silver_table_rows": MetadataValue.int(silver_rows),
    }
    if any(observed.get(name) is None for name in ("silver_rows", "duplicates_removed")):
        problems.append("Spark did not report the counts of the write")
    elif bronze_null_users is None and bronze_rows:
        problems.append("bronze's Delta log has no user_id null counts for the month")
    else:
        out, dups = int(observed["silver_rows"]), int(observed["duplicates_removed"])
        counts.update(
            silver_rows=MetadataValue.int(out), duplicates_removed=MetadataValue.int(dups)
        )
        if bronze_rows != out + dups + nulls:
            problems.append(
                f"{bronze_rows} rows read != {out} kept + {dups} extra copies + {nulls} without "
                "a user"
            )
        if silver_rows != out:
            problems.append(f"{out} rows written, silver's table holds {silver_rows}")
        # Bronze keeps a month's events only inside that month, so no event can be in two.
        split = int(observed.get("events_in_two_months") or 0)
        if split:
            counts["events_in_two_months"] = MetadataValue.int(split)
            problems.append(
                f"{split} events are in bronze under two months, kept once under the earlier"
            )
    return AssetCheckResult(
        check_name=ROWS_ACCOUNTED_FOR,
        asset_key=SILVER_EVENTS,
        passed=not problems,
        description="; ".join(problems) + "." if problems else "Every bronze row is accounted for.",
        metadata=counts,
    )


def user_id_not_null(nulls: int | None) -> AssetCheckResult:
    """One month: the null counts of ``user_id`` in its committed files are all zero."""
    if nulls is None:
        description = "No null counts in the Delta log for the month."
    elif nulls:
        description = f"{nulls} rows with a null user_id."
    else:
        description = "No null user_id."
    return AssetCheckResult(
        check_name=USER_ID_NOT_NULL,
        asset_key=SILVER_EVENTS,
        passed=nulls == 0,
        description=description,
        metadata={"null_user_id_rows": MetadataValue.int(nulls or 0)},
    )
