"""Where a month's fixed cost goes: a timeline of `dagster asset materialize` for one month.

    python benchmarks/cli_timeline.py [--rows 1000] [--rounds 3]

Runs the pipeline through Dagster's own CLI entry point, as `make bench` does, in a fresh process
per round, and marks when that process got to each point on the way: Dagster imported, the
definitions loaded, the instance opened, the run started, the Spark session asked for and ready,
each step started and finished, the run ended, the process gone. Prints each point's median time
since the process was spawned (with its spread) and the median gap from the point before, so the
fixed cost of a run can be split into Dagster's start, the JVM's, each step's and the exit.

The marks come from wrapping a few functions in the measured process (the instance factory, the
instance's event handler, the Spark resource's session start, the CLI's `execute_job`); nothing
else of the run changes. It prints its figures; it does not record them (see README.md here).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import (  # noqa: E402
    BIN,
    MONTH,
    dagster_home,
    ensure_month,
    materialize_args,
    pipeline_env,
    prepare_instance,
)

MARK = "@@timeline "

# Runs in the measured process: wraps the functions that mark the points, then runs the CLI.
_TRACED_CLI = r"""
import json, sys, time
def mark(point):
    print("@@timeline " + json.dumps([time.time(), point]), file=sys.__stderr__, flush=True)
import dagster
mark("dagster imported")
from dagster._core.instance import DagsterInstance
from dagster._core.events import DagsterEventType
get = DagsterInstance.get
def traced_get(*args, **kwargs):
    instance = get(*args, **kwargs)
    mark("instance opened")
    return instance
DagsterInstance.get = staticmethod(traced_get)
handle = DagsterInstance.handle_new_event
STEP_EVENTS = {DagsterEventType.STEP_START: "start", DagsterEventType.STEP_SUCCESS: "end"}
def traced_handle(self, event, *args, **kwargs):
    result = handle(self, event, *args, **kwargs)
    kind = event.dagster_event_type
    if kind in STEP_EVENTS:
        mark(f"{event.dagster_event.step_key} {STEP_EVENTS[kind]}")
    return result
DagsterInstance.handle_new_event = traced_handle
import medallion_assets.definitions
mark("definitions loaded")
from medallion_assets.resources.spark import SparkSessionResource
init = SparkSessionResource._init_session
def traced_init(self):
    new = self._spark_session is None
    if new:
        mark("Spark session asked for")
    init(self)
    if new and self.owns_session:
        mark("Spark session ready")
SparkSessionResource._init_session = traced_init
import dagster._cli.asset as asset_cli
execute_job = asset_cli.execute_job
def traced_execute_job(*args, **kwargs):
    mark("run started")
    try:
        return execute_job(*args, **kwargs)
    finally:
        mark("run ended")
asset_cli.execute_job = traced_execute_job
from dagster._cli import main
sys.argv = ["dagster"] + sys.argv[1:]
main()
"""


def one_round(landing: Path, work: Path, home: Path) -> dict[str, float]:
    """Seconds from spawning the process to each point, and to its exit (``process gone``)."""
    warehouse = work / "warehouse"
    shutil.rmtree(warehouse, ignore_errors=True)
    env = pipeline_env(landing, warehouse, home)
    command = [str(BIN / "python"), "-c", _TRACED_CLI, *materialize_args("--partition", MONTH)]
    spawned = time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    gone = time.time()
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"the run failed (exit code {done.returncode})")
    points: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if line.startswith(MARK):
            at, point = json.loads(line[len(MARK) :])
            points.setdefault(point, at - spawned)
    points["process gone"] = gone - spawned
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    landing = HERE / "work" / f"landing_{args.rows}"
    ensure_month(landing, args.rows)
    with tempfile.TemporaryDirectory(prefix="cli_timeline_") as tmp:
        work = Path(tmp)
        prepare_instance("timeline", work)
        home = dagster_home("timeline", work)
        rounds = []
        for number in range(1, args.rounds + 1):
            rounds.append(one_round(landing, work, home))
            print(f"  round {number}: {rounds[-1]['process gone']:.2f} s", flush=True)
    order = sorted(rounds[0], key=rounds[0].get)
    print(
        f"\n{args.rows:,}-row month through `dagster asset materialize`, {args.rounds} rounds: "
        "seconds since the process was spawned, median (min-max), and the median gap from the "
        "point before"
    )
    previous = 0.0
    for point in order:
        values = [r[point] for r in rounds if point in r]
        median = statistics.median(values)
        print(
            f"- {point:24s} {median:6.2f} ({min(values):.2f}-{max(values):.2f})   "
            f"+{median - previous:5.2f}"
        )
        previous = median
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
