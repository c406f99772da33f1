"""Shared fixtures: one Spark session for the whole test session, temporary landing/warehouse."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from medallion_assets.resources.spark import SparkSessionResource


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
def landing_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "landing"
    path.mkdir()
    monkeypatch.setenv("MEDALLION_LANDING_DIR", str(path))
    return path


@pytest.fixture
def warehouse_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "warehouse"
    monkeypatch.setenv("MEDALLION_WAREHOUSE_DIR", str(path))
    return path

