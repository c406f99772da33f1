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

import ast
import contextlib
import functools
import os
import subprocess
from pathlib import Path

import dagster
import pytest
from dagster import Definitions
from pyspark.sql import SparkSession

from medallion_assets.definitions import build_defs
from medallion_assets.resources import class_archive
from medallion_assets.resources.spark import SparkSessionResource
from medallion_assets.settings import Settings

# Every JVM the suite starts (the shared session, CLI runs, make dev's Spark Connect server, the
# standalone cluster's master, worker and executors) inherits these and compiles with the JVM's
# quick compiler only. A test's Spark jobs last seconds, and optimizing compilation costs them
# more CPU than it saves: about a third of a test's CPU seconds, measured per test in a cgroup,
# where the suite's workers share two cores. It also gets one compiler thread instead of the two
# the JVM picks on two cores (the JVM accepts one only with the quick compiler alone): the eight
# concurrent CLI runs of test_team_eight_processes took 111 CPU-s instead of 121 (medians of two
# alternated pairs, the test alone), a make dev test 31 instead of 33. What the tests check does
# not change.
_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=1")
for _option in _JVM_OPTIONS:
    if _option not in os.environ.get("JAVA_TOOL_OPTIONS", ""):
        os.environ["JAVA_TOOL_OPTIONS"] = (
            f"{os.environ.get('JAVA_TOOL_OPTIONS', '')} {_option}".strip()
        )


@pytest.fixture(scope="session")
def spark() -> SparkSession:
    """The suite's one Spark session. Dagster runs in the tests reuse it (the Spark resource
    leaves a session it did not create running), so the JVM starts once."""
    resource = SparkSessionResource(
        master="local[2]",
        # From this environment's class archive, as a run's session starts (`class_archive`).
        class_archive=str(class_archive.archive_path(None, None) or "") or None,
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


@functools.cache
def _shares_a_fixture(test_file: str) -> bool:
    """Whether the test file defines a fixture of module or session scope (a PostgreSQL server, a
    cluster, a deployment started once for the file's tests). Read from the file's source, so
    that pytest-xdist's controller, which collects no tests, can tell it from a test's id."""
    path = Path(test_file)
    if not path.is_absolute():
        path = Path(__file__).resolve().parent.parent / path
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and any(
            keyword.arg == "scope"
            and isinstance(keyword.value, ast.Constant)
            and keyword.value.value in ("module", "session")
            for keyword in node.keywords
        ):
            return True
    return False


@pytest.hookimpl(optionalhook=True)  # pytest-xdist may be off (-p no:xdist)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``make test``'s scheduling (``--dist loadscope``): the tests of a file that shares a
    fixture between its tests run on one worker, so that fixture is built once; every other test
    is a unit of its own and goes to whichever worker is free. (pytest-xdist's ``loadgroup``
    cannot do this with pytest 9: it renames the tests' ids through an attribute pytest no longer
    reads.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            test_file = nodeid.split("::", 1)[0]
            return test_file if _shares_a_fixture(test_file) else nodeid

    return SharedFixtureScheduling(config, log)


def _plan_for_workers(items: list[pytest.Item]) -> None:
    """The order in which ``make test`` hands the suite to pytest-xdist's workers (see
    `pytest_xdist_make_scheduler`; ``--no-loadscope-reorder`` keeps it).

    Most of a real-system test's time is spent waiting (on a daemon's tick, a database outage, a
    browser), so the workers overlap those waits. Slow tests come first — files that share a
    server between slow tests first of all, the one with the most slow tests leading — then
    other files sharing a fixture, tests of the graph, and the rest: a long test started last
    would leave the other workers idle at the end. Without xdist only the order changes.
    """
    slow_in_file: dict[str, int] = {}
    for item in items:
        if item.get_closest_marker("slow"):
            slow_in_file[item.nodeid.split("::", 1)[0]] = (
                slow_in_file.get(item.nodeid.split("::", 1)[0], 0) + 1
            )

    def order(item: pytest.Item) -> tuple[int, int]:
        test_file = item.nodeid.split("::", 1)[0]
        shared = _shares_a_fixture(test_file)
        if shared and test_file in slow_in_file:
            return 0, -slow_in_file[test_file]
        if item.get_closest_marker("slow"):
            return 1, 0
        if shared:
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
