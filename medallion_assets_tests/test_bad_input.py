"""Every kind of bad input, end to end through the project's Dagster job.

Each test starts from a warehouse where a good 2019-10 has been materialized (bronze to gold), puts
a bad file for the same month in the landing directory and runs the job again, then checks what a
user sees (the message, the counts) and what a reader of the tables sees (nothing changed, or
exactly the valid rows plus the rejected lines with their reasons).
"""

import csv
import datetime as dt
import gzip
import io
import os
import shutil
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetCheckSeverity

from medallion_assets.schema import SOURCE_HEADER
from medallion_assets.settings import Settings
from medallion_assets_tests.source_lines import (
    DOWNSTREAM_STEPS,
    check_evaluations,
    good_line,
    good_lines,
    materialization_metadata,
    retried_steps,
    run_job,
    started_steps,
    table_state,
    utc,
    write_source,
)

BASELINE_ROWS = 120


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, spark) -> Path:
    """A warehouse holding a good 2019-10 in every table."""
    root = tmp_path_factory.mktemp("baseline")
    landing, warehouse = root / "landing", root / "warehouse"
    landing.mkdir()
    write_source(landing, "2019-Oct.csv", good_lines(BASELINE_ROWS))
    result = run_job(Settings(landing_dir=str(landing), warehouse_dir=str(warehouse)))
    assert result.success
    return warehouse


@pytest.fixture
def warehouse(baseline, warehouse_dir) -> Path:
    """A private copy of the baseline warehouse for one test, where its `settings` point."""
    shutil.copytree(baseline, warehouse_dir)
    return warehouse_dir


def rows_of(warehouse: Path, table: str) -> pl.DataFrame:
    return pl.read_delta(str(warehouse / table))


# -- files that must fail the month --------------------------------------------------------------


def _no_file(landing: Path, outside: Path) -> list[str]:
    return ["No source file for month 2019-10"] + [
        str(landing / name)
        for name in ("2019-Oct.csv", "2019-Oct.csv.gz", "2019-10.csv", "2019-10.csv.gz")
    ]


def _header_missing(landing: Path, outside: Path) -> list[str]:
    path = write_source(landing, "2019-Oct.csv", good_lines(3), header=None)
    return [
        str(path),
        "wrong header",
        "expected columns",
        "found columns",
        "'2019-10-01 00:00:00 UTC'",
    ]


def _header_renamed(landing: Path, outside: Path) -> list[str]:
    header = SOURCE_HEADER.replace("user_session", "session_id")
    path = write_source(landing, "2019-Oct.csv", good_lines(3), header=header)
    return [str(path), "wrong header", "'user_session'", "'session_id'"]


def _header_reordered(landing: Path, outside: Path) -> list[str]:
    columns = SOURCE_HEADER.split(",")
    columns[6], columns[7] = columns[7], columns[6]  # price <-> user_id
    path = write_source(landing, "2019-10.csv", good_lines(3), header=",".join(columns))
    return [str(path), "wrong header", str(SOURCE_HEADER.split(",")), str(columns)]


def _zero_bytes(landing: Path, outside: Path) -> list[str]:
    path = landing / "2019-Oct.csv"
    path.write_bytes(b"")
    return [str(path), "the file is empty"]


def _zero_bytes_gzip(landing: Path, outside: Path) -> list[str]:
    path = landing / "2019-10.csv.gz"
    path.write_bytes(gzip.compress(b""))
    return [str(path), "the file is empty"]


def _header_only(landing: Path, outside: Path) -> list[str]:
    path = write_source(landing, "2019-Oct.csv", [])
    return [str(path), "a header but no data rows"]


def _header_and_blank_lines(landing: Path, outside: Path) -> list[str]:
    path = write_source(landing, "2019-Oct.csv", ["", "  ", ""], newline="\r\n", bom=True)
    return [str(path), "a header but no data rows"]


def _not_gzip(landing: Path, outside: Path) -> list[str]:
    path = write_source(landing, "2019-Oct.csv.gz.tmp", good_lines(3))
    path = path.rename(landing / "2019-Oct.csv.gz")  # plain text under a .gz name
    return [str(path), "cannot be read"]


def _symlink_out(landing: Path, outside: Path) -> list[str]:
    target = write_source(outside, "2019-Oct.csv", good_lines(3))
    link = landing / "2019-Oct.csv"
    os.symlink(os.path.relpath(target, landing), link)
    return [str(link), "links outside the landing directory"]


FAILING_FILES = {
    "no file for the month": _no_file,
    "header missing": _header_missing,
    "header with a renamed column": _header_renamed,
    "header with columns swapped": _header_reordered,
    "zero bytes": _zero_bytes,
    "zero bytes, gzip": _zero_bytes_gzip,
    "header only": _header_only,
    "header and blank lines only (CRLF, BOM)": _header_and_blank_lines,
    "not gzip data in a .gz file": _not_gzip,
    "symlink out of the landing dir": _symlink_out,
}


@pytest.mark.graph
@pytest.mark.parametrize("make_file", FAILING_FILES.values(), ids=FAILING_FILES.keys())
def test_a_bad_file_fails_bronze_with_its_name_once_and_changes_no_table(
    make_file, landing_dir, warehouse, settings, tmp_path
):
    outside = tmp_path / "outside"
    outside.mkdir()
    expected_fragments = make_file(landing_dir, outside)
    before = table_state(warehouse)

    result = run_job(settings)

    assert not result.success
    failure = result.failure_data_for_node("bronze_events")
    message = failure.user_failure_data.description
    for fragment in expected_fragments:
        assert fragment in message
    assert failure.user_failure_data.metadata["month"].value == "2019-10"
    # One attempt (a deterministic error is not retried), and nothing after bronze started:
    # neither the checks nor silver nor gold.
    assert started_steps(result) == ["bronze_events"]
    assert retried_steps(result) == []
    assert result.get_asset_materialization_events() == []
    # Every table is at its previous version, and no file was added or removed anywhere under it.
    assert table_state(warehouse) == before


# -- malformed lines: kept aside, the valid rows land ------------------------------------------


def _with(i: int, **fields: str) -> str:
    names = SOURCE_HEADER.split(",")
    values = good_line(i).split(",")
    for name, value in fields.items():
        values[names.index(name)] = value
    return ",".join(values)


def malformed_lines() -> dict[str, str]:
    """One line of each malformed kind -> the reason bronze must give for it."""
    return {
        _with(9001)[: _with(9001).rindex(",")]: "expected 9 fields, found 8",
        _with(9002) + ",surplus": "expected 9 fields, found 10",
        _with(9003) + ",,": "expected 9 fields, found 11",
        _with(9004, product_id="p-7"): "product_id is not an integer: 'p-7'",
        _with(9005, category_id="2.05e18"): "category_id is not an integer: '2.05e18'",
        _with(9006, user_id="u5"): "user_id is not an integer: 'u5'",
        _with(
            9007, price="free"
        ): "price is not a non-negative amount with at most 2 decimals: 'free'",
        _with(
            9008, price="-1.00"
        ): "price is not a non-negative amount with at most 2 decimals: '-1.00'",
        _with(
            9009, price="1.005"
        ): "price is not a non-negative amount with at most 2 decimals: '1.005'",
        _with(
            9010, event_time="2019/10/02 10:00:00"
        ): "event_time is not 'YYYY-MM-DD HH:MM:SS UTC': '2019/10/02 10:00:00'",
        _with(
            9011, event_time="2019-10-02T10:00:00Z"
        ): "event_time is not 'YYYY-MM-DD HH:MM:SS UTC': '2019-10-02T10:00:00Z'",
        _with(9012, event_time=""): "missing event_time",
        _with(9013, event_type="click"): "unknown event_type: 'click'",
        _with(
            9014, event_time="2019-11-01 00:00:00 UTC"
        ): "event_time outside month 2019-10: '2019-11-01 00:00:00 UTC'",
        # Spark's reader would read this as 1250.00 (docs/checks.md, "Values read exactly").
        _with(
            9015, price='"12,50"'
        ): "price is not a non-negative amount with at most 2 decimals: '12,50'",
    }


def interleave(good: list[str], bad: list[str]) -> list[str]:
    lines, step = list(good), max(1, len(good) // (len(bad) + 1))
    for n, line in enumerate(bad):
        lines.insert((n + 1) * step + n, line)
    return lines


def expected_rows(lines: list[str]) -> list[tuple]:
    """The typed rows of valid source lines, parsed by the csv module (not Spark, not our code)."""
    rows = []
    for r in csv.reader(io.StringIO("\n".join(lines))):
        rows.append(
            (
                utc(r[0]),
                r[1],
                int(r[2]),
                int(r[3]) if r[3] else None,
                r[4] or None,
                r[5] or None,
                Decimal(r[6]),
                int(r[7]) if r[7] else None,
                r[8] or None,
            )
        )
    return sorted(rows, key=lambda t: (t[2], t[0]))


def bronze_rows(warehouse: Path) -> list[tuple]:
    frame = rows_of(warehouse, "bronze/events")
    columns = SOURCE_HEADER.split(",")
    return sorted(frame.select(columns).rows(), key=lambda t: (t[2], t[0]))


@pytest.mark.graph
def test_malformed_lines_are_kept_aside_with_reasons_and_every_valid_row_lands(
    landing_dir, warehouse, settings
):
    good = good_lines(300)
    bad = malformed_lines()
    write_source(landing_dir, "2019-Oct.csv", interleave(good, list(bad)))

    result = run_job(settings)

    # Under 5 % rejected: a warning, and silver and gold are built from the valid rows.
    assert result.success
    assert bronze_rows(warehouse) == expected_rows(good)
    rejected = rows_of(warehouse, "bronze/events_rejected")
    assert dict(zip(rejected["line"], rejected["reason"], strict=True)) == bad
    assert set(rejected["_source_file"]) == {"2019-Oct.csv"}
    assert set(rejected["month"]) == {dt.date(2019, 10, 1)}
    assert rows_of(warehouse, "silver/events").height == len(good)

    events = materialization_metadata(result, "bronze_events", "bronze/events")
    assert events["dagster/partition_row_count"] == len(good)
    rejected_meta = materialization_metadata(result, "bronze_events", "bronze/events_rejected")
    assert rejected_meta["dagster/partition_row_count"] == len(bad)
    # One month: a plain number per entry.
    assert rejected_meta["source_data_lines"] == len(good) + len(bad)
    assert rejected_meta["accepted_rows"] == len(good)
    assert rejected_meta["rejected_rows"] == len(bad)

    checks = check_evaluations(result)
    assert checks["bronze_lines_accounted_for"].passed
    share = checks["bronze_rejected_share"]
    assert not share.passed and share.severity == AssetCheckSeverity.WARN
    assert f"{100 * len(bad) / (len(good) + len(bad)):.2f} %" in share.description
    assert set(started_steps(result)) >= set(DOWNSTREAM_STEPS)


@pytest.mark.graph
def test_a_carriage_return_inside_a_line_splits_it_into_rejected_halves_and_the_lines_add_up(
    landing_dir, warehouse, settings
):
    # Spark's line reader ends a line at a CR alone, even inside quotes; the line count does too,
    # so the halves are rejected for their field count and nothing is reported lost.
    good = good_lines(300)
    unquoted = _with(9101, brand="sam\rsung")
    quoted = _with(9102, brand='"sam\rsung"')
    write_source(landing_dir, "2019-Oct.csv", interleave(good, [unquoted, quoted]))

    result = run_job(settings)

    assert result.success
    assert bronze_rows(warehouse) == expected_rows(good)
    rejected = rows_of(warehouse, "bronze/events_rejected")
    halves = [*unquoted.split("\r"), *quoted.split("\r")]
    assert sorted(rejected["line"]) == sorted(halves)
    assert all(reason.startswith("expected 9 fields, found ") for reason in rejected["reason"])
    meta = materialization_metadata(result, "bronze_events", "bronze/events_rejected")
    assert (meta["source_data_lines"], meta["accepted_rows"], meta["rejected_rows"]) == (
        len(good) + 4,
        len(good),
        4,
    )
    checks = check_evaluations(result)
    assert checks["bronze_lines_accounted_for"].passed, checks["bronze_lines_accounted_for"]


@pytest.mark.graph
def test_more_than_five_percent_rejected_stops_silver_and_gold(landing_dir, warehouse, settings):
    good = good_lines(100)
    bad = malformed_lines()
    write_source(landing_dir, "2019-Oct.csv", interleave(good, list(bad)))
    before = table_state(warehouse)

    result = run_job(settings)

    assert not result.success
    share = check_evaluations(result)["bronze_rejected_share"]
    assert not share.passed and share.severity == AssetCheckSeverity.ERROR
    assert f"{100 * len(bad) / (len(good) + len(bad)):.2f} %" in share.description
    failure = result.failure_data_for_node("bronze_events")
    assert "blocking asset check" in failure.error.message
    # Bronze holds the new month (kept aside, counted); nothing downstream was built from it.
    assert bronze_rows(warehouse) == expected_rows(good)
    assert rows_of(warehouse, "bronze/events_rejected").height == len(bad)
    assert not set(started_steps(result)) & set(DOWNSTREAM_STEPS)
    after = table_state(warehouse)
    for table in ("silver/events", "gold/revenue_by_brand", "gold/daily_funnel"):
        assert after[table] == before[table]


# -- encodings that must be read exactly ---------------------------------------------------------

QUOTED = [
    '2019-10-03 08:00:00 UTC,purchase,77,2053013555631882655,"electronics,smartphone","acme, inc.",'
    '10.50,501,"s,1"',
    '2019-10-03 08:00:01 UTC,view,78,2053013555631882655,"",",",0.00,502,"plain"',
    '"2019-10-03 08:00:02 UTC","cart","79","2053013555631882655","a.b","b","1","503","x"',
]


@pytest.mark.graph
@pytest.mark.parametrize("name", ["2019-10.csv.gz", "2019-Oct.csv"])
def test_gzip_crlf_bom_and_quoted_commas_are_read_exactly(
    name, landing_dir, warehouse, settings
):
    lines = good_lines(40) + QUOTED
    path = write_source(landing_dir, name, lines, newline="\r\n", bom=True)

    result = run_job(settings)

    assert result.success
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if name.endswith(".gz") else raw).decode("utf-8-sig")
    assert text.startswith(SOURCE_HEADER + "\r\n")
    assert bronze_rows(warehouse) == expected_rows(lines)
    assert rows_of(warehouse, "bronze/events_rejected").height == 0
    brands = set(rows_of(warehouse, "bronze/events")["brand"])
    assert {"acme, inc.", ","} <= brands
    assert check_evaluations(result)["bronze_rejected_share"].passed
    gold = rows_of(warehouse, "gold/revenue_by_brand")
    assert dict(zip(gold["brand"], gold["total_revenue"], strict=True))["acme, inc."] == Decimal(
        "10.50"
    )
