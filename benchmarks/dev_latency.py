"""How fast `make dev` turns a landed file into gold, and what a warm Spark buys (`make bench-dev`).

Everything runs as a user runs it, with `make dev`'s defaults (a sensor tick at every daemon
look, 5 s apart; a settle time of 5 s; one Spark run at a time; a warm Spark Connect server with
a 2 GB heap), each scenario in its own temporary project directories and DAGSTER_HOME:

1. `make run` (two sample months of 100,000 rows), then `make dev`, then a new 40,000-row month
   moved into the landing directory: the latency from the move to the run's request, to its
   start and to gold, and how many runs the sensor requested (one is the target, 30 s the
   target latency);
2. 1,000-row months materialized as from the UI (a GraphQL launch of the month), one after the
   other: run times on the warm server, on a fresh server that was not warmed up, and with
   `dagster dev` alone, where every run starts its own Spark JVM (the setup before Spark
   Connect);
3. eight 40,000-row months moved in at once: the time until all are in gold, whether runs ever
   overlapped, and the Connect server's peak memory.

The numbers depend on the machine and on what else runs on it: the load average is printed
next to them.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import polars as pl
import psutil

from medallion_assets.tools.dev import HOST
from medallion_assets.tools.sample_data import generate_month

# The `make dev` driver of the dev-server tests: free ports, its own DAGSTER_HOME, Ctrl-C to stop.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medallion_assets_tests.dagster_dev import (
    LOCATION,
    PROJECT,
    DagsterDev,
    dagster_home,
    user_env,
    wait_for,
)

SENSOR = "landing_csv_sensor"
SENSOR_TAGS = {"dagster/sensor_name": SENSOR}
GOLD = ("gold/revenue_by_brand", "gold/daily_funnel")
TIMEOUT = 1800
EIGHT_MONTHS = [f"2019-{m}" for m in ("10", "11", "12")] + [f"2020-0{m}" for m in range(1, 6)]


class ClassicDagsterDev(DagsterDev):
    """`dagster dev` alone, as `make dev` was before the Connect server: each run starts its own
    local Spark session (a JVM) and stops it at the end."""

    def __init__(self, root: Path, env: dict[str, str]):
        super().__init__(root, env)
        self.env = dict(self.env, DAGSTER_HOME=str(self.home))

    def command(self) -> list[str]:
        dagster = PROJECT / ".venv" / "bin" / "dagster"
        workspace = PROJECT / "workspace.yaml"
        return [str(dagster), "dev", "-w", str(workspace), "-h", HOST, "-p", str(self.port)]


class UnwarmedConnectDev(DagsterDev):
    """`make dev`'s launcher without the warm-up month: the first run meets a fresh server."""

    def __init__(self, root: Path, env: dict[str, str]):
        super().__init__(root, env)
        self.env = dict(self.env, DAGSTER_HOME=str(self.home))

    def command(self) -> list[str]:
        return [
            str(PROJECT / ".venv" / "bin" / "python"),
            "-m",
            "medallion_assets.tools.dev",
            "--workspace",
            str(PROJECT / "workspace.yaml"),
            "--port",
            str(self.port),
            "--connect-port",
            str(self.connect_port),
            "--no-warm-up",
        ]


def start(kind: type[DagsterDev], root: Path) -> DagsterDev:
    # The months measured here are latency probes of 1,000 or 40,000 rows beside `make run`'s
    # 100,000-row months; bronze_rows_in_line would rightly stop a month of 1 % of the median as
    # a lost file. A drop of more than 100 % cannot happen, so the check only warns.
    env = dict(user_env(root), MEDALLION_VOLUME_FAIL_DROP_PERCENT="100")
    server = kind(root, env)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


def stop(server: DagsterDev) -> None:
    server.stop()
    if not server.stopped_cleanly:
        print(f"warning: still running after Ctrl-C, killed: {server.survivors}")


def months_in(table: Path) -> set[str]:
    if not (table / "_delta_log").is_dir():
        return set()
    frame = pl.read_delta(str(table), columns=["month"])
    return {m.strftime("%Y-%m") for m in frame["month"].unique().to_list()}


def in_gold(server: DagsterDev, months: set[str]) -> bool | None:
    return True if all(months <= months_in(server.warehouse / t) for t in GOLD) else None


def wait_for_warm_up(server: DagsterDev) -> None:
    wait_for(
        "the Connect server's warm-up",
        lambda: True if "warmed up in" in server.log_tail(200_000) else None,
        TIMEOUT,
        every=0.5,
    )


def launch_month(server: DagsterDev, month: str) -> str:
    """What the UI's "Materialize" of one partition sends: a run of the job for that month."""
    data = server.graphql(
        """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
             __typename ... on LaunchRunSuccess { run { runId } }
             ... on PythonError { message } } }""",
        {
            "params": {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": "__repository__",
                    "jobName": "medallion_monthly",
                },
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": month}]},
            }
        },
    )
    launched = data["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(str(launched))
    return launched["run"]["runId"]


def finished_run(server: DagsterDev, run_id: str) -> dict:
    def done():
        data = server.graphql(
            """query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
                 status creationTime startTime endTime } } }""",
            {"id": run_id},
        )["runOrError"]
        if data["status"] in ("FAILURE", "CANCELED"):
            raise RuntimeError(f"run {run_id} {data['status']}\n{server.log_tail()}")
        return data if data["status"] == "SUCCESS" else None

    return wait_for(f"run {run_id}", done, TIMEOUT, every=0.2)


def small_month_runs(server: DagsterDev, months: list[str], rows: int, staging: Path) -> list:
    """Run seconds (start to end, as the UI shows them) of 1,000-row months launched one by one."""
    server.stop_sensor(SENSOR)
    seconds = []
    for month in months:
        path = generate_month(month, rows, staging, seed=3)
        os.replace(path, server.landing / path.name)
        run = finished_run(server, launch_month(server, month))
        seconds.append(run["endTime"] - run["startTime"])
    return seconds


def make_run(root: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(PROJECT),
            "run",
            f"DAGSTER_HOME={dagster_home(root)}",
        ],
        cwd=root,
        env=user_env(root),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=TIMEOUT,
    )
    return time.monotonic() - started


def new_month_after_make_run(root: Path, rows: int, small_rows: int) -> dict:
    print(f"[1] make run (two months of 100,000 rows), make dev, one new {rows:,}-row month")
    results: dict = {"make_run_s": make_run(root)}
    december = generate_month("2019-12", rows, root / "staging", seed=11)
    server = start(DagsterDev, root)
    try:
        wait_for_warm_up(server)
        time.sleep(3)
        moved = time.time()
        os.replace(december, server.landing / december.name)
        wait_for("2019-12 in gold", lambda: in_gold(server, {"2019-12"}), TIMEOUT, every=0.1)
        gold = time.time()
        [run] = server.wait_for_runs(SENSOR_TAGS, 1, TIMEOUT)
        time.sleep(11)  # two more ticks
        results.update(
            sensor_runs=len(server.runs(SENSOR_TAGS)),
            all_runs=len(server.runs()),
            requested_s=run["creationTime"] - moved,
            started_s=run["startTime"] - run["creationTime"],
            gold_s=gold - run["startTime"],
            total_s=gold - moved,
            run_s=run["endTime"] - run["startTime"],
        )
        print(f"    {results}", flush=True)
        results["warm_small_runs_s"] = small_month_runs(
            server, ["2020-01", "2020-02", "2020-03"], small_rows, root / "staging"
        )
    finally:
        stop(server)
    return results


def small_months_elsewhere(root: Path, kind: type[DagsterDev], rows: int) -> list[float]:
    server = start(kind, root)
    try:
        return small_month_runs(server, ["2020-01", "2020-02", "2020-03"], rows, root / "staging")
    finally:
        stop(server)


class MemoryWatch:
    """Peak resident memory of the Spark Connect server's JVM, sampled every 0.5 s."""

    def __init__(self, server: DagsterDev):
        self.jvm = next(p for p in server.family() if p.name() == "java")
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.peak_mb = max(self.peak_mb, self.jvm.memory_info().rss / 2**20)
            except psutil.NoSuchProcess:
                return

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def eight_months_at_once(root: Path, rows: int) -> dict:
    print(f"[3] eight {rows:,}-row months moved in at once")
    staging = root / "staging"
    paths = [generate_month(m, rows, staging, seed=5) for m in EIGHT_MONTHS]
    server = start(DagsterDev, root)
    try:
        wait_for_warm_up(server)
        with MemoryWatch(server) as memory:
            moved = time.time()
            for path in paths:
                os.replace(path, server.landing / path.name)
            wait_for("eight months in gold", lambda: in_gold(server, set(EIGHT_MONTHS)), TIMEOUT)
            gold = time.time()
            runs = server.wait_for_runs(SENSOR_TAGS, len(EIGHT_MONTHS), TIMEOUT)
        ordered = sorted(runs, key=lambda r: r["startTime"])
        overlaps = sum(a["endTime"] > b["startTime"] for a, b in itertools.pairwise(ordered))
        return {
            "total_s": gold - moved,
            "runs": len(runs),
            "overlapping_pairs": overlaps,
            "median_run_s": statistics.median(r["endTime"] - r["startTime"] for r in runs),
            "connect_server_peak_rss_mb": memory.peak_mb,
        }
    finally:
        stop(server)


def summary(first: dict, warm: list, unwarmed: list, classic: list, eight: dict, args) -> str:
    def runs(values: list[float]) -> str:
        return ", ".join(f"{v:.1f}" for v in values) + f" (median {statistics.median(values):.1f})"

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return "\n".join(
        [
            f"## make dev latency ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
            f"load average {load})",
            "",
            f"New {args.rows:,}-row month moved into landing after `make run` "
            f"({first['make_run_s']:.0f} s), under `make dev`:",
            f"- file -> run requested: {first['requested_s']:.1f} s",
            f"- requested -> run started: {first['started_s']:.1f} s",
            f"- run started -> gold: {first['gold_s']:.1f} s (run {first['run_s']:.1f} s)",
            f"- file -> gold: {first['total_s']:.1f} s; runs requested by the sensor: "
            f"{first['sensor_runs']} (all runs in the instance: {first['all_runs']})",
            "",
            f"{args.small_rows:,}-row month launched as from the UI, run time (s), three months "
            "one after the other:",
            f"- make dev, warm Spark Connect server: {runs(warm)}",
            f"- fresh Spark Connect server, no warm-up: {runs(unwarmed)}",
            f"- dagster dev alone, a Spark JVM per run: {runs(classic)}",
            "",
            f"Eight {args.rows:,}-row months moved in at once: all in gold after "
            f"{eight['total_s']:.0f} s, {eight['runs']} runs, median run "
            f"{eight['median_run_s']:.1f} s, overlapping runs: {eight['overlapping_pairs']}, "
            f"Connect server peak RSS {eight['connect_server_peak_rss_mb']:.0f} MB (heap 2 GB).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40_000, help="rows of the new month(s)")
    parser.add_argument("--small-rows", type=int, default=1_000, help="rows of a small month")
    args = parser.parse_args(argv)
    with TemporaryDirectory(prefix="bench-dev-") as tmp:
        root = Path(tmp)
        first = new_month_after_make_run(root / "first", args.rows, args.small_rows)
        print("[2] 1,000-row months on a fresh server without warm-up, and on dagster dev alone")
        print(f"    warm: {first['warm_small_runs_s']}", flush=True)
        unwarmed = small_months_elsewhere(root / "unwarmed", UnwarmedConnectDev, args.small_rows)
        print(f"    fresh server: {unwarmed}", flush=True)
        classic = small_months_elsewhere(root / "classic", ClassicDagsterDev, args.small_rows)
        print(f"    a JVM per run: {classic}", flush=True)
        eight = eight_months_at_once(root / "eight", args.rows)
        print(f"    {eight}", flush=True)
    print()
    print(summary(first, first["warm_small_runs_s"], unwarmed, classic, eight, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
