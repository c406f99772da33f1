"""One small generated month through the whole asset graph, in directories of its own.

Two tools need exactly this: the class-archive builder (its JVM must load what a run loads, so
it runs a real month, with a rejected line so that the quarantine's classes load too) and
``make dev``'s warm-up (the first real month should find the Connect server's code paths already
loaded and compiled). Each runs it in a child process —
``python -m medallion_assets.tools.small_month`` — because a Python process is either a classic
PySpark one or a Spark Connect client, and the JVM writes a class archive only when it exits.

Nothing of the run stays: an ephemeral Dagster instance, the landing and warehouse directories
given (temporary ones, in both tools).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MONTH = "2019-10"
ROWS = 2_000


def run_small_month(
    work_dir: Path,
    *,
    rows: int = ROWS,
    remote: str | None = None,
    write_class_archive: Path | None = None,
) -> bool:
    """Generate ``rows`` lines of `MONTH` (and one line bronze rejects) under ``work_dir`` and
    materialize the month's bronze, silver and gold there; True when the run succeeded.

    ``remote``: a Spark Connect endpoint to run on, else a classic local session. With
    ``write_class_archive`` that session's JVM writes its loaded classes to that path at exit.
    """
    from dagster import DagsterInstance

    from medallion_assets.automation.jobs import MEDALLION_JOB_NAME
    from medallion_assets.definitions import build_defs
    from medallion_assets.resources.class_archive import OFF
    from medallion_assets.resources.spark import SparkSessionResource
    from medallion_assets.settings import Settings
    from medallion_assets.tools.sample_data import generate_month

    landing, warehouse = work_dir / "landing", work_dir / "warehouse"
    source = generate_month(MONTH, rows, landing, seed=1)
    with source.open("a", encoding="utf-8") as lines:
        lines.write("not,a,valid,line\n")
    # A session that writes an archive must not start from one.
    archive = OFF if write_class_archive else None
    settings = Settings(
        landing_dir=str(landing),
        warehouse_dir=str(warehouse),
        spark_remote=remote,
        spark_class_archive=archive,
    )
    defs = build_defs(settings)
    session = None
    if write_class_archive is not None:
        # The session a run gets, plus the option that writes the archive; the run reuses it.
        resource = defs.resources["spark"]
        java_options = resource.effective_config().get("spark.driver.extraJavaOptions", "")
        session = SparkSessionResource(
            master=resource.master,
            spark_config={
                "spark.driver.extraJavaOptions": (
                    f"{java_options} -XX:ArchiveClassesAtExit={write_class_archive}"
                )
            },
        ).spark_session
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def(MEDALLION_JOB_NAME).execute_in_process(
            partition_key=MONTH, instance=instance, raise_on_error=False
        )
    if session is not None:
        session.stop()  # the JVM writes the archive as this process exits
    return result.success


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--remote", help="a Spark Connect endpoint (sc://host:port)")
    parser.add_argument("--write-class-archive", type=Path, help="the archive the JVM writes")
    args = parser.parse_args(argv)
    ok = run_small_month(
        args.work_dir,
        rows=args.rows,
        remote=args.remote,
        write_class_archive=args.write_class_archive,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
