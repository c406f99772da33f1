"""Per-month summaries recorded with a Delta commit, and found again for the files a reader read.

A write can compute a few totals of each month it writes at no extra pass (a Spark observation on
the rows being written). Recorded in the commit that adds the month's files, they let a consumer
that reads those files check its own results against them without counting its input again:
gold compares its aggregates with silver's totals as silver's write saw them.

A summary is only valid for the exact files it was computed over. Each month's summary therefore
carries a fingerprint of the names of the files the commit added for that month; a reader takes a
summary only if the files it read for the month have that fingerprint. Anything that changes the
month's files later — a rewrite without a summary, a compaction, a file added by hand — makes the
summary unusable (the caller then counts for itself), never wrong.

The summaries live in the commit's ``commitInfo`` (delta-rs custom metadata, key
`MONTH_SUMMARIES`), which every Delta reader ignores. A log whose old commit files have been
cleaned up after a checkpoint loses them, with the same fallback.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from deltalake import DeltaTable

from medallion_assets.delta.log import commit_infos
from medallion_assets.partitions import key_of_month_value

MONTH_SUMMARIES = "medallion_month_summaries"
FILES = "files"


def files_fingerprint(paths: Iterable[str]) -> str:
    """A digest of the file names (not their directories: a path may be relative to the table or
    a full URI) of one month. Spark's file names carry its write's UUID, so a rewrite never
    reproduces one."""
    names = sorted(posixpath.basename(p) for p in paths)
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def encode(
    summaries: Mapping[str, Mapping[str, object]], files_by_month: Mapping[str, Sequence[str]]
) -> str:
    """The custom-metadata value for a commit: per month key (``YYYY-MM``), the summary's values
    (decimals as text, so no digit is lost) and the fingerprint of the files it covers."""
    return json.dumps(
        {
            month: {
                **{k: v if isinstance(v, int | None) else str(v) for k, v in values.items()},
                FILES: files_fingerprint(files_by_month.get(month, ())),
            }
            for month, values in summaries.items()
        },
        sort_keys=True,
    )


def files_by_month(paths: Iterable[str], partition_column: str) -> dict[str, list[str]]:
    """Paths (relative or URIs) grouped by month key, from their ``<column>=YYYY-MM-DD``
    directory; paths outside such a directory, or in one that names no date, are left out."""
    grouped: dict[str, list[str]] = defaultdict(list)
    prefix = f"{partition_column}="
    for path in paths:
        directory = posixpath.basename(posixpath.dirname(path))
        if not directory.startswith(prefix):
            continue
        try:
            month = key_of_month_value(directory[len(prefix) :])
        except ValueError:
            continue
        grouped[month].append(path)
    return dict(grouped)


def recorded(
    table: DeltaTable | None,
    months: Sequence[str],
    read_files: Mapping[str, Sequence[str]],
) -> dict[str, dict[str, object] | None]:
    """For each month key, the summary recorded by the newest commit that summarised it, if the
    files ``read_files`` names for that month are the ones it covers; else None."""
    found: dict[str, dict[str, object] | None] = dict.fromkeys(months, None)
    if table is None:
        return found
    remaining = set(months)
    for commit in commit_infos(table):  # newest first
        raw = commit.get(MONTH_SUMMARIES)
        if not raw:
            continue
        try:
            summaries = json.loads(raw)
        except ValueError:
            continue
        for month in remaining & set(summaries):
            summary = dict(summaries[month])
            if summary.pop(FILES, None) == files_fingerprint(read_files.get(month, ())):
                found[month] = summary
        remaining -= set(summaries)
        if not remaining:
            break
    return found


def recorded_for_live_files(
    table: DeltaTable | None, partition_column: str, months: Sequence[str] | None = None
) -> dict[str, dict[str, object] | None]:
    """`recorded` for the files the table's snapshot holds for each month (every month it holds
    when ``months`` is None): what its writers recorded of the months as they are now."""
    if table is None:
        return dict.fromkeys(months or (), None)
    paths = table.get_add_actions(flatten=True).column("path").to_pylist()
    by_month = files_by_month(paths, partition_column)
    return recorded(table, sorted(by_month) if months is None else months, by_month)
