"""`landing_csv_sensor`: a month's file arriving in the landing directory starts that month's run.

Why a sensor: monthly exports arrive when they arrive — late, early, re-exported after a fix —
so the pipeline reacts to the file rather than to the calendar. The sensor is running by default,
so `make dev` processes a file dropped into the landing directory with no other action.

What one tick does, for every entry of the landing directory:

* Skips, with the reason in the tick's log, hidden and temporary files (the generator and most
  copy tools write under such a name and rename when done), anything that is not a regular file
  inside the directory (directories, broken symbolic links, links pointing elsewhere), names that
  are not ``YYYY-Mon.csv`` / ``YYYY-MM.csv`` (optionally ``.gz``), and months that are not
  partitions (before the first month, or a month that has not ended yet).
* Waits until a file has settled: unchanged (same size and modification time) for
  ``settle_seconds`` (``$MEDALLION_SENSOR_SETTLE_SECONDS``, 5 s by default). A file that
  finished arriving earlier — moved in, or copied with its time preserved — is picked up by the
  first tick that sees it; a file still being written keeps a fresh modification time and is
  never read half-way. The sensor's clock also counts: a file seen unchanged by ticks that far
  apart has settled even if its modification time lies in the future (a skewed file server).
* Skips a month whose bronze was last materialized from this very file — same name, size and
  modification time (`SourceFingerprint`, recorded by bronze) — whoever built it: ``make run``,
  the CLI, a backfill, the UI or an earlier tick. A re-delivered or changed file runs its month
  again.
* Otherwise requests one run of the whole graph (`medallion_monthly`) for the file's month. The
  run key is the file's fingerprint, so Dagster never launches two runs for one version of a
  file.

What the ticks have seen travels in the sensor's cursor (JSON), which Dagster stores with each
tick: each file's last observation and when it was first seen so, and the version of each file
already handled (requested, or found built) with the reason, logged again on every tick.

Several months landing together become several run requests; the ``spark`` pool of the
instance (``.dagster_home/dagster.yaml``; `make dev` sets its limit) queues them so that they run
one after the other.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from medallion_assets.assets.bronze import BRONZE_EVENTS
from medallion_assets.automation.jobs import MEDALLION_JOB_NAME
from medallion_assets.partitions import (
    candidate_file_names,
    monthly_partitions,
    partition_key_from_file_name,
)
from medallion_assets.resources.landing import (
    LandingDirectory,
    SourceFingerprint,
    fingerprint_in_metadata,
    inside,
)

SENSOR_NAME = "landing_csv_sensor"
SOURCE_FILE_TAG = "medallion/source_file"
# Why the tick requested the run ("2019-10 has not been built"): the UI shows a tick that requested
# runs with no message of its own, only the runs, and each run shows its tags.
REQUESTED_BECAUSE_TAG = "medallion/requested_because"
CURSOR_VERSION = 2
# Bronze's materialization metadata before it recorded fingerprints: {month: file name}.
LEGACY_SOURCE_FILES_METADATA = "source_files"

# Names that download managers, editors and copy tools give a file while they write it.
TEMPORARY_SUFFIXES = (
    ".tmp",
    ".temp",
    ".part",
    ".partial",
    ".crdownload",
    ".download",
    ".filepart",
    ".swp",
    "~",
)


@dataclass(frozen=True)
class Observation:
    """What the ticks saw of a file: its size and modification time, and since when (sensor clock)
    they have been so."""

    size: int
    mtime_ns: int
    since: float

    def same_file_version(self, other: Observation | None) -> bool:
        return other is not None and (other.size, other.mtime_ns) == (self.size, self.mtime_ns)


@dataclass(frozen=True)
class Handled:
    """A file version the sensor is done with: its run key and why (logged on every tick)."""

    run_key: str
    reason: str


@dataclass
class SensorState:
    """The sensor cursor: the last observation of each candidate file, and the version of each
    file already handled."""

    observed: dict[str, Observation] = field(default_factory=dict)
    handled: dict[str, Handled] = field(default_factory=dict)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> SensorState:
        if not cursor:
            return cls()
        try:
            raw = json.loads(cursor)
            observed = {
                str(name): Observation(int(size), int(mtime_ns), float(since))
                for name, (size, mtime_ns, since) in raw.get("observed", {}).items()
            }
            handled = {
                str(name): Handled(str(run_key), str(reason))
                for name, (run_key, reason) in raw.get("handled", {}).items()
            }
        except (ValueError, TypeError, AttributeError):
            # An unreadable cursor (or one of an older version) costs at most a settle time:
            # what is built is found built again, and run keys stop Dagster from running a file
            # version twice.
            return cls()
        return cls(observed=observed, handled=handled)

    def to_cursor(self) -> str:
        return json.dumps(
            {
                "version": CURSOR_VERSION,
                "observed": {
                    name: [o.size, o.mtime_ns, o.since] for name, o in sorted(self.observed.items())
                },
                "handled": {
                    name: [h.run_key, h.reason] for name, h in sorted(self.handled.items())
                },
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class LastBuild:
    """What the instance knows of a month's last bronze materialization."""

    run_id: str
    # Recorded by bronze: the file version the month was built from.
    fingerprint: SourceFingerprint | None = None
    # Older materializations recorded only the file's name; with it, when the run started.
    source_file: str | None = None
    run_started_at: float | None = None


def built_from(fingerprint: SourceFingerprint, build: LastBuild | None) -> str | None:
    """Why the month is already built from the file version `fingerprint`, or None if it is not
    (never built, or built from another file or another version of it)."""
    if build is None:
        return None
    run = build.run_id[:8]
    if build.fingerprint is not None:
        if build.fingerprint != fingerprint:
            return None
        return f"already built from this very file by run {run} (same name, size and mtime)"
    # A materialization that names only the file: it was built from the current version if that
    # version was already in place when the run started.
    if (
        build.source_file == fingerprint.file
        and build.run_started_at is not None
        and fingerprint.mtime_ns / 1e9 < build.run_started_at
    ):
        return f"already built from this file by run {run}, which started after its last change"
    return None


def last_bronze_build(instance: DagsterInstance, month: str) -> LastBuild | None:
    """The month's last materialization of bronze/events, read from the instance's event log."""
    result = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(BRONZE_EVENTS), asset_partitions=[month]), limit=1
    )
    if not result.records:
        return None
    record = result.records[0]
    materialization = record.asset_materialization
    metadata = {k: v.value for k, v in materialization.metadata.items()} if materialization else {}
    fingerprint = fingerprint_in_metadata(metadata, month)
    if fingerprint is not None:
        return LastBuild(run_id=record.run_id, fingerprint=fingerprint)
    legacy = metadata.get(LEGACY_SOURCE_FILES_METADATA)
    source_file = legacy.get(month) if isinstance(legacy, dict) else None
    run = instance.get_run_record_by_id(record.run_id) if source_file else None
    return LastBuild(
        run_id=record.run_id,
        source_file=source_file,
        run_started_at=run.start_time if run else None,
    )


def _hidden_or_temporary(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def _not_a_regular_file(directory: Path, path: Path) -> str | None:
    """Why `path` cannot be read as a source file of `directory`, or None when it can."""
    if path.is_symlink():
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return "broken symbolic link"
        if not inside(directory, path):
            return f"symbolic link to {target}, outside the landing directory"
    try:
        mode = path.stat().st_mode
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISDIR(mode):
        return "a directory, not a file"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


def _outside_partitions(key: str) -> str | None:
    if monthly_partitions.has_partition_key(key):
        return None
    first = monthly_partitions.get_first_partition_key()
    last = monthly_partitions.get_last_partition_key()
    if first is not None and key < first:
        return f"month {key} is before the first partition {first}"
    return (
        f"month {key} is not a partition yet: a month becomes one when it has ended "
        f"(last partition: {last})"
    )


@dataclass
class Scan:
    """One look at the landing directory."""

    run_requests: list[RunRequest]
    state: SensorState
    skipped: dict[str, str]
    waiting: dict[str, str]
    # Why each requested file's month runs.
    requested: dict[str, str]


def scan_landing(
    directory: Path,
    previous: SensorState,
    *,
    now: float,
    settle: float,
    last_build: Callable[[str], LastBuild | None],
) -> Scan:
    """Decide, from the directory's entries, the previous tick's state, the time and what each
    month was last built from, which runs to request.

    Pure apart from reading the directory (and `last_build`, asked only about settled files not
    handled yet), so that every rule can be tested file by file.
    """
    skipped: dict[str, str] = {}
    candidates: dict[str, dict[str, os.stat_result]] = {}
    with os.scandir(directory) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        path = directory / name
        if _hidden_or_temporary(name):
            skipped[name] = "hidden or temporary file"
            continue
        reason = _not_a_regular_file(directory, path)
        if reason:
            skipped[name] = reason
            continue
        key = partition_key_from_file_name(name)
        if key is None:
            skipped[name] = (
                "name not recognised (expected YYYY-Mon.csv or YYYY-MM.csv, optionally .gz)"
            )
            continue
        reason = _outside_partitions(key)
        if reason:
            skipped[name] = reason
            continue
        try:
            info = path.stat()
        except OSError:
            skipped[name] = "disappeared while the directory was being read"
            continue
        candidates.setdefault(key, {})[name] = info

    state = SensorState()
    run_requests: list[RunRequest] = []
    waiting: dict[str, str] = {}
    requested: dict[str, str] = {}
    for key in sorted(candidates):
        files = candidates[key]
        # The run reads the first of the month's names that exists; others are never read.
        chosen = next((n for n in candidate_file_names(key) if n in files), min(files))
        for other in sorted(set(files) - {chosen}):
            skipped[other] = f"{chosen} is also there and is the file read for {key}"
        info = files[chosen]
        fingerprint = SourceFingerprint(chosen, info.st_size, info.st_mtime_ns)
        run_key = fingerprint.run_key()
        observation = Observation(info.st_size, info.st_mtime_ns, now)
        seen = previous.observed.get(chosen)
        if observation.same_file_version(seen):
            observation = seen
        state.observed[chosen] = observation

        done = previous.handled.get(chosen)
        if done is not None and done.run_key == run_key:
            state.handled[chosen] = done
            skipped[chosen] = done.reason
            continue
        if done is not None:
            # An earlier version was handled; keep it until this one is.
            state.handled[chosen] = done

        unchanged_for = now - min(info.st_mtime_ns / 1e9, observation.since)
        if unchanged_for < settle:
            waiting[chosen] = (
                f"changed {max(now - info.st_mtime_ns / 1e9, 0):.1f} s ago; its month runs once "
                f"it has been unchanged for {settle:g} s"
            )
            continue

        build = last_build(key)
        reason = built_from(fingerprint, build)
        if reason:
            state.handled[chosen] = Handled(run_key, f"{key} {reason}")
            skipped[chosen] = state.handled[chosen].reason
            continue
        if build is None:
            requested[chosen] = f"{key} has not been built"
        elif build.fingerprint is not None:
            requested[chosen] = f"{key} was last built from {build.fingerprint.describe()}"
        else:
            requested[chosen] = f"{key} was last built by run {build.run_id[:8]} from another file"
        state.handled[chosen] = Handled(run_key, f"a run of {key} was requested for this file")
        run_requests.append(
            RunRequest(
                run_key=run_key,
                partition_key=key,
                tags={SOURCE_FILE_TAG: chosen, REQUESTED_BECAUSE_TAG: requested[chosen]},
            )
        )
    return Scan(
        run_requests=run_requests,
        state=state,
        skipped=skipped,
        waiting=waiting,
        requested=requested,
    )


def _summary(scan: Scan) -> str:
    """The message of a tick that requested nothing, shown on its row in the UI: every file it
    looked at, with its month and what the tick made of it."""
    parts = []
    for name in sorted(scan.waiting):
        parts.append(f"{name} ({partition_key_from_file_name(name)}) waiting to settle")
    for name, reason in sorted(scan.skipped.items()):
        parts.append(f"{name}: {reason}")
    if not parts:
        return "No new month to process: the landing directory is empty."
    return "No new month to process. " + "; ".join(parts) + "."


def build_landing_sensor(*, interval_seconds: int, settle_seconds: float) -> SensorDefinition:
    """The landing sensor, looking at the directory at most every ``interval_seconds``
    (``$MEDALLION_SENSOR_INTERVAL_SECONDS``) and running a file's month once the file has been
    unchanged for ``settle_seconds`` (``$MEDALLION_SENSOR_SETTLE_SECONDS``).

    Dagster's sensor daemon looks at its sensors every 5 s and skips one whose last tick is
    younger than its interval, counted from when that tick started, a moment after the look
    began: with 5 s the sensor would tick at every other look (10 s); with 3 s (the default) it
    ticks at every look.
    """

    @sensor(
        name=SENSOR_NAME,
        job_name=MEDALLION_JOB_NAME,
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Starts a run of the whole graph for a month when its file (YYYY-Mon.csv, "
            "YYYY-MM.csv, optionally .gz) lands in the landing directory and has been unchanged "
            f"for {settle_seconds:g} s, unless the month was already built from that very file; "
            "again when the file is replaced."
        ),
    )
    def landing_csv_sensor(context: SensorEvaluationContext, landing: LandingDirectory):
        return evaluate(context, landing.directory(), now=time.time(), settle=settle_seconds)

    return landing_csv_sensor


def evaluate(
    context: SensorEvaluationContext, directory: Path, *, now: float, settle: float
) -> SensorResult | SkipReason:
    """One tick: `scan_landing` over ``directory``, its decisions logged, the cursor advanced."""
    previous = SensorState.from_cursor(context.cursor)
    try:
        scan = scan_landing(
            directory,
            previous,
            now=now,
            settle=settle,
            last_build=lambda month: last_bronze_build(context.instance, month),
        )
    except (FileNotFoundError, NotADirectoryError):
        return SkipReason(f"The landing directory {directory} does not exist.")
    for name, reason in scan.skipped.items():
        context.log.info(f"Skipping {name}: {reason}.")
    for name, reason in scan.waiting.items():
        context.log.info(f"Waiting for {name}: {reason}.")
    for request in scan.run_requests:
        name = request.tags[SOURCE_FILE_TAG]
        context.log.info(
            f"Requesting a run for {request.partition_key} from {name}: "
            f"{scan.requested[name]} (run key {request.run_key})."
        )
    cursor = scan.state.to_cursor()
    if scan.run_requests:
        return SensorResult(run_requests=scan.run_requests, cursor=cursor)
    return SensorResult(skip_reason=_summary(scan), cursor=cursor)
