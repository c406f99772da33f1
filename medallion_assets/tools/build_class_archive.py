"""Build the Spark driver's class-data-sharing archive: ``make spark-archive``.

Why an archive: see `medallion_assets.resources.class_archive`, which finds it for every session.
How: one small month goes through the whole asset graph (`medallion_assets.tools.small_month`) in
a child process whose driver JVM runs with ``-XX:ArchiveClassesAtExit``: when it exits, the JVM
writes every class it loaded into the archive, which then replaces the old one atomically.
Building takes about 30 s; it is an optimization only, so a failure is a warning and every
session still starts, just slower.

    python -m medallion_assets.tools.build_class_archive            # build (or rebuild) it
    python -m medallion_assets.tools.build_class_archive --if-missing
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medallion_assets.resources.class_archive import OFF, archive_path
from medallion_assets.settings import Settings

ARCHIVE_ENV = Settings.env_name("spark_class_archive")


def build(path: Path) -> float:
    """Write the archive to `path` (replacing it atomically); return the seconds it took."""
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="medallion-class-archive-") as work:
        partial = Path(work) / "spark-driver.jsa"
        completed = subprocess.run(
            [
                sys.executable, "-m", "medallion_assets.tools.small_month",
                "--work-dir", work, "--write-class-archive", str(partial),
            ],
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing if the archive already exists"
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    path = archive_path(settings.spark_class_archive, settings.java_home)
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
