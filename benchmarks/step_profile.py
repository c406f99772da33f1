"""Where a layer's time goes: variants of one step's Spark work, each in a fresh JVM.

    python benchmarks/step_profile.py CSV [--rounds 2] [--variants bronze,bronze_no_rule,...]

Each variant runs the same transform the pipeline runs (or the floor's equivalent) with one
ingredient taken away, in a JVM of its own, so that every figure includes the cold-JVM cost the
pipeline pays (a step runs once per process). Two figures per variant: wall seconds of the step's
Spark work only (no process or JVM start, no Dagster, no Delta commit), and the CPU seconds its
tasks used, summed from Spark's own task metrics (its event log). On a shared machine the CPU
figure moves far less than the wall figure: another tenant's load stretches the wall time of a
task, not the CPU it needs. Printed per round and as the median. Silver and gold variants read
the bronze (silver) Parquet the previous variants wrote, so run ``bronze`` (and ``silver``)
first; the default list does.

It prints its figures; it does not record them (see README.md here).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_VARIANTS = [
    "floor_bronze",
    "bronze",
    "bronze_observed",
    "bronze_no_rule",
    "bronze_corrupt_record_column",
    "bronze_spark_splits",
    "bronze_partitioned",
    "floor_silver",
    "silver",
    "silver_output_count",
    "silver_both_counts",
    "gold",
]
MONTH = dt.date(2019, 10, 1)


def run_variant(name: str, csv: str, out: Path) -> tuple[float, float]:
    """The variant's Spark work in this process's (fresh) session; returns its wall seconds and
    its tasks' CPU seconds."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from medallion_assets.assets.bronze import read_source
    from medallion_assets.io.balanced_splits import balanced_splits
    from medallion_assets.io.delta_io_manager import _one_month
    from medallion_assets.observations import Observed
    from medallion_assets.resources.spark import SparkSessionResource
    from medallion_assets.schema import (
        EVENT_FIELDS,
        EVENT_TYPES,
        SILVER_EVENTS_SCHEMA,
        SOURCE_LINE_OPTIONS,
        SOURCE_READ_SCHEMA,
        SOURCE_TIME_FORMAT,
    )
    from medallion_assets.settings import Settings
    from medallion_assets.transforms import (
        COPIES,
        VALID,
        accepted_events,
        conform,
        daily_funnel,
        grouped_events,
        revenue_by_brand,
        valid_events,
    )

    resource = SparkSessionResource.from_settings(Settings.from_env())
    builder = SparkSession.builder.master(resource.resolved_master()).appName(f"profile_{name}")
    for key, value in resource.effective_config().items():
        builder = builder.config(key, value)
    events = out / "event_logs"
    shutil.rmtree(events, ignore_errors=True)
    events.mkdir(parents=True)
    for key, value in {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": str(events),
        "spark.eventLog.compress": "false",
    }.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    ingested = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)

    def bronze(
        observe: bool = False,
        rule: bool = True,
        corrupt: bool = False,
        partitioned: bool = False,
        bookkeeping: bool = True,
        balanced: bool = True,
    ) -> None:
        # As the pipeline's bronze: no observation rides on the parse (``observe`` measures one).
        if corrupt:
            # How bronze once read: every line kept, one it cannot type with its raw text in the
            # corrupt-record column (the reader's PERMISSIVE mode), judged by the same rules.
            records = (
                spark.read.options(**SOURCE_LINE_OPTIONS)
                .option("header", True)
                .schema(SOURCE_READ_SCHEMA)
                .csv(csv)
            )
        else:
            records = read_source(spark, Path(csv))
        typed = valid_events(records, month=MONTH, source_file="x.csv", ingested_at=ingested)
        if not rule:
            typed = typed.withColumn(VALID, F.col("event_type").isin(*EVENT_TYPES))
        if observe:
            counts = Observed(
                "profile", accepted=F.count_if(F.col(VALID)), rejected=F.count_if(~F.col(VALID))
            )
            typed = counts.attach(typed)
        accepted = accepted_events(typed)
        if not bookkeeping:
            accepted = accepted.drop("_source_file", "_ingested_at")
        # As the IO manager writes one month: straight into its directory, the file cut into
        # equal tasks (``partitioned`` and ``balanced`` take each away).
        with balanced_splits(accepted) if balanced else contextlib.nullcontext():
            if partitioned:
                accepted.write.mode("overwrite").partitionBy("month").parquet(str(out / "bronze"))
            else:
                _one_month(accepted, "month", f"{MONTH}").write.mode("overwrite").parquet(
                    str(out / "bronze" / f"month={MONTH}")
                )

    def silver(output_count: bool, input_count: bool) -> None:
        frame = spark.read.parquet(str(out / "bronze"))
        if input_count:
            frame = Observed("in", rows=F.count(F.lit(1))).attach(frame)
        grouped = grouped_events(frame)
        if output_count:
            grouped = Observed(
                "out", rows=F.count(F.lit(1)), copies=F.sum(F.col(COPIES) - 1)
            ).attach(grouped)
        conform(grouped, SILVER_EVENTS_SCHEMA).write.mode("overwrite").partitionBy(
            "month"
        ).parquet(str(out / "silver"))

    def floor_bronze() -> None:
        spark.read.option("header", True).option("timestampFormat", SOURCE_TIME_FORMAT).schema(
            T.StructType(EVENT_FIELDS)
        ).csv(csv).write.mode("overwrite").parquet(str(out / "floor_bronze"))

    def floor_silver() -> None:
        spark.read.parquet(str(out / "floor_bronze")).dropDuplicates().write.mode(
            "overwrite"
        ).parquet(str(out / "floor_silver"))

    def gold() -> None:
        events = spark.read.parquet(str(out / "silver"))
        revenue_by_brand(events).write.mode("overwrite").parquet(str(out / "revenue"))
        daily_funnel(events).write.mode("overwrite").parquet(str(out / "funnel"))

    variants = {
        "floor_bronze": floor_bronze,
        "bronze": lambda: bronze(),
        "bronze_observed": lambda: bronze(observe=True),
        "bronze_no_rule": lambda: bronze(rule=False),
        "bronze_corrupt_record_column": lambda: bronze(corrupt=True),
        "bronze_spark_splits": lambda: bronze(balanced=False),
        "bronze_partitioned": lambda: bronze(partitioned=True),
        "bronze_no_bookkeeping": lambda: bronze(bookkeeping=False),
        "bronze_bare": lambda: bronze(rule=False, bookkeeping=False),
        "floor_silver": floor_silver,
        "silver": lambda: silver(output_count=False, input_count=False),
        "silver_output_count": lambda: silver(output_count=True, input_count=False),
        "silver_both_counts": lambda: silver(output_count=True, input_count=True),
        "gold": gold,
    }
    started = time.monotonic()
    variants[name]()
    seconds = time.monotonic() - started
    spark.stop()
    return seconds, task_cpu_seconds(events)


def task_cpu_seconds(event_logs: Path) -> float:
    """The CPU seconds of every task in the event logs under `event_logs`."""
    nanoseconds = 0
    for path in event_logs.rglob("*"):
        if not path.is_file():
            continue
        with path.open() as lines:
            for line in lines:
                if '"SparkListenerTaskEnd"' in line:
                    metrics = json.loads(line).get("Task Metrics") or {}
                    nanoseconds += metrics.get("Executor CPU Time", 0)
    return nanoseconds / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "work" / "profile")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        seconds, cpu = run_variant(args.one, args.csv, args.work)
        print(f"{seconds:.2f} {cpu:.2f}")
        return 0
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    times: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    for round_number in range(1, args.rounds + 1):
        for name in args.variants.split(","):
            done = subprocess.run(
                [sys.executable, __file__, args.csv, "--work", str(args.work), "--one", name],
                capture_output=True,
                text=True,
                check=True,
            )
            seconds, cpu = map(float, done.stdout.strip().splitlines()[-1].split())
            times.setdefault(name, []).append(seconds)
            cpus.setdefault(name, []).append(cpu)
            print(
                f"  round {round_number} {name:28s} {seconds:6.2f} s, task CPU {cpu:6.2f} s",
                flush=True,
            )
    print("\nvariant: wall seconds, task CPU seconds; median (min-max), each in a fresh JVM:")
    for name, values in times.items():
        print(f"- {name}: {_spread(values)} s, task CPU {_spread(cpus[name])} s")
    return 0


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


if __name__ == "__main__":
    raise SystemExit(main())
