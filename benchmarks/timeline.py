"""Marks on the way of one `dagster asset materialize` process, shared by bench.py and
cli_timeline.py.

`traced_command` runs Dagster's own CLI entry point (`dagster._cli.main`, what the `dagster`
script calls) in a process that first wraps a few functions to print a mark, with the time, when
it gets to each point: Dagster imported, the definitions loaded, the instance opened, the run
started, the Spark session asked for and ready, each step's start and success (from the events
the instance stores, the ones the UI shows), the run ended. Nothing else of the run changes; the
marks are a dozen lines on stderr.

`read_points` turns a run's output into seconds since the process was spawned; `steps` gives each
step's seconds from its start to its success event; `breakdown` prints the median of each point
over rounds and the median gap from the point before.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

MARK = "@@timeline "
GONE = "process gone"

# Runs in the measured process: wraps the functions that mark the points, then runs the CLI.
TRACED_CLI = r"""
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


def traced_command(python: Path, dagster_args: Sequence[str]) -> list[str]:
    """The command that runs ``dagster <dagster_args>`` with the marks, under ``python``."""
    return [str(python), "-c", TRACED_CLI, *dagster_args]


def read_points(output: str, spawned: float) -> dict[str, float]:
    """Seconds from ``spawned`` (the epoch time the process was spawned) to each point marked in
    ``output``; a point marked twice keeps its first time."""
    points: dict[str, float] = {}
    for line in output.splitlines():
        if line.startswith(MARK):
            at, point = json.loads(line[len(MARK) :])
            points.setdefault(point, at - spawned)
    return points


def steps(points: dict[str, float]) -> dict[str, float]:
    """Each step's seconds from its start event to its success event (a failed step has none)."""
    return {
        point.removesuffix(" start"): points[end] - points[point]
        for point in points
        if point.endswith(" start") and (end := point.removesuffix(" start") + " end") in points
    }


def breakdown(rounds: Sequence[dict[str, float]]) -> list[str]:
    """A line per point, in the order of the first round: its median time since the process was
    spawned, with min-max, and the median gap from the point before."""
    order = sorted(rounds[0], key=rounds[0].get)
    lines, previous = [], 0.0
    for point in order:
        values = [r[point] for r in rounds if point in r]
        median = statistics.median(values)
        missing = (
            f" (marked in {len(values)} of {len(rounds)} rounds)"
            if len(values) < len(rounds)
            else ""
        )
        lines.append(
            f"- {point}: {median:.2f} s ({min(values):.2f}-{max(values):.2f}), "
            f"+{median - previous:.2f}{missing}"
        )
        previous = median
    return lines
