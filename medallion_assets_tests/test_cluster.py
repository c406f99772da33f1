"""The pipeline against a real Spark standalone cluster: a master and a worker started on
127.0.0.1 with the pyspark distribution's own launcher (bin/spark-class), the month materialized
through the dagster CLI with MEDALLION_SPARK_MASTER pointing at it."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pyspark
import pytest

from medallion_assets.tools.sample_data import generate_month
from medallion_assets_tests.ports import free_port


def spark_class(*args: str, log: Path, env: dict) -> subprocess.Popen:
    launcher = Path(pyspark.__file__).parent / "bin" / "spark-class"
    return subprocess.Popen([str(launcher), *args], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(what)


def alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as response:
            return sum(1 for w in json.load(response)["workers"] if w["state"] == "ALIVE")
    except OSError:
        return 0


@pytest.fixture
def standalone_cluster(tmp_path):
    port, ui_port, worker_ui = free_port(), free_port(), free_port()
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1",
               SPARK_HOME=str(Path(pyspark.__file__).parent),
               SPARK_WORKER_DIR=str(tmp_path / "worker"), SPARK_LOG_DIR=str(tmp_path))
    master = spark_class("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                         "--port", str(port), "--webui-port", str(ui_port),
                         log=tmp_path / "master.log", env=env)
    worker = spark_class("org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                         "--cores", "2", "--memory", "2g", "--webui-port", str(worker_ui),
                         f"spark://127.0.0.1:{port}", log=tmp_path / "worker.log", env=env)
    try:
        wait_for(lambda: alive_workers(ui_port) == 1, 120,
                 "the worker did not register with the master")
        yield f"spark://127.0.0.1:{port}", ui_port
    finally:
        for process in (worker, master):
            os.killpg(process.pid, signal.SIGTERM)
        for process in (worker, master):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_month_materializes_on_a_standalone_cluster(standalone_cluster, tmp_path):
    master_url, ui_port = standalone_cluster
    landing, warehouse, home = tmp_path / "landing", tmp_path / "warehouse", tmp_path / "home"
    landing.mkdir()
    home.mkdir()
    generate_month("2019-10", 3000, landing, seed=3)
    env = dict(os.environ, MEDALLION_SPARK_MASTER=master_url, MEDALLION_LANDING_DIR=str(landing),
               MEDALLION_WAREHOUSE_DIR=str(warehouse), DAGSTER_HOME=str(home),
               SPARK_LOCAL_IP="127.0.0.1")
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m",
         "medallion_assets.definitions", "--select", "*", "--partition", "2019-10"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    # The work ran on the cluster: the master lists a finished application.
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as response:
        state = json.load(response)
    assert [app["name"] for app in state["completedapps"]] == ["medallion_assets"]
    bronze = pl.read_delta(str(warehouse / "bronze" / "events"))
    assert bronze.height == 3000
    silver = pl.read_delta(str(warehouse / "silver" / "events"))
    assert 0 < silver.height < 3000
    gold = pl.read_delta(str(warehouse / "gold" / "revenue_by_brand"))
    purchases = silver.filter(pl.col("event_type") == "purchase")
    assert gold["purchases"].sum() == purchases.height
    assert gold["total_revenue"].sum() == purchases["price"].sum()
