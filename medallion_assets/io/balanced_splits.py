"""Cutting a write's file scans into equal tasks, a whole number of them per core.

Spark cuts the files a query reads into splits of at most ``spark.sql.files.maxPartitionBytes``
(128 MiB) and runs one task per split. A month's file is rarely a multiple of that: the 5M-line
month (672 MB) became five 128 MiB tasks and one of 1.4 MB, so on 2 cores the fifth task ran
alone while the other core idled for a whole task's time. The same happened to silver's scan of
bronze's files (three tasks on two cores). `split_bytes` picks instead the split size that gives
every core the same number of equal tasks, never larger than Spark's own maximum; the IO manager
sets it for the duration of each write (`balanced_splits`), from the sizes of the files that
write reads.

Measured on bronze's parse and write of the 5M-line month, a fresh JVM per run, 3 rounds on 2
cores (`benchmarks/step_profile.py`, 2026-12-04): 12.85 (12.82-13.69) s with six equal tasks
(``bronze``) against 13.94 (13.47-14.92) s with Spark's cut (``bronze_spark_splits``), for about
the same task CPU time (17.7 and 17.0 s): the core that idled now works.

Only a classic session knows its cores (``defaultParallelism``); a Spark Connect session keeps
Spark's splits. A file Spark cannot split (gzip, or a Parquet file of one row group) stays one
task whatever the size, so files that are few and whole (three on two cores) stay uneven.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.fs as pafs
from pyspark.sql import DataFrame, SparkSession

from medallion_assets.io.session_settings import session_settings

MAX_PARTITION_BYTES_CONF = "spark.sql.files.maxPartitionBytes"


def split_bytes(file_sizes: Iterable[int], cores: int, largest: int, open_cost: int) -> int:
    """The split size that cuts files of `file_sizes` bytes into equal tasks, as many as a whole
    number of waves over `cores`, none larger than `largest` (Spark's maximum).

    Spark counts every file as `open_cost` bytes more than its size when it packs small files
    into one task, so the sizes are weighed the same way here: files smaller than a split are
    then packed evenly too.
    """
    weighted = sum(size + open_cost for size in file_sizes)
    if weighted <= 0 or cores <= 0:
        return largest
    waves = math.ceil(weighted / (cores * largest))
    return min(largest, max(1, math.ceil(weighted / (cores * waves))))


def _parallelism(session: SparkSession) -> int | None:
    try:
        return int(session.sparkContext.defaultParallelism)
    except Exception:  # Spark Connect: no SparkContext on the client
        return None


def _file_sizes(uris: list[str]) -> list[int] | None:
    """The files' sizes, asked in one call of one filesystem (made once: for object stores,
    making one can mean a request of its own). None when any size cannot be had."""
    if not uris:
        return None
    try:
        fs, first = pafs.FileSystem.from_uri(uris[0])
        prefix = uris[0][: -len(first)] if first and uris[0].endswith(first) else None
        paths = [
            uri[len(prefix):] if prefix is not None and uri.startswith(prefix)
            else pafs.FileSystem.from_uri(uri)[1]
            for uri in uris
        ]
        infos = fs.get_file_info(paths)
    except (OSError, ValueError, pa.ArrowException):
        return None
    if any(info.size is None for info in infos):
        return None
    return [int(info.size) for info in infos]


@contextlib.contextmanager
def balanced_splits(frame: DataFrame) -> Iterator[None]:
    """Within the block, the session cuts the files `frame` reads into equal tasks
    (`split_bytes`); the session's own setting is restored afterwards. Does nothing where the
    cores or the files' sizes cannot be known."""
    session = frame.sparkSession
    cores = _parallelism(session)
    sizes = _file_sizes(frame.inputFiles()) if cores else None
    if not cores or not sizes:
        yield
        return
    conf = session._jsparkSession.sessionState().conf()  # type: ignore[attr-defined]
    largest, open_cost = int(conf.filesMaxPartitionBytes()), int(conf.filesOpenCostInBytes())
    split = split_bytes(sizes, cores, largest, open_cost)
    with session_settings(session, {MAX_PARTITION_BYTES_CONF: str(split)}):
        yield
