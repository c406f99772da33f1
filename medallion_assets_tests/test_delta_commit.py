"""The Delta commit layer and the log it is read back from, alone: Parquet files written with
pyarrow, no Spark."""

import datetime as dt
import json
import uuid
from decimal import Decimal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from medallion_assets.delta.commit import (
    ConcurrentWriteError,
    SchemaMismatchError,
    commit_files,
    describe_file,
)
from medallion_assets.delta.log import commit_changes, filesystem_for, live_files, table_version

UTC = dt.timezone.utc
SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("us", tz="UTC")),
        ("price", pa.decimal128(12, 2)),
        ("name", pa.string()),
        ("n", pa.int64()),
    ]
)
FULL_SCHEMA = SCHEMA.append(pa.field("month", pa.date32()))


def write_file(table_dir, month: str, rows: list[tuple]):
    relative = f"month={month}/part-{uuid.uuid4().hex}.parquet"
    path = table_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in SCHEMA]
    arrays = [pa.array(c, type=f.type) for c, f in zip(columns, SCHEMA, strict=True)]
    pq.write_table(pa.table(arrays, schema=SCHEMA), path)
    fs, table_path = filesystem_for(str(table_dir))
    return describe_file(fs, table_path, relative, {"month": month})


def row(day, price, name, n, micro=0):
    return (dt.datetime(2019, 10, day, 12, 0, 0, micro, tzinfo=UTC), Decimal(price), name, n)


def test_footer_stats_are_delta_statistics(tmp_path):
    data_file = write_file(
        tmp_path, "2019-10-01",
        [
            row(1, "1.50", "a", 1),
            row(3, "10.25", None, 7, micro=1500),
            row(2, "0.00", "x" * 40, None),
        ],
    )
    stats = data_file.stats
    assert stats["numRecords"] == 3
    assert stats["nullCount"] == {"ts": 0, "price": 0, "name": 1, "n": 1}
    assert stats["minValues"]["ts"] == "2019-10-01T12:00:00.000Z"
    # 12:00:00.001500 kept to the millisecond must round UP for a max, or readers would skip it.
    assert stats["maxValues"]["ts"] == "2019-10-03T12:00:00.002Z"
    assert stats["minValues"]["price"] == 0.0 and stats["maxValues"]["price"] == 10.25
    assert (stats["minValues"]["n"], stats["maxValues"]["n"]) == (1, 7)
    assert "name" not in stats["minValues"]  # a 40-character max cannot be a 32-character prefix
    json.dumps(stats)


def test_create_then_replace_exactly_one_month(tmp_path):
    uri = str(tmp_path / "t")
    october = write_file(tmp_path / "t", "2019-10-01", [row(1, "1.00", "a", 1)])
    november = write_file(tmp_path / "t", "2019-11-01", [row(2, "2.00", "b", 2)])
    version = commit_files(uri, FULL_SCHEMA, [october, november], partition_by=["month"],
                           replace_partitions=["2019-10-01", "2019-11-01"],
                           custom_metadata={"dagster_run_id": "r1"})
    assert version == 0
    october_again = write_file(
        tmp_path / "t", "2019-10-01", [row(5, "5.00", "c", 3), row(6, "6.00", "d", 4)]
    )
    version = commit_files(uri, FULL_SCHEMA, [october_again], partition_by=["month"],
                           replace_partitions=["2019-10-01"],
                           custom_metadata={"dagster_run_id": "r2"})
    assert version == 1
    table = DeltaTable(uri)
    paths = {p for p, _, _ in live_files(table, "month")}
    assert paths == {october_again.path, november.path}
    frame = pl.read_delta(uri).sort("n")
    assert frame["n"].to_list() == [2, 3, 4]
    assert frame["month"].to_list() == [
        dt.date(2019, 11, 1), dt.date(2019, 10, 1), dt.date(2019, 10, 1)
    ]
    assert table.history(1)[0]["dagster_run_id"] == "r2"


def test_replacing_a_month_with_no_files_empties_only_that_month(tmp_path):
    uri = str(tmp_path / "t")
    months = ["2019-10-01", "2019-11-01"]
    files = [write_file(tmp_path / "t", m, [row(1, "1.00", "a", i)]) for i, m in enumerate(months)]
    commit_files(uri, FULL_SCHEMA, files, partition_by=["month"], replace_partitions=months)
    commit_files(uri, FULL_SCHEMA, [], partition_by=["month"], replace_partitions=["2019-10-01"])
    assert pl.read_delta(uri)["month"].to_list() == [dt.date(2019, 11, 1)]


def test_a_different_schema_is_refused_and_the_table_is_unchanged(tmp_path):
    uri = str(tmp_path / "t")
    october = write_file(tmp_path / "t", "2019-10-01", [row(1, "1.00", "a", 1)])
    commit_files(uri, FULL_SCHEMA, [october], partition_by=["month"],
                 replace_partitions=["2019-10-01"])
    other = pa.schema([("ts", pa.timestamp("us", tz="UTC")), ("month", pa.date32())])
    with pytest.raises(SchemaMismatchError, match="differs from the table's"):
        commit_files(uri, other, [], partition_by=["month"], replace_partitions=["2019-10-01"])
    assert DeltaTable(uri).version() == 0


def test_a_commit_since_the_write_began_conflicts_only_if_it_changed_the_same_months(tmp_path):
    uri = str(tmp_path / "t")
    months = ["2019-10-01", "2019-11-01"]
    files = [write_file(tmp_path / "t", m, [row(1, "1.00", "a", i)]) for i, m in enumerate(months)]
    commit_files(uri, FULL_SCHEMA, files, partition_by=["month"], replace_partitions=months)
    started_from = table_version(uri)
    # After a write began from `started_from`, another writer replaces November.
    november = write_file(tmp_path / "t", "2019-11-01", [row(2, "2.00", "b", 5)])
    commit_files(uri, FULL_SCHEMA, [november], partition_by=["month"],
                 replace_partitions=["2019-11-01"], custom_metadata={"dagster_run_id": "other"})
    changes = commit_changes(uri, started_from + 1, "month")
    assert changes.partitions == {"2019-11-01"} and changes.info["dagster_run_id"] == "other"

    # A write of October that began before it still commits, on top of it ...
    october = write_file(tmp_path / "t", "2019-10-01", [row(3, "3.00", "c", 7)])
    assert commit_files(uri, FULL_SCHEMA, [october], partition_by=["month"],
                        replace_partitions=["2019-10-01"], read_version=started_from) == 2
    # ... a write of November that began before it does not, and the table keeps its data.
    late = write_file(tmp_path / "t", "2019-11-01", [row(4, "4.00", "d", 9)])
    with pytest.raises(ConcurrentWriteError, match="Dagster run other committed month=2019-11-01"):
        commit_files(uri, FULL_SCHEMA, [late], partition_by=["month"],
                     replace_partitions=["2019-11-01"], read_version=started_from)
    assert table_version(uri) == 2
    assert sorted(pl.read_delta(uri)["n"].to_list()) == [5, 7]
