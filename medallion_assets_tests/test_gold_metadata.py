"""What gold reports to the UI besides the IO manager's metadata: column lineage and the
top-brands table. (That a real run under `dagster dev` shows them is in test_dagster_dev.)"""

import datetime as dt
from decimal import Decimal

from dagster import AssetKey

from medallion_assets.assets.gold import (
    DAILY_FUNNEL_LINEAGE,
    REVENUE_BY_BRAND_LINEAGE,
    top_brands,
    written_figures,
)
from medallion_assets.assets.rebuild_changes import Figures
from medallion_assets.schema import (
    GOLD_DAILY_FUNNEL_SCHEMA,
    GOLD_REVENUE_BY_BRAND_SCHEMA,
    SILVER_EVENTS_SCHEMA,
)


def test_column_lineage_covers_every_gold_column_with_real_silver_columns():
    for lineage, schema in (
        (REVENUE_BY_BRAND_LINEAGE, GOLD_REVENUE_BY_BRAND_SCHEMA),
        (DAILY_FUNNEL_LINEAGE, GOLD_DAILY_FUNNEL_SCHEMA),
    ):
        assert set(lineage.deps_by_column) == set(schema.names)
        for column, deps in lineage.deps_by_column.items():
            assert deps, column
            for dep in deps:
                assert dep.asset_key == AssetKey(["silver", "events"])
                assert dep.column_name in SILVER_EVENTS_SCHEMA.names, (column, dep.column_name)
    assert {d.column_name for d in REVENUE_BY_BRAND_LINEAGE.deps_by_column["total_revenue"]} == {
        "price",
        "event_type",
    }


def table_cells(records) -> list[list[object]]:
    return [
        [r.data["month"], r.data["brand"], r.data["total_revenue"], r.data["purchases"]]
        for r in records
    ]


def test_the_preview_lists_the_ten_largest_rows_by_revenue(spark):
    october, november = dt.date(2019, 10, 1), dt.date(2019, 11, 1)
    rows = [(october, f"brand{i:02d}", Decimal(f"{100 + i}.50"), i + 1) for i in range(12)]
    rows += [
        (november, None, Decimal("5000.00"), 40),  # events without a brand
        (november, "pipe|brand", Decimal("111.50"), 3),  # ties with brand11: brand11 first
        (november, "small", Decimal("1.00"), 1),
    ]
    revenue = spark.createDataFrame(rows, GOLD_REVENUE_BY_BRAND_SCHEMA)

    cells = table_cells(top_brands(revenue))

    assert cells[0] == ["2019-11", "(no brand)", "5,000.00", 40]
    assert cells[1] == ["2019-10", "brand11", "111.50", 12]
    assert cells[2] == ["2019-11", "pipe|brand", "111.50", 3]
    assert [c[1] for c in cells[3:]] == [f"brand{i:02d}" for i in range(10, 3, -1)]
    assert len(cells) == 10


def test_the_preview_of_a_month_without_purchases_is_an_empty_table(spark):
    empty = spark.createDataFrame([], GOLD_REVENUE_BY_BRAND_SCHEMA)
    assert top_brands(empty) == []


def test_what_revenue_by_brand_received_comes_from_its_write_observation_and_the_log():
    months = ["2019-10", "2019-11"]
    observed = {
        "revenue__2019_10": Decimal("12.50"),
        "purchases__2019_10": 3,
        "revenue__2019_11": None,  # a month without purchases sums to NULL
        "purchases__2019_11": None,
    }
    assert written_figures(observed, {"2019-10": 2, "2019-11": 1}, months) == {
        "2019-10": Figures(rows=2, revenue=Decimal("12.50"), purchases=3),
        "2019-11": Figures(rows=1, revenue=Decimal("0.00"), purchases=0),
    }
    # Spark reported nothing, or not every month: the rows written are aggregated instead.
    assert written_figures(None, {"2019-10": 2}, months) is None
    partial = {"revenue__2019_10": Decimal("1.00"), "purchases__2019_10": 1}
    assert written_figures(partial, {"2019-10": 2, "2019-11": 1}, months) is None
