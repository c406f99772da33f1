"""Bronze: the month's source file, typed, with every unusable line kept aside with its reason;
and bronze's own data-quality checks, computed from what the writes left in the Delta log.

The source is read once in the usual case. Spark's CSV reader types every line as it writes
bronze/events; meanwhile the driver counts the file's data lines from its raw bytes
(independently of any parser). When bronze/events then holds fewer rows for a month than its file
has data lines, that month's file is read a second time, as raw lines, to write
bronze/events_rejected with each rejected line's reason; otherwise its months are written empty.

The two checks need no table read: the rows each table holds per month come from the Delta log
(numRecords per file), the rest from the line count and the count of the rejected lines' pass.
No Spark observation rides on the parse: one measured a tenth of bronze's time.

- ``bronze_lines_accounted_for``: accepted rows + rejected rows = the file's data lines, and
  bronze/events_rejected holds exactly the lines the text pass rejected.
- ``bronze_rejected_share``: the share of rejected lines; WARN above one threshold, ERROR (which
  stops silver and gold) above another (defaults 0 % and 5 %).
- ``bronze_rows_in_line``: the month's accepted rows against the median of the months built
  before it, from bronze's Delta log (`medallion_assets.assets.in_line`).
"""


import datetime as dt
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Config,
    MetadataValue,
    Output,
    TableColumn,
    TableRecord,
    TableSchema,
    multi_asset,
)
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession

from medallion_assets.assets.in_line import in_line
from medallion_assets.assets.tables import (
    OWNERS,
    blocking_check,
    delta_table,
    month_evaluations,
)
from medallion_assets.delta.month_history import month_rows
from medallion_assets.io.delta_io_manager import NoRows
from medallion_assets.partitions import (
    InvalidPartitionKey,
    key_of_month_value,
    month_start,
    monthly_partitions,
)
from medallion_assets.resources.landing import (
    LandingDirectory,
    SourceFileError,
    SourceFingerprint,
    count_data_lines,
    estimated_rows,
    fingerprint_metadata,
)
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.resources.thresholds import QualityThresholds, check_thresholds
from medallion_assets.resources.warehouse import Warehouse
from medallion_assets.retries import (
    SPARK_RETRY_POLICY,
    deterministic_failure,
    stops_when_interrupted,
)
from medallion_assets.schema import (
    BRONZE_EVENTS_SCHEMA,
    BRONZE_REJECTED_SCHEMA,
    MONTH_COLUMN,
    SOURCE_CSV_OPTIONS,
    SOURCE_FIELDS_SCHEMA,
)
from medallion_assets.transforms import accepted_events, rejected_lines, valid_events

LANDING_EVENTS = ["landing", "events_csv"]
BRONZE_EVENTS = ["bronze", "events"]
BRONZE_REJECTED = ["bronze", "events_rejected"]


LINES_ACCOUNTED_FOR = "bronze_lines_accounted_for"
REJECTED_SHARE = "bronze_rejected_share"
ROWS_IN_LINE = "bronze_rows_in_line"

# The first node of the lineage: an external asset, which Dagster shows but never materializes.
# A definition rather than a bare `AssetSpec`: `load_assets_from_modules` loads definitions and
# leaves specs out, and a dependency on a spec nobody registers becomes an auto-created stub
# (group "default", no description, kind or owner).
landing_events_csv = AssetsDefinition(
    specs=[
        AssetSpec(
            key=LANDING_EVENTS,
            description=(
                "The month's source file as it lands in the landing directory "
                "(`2019-Oct.csv`, `2019-10.csv`, optionally `.gz`). Not built here: it arrives, "
                "and the landing sensor starts the month's run."
            ),
            partitions_def=monthly_partitions,
            group_name="landing",
            kinds={"csv"},
            owners=OWNERS,
        )
    ]
)


class BronzeConfig(Config):
    """One run's thresholds for the share of a month's lines that bronze may reject, in percent;
    unset, the `QualityThresholds` resource's (``$MEDALLION_REJECTED_WARN_PERCENT`` and
    ``$MEDALLION_REJECTED_FAIL_PERCENT``, 0 % and 5 % by default)."""

    warn_above_percent: float | None = Field(
        default=None, description="WARN above this share; default the thresholds resource's."
    )
    fail_above_percent: float | None = Field(
        default=None,
        description="ERROR (blocking) above this share; default the thresholds resource's.",
    )

    def thresholds(self, defaults: QualityThresholds) -> tuple[float, float]:
        warn = self.warn_above_percent
        fail = self.fail_above_percent
        warn = defaults.rejected_warn_percent if warn is None else float(warn)
        fail = defaults.rejected_fail_percent if fail is None else float(fail)
        try:
            check_thresholds(warn, fail)
        except ValueError as error:
            raise deterministic_failure(str(error)) from None
        return warn, fail


@multi_asset(
    outs={
        "events": delta_table(
            BRONZE_EVENTS,
            schema=BRONZE_EVENTS_SCHEMA,
            layer="bronze",
            description=(
                "The month's raw events, typed with a declared schema: event_time as a UTC "
                "timestamp, price as DECIMAL(12,2), ids as BIGINT, plus month, _source_file and "
                "_ingested_at. One Delta table partitioned by month."
            ),
        ),
        "events_rejected": delta_table(
            BRONZE_REJECTED,
            schema=BRONZE_REJECTED_SCHEMA,
            layer="bronze",
            description=(
                "Source lines that could not be parsed (wrong field count, bad number, bad "
                "timestamp, unknown event type, ...), each with the raw line and the reason."
            ),
        ),
    },
    deps=[landing_events_csv],
    check_specs=[
        blocking_check(
            LINES_ACCOUNTED_FOR,
            asset=BRONZE_EVENTS,
            description=(
                "Every data line of the month's source file is either in bronze/events or in "
                "bronze/events_rejected: accepted rows + rejected rows = data lines (the file's "
                "non-blank lines minus the header, counted from its bytes), and each table holds "
                "exactly the rows the parser sent it."
            ),
        ),
        blocking_check(
            REJECTED_SHARE,
            asset=BRONZE_EVENTS,
            description=(
                "Share of the month's lines that bronze rejected: WARN above the warning "
                "threshold (default 0 %), ERROR above the failing threshold (default 5 %), which "
                "stops silver and gold for the run."
            ),
        ),
        blocking_check(
            ROWS_IN_LINE,
            asset=BRONZE_EVENTS,
            description=(
                "The month's accepted rows against the median of the (up to 12) months built "
                "before it: WARN beyond the allowed deviation either way (default 50 %), ERROR "
                "on a drop beyond the failing one (default 80 %). Passes while fewer than 3 "
                "months were built before it."
            ),
        ),
    ],
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="bronze",
    pool="spark",
    retry_policy=SPARK_RETRY_POLICY,
)
@stops_when_interrupted
def bronze_events(
    context: AssetExecutionContext,
    config: BronzeConfig,
    spark: SparkSessionResource,
    landing: LandingDirectory,
    warehouse: Warehouse,
    thresholds: QualityThresholds,
):
    """Read each month of the run from the landing directory and parse it.

    A missing or unusable file fails the step before Spark reads anything, naming the file and
    the problem, without retries (the next attempt would find the same file).
    """
    warn, fail = config.thresholds(thresholds)
    months = list(context.partition_keys)
    paths = {key: _source_path(landing, key) for key in months}
    # Started for the files' size: a small month's JVM compiles less (`session_for`).
    session = spark.session_for(estimated_rows(paths.values()))
    ingested_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="line-count") as pool:
        records: DataFrame | None = None
        for key, path in paths.items():
            context.log.info(f"Reading {path} for {key}")
            typed = valid_events(
                read_source(session, path),
                month=month_start(key),
                source_file=path.name,
                ingested_at=ingested_at,
            )
            records = typed if records is None else records.unionByName(typed)
        assert records is not None
        # Counted on the driver while the executors parse: no Spark pass of its own. Started once
        # the plan is built: the count holds the GIL between its reads, and building the plan
        # (the first calls into a new JVM) competes with it for the GIL.
        line_counts = {key: pool.submit(count_data_lines, path) for key, path in paths.items()}
        fingerprints = {key: SourceFingerprint.of(path) for key, path in paths.items()}
        for key in months:
            for table in (BRONZE_EVENTS, BRONZE_REJECTED):
                context.add_asset_metadata(
                    source_file_metadata(key, fingerprints[key]), asset_key=table, partition_key=key
                )
        run_metadata = source_files_table(fingerprints) if len(months) > 1 else {}
        # Writing the accepted rows parses every line once. What the reader accepted is then in
        # the Delta log (numRecords per file): no observation rides on the parse, which measured
        # a tenth of bronze's time.
        yield Output(accepted_events(records), output_name="events", metadata=run_metadata)
        data_lines = {key: future.result() for key, future in line_counts.items()}
    accepted_rows = warehouse.month_row_counts(BRONZE_EVENTS, months)

    # A month whose data lines are not all in bronze/events has rejected lines (or lost ones,
    # which the check below then finds): only those months are read again, as raw lines.
    with_rejects = [k for k in months if accepted_rows[k] != data_lines[k]]
    rejected_counted = dict.fromkeys(months, 0)
    frame: DataFrame | NoRows
    if with_rejects:
        context.log.warning(
            "Rejected lines in " + ", ".join(with_rejects) + "; see bronze/events_rejected."
        )
        frames = [
            rejected_lines(
                session.read.text(str(paths[key])),
                month=month_start(key),
                source_file=paths[key].name,
            )
            for key in with_rejects
        ]
        frame = frames[0]
        for other in frames[1:]:
            frame = frame.unionByName(other)
        # Kept (the rejected lines only, a few at most), so that the count the text pass makes
        # and the write see the same rows, computed once.
        frame = frame.persist()
        for row in frame.groupBy(MONTH_COLUMN).count().collect():
            rejected_counted[key_of_month_value(row[MONTH_COLUMN])] = int(row["count"])
    else:
        # The usual case: no second pass over the source files. The months are still written,
        # empty, which replaces the rejects of an earlier run of the same months.
        context.log.info("No rejected lines.")
        frame = NoRows(BRONZE_REJECTED_SCHEMA)
    # Every line of the file but the header and blank lines, counted from its bytes; the rows
    # the typed reader accepted; the lines the text pass rejected.
    lines = {
        m: {
            "source_data_lines": data_lines[m],
            "accepted_rows": accepted_rows[m],
            "rejected_rows": rejected_counted[m],
        }
        for m in months
    }
    for month, counts in lines.items():
        context.add_asset_metadata(
            {name: MetadataValue.int(n) for name, n in counts.items()},
            asset_key=BRONZE_REJECTED,
            partition_key=month,
        )
    try:
        yield Output(
            frame,
            output_name="events_rejected",
            metadata={**run_metadata, **(lines_table(lines) if len(months) > 1 else {})},
        )
    finally:
        if isinstance(frame, DataFrame):
            frame.unpersist()

    rejected_rows = warehouse.month_row_counts(BRONZE_REJECTED, months)
    # What each pass counted: the typed reader's rows, and the lines the text pass rejected.
    counted = {m: {"accepted": accepted_rows[m], "rejected": rejected_counted[m]} for m in months}
    yield from month_evaluations(
        context,
        {
            m: lines_accounted_for(
                data_lines[m], counted[m], accepted_rows[m], rejected_rows[m]
            )
            for m in months
        },
    )
    yield from month_evaluations(
        context,
        {m: rejected_share(accepted_rows[m], rejected_rows[m], warn, fail) for m in months},
    )
    # Every month's rows as the log holds them after this write: the run's earlier months
    # count as history of its later ones.
    built = month_rows(warehouse.open_table(BRONZE_EVENTS), MONTH_COLUMN)
    yield from month_evaluations(
        context,
        {
            m: in_line(
                check_name=ROWS_IN_LINE,
                asset_key=BRONZE_EVENTS,
                what="accepted rows",
                month=m,
                values={**built, m: accepted_rows[m]},
                warn=thresholds.volume_warn_percent,
                fail_drop=thresholds.volume_fail_drop_percent,
            )
            for m in months
        },
    )


def readable_size(size: int) -> str:
    """A byte count as people read it: ``5.27 GB (5,268,930,162 bytes)``."""
    value, unit = float(size), "bytes"
    for larger in ("kB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    if unit == "bytes":
        return f"{size:,} bytes"
    return f"{value:.2f} {unit} ({size:,} bytes)"


def source_file_metadata(month: str, fingerprint: SourceFingerprint) -> dict[str, object]:
    """What a month's bronze materializations record of the file they were built from: its name,
    size and modification time as a reader sees them, and the fingerprint the landing sensor
    compares with the file it finds (`fingerprint_metadata`, for this month only)."""
    return {
        "source_file": MetadataValue.text(fingerprint.file),
        "source_size": MetadataValue.text(readable_size(fingerprint.size)),
        "source_modified": MetadataValue.timestamp(fingerprint.mtime_ns / 1e9),
        **fingerprint_metadata({month: fingerprint}),
    }


_SOURCE_FILES_SCHEMA = TableSchema(
    columns=[
        TableColumn("month", "string"),
        TableColumn("file", "string"),
        TableColumn("size", "string"),
        TableColumn("modified (UTC)", "string"),
    ]
)
_LINES_SCHEMA = TableSchema(
    columns=[
        TableColumn("month", "string"),
        TableColumn("source_data_lines", "int"),
        TableColumn("accepted_rows", "int"),
        TableColumn("rejected_rows", "int"),
    ]
)


def _modified(fingerprint: SourceFingerprint) -> str:
    moment = dt.datetime.fromtimestamp(fingerprint.mtime_ns / 1e9, dt.timezone.utc)
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def source_files_table(fingerprints: Mapping[str, SourceFingerprint]) -> dict[str, object]:
    """The run's months and their files, one row each: for the run's view of a range run (each
    month's materialization has its own file's entries)."""
    rows = [
        TableRecord(
            {
                "month": month,
                "file": fp.file,
                "size": readable_size(fp.size),
                "modified (UTC)": _modified(fp),
            }
        )
        for month, fp in sorted(fingerprints.items())
    ]
    return {"source_files_by_month": MetadataValue.table(rows, schema=_SOURCE_FILES_SCHEMA)}


def lines_table(lines: Mapping[str, Mapping[str, int]]) -> dict[str, object]:
    """Each month's lines and rows, one row per month, for the run's view of a range run."""
    rows = [TableRecord({"month": month, **counts}) for month, counts in sorted(lines.items())]
    return {"lines_by_month": MetadataValue.table(rows, schema=_LINES_SCHEMA)}


def read_source(session: SparkSession, path: Path) -> DataFrame:
    """A source file as Spark's CSV reader types it: `SOURCE_FIELDS_SCHEMA`, the first line taken
    as the header, a line it cannot type dropped (`rejected_lines` finds it again)."""
    return (
        session.read.options(**SOURCE_CSV_OPTIONS)
        .option("header", True)
        .schema(SOURCE_FIELDS_SCHEMA)
        .csv(str(path))
    )


def _source_path(landing: LandingDirectory, key: str) -> Path:
    try:
        path = landing.source_file(key)
        landing.check_header(path)
    except (SourceFileError, InvalidPartitionKey) as error:
        raise deterministic_failure(
            str(error),
            metadata={
                "month": key,
                "landing_dir": MetadataValue.path(str(landing.directory())),
                "error": type(error).__name__,
            },
        ) from error
    return path


def lines_accounted_for(
    data_lines: int,
    observed: Mapping[str, int] | None,
    accepted_rows: int,
    rejected_rows: int,
) -> AssetCheckResult:
    """One month: accepted + rejected = data lines of the file, and each table holds what its
    pass counted.

    ``observed``: what the passes over the file counted — ``accepted``, the rows the typed reader
    produced, and ``rejected``, the lines the text pass rejected (None when unknown).
    """
    problem = None
    if observed is None:
        problem = "Spark did not report the parser's counts"
    elif accepted_rows + rejected_rows != data_lines:
        problem = (
            f"{data_lines} lines in the file, {accepted_rows} + {rejected_rows} rows in the tables"
        )
    elif (observed["accepted"], observed["rejected"]) != (accepted_rows, rejected_rows):
        problem = (
            f"the parser accepted {observed['accepted']} and rejected {observed['rejected']}, "
            f"the tables hold {accepted_rows} and {rejected_rows}"
        )
    return AssetCheckResult(
        check_name=LINES_ACCOUNTED_FOR,
        asset_key=BRONZE_EVENTS,
        passed=problem is None,
        description=(
            f"Lines lost or duplicated: {problem}."
            if problem
            else "Every data line is accounted for."
        ),
        metadata={
            "source_data_lines": MetadataValue.int(data_lines),
            "accepted_rows": MetadataValue.int(accepted_rows),
            "rejected_rows": MetadataValue.int(rejected_rows),
        },
    )


def rejected_share(
    accepted_rows: int, rejected_rows: int, warn: float, fail: float
) -> AssetCheckResult:
    """One month: WARN above ``warn`` percent of its lines rejected, ERROR above ``fail``."""
    lines = accepted_rows + rejected_rows
    share = 100.0 * rejected_rows / lines if lines else 0.0
    if share > fail:
        severity = AssetCheckSeverity.ERROR
        description = f"Rejected share {share:.2f} % is above {fail:g} %."
    elif share > warn:
        severity = AssetCheckSeverity.WARN
        description = f"Rejected share {share:.2f} % is above {warn:g} %."
    else:
        severity, description = AssetCheckSeverity.ERROR, "Rejected share within thresholds."
    return AssetCheckResult(
        check_name=REJECTED_SHARE,
        asset_key=BRONZE_EVENTS,
        passed=share <= warn,
        severity=severity,
        description=description,
        metadata={
            "rejected_share_percent": MetadataValue.float(round(share, 4)),
            "rejected_rows": MetadataValue.int(rejected_rows),
            "warn_above_percent": MetadataValue.float(float(warn)),
            "fail_above_percent": MetadataValue.float(float(fail)),
        },
    )
