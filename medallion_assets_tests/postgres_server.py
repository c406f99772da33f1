"""A real PostgreSQL server for tests: its own data directory, a free port on 127.0.0.1, stopped
at the end.

The team deployment keeps Dagster's runs, event log and schedules in PostgreSQL
(``deploy/dagster.yaml``), so its tests need a server, and a mock of one would not show what
matters here: several processes writing events at once, and what a run does when the database goes
away. The server is the machine's own (Debian's ``postgresql-15``, installed by ``make test``'s
prerequisites), started with ``initdb`` + ``pg_ctl`` into a temporary directory: no system service,
no shared state, nothing left behind.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the ``postgres``
system user (``runuser``), in a directory that user owns (not under pytest's tmp dir, whose parents
are private to root). Authentication is ``trust`` on 127.0.0.1 only: the server is reachable from
this machine, by the tests, for the life of the test.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medallion_assets_tests.ports import free_port

DATABASE = "dagster"
SUPERUSER = "postgres"
SERVER_USER = "postgres"  # the OS user the server runs as when the tests run as root


def server_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: on PATH, else Debian's newest version."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise FileNotFoundError(
            "PostgreSQL server tools (initdb, pg_ctl) not found. `make test` installs them "
            "(scripts/system-deps.sh postgres: `apt-get install postgresql-15` on Debian)."
        )
    return Path(candidates[-1]).parent


class PostgresServer:
    """One throw-away PostgreSQL cluster; use through ``postgres_server()``."""

    def __init__(self, port: int | None = None):
        self.bin = server_bin_dir()
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="medallion-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.as_other_user = os.geteuid() == 0
        if self.as_other_user:
            account = pwd.getpwnam(SERVER_USER)
            shutil.chown(self.root, account.pw_uid, account.pw_gid)
        os.chmod(self.root, 0o755)  # the test reads the server log

    @property
    def url(self) -> str:
        """What ``DAGSTER_POSTGRES_URL`` is set to."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        command = list(args)
        if self.as_other_user:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if check and completed.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} exited with {completed.returncode}:\n{completed.stdout}\n"
                f"{completed.stderr}\n{self.log_tail()}"
            )
        return completed

    def _tool(self, name: str) -> str:
        return str(self.bin / name)

    def init(self) -> None:
        self._run(
            self._tool("initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            # Eight run processes, a webserver, a daemon and its threads each hold a few
            # connections; fsync off because the data is thrown away at the end.
            "-c max_connections=200 -c fsync=off -c synchronous_commit=off"
        )
        self._run(self._tool("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")

    def create_database(self) -> None:
        self._run(self._tool("createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", SUPERUSER, DATABASE)

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects every client and shuts down cleanly, as an administrator would;
        ``immediate`` is a crash."""
        self._run(self._tool("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def is_running(self) -> bool:
        status = self._run(self._tool("pg_ctl"), "-D", str(self.data), "status", check=False)
        return status.returncode == 0

    def sql(self, query: str) -> list[tuple]:
        """Rows of one query, read straight from the database (not through Dagster)."""
        import psycopg2

        with psycopg2.connect(self.url) as connection, connection.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchall()

    def execute(self, statement: str) -> None:
        """Run one statement that returns no rows (DDL), committed."""
        import psycopg2

        with psycopg2.connect(self.url) as connection, connection.cursor() as cursor:
            cursor.execute(statement)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A started server with an empty ``dagster`` database; stopped and removed afterwards."""
    server = PostgresServer()
    try:
        server.init()
        server.start()
        server.create_database()
        yield server
    finally:
        try:
            if server.data.exists() and server.is_running():
                server.stop("immediate")
        finally:
            server.remove()
