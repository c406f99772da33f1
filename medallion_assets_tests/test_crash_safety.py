"""A run killed with SIGKILL in the middle of writing: every table stays readable at its previous
version, the next run succeeds, and maintenance removes what the dead run left behind.

Three moments of a write are killed: while Spark writes the Parquet files into staging, after the
files were moved into the month directories but before the commit that names them, and between
two tables' commits (bronze committed, silver not).
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance

# Dagster's own run tags; it exports no public names for them.
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from deltalake import DeltaTable

from medallion_assets.definitions import build_defs
from medallion_assets.settings import Settings
from medallion_assets.tools.sample_data import generate_month

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


def run_months(settings: Settings, start: str, end: str):
    return build_defs(settings).resolve_job_def("medallion_monthly").execute_in_process(
        instance=DagsterInstance.ephemeral(),
        tags={ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end},
        raise_on_error=False,
    )


def child_env(settings: Settings, dagster_home: Path) -> dict[str, str]:
    """The environment of a run in its own process: this one's, with the test's landing and
    warehouse directories, its own Dagster instance, and a one-core Spark."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    values = {
        "landing_dir": settings.landing_dir,
        "warehouse_dir": settings.warehouse_dir,
        "dagster_home": str(dagster_home),
        "spark_master": "local[1]",
    }
    env.update({Settings.env_name(name): value for name, value in values.items()})
    return env


def staged_parquet(stagings: list[Path]) -> list[Path]:
    return [f for staging in stagings if staging.is_dir() for f in staging.rglob("*.parquet")]


def kill_while_writing(command: list[str], env: dict, cwd: Path, stagings: list[Path]) -> float:
    """Start ``command`` in its own process group and SIGKILL the whole group (Python and its
    Spark JVM) as soon as a Parquet file is being written under one of ``stagings``, i.e. during
    the run's first table write; return when that was."""
    return kill_when(command, env, cwd, lambda: bool(staged_parquet(stagings)))


def kill_when(command: list[str], env: dict, cwd: Path, moment: Callable[[], bool]) -> float:
    """Start ``command`` in its own process group and SIGKILL the whole group (Python and its
    Spark JVM) as soon as ``moment()`` is true; return how long after the start that was."""
    started = time.monotonic()
    proc = subprocess.Popen(command, env=env, cwd=cwd, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not moment():
            if proc.poll() is not None:
                pytest.fail(f"the run ended before the moment to kill it (rc={proc.returncode}):"
                            f"\n{proc.stderr.read()[-4000:]}")
            if time.monotonic() - started > 900:
                pytest.fail("the run never reached the moment to kill it")
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
    landing_dir, warehouse_dir, settings, tmp_path, spark
):
    # The previous version: October, materialized through bronze, silver and gold.
    generate_month("2019-10", 2_000, landing_dir, seed=1)
    assert run_months(settings, "2019-10", "2019-10").success
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
    env = child_env(settings, home)
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
    result = run_months(settings, "2019-10", "2019-11")
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
    maintenance = build_defs(settings).resolve_job_def("delta_maintenance").execute_in_process(
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


# The project's job for October and November in one run, in its own process, with one change:
# the IO manager's commit of the table named on the command line ("first": whichever commits
# first) waits instead of committing, so the test can SIGKILL the run at exactly that moment —
# after the table's files were moved into its month directories, before any commit names them.
RUN_STOPPED_BEFORE_A_COMMIT = r"""
import sys, time
from pathlib import Path
from dagster import DagsterInstance
import medallion_assets.io.delta_io_manager as io_manager
from medallion_assets.definitions import defs

stop_before, marker = sys.argv[1:3]
commit = io_manager.commit_files

def commit_unless_stopped(table_uri, *args, **kwargs):
    if stop_before == "first" or Path(table_uri).as_posix().endswith("/" + stop_before):
        Path(marker).write_text(str(table_uri))
        time.sleep(3600)  # the test kills the process here
    return commit(table_uri, *args, **kwargs)

io_manager.commit_files = commit_unless_stopped
defs.resolve_job_def("medallion_monthly").execute_in_process(
    instance=DagsterInstance.ephemeral(),
    tags={"dagster/asset_partition_range_start": "2019-10",
          "dagster/asset_partition_range_end": "2019-11"},
)
"""


def uncommitted_month_files(table: Path) -> set[str]:
    """Parquet files in the table's month directories that no live add action of the log names."""
    live = set(DeltaTable(str(table)).get_add_actions(flatten=True).column("path").to_pylist())
    on_disk = {str(p.relative_to(table)) for p in table.glob("month=*/*.parquet")}
    return on_disk - live


def month_rows(table: Path, month: int) -> int:
    return pl.read_delta(str(table)).filter(pl.col("month").dt.month() == month).height


@pytest.mark.slow
@pytest.mark.parametrize(
    "stop_before, committed",
    [
        ("first", set()),
        ("silver/events", {"bronze/events", "bronze/events_rejected"}),
    ],
    ids=["files-moved-not-committed", "between-bronze-and-silver-commits"],
)
def test_a_run_killed_before_a_commit_leaves_each_table_readable_and_the_next_run_succeeds(
    landing_dir, warehouse_dir, settings, tmp_path, spark, stop_before, committed
):
    generate_month("2019-10", 2_000, landing_dir, seed=1)
    assert run_months(settings, "2019-10", "2019-10").success
    before = {name: snapshot(warehouse_dir / name) for name in TABLES}

    # A new export of October and a first November, five malformed lines at the top of each.
    for month in ("2019-10", "2019-11"):
        path = generate_month(month, 3_000, landing_dir, seed=2)
        header, rest = path.read_bytes().split(b"\n", 1)
        path.write_bytes(header + b"\n" + b"not,a,valid,line\n" * 5 + rest)
    program = tmp_path / "stopped_run.py"
    program.write_text(RUN_STOPPED_BEFORE_A_COMMIT)
    marker = tmp_path / "stopped-before-commit"
    env = child_env(settings, tmp_path)
    kill_when([sys.executable, str(program), stop_before, str(marker)], env, tmp_path,
              marker.exists)

    stopped = Path(marker.read_text()).relative_to(warehouse_dir).as_posix()
    assert stopped not in committed
    if stop_before != "first":
        assert stopped == stop_before
    # The killed write's files had reached the month directories; no commit names them.
    assert uncommitted_month_files(warehouse_dir / stopped)
    for name in TABLES:
        version, rows = snapshot(warehouse_dir / name)  # readable: polars and delta-rs
        if name in committed:  # committed before the kill: the new months, whole
            assert version == before[name][0] + 1, name
            lines = 3_000 if name == "bronze/events" else 5
            assert month_rows(warehouse_dir / name, 10) == month_rows(
                warehouse_dir / name, 11) == lines, name
        else:  # the previous version, rows unchanged, nothing of November
            assert version == before[name][0], name
            assert rows.equals(before[name][1]), name
            assert rows.filter(pl.col("month").dt.month() == 11).height == 0, name

    # The next run of the same months succeeds and brings every table in line.
    result = run_months(settings, "2019-10", "2019-11")
    assert result.success
    for name in TABLES:
        version, rows = snapshot(warehouse_dir / name)
        assert version == before[name][0] + 1 + (name in committed), name
        assert set(rows["month"].dt.month()) == {10, 11}, name
    for month in (10, 11):
        assert month_rows(warehouse_dir / "bronze/events", month) == 3_000
        assert month_rows(warehouse_dir / "bronze/events_rejected", month) == 5
        assert 0 < month_rows(warehouse_dir / "silver/events", month) <= 3_000


# `dagster asset materialize` exactly as `.venv/bin/dagster` runs it, with one change: the IO
# manager's first commit writes a marker and waits instead of committing, so that the test can
# press Ctrl-C at exactly that moment — after the table's files were moved into its month
# directories, before any commit names them.
CLI_STOPPED_BEFORE_A_COMMIT = r"""
import sys, time
from pathlib import Path
import medallion_assets.io.delta_io_manager as io_manager
from dagster._cli import main

marker = Path(sys.argv.pop(1))
commit = io_manager.commit_files

def commit_unless_stopped(table_uri, *args, **kwargs):
    if not marker.exists():
        marker.write_text(str(table_uri))
        time.sleep(3600)  # the test presses Ctrl-C here
    return commit(table_uri, *args, **kwargs)

io_manager.commit_files = commit_unless_stopped
sys.argv[0] = "dagster"
sys.exit(main())
"""

MATERIALIZE_OCTOBER = ["asset", "materialize", "-m", "medallion_assets.definitions",
                       "--select", "*", "--partition", "2019-10"]


def ctrl_c_when(command: list[str], env: dict, cwd: Path, moment: Callable[[], bool],
                timeout: float = 120) -> tuple[int, str]:
    """Start ``command`` in its own process group, as a terminal runs it, and press Ctrl-C —
    SIGINT to the whole group, Python and its Spark JVM — as soon as ``moment()`` is true. Wait
    for the command to end by itself; return its exit code and the end of its stderr. Fails if
    anything of the group outlives ``timeout`` (it is then killed)."""
    started = time.monotonic()
    proc = subprocess.Popen(command, env=env, cwd=cwd, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not moment():
            if proc.poll() is not None:
                pytest.fail(f"the run ended before the moment to interrupt it "
                            f"(rc={proc.returncode}):\n{proc.stderr.read()[-4000:]}")
            assert time.monotonic() - started < 900, "the run never reached the moment"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run was still running {timeout:.0f} s after Ctrl-C")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    deadline = time.monotonic() + timeout
    while True:  # the JVM too: Ctrl-C must stop the whole group
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"processes of the interrupted run outlived Ctrl-C by {timeout:.0f} s")
        time.sleep(0.05)
    return proc.returncode, stderr[-4000:]


@pytest.mark.slow
def test_ctrl_c_of_a_cli_run_before_its_commit_leaves_tables_unchanged_and_the_run_failed(
    landing_dir, warehouse_dir, settings, tmp_path, spark
):
    """Ctrl-C is how a run started from a shell is stopped: whatever it was writing must stay
    uncommitted, the run must end FAILURE or CANCELED in the instance (not STARTED, which the UI
    would show as running for ever, nor SUCCESS), the command must exit non-zero, and nothing of
    the run may keep going. The interrupt lands at a pinned moment — the first table's files
    moved into its month directory, its commit not made — so it is the same on every run."""
    generate_month("2019-10", 300, landing_dir, seed=1)
    assert run_months(settings, "2019-10", "2019-10").success
    before = {name: snapshot(warehouse_dir / name) for name in TABLES}

    generate_month("2019-10", 400, landing_dir, seed=2)  # a new export of October
    program = tmp_path / "cli_stopped_before_commit.py"
    program.write_text(CLI_STOPPED_BEFORE_A_COMMIT)
    marker = tmp_path / "stopped-before-commit"
    home = tmp_path / "dagster_home"
    home.mkdir()
    returncode, stderr = ctrl_c_when(
        [sys.executable, str(program), str(marker), *MATERIALIZE_OCTOBER],
        child_env(settings, home), tmp_path, marker.exists,
    )

    with DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.status.value in ("FAILURE", "CANCELED"), (run.status, stderr)
    for name in TABLES:
        version, rows = snapshot(warehouse_dir / name)
        assert version == before[name][0], name
        assert rows.equals(before[name][1]), name
    # The interrupted write removed the files it had moved into the month directory.
    assert not uncommitted_month_files(Path(marker.read_text())), stderr
    assert returncode != 0, stderr

    # The next run of the month succeeds.
    assert run_months(settings, "2019-10", "2019-10").success
    assert month_rows(warehouse_dir / "bronze/events", 10) == 400
    for name in TABLES:
        assert snapshot(warehouse_dir / name)[0] == before[name][0] + 1, name
