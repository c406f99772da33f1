"""The team deployment of ``deploy/``, started for real: code server, webserver and daemon as
separate processes on a PostgreSQL instance, and a Spark standalone cluster for their runs.

Each process is started with the command line the Procfile gives it (run by ``bash`` as honcho or
foreman would, from the project root, with the project's virtualenv first on the PATH), in the
environment ``deploy/env.example`` describes, with ``DAGSTER_HOME`` holding a copy of
``deploy/dagster.yaml``. So the tests exercise the deployment's own files, not a variant of them.

Every process gets its own process group; ``stop()`` ends each group and every descendant that left
it (run workers and their Spark JVMs), pass or fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil
import pyspark

from medallion_assets_tests.dagster_dev import GraphQLError, free_port, graphql, wait_for

PROJECT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT / "deploy"
LOCATION = "medallion_assets"
REPOSITORY = "__repository__"
STARTUP_TIMEOUT = 240


def procfile() -> dict[str, str]:
    """``name: command`` lines of deploy/Procfile."""
    commands = {}
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


def instance_home(root: Path) -> Path:
    """A DAGSTER_HOME holding the deployment's dagster.yaml, as the README's setup makes it."""
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    return home


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DAGSTER_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _end_group(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
    """Signal the process group, wait, then SIGKILL the group and any descendant that left it."""
    try:
        family = [psutil.Process(process.pid)]
        family += family[0].children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    _, alive = psutil.wait_procs(family, timeout=10)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for proc in alive:
        with suppress(psutil.NoSuchProcess):
            proc.kill()
    process.wait(timeout=30)


class TeamDeployment:
    """The Procfile's processes; use through ``team_deployment(...)``."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.webserver_port = free_port()
        self.url = f"http://127.0.0.1:{self.webserver_port}"
        self.env = dict(
            env,
            DAGSTER_CODE_SERVER_BIND="127.0.0.1",
            DAGSTER_CODE_SERVER_HOST="127.0.0.1",
            DAGSTER_CODE_SERVER_PORT=str(free_port()),
            DAGSTER_WEBSERVER_BIND="127.0.0.1",
            DAGSTER_WEBSERVER_PORT=str(self.webserver_port),
            MEDALLION_WEBSERVER_URL=f"http://127.0.0.1:{self.webserver_port}",
        )
        self.commands = procfile()
        self.processes: dict[str, subprocess.Popen] = {}
        self._log_count = 0

    # -- processes ----------------------------------------------------------------------------
    def start(self, name: str) -> subprocess.Popen:
        self._log_count += 1
        log = self.root / f"{name}.{self._log_count}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {self.commands[name]}"],
                cwd=PROJECT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process.log_path = log  # type: ignore[attr-defined]
        self.processes[name] = process
        return process

    def alive(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def kill(self, name: str) -> None:
        """SIGKILL the process (its group holds only itself: the runs belong to the code server)."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        # The daemon first (so it launches nothing more), the code server (and its runs) last.
        for name in ("daemon", "webserver", "code"):
            process = self.processes.pop(name, None)
            if process is not None:
                _end_group(process)

    def log_text(self, name: str) -> str:
        """What the running process `name` (and the runs it started) printed so far."""
        return self.processes[name].log_path.read_text(errors="replace")  # type: ignore[attr-defined]

    def log_tail(self, chars: int = 3000) -> str:
        out = []
        for path in sorted(self.root.glob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)

    def _check_alive(self, *names: str) -> None:
        for name in names:
            process = self.processes[name]
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log_tail()}")

    # -- readiness ----------------------------------------------------------------------------
    def start_webserver_and_code_server(self) -> None:
        self.start("code")
        self.start("webserver")

        def location_loaded() -> bool | None:
            self._check_alive("code", "webserver")
            try:
                data = self.graphql(
                    """{ workspaceOrError { __typename ... on Workspace { locationEntries {
                           name loadStatus
                           locationOrLoadError { __typename
                             ... on PythonError { message } } } } } }"""
                )
            except (urllib.error.URLError, ConnectionError, TimeoutError, GraphQLError):
                return None
            for entry in data["workspaceOrError"].get("locationEntries") or []:
                located = entry["locationOrLoadError"]
                if entry["loadStatus"] == "LOADED" and located:
                    if located["__typename"] == "PythonError":
                        # The code server may not be listening yet: the webserver retries.
                        return None
                    return True
            return None

        wait_for(
            "the webserver to load the code server's location", location_loaded, STARTUP_TIMEOUT
        )

    def start_daemon(self) -> None:
        started = time.time()
        self.start("daemon")

        def healthy() -> bool | None:
            self._check_alive("daemon")
            statuses = self.graphql(
                """{ instance { daemonHealth { allDaemonStatuses {
                       daemonType healthy required lastHeartbeatTime } } } }"""
            )["instance"]["daemonHealth"]["allDaemonStatuses"]
            required = [s for s in statuses if s["required"]]
            fresh = all(
                s["healthy"] and (s["lastHeartbeatTime"] or 0) >= started for s in required
            )
            return True if required and fresh else None

        wait_for("the daemon's heartbeats", healthy, STARTUP_TIMEOUT, every=1)

    # -- GraphQL ------------------------------------------------------------------------------
    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return graphql(self.url, query, variables)

    def stop_sensor(self, sensor: str) -> str:
        selector = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "sensorName": sensor,
        }
        state = self.graphql(
            """query S($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
                 __typename ... on Sensor { sensorState { id status } } } }""",
            {"selector": selector},
        )["sensorOrError"]["sensorState"]
        if state["status"] != "RUNNING":
            return state["status"]
        return self.graphql(
            """mutation Stop($id: String) { stopSensor(id: $id) {
                 __typename ... on StopSensorMutationResult { instigationState { status } } } }""",
            {"id": state["id"]},
        )["stopSensor"]["instigationState"]["status"]

    def launch_backfill(self, assets: list[list[str]], partitions: list[str], title: str) -> str:
        launched = self.graphql(
            """mutation Backfill($params: LaunchBackfillParams!) {
                 launchPartitionBackfill(backfillParams: $params) {
                   __typename ... on LaunchBackfillSuccess { backfillId }
                   ... on PythonError { message } ... on InvalidSubsetError { message } } }""",
            {
                "params": {
                    "assetSelection": [{"path": p} for p in assets],
                    "partitionNames": partitions,
                    "title": title,
                }
            },
        )["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise GraphQLError(str(launched))
        return launched["backfillId"]

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        return self.graphql(
            """query B($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 __typename ... on PartitionBackfill { status runs { runId status } } } }""",
            {"id": backfill_id},
        )["partitionBackfillOrError"]

    def launch_job(self, job: str, partition: str) -> str:
        """What the UI's "Materialize" of one month sends: a run of `job`, queued."""
        result = self.graphql(
            """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
                 __typename ... on LaunchRunSuccess { run { runId } }
                 ... on PythonError { message }
                 ... on RunConfigValidationInvalid { errors { message } }
                 ... on InvalidSubsetError { message } } }""",
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": LOCATION,
                        "repositoryName": REPOSITORY,
                        "jobName": job,
                    },
                    "executionMetadata": {
                        "tags": [{"key": "dagster/partition", "value": partition}]
                    },
                    "runConfigData": {},
                }
            },
        )["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(str(result))
        return result["run"]["runId"]

    def run(self, run_id: str) -> dict[str, Any]:
        return self.graphql(
            """query R($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
                 runId status startTime endTime
                 eventConnection(afterCursor: null) { events { __typename
                   ... on MessageEvent { message }
                   ... on ExecutionStepFailureEvent { stepKey error { message } }
                   ... on RunFailureEvent { error { message } } } } } } }""",
            {"id": run_id},
        )["runOrError"]

    def run_once_answered(self, run_id: str, timeout: float) -> dict[str, Any]:
        """The run as soon as the webserver answers: after a database outage its first requests
        fail (HTTP 500) while it replaces the connections it held."""

        def answered() -> dict | None:
            self._check_alive("webserver")
            try:
                return self.run(run_id)
            except (urllib.error.URLError, ConnectionError, TimeoutError, GraphQLError):
                return None

        return wait_for("the webserver to answer", answered, timeout, every=1)

    def wait_for_run(self, run_id: str, timeout: float) -> dict[str, Any]:
        def finished() -> dict | None:
            self._check_alive("code", "webserver")
            try:
                run = self.run(run_id)
            except (urllib.error.URLError, ConnectionError, TimeoutError, GraphQLError):
                return None  # the webserver may be reconnecting to the database
            return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

        return wait_for(f"run {run_id} to finish", finished, timeout, every=2)


@contextmanager
def team_deployment(root: Path, env: dict[str, str]) -> Iterator[TeamDeployment]:
    """Code server and webserver started (the daemon is started by the caller); always stopped."""
    deployment = TeamDeployment(root, env)
    try:
        deployment.start_webserver_and_code_server()
        yield deployment
    finally:
        deployment.stop()


# -- Spark standalone cluster ---------------------------------------------------------------------
def _alive_workers(ui_port: int) -> int:
    try:
        return sum(1 for w in master_state(ui_port)["workers"] if w["state"] == "ALIVE")
    except OSError:
        return 0


def master_state(ui_port: int) -> dict[str, Any]:
    """The master's JSON status: workers, active and completed applications."""
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as response:
        return json.load(response)


@contextmanager
def standalone_cluster(root: Path, cores: int, memory: str) -> Iterator[tuple[str, int]]:
    """A master and one worker on 127.0.0.1, from the pyspark distribution's own launcher
    (``bin/spark-class``); yields the master URL and the master's web UI port."""
    spark_home = Path(pyspark.__file__).parent
    port, ui_port, worker_ui = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_HOME=str(spark_home),
        SPARK_WORKER_DIR=str(root / "spark-worker"),
        SPARK_LOG_DIR=str(root),
    )
    launcher = str(spark_home / "bin" / "spark-class")

    def start(log: str, *args: str) -> subprocess.Popen:
        with open(root / log, "wb") as out:
            return subprocess.Popen([launcher, *args], stdout=out, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)

    master = start("spark-master.log", "org.apache.spark.deploy.master.Master", "--host",
                   "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port))
    worker = start("spark-worker.log", "org.apache.spark.deploy.worker.Worker", "--host",
                   "127.0.0.1", "--cores", str(cores), "--memory", memory, "--webui-port",
                   str(worker_ui), f"spark://127.0.0.1:{port}")
    try:
        wait_for("the Spark worker to register with the master",
                 lambda: True if _alive_workers(ui_port) == 1 else None, 120)
        yield f"spark://127.0.0.1:{port}", ui_port
    finally:
        for process in (worker, master):
            _end_group(process, timeout=30)
