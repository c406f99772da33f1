"""The Spark session of a run: job-cluster semantics on top of dagster-pyspark.

dagster-pyspark's resources create a session and never stop it, and Dagster's default
multiprocess executor would start one JVM per step. This resource extends
`dagster_pyspark.PySparkResource` (so code written against it keeps working) and changes its
lifecycle: a run owns exactly one session, created on first use (a run or a sensor evaluation that
touches no Spark pays no JVM start, as with dagster-pyspark's `LazyPySparkResource`), shared by
all the run's steps (the project runs Spark assets with the in-process executor), and stopped when
the run ends — like a Databricks job cluster, never an idle interactive one.

If a session already exists in the process (a notebook, or a test suite's shared session), the
run reuses it and leaves it running: it stops only what it started.
"""

from __future__ import annotations

import os
from typing import Any

from dagster import InitResourceContext
from dagster_pyspark import PySparkResource
from pydantic import Field, PrivateAttr
from pyspark.sql import SparkSession

MASTER_ENV = "MEDALLION_SPARK_MASTER"
DEFAULT_MASTER = "local[*]"

# Settings every session gets, whatever the master: correctness rather than tuning.
REQUIRED_SQL_CONF: dict[str, str] = {
    # Timestamps are UTC instants end to end; Delta readers expect INT64 micros, not INT96.
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}


def local_defaults(master: str) -> dict[str, str]:
    """Defaults for a laptop or a single CI machine; each can be overridden by `spark_config`."""
    defaults = {
        **REQUIRED_SQL_CONF,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": "WARN",
        # Adaptive execution coalesces these per stage; a small default suits a few cores.
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.adaptive.enabled": "true",
        # Spark's _SUCCESS markers and summary files are meaningless in a Delta table.
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.hadoop.parquet.summary.metadata.level": "NONE",
    }
    if master.startswith("local"):
        defaults.update(
            {
                "spark.driver.memory": "2g",
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
            }
        )
    return defaults


class SparkSessionResource(PySparkResource):
    """One Spark session per Dagster run, created lazily and stopped when the run ends.

    ``master`` defaults to ``$MEDALLION_SPARK_MASTER`` or ``local[*]``, read when the session is
    created; ``spark_config`` overrides any default (e.g. ``{"spark.ui.enabled": "true"}``).
    """

    master: str | None = Field(
        default=None, description=f"Spark master URL; default ${MASTER_ENV} or {DEFAULT_MASTER}."
    )
    app_name: str = Field(default="medallion_assets", description="Spark application name.")
    spark_config: dict[str, Any] = Field(
        default_factory=dict, description="Spark settings that override the project's defaults."
    )
    _owns_session: bool = PrivateAttr(default=False)

    def resolved_master(self) -> str:
        return self.master or os.environ.get(MASTER_ENV) or DEFAULT_MASTER

    def effective_config(self) -> dict[str, str]:
        master = self.resolved_master()
        config = local_defaults(master)
        config.update({k: str(v) for k, v in self.spark_config.items()})
        return config

    def _init_session(self) -> None:
        if self._spark_session is not None:
            return
        existing = SparkSession.getActiveSession()
        if existing is not None:
            self._owns_session = False
            for key, value in REQUIRED_SQL_CONF.items():
                existing.conf.set(key, value)
            self._spark_session = existing
            return
        master = self.resolved_master()
        if master.startswith("local"):
            # A local session serves this machine only: bind to loopback, not the first interface.
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = SparkSession.builder.master(master).appName(self.app_name)
        for key, value in self.effective_config().items():
            builder = builder.config(key, value)
        self._spark_session = builder.getOrCreate()
        self._owns_session = True

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Nothing at run start: the session is created by the first step that asks for it."""

    @property
    def spark_session(self) -> SparkSession:
        self._init_session()
        return self._spark_session

    @property
    def spark_context(self):
        return self.spark_session.sparkContext

    @property
    def owns_session(self) -> bool:
        return self._owns_session

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        session = self._spark_session
        if session is not None and self.owns_session:
            session.stop()
        self._spark_session = None
