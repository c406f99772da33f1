"""Dagster's PostgreSQL run and event-log storage, with a clear, recorded failure when the
database goes away mid-run.

A team deployment keeps runs, the event log and schedules in PostgreSQL (``deploy/dagster.yaml``).
dagster-postgres is used as it is, with one gap filled: what a run does when the database stops
answering while the run is in progress. With stock dagster-postgres the run process retries each
connection for a few seconds, raises ``too many retries for DB connection`` on every event it then
tries to write (its step's failure, its run's failure) and exits about 45 s after the outage began,
its failure recorded nowhere. The code server notices the dead process only by asking the database.
If the database is back within seconds of that, the run is marked failed as a process that
"unexpectedly exited", without a word of the database. If it is still down, the code server's thread
that does this dies with the error, so the run stays ``STARTED`` when the database is back — with no
failure message, holding its place in the run queue and the ``spark`` pool — and run monitoring,
which cannot ask the default run launcher whether a run's process lives, ends it only at
``max_runtime_seconds`` (6 h); from then on that code server notices no dead run process at all.
(``test_team_deployment`` shows both the stock and the guarded outcome of a 90 s outage.)

`GuardedRunStorage` and `GuardedEventLogStorage` are dagster-postgres's run and event-log
storages (same configuration, same tables) whose connections, when the database cannot be
reached, raise `InstanceStorageUnavailableError`: a message naming Dagster's instance storage and
the server (never the password), saying what happens to the run and the tables. When a run process
(not the webserver or the daemon) fails to record one of its own events, that error fails the
run's step at once — no further step runs, so no further Delta commit is made that Dagster would
not know about — and from then on the process waits for the database to come back (up to
``failure_record_wait_seconds``) so that the step's and the run's failure, with that message, are
written to the run's history instead of being lost, and the process only exits afterwards. The
webserver and the daemon are unchanged: they report the error and retry on their own.

They are configured as the instance's ``run_storage`` and ``event_log_storage`` (the form
dagster-postgres documents for configuring the storages one by one), the schedule storage being
dagster-postgres's own. Only public names are used: the storages' public ``connect`` /
``run_connection`` / ``index_connection`` and ``store_event`` / ``store_event_batch`` are wrapped,
and each class's ``from_config_value`` builds itself rather than dagster-postgres's class.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import sqlalchemy
import sqlalchemy.exc
from dagster import DagsterError, DagsterEventType, EventLogEntry, Field, IntSource
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage
from dagster_postgres.utils import (
    DagsterPostgresException,
    create_pg_engine,
    get_token_provider_from_config,
    pg_config,
    pg_url_from_config,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

DEFAULT_FAILURE_RECORD_WAIT_SECONDS = 600
RECONNECT_EVERY_SECONDS = 2.0

# Errors that mean "the server did not answer", as opposed to a query that failed.
_CONNECTION_ERRORS = (
    DagsterPostgresException,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
)

# Events only the process executing a run writes. The daemon and the webserver write run-level
# events too (enqueued, launched, failed by monitoring), which must not make them wait.
_RUN_PROCESS_EVENTS = {
    DagsterEventType.RUN_START,
    DagsterEventType.RUN_SUCCESS,
}


class InstanceStorageUnavailableError(DagsterError):
    """Dagster's instance storage (its PostgreSQL database) cannot be reached.

    A ``DagsterError``, not a plain exception, because of where it is raised: an event written from
    inside a step (a materialization, a check result, a log of the IO manager) fails inside the
    step's user-code boundary, and Dagster treats any plain exception there as the step's own fault,
    which the Spark retry policy would retry — a retry that then sees the database back and lets
    the run succeed as if nothing had happened, or, with the database still down, waits out every
    backoff first. Dagster re-raises its own errors past the retry policy, so the step fails at
    once, whichever event was the first to be lost.
    """


def describe_database(postgres_url: str) -> str:
    """``PostgreSQL database 'dagster' at db.internal:5432 (user dagster)``: no password."""
    url = make_url(postgres_url)
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    user = f" (user {url.username})" if url.username else ""
    return f"PostgreSQL database '{url.database}' at {where}{user}"


def unavailable_message(postgres_url: str, cause: BaseException) -> str:
    # dagster-postgres wraps SQLAlchemy's error, which wraps the driver's: the driver says it best.
    inner = cause.__cause__ if isinstance(cause, DagsterPostgresException) else cause
    reason = str(getattr(inner, "orig", None) or inner or cause).strip().splitlines()
    return (
        f"Dagster's instance storage is unreachable: the {describe_database(postgres_url)} that "
        "holds the runs and the event log (`run_storage` and `event_log_storage` in the "
        "instance's dagster.yaml, DAGSTER_POSTGRES_URL) did not answer: "
        f"{reason[0] if reason else type(cause).__name__}."
    )


# Added to the error when it stops a run.
RUN_STOPS = (
    "The run cannot record its progress, so it stops before its next step; every Delta table "
    "keeps its last committed version. Run the partition again once the database is back."
)


class _RunFailureRecording:
    """Process-wide: after a run process lost the database, wait for it before each connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: float | None = None

    def start(self, wait_seconds: int) -> None:
        with self._lock:
            if self._until is None:
                self._until = time.monotonic() + wait_seconds
                sys.stderr.write(
                    "Dagster's instance storage is unreachable: waiting up to "
                    f"{wait_seconds} s for it to come back to record this run's failure.\n"
                )

    def wait_for(self, reachable: Callable[[], bool]) -> None:
        while True:
            with self._lock:
                until = self._until
            if until is None:
                return
            if reachable():
                with self._lock:
                    self._until = None
                return
            if time.monotonic() >= until:
                return  # give up waiting; the call fails with the clear error
            time.sleep(RECONNECT_EVERY_SECONDS)


_RECORDING = _RunFailureRecording()


class _DatabaseGuard:
    """What a storage's calls go through: wait while this run process records a lost run, and
    turn "the server does not answer" into `InstanceStorageUnavailableError`."""

    def __init__(self, postgres_url: str, token_provider: Any = None):
        self.postgres_url = postgres_url
        # Its own engine, without a pool: it only asks whether the server answers.
        self._probe = create_pg_engine(postgres_url, token_provider, poolclass=NullPool)

    def reachable(self) -> bool:
        try:
            self._probe.connect().close()
            return True
        except sqlalchemy.exc.SQLAlchemyError:
            return False

    @contextmanager
    def calls(self) -> Iterator[None]:
        _RECORDING.wait_for(self.reachable)
        try:
            yield
        except _CONNECTION_ERRORS as exc:
            # An OperationalError can also be a query's own failure (a deadlock, a timeout) on a
            # server that is up: only a server that does not answer is reported as unreachable.
            if isinstance(exc, DagsterPostgresException) or not self.reachable():
                raise InstanceStorageUnavailableError(
                    unavailable_message(self.postgres_url, exc)
                ) from exc
            raise

    @contextmanager
    def connection(
        self, connect: Callable[[], AbstractContextManager[Connection]]
    ) -> Iterator[Connection]:
        with self.calls(), connect() as conn:
            yield conn


def _storage_args(config_value: Mapping[str, Any]) -> dict[str, Any]:
    """dagster-postgres's own reading of its configuration."""
    return {
        "postgres_url": pg_url_from_config(config_value),
        "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
        "token_provider": get_token_provider_from_config(config_value),
    }


class GuardedRunStorage(PostgresRunStorage):
    """dagster-postgres's run storage whose connections go through `_DatabaseGuard`."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: Any = None,
        token_provider: Any = None,
    ):
        self._outage_guard = _DatabaseGuard(postgres_url, token_provider)
        super().__init__(
            postgres_url,
            should_autocreate_tables,
            inst_data=inst_data,
            token_provider=token_provider,
        )

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> GuardedRunStorage:
        return cls(inst_data=inst_data, **_storage_args(config_value))

    def connect(self) -> AbstractContextManager[Connection]:
        return self._outage_guard.connection(super().connect)


class GuardedEventLogStorage(PostgresEventLogStorage):
    """dagster-postgres's event-log storage whose connections and event writes go through
    `_DatabaseGuard`; a run process that loses one of its own events stops its run."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: Any = None,
        token_provider: Any = None,
        failure_record_wait_seconds: int = DEFAULT_FAILURE_RECORD_WAIT_SECONDS,
    ):
        self._outage_guard = _DatabaseGuard(postgres_url, token_provider)
        self._failure_record_wait_seconds = failure_record_wait_seconds
        super().__init__(
            postgres_url,
            should_autocreate_tables,
            inst_data=inst_data,
            token_provider=token_provider,
        )

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            **pg_config(),
            "failure_record_wait_seconds": Field(
                IntSource,
                is_required=False,
                default_value=DEFAULT_FAILURE_RECORD_WAIT_SECONDS,
                description="Seconds a run process that lost the database waits for it to "
                "record the run's failure.",
            ),
        }

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> GuardedEventLogStorage:
        return cls(
            inst_data=inst_data,
            failure_record_wait_seconds=config_value.get(
                "failure_record_wait_seconds", DEFAULT_FAILURE_RECORD_WAIT_SECONDS
            ),
            **_storage_args(config_value),
        )

    def run_connection(self, run_id: str | None = None) -> AbstractContextManager[Connection]:
        connect = super().run_connection
        return self._outage_guard.connection(lambda: connect(run_id))

    def index_connection(self) -> AbstractContextManager[Connection]:
        return self._outage_guard.connection(super().index_connection)

    def _stop_run(
        self, events: Sequence[EventLogEntry], error: InstanceStorageUnavailableError
    ) -> InstanceStorageUnavailableError:
        """The error to raise: if a run process lost one of its own events, the run stops (and
        this process waits for the database before its next connection). A batch written event
        by event has stopped it already."""
        if RUN_STOPS in str(error):
            return error
        for event in events:
            dagster_event = event.dagster_event
            if dagster_event is not None and (
                dagster_event.step_key is not None
                or dagster_event.event_type in _RUN_PROCESS_EVENTS
            ):
                _RECORDING.start(self._failure_record_wait_seconds)
                stopped = InstanceStorageUnavailableError(f"{error} {RUN_STOPS}")
                stopped.__cause__ = error.__cause__
                return stopped
        return error

    def store_event(self, event: EventLogEntry) -> None:
        try:
            with self._outage_guard.calls():
                super().store_event(event)
        except InstanceStorageUnavailableError as error:
            raise self._stop_run([event], error) from error.__cause__

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        try:
            with self._outage_guard.calls():
                super().store_event_batch(events)
        except InstanceStorageUnavailableError as error:
            raise self._stop_run(events, error) from error.__cause__
