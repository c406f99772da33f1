"""The warehouse resource's per-month facts, read from the Delta log of real tables."""

import datetime as dt

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from medallion_assets.resources.warehouse import MissingUpstreamData, Warehouse

OCT, NOV = dt.date(2019, 10, 1), dt.date(2019, 11, 1)


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    table = pa.table(
        {
            "user_id": pa.array([1, None, 3, 4, None], pa.int64()),
            "_source_file": ["2019-Oct.csv"] * 3 + ["2019-Nov.csv", "other.csv"],
            "month": pa.array([OCT, OCT, OCT, NOV, NOV], pa.date32()),
        }
    )
    # Two commits, so that October's rows are spread over more than one file.
    write_deltalake(str(tmp_path / "layer" / "t"), table.slice(0, 2), partition_by=["month"])
    write_deltalake(
        str(tmp_path / "layer" / "t"), table.slice(2), partition_by=["month"], mode="append"
    )
    return Warehouse(root_uri=str(tmp_path))


def test_rows_and_nulls_per_month_come_from_the_log(warehouse):
    months = ["2019-10", "2019-11", "2019-12"]
    assert warehouse.month_row_counts(["layer", "t"], months) == {
        "2019-10": 3,
        "2019-11": 2,
        "2019-12": 0,
    }
    assert warehouse.month_null_counts(["layer", "t"], "user_id", months) == {
        "2019-10": 1,
        "2019-11": 1,
        "2019-12": 0,
    }


def test_a_column_is_constant_only_when_every_file_of_every_month_says_so(warehouse):
    assert warehouse.month_constants(["layer", "t"], ["_source_file"], ["2019-10"]) == {
        "2019-10": {"_source_file": "2019-Oct.csv"}
    }
    # November holds two file names: not constant, so no month is given one.
    assert (
        warehouse.month_constants(["layer", "t"], ["_source_file"], ["2019-10", "2019-11"]) is None
    )
    # A column with nulls is not constant either.
    assert warehouse.month_constants(["layer", "t"], ["user_id"], ["2019-10"]) is None


def test_a_table_never_written_counts_nothing_and_cannot_be_read(warehouse, spark):
    assert warehouse.month_row_counts(["layer", "missing"], ["2019-10"]) == {"2019-10": 0}
    assert warehouse.month_constants(["layer", "missing"], ["x"], ["2019-10"]) is None
    with pytest.raises(MissingUpstreamData, match="layer/missing has no Delta table"):
        warehouse.read_months(spark, ["layer", "missing"], ["2019-10"])


def test_reading_months_gives_the_month_back_as_a_date_and_only_those_months(warehouse, spark):
    frame = warehouse.read_months(spark, ["layer", "t"], ["2019-11"], columns=["user_id", "month"])
    rows = frame.collect()
    assert sorted(str(r.user_id) for r in rows) == ["4", "None"]
    assert {r.month for r in rows} == {NOV}
    with pytest.raises(MissingUpstreamData, match="no data for 2019-12"):
        warehouse.read_months(spark, ["layer", "t"], ["2019-12"])
