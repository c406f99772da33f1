"""`delta_maintenance`: housekeeping of every Delta table under the warehouse, and its schedule.

Why it is needed: a write that dies without running its cleanup (the process killed, the machine
lost) leaves files no reader ever sees — Parquet files moved into a month directory but never
named by a commit, and its private ``_staging/<write id>/`` directory. Readers go through the
Delta log, so those files are harmless, but they take space for ever. Replacing a month also
leaves the replaced files on disk (the log keeps them for time travel), and small runs make small
files that slow every reader down. For every table the job:

1. compacts small files month by month (delta-rs ``optimize.compact``): same rows, fewer files,
   committed as a data-less OPTIMIZE that never conflicts with a write of new data — a month
   that a run replaces meanwhile is skipped and reported, not an error;
2. vacuums the table in *full* mode (delta-rs ``vacuum(full=True)``): removes every file the log
   does not reference — crash orphans as well as files replaced or compacted away — once it is
   older than the retention;
3. removes ``_staging/<write id>/`` directories older than the retention (delta-rs vacuum skips
   paths starting with ``_``).

Why the retention matters (default 7 days, Delta's own default): a write in progress has files
on disk that no commit names *yet*. Removing them would make its commit point at missing files,
a broken table. Only files older than any write can be are safe to treat as orphans, and the
retention also keeps the replaced versions readable by time travel for that long. A shorter
retention is refused unless ``allow_short_retention`` says the caller knows no write is running.

That knowledge is checked where it can be: the runs of this Dagster instance that have not
finished (queued, starting, running, cancelling — the landing sensor's runs, a backfill, another
maintenance run's compaction) may be writing. Just before each table's vacuum, the retention is
raised to cover the oldest of them since it started, plus an hour (delta-rs counts whole hours,
measured from its own clock a moment later), up to the default: a write's files are all younger
than its run, so none of them is vacuumed, while a crash's leftovers older than every running run
still go. A run left STARTED by a killed process holds the retention up until it is marked
finished (the run's page: *Terminate*), never beyond the default. Writers outside this instance
are not seen: for them the caller's word is all there is.

``dry_run`` lists what would be removed and compacted without touching anything. The schedule
(weekly, Sunday 03:00 UTC) is stopped by default: turn it on in the UI once the warehouse is in
real use.
"""

import datetime as dt
import math
import posixpath
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pyarrow.fs as pafs
from dagster import (
    AssetKey,
    AssetObservation,
    Config,
    DagsterRunStatus,
    DefaultScheduleStatus,
    Failure,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RunsFilter,
    ScheduleDefinition,
    job,
    op,
)
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import CommitProperties
from pydantic import Field

from medallion_assets.delta.log import (
    filesystem_for,
    find_tables,
    live_file_sizes,
    live_files,
    open_table,
)
from medallion_assets.io.delta_io_manager import STAGING_DIR
from medallion_assets.resources.warehouse import Warehouse

JOB_NAME = "delta_maintenance"
SCHEDULE_NAME = "delta_maintenance_schedule"
# Delta's default `delta.deletedFileRetentionDuration`: the shortest retention accepted unasked.
DEFAULT_RETENTION_HOURS = 168
# delta-rs's default compaction target when the table sets no `delta.targetFileSize`.
DEFAULT_TARGET_FILE_SIZE = 100 * 1024 * 1024
# How deep under the warehouse root tables are looked for (``<layer>/<name>`` is depth 2).
MAX_TABLE_DEPTH = 4
# Runs that may be writing files no commit names yet, or may start doing so at any moment.
UNFINISHED_RUN_STATUSES = [
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


class DeltaMaintenanceConfig(Config):
    """Run configuration of the `delta_maintenance` job (every field has a safe default)."""

    warehouse_dir: str | None = Field(
        default=None,
        description="Warehouse root; default the warehouse resource's.",
    )
    retention_hours: int = Field(
        default=DEFAULT_RETENTION_HOURS,
        ge=0,
        description="Only unreferenced files and staging directories older than this are removed.",
    )
    allow_short_retention: bool = Field(
        default=False,
        description=(
            f"Accept a retention below {DEFAULT_RETENTION_HOURS} h. Only when no write can be "
            "running: a write's files are unreferenced until it commits."
        ),
    )
    dry_run: bool = Field(default=False, description="List what would be done; change nothing.")
    compact: bool = Field(default=True, description="Compact small files, month by month.")
    target_file_size_bytes: int | None = Field(
        default=None,
        gt=0,
        description="Compaction target; default the table's delta.targetFileSize, else 100 MiB.",
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="delta-rs storage options; default the warehouse resource's.",
    )


@dataclass
class TableMaintenance:
    """What maintenance did (or, in a dry run, would do) to one table."""

    table: str
    live_files_before: int = 0
    live_files_after: int = 0
    files_compacted: int = 0
    files_written_by_compaction: int = 0
    partitions_compacted: list[str] = field(default_factory=list)
    partitions_skipped: list[str] = field(default_factory=list)
    files_vacuumed: int = 0
    staging_dirs_removed: int = 0
    # The retention applied: the configured one, or longer to spare the runs not finished.
    retention_hours: int = 0

    def metadata(self) -> dict[str, object]:
        return {
            "retention_hours": self.retention_hours,
            "live_files_before": self.live_files_before,
            "live_files_after": self.live_files_after,
            "files_compacted": self.files_compacted,
            "files_written_by_compaction": self.files_written_by_compaction,
            "partitions_compacted": MetadataValue.json(self.partitions_compacted),
            "partitions_skipped": MetadataValue.json(self.partitions_skipped),
            "files_vacuumed": self.files_vacuumed,
            "staging_dirs_removed": self.staging_dirs_removed,
        }


def stale_staging_dirs(table_uri: str, older_than: dt.datetime) -> list[str]:
    """``_staging/<write id>`` directories in which nothing changed since ``older_than``.

    A write in progress touches its staging directory continuously, so a directory whose newest
    entry is older than the retention belongs to a write that is gone."""
    fs, table_path = filesystem_for(table_uri)
    staging = posixpath.join(table_path, STAGING_DIR)
    if fs.get_file_info(staging).type != pafs.FileType.Directory:
        return []
    stale = []
    for entry in fs.get_file_info(pafs.FileSelector(staging, recursive=False)):
        if entry.type != pafs.FileType.Directory:
            continue
        inside = fs.get_file_info(pafs.FileSelector(entry.path, recursive=True))
        times = [i.mtime for i in [entry, *inside] if i.mtime is not None]
        newest = max(times) if times else None
        if newest is None or newest.astimezone(dt.timezone.utc) < older_than:
            stale.append(entry.path)
    return sorted(stale)


def _compaction_candidates(table: DeltaTable, target_size: int) -> dict[str | None, int]:
    """Per partition value, how many of its files are below the target size — only partitions
    where at least two are, since one small file alone has nothing to merge with."""
    columns = list(table.metadata().partition_columns)
    column = columns[0] if len(columns) == 1 else None
    sizes = live_file_sizes(table)
    small = Counter(
        live.partition for live in live_files(table, column) if sizes[live.path] < target_size
    )
    return {part: count for part, count in small.items() if count >= 2}


def _target_size(table: DeltaTable, configured: int | None) -> int:
    if configured:
        return configured
    raw = table.metadata().configuration.get("delta.targetFileSize")
    return int(raw) if raw and str(raw).isdigit() else DEFAULT_TARGET_FILE_SIZE


def retention_sparing(
    configured_hours: int, writing_since: dt.datetime | None, now: dt.datetime
) -> int:
    """The retention (whole hours) that spares every file written since ``writing_since``, the
    start of the oldest run that may be writing: the configured one if that is long enough,
    never more than the default (which already assumes no write lasts longer)."""
    if writing_since is None or configured_hours >= DEFAULT_RETENTION_HOURS:
        return configured_hours
    age_hours = max((now - writing_since).total_seconds(), 0.0) / 3600
    # One hour more: delta-rs takes whole hours and counts from its own, slightly later, clock.
    needed = math.ceil(age_hours) + 1
    return max(configured_hours, min(needed, DEFAULT_RETENTION_HOURS))


def maintain_table(
    table_uri: str,
    config: DeltaMaintenanceConfig,
    *,
    now: dt.datetime | None = None,
    custom_metadata: dict[str, str] | None = None,
    writing_since: Callable[[], dt.datetime | None] | None = None,
) -> TableMaintenance:
    """Compact, vacuum and clear stale staging directories of one table.

    ``writing_since`` tells, when asked just before the vacuum, since when a write may have been
    in progress (None: no write is); the retention is raised to spare its files and its staging
    directory (`retention_sparing`)."""
    report = TableMaintenance(table=table_uri)
    table = open_table(table_uri, config.storage_options)
    if table is None:
        raise FileNotFoundError(f"No Delta table at {table_uri}")
    report.live_files_before = len(live_files(table))
    properties = CommitProperties(custom_metadata=dict(custom_metadata or {}))

    if config.compact:
        target = _target_size(table, config.target_file_size_bytes)
        columns = list(table.metadata().partition_columns)
        for part, count in sorted(_compaction_candidates(table, target).items(), key=str):
            label = "all" if part is None else str(part)
            if config.dry_run:
                report.files_compacted += count
                report.partitions_compacted.append(label)
                continue
            filters = [(columns[0], "=", part)] if len(columns) == 1 and part is not None else None
            try:
                metrics = table.optimize.compact(
                    partition_filters=filters, target_size=target, commit_properties=properties
                )
            except CommitFailedError:
                # A run replaced this month meanwhile; its files are new, compact them next time.
                report.partitions_skipped.append(label)
                table.update_incremental()
                continue
            report.files_compacted += int(metrics.get("numFilesRemoved", 0))
            report.files_written_by_compaction += int(metrics.get("numFilesAdded", 0))
            if metrics.get("numFilesRemoved"):
                report.partitions_compacted.append(label)

    # Asked after compaction, which can take long, and right before the files are listed.
    now = now or dt.datetime.now(dt.timezone.utc)
    since = writing_since() if writing_since is not None else None
    retention = retention_sparing(config.retention_hours, since, now)
    report.retention_hours = retention
    vacuumed = table.vacuum(
        retention_hours=retention,
        dry_run=config.dry_run,
        enforce_retention_duration=not config.allow_short_retention,
        full=True,
        commit_properties=None if config.dry_run else properties,
    )
    report.files_vacuumed = len(vacuumed)

    fs, _ = filesystem_for(table_uri)
    stale = stale_staging_dirs(table_uri, now - dt.timedelta(hours=retention))
    if not config.dry_run:
        for directory in stale:
            fs.delete_dir(directory)
    report.staging_dirs_removed = len(stale)

    table.update_incremental()
    report.live_files_after = len(live_files(table))
    return report


def unfinished_runs(
    context: OpExecutionContext,
) -> tuple[dt.datetime | None, list[str]]:
    """When the oldest run of the instance that has not finished (other than this one) started —
    or, for one not started yet, now: it has written nothing — and those runs' ids."""
    records = context.instance.get_run_records(
        filters=RunsFilter(statuses=UNFINISHED_RUN_STATUSES)
    )
    now = dt.datetime.now(dt.timezone.utc)
    since: dt.datetime | None = None
    ids = []
    for record in records:
        if record.dagster_run.run_id == context.run_id:
            continue
        ids.append(record.dagster_run.run_id)
        if record.start_time is not None:
            started = dt.datetime.fromtimestamp(record.start_time, dt.timezone.utc)
        elif record.dagster_run.status == DagsterRunStatus.STARTING:
            started = record.create_timestamp.astimezone(dt.timezone.utc)
        else:
            started = now
        since = started if since is None else min(since, started)
    return since, ids


@op(
    out=Out(Nothing, description="Files removed and compacted, per table, in the metadata."),
    description=(
        "Compacts small files, vacuums unreferenced files older than the retention and removes "
        "stale staging directories, for every Delta table under the warehouse."
    ),
)
def maintain_delta_tables(
    context: OpExecutionContext, config: DeltaMaintenanceConfig, warehouse: Warehouse
):
    if config.retention_hours < DEFAULT_RETENTION_HOURS and not config.allow_short_retention:
        raise Failure(
            description=(
                f"Refusing a retention of {config.retention_hours} h: below "
                f"{DEFAULT_RETENTION_HOURS} h, files of a write still in progress could be "
                "removed before it commits, breaking the table. Set allow_short_retention: true "
                "only when no write can be running."
            ),
            allow_retries=False,
        )
    root = (
        Warehouse(root_uri=config.warehouse_dir).uri() if config.warehouse_dir else warehouse.uri()
    )
    if not config.storage_options:
        config = config.model_copy(update={"storage_options": warehouse.delta_storage_options()})
    tables = find_tables(root, MAX_TABLE_DEPTH)
    context.log.info(f"{len(tables)} Delta table(s) under {root}: {', '.join(tables) or '-'}")
    reports: dict[str, TableMaintenance] = {}
    failures: dict[str, str] = {}
    warned: set[str] = set()

    def writing_since() -> dt.datetime | None:
        since, ids = unfinished_runs(context)
        if since is not None and config.retention_hours < DEFAULT_RETENTION_HOURS and (
            set(ids) - warned
        ):
            warned.update(ids)
            context.log.warning(
                f"{len(ids)} run(s) not finished ({', '.join(i[:8] for i in ids)}), the oldest "
                f"since {since:%Y-%m-%d %H:%M:%S} UTC: files written since then may belong to a "
                "write in progress and are kept (the retention applied is in each table's report)."
            )
        return since

    for relative in tables:
        try:
            report = maintain_table(
                posixpath.join(root, relative),
                config,
                custom_metadata={"dagster_run_id": context.run_id, "dagster_job": JOB_NAME},
                writing_since=writing_since,
            )
        except Exception as error:  # one broken table must not stop the others' maintenance
            failures[relative] = f"{type(error).__name__}: {error}"
            context.log.error(f"Maintenance of {relative} failed: {failures[relative]}")
            continue
        reports[relative] = report
        context.log.info(f"{relative}: {asdict(report)}")
        context.log_event(
            AssetObservation(
                asset_key=AssetKey(relative.split("/")),
                description="delta_maintenance" + (" (dry run)" if config.dry_run else ""),
                metadata=report.metadata(),
            )
        )
    if failures:
        raise Failure(
            description=f"Maintenance failed for {', '.join(sorted(failures))}",
            metadata={"errors": MetadataValue.json(failures)},
        )
    return Output(
        None,
        metadata={
            "warehouse": MetadataValue.path(root),
            "dry_run": config.dry_run,
            "tables": MetadataValue.json({k: asdict(v) for k, v in reports.items()}),
            "files_vacuumed": sum(r.files_vacuumed for r in reports.values()),
            "files_compacted": sum(r.files_compacted for r in reports.values()),
            "staging_dirs_removed": sum(r.staging_dirs_removed for r in reports.values()),
        },
    )


@job(
    name=JOB_NAME,
    description=(
        "Housekeeping of every Delta table under the warehouse: compaction of small files, "
        "vacuum of unreferenced files (crash orphans, replaced files) and stale staging "
        f"directories older than the retention ({DEFAULT_RETENTION_HOURS} h by default)."
    ),
)
def delta_maintenance():
    maintain_delta_tables()


delta_maintenance_schedule = ScheduleDefinition(
    name=SCHEDULE_NAME,
    job=delta_maintenance,
    cron_schedule="0 3 * * 0",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description=(
        "Every Sunday at 03:00 UTC, runs delta_maintenance with its safe defaults. Stopped by "
        "default: turn it on once the warehouse holds data worth keeping tidy."
    ),
)
