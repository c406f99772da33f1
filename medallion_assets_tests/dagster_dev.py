"""`make dev` started the way a user starts it, spoken to over HTTP.

Each instance runs ``make dev`` in the project with a free UI port and a free Spark Connect port,
its own DAGSTER_HOME holding a copy of the project's ``.dagster_home/dagster.yaml`` (so the tests
run under the configuration `make dev` uses), and its own landing and warehouse directories, given
as a user gives them: ``MEDALLION_*`` variables in the environment of ``make dev``. It is
stopped as a user stops it: Ctrl-C, i.e. SIGINT to the terminal's process group. Anything of it
still alive afterwards — webserver, daemon, code server, run workers, the Connect server's JVM —
is killed, and `stopped_cleanly` says whether that was needed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import psutil

from medallion_assets_tests.ports import free_port

PROJECT = Path(__file__).resolve().parents[1]
PROJECT_DAGSTER_YAML = PROJECT / ".dagster_home" / "dagster.yaml"
# The code location's name in workspace.yaml.
LOCATION = "medallion_assets"
STARTUP_TIMEOUT = 300
# How long Ctrl-C may take to stop everything (dagster dev waits for its services, then the Spark
# Connect server's shutdown hooks run).
SHUTDOWN_TIMEOUT = 90

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """Poll `probe` until it returns something other than None; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"Timed out after {timeout:.0f} s waiting for {what}.")
        time.sleep(every)


class GraphQLError(RuntimeError):
    pass


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The data of a query to the webserver at ``url``; its errors raised as `GraphQLError`."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.load(response)
    if payload.get("errors"):
        raise GraphQLError(json.dumps(payload["errors"], indent=1)[:4000])
    return payload["data"]


class DagsterDev:
    """A running `make dev`; use through `dagster_dev(...)`."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.home = root / "dagster_home"
        self.landing = Path(env["MEDALLION_LANDING_DIR"])
        self.warehouse = Path(env["MEDALLION_WAREHOUSE_DIR"])
        self.port = free_port()
        self.connect_port = free_port()
        while self.connect_port == self.port:
            self.connect_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "make_dev.log"
        self.env = env
        self.process: subprocess.Popen | None = None
        self.stopped_cleanly: bool | None = None
        self.survivors: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------------
    def command(self) -> list[str]:
        """`make dev` as a user types it, with ports and DAGSTER_HOME chosen for this test."""
        return [
            "make",
            "--no-print-directory",
            "-C",
            str(PROJECT),
            "dev",
            f"PORT={self.port}",
            f"CONNECT_PORT={self.connect_port}",
            "CONNECT_MEMORY=1g",
            f"DAGSTER_HOME={self.home}",
        ]

    def start(self) -> None:
        dagster_home(self.root)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the "terminal" of stop()
            )
        wait_for("the webserver's /server_info", self._server_info, STARTUP_TIMEOUT)
        wait_for("the code location to load", self._location_loaded, STARTUP_TIMEOUT)

    def family(self) -> list[psutil.Process]:
        """Every process `make dev` started, the Connect server (its own process group) too."""
        assert self.process is not None
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(
                f"make dev exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def _server_info(self) -> dict | None:
        self._check_alive()
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response:
                return json.load(response)
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            return None

    def _location_loaded(self) -> bool | None:
        self._check_alive()
        data = self.graphql(
            """{ workspaceOrError { __typename ... on Workspace { locationEntries {
                   name loadStatus
                   locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        )
        entries = data["workspaceOrError"].get("locationEntries") or []
        for entry in entries:
            error = entry["locationOrLoadError"]
            if error and error["__typename"] == "PythonError":
                raise RuntimeError(f"Code location failed to load: {error['message']}")
            if entry["loadStatus"] == "LOADED" and error:
                return True
        return None

    def stop(self) -> None:
        """Ctrl-C: SIGINT to the process group, as a terminal sends it; then SIGKILL for
        anything still alive after `SHUTDOWN_TIMEOUT` (recorded in `survivors`)."""
        if self.process is None:
            return
        family = self.family()
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        _, alive = psutil.wait_procs(family, timeout=SHUTDOWN_TIMEOUT)
        self.survivors = []
        for proc in alive:
            try:
                self.survivors.append(" ".join(proc.cmdline())[:200])
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=30)
        self.process.wait(timeout=30)
        self.stopped_cleanly = not self.survivors
        self.process = None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- GraphQL ---------------------------------------------------------------------------------
    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return graphql(self.url, query, variables)

    def runs(self, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
        data = self.graphql(
            """query Runs($filter: RunsFilter) { runsOrError(filter: $filter) {
                 __typename ... on Runs { results {
                   runId status creationTime startTime endTime jobName
                   tags { key value } } }
                 ... on PythonError { message } } }""",
            {"filter": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}},
        )
        result = data["runsOrError"]
        if result["__typename"] != "Runs":
            raise GraphQLError(str(result))
        return result["results"]

    def wait_for_runs(self, tags: dict[str, str], count: int, timeout: float) -> list[dict]:
        """The `count` runs carrying `tags`, once all of them have finished successfully."""

        def finished() -> list[dict] | None:
            self._check_alive()
            runs = self.runs(tags)
            failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
            if failed:
                raise AssertionError(f"Runs failed: {failed}\n{self.log_tail()}")
            done = [r for r in runs if r["status"] == "SUCCESS"]
            return done if len(done) >= count else None

        return wait_for(f"{count} successful run(s) tagged {tags}", finished, timeout, every=2)

    def launch_run(self, job: str, tags: dict[str, str]) -> str:
        """Launch a run of `job` with `tags` as the UI's Launchpad does; its run id."""
        data = self.graphql(
            """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
                 __typename ... on LaunchRunSuccess { run { runId } }
                 ... on PythonError { message } ... on InvalidSubsetError { message }
                 ... on RunConfigValidationInvalid { errors { message } } } }""",
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": LOCATION,
                        "repositoryName": "__repository__",
                        "jobName": job,
                    },
                    "runConfigData": {},
                    "executionMetadata": {
                        "tags": [{"key": k, "value": v} for k, v in tags.items()]
                    },
                }
            },
        )
        launched = data["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(str(launched))
        return launched["run"]["runId"]

    def resource_config(self, resource: str) -> dict[str, dict[str, str]]:
        """What the UI's Resources page shows of a resource's configuration: each configured
        field's type (VALUE, ENV_VAR, SECRET) and value (a VALUE decoded from the JSON the UI
        gets, an ENV_VAR's the variable's name)."""
        data = self.graphql(
            """query Resource($selector: ResourceSelector!) {
                 topLevelResourceDetailsOrError(resourceSelector: $selector) {
                   __typename ... on ResourceDetails { configuredValues { key value type } }
                   ... on PythonError { message } ... on ResourceNotFoundError { message } } }""",
            {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": "__repository__",
                    "resourceName": resource,
                }
            },
        )
        details = data["topLevelResourceDetailsOrError"]
        if details["__typename"] != "ResourceDetails":
            raise GraphQLError(str(details))
        return {
            v["key"]: {
                "type": v["type"],
                "value": json.loads(v["value"]) if v["type"] == "VALUE" else v["value"],
            }
            for v in details["configuredValues"]
        }

    @staticmethod
    def _sensor_selector(sensor: str) -> dict[str, str]:
        return {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "sensorName": sensor,
        }

    def sensor_state_id(self, sensor: str) -> str:
        data = self.graphql(
            """query Sensor($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
                 __typename ... on Sensor { sensorState { id status } } } }""",
            {"selector": self._sensor_selector(sensor)},
        )
        return data["sensorOrError"]["sensorState"]["id"]

    def sensor_ticks(self, sensor: str, limit: int = 20) -> list[dict[str, Any]]:
        """The sensor's latest ticks, newest first, each with its log messages."""
        data = self.graphql(
            """query Ticks($selector: SensorSelector!, $limit: Int) {
                 sensorOrError(sensorSelector: $selector) { __typename ... on Sensor {
                   sensorState { ticks(limit: $limit) {
                     status timestamp skipReason runIds
                     logEvents { events { message } } } } } } }""",
            {"selector": self._sensor_selector(sensor), "limit": limit},
        )
        ticks = data["sensorOrError"]["sensorState"]["ticks"]
        for tick in ticks:
            tick["messages"] = [e["message"] for e in tick.pop("logEvents")["events"]]
        return ticks

    def ended_ticks(self, sensor: str, limit: int = 20) -> list[dict[str, Any]]:
        """The sensor's latest ticks whose evaluation has ended. A tick the daemon is still
        evaluating shows as STARTED and may yet request runs, so it proves nothing yet."""
        return [t for t in self.sensor_ticks(sensor, limit) if t["status"] != "STARTED"]

    def run_messages(self, run_id: str) -> list[str]:
        """The messages of a run's event log (what the UI's run page lists)."""
        data = self.graphql(
            """query Logs($runId: ID!) { logsForRun(runId: $runId, limit: 5000) {
                 __typename ... on EventConnection { events {
                   ... on MessageEvent { message } } } } }""",
            {"runId": run_id},
        )
        return [e["message"] for e in data["logsForRun"]["events"] if e.get("message")]

    def stop_sensor(self, sensor: str) -> str:
        data = self.graphql(
            """mutation Stop($id: String) { stopSensor(id: $id) {
                 __typename ... on StopSensorMutationResult { instigationState { status } }
                 ... on PythonError { message } } }""",
            {"id": self.sensor_state_id(sensor)},
        )
        return data["stopSensor"]["instigationState"]["status"]


def user_env(root: Path, **extra_env: str) -> dict[str, str]:
    """The environment of a user's shell for a project whose landing and warehouse directories
    are under `root`, plus `extra_env`: no pytest or parent-make variables, no project setting of
    the caller's (a Spark endpoint, a webhook, ...)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "MEDALLION_"))
        and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DAGSTER_HOME")
    }
    env.update(
        MEDALLION_LANDING_DIR=str(root / "landing"),
        MEDALLION_WAREHOUSE_DIR=str(root / "warehouse"),
        PYTHONUNBUFFERED="1",
        **extra_env,
    )
    (root / "landing").mkdir(parents=True, exist_ok=True)
    return env


def dagster_home(root: Path) -> Path:
    """The DAGSTER_HOME the tests use under `root`, holding the project's dagster.yaml."""
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_DAGSTER_YAML, home / "dagster.yaml")
    return home


@contextmanager
def dagster_dev(root: Path, **extra_env: str) -> Iterator[DagsterDev]:
    """Start `make dev` with landing and warehouse directories under `root`; always stop it, and
    fail if Ctrl-C left anything running."""
    server = DagsterDev(root, user_env(root, **extra_env))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        assert server.stopped_cleanly, f"still running after Ctrl-C: {server.survivors}"
