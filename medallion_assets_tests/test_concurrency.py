"""Concurrent writers of one Delta table, each a real separate process.

Every writer records the table version it starts from and writes its Parquet file, then waits at
a barrier (a file the test creates once every writer is ready), so all commits are attempted at
the same moment from the same snapshot: the overlap does not depend on timing luck.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from medallion_assets.delta.commit import commit_files, describe_file
from medallion_assets.delta.log import filesystem_for
from medallion_assets.settings import Settings

SCHEMA = pa.schema([("value", pa.int64()), ("month", pa.date32())])

# One writer through the commit layer: pyarrow writes the file, commit_files commits it.
COMMIT_WRITER = r"""
import json, os, sys, time, uuid
import pyarrow as pa, pyarrow.parquet as pq
from medallion_assets.delta.commit import ConcurrentWriteError, commit_files, describe_file
from medallion_assets.delta.log import filesystem_for, table_version

table, month, tag, gate, out = sys.argv[1:6]
started_from = table_version(table)
relative = f"month={month}/part-{uuid.uuid4().hex}.parquet"
path = os.path.join(table, relative)
os.makedirs(os.path.dirname(path), exist_ok=True)
values = [int(tag) * 1000 + i for i in range(int(tag) + 1)]
pq.write_table(pa.table({"value": pa.array(values, pa.int64())}), path)
fs, table_path = filesystem_for(table)
data_file = describe_file(fs, table_path, relative, {"month": month})
open(os.path.join(gate, "ready-" + tag), "w").close()
while not os.path.exists(os.path.join(gate, "go")):
    time.sleep(0.002)
schema = pa.schema([("value", pa.int64()), ("month", pa.date32())])
try:
    version = commit_files(
        table, schema, [data_file], partition_by=["month"], replace_partitions=[month],
        custom_metadata={"writer": tag}, read_version=started_from,
    )
    result = {"version": version}
except ConcurrentWriteError as error:
    os.remove(path)
    result = {"error": str(error)}
result.update(tag=tag, started_from=started_from, values=values)
with open(out, "w") as handle:
    json.dump(result, handle)
"""

# One Dagster run through the project's IO manager (warehouse from $MEDALLION_WAREHOUSE_DIR), with
# its own Spark session ($MEDALLION_SPARK_MASTER), both given in the process's environment. The
# asset's rows pass through a function that Spark runs while writing the Parquet files, i.e. after
# the IO manager recorded the version the write starts from; it waits there until every writer
# has reached the same point.
SPARK_WRITER = r"""
import json, os, sys, time
from dagster import DagsterInstance, asset, materialize
from medallion_assets.definitions import defs
from medallion_assets.partitions import month_start, monthly_partitions
from medallion_assets.resources.spark import SparkSessionResource

key, tag, gate, writers, out = sys.argv[1:6]

def wait_for_every_writer(batches):
    open(os.path.join(gate, "writing-" + tag), "w").close()
    deadline = time.time() + 600
    while sum(n.startswith("writing-") for n in os.listdir(gate)) < int(writers):
        if time.time() > deadline:
            raise TimeoutError("the other writers never started writing")
        time.sleep(0.01)
    yield from batches

@asset(key=["test", "shared"], partitions_def=monthly_partitions,
       metadata={"partition_expr": "month"})
def shared(context, spark: SparkSessionResource):
    month = month_start(context.partition_key)
    rows = [(int(tag) * 1000 + i, month) for i in range(int(tag) + 1)]
    frame = spark.spark_session.createDataFrame(rows, "value bigint, month date").coalesce(1)
    return frame.mapInArrow(wait_for_every_writer, frame.schema)

result = materialize(
    [shared], partition_key=key, raise_on_error=False, instance=DagsterInstance.ephemeral(),
    resources=dict(defs.resources),
)
report = {"tag": tag, "key": key, "run_id": result.run_id, "success": result.success,
          "values": [int(tag) * 1000 + i for i in range(int(tag) + 1)]}
if result.success:
    metadata = result.asset_materializations_for_node("test__shared")[0].metadata
    report["version"] = int(metadata["delta/version"].value)
else:
    report["error"] = str(result.get_step_failure_events()[0].step_failure_data.error)
with open(out, "w") as handle:
    json.dump(report, handle)
"""

# One Dagster run of the month 2019-11 through the project's own resources (IO manager, warehouse
# from $MEDALLION_WAREHOUSE_DIR, Spark from $MEDALLION_SPARK_MASTER), with the project's retry
# policy. While Spark writes the first attempt's files — after the IO manager noted the version
# its commit starts from — another writer commits the same month, as a second run of the month
# would: the first attempt must fail with ConcurrentWriteError and the retry replace the month.
RETRIED_WRITER = r"""
import json, os, sys, uuid
from dagster import DagsterInstance, asset, materialize
from medallion_assets.definitions import defs
from medallion_assets.partitions import month_start, month_value, monthly_partitions
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.retries import SPARK_RETRY_POLICY

table, key, marker, out = sys.argv[1:5]
month = month_value(key)
values = [7001, 7002, 7003]

def compete_on_first_attempt(batches):
    try:
        os.remove(marker)  # there on the first attempt only
    except FileNotFoundError:
        pass
    else:
        import pyarrow as pa, pyarrow.parquet as pq
        from medallion_assets.delta.commit import commit_files, describe_file
        from medallion_assets.delta.log import filesystem_for
        relative = f"month={month}/part-{uuid.uuid4().hex}.parquet"
        os.makedirs(os.path.join(table, f"month={month}"), exist_ok=True)
        pq.write_table(pa.table({"value": pa.array([-100, -101], pa.int64())}),
                       os.path.join(table, relative))
        fs, table_path = filesystem_for(table)
        commit_files(
            table, pa.schema([("value", pa.int64()), ("month", pa.date32())]),
            [describe_file(fs, table_path, relative, {"month": month})], partition_by=["month"],
            replace_partitions=[month], custom_metadata={"writer": "competitor"},
        )
    yield from batches

@asset(key=["test", "contested"], partitions_def=monthly_partitions,
       retry_policy=SPARK_RETRY_POLICY, metadata={"partition_expr": "month"})
def contested(context, spark: SparkSessionResource):
    rows = [(v, month_start(key)) for v in values]
    frame = spark.spark_session.createDataFrame(rows, "value bigint, month date").coalesce(1)
    return frame.mapInArrow(compete_on_first_attempt, frame.schema)

result = materialize(
    [contested], partition_key=key, resources=dict(defs.resources), raise_on_error=False,
    instance=DagsterInstance.ephemeral(),
)
retries = [str(e.event_specific_data.error) for e in result.all_events
           if e.event_type_value == "STEP_UP_FOR_RETRY"]
with open(out, "w") as handle:
    json.dump({"success": result.success, "run_id": result.run_id, "retries": retries,
               "values": values}, handle)
"""


def prefill(table: Path, months: list[str]) -> None:
    """Version 0 of the table: one file of old rows (negative values) per month."""
    files = []
    fs, table_path = filesystem_for(str(table))
    for index, month in enumerate(months):
        relative = f"month={month}/part-{uuid.uuid4().hex}.parquet"
        (table / relative).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"value": pa.array([-1 - index], pa.int64())}), table / relative)
        files.append(describe_file(fs, table_path, relative, {"month": month}))
    commit_files(str(table), SCHEMA, files, partition_by=["month"], replace_partitions=months)


def run_writers(script: str, argvs: list[list[str]], gate: Path, tmp_path: Path, *, barrier: bool,
                timeout: float, settings: dict[str, str] | None = None) -> list[dict]:
    """Start one process per argv, with ``settings`` (field: value) in its environment; open the
    barrier once all are ready; return their reports."""
    gate.mkdir()
    program = tmp_path / f"writer-{uuid.uuid4().hex}.py"
    program.write_text(script)
    outs = [tmp_path / f"out-{i}.json" for i in range(len(argvs))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYSPARK_PYTHON"] = sys.executable  # Spark's Python workers: this interpreter, not PATH's
    env.update({Settings.env_name(name): value for name, value in (settings or {}).items()})
    procs = [
        subprocess.Popen([sys.executable, str(program), *argv, str(out)], env=env, cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for argv, out in zip(argvs, outs, strict=True)
    ]
    try:
        deadline = time.monotonic() + timeout
        if barrier:
            while sum(p.name.startswith("ready-") for p in gate.iterdir()) < len(argvs):
                ended = [p.communicate()[0] for p in procs if p.poll() is not None]
                assert not ended, ended
                assert time.monotonic() < deadline, "writers never got ready"
                time.sleep(0.01)
            (gate / "go").touch()
        logs = [p.communicate(timeout=max(deadline - time.monotonic(), 1))[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-4000:]
    return [json.loads(out.read_text()) for out in outs]


def month_values(table: Path) -> dict[str, list[int]]:
    frame = pl.read_delta(str(table))
    out: dict[str, list[int]] = {}
    for month, value in frame.select("month", "value").rows():
        out.setdefault(month.isoformat(), []).append(value)
    return {k: sorted(v) for k, v in out.items()}


def parquet_files_on_disk(table: Path) -> set[str]:
    return {str(p.relative_to(table)) for p in table.glob("month=*/*.parquet")}


def committed_paths(table: Path) -> set[str]:
    """Files named by some add action of the log, live or replaced since."""
    paths = set()
    for log in (table / "_delta_log").glob("*.json"):
        for line in log.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                paths.add(action["add"]["path"])
    return paths


MONTHS = [f"2020-{m:02d}-01" for m in range(1, 8)]


@pytest.mark.slow
@pytest.mark.parametrize("table_exists", [True, False], ids=["existing-table", "no-table-yet"])
def test_writers_of_different_months_all_commit(tmp_path, table_exists):
    table = tmp_path / "t"
    writers = MONTHS[:6] if table_exists else MONTHS[:4]
    if table_exists:
        prefill(table, MONTHS)  # every month already has rows: each commit replaces files
    gate = tmp_path / "gate"
    results = run_writers(
        COMMIT_WRITER,
        [[str(table), month, str(i + 1), str(gate)] for i, month in enumerate(writers)],
        gate, tmp_path, barrier=True, timeout=300,
    )
    base = 0 if table_exists else -1
    assert [r.get("error") for r in results] == [None] * len(writers)
    assert {r["started_from"] for r in results} == {base}  # all from the same snapshot
    assert sorted(r["version"] for r in results) == list(range(base + 1, base + 1 + len(writers)))

    delta = DeltaTable(str(table))
    assert delta.version() == base + len(writers)
    by_version = {h["version"]: h for h in delta.history()}
    for r in results:  # each writer's reported version is the commit it made
        assert by_version[r["version"]]["writer"] == r["tag"]
    expected = {month: r["values"] for month, r in zip(writers, results, strict=True)}
    if table_exists:
        expected[MONTHS[6]] = [-7]  # the month nobody wrote keeps its rows
    assert month_values(table) == expected
    assert parquet_files_on_disk(table) == committed_paths(table)


@pytest.mark.parametrize(
    "situation", ["month-has-rows", "month-is-new", "no-table-yet"]
)
@pytest.mark.slow
def test_two_writers_of_the_same_month_one_commits_the_other_fails_cleanly(tmp_path, situation):
    table = tmp_path / "t"
    month = "2020-03-01"
    if situation == "month-has-rows":
        prefill(table, ["2020-02-01", month])
    elif situation == "month-is-new":
        prefill(table, ["2020-02-01"])
    results = run_writers(
        COMMIT_WRITER,
        [[str(table), month, tag, str(tmp_path / "gate")] for tag in ("1", "2")],
        tmp_path / "gate", tmp_path, barrier=True, timeout=300,
    )
    base = -1 if situation == "no-table-yet" else 0
    assert {r["started_from"] for r in results} == {base}
    winners = [r for r in results if "version" in r]
    losers = [r for r in results if "error" in r]
    assert len(winners) == 1 and len(losers) == 1, results
    winner, loser = winners[0], losers[0]
    assert winner["version"] == base + 1
    assert f"committed month={month} as version {base + 1}" in loser["error"]
    assert "Nothing of this write was committed" in loser["error"]

    delta = DeltaTable(str(table))
    assert delta.version() == base + 1  # exactly one commit for the month
    assert delta.history(1)[0]["writer"] == winner["tag"]
    values = month_values(table)
    assert values[month] == winner["values"]  # the winner's rows only, never both
    if situation != "no-table-yet":
        assert values["2020-02-01"] == [-1]
    assert parquet_files_on_disk(table) == committed_paths(table)


@pytest.mark.slow
def test_dagster_runs_through_the_io_manager_in_parallel(tmp_path):
    """Three real runs, each its own process and Spark session, committing at the same time: the
    run of another month commits, two of the same month end with one commit and a clean failure."""
    warehouse = tmp_path / "wh"
    table = warehouse / "test" / "shared"
    prefill(table, ["2019-10-01", "2019-11-01", "2019-12-01", "2020-01-01"])
    keys = ["2019-10", "2019-12", "2019-12"]
    gate = tmp_path / "gate"
    started = time.monotonic()
    results = run_writers(
        SPARK_WRITER,
        [[key, str(i + 1), str(gate), str(len(keys))] for i, key in enumerate(keys)],
        gate, tmp_path, barrier=False, timeout=900,
        settings={"warehouse_dir": str(warehouse), "spark_master": "local[1]"},
    )
    print(f"{len(keys)} parallel Spark runs: {time.monotonic() - started:.1f} s")
    by_tag = {r["tag"]: r for r in results}
    assert by_tag["1"]["success"], results
    # Every run was inside its Parquet write before any of them could commit.
    assert sorted(p.name for p in gate.iterdir()) == [f"writing-{i}" for i in range(1, 4)]
    december = [by_tag["2"], by_tag["3"]]
    winners = [r for r in december if r["success"]]
    losers = [r for r in december if not r["success"]]
    assert len(winners) == 1 and len(losers) == 1, results
    winner, loser = winners[0], losers[0]
    assert "ConcurrentWriteError" in loser["error"]
    assert f"Dagster run {winner['run_id']} committed month=2019-12-01" in loser["error"]

    delta = DeltaTable(str(table))
    assert delta.version() == 2
    history = {h["version"]: h for h in delta.history()}
    committed = {r["run_id"]: r["version"] for r in results if r["success"]}
    assert {history[v]["dagster_run_id"]: v for v in (1, 2)} == committed
    assert month_values(table) == {
        "2019-10-01": by_tag["1"]["values"],
        "2019-11-01": [-2],
        "2019-12-01": winner["values"],
        "2020-01-01": [-4],
    }
    # The failed run removed what it wrote: nothing on disk that the log does not name.
    assert parquet_files_on_disk(table) == committed_paths(table)
    staging = table / "_staging"
    assert not staging.exists() or not any(staging.iterdir())



@pytest.mark.slow
def test_the_retry_after_a_concurrent_write_error_replaces_the_month(tmp_path):
    warehouse = tmp_path / "wh"
    table = warehouse / "test" / "contested"
    prefill(table, ["2019-10-01", "2019-11-01"])
    marker = tmp_path / "compete-once"
    marker.touch()

    (result,) = run_writers(
        RETRIED_WRITER, [[str(table), "2019-11", str(marker)]], tmp_path / "gate", tmp_path,
        barrier=False, timeout=900,
        settings={"warehouse_dir": str(warehouse), "spark_master": "local[1]"},
    )

    assert not marker.exists()  # the competing commit happened
    assert result["success"], result
    (first_attempt,) = result["retries"]  # one retry, for the conflict
    assert "ConcurrentWriteError" in first_attempt
    assert "committed month=2019-11-01 as version 1" in first_attempt

    delta = DeltaTable(str(table))
    history = {h["version"]: h for h in delta.history()}
    assert delta.version() == 2
    assert history[1]["writer"] == "competitor"
    assert history[2]["dagster_run_id"] == result["run_id"]  # the retry's commit, on top of it
    # The retry replaced the month: its rows only, not the other writer's, not a mix.
    assert month_values(table) == {"2019-10-01": [-1], "2019-11-01": result["values"]}
    assert parquet_files_on_disk(table) == committed_paths(table)
