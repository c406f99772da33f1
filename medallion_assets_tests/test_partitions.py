import datetime as dt

import pytest

from medallion_assets.partitions import (
    InvalidPartitionKey,
    candidate_file_names,
    key_of_month_value,
    month_start,
    month_value,
    monthly_partitions,
    partition_key_from_file_name,
)


def test_keys_are_months_from_october_2019():
    keys = monthly_partitions.get_partition_keys(current_time=dt.datetime(2020, 2, 15))
    assert keys == ["2019-10", "2019-11", "2019-12", "2020-01"]


@pytest.mark.parametrize(
    "key", ["2019-13", "2019-00", "19-10", "2019-1", "../2019-10", "", "2019-Oct"]
)
def test_malformed_keys_are_rejected_with_the_expected_format(key):
    with pytest.raises(InvalidPartitionKey, match="expected YYYY-MM"):
        month_start(key)


def test_months_before_the_first_partition_are_rejected():
    with pytest.raises(InvalidPartitionKey, match="before the first partition 2019-10"):
        month_start("2019-09")


def test_month_start_is_the_first_day():
    assert month_start("2019-11") == dt.date(2019, 11, 1)


def test_a_key_and_the_tables_month_value_convert_both_ways():
    assert month_value("2019-11") == "2019-11-01"
    assert key_of_month_value("2019-11-01") == "2019-11"
    assert key_of_month_value(dt.date(2020, 1, 1)) == "2020-01"
    for key in monthly_partitions.get_partition_keys(current_time=dt.datetime(2021, 3, 1)):
        assert key_of_month_value(month_value(key)) == key
    with pytest.raises(InvalidPartitionKey, match="expected YYYY-MM"):
        month_value("2019-11-01")


@pytest.mark.parametrize(
    "name,key",
    [
        ("2019-Oct.csv", "2019-10"),
        ("2019-Nov.csv.gz", "2019-11"),
        ("2020-01.csv", "2020-01"),
        ("2020-12.csv.gz", "2020-12"),
        ("2019-Foo.csv", None),
        ("2019-13.csv", None),
        ("2019-Oct.csv.tmp", None),
        (".2019-Oct.csv", None),
        ("2019-oct.csv", None),
        ("notes.txt", None),
    ],
)
def test_file_names_map_to_partition_keys(name, key):
    assert partition_key_from_file_name(name) == key


def test_candidate_file_names_prefer_the_published_name():
    assert candidate_file_names("2019-10") == [
        "2019-Oct.csv", "2019-Oct.csv.gz", "2019-10.csv", "2019-10.csv.gz"
    ]
