"""Where a month's fixed cost goes: a timeline of `dagster asset materialize` for one month.

    python benchmarks/cli_timeline.py [--rows 1000] [--rounds 3]

Runs the pipeline through Dagster's own CLI entry point, as `make bench` does, in a fresh process
per round, and marks when that process got to each point on the way: Dagster imported, the
definitions loaded, the instance opened, the run started, the Spark session asked for and ready,
each step started and finished, the run ended, the process gone. Prints each point's median time
since the process was spawned (with its spread) and the median gap from the point before, so the
fixed cost of a run can be split into Dagster's start, the JVM's, each step's and the exit.

The marks (timeline.py, which `make bench` uses for its small month too) come from wrapping a
few functions in the measured process (the instance factory, the
instance's event handler, the Spark resource's session start, the CLI's `execute_job`); nothing
else of the run changes. It prints its figures; it does not record them (see README.md here).
"""

from __future__ import annotations

import argparse
import shutil
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
from timeline import GONE, breakdown, read_points, traced_command  # noqa: E402


def one_round(landing: Path, work: Path, home: Path) -> dict[str, float]:
    """Seconds from spawning the process to each point, and to its exit (``process gone``)."""
    warehouse = work / "warehouse"
    shutil.rmtree(warehouse, ignore_errors=True)
    env = pipeline_env(landing, warehouse, home)
    command = traced_command(BIN / "python", materialize_args("--partition", MONTH))
    spawned = time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    gone = time.time()
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"the run failed (exit code {done.returncode})")
    points = read_points(done.stderr, spawned)
    points[GONE] = gone - spawned
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
    print(
        f"\n{args.rows:,}-row month through `dagster asset materialize`, {args.rounds} rounds: "
        "seconds since the process was spawned, median (min-max), and the median gap from the "
        "point before"
    )
    print("\n".join(breakdown(rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
