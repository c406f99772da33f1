"""Equal tasks, a whole number per core, for the files a write reads (`io.balanced_splits`)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from medallion_assets.io.balanced_splits import (
    MAX_PARTITION_BYTES_CONF,
    balanced_splits,
    split_bytes,
)

MiB = 1 << 20
OPEN_COST_CONF = "spark.sql.files.openCostInBytes"


def test_a_month_file_is_cut_into_equal_tasks_a_whole_number_per_core():
    size = 672_392_978  # the 5M-line month: Spark's 128 MiB cut it into 5 tasks and a sliver
    split = split_bytes([size], cores=2, largest=128 * MiB, open_cost=4 * MiB)
    tasks = math.ceil(size / split)
    assert tasks == 6
    assert size - (tasks - 1) * split > 0.9 * split  # the last task is not a sliver
    assert split <= 128 * MiB


def test_never_larger_than_sparks_maximum_and_more_waves_for_more_data():
    sizes = [5_444 * MiB]
    split = split_bytes(sizes, cores=2, largest=128 * MiB, open_cost=4 * MiB)
    assert split <= 128 * MiB
    assert math.ceil(sizes[0] / split) % 2 == 0
    # A file smaller than one split per core: one task per core.
    assert split_bytes([100 * MiB], cores=2, largest=128 * MiB, open_cost=0) == 50 * MiB
    assert split_bytes([], cores=2, largest=128 * MiB, open_cost=0) == 128 * MiB


def tasks(frame) -> int:
    """How many tasks a scan of `frame` gets as planned now (a new plan each time: a
    DataFrame keeps the plan it made first)."""
    return frame.select("*").rdd.getNumPartitions()


@pytest.fixture
def small_splits(spark):
    """Spark's maximum split lowered to 10,000 bytes and no open cost, so that files of a few
    kilobytes show how Spark cuts them."""
    saved = {k: spark.conf.get(k) for k in (MAX_PARTITION_BYTES_CONF, OPEN_COST_CONF)}
    spark.conf.set(MAX_PARTITION_BYTES_CONF, "10000")
    spark.conf.set(OPEN_COST_CONF, "0")
    yield spark
    for key, value in saved.items():
        spark.conf.set(key, value)


def test_a_scan_gets_equal_tasks_inside_the_block_and_sparks_setting_back_after(
    small_splits, tmp_path: Path
):
    spark = small_splits
    csv = tmp_path / "lines.csv"
    csv.write_text("".join(f"{i:09d}\n" for i in range(4_100)))  # 41,000 bytes
    frame = spark.read.schema("value string").csv(str(csv))
    # Spark's own cut: four tasks of 10,000 bytes and one of 1,000, five on two cores.
    assert tasks(frame) == 5
    with balanced_splits(frame):
        assert tasks(frame) == 6
        assert frame.count() == 4_100  # no line lost or read twice at the new boundaries
    assert spark.conf.get(MAX_PARTITION_BYTES_CONF) == "10000"
    assert tasks(frame) == 5


def test_small_files_are_packed_into_a_whole_number_of_tasks_per_core(small_splits, tmp_path):
    spark = small_splits
    # Six files of 4,000 bytes: Spark packs two into each task (8,000 <= 10,000), three tasks on
    # two cores, one of which then does twice the other's work.
    for i in range(6):
        (tmp_path / f"part-{i}.csv").write_text("".join(f"{j:09d}\n" for j in range(400)))
    frame = spark.read.schema("value string").csv(str(tmp_path))
    assert tasks(frame) == 3
    with balanced_splits(frame):
        assert tasks(frame) % 2 == 0
        assert frame.count() == 2_400
