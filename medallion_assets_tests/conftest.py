"""Shared fixtures and the suite's two tiers.

Fixtures: one Spark session for the whole test session; settings and definitions over temporary
landing and warehouse directories (tests pass settings, they never patch the environment).

Tiers: ``make test`` runs everything. ``make test-fast`` (``pytest --fast``) runs only what needs
no server, no child process and no run of the asset graph — transforms, partitions, landing,
commits, checks' logic, sensor logic, sample data — on the suite's one Spark session. Two marks
leave a test out of it: ``slow`` (starts a real system: daemon, webserver, browser, cluster,
PostgreSQL, a CLI) and ``graph`` (runs the asset graph in process: seconds per run). The fast
tier enforces its promise: in it, starting a process or running the graph fails the test with
a message saying which mark it lacks.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import dagster
import pytest
from dagster import Definitions
from pyspark.sql import SparkSession

from medallion_assets.definitions import build_defs
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.settings import Settings


@pytest.fixture(scope="session")
def spark() -> SparkSession:
    """The suite's one Spark session. Dagster runs in the tests reuse it (the Spark resource
    leaves a session it did not create running), so the JVM starts once."""
    resource = SparkSessionResource(
        master="local[2]",
        spark_config={"spark.sql.shuffle.partitions": "2"},
    )
    session = resource.spark_session
    yield session
    session.stop()


@pytest.fixture
def landing_dir(tmp_path: Path) -> Path:
    path = tmp_path / "landing"
    path.mkdir()
    return path


@pytest.fixture
def warehouse_dir(tmp_path: Path) -> Path:
    return tmp_path / "warehouse"


@pytest.fixture
def settings(landing_dir: Path, warehouse_dir: Path) -> Settings:
    """The project's defaults, over this test's own landing and warehouse directories."""
    return Settings(landing_dir=str(landing_dir), warehouse_dir=str(warehouse_dir))


@pytest.fixture
def defs(settings: Settings) -> Definitions:
    """The whole project wired to `settings`."""
    return build_defs(settings)


FAST = "--fast"
_LEFT_OUT_OF_FAST = ("slow", "graph")
_PROJECT_LAYERS = {"bronze", "silver", "gold"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        FAST,
        action="store_true",
        help="the quick tier: no server, no child process, no run of the asset graph",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption(FAST):
        return
    kept, left_out = [], []
    for item in items:
        marked = any(item.get_closest_marker(mark) for mark in _LEFT_OUT_OF_FAST)
        (left_out if marked else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
    items[:] = kept


def _refuse(what: str, mark: str):
    def refuse(*args, **kwargs):
        raise RuntimeError(
            f"This test {what}, which the fast tier (pytest {FAST}) does not allow: "
            f"mark it @pytest.mark.{mark}."
        )

    return refuse


@pytest.fixture(autouse=True)
def _fast_tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """In the fast tier, a test that starts a process or runs the graph fails, naming its mark.
    Session-scoped fixtures (the suite's Spark session, whose JVM is a child process) are set
    up before this one, so they are not refused."""
    if request.config.getoption(FAST):
        monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("starts a process", "slow"))
        run_in_process = dagster.JobDefinition.execute_in_process
        refuse = _refuse("runs the project's asset graph", "graph")

        # `materialize` and `materialize_to_memory` run through it too. A job of a test's own
        # small assets (an IO manager round trip, say) is fine; the project's layers are not.
        def guarded(job, *args, **kwargs):
            if any(key.path[0] in _PROJECT_LAYERS for key in job.asset_layer.selected_asset_keys):
                refuse()
            return run_in_process(job, *args, **kwargs)

        monkeypatch.setattr(dagster.JobDefinition, "execute_in_process", guarded)
    yield
