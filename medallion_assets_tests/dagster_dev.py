"""A real `dagster dev` for end-to-end tests: started the way a user starts it, spoken to over HTTP.

Each instance gets a free port on 127.0.0.1, its own DAGSTER_HOME holding a copy of the project's
``.dagster_home/dagster.yaml`` (so the tests run under the configuration `make dev` uses), and
its own landing and warehouse directories. The whole process group — webserver, daemon, code
server, run workers and their Spark JVMs — is terminated when the test is done, pass or fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psutil

PROJECT = Path(__file__).resolve().parents[1]
PROJECT_DAGSTER_YAML = PROJECT / ".dagster_home" / "dagster.yaml"
LOCATION = "medallion_assets.definitions"
STARTUP_TIMEOUT = 240

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


class DagsterDev:
    """A running `dagster dev`; use through `dagster_dev(...)`."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.home = root / "dagster_home"
        self.landing = Path(env["MEDALLION_LANDING_DIR"])
        self.warehouse = Path(env["MEDALLION_WAREHOUSE_DIR"])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "dagster_dev.log"
        self.env = env
        self.process: subprocess.Popen | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT_DAGSTER_YAML, self.home / "dagster.yaml")
        env = dict(self.env, DAGSTER_HOME=str(self.home))
        dagster = Path(sys.executable).parent / "dagster"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(self.port), "-m", LOCATION],
                cwd=self.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, ended as a whole in stop()
            )
        wait_for("the webserver's /server_info", self._server_info, STARTUP_TIMEOUT)
        wait_for("the code location to load", self._location_loaded, STARTUP_TIMEOUT)

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(
                f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}"
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
        """End the whole process group: SIGTERM, then SIGKILL for anything still alive."""
        if self.process is None:
            return
        try:
            family = [psutil.Process(self.process.pid)]
            family += family[0].children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        _, alive = psutil.wait_procs(family, timeout=20)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for proc in alive:  # descendants that left the group
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(timeout=30)
        self.process = None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- GraphQL ---------------------------------------------------------------------------------
    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.load(response)
        if payload.get("errors"):
            raise GraphQLError(json.dumps(payload["errors"], indent=1)[:4000])
        return payload["data"]

    def runs(self, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
        data = self.graphql(
            """query Runs($filter: RunsFilter) { runsOrError(filter: $filter) {
                 __typename ... on Runs { results {
                   runId status startTime endTime jobName
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

    def sensor_state_id(self, sensor: str) -> str:
        data = self.graphql(
            """query Sensor($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
                 __typename ... on Sensor { sensorState { id status } } } }""",
            {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": "__repository__",
                    "sensorName": sensor,
                }
            },
        )
        return data["sensorOrError"]["sensorState"]["id"]

    def stop_sensor(self, sensor: str) -> str:
        data = self.graphql(
            """mutation Stop($id: String) { stopSensor(id: $id) {
                 __typename ... on StopSensorMutationResult { instigationState { status } }
                 ... on PythonError { message } } }""",
            {"id": self.sensor_state_id(sensor)},
        )
        return data["stopSensor"]["instigationState"]["status"]


@contextmanager
def dagster_dev(root: Path, **extra_env: str) -> Iterator[DagsterDev]:
    """Start `dagster dev` with landing and warehouse directories under `root`; always stop it."""
    landing = root / "landing"
    warehouse = root / "warehouse"
    landing.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        MEDALLION_LANDING_DIR=str(landing),
        MEDALLION_WAREHOUSE_DIR=str(warehouse),
        PYTHONUNBUFFERED="1",
        **extra_env,
    )
    server = DagsterDev(root, env)
    try:
        server.start()
        yield server
    finally:
        server.stop()
