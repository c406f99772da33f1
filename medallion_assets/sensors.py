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
* Waits for a file to be unchanged — same size and modification time — since the previous
  tick, so a file still being copied never starts a run. The observations travel in the
  sensor's cursor (JSON), which Dagster stores with each tick.
* Requests one run of the whole graph (`medallion_monthly`) for the file's month. The run key
  is the file name, modification time and size: a file is processed once, and a replaced or
  changed file is processed again. The cursor remembers the keys already requested, and
  Dagster itself never launches two runs with the same run key for a sensor.

Several months landing together become several run requests; the ``spark`` pool of the
instance (``.dagster_home/dagster.yaml``) queues them so that they run one after the other.
"""

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from medallion_assets.jobs import MEDALLION_JOB_NAME
from medallion_assets.partitions import (
    candidate_file_names,
    monthly_partitions,
    partition_key_from_file_name,
)
from medallion_assets.resources.landing import LandingDirectory, inside

SENSOR_NAME = "landing_csv_sensor"
INTERVAL_ENV = "MEDALLION_SENSOR_INTERVAL_SECONDS"
DEFAULT_INTERVAL_SECONDS = 15
SOURCE_FILE_TAG = "medallion/source_file"
CURSOR_VERSION = 1

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


def interval_seconds() -> int:
    """Seconds between ticks: ``$MEDALLION_SENSOR_INTERVAL_SECONDS``, else 15.

    A file needs two ticks (seen, then seen unchanged), so this bounds how long a landed file
    waits before its run is requested.
    """
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        value = int(raw) if raw.strip() else DEFAULT_INTERVAL_SECONDS
    except ValueError:
        value = DEFAULT_INTERVAL_SECONDS
    return max(value, 1)


@dataclass(frozen=True)
class Observation:
    """What a tick saw of a file: enough to tell whether it changed since."""

    size: int
    mtime_ns: int

    def run_key(self, name: str) -> str:
        return f"{name}:{self.mtime_ns}:{self.size}"


@dataclass
class SensorState:
    """The sensor cursor: the last observation of each candidate file, and the run key already
    requested for it."""

    observed: dict[str, Observation] = field(default_factory=dict)
    requested: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> "SensorState":
        if not cursor:
            return cls()
        try:
            raw = json.loads(cursor)
            observed = {
                str(name): Observation(int(size), int(mtime_ns))
                for name, (size, mtime_ns) in raw.get("observed", {}).items()
            }
            requested = {str(k): str(v) for k, v in raw.get("requested", {}).items()}
        except (ValueError, TypeError, AttributeError):
            # An unreadable cursor only costs one extra tick of waiting; run keys still stop
            # Dagster from processing a file twice.
            return cls()
        return cls(observed=observed, requested=requested)

    def to_cursor(self) -> str:
        return json.dumps(
            {
                "version": CURSOR_VERSION,
                "observed": {
                    name: [o.size, o.mtime_ns] for name, o in sorted(self.observed.items())
                },
                "requested": dict(sorted(self.requested.items())),
            },
            separators=(",", ":"),
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
    waiting: list[str]


def scan_landing(directory: Path, previous: SensorState) -> Scan:
    """Decide, from the directory's entries and the previous tick's state, which runs to request.

    Pure apart from reading the directory, so that every rule can be tested file by file.
    """
    skipped: dict[str, str] = {}
    candidates: dict[str, dict[str, Observation]] = {}
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
        candidates.setdefault(key, {})[name] = Observation(info.st_size, info.st_mtime_ns)

    state = SensorState()
    run_requests: list[RunRequest] = []
    waiting: list[str] = []
    for key in sorted(candidates):
        files = candidates[key]
        # The run reads the first of the month's names that exists; others are never read.
        chosen = next((n for n in candidate_file_names(key) if n in files), min(files))
        for other in sorted(set(files) - {chosen}):
            skipped[other] = f"{chosen} is also there and is the file read for {key}"
        observation = files[chosen]
        run_key = observation.run_key(chosen)
        state.observed[chosen] = observation
        if previous.requested.get(chosen) == run_key:
            state.requested[chosen] = run_key
            continue
        if chosen in previous.requested:
            # An earlier version was processed; keep its key until this one is requested.
            state.requested[chosen] = previous.requested[chosen]
        if previous.observed.get(chosen) != observation:
            waiting.append(chosen)
            continue
        state.requested[chosen] = run_key
        run_requests.append(
            RunRequest(
                run_key=run_key,
                partition_key=key,
                tags={SOURCE_FILE_TAG: chosen},
            )
        )
    return Scan(run_requests=run_requests, state=state, skipped=skipped, waiting=waiting)


def _summary(scan: Scan) -> str:
    parts = []
    if scan.waiting:
        parts.append(
            "waiting for " + ", ".join(scan.waiting) + " to stay unchanged until the next tick"
        )
    if scan.skipped:
        parts.append(f"skipped {len(scan.skipped)}: " + ", ".join(sorted(scan.skipped)))
    return "No new month to process" + (" (" + "; ".join(parts) + ")" if parts else "") + "."


@sensor(
    name=SENSOR_NAME,
    job_name=MEDALLION_JOB_NAME,
    minimum_interval_seconds=interval_seconds(),
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Starts a run of the whole graph for a month when its file (YYYY-Mon.csv, YYYY-MM.csv, "
        "optionally .gz) lands in the landing directory and has stopped changing; again when "
        "the file is replaced."
    ),
)
def landing_csv_sensor(context: SensorEvaluationContext, landing: LandingDirectory):
    directory = landing.directory()
    previous = SensorState.from_cursor(context.cursor)
    try:
        scan = scan_landing(directory, previous)
    except (FileNotFoundError, NotADirectoryError):
        return SkipReason(f"The landing directory {directory} does not exist.")
    for name, reason in scan.skipped.items():
        context.log.info(f"Skipping {name}: {reason}.")
    for name in scan.waiting:
        context.log.info(f"Waiting for {name}: new or changed since the previous tick.")
    for request in scan.run_requests:
        context.log.info(
            f"Requesting a run for {request.partition_key} from {request.tags[SOURCE_FILE_TAG]} "
            f"(run key {request.run_key})."
        )
    cursor = scan.state.to_cursor()
    if scan.run_requests:
        return SensorResult(run_requests=scan.run_requests, cursor=cursor)
    return SensorResult(skip_reason=_summary(scan), cursor=cursor)
