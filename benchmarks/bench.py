"""`make bench` / `make bench-scale`: one month through our pipeline and its references, side by
side, in rounds, with every run's outputs checked against the others'.

    python benchmarks/bench.py [--rows 5000000] [--rounds 3] [--small-rows 1000] [--seed N]
                               [--shape sample|wide] [--no-append] [--work DIR]

The runs, each a whole process on the same generated month:

- ``pipeline``: our Dagster pipeline for the month, end to end through the dagster CLI against
  a Dagster instance created before the rounds (process start, JVM start, bronze with its
  quarantine of bad lines, silver, both gold tables, every check, the Delta commits); the CLI's
  own entry point, run with the marks of timeline.py, which time the steps and, for the small
  month, where its seconds go;
- ``plain``: benchmarks/floor.py, the reference work done by a plain Spark script (typed CSV
  read, Parquet, rows without a user and exact duplicates dropped, purchase revenue by brand; no
  validation, no checks, no Delta);
- ``best``: benchmarks/best.py, Spark's best: the same work as ``plain`` with every reader
  option, codec and session setting that was measured to make it faster (best_choices.py
  measures each);
- ``notebook``: benchmarks/notebook_baseline.py, the approach of the notebook this replaces
  (inferSchema, a table per month, revenue over all events);
- ``notebook_today``: the same script as it runs today, with Spark's defaults;
- ``duckdb``: benchmarks/duckdb_baseline.py, the same three layers in DuckDB with the same row
  rules, a reference from outside Spark;

and, with --small-rows, the pipeline and the notebook's approach on a tiny month (their fixed
cost). The months are generated with the data shape --shape names (`sample_data.SHAPES`), the
same for both; the entry's heading names it.

Like with like. The headline (pipeline, plain, best, notebook) starts with the same Spark
session and JVM settings, the pipeline's own (benchmarks/spark_settings.py); each Spark run's
settings are read back from its JVM's command line and the benchmark fails if they are not those
its row names (best.py changes SQL settings at run time, which its docstring lists and its log
and the entry record). The order of the runs changes from round to round (shuffled with a seed
that is recorded), so that no run always follows the same neighbour or always meets a cold or
warm page cache. After each run its outputs are compared with those of every earlier run of the
same file where the work is the same: the rows of the de-duplicated silver (every run), and the
purchase revenue of each brand as exact decimals (the pipeline's gold/revenue_by_brand Delta
table, the plain scripts' and DuckDB's Parquet; the notebook sums something else). A difference
fails the benchmark and says what differs. The months compared are generated (`sample_data`),
and hold no line the pipeline rejects and a plain script keeps; the pipeline's rejected lines are
counted and reported with any difference, since on a file that holds such lines the outputs
differ by design.

Records a reader can trust: every figure printed is the median over the rounds with its min-max,
in wall seconds and in CPU seconds (user + system of the whole process tree, the kernel's
account: measure.py); the ratios are of medians from this benchmark run only. The entry names the
commit measured and whether the tree had uncommitted changes, the load average before and after,
the seed and each round's order, and the shared settings; it is appended to RESULTS.md unless
--no-append.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psutil

from medallion_assets.tools.sample_data import SHAPES, generate_month

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import spark_settings  # noqa: E402
import timeline  # noqa: E402
from measure import Measurement, run_measured  # noqa: E402

MONTH = "2019-10"
# A 1,000-row month through the CLI, whole process, seconds: what a month with almost no data
# may cost.
SMALL_MONTH_TARGET = 8.0
PROJECT_INSTANCE = REPO / ".dagster_home" / "dagster.yaml"
BIN = Path(sys.executable).parent
_SPARK_SUBMIT = "org.apache.spark.deploy.SparkSubmit"
_SPARK_LAUNCHER = "org.apache.spark.launcher.Main"
CPU_SOURCES = {
    "rusage": "as the kernel accounts it, every process reaped",
    "sampled": "summed from samples every 0.2 s",
}
SETTINGS_LABELS = {
    spark_settings.SHARED: "shared (the pipeline's)",
    spark_settings.SHARED_SMALL: "shared, small input (the pipeline's)",
    spark_settings.SPARK_DEFAULTS: "Spark's defaults",
    None: "not Spark",
}


@dataclass(frozen=True)
class Variant:
    label: str
    script: str | None  # None: the pipeline through the dagster CLI
    settings: str | None  # `spark_settings` choice; None: not a Spark run
    small: bool = False
    args: tuple[str, ...] = ()  # the script's arguments after CSV, OUT_DIR and --settings


VARIANTS: dict[str, Variant] = {
    "pipeline": Variant(
        "our pipeline (dagster CLI, checks and Delta commits included)", None, spark_settings.SHARED
    ),
    "plain": Variant(
        "plain Spark script (floor.py): typed read, no validation or checks",
        "floor.py",
        spark_settings.SHARED,
    ),
    "best": Variant(
        "Spark's best (best.py): the plain work, every measured gain kept",
        "best.py",
        spark_settings.SHARED,
    ),
    "notebook": Variant(
        "the notebook's approach (inferSchema, dropDuplicates)",
        "notebook_baseline.py",
        spark_settings.SHARED,
    ),
    "notebook_today": Variant(
        "the notebook's approach, as it runs today",
        "notebook_baseline.py",
        spark_settings.SPARK_DEFAULTS,
    ),
    "duckdb": Variant("DuckDB, same three layers and row rules", "duckdb_baseline.py", None),
    "pipeline_small": Variant(
        "our pipeline, small month", None, spark_settings.SHARED_SMALL, small=True
    ),
    "notebook_small": Variant(
        "the notebook's approach, small month",
        "notebook_baseline.py",
        spark_settings.SHARED_SMALL,
        small=True,
    ),
}


class BenchmarkFailed(Exception):
    """A run failed, was not started with the settings its row names, or its outputs differ from
    another run's: no figure of this benchmark run may be recorded."""


# -- the machine and the code -----------------------------------------------------------------


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


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


def code_state() -> tuple[str, list[str]]:
    """The commit checked out and the paths that differ from it (``git status --porcelain``):
    the code measured is that commit only when the list is empty."""
    return _git("rev-parse", "HEAD").strip(), _git("status", "--porcelain").splitlines()


def describe_code(commit: str, changed: list[str], commit_after: str) -> str:
    if not changed:
        state = "clean tree"
    else:
        shown = ", ".join(f"`{line.strip()}`" for line in changed[:8])
        more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
        state = f"dirty tree: {len(changed)} paths differ from it ({shown}{more})"
    text = f"Code: commit `{commit}`, {state}"
    if commit_after != commit:
        text += f"; HEAD moved to `{commit_after}` while the rounds ran"
    return text


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def check_plain_schema() -> None:
    """The plain script writes out the pipeline's schema and time format rather than importing
    them (see floor.py), and best.py imports floor.py's; they must still be the pipeline's."""
    import floor

    from medallion_assets.schema import EVENT_FIELDS, SOURCE_TIME_FORMAT

    expected = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in EVENT_FIELDS)
    if expected != floor.SCHEMA or floor.TIME_FORMAT != SOURCE_TIME_FORMAT:
        raise BenchmarkFailed(
            f"floor.py's schema or time format is not the pipeline's: {floor.SCHEMA!r} "
            f"{floor.TIME_FORMAT!r}, expected {expected!r} {SOURCE_TIME_FORMAT!r}"
        )


# -- the runs ------------------------------------------------------------------------------------


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


def script_env(settings_file: Path) -> dict[str, str]:
    """The environment of a measured script: the settings worked out before the rounds
    (`spark_settings.write_file`), and no Spark Connect endpoint, as for the pipeline."""
    env = dict(os.environ, **{spark_settings.SETTINGS_FILE_ENV: str(settings_file)})
    env.pop("MEDALLION_SPARK_REMOTE", None)
    return env


def month_directory(work: Path, rows: int, shape: str) -> Path:
    """Where the generated month of ``rows`` rows and data shape ``shape`` is kept between runs."""
    return work / f"landing_{shape}_{rows}"


def ensure_month(directory: Path, rows: int, shape: str = "sample") -> Path:
    """The month's file in ``directory``, generated unless the marker there says that the file
    is already this month, size, shape and seed."""
    marker = directory / "month.json"
    wanted = {"month": MONTH, "rows": rows, "shape": shape, "seed": 1}
    if not marker.exists() or json.loads(marker.read_text()) != wanted:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        generate_month(MONTH, rows, directory, seed=1, shape=shape)
        marker.write_text(json.dumps(wanted))
    return directory / "2019-Oct.csv"


# -- the outputs -----------------------------------------------------------------------------------


@dataclass
class Outputs:
    """What a run produced that another run doing the same work must produce too."""

    silver_rows: int
    # Purchase revenue by brand (None: the brand's events have none), exact; None when the run's
    # gold is other work (the notebook's sum over every event).
    revenue: dict[str | None, Decimal] | None
    # Lines the run set aside as rejected, which a plain script would have kept.
    rejected: int = 0


def _parquet_rows(path: Path) -> int:
    import pyarrow.dataset as ds

    return ds.dataset(str(path), format="parquet").count_rows()


def _revenue(table) -> dict[str | None, Decimal]:
    brands = table.column("brand").to_pylist()
    totals = table.column("total_revenue").to_pylist()
    if len(set(brands)) != len(brands):
        raise BenchmarkFailed("a revenue table holds a brand twice")
    return {brand: Decimal(total) for brand, total in zip(brands, totals, strict=True)}


def pipeline_outputs(warehouse: Path) -> Outputs:
    from deltalake import DeltaTable

    def table(*path: str) -> DeltaTable:
        return DeltaTable(str(warehouse.joinpath(*path)))

    rejected_path = warehouse / "bronze" / "events_rejected"
    rejected = (
        table("bronze", "events_rejected").to_pyarrow_dataset().count_rows()
        if DeltaTable.is_deltatable(str(rejected_path))
        else 0
    )
    revenue = table("gold", "revenue_by_brand").to_pyarrow_table(columns=["brand", "total_revenue"])
    return Outputs(
        silver_rows=table("silver", "events").to_pyarrow_dataset().count_rows(),
        revenue=_revenue(revenue),
        rejected=rejected,
    )


def script_outputs(script: str, out: Path) -> Outputs:
    import pyarrow.parquet as pq

    if script in ("floor.py", "best.py"):
        return Outputs(
            silver_rows=_parquet_rows(out / "silver"),
            revenue=_revenue(pq.read_table(out / "gold_revenue")),
        )
    if script == "notebook_baseline.py":
        (silver,) = out.glob("silver_*")
        return Outputs(silver_rows=_parquet_rows(silver), revenue=None)
    if script == "duckdb_baseline.py":
        return Outputs(
            silver_rows=_parquet_rows(out / "silver.parquet"),
            revenue=_revenue(pq.read_table(out / "gold_revenue_by_brand.parquet")),
            rejected=_parquet_rows(out / "bronze_rejected.parquet")
            + _parquet_rows(out / "bronze_unparsed.parquet"),
        )
    raise ValueError(script)


def _amount(value: Decimal | None) -> str:
    return "(no row)" if value is None else str(value)


class CrossCheck:
    """Every run's outputs against the first run of the same file that did the same work."""

    def __init__(self) -> None:
        self.silver: dict[bool, tuple[str, int]] = {}
        self.revenue: dict[bool, tuple[str, dict[str | None, Decimal]]] = {}
        self.rejected: dict[str, int] = {}
        self.runs: dict[tuple[bool, str], set[str]] = {}

    def add(self, name: str, round_number: int, small: bool, outputs: Outputs) -> None:
        run = f"{name} (round {round_number})"
        self.rejected[name] = max(self.rejected.get(name, 0), outputs.rejected)
        problems = []
        first, rows = self.silver.setdefault(small, (run, outputs.silver_rows))
        if outputs.silver_rows != rows:
            problems.append(f"silver rows: {first} {rows:,}, {run} {outputs.silver_rows:,}")
        self.runs.setdefault((small, "silver"), set()).add(name)
        if outputs.revenue is not None:
            first, revenue = self.revenue.setdefault(small, (run, outputs.revenue))
            differing = sorted(
                (
                    b
                    for b in set(revenue) | set(outputs.revenue)
                    if revenue.get(b) != outputs.revenue.get(b)
                ),
                key=str,
            )
            if differing:
                shown = "; ".join(
                    f"{b!r}: {_amount(revenue.get(b))} vs {_amount(outputs.revenue.get(b))}"
                    for b in differing[:5]
                )
                problems.append(
                    f"purchase revenue of {len(differing)} brands differs between {first} and "
                    f"{run}: {shown}"
                )
            self.runs.setdefault((small, "revenue"), set()).add(name)
        if problems:
            rejected = {n: r for n, r in self.rejected.items() if r}
            note = (
                f" Rejected lines, which a plain script keeps: {rejected}; on a file with such "
                "lines the outputs differ by design."
                if rejected
                else ""
            )
            which = "small month" if small else "month"
            raise BenchmarkFailed(
                f"the runs of the {which} do not produce the same outputs: "
                + " | ".join(problems)
                + "."
                + note
            )

    def summary(self, small_rows: int) -> list[str]:
        lines = []
        for small in (False, True):
            if small not in self.silver:
                continue
            which = f"the small month ({small_rows:,} rows)" if small else "the month"
            rows = self.silver[small][1]
            line = (
                f"- {which}: silver rows {rows:,} in every run of "
                f"{', '.join(sorted(self.runs[(small, 'silver')]))}"
            )
            if small in self.revenue:
                revenue = self.revenue[small][1]
                line += (
                    f"; purchase revenue of each of {len(revenue)} brands "
                    f"(total {sum(revenue.values())}) equal to the cent in every run of "
                    f"{', '.join(sorted(self.runs[(small, 'revenue')]))}"
                )
            lines.append(line)
        rejected = ", ".join(f"{name} {count:,}" for name, count in sorted(self.rejected.items()))
        lines.append(f"- lines set aside as rejected (most in one run): {rejected}")
        return lines


# -- measuring -------------------------------------------------------------------------------------


def check_settings(
    name: str, variant: Variant, measurement: Measurement, expected: dict[str, dict[str, str]]
) -> None:
    """The run's driver JVM was started with the settings its row names."""
    if variant.settings is None:
        return
    drivers = [
        command
        for command in measurement.jvm_commands.values()
        if _SPARK_SUBMIT in command and _SPARK_LAUNCHER not in command
    ]
    if not drivers:
        raise BenchmarkFailed(f"{name}: no Spark driver JVM was seen, its settings are unknown")
    for command in drivers:
        problems = spark_settings.differences(
            expected[variant.settings], spark_settings.launched_conf(command)
        )
        if problems:
            raise BenchmarkFailed(
                f"{name} was not started with the {variant.settings} settings: "
                + "; ".join(problems)
            )


def run_log(work: Path, name: str, round_number: int) -> Path:
    """Each run's output, kept for every round so that a figure can be traced to its log."""
    return work / f"{name}.round{round_number}.log"


def run_variant(
    name: str, variant: Variant, csv: Path, work: Path, settings_file: Path, round_number: int
) -> tuple[Measurement, dict[str, float], Outputs | None]:
    """One measured run; its outputs read, then removed. Outputs None: the run failed.

    The pipeline runs through Dagster's own CLI entry point with the marks of `timeline`; the
    second value is then the seconds from spawn to each point (`timeline.read_points`), the
    process's exit included; empty for a script."""
    log = run_log(work, name, round_number)
    if variant.script is None:
        out, home = work / f"{name}_warehouse", dagster_home(name, work)
        shutil.rmtree(out, ignore_errors=True)
        command = timeline.traced_command(BIN / "python", materialize_args("--partition", MONTH))
        env = pipeline_env(csv.parent, out, home)
    else:
        out = work / f"{name}_out"
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, str(HERE / variant.script), str(csv), str(out)]
        if variant.settings is not None:
            command += ["--settings", variant.settings]
        command += list(variant.args)
        env = script_env(settings_file)
    spawned = time.time()
    measurement = run_measured(name, command, env=env, log_path=str(log))
    outputs = None
    points: dict[str, float] = {}
    if measurement.returncode == 0:
        if variant.script is None:
            outputs = pipeline_outputs(out)
            points = timeline.read_points(log.read_text(errors="replace"), spawned)
            points[timeline.GONE] = measurement.seconds
        else:
            outputs = script_outputs(variant.script, out)
    shutil.rmtree(out, ignore_errors=True)
    return measurement, points, outputs


def printed_line(log: Path, prefix: str) -> str | None:
    """The last line of a run's log that starts with ``prefix`` (None: there is none)."""
    if not log.exists():
        return None
    found = [
        line for line in log.read_text(errors="replace").splitlines() if line.startswith(prefix)
    ]
    return found[-1].strip() if found else None


def median_spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def _variant_names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown run key(s) {', '.join(unknown) or '(none given)'}: "
            f"expected some of {', '.join(VARIANTS)}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small-rows", type=int, default=1_000, help="0: no small month")
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the rounds' orders (default: a new one)"
    )
    parser.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        default="sample",
        help="the generated months' data shape (medallion_assets.tools.sample_data.SHAPES)",
    )
    parser.add_argument(
        "--variants",
        type=_variant_names,
        default=list(VARIANTS),
        help="comma-separated keys of the runs to make (default: all of "
        + ", ".join(VARIANTS)
        + "); ratios are printed for the pairs that ran",
    )
    parser.add_argument(
        "--no-append", action="store_true", help="print the entry without appending it"
    )
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BenchmarkFailed as failure:
        print(f"BENCHMARK FAILED: {failure}", flush=True)
        return 1


def run(args: argparse.Namespace) -> int:
    check_plain_schema()
    commit, changed = code_state()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    csv = ensure_month(month_directory(work, args.rows, args.shape), args.rows, args.shape)
    size_mb = csv.stat().st_size / 2**20
    small = (
        ensure_month(
            month_directory(work, args.small_rows, args.shape), args.small_rows, args.shape
        )
        if args.small_rows
        else None
    )
    names = [
        n for n, v in VARIANTS.items() if n in args.variants and (small is not None or not v.small)
    ]
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    shuffler = random.Random(seed)
    orders = [shuffler.sample(names, len(names)) for _ in range(args.rounds)]
    settings_file = work / "spark_settings.json"
    expected = spark_settings.write_file(settings_file, pipeline_env(work, work, work))
    for name in ("pipeline", "pipeline_small"):
        prepare_instance(name, work)
    print(
        f"Month {MONTH}: {args.rows:,} rows, shape {args.shape}, {size_mb:,.0f} MiB; "
        f"{args.rounds} rounds; order seed {seed}",
        flush=True,
    )

    runs: dict[str, list[Measurement]] = {}
    steps: dict[str, list[float]] = {}
    small_timeline: list[dict[str, float]] = []
    checks = CrossCheck()
    load_before = load_average()
    for round_number, order in enumerate(orders, start=1):
        print(f"round {round_number}: {', '.join(order)}", flush=True)
        for name in order:
            variant = VARIANTS[name]
            file = small if variant.small else csv
            measurement, points, outputs = run_variant(
                name, variant, file, work, settings_file, round_number
            )
            if outputs is None:
                raise BenchmarkFailed(
                    f"{name} failed (exit {measurement.returncode}); see "
                    f"{run_log(work, name, round_number)}"
                )
            check_settings(name, variant, measurement, expected)
            checks.add(name, round_number, variant.small, outputs)
            runs.setdefault(name, []).append(measurement)
            if name == "pipeline":
                for step, seconds in timeline.steps(points).items():
                    steps.setdefault(step, []).append(seconds)
            if name == "pipeline_small":
                small_timeline.append(points)
            print(
                f"  {name:15s} wall {measurement.seconds:7.1f} s   CPU "
                f"{measurement.cpu_seconds:7.1f} s   python peak "
                f"{measurement.peak_python_mb:6.0f} MiB   JVM peak "
                f"{measurement.peak_jvm_mb:6.0f} MiB",
                flush=True,
            )
    load_after = load_average()
    commit_after, _ = code_state()
    for name in ("pipeline", "pipeline_small"):
        shutil.rmtree(dagster_home(name, work), ignore_errors=True)

    text = "\n".join(
        entry(
            args,
            size_mb,
            seed,
            orders,
            runs,
            steps,
            small_timeline,
            checks,
            expected,
            describe_code(commit, changed, commit_after),
            load_before,
            load_after,
            (
                printed_line(run_log(work, "best", args.rounds), "best.py: ")
                if "best" in runs
                else None
            ),
        )
    )
    record(text, args.results, append=not args.no_append)
    return 0


def record(text: str, results: Path, *, append: bool) -> None:
    """Print an entry and, unless told not to, append it to `results` (RESULTS.md), which starts
    with `RESULTS_HEADER` when it is new. Every benchmark script records its entries this way."""
    print(text, flush=True)
    if not append:
        print(f"Not appended to {results} (--no-append)")
        return
    if not results.exists():
        results.write_text(RESULTS_HEADER)
    with open(results, "a") as handle:
        handle.write(text + "\n")
    print(f"Appended to {results}")


def entry(
    args: argparse.Namespace,
    size_mb: float,
    seed: int,
    orders: list[list[str]],
    runs: dict[str, list[Measurement]],
    steps: dict[str, list[float]],
    small_timeline: list[dict[str, float]],
    checks: CrossCheck,
    expected: dict[str, dict[str, str]],
    code: str,
    load_before: str,
    load_after: str,
    best_line: str | None,
) -> list[str]:
    """The RESULTS.md entry: everything in it is worked out from this benchmark run."""
    wall = {name: statistics.median(m.seconds for m in ms) for name, ms in runs.items()}
    cpu = {name: statistics.median(m.cpu_seconds for m in ms) for name, ms in runs.items()}

    def ratio(label: str, top: str, bottom: str, bold: bool = True) -> str | None:
        if top not in wall or bottom not in wall:
            return None
        figure = f"{wall[top] / wall[bottom]:.2f}"
        return (
            f"- {label}: wall {'**' + figure + '**' if bold else figure}, "
            f"CPU {cpu[top] / cpu[bottom]:.2f}"
        )

    cpu_sources = sorted({CPU_SOURCES[m.cpu_source] for ms in runs.values() for m in ms})
    left = sum(m.left_running for ms in runs.values() for m in ms)
    block = [
        f"\n### {args.rows:,} rows, shape {args.shape} ({size_mb:,.0f} MiB CSV), "
        f"{args.rounds} rounds, {dt.date.today().isoformat()}\n",
        f"{code}\n",
        f"Machine: {machine()}\n",
        f"Load average (1 / 5 / 15 min): {load_before} before the first run, "
        f"{load_after} after the last\n",
        f"Order of the runs (shuffled each round, seed {seed}): "
        + "; ".join(f"{i}: {', '.join(order)}" for i, order in enumerate(orders, start=1))
        + "\n",
        "| run | key | Spark settings | wall seconds, median (min-max) | "
        "CPU seconds, median (min-max) | peak Python MiB | peak JVM MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, variant in VARIANTS.items():
        if name not in runs:
            continue
        ms = runs[name]
        label = variant.label + (f" ({args.small_rows:,} rows)" if variant.small else "")
        block.append(
            f"| {label} | {name} | {SETTINGS_LABELS[variant.settings]} | "
            f"{median_spread([m.seconds for m in ms])} | "
            f"{median_spread([m.cpu_seconds for m in ms])} | "
            f"{max(m.peak_python_mb for m in ms):.0f} | {max(m.peak_jvm_mb for m in ms):.0f} |"
        )
    ratios = [
        ratio("ours / Spark's best (target <= 1.10)", "pipeline", "best"),
        ratio("plain script / Spark's best", "plain", "best", bold=False),
        ratio("ours / plain script", "pipeline", "plain", bold=False),
        ratio("notebook / ours (target >= 1.0)", "notebook", "pipeline"),
        ratio(
            "notebook as it runs today (Spark's defaults) / ours",
            "notebook_today",
            "pipeline",
            bold=False,
        ),
        ratio("ours / DuckDB", "pipeline", "duckdb", bold=False),
    ]
    block += [
        "",
        "Ratios of the medians, the same Spark settings on both sides unless said:",
        "",
        *(line for line in ratios if line),
    ]
    if {"pipeline_small", "notebook_small"} <= runs.keys():
        small = wall["pipeline_small"]
        block.append(
            f"- {args.small_rows:,}-row month through the CLI "
            f"(target <= {SMALL_MONTH_TARGET:g} s): **{small:.1f} s**, "
            f"{'met' if small <= SMALL_MONTH_TARGET else 'not met'} "
            f"(notebook's approach {wall['notebook_small']:.1f} s)"
        )
    block += [
        "",
        "Outputs, compared run by run on the generated months (a difference fails the benchmark):",
        "",
        *checks.summary(args.small_rows),
        "",
        f"CPU seconds: user + system of each run's whole process tree ({', '.join(cpu_sources)})"
        + (f"; {left} processes outlived their run and are not counted" if left else "")
        + ".",
        "",
        "Shared Spark settings (benchmarks/spark_settings.py; every Spark run's were read back "
        "from its JVM's command line): " + spark_settings.describe(expected[spark_settings.SHARED]),
        "",
        *(
            [
                "The small month's runs share the pipeline's settings for a small input, which "
                "differ from those above in: "
                + spark_settings.describe_difference(
                    expected[spark_settings.SHARED], expected[spark_settings.SHARED_SMALL]
                ),
                "",
            ]
            if any(VARIANTS[name].small for name in runs)
            else []
        ),
        *(
            [
                "Spark's best, its choices and the SQL settings it set at run time, as its last "
                f"run printed them: `{best_line or '(no such line in its log)'}`",
                "",
            ]
            if "best" in runs
            else []
        ),
        "Spark's defaults, as the notebook's approach runs today: "
        + spark_settings.describe(expected[spark_settings.SPARK_DEFAULTS]),
        "",
        "Pipeline steps, seconds from each step's start event to its success event, as the "
        "instance stored them, median (min-max):",
        "",
    ]
    # A step without both events in a round (it cannot succeed without them) is said to be,
    # rather than shown as if measured every round: the round's log (`run_log`) tells why.
    block += [
        f"- {step}: {median_spread(values)}"
        + (
            f" (found in the log of {len(values)} of {args.rounds} rounds)"
            if len(values) < args.rounds
            else ""
        )
        for step, values in steps.items()
    ]
    if small_timeline:
        block += [
            "",
            f"Where the {args.small_rows:,}-row month's seconds go through the CLI "
            "(`benchmarks/timeline.py`): each point's seconds since the process was spawned, "
            "median (min-max) over the rounds, and the median gap from the point before:",
            "",
            *timeline.breakdown(small_timeline),
        ]
    return block


RESULTS_HEADER = """# Benchmark results

Appended by `make bench` and `make bench-scale` (benchmarks/bench.py). Times are wall seconds of
whole processes (process and JVM start included), the median of the rounds with their spread;
memory is the peak RSS of the Python driver and of the JVM over the rounds.
"""


if __name__ == "__main__":
    raise SystemExit(main())
