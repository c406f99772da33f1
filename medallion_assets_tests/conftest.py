"""Shared fixtures: one Spark session for the whole test session; settings and definitions over
temporary landing and warehouse directories (tests pass settings, they never patch the
environment)."""

from __future__ import annotations

from pathlib import Path

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
