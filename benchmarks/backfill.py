"""`make bench-backfill` / `make bench-year`: several months as one single-run backfill against
one run per month, through the dagster CLI, with the memory and disk each way needs.

    python benchmarks/backfill.py [--months 3] [--rows 42448764] [--rounds 1] [--shape sample]
                                  [--work DIR] [--no-append]

``--months`` consecutive months from 2019-10, ``--rows`` rows each, generated once
(`sample_data.generate_month`, seed 11, ``--shape``) and kept under the work directory with a
marker naming rows, months, shape and seed. Each round measures both ways, each a whole process
through the CLI as a user types it, on a fresh warehouse and a fresh Dagster instance (created and
migrated before the run, with the project's settings):

- one run: ``dagster asset materialize --select '*' --partition-range FIRST...LAST``, one Spark
  session and one Delta commit per table for every month;
- N runs: ``--partition MONTH`` for each month in turn, on the same instance and warehouse; their
  wall and CPU seconds are summed.

The order of the two ways alternates from round to round (one run first in odd rounds), so that
neither always meets a cold or warm page cache.

What is measured, per run (`measure.py` for the first three):

- wall seconds, and CPU seconds (user + system of the whole process tree, the kernel's account);
- peak RSS of the Python processes and of the JVMs, sampled every 0.2 s;
- the Spark driver JVM's heap, every 0.5 s: used (eden + survivors + old generation), committed,
  the old generation's occupancy, the maximum heap, and the collections' counts and seconds. They
  are the counters `jstat -gc` prints, read from the JVM's performance-data file
  (``/tmp/hsperfdata_<user>/<pid>``, which HotSpot keeps up to date by itself) rather than by
  starting `jstat` or `jcmd`: no attach to the JVM, no second JVM on the machine while it is
  timed, and no child process of the benchmark for the CPU account to count;
- disk, every 0.5 s, as blocks allocated: Spark's local directory (shuffle files and spills; the
  run's ``SPARK_LOCAL_DIRS`` names a directory of the work directory, which Spark prefers to
  ``spark.local.dir`` and ``/tmp``: no session setting changes), the IO manager's staging
  directories (``<table>/_staging/``, where Spark writes a table's Parquet files before they are
  moved into the table and committed), and the whole warehouse; the warehouse's size at the end.

Each driver JVM's session settings are read back from its command line and must be the pipeline's
own (`spark_settings`), the same both ways. After each way, every table is compared with the first
way measured: each gold table row for row, exactly (both sorted on every column), and the rows of
every other table (bronze, its rejected lines, silver) per month, counted from the Parquet footers
of the month's files as the Delta log lists them. A difference, a failed run or another setting
fails the benchmark and nothing is recorded.

The entry (printed, and appended to RESULTS.md unless --no-append) gives both ways' figures with
the targets next to them (backfill / separate <= 1.05 in wall and CPU seconds, JVM heap used
<= 4 GB, Python RSS <= 1 GB), the scratch disk, the warehouse, what was compared, and the steps'
seconds of each way, from each step's start and success events (the CLI runs with the marks of
timeline.py, as bench.py's pipeline does).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import inspect
import json
import os
import shutil
import statistics
import struct
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from medallion_assets.io.delta_io_manager import STAGING_DIR
from medallion_assets.partitions import monthly_partitions
from medallion_assets.tools.sample_data import file_name_for, generate_month

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import spark_settings  # noqa: E402
from bench import (  # noqa: E402
    _SPARK_LAUNCHER,
    _SPARK_SUBMIT,
    CPU_SOURCES,
    BenchmarkFailed,
    code_state,
    dagster_home,
    describe_code,
    load_average,
    machine,
    materialize_args,
    median_spread,
    pipeline_env,
    prepare_instance,
    record,
)
from measure import Measurement, run_measured  # noqa: E402
from timeline import read_points, steps, traced_command  # noqa: E402

BIN = Path(sys.executable).parent
FIRST_MONTH = "2019-10"
FULL_MONTH_ROWS = 42_448_764
SEED = 11
SAMPLE_SHAPE = "sample"
WAYS = ("single", "separate")
MiB = 2**20
# The targets, in bytes where they are sizes (GB as 10^9 bytes).
RATIO_TARGET = 1.05
HEAP_TARGET_BYTES = 4 * 10**9
PYTHON_RSS_TARGET_BYTES = 1 * 10**9
SAMPLE_SECONDS = 0.5
# HotSpot writes its performance data under /tmp on Linux whatever TMPDIR or java.io.tmpdir say.
HSPERFDATA = Path("/tmp") / f"hsperfdata_{getpass.getuser()}"


# -- the months ------------------------------------------------------------------------------------


def consecutive_months(count: int) -> list[str]:
    keys = [k for k in monthly_partitions.get_partition_keys() if k >= FIRST_MONTH][:count]
    if len(keys) < count or count < 1:
        raise SystemExit(f"--months {count}: only {len(keys)} months from {FIRST_MONTH} exist")
    return keys


def ensure_months(directory: Path, months: list[str], rows: int, shape: str) -> list[Path]:
    """The months' CSV files in ``directory``, generated if the marker (rows, months, shape,
    seed) does not list them. A month already generated with the same rows, shape and seed is
    kept; a month not asked for is removed, so that the directory holds exactly ``months``."""
    marker = directory / "rows.json"
    want = {"rows": rows, "shape": shape, "seed": SEED}
    have: list[str] = []
    if marker.exists():
        recorded = json.loads(marker.read_text())
        if {k: recorded.get(k) for k in want} == want:
            have = [m for m in recorded.get("months", []) if m in months]
    if not have:
        shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)

    def record(present: list[str]) -> None:
        marker.write_text(json.dumps({**want, "months": sorted(present)}))

    record(have)
    kept = {generated_file(directory, m) for m in have} | {marker}
    for path in directory.iterdir():
        if path not in kept:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    options = {}
    if shape != SAMPLE_SHAPE:
        if "shape" not in inspect.signature(generate_month).parameters:
            raise SystemExit(
                f"--shape {shape}: medallion_assets.tools.sample_data.generate_month has no "
                "shape parameter in this checkout"
            )
        options["shape"] = shape
    for month in months:
        if month in have:
            continue
        print(f"generating {month}: {rows:,} rows, shape {shape}", flush=True)
        generate_month(month, rows, directory, seed=SEED, **options)
        have.append(month)
        record(have)
    return [generated_file(directory, m) for m in months]


def generated_file(directory: Path, month: str) -> Path:
    return directory / file_name_for(month)


# -- sampling the JVM's heap and the disk ----------------------------------------------------------


def hsperf_counters(pid: int) -> dict[str, int]:
    """The numeric counters of a HotSpot JVM's performance-data file (``jstat``'s source): the
    prologue gives the byte order and where the entries start; each entry its name and value."""
    data = (HSPERFDATA / str(pid)).read_bytes()
    if data[:4] != b"\xca\xfe\xc0\xc0":
        raise ValueError(f"{HSPERFDATA / str(pid)} is not a HotSpot performance-data file")
    order = "<" if data[4] == 1 else ">"
    entry_offset, entries = struct.unpack_from(order + "ii", data, 24)
    counters: dict[str, int] = {}
    offset = entry_offset
    for _ in range(entries):
        length, name_offset, vector_length, data_type, _, _, _, data_offset = struct.unpack_from(
            order + "iiibbbbi", data, offset
        )
        if length <= 0:
            break
        if data_type == ord("J") and vector_length == 0:
            start = offset + name_offset
            name = data[start : data.index(b"\0", start)].decode()
            counters[name] = struct.unpack_from(order + "q", data, offset + data_offset)[0]
        offset += length
    return counters


@dataclass
class Heap:
    """A driver JVM's heap as last sampled, and its peaks."""

    used_peak: int = 0
    committed_peak: int = 0
    old_used_peak: int = 0
    max_bytes: int = 0
    young_collections: int = 0
    full_collections: int = 0
    gc_seconds: float = 0.0
    samples: int = 0

    def sample(self, counters: dict[str, int]) -> None:
        spaces = [
            key.removesuffix(".used")
            for key in counters
            if key.startswith("sun.gc.generation.") and ".space." in key and key.endswith(".used")
        ]
        # Every value first, so that a file read while the JVM was still creating its counters
        # (a KeyError) changes nothing.
        used = sum(counters[f"{space}.used"] for space in spaces)
        committed = sum(counters[f"{space}.capacity"] for space in spaces)
        generations = {key.split(".")[3] for key in spaces}
        max_bytes = sum(counters[f"sun.gc.generation.{g}.maxCapacity"] for g in generations)
        if not spaces:
            raise KeyError("sun.gc.generation")
        frequency = counters.get("sun.os.hrt.frequency") or 1
        self.used_peak = max(self.used_peak, used)
        self.committed_peak = max(self.committed_peak, committed)
        self.old_used_peak = max(
            self.old_used_peak, counters.get("sun.gc.generation.1.space.0.used", 0)
        )
        self.max_bytes = max_bytes
        self.young_collections = counters.get("sun.gc.collector.0.invocations", 0)
        self.full_collections = counters.get("sun.gc.collector.1.invocations", 0)
        self.gc_seconds = (
            counters.get("sun.gc.collector.0.time", 0) + counters.get("sun.gc.collector.1.time", 0)
        ) / frequency
        self.samples += 1


def allocated_bytes(root: Path) -> tuple[int, int]:
    """Bytes allocated on disk under ``root``, and those of them under a staging directory."""
    total = staged = 0
    pending = [(str(root), False)]
    while pending:
        path, in_staging = pending.pop()
        try:
            entries = os.scandir(path)
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append((entry.path, in_staging or entry.name == STAGING_DIR))
                        continue
                    size = entry.stat(follow_symlinks=False).st_blocks * 512
                except OSError:
                    continue  # removed while walked
                total += size
                if in_staging:
                    staged += size
    return total, staged


@dataclass
class Sampled:
    """What the sampler saw during one run."""

    heaps: dict[int, Heap] = field(default_factory=dict)
    local_peak: int = 0
    staging_peak: int = 0
    transient_peak: int = 0  # Spark's local dir + staging, at the same moment
    footprint_peak: int = 0  # warehouse (staging included) + Spark's local dir
    local_used: bool = False  # a blockmgr-* directory appeared under the local dir


class Sampler:
    """Samples, every `SAMPLE_SECONDS` while a run is measured, the heap of each Spark driver JVM
    among this process's descendants and the disk under the run's local dir and warehouse."""

    def __init__(self, local_dir: Path, warehouse: Path) -> None:
        self.local_dir = local_dir
        self.warehouse = warehouse
        self.result = Sampled()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="backfill-sampler", daemon=True)
        # Whether a process is a Spark driver, by pid and name: spark-submit's shell script execs
        # the driver JVM in its own process, which is seen first as a shell.
        self._drivers: dict[tuple[int, str], bool] = {}

    def __enter__(self) -> Sampled:
        self._thread.start()
        return self.result

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._done.is_set():
            self._sample()
            self._done.wait(SAMPLE_SECONDS)

    def _is_driver(self, process: psutil.Process) -> bool:
        key = (process.pid, process.name())
        if key not in self._drivers:
            command = process.cmdline() if "java" in key[1] else []
            self._drivers[key] = _SPARK_SUBMIT in command and _SPARK_LAUNCHER not in command
        return self._drivers[key]

    def _sample(self) -> None:
        result = self.result
        for process in psutil.Process().children(recursive=True):
            try:
                if not self._is_driver(process):
                    continue
            except psutil.Error:
                continue
            heap = result.heaps.get(process.pid, Heap())
            try:
                heap.sample(hsperf_counters(process.pid))
            except (OSError, ValueError, KeyError, IndexError, struct.error):
                continue  # not written yet, or gone with its JVM
            result.heaps[process.pid] = heap
        local, _ = allocated_bytes(self.local_dir)
        warehouse, staged = allocated_bytes(self.warehouse)
        result.local_used = result.local_used or any(self.local_dir.glob("blockmgr-*"))
        result.local_peak = max(result.local_peak, local)
        result.staging_peak = max(result.staging_peak, staged)
        result.transient_peak = max(result.transient_peak, local + staged)
        result.footprint_peak = max(result.footprint_peak, warehouse + local)


# -- the outputs -----------------------------------------------------------------------------------


@dataclass
class Outputs:
    """Every table of a warehouse: gold's rows, sorted; the others' rows per month."""

    gold: dict[str, object]  # table name -> pyarrow.Table
    counts: dict[str, dict[str, int]]  # table name -> partition -> rows


def read_outputs(warehouse: Path) -> Outputs:
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    gold, counts = {}, {}
    for log in sorted(warehouse.rglob("_delta_log")):
        name = log.parent.relative_to(warehouse).as_posix()
        table = DeltaTable(str(log.parent))
        if name.startswith("gold/"):
            rows = table.to_pyarrow_table()
            gold[name] = rows.sort_by([(c, "ascending") for c in rows.column_names])
            continue
        partitions = table.partitions() if table.metadata().partition_columns else [{}]
        per_month = {}
        for partition in partitions:
            filters = [(k, "=", v) for k, v in sorted(partition.items())]
            files = table.file_uris(file_pruning_predicate=filters or None)
            key = ",".join(v for _, _, v in filters) or "(unpartitioned)"
            per_month[key] = sum(pq.read_metadata(f).num_rows for f in files)
        counts[name] = dict(sorted(per_month.items()))
    return Outputs(gold, counts)


def compare(first: str, expected: Outputs, run: str, outputs: Outputs) -> None:
    """Fails the benchmark, saying what differs, unless ``outputs`` are ``expected``."""
    problems = []
    for kind, ours, theirs in (
        ("gold tables", expected.gold, outputs.gold),
        ("tables", expected.counts, outputs.counts),
    ):
        if set(ours) != set(theirs):
            problems.append(f"{kind}: {first} has {sorted(ours)}, {run} has {sorted(theirs)}")
    for name in sorted(set(expected.gold) & set(outputs.gold)):
        a, b = expected.gold[name], outputs.gold[name]
        if not a.schema.equals(b.schema):
            problems.append(f"{name}: schema {a.schema} vs {b.schema}")
        elif not a.equals(b):
            rows_a = Counter(tuple(r.values()) for r in a.to_pylist())
            rows_b = Counter(tuple(r.values()) for r in b.to_pylist())
            only_a = list((rows_a - rows_b).elements())[:3]
            only_b = list((rows_b - rows_a).elements())[:3]
            problems.append(
                f"{name}: {a.num_rows:,} rows vs {b.num_rows:,}; only in {first}: {only_a}; "
                f"only in {run}: {only_b}"
            )
    for name in sorted(set(expected.counts) & set(outputs.counts)):
        if expected.counts[name] != outputs.counts[name]:
            problems.append(
                f"{name} rows per month: {expected.counts[name]} vs {outputs.counts[name]}"
            )
    if problems:
        raise BenchmarkFailed(
            f"the outputs of {run} differ from those of {first}: " + " | ".join(problems)
        )


# -- measuring -------------------------------------------------------------------------------------


@dataclass
class Way:
    """One way of building the months in one round: its runs and what was sampled during each."""

    runs: list[Measurement]
    sampled: list[Sampled]
    steps: dict[str, float]
    warehouse_bytes: int
    layers: dict[str, int]

    @property
    def seconds(self) -> float:
        return sum(m.seconds for m in self.runs)

    @property
    def cpu_seconds(self) -> float:
        return sum(m.cpu_seconds for m in self.runs)

    def heaps(self) -> list[Heap]:
        return [h for s in self.sampled for h in s.heaps.values()]


def way_name(way: str, months: list[str]) -> str:
    return "one run" if way == "single" else f"{len(months)} runs"


def way_label(way: str, months: list[str]) -> str:
    if way == "single":
        return f"one run (--partition-range {months[0]}...{months[-1]})"
    return f"{len(months)} runs (--partition, one month each; summed)"


def run_log(work: Path, way: str, round_number: int, month: str | None = None) -> Path:
    suffix = f"_{month}" if month else ""
    return work / f"backfill_{way}{suffix}.round{round_number}.log"


def check_settings(run: str, measurement: Measurement, expected: dict[str, str]) -> None:
    drivers = [
        command
        for command in measurement.jvm_commands.values()
        if _SPARK_SUBMIT in command and _SPARK_LAUNCHER not in command
    ]
    if not drivers:
        raise BenchmarkFailed(f"{run}: no Spark driver JVM was seen, its settings are unknown")
    for command in drivers:
        problems = spark_settings.differences(expected, spark_settings.launched_conf(command))
        if problems:
            raise BenchmarkFailed(
                f"{run} was not started with the pipeline's settings: " + "; ".join(problems)
            )


def measure_way(
    way: str,
    months: list[str],
    landing: Path,
    work: Path,
    round_number: int,
    expected: dict[str, str],
) -> tuple[Way, Outputs]:
    """Both ways start from a fresh warehouse and a fresh instance; the N runs share theirs."""
    warehouse = work / f"backfill_warehouse_{way}"
    local_dir = work / f"backfill_spark_local_{way}"
    for directory in (warehouse, local_dir):
        shutil.rmtree(directory, ignore_errors=True)
    local_dir.mkdir(parents=True)
    name = f"backfill_{way}"
    prepare_instance(name, work)
    env = dict(pipeline_env(landing, warehouse, dagster_home(name, work)))
    env["SPARK_LOCAL_DIRS"] = str(local_dir)
    if way == "single":
        plan = [(None, ["--partition-range", f"{months[0]}...{months[-1]}"])]
    else:
        plan = [(month, ["--partition", month]) for month in months]
    runs, sampled, step_totals = [], [], {}
    for month, partition_args in plan:
        log = run_log(work, way, round_number, month)
        run = f"{name}{'_' + month if month else ''} (round {round_number})"
        command = traced_command(BIN / "python", materialize_args(*partition_args))
        spawned = time.time()
        with Sampler(local_dir, warehouse) as seen:
            measurement = run_measured(name, command, env=env, log_path=str(log))
        if measurement.returncode:
            raise BenchmarkFailed(f"{run} failed (exit {measurement.returncode}); see {log}")
        check_settings(run, measurement, expected)
        runs.append(measurement)
        sampled.append(seen)
        for step, seconds in steps(read_points(log.read_text(errors="replace"), spawned)).items():
            step_totals[step] = step_totals.get(step, 0.0) + seconds
        heap = max((h.used_peak for h in seen.heaps.values()), default=0)
        print(
            f"  {run:40s} wall {measurement.seconds:7.1f} s   CPU {measurement.cpu_seconds:7.1f} s"
            f"   heap peak {heap / MiB:6.0f} MiB   JVM RSS {measurement.peak_jvm_mb:6.0f} MiB"
            f"   python RSS {measurement.peak_python_mb:5.0f} MiB"
            f"   local dir peak {seen.local_peak / MiB:7.0f} MiB",
            flush=True,
        )
    total, _ = allocated_bytes(warehouse)
    layers = {p.name: allocated_bytes(p)[0] for p in sorted(warehouse.iterdir()) if p.is_dir()}
    outputs = read_outputs(warehouse)
    for directory in (warehouse, local_dir, dagster_home(name, work)):
        shutil.rmtree(directory, ignore_errors=True)
    return Way(runs, sampled, step_totals, total, layers), outputs


# -- the entry -------------------------------------------------------------------------------------


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def mib(value: float) -> str:
    return f"{value / MiB:,.1f}" if value < 10 * MiB else f"{value / MiB:,.0f}"


def entry(
    args: argparse.Namespace,
    months: list[str],
    csv_bytes: int,
    orders: list[list[str]],
    rounds: dict[str, list[Way]],
    reference: Outputs,
    expected: dict[str, str],
    code: str,
    load_before: str,
    load_after: str,
) -> list[str]:
    """The RESULTS.md entry: everything in it is worked out from this benchmark run."""
    n = len(months)
    wall = {w: statistics.median(r.seconds for r in rounds[w]) for w in WAYS}
    cpu = {w: statistics.median(r.cpu_seconds for r in rounds[w]) for w in WAYS}
    heaps = {w: [h for r in rounds[w] for h in r.heaps()] for w in WAYS}
    heap_peak = {w: max((h.used_peak for h in heaps[w]), default=0) for w in WAYS}
    heap_max = {w: max((h.max_bytes for h in heaps[w]), default=0) for w in WAYS}
    python_peak = {w: max(m.peak_python_mb for r in rounds[w] for m in r.runs) for w in WAYS}
    sampled = {w: [s for r in rounds[w] for s in r.sampled] for w in WAYS}
    # Runs in which no sample of the driver's heap could be read (its file missing, say).
    unread = {w: sum(not s.heaps for s in sampled[w]) for w in WAYS}
    wall_ratio = wall["single"] / wall["separate"]
    cpu_ratio = cpu["single"] / cpu["separate"]

    def per_round(ws: list[Way], attribute: str) -> float:
        """The median over the rounds of a heap figure summed over the way's runs."""
        return statistics.median(sum(getattr(h, attribute) for h in r.heaps()) for r in ws)

    def peak(way: str, attribute: str) -> int:
        return max(getattr(s, attribute) for s in sampled[way])

    block = [
        f"\n### Backfill: {n} months of {args.rows:,} rows ({args.shape} shape), one run against "
        f"{n} runs, {args.rounds} round{'s' if args.rounds != 1 else ''}, "
        f"{dt.date.today().isoformat()}\n",
        f"{code}\n",
        f"Machine: {machine()}\n",
        f"Load average (1 / 5 / 15 min): {load_before} before the first run, "
        f"{load_after} after the last\n",
        f"Months: {', '.join(months)}; generated (seed {SEED}, shape {args.shape}), "
        f"{csv_bytes / MiB:,.0f} MiB of CSV, {n * args.rows:,} rows in all. Order of the ways "
        "(alternated each round): "
        + "; ".join(f"{i}: {', '.join(order)}" for i, order in enumerate(orders, start=1))
        + "\n",
        "| way | wall seconds, median (min-max) | CPU seconds, median (min-max) | "
        "JVM heap used, peak MiB (committed, peak; max) | old generation, peak MiB | "
        "collections young / full, GC seconds (median) | peak JVM RSS MiB | peak Python RSS MiB | "
        "Spark local dir, peak MiB | staging, peak MiB | warehouse at the end MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for way in WAYS:
        ws = rounds[way]
        hs = heaps[way]
        block.append(
            f"| {way_label(way, months)} | {median_spread([r.seconds for r in ws])} | "
            f"{median_spread([r.cpu_seconds for r in ws])} | "
            f"{mib(heap_peak[way])} "
            f"({mib(max((h.committed_peak for h in hs), default=0))}; {mib(heap_max[way])}) | "
            f"{mib(max((h.old_used_peak for h in hs), default=0))} | "
            f"{per_round(ws, 'young_collections'):.0f} / "
            f"{per_round(ws, 'full_collections'):.0f}, "
            f"{per_round(ws, 'gc_seconds'):.1f} | "
            f"{max(m.peak_jvm_mb for r in ws for m in r.runs):,.0f} | {python_peak[way]:,.0f} | "
            f"{mib(peak(way, 'local_peak'))} | {mib(peak(way, 'staging_peak'))} | "
            f"{mib(max(r.warehouse_bytes for r in ws))} |"
        )
    def heap_figure(way: str) -> str:
        runs = sum(len(r.runs) for r in rounds[way])
        if unread[way] == runs:
            return f"{way_name(way, months)} **not measured**"
        missing = f" (not read in {unread[way]} of {runs} runs)" if unread[way] else ""
        return (
            f"{way_name(way, months)} **{mib(heap_peak[way])} MiB**, "
            f"{met(heap_peak[way] <= HEAP_TARGET_BYTES and not unread[way])}{missing}"
        )

    block += [
        "",
        "Targets:",
        "",
        f"- one run / {n} runs, wall seconds (target <= {RATIO_TARGET}): "
        f"**{wall_ratio:.2f}**, {met(wall_ratio <= RATIO_TARGET)}; CPU seconds: "
        f"**{cpu_ratio:.2f}**, {met(cpu_ratio <= RATIO_TARGET)}",
        f"- JVM heap used, peak (target <= 4 GB, {mib(HEAP_TARGET_BYTES)} MiB): "
        + "; ".join(heap_figure(w) for w in WAYS)
        + f"; the driver's maximum heap: {mib(max(heap_max.values()))} MiB",
        f"- Python RSS, peak (target <= 1 GB, {mib(PYTHON_RSS_TARGET_BYTES)} MiB): "
        + "; ".join(
            f"{way_name(w, months)} **{python_peak[w]:,.0f} MiB**, "
            f"{met(python_peak[w] * MiB <= PYTHON_RSS_TARGET_BYTES)}"
            for w in WAYS
        ),
        "- gold identical both ways: **met** (compared below; a difference fails the benchmark)",
        "",
        "Disk, as blocks allocated, sampled every 0.5 s (the input CSVs not included):",
        "",
    ]
    for way in WAYS:
        ws = rounds[way]
        local_note = "" if any(s.local_used for s in sampled[way]) else (
            " (no blockmgr-* directory of Spark's appeared there)"
        )
        layers = ", ".join(f"{k} {mib(v)}" for k, v in ws[-1].layers.items())
        block.append(
            f"- {way_label(way, months)}: Spark's local dir (shuffle files, spills) peak "
            f"{mib(peak(way, 'local_peak'))} MiB{local_note}; staged Parquet peak "
            f"{mib(peak(way, 'staging_peak'))} MiB; the two at once, peak "
            f"**{mib(peak(way, 'transient_peak'))} MiB** of scratch; warehouse and local dir "
            f"together, peak {mib(peak(way, 'footprint_peak'))} MiB; warehouse at the end "
            f"{mib(max(r.warehouse_bytes for r in ws))} MiB ({layers} MiB)"
        )
    block += [
        "",
        "Per month (median over the rounds, divided by the months): "
        f"one run {wall['single'] / n:.1f} s wall, {cpu['single'] / n:.1f} s CPU; "
        f"{n} runs {wall['separate'] / n:.1f} s wall, {cpu['separate'] / n:.1f} s CPU; "
        f"warehouse {mib(max(r.warehouse_bytes for r in rounds['single']) / n)} MiB; "
        f"CSV {mib(csv_bytes / n)} MiB.",
        "",
        "Outputs, every way of every round against the first way measured (a difference fails "
        "the benchmark):",
        "",
    ]
    for name, table in reference.gold.items():
        block.append(
            f"- {name}: {table.num_rows:,} rows, identical row for row and column for column"
        )
    for name, counts in reference.counts.items():
        shown = ", ".join(f"{month} {rows:,}" for month, rows in counts.items())
        block.append(f"- {name}, rows per month (from the Parquet footers): {shown}; equal")
    measurements = [m for w in WAYS for r in rounds[w] for m in r.runs]
    cpu_sources = sorted({CPU_SOURCES[m.cpu_source] for m in measurements})
    left = sum(m.left_running for m in measurements)
    block += [
        "",
        f"CPU seconds: user + system of each run's whole process tree ({', '.join(cpu_sources)})"
        + (f"; {left} processes outlived their run and are not counted" if left else "")
        + ". JVM heap: the Spark driver's eden, survivor and old-generation spaces in use, as "
        "`jstat -gc` counts them, sampled every 0.5 s from its performance-data file; the peak "
        "includes garbage not yet collected, the old generation's peak is closer to what stays "
        "live.",
        "",
        "Spark settings of every run, both ways (read back from each driver JVM's command line; "
        "SPARK_LOCAL_DIRS in the environment moves the scratch only): "
        + spark_settings.describe(expected),
        "",
        f"Steps, seconds, median (min-max) over the rounds: one run | {n} runs summed:",
        "",
    ]
    step_names = list(dict.fromkeys(s for w in WAYS for r in rounds[w] for s in r.steps))
    for step in step_names:
        single = [r.steps[step] for r in rounds["single"] if step in r.steps]
        separate = [r.steps[step] for r in rounds["separate"] if step in r.steps]
        figures = [median_spread(v) if v else "(not in the logs)" for v in (single, separate)]
        ratio = (
            f" ({statistics.median(single) / statistics.median(separate):.2f})"
            if single and separate and statistics.median(separate)
            else ""
        )
        block.append(f"- {step}: {figures[0]} | {figures[1]}{ratio}")
    return block


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=3, help="consecutive months from 2019-10")
    parser.add_argument("--rows", type=int, default=FULL_MONTH_ROWS, help="rows per month")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--shape", default=SAMPLE_SHAPE, help="sample_data's shape of the months")
    parser.add_argument(
        "--no-append", action="store_true", help="print the entry without appending it"
    )
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        return run(args)
    except BenchmarkFailed as failure:
        print(f"BENCHMARK FAILED: {failure}", flush=True)
        return 1


def run(args: argparse.Namespace) -> int:
    commit, changed = code_state()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    months = consecutive_months(args.months)
    landing = work / f"landing_backfill_{args.rows}"
    files = ensure_months(landing, months, args.rows, args.shape)
    csv_bytes = sum(f.stat().st_size for f in files)
    expected = spark_settings.conf(spark_settings.SHARED, pipeline_env(landing, work, work))
    orders = [list(WAYS if r % 2 else reversed(WAYS)) for r in range(1, args.rounds + 1)]
    print(
        f"{len(months)} months ({months[0]} to {months[-1]}), {args.rows:,} rows each, "
        f"{csv_bytes / MiB:,.0f} MiB of CSV; {args.rounds} rounds",
        flush=True,
    )

    rounds: dict[str, list[Way]] = {w: [] for w in WAYS}
    reference: tuple[str, Outputs] | None = None
    load_before = load_average()
    for round_number, order in enumerate(orders, start=1):
        print(f"round {round_number}: {', '.join(order)}", flush=True)
        for way in order:
            measured, outputs = measure_way(way, months, landing, work, round_number, expected)
            label = f"{way} (round {round_number})"
            if reference is None:
                reference = (label, outputs)
            else:
                compare(reference[0], reference[1], label, outputs)
            rounds[way].append(measured)
    load_after = load_average()
    commit_after, _ = code_state()

    text = "\n".join(
        entry(
            args,
            months,
            csv_bytes,
            orders,
            rounds,
            reference[1],
            expected,
            describe_code(commit, changed, commit_after),
            load_before,
            load_after,
        )
    )
    record(text, args.results, append=not args.no_append)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
