"""`make run`, the README's first command, end to end in a copy of the project: it writes two
sample months, materializes every asset for both in one run, prints the top brands and ends with
a line saying what it built.

The copy keeps the project's working tree clean (no data/, no runs in .dagster_home) and proves
the Makefile works from a tree that never ran anything; landing, warehouse and DAGSTER_HOME are
temporary directories, the months small. The expected top brands are worked out here from the
written CSV files as the README defines gold: purchases of silver's events, i.e. without rows
whose user_id is empty and without exact duplicates.
"""

import csv
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ROWS = 2_000
FILES = {"2019-10": "2019-Oct.csv", "2019-11": "2019-Nov.csv"}
TABLES = (
    "bronze/events",
    "bronze/events_rejected",
    "silver/events",
    "gold/revenue_by_brand",
    "gold/daily_funnel",
)

pytestmark = pytest.mark.slow


def copy_project(target: Path) -> Path:
    """The project's files as they are in the working tree (tracked and new, not ignored), with
    the project's virtual environment linked in."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(Path(sys.prefix))
    return target


def expected_top_brands(path: Path, limit: int = 10) -> list[tuple[str, str]]:
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        events = {tuple(row) for row in reader if row[7]}  # silver: user_id set, no duplicates
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    for row in events:
        if row[1] == "purchase":
            revenue[row[5] or "null"] += Decimal(row[6])
    ranked = sorted(revenue.items(), key=lambda item: (-item[1], item[0] == "null", item[0]))
    return [(brand, f"{total:.2f}") for brand, total in ranked[:limit]]


def expected_rows(paths: list[Path]) -> dict[str, int]:
    """Each table's rows for the months in ``paths``, worked out from the CSV files as the
    README defines the layers: bronze every line (the sample months have no malformed one),
    silver the lines with a user_id without exact duplicates, gold a row per brand with
    purchases (the brandless one included) and a row per day with events, in each month."""
    rows = dict.fromkeys(TABLES, 0)
    for path in paths:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            lines = list(reader)
        events = {tuple(row) for row in lines if row[7]}
        rows["bronze/events"] += len(lines)
        rows["silver/events"] += len(events)
        rows["gold/revenue_by_brand"] += len({e[5] for e in events if e[1] == "purchase"})
        rows["gold/daily_funnel"] += len({e[0][:10] for e in events})
    return rows


def printed_rows(output: str) -> list[tuple[str, str, str]]:
    """(month, brand, total_revenue) of every row of the printed table."""
    rows = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("┆")]
        if len(cells) == 4 and cells[0][:4].isdigit():
            rows.append((cells[0], cells[1], cells[2]))
    return rows


def test_make_run_builds_both_months_prints_the_top_brands_and_says_what_it_built(tmp_path):
    project = copy_project(tmp_path / "project")
    landing, warehouse, home = tmp_path / "landing", tmp_path / "warehouse", tmp_path / "home"
    home.mkdir()
    shutil.copy(project / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MEDALLION_"))}
    env.update(
        MEDALLION_LANDING_DIR=str(landing),
        MEDALLION_WAREHOUSE_DIR=str(warehouse),
        MEDALLION_SPARK_MASTER="local[2]",
        # The copy's modules, not the installed project's.
        PYTHONPATH=str(project),
    )

    # `-o`: the linked environment is installed already; never reinstall it from the copy.
    completed = subprocess.run(
        [
            "make", "--no-print-directory", "-o", ".venv/.installed", "run",
            f"ROWS={ROWS}", f"DAGSTER_HOME={home}",
        ],
        cwd=project, env=env, capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]

    # The sample months were written to the landing directory.
    assert sorted(p.name for p in landing.iterdir()) == sorted(FILES.values())
    # One run committed both months to every table: version 0, both months, all lines accounted.
    for name in TABLES:
        table = DeltaTable(str(warehouse / name))
        assert table.version() == 0, name
        assert table.history(1)[0]["dagster_partitions"] == "2019-10...2019-11", name
        if name != "bronze/events_rejected":  # the sample months have no malformed line
            months = set(pl.read_delta(str(warehouse / name))["month"].dt.strftime("%Y-%m"))
            assert months == set(FILES), name
    bronze = pl.read_delta(str(warehouse / "bronze" / "events"))
    rejected = pl.read_delta(str(warehouse / "bronze" / "events_rejected"))
    for month in FILES:
        def in_month(frame: pl.DataFrame, month: str = month) -> int:
            return frame.filter(pl.col("month").dt.strftime("%Y-%m") == month).height

        assert in_month(bronze) + in_month(rejected) == ROWS, month
    # The run went into the temporary instance, not the project's.
    assert any((home / "history").rglob("*.db"))
    assert not (project / "data").exists()

    # The top brands it printed are those of the source files.
    out = completed.stdout
    table = warehouse / "gold" / "revenue_by_brand"
    assert f"Top 10 brands by purchase revenue per month ({table}):" in out
    printed = printed_rows(out)
    for month, name in FILES.items():
        shown = [(brand, revenue) for m, brand, revenue in printed if m == month]
        assert shown == expected_top_brands(landing / name), month
    # It ends by saying what it built: both months, each table's rows.
    rows = expected_rows([landing / name for name in FILES.values()])
    counts = ", ".join(f"{table} {count:,}" for table, count in rows.items())
    assert out.strip().splitlines()[-1] == (
        f"Built {', '.join(FILES)} in {warehouse}; rows: {counts}."
    )
