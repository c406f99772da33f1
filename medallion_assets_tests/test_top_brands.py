"""`medallion-top-brands` on a real warehouse: the project's job builds gold from hand-made months,
then the installed command prints each month's brands by purchase revenue, read without Spark, and
ends with a line saying what the warehouse holds for those months.

The expected ranking and row counts are worked out here from the source lines themselves
(purchases only, exact decimal sums, the events without a brand as their own row), not from gold.
"""

import csv
import os
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from medallion_assets.settings import Settings
from medallion_assets_tests.source_lines import good_line, good_lines, run_job, write_source

COMMAND = Path(sys.executable).parent / "medallion-top-brands"
MONTHS = {"2019-10": good_lines(240, "2019-10"), "2019-11": good_lines(160, "2019-11", start=500)}
# One line bronze rejects (ten fields), in October only.
REJECTED = {"2019-10": [good_line(9001, "2019-10") + ",surplus"], "2019-11": []}


def expected_ranking(lines: list[str]) -> list[tuple[str, str]]:
    """(brand, revenue) by revenue, highest first; the brandless row prints as ``null``."""
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    for row in csv.reader(lines):
        if row[1] == "purchase":
            revenue[row[5] or "null"] += Decimal(row[6])
    ranked = sorted(revenue.items(), key=lambda item: (-item[1], item[0]))
    return [(brand, f"{total:.2f}") for brand, total in ranked]


def expected_rows(months: list[str]) -> dict[str, int]:
    """Each table's rows for ``months``, from the source lines: every valid line is an event
    (all have a user and differ from each other), gold has a row per brand with purchases and
    a row per day with events."""
    rows = dict.fromkeys(
        ("bronze/events", "bronze/events_rejected", "silver/events", "gold/revenue_by_brand",
         "gold/daily_funnel"), 0,
    )
    for month in months:
        events = list(csv.reader(MONTHS[month]))
        assert len({tuple(e) for e in events}) == len(events) and all(e[7] for e in events)
        rows["bronze/events"] += len(events)
        rows["bronze/events_rejected"] += len(REJECTED[month])
        rows["silver/events"] += len(events)
        rows["gold/revenue_by_brand"] += len({e[5] for e in events if e[1] == "purchase"})
        rows["gold/daily_funnel"] += len({e[0][:10] for e in events})
    return rows


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory, spark) -> Path:
    root = tmp_path_factory.mktemp("top_brands")
    landing, warehouse = root / "landing", root / "warehouse"
    landing.mkdir()
    settings = Settings(landing_dir=str(landing), warehouse_dir=str(warehouse))
    for month, lines in MONTHS.items():
        write_source(landing, f"{month}.csv", lines + REJECTED[month])
        assert run_job(settings, month).success
    return warehouse


def top_brands(*args: str, warehouse_env: Path | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MEDALLION_"))}
    if warehouse_env is not None:
        env[Settings.env_name("warehouse_dir")] = str(warehouse_env)
    return subprocess.run(
        [str(COMMAND), *args], env=env, capture_output=True, text=True, timeout=120
    )


def printed_rows(output: str) -> list[tuple[str, str, str, int]]:
    """(month, brand, total_revenue, purchases) of every row of the printed table."""
    rows = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("┆")]
        if len(cells) == 4 and cells[0][:4].isdigit():
            rows.append((cells[0], cells[1], cells[2], int(cells[3])))
    return rows


def built_line(warehouse: Path, months: list[str]) -> str:
    counts = ", ".join(f"{name} {rows:,}" for name, rows in expected_rows(months).items())
    return f"Built {', '.join(months)} in {warehouse}; rows: {counts}."


@pytest.mark.slow
def test_prints_each_months_brands_by_revenue(warehouse):
    completed = top_brands(warehouse_env=warehouse)

    assert completed.returncode == 0, completed.stderr
    assert f"{warehouse / 'gold' / 'revenue_by_brand'}" in completed.stdout
    rows = printed_rows(completed.stdout)
    for month, lines in MONTHS.items():
        shown = [(brand, revenue) for m, brand, revenue, _ in rows if m == month]
        assert shown == expected_ranking(lines), month
    assert [m for m, *_ in rows] == sorted(m for m, *_ in rows)  # October first
    assert sum(purchases for *_, purchases in rows) == sum(
        line.split(",")[1] == "purchase" for lines in MONTHS.values() for line in lines
    )


@pytest.mark.slow
def test_its_last_line_says_which_months_and_rows_the_warehouse_holds(warehouse):
    completed = top_brands(warehouse_env=warehouse)

    assert completed.returncode == 0, completed.stderr
    last = completed.stdout.strip().splitlines()[-1]
    assert last == built_line(warehouse, ["2019-10", "2019-11"])


@pytest.mark.slow
def test_limit_month_and_warehouse_arguments(warehouse):
    completed = top_brands("--warehouse", str(warehouse), "--month", "2019-11", "-n", "2",
                           warehouse_env=None)

    assert completed.returncode == 0, completed.stderr
    rows = printed_rows(completed.stdout)
    assert [(m, b, r) for m, b, r, _ in rows] == [
        ("2019-11", brand, revenue) for brand, revenue in expected_ranking(MONTHS["2019-11"])[:2]
    ]
    assert completed.stdout.strip().splitlines()[-1] == built_line(warehouse, ["2019-11"])


@pytest.mark.slow
def test_a_month_gold_does_not_hold_is_named_not_printed_empty(warehouse):
    completed = top_brands("--month", "2020-01", warehouse_env=warehouse)

    assert completed.returncode == 1
    assert "No month 2020-01" in completed.stderr and "materialize" in completed.stderr
    assert completed.stdout == ""


@pytest.mark.slow
def test_without_a_gold_table_it_says_to_materialize_first(tmp_path):
    completed = top_brands(warehouse_env=tmp_path / "empty")

    assert completed.returncode == 1
    assert "No gold table" in completed.stderr and "make run" in completed.stderr
    assert completed.stdout == ""
