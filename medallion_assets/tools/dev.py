"""`make dev`: the Dagster UI and daemon next to a warm Spark Connect server.

Why: a classic run starts its own Spark JVM (4–6 s here, plus a first-job warm-up), so a small
month under `dagster dev` was mostly JVM start. Users coming from Databricks expect a cluster that
is already up and point their code at it with Databricks Connect / Spark Connect. PySpark ships
the Spark Connect server (``pyspark/jars/spark-connect_*.jar``); this module starts it with
``spark-submit --class org.apache.spark.sql.connect.service.SparkConnectServer`` on
``local[*]``, bound to 127.0.0.1, then runs ``dagster dev -w workspace.yaml`` with
``MEDALLION_SPARK_REMOTE`` pointing at it, so every run it launches is a Connect client of the
warm server (see `medallion_assets.resources.spark`).

What runs where under `make dev`:

* the Connect server: one JVM, the only Spark driver and executors, its heap bounded by
  ``--connect-memory`` (2 GB by default); its log is ``$DAGSTER_HOME/logs/spark-connect.log``;
* ``dagster dev``: webserver, daemon, code server, and one Python process per run, each a thin
  Spark Connect client.

Right after the server is up, one small generated month goes through it (in temporary
directories, an ephemeral instance) while ``dagster dev`` starts, so that the first real month
finds the server's code paths already loaded and compiled.

The ``spark`` pool's limit is written to the instance before the daemon starts
(``--spark-runs``, 1 by default): Dagster 1.13 registers a pool's ``default_limit`` in the same
queue pass that checks it, against a list of limits read before, so the first pass that sees
Spark runs launched them all at once. An explicit limit holds from the first pass. One run at a
time on the warm server keeps its memory bounded by one month's work and a small month's latency
predictable; two cores gain nothing from running two months side by side.

Ctrl-C (SIGINT, or SIGTERM to this process) stops ``dagster dev`` first, then the Connect server;
the server runs in its own process group, so it outlives the runs it serves until they are
stopped, and it is killed by the kernel should this process die without cleaning up.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyspark

from medallion_assets.resources.class_archive import archive_path
from medallion_assets.resources.spark import REMOTE_ENV, local_defaults
from medallion_assets.settings import Settings

CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
HOST = "127.0.0.1"
DEFAULT_UI_PORT = 3000
DEFAULT_CONNECT_PORT = 15002
DEFAULT_CONNECT_MEMORY = "2g"
DEFAULT_SPARK_RUNS = 1
SPARK_POOL = "spark"
STARTUP_TIMEOUT = 120.0



def connect_server_conf(archive: str | None = None) -> dict[str, str]:
    """The server's process-wide settings: the project's local defaults (UTC, Parquet
    timestamps, no _SUCCESS markers, loopback only, the class archive when there is one), the
    gRPC endpoint on loopback, and idle sessions of runs that were killed dropped after ten
    minutes rather than an hour."""
    defaults = local_defaults("local[*]", archive)
    return {
        **{k: v for k, v in defaults.items() if k != "spark.driver.memory"},
        "spark.connect.grpc.binding.address": HOST,
        "spark.connect.session.manager.defaultSessionTimeout": "10min",
    }


def spark_home() -> Path:
    """The Spark distribution inside the installed PySpark wheel (jars, bin, sbin)."""
    return Path(pyspark.__file__).resolve().parent


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def answers(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends SIGTERM when the parent dies (Linux), so a
    server is never left behind by a parent killed with SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ConnectServer:
    """A local Spark Connect server on 127.0.0.1:`port`; use as a context manager."""

    def __init__(
        self,
        port: int = DEFAULT_CONNECT_PORT,
        memory: str = DEFAULT_CONNECT_MEMORY,
        log_path: Path | None = None,
        conf: Mapping[str, str] | None = None,
        archive: str | None = None,
    ):
        self.port = port
        self.memory = memory
        self.log_path = log_path
        self.conf = {**connect_server_conf(archive), **(conf or {})}
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"sc://{HOST}:{self.port}"

    def command(self) -> list[str]:
        command = [
            str(spark_home() / "bin" / "spark-submit"),
            "--class",
            CONNECT_SERVER_CLASS,
            "--name",
            "Spark Connect server (medallion_assets)",
            "--master",
            "local[*]",
            "--driver-memory",
            self.memory,
        ]
        for key, value in self.conf.items():
            command += ["--conf", f"{key}={value}"]
        command += ["--conf", f"spark.connect.grpc.binding.port={self.port}"]
        return command

    def start(self) -> None:
        if not port_is_free(self.port):
            raise RuntimeError(
                f"Port {self.port} on {HOST} is in use: another Spark Connect server (another "
                "`make dev`?) or another program. Stop it, or choose a port with "
                "`make dev CONNECT_PORT=...`."
            )
        env = dict(os.environ, SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP=HOST)
        env.pop(REMOTE_ENV, None)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            output = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        else:
            output = subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                self.command(),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C on the terminal is handled by `main`, in order
                preexec_fn=_die_with_parent,
            )
        finally:
            if output is not subprocess.DEVNULL:
                output.close()

    def wait_until_ready(self, timeout: float = STARTUP_TIMEOUT) -> float:
        """Seconds until the gRPC port answers (the SparkContext is up before it opens)."""
        assert self.process is not None
        started = time.monotonic()
        while not answers(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"The Spark Connect server exited with code {self.process.returncode} while "
                    f"starting; see {self.log_path or 'its output'}.\n{self.log_tail()}"
                )
            if time.monotonic() - started > timeout:
                self.stop()
                raise TimeoutError(f"The Spark Connect server did not open port {self.port}.")
            time.sleep(0.2)
        return time.monotonic() - started

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (the JVM's shutdown hooks stop Spark), then SIGKILL if it lingers."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        self.process = None

    def __enter__(self) -> ConnectServer:
        self.start()
        try:
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def warm_up(endpoint: str, rows: int = 2000) -> float:
    """Run the project's job once through `endpoint` on a small generated month
    (`medallion_assets.tools.small_month`, in temporary directories and an ephemeral instance:
    nothing of it stays), so that the first real month does not pay the server's class loading
    and code generation (about 10 s here). Returns the seconds it took."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="medallion-warm-up-") as tmp:
        subprocess.run(
            [
                sys.executable, "-m", "medallion_assets.tools.small_month",
                "--work-dir", tmp, "--remote", endpoint, "--rows", str(rows),
            ],
            check=True,
            timeout=STARTUP_TIMEOUT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return time.monotonic() - started


def set_spark_pool_limit(home: Path, limit: int) -> None:
    """Write the ``spark`` pool's limit to the instance in ``home`` (see the module doc)."""
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots(SPARK_POOL, limit)


class _Stop(Exception):
    """SIGTERM received: shut down as on Ctrl-C."""


def _raise_stop(signum, frame) -> None:
    raise _Stop()


def _stop_dagster_dev(process: subprocess.Popen, forward_interrupt: bool) -> None:
    if forward_interrupt and process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make dev", description="Dagster UI and daemon with a warm Spark Connect server."
    )
    parser.add_argument("--port", type=int, default=DEFAULT_UI_PORT, help="UI port (3000).")
    parser.add_argument(
        "--connect-port", type=int, default=DEFAULT_CONNECT_PORT, help="Spark Connect port."
    )
    parser.add_argument(
        "--connect-memory", default=DEFAULT_CONNECT_MEMORY, help="Spark Connect server heap."
    )
    parser.add_argument(
        "--spark-runs",
        type=int,
        default=DEFAULT_SPARK_RUNS,
        help="How many runs use Spark at once (the `spark` pool's limit).",
    )
    parser.add_argument("--workspace", default="workspace.yaml", help="Dagster workspace file.")
    parser.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="Do not run a small month through the server at start (for cold measurements).",
    )
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    home = Path(settings.dagster_home).absolute()
    home.mkdir(parents=True, exist_ok=True)
    archive = archive_path(settings.spark_class_archive, settings.java_home)
    server = ConnectServer(
        port=args.connect_port,
        memory=args.connect_memory,
        log_path=home / "logs" / "spark-connect.log",
        archive=str(archive) if archive else None,
    )
    dagster_dev: subprocess.Popen | None = None
    interrupted_by_terminal = False
    with _interruptible():
        try:
            server.start()
            print(f"Starting the Spark Connect server on {server.endpoint} ...", flush=True)
            set_spark_pool_limit(home, args.spark_runs)
            seconds = server.wait_until_ready()
            print(
                f"Spark Connect server ready on {server.endpoint} after {seconds:.1f} s "
                f"(heap {args.connect_memory}, log {server.log_path}); runs use it through "
                f"{REMOTE_ENV}, at most {args.spark_runs} at a time.",
                flush=True,
            )
            # dagster dev and every run it launches: the same environment, plus the server; and
            # alert links to this UI's port unless the links' base is set.
            env = dict(os.environ, DAGSTER_HOME=str(home), **{REMOTE_ENV: server.endpoint})
            if not settings.from_environment("webserver_url"):
                env[Settings.env_name("webserver_url")] = f"http://{HOST}:{args.port}"
            dagster = Path(sys.executable).parent / "dagster"
            command = [str(dagster), "dev", "-w", args.workspace, "-h", HOST, "-p", str(args.port)]
            dagster_dev = subprocess.Popen(command, env=env)
            print(f"Dagster UI on http://{HOST}:{args.port} (Ctrl-C stops everything).", flush=True)
            if args.warm_up:
                # While dagster dev starts: one small month through the server.
                try:
                    seconds = warm_up(server.endpoint)
                    print(f"Spark Connect server warmed up in {seconds:.1f} s.", flush=True)
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
                    print(f"Warning: warming up the Spark Connect server failed ({error}).")
            return dagster_dev.wait()
        except KeyboardInterrupt:
            # The terminal sent SIGINT to the whole foreground group, dagster dev included.
            interrupted_by_terminal = True
            return 130
        except _Stop:
            return 143
        finally:
            # Ignore further Ctrl-C while shutting down in order: the runs, then the server.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if dagster_dev is not None:
                _stop_dagster_dev(dagster_dev, forward_interrupt=not interrupted_by_terminal)
            server.stop()
            print("Stopped dagster dev and the Spark Connect server.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
