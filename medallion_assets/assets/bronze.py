"""Bronze: the month's source file, typed, with every unusable line kept aside with its reason."""


import datetime as dt
import threading
import uuid

from dagster import (
    AssetExecutionContext,
    AssetOut,
    BackfillPolicy,
    MetadataValue,
    Output,
    multi_asset,
)
from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from medallion_assets.partitions import (
    InvalidPartitionKey,
    monthly_partitions,
    months_in_window,
    partition_key_for,
)
from medallion_assets.resources.landing import LandingDirectory, SourceFileError
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.retries import SPARK_RETRY_POLICY, deterministic_failure
from medallion_assets.schema import BRONZE_REJECTED_SCHEMA
from medallion_assets.transforms import REASON, accepted_events, parse_events, rejected_events

BRONZE_EVENTS = ["bronze", "events"]
BRONZE_REJECTED = ["bronze", "events_rejected"]
PARTITIONED_TABLE = {"partition_expr": "month"}


@multi_asset(
    outs={
        "events": AssetOut(
            key=BRONZE_EVENTS,
            description=(
                "The month's raw events, typed with a declared schema: event_time as a UTC "
                "timestamp, price as DECIMAL(12,2), ids as BIGINT, plus month, _source_file and "
                "_ingested_at. One Delta table partitioned by month."
            ),
            metadata=PARTITIONED_TABLE,
            kinds={"spark", "delta"},
        ),
        "events_rejected": AssetOut(
            key=BRONZE_REJECTED,
            description=(
                "Source lines that could not be parsed (wrong field count, bad number, bad "
                "timestamp, unknown event type, ...), each with the raw line and the reason."
            ),
            metadata=PARTITIONED_TABLE,
            kinds={"spark", "delta"},
        ),
    },
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="bronze",
    pool="spark",
    retry_policy=SPARK_RETRY_POLICY,
)
def bronze_events(
    context: AssetExecutionContext, spark: SparkSessionResource, landing: LandingDirectory
):
    """Read each month of the run from the landing directory and parse it.

    A missing or unusable file fails the step before Spark reads anything, naming the file and
    the problem, without retries (the next attempt would find the same file).

    The source is read once: writing bronze/events parses every line, and Spark observations
    count, on the way, each month's data lines (independently of the parser) and how many the
    parser accepted and rejected. Only when some line was rejected is the file read a second time
    to write bronze/events_rejected; otherwise its months are written empty. The counts land in
    the materialization metadata of bronze/events_rejected (known only once bronze/events is
    written), where the data-quality checks compare them with what the tables hold.
    """
    session = spark.spark_session
    ingested_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    parsed: DataFrame | None = None
    observations: dict[str, tuple[Observation, Observation]] = {}
    source_files: dict[str, str] = {}
    for month in months_in_window(context.partition_time_window):
        key = partition_key_for(month)
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
        context.log.info(f"Reading {path} for {key}")
        source_files[key] = path.name
        line_count = Observation(_name("lines", key))
        parse_count = Observation(_name("parsed", key))
        lines = session.read.text(str(path)).observe(
            line_count, F.count_if(F.trim(F.col("value")) != "").alias("non_blank_lines")
        )
        month_rows = parse_events(
            lines, month=month, source_file=path.name, ingested_at=ingested_at
        ).observe(
            parse_count,
            F.count_if(F.col(REASON).isNull()).alias("accepted"),
            F.count_if(F.col(REASON).isNotNull()).alias("rejected"),
        )
        observations[key] = (line_count, parse_count)
        parsed = month_rows if parsed is None else parsed.unionByName(month_rows)
    assert parsed is not None
    source_metadata = {"source_files": MetadataValue.json(source_files)}
    # Writing the accepted rows parses every line once, which fills the observations.
    yield Output(accepted_events(parsed), output_name="events", metadata=source_metadata)
    counts = {key: _observed(line, parse) for key, (line, parse) in observations.items()}
    metadata = dict(source_metadata)
    if all(c is not None for c in counts.values()):
        metadata.update(
            {
                # Every line of the file but the header and blank lines.
                "source_data_lines": MetadataValue.json(
                    {k: c["non_blank_lines"] - 1 for k, c in counts.items()}
                ),
                "accepted_rows": MetadataValue.json({k: c["accepted"] for k, c in counts.items()}),
                "rejected_rows": MetadataValue.json({k: c["rejected"] for k, c in counts.items()}),
            }
        )
        rejected = sum(c["rejected"] for c in counts.values())
    else:
        context.log.warning("Spark did not report the line counts; the line-count check will fail.")
        rejected = None
    if rejected == 0:
        # The usual case: no second pass over the source files. The months are still written,
        # empty, which replaces the rejects of an earlier run of the same months.
        context.log.info("No rejected lines.")
        frame = session.createDataFrame([], BRONZE_REJECTED_SCHEMA)
    else:
        if rejected:
            context.log.warning(f"{rejected} rejected lines; see bronze/events_rejected.")
        frame = rejected_events(parsed)
    yield Output(frame, output_name="events_rejected", metadata=metadata)


def _name(kind: str, key: str) -> str:
    # Observation names must be unique within a plan and within the session's lifetime.
    return f"bronze_{kind}_{key.replace('-', '_')}_{uuid.uuid4().hex[:8]}"


_OBSERVATION_TIMEOUT_SECONDS = 300.0


def _observed(*observations: Observation) -> dict | None:
    """The merged metrics of observations whose query has run, or None if Spark never reports them
    (`Observation.get` would otherwise block forever)."""
    result: dict = {}
    done = threading.Event()

    def collect() -> None:
        for observation in observations:
            result.update(observation.get)
        done.set()

    worker = threading.Thread(target=collect, daemon=True)
    worker.start()
    worker.join(_OBSERVATION_TIMEOUT_SECONDS)
    return result if done.is_set() else None
