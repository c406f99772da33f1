import subprocess
import sys
import textwrap

import pytest

from medallion_assets.resources.spark import SparkSessionResource


def test_master_comes_from_the_environment_unless_configured(monkeypatch):
    monkeypatch.delenv("MEDALLION_SPARK_MASTER", raising=False)
    assert SparkSessionResource().resolved_master() == "local[*]"
    monkeypatch.setenv("MEDALLION_SPARK_MASTER", "spark://127.0.0.1:7077")
    assert SparkSessionResource().resolved_master() == "spark://127.0.0.1:7077"
    assert SparkSessionResource(master="local[1]").resolved_master() == "local[1]"


def test_local_defaults_can_be_overridden(monkeypatch):
    monkeypatch.delenv("MEDALLION_SPARK_MASTER", raising=False)
    config = SparkSessionResource(spark_config={"spark.ui.enabled": True, "spark.sql.shuffle.partitions": 64}).effective_config()
    assert config["spark.ui.enabled"] == "True"
    assert config["spark.sql.shuffle.partitions"] == "64"
    assert config["spark.sql.session.timeZone"] == "UTC"
    assert config["spark.driver.host"] == "127.0.0.1"
    cluster = SparkSessionResource(master="spark://10.0.0.1:7077").effective_config()
    assert "spark.driver.host" not in cluster


def test_a_shared_session_is_reused_and_left_running(spark):
    resource = SparkSessionResource()
    assert resource.spark_session is spark
    assert not resource.owns_session
    resource.teardown_after_execution(None)
    assert spark.range(3).count() == 3


@pytest.mark.slow
def test_a_run_starts_one_session_for_all_its_steps_and_stops_it_at_the_end(tmp_path):
    """In a fresh process (no shared session): two steps see the same session; after the run the
    JVM-side SparkContext is gone."""
    script = textwrap.dedent(
        """
        from dagster import asset, materialize
        from pyspark import SparkContext
        from pyspark.sql import SparkSession
        from medallion_assets.resources.spark import SparkSessionResource

        seen = []

        @asset
        def first(spark: SparkSessionResource):
            seen.append(id(spark.spark_session))
            return 1

        @asset
        def second(first, spark: SparkSessionResource):
            seen.append(id(spark.spark_session))
            return 2

        assert SparkSession.getActiveSession() is None
        result = materialize([first, second], resources={"spark": SparkSessionResource(master="local[1]")})
        assert result.success
        assert len(seen) == 2 and seen[0] == seen[1], seen
        assert SparkContext._active_spark_context is None, "session still running after the run"
        print("STOPPED-OK")
        """
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "STOPPED-OK" in completed.stdout
