"""The Spark session of a run: a classic local session (job cluster), or a Spark Connect client.

dagster-pyspark's resources create a session and never stop it, and Dagster's default
multiprocess executor would start one JVM per step. This resource extends
`dagster_pyspark.PySparkResource` (so code written against it keeps working) and changes its
lifecycle: a run owns exactly one session, created on first use (a run or a sensor evaluation that
touches no Spark pays no JVM start, as with dagster-pyspark's `LazyPySparkResource`), shared by
all the run's steps (the project runs Spark assets with the in-process executor), and ended when
the run ends.

Where the session runs:

* ``remote`` set (``$MEDALLION_SPARK_REMOTE``, see `medallion_assets.settings`), e.g.
  ``sc://127.0.0.1:15002``: the run is a Spark Connect client of an endpoint that is already
  up — the warm local server `make dev` starts, or a cluster's Connect endpoint, the way
  Databricks Connect users work. No run pays a JVM start. At run end the resource releases its
  own server-side session (temporary views, cached plans, observations) and closes the
  channel; the server and its SparkContext keep serving the next run. dagster-pyspark has no
  Connect support, hence this branch.
* Otherwise a classic session on ``master`` (``$MEDALLION_SPARK_MASTER``, ``local[*]`` by default),
  started for the run and stopped when it ends — like a Databricks job cluster, never an idle
  interactive one. This is what ``make run`` and the CLI use. If a classic session already exists in
  the process (a notebook, or a test suite's shared session), the run reuses it and leaves it
  running: it stops only what it started.

A Connect endpoint that is down or unreachable fails the step with `SparkConnectUnavailable`,
naming the endpoint, after a few seconds rather than the Connect client's ten minutes of
reconnecting; the step's retry policy (`medallion_assets.retries`) then retries it like any other
transient Spark failure, each attempt with a fresh client.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from dagster import EnvVar, InitResourceContext, get_dagster_logger
from dagster_pyspark import PySparkResource
from pydantic import Field, PrivateAttr
from pyspark.sql import SparkSession

from medallion_assets.resources import class_archive
from medallion_assets.settings import Settings

REMOTE_ENV = Settings.env_name("spark_remote")
DEFAULT_MASTER = Settings.model_fields["spark_master"].default

# Settings every session gets, whatever the master: what the tables hold and how they are laid
# out depend on them, not only how fast they are written.
REQUIRED_SQL_CONF: dict[str, str] = {
    # Timestamps are UTC instants end to end; Delta readers expect INT64 micros, not INT96.
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # An aggregation whose input is already sorted by its key streams over it instead of hashing
    # it, and keeps the order: silver's de-duplication, whose files then hold each user's events
    # in time order (`transforms.grouped_events`). Without it the same rows come out in hash order.
    "spark.sql.execution.replaceHashWithSortAgg": "true",
}

# Session settings a Connect client sets on its own server-side session. Process-wide settings
# (memory, UI, Hadoop output committer) belong to whoever starts the server: see
# `medallion_assets.tools.dev.CONNECT_SERVER_CONF` for the local one.
CONNECT_SESSION_CONF: dict[str, str] = {
    **REQUIRED_SQL_CONF,
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
}

# How long the Connect client itself retries an unreachable endpoint before the step fails and
# Dagster's retry policy takes over: 0.1 + 0.4 + 1.6 + 2 s of backoff. The client's default is
# about ten minutes, during which a run would hang with no word of what is wrong.
CONNECT_CLIENT_RETRIES = {"max_retries": 4, "initial_backoff": 100, "max_backoff": 2000}


# The Connect sessions this module created and that are still open, by endpoint: the resource
# instances of one run (the assets' and the IO manager's) share one, as they share one classic
# session, so DataFrames of one run never mix two server-side sessions.
_OPEN_CONNECT_SESSIONS: dict[str, SparkSession] = {}

# The driver JVM's quick compiler only (C1, no C2). A local JVM runs the tasks, and on a small
# input the run is over before C2's optimised code pays back the CPU its compilations take from
# them: a 1,000-row month through the CLI took 8.1 s with it against 10.2 s without, a 200,000-row
# month 11.0 against 13.3 s, a 1M-row month 18.4 against 19.3 s; a 5M-row month took 55 s with it
# against 35 s without (2 cores; whole processes alternated, 2-3 rounds each).
QUICK_JIT_OPTION = "-XX:TieredStopAtLevel=1"
# Up to this many rows a run's first Spark step starts its local JVM with `QUICK_JIT_OPTION`:
# about half the measured break-even, which lies near a million rows.
SMALL_INPUT_ROWS = 500_000
_JIT_OPTIONS = ("TieredStopAtLevel", "TieredCompilation")
# And its queries run as planned, over one shuffle partition: for so few rows adaptive
# execution's coalescing leaves one reduce task per shuffle anyway, and its re-planning between
# stages is all it adds. A 1,000-row month through the CLI: 7.85 against 8.25 s; a 400,000-row
# month 14.2-14.6 against 14.9-15.6 s (2 alternated rounds each, with the quick JIT on both sides).
SMALL_INPUT_CONF: dict[str, str] = {
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.shuffle.partitions": "1",
}


def quick_jit(master: str, expected_rows: int | None, small_input_rows: int) -> bool:
    """Whether a new session's JVM starts with `QUICK_JIT_OPTION`: on a local master (whose JVM
    runs the tasks), when the first step's input is known and at most ``small_input_rows`` rows
    (0: never)."""
    return (
        master.startswith("local")
        and expected_rows is not None
        and small_input_rows > 0
        and expected_rows <= small_input_rows
    )


def with_java_option(config: dict[str, str], option: str) -> dict[str, str]:
    """``config`` with ``option`` added to the driver's JVM options, unless those already choose
    the JIT compilers themselves (a deployment's own choice is kept)."""
    current = config.get("spark.driver.extraJavaOptions", "")
    if any(name in current for name in _JIT_OPTIONS):
        return config
    return {**config, "spark.driver.extraJavaOptions": f"{current} {option}".strip()}


def stop_classic(session: SparkSession) -> None:
    """Stop a classic session and its JVM, without the wait PySpark adds after it.

    ``SparkContext.stop()`` stops the JVM and then shuts down the Python-side server that received
    accumulator updates from it; `socketserver`'s ``shutdown()`` waits for that server's loop, which
    looks for the request only every 0.5 s, so every run's end waited up to half a second for a
    server that, the JVM gone, can receive nothing more. It is shut down on a background thread
    instead. (PySpark keeps the server in ``SparkContext._accumulatorServer``; without it the
    session stops exactly as before.)
    """
    context = session.sparkContext
    server = getattr(context, "_accumulatorServer", None)
    if server is not None:
        context._accumulatorServer = None
    try:
        session.stop()
    finally:
        if server is not None:
            threading.Thread(
                target=server.shutdown, name="spark-accumulator-server-shutdown", daemon=True
            ).start()


class SparkConnectUnavailable(RuntimeError):
    """The Spark Connect endpoint did not answer. Transient (a server restarting, a network
    blip), so the step's retry policy applies."""


def local_defaults(master: str, archive: str | None = None) -> dict[str, str]:
    """Defaults for a laptop or a single CI machine; each can be overridden by `spark_config`.
    ``archive``: the driver's class archive to start from, if any (`class_archive`)."""
    defaults = {
        **REQUIRED_SQL_CONF,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": "WARN",
        # Adaptive execution coalesces these per stage; a small default suits a few cores.
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.adaptive.enabled": "true",
        # Spark's _SUCCESS markers and summary files are meaningless in a Delta table.
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.hadoop.parquet.summary.metadata.level": "NONE",
        # PySpark otherwise records the Python call site of every column function on the JVM
        # (about seven round trips through py4j per call), so that an error raised while a job
        # runs can name the line that built the failing expression. Building bronze's plan took
        # 2,100 round trips with it and 610 without (0.45 s of a cold session); the error itself,
        # with the expression that failed, is reported either way.
        "spark.python.sql.dataFrameDebugging.enabled": "false",
    }
    java_options = []
    if master.startswith("local"):
        defaults.update(
            {
                "spark.driver.memory": "2g",
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
            }
        )
        # In local mode the driver JVM runs the tasks. A run is a batch job: the throughput
        # collector beats the default G1, whose concurrent threads take CPU from the tasks on a
        # machine of few cores (measured 1.2-2 s less per bronze or silver step of a 5M-line
        # month on 2 cores).
        java_options.append("-XX:+UseParallelGC")
    # The driver JVM (in this process, whatever the master) starts from the environment's class
    # archive when `make spark-archive` built one: see `class_archive`.
    archive_option = class_archive.java_options(archive)
    if archive_option:
        java_options.append(archive_option)
    if java_options:
        defaults["spark.driver.extraJavaOptions"] = " ".join(java_options)
    return defaults


def shown_endpoint(remote: str) -> str:
    """``remote`` as logs and errors show it: ``sc://host:port``, without the parameters after
    ``;`` (``token=``, ``user_id=``), which may be credentials."""
    return remote.split(";", 1)[0].rstrip("/")


def connect_session(remote: str, conf: dict[str, str]) -> SparkSession:
    """A new Spark Connect session on `remote`, with `conf` set on it (which checks it answers).

    A new session rather than the process's active one: each run gets its own server-side
    session, so nothing one run sets or caches is seen by the next.
    """
    # Import here: the Connect client needs the `pyspark[connect]` extra (grpcio, protobuf,
    # zstandard), which a classic session does not.
    from pyspark.sql.connect.client.retries import DefaultPolicy

    # PySpark's public builder: with `remote` it creates a Connect session and switches this
    # process's `functions`, `Column` and `Observation` to their Connect implementations (its
    # SPARK_CONNECT_MODE_ENABLED marker; a process is either a classic or a Connect client).
    session = SparkSession.builder.remote(remote).create()
    session.client.set_retry_policies([DefaultPolicy(**CONNECT_CLIENT_RETRIES)])
    try:
        for key, value in conf.items():
            session.conf.set(key, value)
    except Exception as error:
        _close_quietly(session)
        raise _explained(error, remote) from error
    return session


def check_answers(session: SparkSession, remote: str) -> None:
    """One round trip to the server (a few milliseconds on a warm local server); raises
    `SparkConnectUnavailable` naming `remote` when it does not answer."""
    try:
        session.version  # noqa: B018 - reading the property is the request
    except Exception as error:
        raise _explained(error, remote) from error


def _explained(error: Exception, remote: str) -> Exception:
    """`SparkConnectUnavailable` naming the endpoint when `error` says it is unreachable, else
    `error` itself."""
    code = getattr(error, "getGrpcStatusCode", lambda: None)()
    text = str(error)
    if code != grpc.StatusCode.UNAVAILABLE and "StatusCode.UNAVAILABLE" not in text:
        return error
    detail = next((line.strip() for line in text.splitlines() if "details" in line), text[:300])
    return SparkConnectUnavailable(
        f"The Spark Connect server at {shown_endpoint(remote)} (${REMOTE_ENV}) does not answer "
        f"({detail}). "
        "Is it running? `make dev` starts one on sc://127.0.0.1:15002; without the variable "
        "runs use a local Spark session instead."
    )


def _close_quietly(session: SparkSession) -> None:
    """Close the client's channel without asking the (unreachable) server to release anything."""
    # Best effort on a connection that is already broken.
    with contextlib.suppress(Exception):
        session.client.close()


class SparkSessionResource(PySparkResource):
    """One Spark session per Dagster run, created lazily and ended when the run ends.

    ``remote`` set: the run is a Spark Connect client of that endpoint and ``master`` is not
    used. ``definitions.build_defs`` fills every field from `medallion_assets.settings`;
    ``spark_config`` overrides any default (e.g. ``{"spark.ui.enabled": "true"}``; with Connect,
    only session settings such as ``spark.sql.*`` apply).
    """

    master: str = Field(default=DEFAULT_MASTER, description="Spark master URL.")
    remote: str | None = Field(
        default=None,
        description="Spark Connect endpoint (sc://host:port). When set, the run is a Connect "
        "client and `master` is not used.",
    )
    class_archive: str | None = Field(
        default=None,
        description="The driver JVM's class-data-sharing archive, used when the file exists.",
    )
    app_name: str = Field(default="medallion_assets", description="Spark application name.")
    spark_config: dict[str, Any] = Field(
        default_factory=dict, description="Spark settings that override the project's defaults."
    )
    small_input_rows: int = Field(
        default=SMALL_INPUT_ROWS,
        description="A local session started by a step that expects at most this many input rows "
        "runs its JVM with the quick JIT compiler only and its queries over one shuffle partition "
        "without adaptive re-planning, which saves about 2.5 s on a small month and would cost a "
        "large one far more. 0: never.",
    )
    _owns_session: bool = PrivateAttr(default=False)
    _expected_rows: int | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: Settings, **fields: Any) -> SparkSessionResource:
        """The resource a run gets under ``settings``: their master or Connect endpoint, and
        this environment's class archive unless they turn it off."""
        archive = class_archive.archive_path(settings.spark_class_archive, settings.java_home)
        return cls(
            master=settings.spark_master,
            # From the environment, an EnvVar: the UI shows the variable's name, not its value.
            remote=settings.resource_value("spark_remote"),
            class_archive=str(archive) if archive else None,
            **fields,
        )

    def resolved_remote(self) -> str | None:
        remote = self.remote
        if isinstance(remote, EnvVar):  # a resource used outside a run, not configured by Dagster
            remote = remote.get_value()
        return remote or None

    def resolved_master(self) -> str:
        return self.master or DEFAULT_MASTER

    def effective_config(self) -> dict[str, str]:
        if self.resolved_remote():
            config = dict(CONNECT_SESSION_CONF)
        else:
            config = local_defaults(self.resolved_master(), self.class_archive)
        config.update({k: str(v) for k, v in self.spark_config.items()})
        return config

    def session_config(self, expected_rows: int | None = None) -> dict[str, str]:
        """The settings a new classic session starts with for a step that expects
        ``expected_rows`` input rows (None: unknown): `effective_config`; for a small input
        (`quick_jit`) with `QUICK_JIT_OPTION` and `SMALL_INPUT_CONF`, except where `spark_config`
        sets its own."""
        config = self.effective_config()
        if quick_jit(self.resolved_master(), expected_rows, self.small_input_rows):
            config = with_java_option(config, QUICK_JIT_OPTION)
            config.update(
                {k: v for k, v in SMALL_INPUT_CONF.items() if k not in self.spark_config}
            )
        return config

    def _init_session(self) -> None:
        remote = self.resolved_remote()
        if remote:
            self._init_connect_session(remote)
            return
        if self._spark_session is not None:
            return
        existing = SparkSession.getActiveSession()
        if existing is not None:
            self._owns_session = False
            for key, value in REQUIRED_SQL_CONF.items():
                existing.conf.set(key, value)
            self._spark_session = existing
            get_dagster_logger().info("Spark: the session already running in this process.")
            return
        master = self.resolved_master()
        if master.startswith("local"):
            # A local session serves this machine only: its executor names itself by loopback,
            # not by the first network interface. Spark has no setting for that address but the
            # JVM's environment variable SPARK_LOCAL_IP (``spark.driver.host`` and
            # ``bindAddress`` cover the driver's endpoints only), and PySpark starts the JVM with
            # this process's environment, so the variable is passed through it. Without it, on a
            # host whose name resolves to 127.0.0.1, Spark warns twice and names the local
            # executor by the machine's external address. A deployment's own value is kept.
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        started = time.monotonic()
        config = self.session_config(self._expected_rows)
        builder = SparkSession.builder.master(master).appName(self.app_name)
        for key, value in config.items():
            builder = builder.config(key, value)
        self._spark_session = builder.getOrCreate()
        self._owns_session = True
        # What the small input changed, as it was applied (a deployment's own settings win).
        base = self.effective_config()
        changed = [f"{k}={v}" for k, v in sorted(config.items()) if base.get(k) != v]
        small = (
            f", set for a small input (about {self._expected_rows:,} rows expected: "
            f"{'; '.join(changed)})"
            if changed
            else ""
        )
        get_dagster_logger().info(
            f"Spark: a new session on {master} for this run{small}, started in "
            f"{time.monotonic() - started:.1f} s; stopped when the run ends."
        )

    def _init_connect_session(self, remote: str) -> None:
        """The run's Connect client, checked to answer each time a step asks for it.

        The check costs a round trip of a few milliseconds and buys two things: a server that
        went away fails the step at once with a message naming it (then the step's retry policy
        applies), and a server that was restarted since the last step, which no longer knows
        this client's session, is met with a new session instead of a failed step.
        """
        current = self._spark_session
        if current is None or current.is_stopped:
            current = _OPEN_CONNECT_SESSIONS.get(remote)
            self._owns_session = False
        if current is not None and not current.is_stopped:
            try:
                check_answers(current, remote)
                self._spark_session = current
                return
            except SparkConnectUnavailable:
                _close_quietly(current)
                self._spark_session = None
                raise
            except Exception:
                # The server was restarted and no longer knows this session: start a new one.
                _close_quietly(current)
        started = time.monotonic()
        self._spark_session = connect_session(remote, self.effective_config())
        self._owns_session = True
        _OPEN_CONNECT_SESSIONS[remote] = self._spark_session
        get_dagster_logger().info(
            f"Spark: a Spark Connect client of {shown_endpoint(remote)} (server-side session "
            f"{self._spark_session.session_id}), ready in {time.monotonic() - started:.2f} s."
        )

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Nothing at run start: the session is created by the first step that asks for it."""

    @property
    def spark_session(self) -> SparkSession:
        self._init_session()
        return self._spark_session

    def session_for(self, rows: int | Callable[[], int | None] | None) -> SparkSession:
        """The run's session, as `spark_session`; when this call is the one that starts a local
        JVM, ``rows`` (the rows the step is about to read, estimated; or a function that gives
        them, called only then) decides its JIT compilers (`quick_jit`). A session already
        running, or a Connect endpoint, is used as it is."""
        if (
            self._spark_session is None
            and not self.is_remote
            and SparkSession.getActiveSession() is None
        ):
            self._expected_rows = rows() if callable(rows) else rows
        return self.spark_session

    @property
    def spark_context(self):
        """The classic session's SparkContext; a Connect client has none (use the session)."""
        return self.spark_session.sparkContext

    @property
    def owns_session(self) -> bool:
        return self._owns_session

    @property
    def is_remote(self) -> bool:
        return self.resolved_remote() is not None

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Stop what the run started: the classic session (its JVM), or, for Connect, this run's
        client and its server-side session — never the shared server."""
        session = self._spark_session
        if session is not None and self.owns_session:
            if self.is_remote:
                session.stop()
            else:
                stop_classic(session)
            remote = self.resolved_remote()
            if remote and _OPEN_CONNECT_SESSIONS.get(remote) is session:
                del _OPEN_CONNECT_SESSIONS[remote]
        self._spark_session = None
        self._expected_rows = None
