"""`make bench` / `make bench-scale`: one month through our pipeline and three references, side by
side, in rounds.

    python benchmarks/bench.py [--rows 5000000] [--rounds 3] [--small-rows 1000] [--work DIR]

Each round runs, one after the other on the same file:

- ``pipeline``: our Dagster pipeline for the month, end to end through the dagster CLI against
  a Dagster instance created before the rounds (process start, JVM start, bronze with its
  quarantine of bad lines, silver, both gold tables, every check, the Delta commits);
- ``floor``: benchmarks/floor.py, the least a Spark script can do for the three layers (typed CSV
  read, Parquet, drop duplicates, revenue by brand; no validation, no checks, no Delta);
- ``notebook``: benchmarks/notebook_baseline.py, the approach of the notebook this replaces
  (inferSchema, a table per month, revenue over all events);
- ``duckdb``: benchmarks/duckdb_baseline.py, the same three layers in DuckDB with the same row
  rules, as a reference from outside Spark;

and, with --small-rows, the pipeline and the notebook on a tiny month (their fixed cost).

Every figure printed is the median over the rounds, with its spread (min-max); the ratios are
those of the medians of runs made in the same benchmark run, never of figures from another day.
The pipeline's per-step times are read from its own log. Results are appended to RESULTS.md.
"""

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import psutil

from medallion_assets.tools.sample_data import generate_month

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from measure import Measurement, run_measured  # noqa: E402

MONTH = "2019-10"
PROJECT_INSTANCE = HERE.parent / ".dagster_home" / "dagster.yaml"
BIN = Path(sys.executable).parent
_STEP_RE = re.compile(r'Finished execution of step "([^"]+)" in ((?:[0-9]+m)?[0-9.]+)(ms|s)')
LABELS = {
    "pipeline": "our pipeline (dagster CLI, checks and Delta commits included)",
    "floor": "floor: plain Spark script, typed read, no validation or checks",
    "notebook": "the notebook's approach (inferSchema, dropDuplicates)",
    "duckdb": "DuckDB, same three layers and row rules",
    "pipeline_small": "our pipeline, small month",
    "notebook_small": "the notebook's approach, small month",
}


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[
        0
    ]
    import dagster
    import deltalake
    import duckdb
    import pyspark

    return (
        f"{os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
        f"Python {platform.python_version()}, {java}, pyspark {pyspark.__version__}, "
        f"dagster {dagster.__version__}, deltalake {deltalake.__version__}, "
        f"duckdb {duckdb.__version__}"
    )


def step_seconds(log_path: Path) -> dict[str, float]:
    """Each step's duration as Dagster logged it."""
    steps = {}
    for name, value, unit in _STEP_RE.findall(log_path.read_text(errors="replace")):
        minutes, _, rest = value.rpartition("m")
        seconds = float(rest) / (1000 if unit == "ms" else 1)
        steps[name] = 60 * float(minutes or 0) + seconds
    return steps


def dagster_home(name: str, work: Path) -> Path:
    return work / f"{name}_dagster_home"


def prepare_instance(name: str, work: Path) -> None:
    """A Dagster instance for the pipeline's runs with the project's settings (those of
    ``make run``: .dagster_home/dagster.yaml), created before the rounds as a user's exists
    before their runs, so that no round pays for creating its storage."""
    home = dagster_home(name, work)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy(PROJECT_INSTANCE, home / "dagster.yaml")
    subprocess.run(
        [str(BIN / "dagster"), "instance", "migrate"],
        env=dict(os.environ, DAGSTER_HOME=str(home)),
        check=True,
        capture_output=True,
    )


def materialize_args(*partition_args: str) -> list[str]:
    """The arguments of `dagster` that materialize the whole graph, as a user types them."""
    return [
        "asset",
        "materialize",
        "-m",
        "medallion_assets.definitions",
        "--select",
        "*",
        *partition_args,
    ]


def pipeline_env(landing: Path, warehouse: Path, home: Path) -> dict[str, str]:
    """The environment of a measured pipeline run: its landing directory, warehouse and instance,
    and a classic Spark session of its own, as the CLI starts without ``make dev``."""
    env = dict(
        os.environ,
        MEDALLION_LANDING_DIR=str(landing),
        MEDALLION_WAREHOUSE_DIR=str(warehouse),
        DAGSTER_HOME=str(home),
    )
    env.pop("MEDALLION_SPARK_REMOTE", None)
    return env


def pipeline(name: str, landing: Path, work: Path) -> tuple[Measurement, dict[str, float]]:
    warehouse, home = work / f"{name}_warehouse", dagster_home(name, work)
    shutil.rmtree(warehouse, ignore_errors=True)
    log = work / f"{name}.log"
    command = [str(BIN / "dagster"), *materialize_args("--partition", MONTH)]
    result = run_measured(
        name, command, env=pipeline_env(landing, warehouse, home), log_path=str(log)
    )
    shutil.rmtree(warehouse, ignore_errors=True)
    return result, step_seconds(log)


def script(name: str, file: str, csv: Path, work: Path) -> Measurement:
    out = work / f"{name}_out"
    shutil.rmtree(out, ignore_errors=True)
    result = run_measured(
        name,
        [sys.executable, str(HERE / file), str(csv), str(out)],
        log_path=str(work / f"{name}.log"),
    )
    shutil.rmtree(out, ignore_errors=True)
    return result


def ensure_month(directory: Path, rows: int) -> Path:
    marker = directory / "rows.json"
    if not marker.exists() or json.loads(marker.read_text()) != rows:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        generate_month(MONTH, rows, directory, seed=1)
        marker.write_text(json.dumps(rows))
    return directory / "2019-Oct.csv"


def median_spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small-rows", type=int, default=1_000, help="0: no small month")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)

    work = args.work.resolve()
    csv = ensure_month(work / f"landing_{args.rows}", args.rows)
    size_mb = csv.stat().st_size / 2**20
    small = (
        ensure_month(work / f"landing_{args.small_rows}", args.small_rows)
        if args.small_rows
        else None
    )
    print(
        f"Month {MONTH}: {args.rows:,} rows, {size_mb:,.0f} MiB; {args.rounds} rounds", flush=True
    )

    runs: dict[str, list[Measurement]] = {}
    steps: dict[str, list[float]] = {}
    for name in ("pipeline", "pipeline_small"):
        prepare_instance(name, work)
    for round_number in range(1, args.rounds + 1):
        plan = [
            ("pipeline", lambda: pipeline("pipeline", csv.parent, work)),
            ("floor", lambda: script("floor", "floor.py", csv, work)),
            ("notebook", lambda: script("notebook", "notebook_baseline.py", csv, work)),
            ("duckdb", lambda: script("duckdb", "duckdb_baseline.py", csv, work)),
        ]
        if small is not None:
            plan += [
                ("pipeline_small", lambda: pipeline("pipeline_small", small.parent, work)),
                (
                    "notebook_small",
                    lambda: script("notebook_small", "notebook_baseline.py", small, work),
                ),
            ]
        for name, run in plan:
            outcome = run()
            measurement, step_times = outcome if isinstance(outcome, tuple) else (outcome, {})
            if measurement.returncode:
                print(f"{name} FAILED (exit {measurement.returncode}); see {work / name}.log")
                return 1
            runs.setdefault(name, []).append(measurement)
            if name == "pipeline":
                for step, seconds in step_times.items():
                    steps.setdefault(step, []).append(seconds)
            print(
                f"  round {round_number} {name:15s} {measurement.seconds:7.1f} s   python peak "
                f"{measurement.peak_python_mb:6.0f} MiB   "
                f"JVM peak {measurement.peak_jvm_mb:6.0f} MiB",
                flush=True,
            )

    for name in ("pipeline", "pipeline_small"):
        shutil.rmtree(dagster_home(name, work), ignore_errors=True)
    seconds = {name: statistics.median(m.seconds for m in ms) for name, ms in runs.items()}
    ratios = {
        "ours / floor (target <= 1.15)": seconds["pipeline"] / seconds["floor"],
        "notebook / ours (target >= 1.0)": seconds["notebook"] / seconds["pipeline"],
        "ours / DuckDB": seconds["pipeline"] / seconds["duckdb"],
    }
    block = [
        f"\n### {args.rows:,} rows ({size_mb:,.0f} MiB CSV), {args.rounds} rounds, "
        f"{dt.date.today().isoformat()}\n",
        f"Machine: {machine()}\n",
        "| run | wall seconds, median (min-max) | CPU seconds, median | peak Python MiB "
        "| peak JVM MiB |",
        "|---|---|---|---|---|",
    ]
    for name, ms in runs.items():
        label = LABELS[name] + (f" ({args.small_rows:,} rows)" if name.endswith("_small") else "")
        block.append(
            f"| {label} | {median_spread([m.seconds for m in ms])} | "
            f"{statistics.median(m.cpu_seconds for m in ms):.1f} | "
            f"{max(m.peak_python_mb for m in ms):.0f} | {max(m.peak_jvm_mb for m in ms):.0f} |"
        )
    block += ["", *[f"- {label}: **{value:.2f}**" for label, value in ratios.items()]]
    cpu = {name: statistics.median(m.cpu_seconds for m in ms) for name, ms in runs.items()}
    block.append(
        f"- CPU seconds, ours / floor: {cpu['pipeline'] / cpu['floor']:.2f}; "
        f"notebook / ours: {cpu['notebook'] / cpu['pipeline']:.2f}"
    )
    if small is not None:
        block.append(
            f"- {args.small_rows:,}-row month through the CLI (target <= 12 s): "
            f"**{seconds['pipeline_small']:.1f} s** "
            f"(notebook's approach {seconds['notebook_small']:.1f} s)"
        )
    block += ["", "Pipeline steps, seconds, median (min-max):", ""]
    block += [f"- {step}: {median_spread(values)}" for step, values in steps.items()]
    text = "\n".join(block)
    print(text, flush=True)
    if not args.results.exists():
        args.results.write_text(RESULTS_HEADER)
    with open(args.results, "a") as handle:
        handle.write(text + "\n")
    print(f"Appended to {args.results}")
    return 0


RESULTS_HEADER = """# Benchmark results

Appended by `make bench` and `make bench-scale` (benchmarks/bench.py). Times are wall seconds of
whole processes (process and JVM start included), the median of the rounds with their spread;
memory is the peak RSS of the Python driver and of the JVM over the rounds.
"""


if __name__ == "__main__":
    raise SystemExit(main())
