"""A class-data-sharing archive for the Spark driver JVM, so that a run's session starts sooner.

Why: a run starts its own Spark session and stops it at the end (job-cluster semantics), so every
run pays a JVM start. Most of that time is the JVM loading, parsing and verifying the thousands of
classes Spark needs, and more of them again during the run's first jobs (the CSV reader, Parquet,
code generation, ...). Java's application class-data sharing (AppCDS, JDK 13+) keeps those
classes, already parsed and verified, in an archive the JVM maps into memory at start.
Measured on a 2-core machine: session start 4.0 s -> 2.2 s, and a 1,000-row month's first Spark
jobs about 1.9 s faster (`benchmarks/bench.py` reports the whole run, with and without).

How: `build` materializes a small month through the whole asset graph in a child process whose
driver JVM runs with ``-XX:ArchiveClassesAtExit``: when it exits, the JVM writes every class it
loaded into the archive (``make install`` builds it). Sessions started afterwards get
``-XX:SharedArchiveFile`` (see `java_options`, used by `medallion_assets.resources.spark`).

Safe by construction: the JVM checks an archive against itself (its build, the class path) and
uses it only if they match; one that does not match costs one warning line, a missing or damaged
one nothing at all — never a failed session. The file name carries the PySpark version and the
identity of the Java executable Spark would run, so an upgrade of either looks for a new archive
instead of meeting an old one. ``MEDALLION_SPARK_CLASS_ARCHIVE=off`` turns the archive off; any
other value is the archive's path.

    python -m medallion_assets.resources.class_archive            # build (or rebuild) it
    python -m medallion_assets.resources.class_archive --if-missing
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyspark

ARCHIVE_ENV = "MEDALLION_SPARK_CLASS_ARCHIVE"
_MODULE = "medallion_assets.resources.class_archive"
OFF = "off"
_WORKLOAD_MONTH = "2019-10"
_WORKLOAD_ROWS = 2_000


def java_executable() -> Path | None:
    """The Java executable Spark's launcher runs: ``$JAVA_HOME/bin/java``, else ``java`` on the
    PATH (as in Spark's ``bin/spark-class``)."""
    java_home = os.environ.get("JAVA_HOME")
    found = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not found or not os.path.exists(found):
        return None
    return Path(os.path.realpath(found))


def archive_path() -> Path | None:
    """Where this environment's archive is (whether it exists or not), or None when it is
    turned off or no Java is found."""
    configured = os.environ.get(ARCHIVE_ENV, "").strip()
    if configured.lower() == OFF:
        return None
    if configured:
        return Path(configured)
    java = java_executable()
    if java is None:
        return None
    info = java.stat()
    identity = hashlib.sha256(f"{java}:{info.st_size}:{info.st_mtime_ns}".encode()).hexdigest()
    return (
        Path(sys.prefix)
        / "share"
        / "medallion_assets"
        / f"spark-driver-{pyspark.__version__}-{identity[:12]}.jsa"
    )


def java_options() -> str | None:
    """The driver JVM option that uses the archive, or None when there is no archive to use."""
    path = archive_path()
    if path is None or not path.is_file():
        return None
    return f"-XX:SharedArchiveFile={path}"


def build(path: Path) -> float:
    """Write the archive to `path` (replacing it atomically); return the seconds it took.

    The workload runs in a child process: the JVM writes the archive only when it exits, and
    it must load exactly what a run loads (a classic local session with the project's settings).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="medallion-class-archive-") as work:
        partial = Path(work) / "spark-driver.jsa"
        env = {**os.environ, ARCHIVE_ENV: OFF}
        env.pop("MEDALLION_SPARK_REMOTE", None)
        env.pop("MEDALLION_SPARK_MASTER", None)
        completed = subprocess.run(
            [sys.executable, "-m", _MODULE, "--workload", str(partial), "--work-dir", work],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0 or not partial.is_file():
            raise RuntimeError(
                "Building the Spark class archive failed (exit code "
                f"{completed.returncode}):\n{completed.stderr[-3000:]}"
            )
        staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        shutil.copyfile(partial, staged)
        os.replace(staged, path)
    return time.monotonic() - started


def _workload(archive: Path, work_dir: Path) -> None:
    """One small month through bronze, silver and gold, with a rejected line so that the
    quarantine's classes are loaded too."""
    from dagster import DagsterInstance

    from medallion_assets.definitions import defs
    from medallion_assets.jobs import MEDALLION_JOB_NAME
    from medallion_assets.resources.spark import SparkSessionResource
    from medallion_assets.sample_data import generate_month

    landing, warehouse = work_dir / "landing", work_dir / "warehouse"
    source = generate_month(_WORKLOAD_MONTH, _WORKLOAD_ROWS, landing, seed=1)
    with source.open("a", encoding="utf-8") as lines:
        lines.write("not,a,valid,line\n")
    os.environ["MEDALLION_LANDING_DIR"] = str(landing)
    os.environ["MEDALLION_WAREHOUSE_DIR"] = str(warehouse)
    # The session a run gets (the parent turned the archive off), plus the option that writes it.
    run_config = SparkSessionResource().effective_config()
    java_options = run_config.get("spark.driver.extraJavaOptions", "")
    session = SparkSessionResource(
        spark_config={
            "spark.driver.extraJavaOptions": f"{java_options} -XX:ArchiveClassesAtExit={archive}"
        }
    ).spark_session
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def(MEDALLION_JOB_NAME).execute_in_process(
            partition_key=_WORKLOAD_MONTH, instance=instance, raise_on_error=True
        )
    if not result.success:
        raise RuntimeError("The class archive's workload run failed.")
    session.stop()
    # The JVM writes the archive as it exits, which it does when this process ends.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing if the archive already exists"
    )
    parser.add_argument("--workload", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workload:
        _workload(args.workload, args.work_dir)
        return 0
    path = archive_path()
    if path is None:
        print(
            f"No Spark class archive: ${ARCHIVE_ENV} is '{OFF}' or no Java was found "
            "(sessions start without one)."
        )
        return 0
    if args.if_missing and path.is_file():
        print(f"Spark class archive: {path} (already built)")
        return 0
    try:
        seconds = build(path)
    except RuntimeError as error:
        # An optimization only: without the archive every session still starts, just slower.
        print(f"Warning: {error}\nSessions start without a class archive.", file=sys.stderr)
        return 0
    size = path.stat().st_size / 2**20
    print(f"Spark class archive: {path} ({size:.0f} MiB, built in {seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
