"""Per-month totals recorded in a Delta commit: found again only for the files they cover."""

import json
from decimal import Decimal

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake

from medallion_assets.delta.month_summaries import (
    FILES,
    MONTH_SUMMARIES,
    encode,
    files_by_month,
    files_fingerprint,
    recorded,
)

OCT = ["month=2019-10-01/part-00000-a.parquet", "month=2019-10-01/part-00001-a.parquet"]
NOV = ["month=2019-11-01/part-00000-a.parquet"]


def _commit(path, summaries: str | None) -> None:
    metadata = {MONTH_SUMMARIES: summaries} if summaries else {}
    write_deltalake(
        str(path),
        pa.table({"x": [1]}),
        mode="append",
        commit_properties=CommitProperties(custom_metadata=metadata),
    )


def test_the_fingerprint_is_of_the_file_names_whatever_their_directory_or_order():
    uris = [f"file:///warehouse/silver/events/{p}" for p in reversed(OCT)]
    assert files_fingerprint(uris) == files_fingerprint(OCT)
    assert files_fingerprint(OCT[:1]) != files_fingerprint(OCT)
    outside = ["file:///elsewhere/x.parquet", "month=__HIVE_DEFAULT_PARTITION__/y.parquet"]
    assert files_by_month([*uris, *outside], "month") == {"2019-10": uris}


def test_each_month_gets_the_newest_summary_that_covers_the_files_read(tmp_path):
    _commit(tmp_path, encode({"2019-10": {"views": 1}, "2019-11": {"views": 2}},
                             {"2019-10": OCT, "2019-11": NOV}))
    # A later run of October alone, over other files.
    newer = ["month=2019-10-01/part-00000-b.parquet"]
    _commit(tmp_path, encode({"2019-10": {"views": 3}}, {"2019-10": newer}))
    _commit(tmp_path, None)  # a commit that records nothing (maintenance, another writer)
    table = DeltaTable(str(tmp_path))

    found = recorded(table, ["2019-10", "2019-11"], files_by_month([*newer, *NOV], "month"))
    assert found == {"2019-10": {"views": 3}, "2019-11": {"views": 2}}
    # Files read that the newest summary of the month does not cover: no summary, even though
    # an older commit covered exactly these.
    stale = recorded(table, ["2019-10"], files_by_month(OCT, "month"))
    assert stale == {"2019-10": None}
    assert recorded(None, ["2019-10"], {}) == {"2019-10": None}


def test_decimals_are_recorded_as_text_and_counts_as_numbers():
    value = json.loads(encode({"2019-10": {"revenue": Decimal("1.10"), "purchases": 2}},
                              {"2019-10": OCT}))
    assert value["2019-10"]["revenue"] == "1.10"
    assert value["2019-10"]["purchases"] == 2
    assert value["2019-10"][FILES] == files_fingerprint(OCT)
