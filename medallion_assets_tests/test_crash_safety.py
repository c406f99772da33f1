"""A run killed with SIGKILL in the middle of writing: every table stays readable at its previous
version, the next run succeeds, and maintenance removes what the dead run left behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from deltalake import DeltaTable

from medallion_assets.definitions import defs
from medallion_assets.sample_data import generate_month

TABLES = [
    "bronze/events",
    "bronze/events_rejected",
    "silver/events",
    "gold/revenue_by_brand",
    "gold/daily_funnel",
]
# Big enough that writing bronze takes seconds on one core: the kill lands well before the commit.
KILLED_RUN_ROWS = 120_000


def snapshot(table: Path) -> tuple[int, pl.DataFrame]:
    frame = pl.read_delta(str(table))
    return DeltaTable(str(table)).version(), frame.sort(frame.columns)


def data_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle) - 1


def run_months(start: str, end: str):
    return defs.resolve_job_def("medallion_monthly").execute_in_process(
        instance=DagsterInstance.ephemeral(),
        tags={ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end},
        raise_on_error=False,
    )


def staged_parquet(stagings: list[Path]) -> list[Path]:
    return [f for staging in stagings if staging.is_dir() for f in staging.rglob("*.parquet")]


def kill_while_writing(command: list[str], env: dict, cwd: Path, stagings: list[Path]) -> float:
    """Start ``command`` in its own process group and SIGKILL the whole group (Python and its
    Spark JVM) as soon as a Parquet file is being written under one of ``stagings``, i.e. during
    the run's first table write; return when that was."""
    started = time.monotonic()
    proc = subprocess.Popen(command, env=env, cwd=cwd, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not staged_parquet(stagings):
            if proc.poll() is not None:
                pytest.fail(f"the run ended before writing (rc={proc.returncode}):\n"
                            f"{proc.stderr.read()[-4000:]}")
            if time.monotonic() - started > 900:
                pytest.fail("the run never started writing")
            time.sleep(0.01)
        killed_at = time.monotonic() - started
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stderr.close()
    deadline = time.monotonic() + 60
    while True:  # the JVM too: nothing of the group may keep writing
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "processes of the killed run survive"
        time.sleep(0.05)
    return killed_at


@pytest.mark.slow
def test_a_run_killed_while_writing_leaves_every_table_at_its_previous_version(
    landing_dir, warehouse_dir, tmp_path, spark
):
    # The previous version: October, materialized through bronze, silver and gold.
    generate_month("2019-10", 2_000, landing_dir, seed=1)
    assert run_months("2019-10", "2019-10").success
    before = {name: snapshot(warehouse_dir / name) for name in TABLES}
    assert before["bronze/events"][1].height == 2_000

    # A new export of October and a first November, both in one run through the Dagster CLI,
    # killed while Spark writes the run's first table. A few malformed lines at the top of each
    # file make every bronze table get rows, whichever of the two the run writes first.
    for month in ("2019-10", "2019-11"):
        path = generate_month(month, KILLED_RUN_ROWS, landing_dir, seed=2)
        header, rest = path.read_bytes().split(b"\n", 1)
        path.write_bytes(header + b"\n" + b"not,a,valid,line\n" * 5 + rest)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(DAGSTER_HOME=str(home), MEDALLION_SPARK_MASTER="local[1]")
    stagings = [warehouse_dir / name / "_staging" for name in TABLES]
    killed_at = kill_while_writing(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize",
         "-m", "medallion_assets.definitions", "--select", "*",
         "--partition-range", "2019-10...2019-11"],
        env, tmp_path, stagings,
    )
    print(f"killed {killed_at:.1f} s after the start, while writing {staged_parquet(stagings)}")
    # The kill landed before the commit: the dead write's files are still there, uncommitted.
    assert staged_parquet(stagings)

    for name in TABLES:
        version, rows = snapshot(warehouse_dir / name)
        assert version == before[name][0], name
        assert rows.equals(before[name][1]), name
        if "month" in rows.columns:
            assert rows.filter(pl.col("month").dt.month() == 11).height == 0, name

    # The next run succeeds, with the dead run's files still lying around.
    generate_month("2019-10", 3_000, landing_dir, seed=3)
    generate_month("2019-11", 3_000, landing_dir, seed=3)
    result = run_months("2019-10", "2019-11")
    assert result.success
    bronze = pl.read_delta(str(warehouse_dir / "bronze" / "events"))
    rejected = pl.read_delta(str(warehouse_dir / "bronze" / "events_rejected"))
    for month, name in ((10, "2019-Oct.csv"), (11, "2019-Nov.csv")):
        written = (bronze.filter(pl.col("month").dt.month() == month).height
                   + rejected.filter(pl.col("month").dt.month() == month).height)
        assert written == data_lines(landing_dir / name) == 3_000
    after = {name: snapshot(warehouse_dir / name) for name in TABLES}
    for name in TABLES:
        assert after[name][0] == before[name][0] + 1, name

    # Maintenance (retention 0: no write is running) removes the dead run's leftovers only.
    maintenance = defs.resolve_job_def("delta_maintenance").execute_in_process(
        run_config={"ops": {"maintain_delta_tables": {"config": {
            "retention_hours": 0, "allow_short_retention": True, "compact": False}}}},
        instance=DagsterInstance.ephemeral(),
    )
    assert maintenance.success
    for name in TABLES:
        table = warehouse_dir / name
        live = set(DeltaTable(str(table)).get_add_actions(flatten=True).column("path").to_pylist())
        assert {str(p.relative_to(table)) for p in table.rglob("*.parquet")} == live, name
        assert not (table / "_staging").exists() or not any((table / "_staging").iterdir()), name
        assert snapshot(table)[1].equals(after[name][1]), name
