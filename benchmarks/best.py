"""Spark's best: the fastest plain PySpark script we can write for the reference work.

The same work as floor.py, with the same outputs to the cent, so that the pipeline is compared
with what Spark can do at best rather than with what a plain script does by default: the CSV
read with the declared schema (floor.py's, imported), bronze written as Parquet; silver without
the rows that have no user and without exact duplicates; gold the exact DECIMAL revenue of each
brand over purchase events, as Parquet. No validation, no checks, no Delta, no orchestration.
Any reader option, cast, codec and session setting is allowed, each kept only for a measured
gain; the session is started with the shared settings (`spark_settings.SHARED`, as floor.py's,
and bench.py checks them on the JVM's command line) and the script changes only SQL settings at
run time, those listed below.

    python benchmarks/best.py CSV OUT_DIR [--settings shared|spark-defaults]
                              [--revert CHOICE ...] [--choice CHOICE=VALUE ...]

Writes OUT_DIR/bronze, OUT_DIR/silver and OUT_DIR/gold_revenue (brand, total_revenue), and
prints one line, ``best.py: ...``, with the value of every choice and the session settings it
set. ``--revert CHOICE`` runs the script with that choice as floor.py makes it, ``--choice
CHOICE=VALUE`` with another value (``CHOICES`` lists them): best_choices.py measures every such
variant against this script as it stands, and that is where every gain below comes from.

Measured gains: each choice's gain is printed by ``benchmarks/best_choices.py`` (this script
with the choice reverted, or a candidate applied, against this script, whole processes
alternated in shuffled rounds, outputs checked equal) and appended to RESULTS.md under
"Spark's best, each choice's gain"; the entry names the commit it measured. A choice stays only
while its revert is slower there, in wall and CPU seconds; a candidate becomes a choice when it
is faster there.

    Measured so far: the two choices kept, at 5,000,000 rows (RESULTS.md, "Spark's best, each
    choice's gain", 2026-12-05, commit 1f453b9): ``codec`` saves time in wall and CPU seconds;
    ``split`` saves wall seconds but not CPU seconds (a mixed verdict). The candidates below
    have not been measured at that size yet.

The choices kept (each one's value here, then floor.py's), on their mechanism and on small
trials in one session; their gain is best_choices.py's to show (above):

- ``split`` = ``balanced`` (floor: ``spark``): ``spark.sql.files.maxPartitionBytes`` set, for
  the CSV's scan and then for the scan of bronze's files, to the split size that gives every
  core the same number of equal tasks (never above Spark's 128 MiB). Spark's own cut of the
  5M-row month (672 MB) is five 128 MiB tasks and one of 1.4 MB, so on 2 cores the fifth task
  runs alone while the other core idles for a whole task's time; six equal tasks keep both
  cores busy. The pipeline does the same (`medallion_assets.io.balanced_splits`, whose docstring
  has its own measurement of bronze with step_profile.py). On a file under cores x 128 MiB the
  two cuts are the same, so small months show no gain.
- ``codec`` = ``uncompressed`` (floor: ``snappy``, Spark's default) for bronze and silver:
  Parquet's dictionary and run-length encodings already make the pages small, and on a machine
  whose cores are the bottleneck the compression of every page (and its decompression when
  silver reads bronze) costs CPU that the larger files, written to the page cache, do not give
  back. Gold, a few hundred rows, keeps the default.

Candidates measured by best_choices.py and not kept (``--choice CHOICE=VALUE``), each with why
it was expected to help and why it is not the default:

- ``codec=lz4_raw`` / ``codec=zstd``: cheaper (lz4) or smaller (zstd) compression than snappy;
  still compression, which the uncompressed files avoid.
- ``time=substring``: ``event_time`` read as a string and ``try_cast(substring(event_time, 1,
  19) AS TIMESTAMP)`` (Spark's own timestamp parser, read in the session's time zone, UTC)
  instead of the reader's ``timestampFormat`` (a java.time pattern). Not kept: earlier readings
  of bronze alone on the 5M-row month, not recorded by a script, found it no faster; the parse
  costs about the same by either route. (A cast of the whole string, zone included, would parse
  the zone on every row.)
- ``dictionary=off``: no dictionary encoding on write (no hash per value), at the price of
  several times larger files to write and read back.
- ``dedup=by_user``: the rows shuffled by ``user_id`` alone, then de-duplicated on all columns
  after the shuffle (a subset of the key, so there is one shuffle and no map-side partial
  aggregation over rows that are nearly all distinct); silver's files come out grouped by user,
  much smaller. ``groupBy`` of every column is not a candidate: Spark plans it exactly as
  ``dropDuplicates()`` (the same two hash aggregations around one shuffle).
- ``source=cache``: the parsed CSV cached while bronze is written, silver computed from the
  cache instead of re-reading bronze's Parquet; building the in-memory columns costs about what
  reading Parquet back saves (more, in small trials), and the cache holds the month in the
  driver's memory, which a full-size month outgrows. ``source=csv``: silver
  from the CSV-derived DataFrame uncached, which parses the CSV a second time.
- ``shuffle=4``: 4 shuffle partitions instead of the shared 8 (adaptive execution coalesces
  small ones either way).
- ``adaptive=off``: no adaptive re-planning between stages (its cost), no coalescing either.

Not choices: Parquet's vectorized reader is on by default (floor.py has it too); the object
hash aggregate (``spark.sql.execution.useObjectHashAggregateExec``) serves aggregates with object
buffers, and this work has none (a DECIMAL sum's buffer lives in the hash map's rows).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import spark_settings
from floor import SCHEMA, TIME_FORMAT
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

MAX_PARTITION_BYTES = "spark.sql.files.maxPartitionBytes"
# The declared schema with the time read as text (``time=substring``).
STRING_TIME_SCHEMA = SCHEMA.replace("event_time timestamp", "event_time string")


@dataclass(frozen=True)
class Choice:
    """One way the script can differ from floor.py: the value it uses (``best``), floor.py's
    (``plain``, what ``--revert`` sets) and the other values it knows (candidates)."""

    best: str
    plain: str
    values: tuple[str, ...]
    what: str


CHOICES: dict[str, Choice] = {
    "split": Choice(
        "balanced", "spark", ("balanced", "spark"), "file splits: equal tasks per core or Spark's"
    ),
    "codec": Choice(
        "uncompressed",
        "snappy",
        ("uncompressed", "snappy", "lz4_raw", "zstd"),
        "Parquet codec of bronze and silver",
    ),
    "dictionary": Choice("on", "on", ("on", "off"), "Parquet dictionary encoding on write"),
    "time": Choice(
        "reader", "reader", ("reader", "substring"), "event_time: reader's pattern or a cast"
    ),
    "dedup": Choice(
        "all_columns",
        "all_columns",
        ("all_columns", "by_user"),
        "de-duplication: shuffled by every column, or by user_id",
    ),
    "source": Choice(
        "bronze", "bronze", ("bronze", "cache", "csv"), "silver's input: bronze's Parquet or not"
    ),
    "shuffle": Choice("session", "session", ("session", "4"), "shuffle partitions"),
    "adaptive": Choice("session", "session", ("session", "off"), "adaptive query execution"),
}


def variants() -> list[tuple[str, str]]:
    """Every (choice, value) that differs from this script: the reverts of the choices kept,
    then the candidates; best_choices.py measures each against the script as it stands."""
    reverts = [(n, c.plain) for n, c in CHOICES.items() if c.plain != c.best]
    others = [(n, v) for n, c in CHOICES.items() for v in c.values if v not in (c.best, c.plain)]
    return reverts + others


def variant_key(name: str, value: str) -> str:
    """A variant's name in best_choices.py's output and logs: ``revert_codec``, ``shuffle_4``."""
    return f"revert_{name}" if value == CHOICES[name].plain else f"{name}_{value}"


def variant_args(name: str, value: str) -> list[str]:
    """The arguments of this script that run it with ``name`` set to ``value``."""
    if value == CHOICES[name].plain:
        return ["--revert", name]
    return ["--choice", f"{name}={value}"]


def resolve(reverts: list[str], settings: list[str]) -> dict[str, str]:
    """Every choice's value: the script's own, but for those reverted or set."""
    chosen = {name: choice.best for name, choice in CHOICES.items()}
    for name in reverts:
        if name not in CHOICES:
            raise SystemExit(f"unknown choice {name!r}: expected one of {', '.join(CHOICES)}")
        chosen[name] = CHOICES[name].plain
    for setting in settings:
        name, _, value = setting.partition("=")
        if name not in CHOICES or value not in CHOICES[name].values:
            known = "; ".join(f"{n}: {'|'.join(c.values)}" for n, c in CHOICES.items())
            raise SystemExit(f"unknown choice {setting!r}: expected one of {known}")
        chosen[name] = value
    return chosen


def balanced_split(spark: SparkSession, sizes: list[int], largest: int) -> int:
    """The split size that cuts files of ``sizes`` bytes into equal tasks, a whole number of
    waves over the cores, none above ``largest`` (Spark's maximum). Spark counts every file as
    ``spark.sql.files.openCostInBytes`` more than its size; so does this."""
    open_cost = int(spark._jsparkSession.sessionState().conf().filesOpenCostInBytes())
    cores = spark.sparkContext.defaultParallelism
    weighted = sum(size + open_cost for size in sizes)
    waves = math.ceil(weighted / (cores * largest))
    return min(largest, max(1, math.ceil(weighted / (cores * waves))))


def main(
    csv_path: str,
    out_dir: str,
    settings: str = spark_settings.SHARED,
    chosen: dict[str, str] | None = None,
) -> None:
    chosen = chosen or resolve([], [])
    out = Path(out_dir)
    spark = spark_settings.session("best", settings)
    # The SQL settings this script sets at run time, beyond those the session started with.
    session: list[str] = []

    def setting(key: str, value: str, scope: str = "") -> None:
        spark.conf.set(key, value)
        session.append(f"{key}={value}" + (f" ({scope})" if scope else ""))

    largest = int(spark._jsparkSession.sessionState().conf().filesMaxPartitionBytes())
    if chosen["shuffle"] != "session":
        setting("spark.sql.shuffle.partitions", chosen["shuffle"])
    if chosen["adaptive"] == "off":
        setting("spark.sql.adaptive.enabled", "false")
    if chosen["time"] == "substring" and spark.conf.get("spark.sql.session.timeZone") != "UTC":
        # The cast reads the time in the session's zone; the file's times are UTC.
        setting("spark.sql.session.timeZone", "UTC")

    reader = spark.read.option("header", True)
    if chosen["time"] == "reader":
        events = (
            reader.option("timestampFormat", TIME_FORMAT)
            .option("timeZone", "UTC")
            .schema(SCHEMA)
            .csv(csv_path)
        )
    else:
        events = (
            reader.schema(STRING_TIME_SCHEMA)
            .csv(csv_path)
            .withColumn("event_time", F.expr("try_cast(substring(event_time, 1, 19) AS TIMESTAMP)"))
        )
    if chosen["source"] == "cache":
        events = events.cache()

    def write(frame: DataFrame, name: str) -> None:
        writer = frame.write.mode("overwrite").option("compression", chosen["codec"])
        if chosen["dictionary"] == "off":
            writer = writer.option("parquet.enable.dictionary", "false")
        writer.parquet(str(out / name))

    if chosen["split"] == "balanced":
        size = Path(csv_path).stat().st_size
        setting(MAX_PARTITION_BYTES, str(balanced_split(spark, [size], largest)), "the CSV")
    write(events, "bronze")

    if chosen["source"] == "bronze":
        if chosen["split"] == "balanced":
            sizes = [p.stat().st_size for p in (out / "bronze").glob("part-*")]
            split = balanced_split(spark, sizes, largest)
            setting(MAX_PARTITION_BYTES, str(split), "bronze's files")
        kept = spark.read.parquet(str(out / "bronze"))
    else:
        kept = events
    kept = kept.dropna(subset=["user_id"])
    if chosen["dedup"] == "by_user":
        # Every copy of an event has the same user: one shuffle by user, the de-duplication
        # after it (Spark sees the partitioning satisfies the key and adds no second one).
        kept = kept.repartition("user_id")
    write(kept.dropDuplicates(), "silver")
    if chosen["source"] == "cache":
        events.unpersist()

    revenue = (
        spark.read.parquet(str(out / "silver"))
        .where(F.col("event_type") == "purchase")
        .groupBy("brand")
        .agg(F.sum("price").alias("total_revenue"))
    )
    revenue.write.mode("overwrite").parquet(str(out / "gold_revenue"))
    spark.stop()
    print(describe(chosen, session), flush=True)


def describe(chosen: dict[str, str], session: list[str]) -> str:
    """The line the script prints: every choice's value, and the SQL settings it set."""
    values = ", ".join(
        f"{name}={value}" + ("" if value == CHOICES[name].best else " (not this script's)")
        for name, value in chosen.items()
    )
    set_here = "; ".join(session) or "none"
    return f"best.py: {values}; session settings set at run time: {set_here}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("out")
    parser.add_argument("--settings", choices=spark_settings.CHOICES, default=spark_settings.SHARED)
    parser.add_argument(
        "--revert",
        action="append",
        default=[],
        metavar="CHOICE",
        help=f"make CHOICE as floor.py does ({', '.join(CHOICES)})",
    )
    parser.add_argument(
        "--choice",
        action="append",
        default=[],
        metavar="CHOICE=VALUE",
        help="; ".join(f"{n}: {'|'.join(c.values)}" for n, c in CHOICES.items()),
    )
    args = parser.parse_args()
    main(args.csv, args.out, args.settings, resolve(args.revert, args.choice))
