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

import contextlib
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
    with processes_allowed():
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


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups set here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption(FAST):
        _plan_for_workers(items)
        return
    kept, left_out = [], []
    for item in items:
        marked = any(item.get_closest_marker(mark) for mark in _LEFT_OUT_OF_FAST)
        (left_out if marked else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
    items[:] = kept


def _shares_a_module_fixture(item: pytest.Item) -> bool:
    """Whether the test uses a fixture its own module defines for more than one test (a
    PostgreSQL server, a cluster, a deployment started once for the module's tests)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        fixture.scope in ("module", "session") and fixture.baseid.endswith(item.path.name)
        for fixtures in info.name2fixturedefs.values()
        for fixture in fixtures
    )


def _plan_for_workers(items: list[pytest.Item]) -> None:
    """How ``make test`` spreads the suite over pytest-xdist's workers (``--dist loadgroup``).

    Tests that share a module fixture form one group, run by one worker, so that fixture is
    built once; every other test stands alone and goes to whichever worker is free. Most of a
    real-system test's time is spent waiting (on a daemon's tick, a database outage, a browser),
    so the workers overlap those waits. Slow tests come first — groups of them first of all, the
    group with the most slow tests leading — then other groups, tests of the graph, and the rest:
    a long test started last would leave the other workers idle at the end. Without xdist the marks
    do nothing and the order only moves slow tests ahead.
    """
    for item in items:
        if _shares_a_module_fixture(item) and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.path.stem))

    def group(item: pytest.Item) -> str | None:
        mark = item.get_closest_marker("xdist_group")
        return mark.args[0] if mark else None

    slow_in_group: dict[str, int] = {}
    for item in items:
        if group(item) and item.get_closest_marker("slow"):
            slow_in_group[group(item)] = slow_in_group.get(group(item), 0) + 1

    def order(item: pytest.Item) -> tuple[int, int]:
        if group(item) in slow_in_group:
            return 0, -slow_in_group[group(item)]
        if item.get_closest_marker("slow"):
            return 1, 0
        if group(item):
            return 2, 0
        return (3 if item.get_closest_marker("graph") else 4), 0

    items.sort(key=order)


_processes_allowed = False


@contextlib.contextmanager
def processes_allowed():
    """Where the fast tier may start a process: the suite's one Spark session (its JVM)."""
    global _processes_allowed
    _processes_allowed, before = True, _processes_allowed
    try:
        yield
    finally:
        _processes_allowed = before


def _refusal(what: str, mark: str) -> RuntimeError:
    return RuntimeError(
        f"This test {what}, which the fast tier (pytest {FAST}) does not allow: "
        f"mark it @pytest.mark.{mark}."
    )


def pytest_configure(config: pytest.Config) -> None:
    """In the fast tier, starting a process or running the project's graph fails — in a test,
    and in any fixture it uses, whatever the fixture's scope — with the mark the test lacks."""
    if not config.getoption(FAST):
        return
    start_process = subprocess.Popen.__init__
    run_in_process = dagster.JobDefinition.execute_in_process

    def guarded_start(process, *args, **kwargs):
        if not _processes_allowed:
            raise _refusal("starts a process", "slow")
        return start_process(process, *args, **kwargs)

    # `materialize` and `materialize_to_memory` run through it too. A job of a test's own small
    # assets (an IO manager round trip, say) is fine; the project's layers are not.
    def guarded_run(job, *args, **kwargs):
        if any(key.path[0] in _PROJECT_LAYERS for key in job.asset_layer.selected_asset_keys):
            raise _refusal("runs the project's asset graph", "graph")
        return run_in_process(job, *args, **kwargs)

    subprocess.Popen.__init__ = guarded_start
    dagster.JobDefinition.execute_in_process = guarded_run
