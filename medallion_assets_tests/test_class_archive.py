"""The Spark driver's class archive: built by a real run of the asset graph, used by the sessions
runs start, and harmless when it is missing, damaged or turned off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyspark
import pytest

from medallion_assets.resources import class_archive
from medallion_assets.resources.class_archive import ARCHIVE_ENV
from medallion_assets.resources.spark import local_defaults

# Starts a session the way a run does, prints its driver JVM's options and a query's result.
_SESSION = textwrap.dedent(
    """
    import json, sys
    from medallion_assets.resources.spark import SparkSessionResource
    extra = sys.argv[1]
    resource = SparkSessionResource(master="local[1]")
    options = resource.effective_config().get("spark.driver.extraJavaOptions", "")
    if extra:
        resource = SparkSessionResource(
            master="local[1]",
            spark_config={"spark.driver.extraJavaOptions": f"{options} {extra}"},
        )
    session = resource.spark_session
    runtime = session.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    print(json.dumps({"jvm_options": list(runtime.getInputArguments()),
                      "count": session.range(7).count()}))
    session.stop()
    """
)


def start_session(env_archive: str, extra_java_options: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _SESSION, extra_java_options],
        env={**_clean_env(), ARCHIVE_ENV: env_archive},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("MEDALLION_SPARK_REMOTE", "MEDALLION_SPARK_MASTER", "SPARK_CONNECT_MODE_ENABLED"):
        env.pop(name, None)
    return env


def test_the_archive_is_named_for_the_pyspark_version_and_the_java_it_serves(
    monkeypatch, tmp_path
):
    monkeypatch.delenv(ARCHIVE_ENV, raising=False)
    path = class_archive.archive_path()
    assert path is not None
    assert path.parent == Path(sys.prefix) / "share" / "medallion_assets"
    assert path.name.startswith(f"spark-driver-{pyspark.__version__}-")

    # Another Java executable means another archive; no Java, no archive.
    other_java = tmp_path / "jdk" / "bin" / "java"
    other_java.parent.mkdir(parents=True)
    other_java.write_text("#!/bin/sh\n")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    assert class_archive.java_executable() == other_java.resolve()
    other = class_archive.archive_path()
    assert other is not None and other.parent == path.parent and other != path
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    assert class_archive.java_executable() is None
    assert class_archive.archive_path() is None


def test_turned_off_or_missing_the_session_gets_no_archive_option(monkeypatch, tmp_path):
    monkeypatch.setenv(ARCHIVE_ENV, "off")
    assert class_archive.archive_path() is None
    assert "SharedArchiveFile" not in local_defaults("local[*]").get(
        "spark.driver.extraJavaOptions", ""
    )
    monkeypatch.setenv(ARCHIVE_ENV, str(tmp_path / "not-built.jsa"))
    assert class_archive.java_options() is None
    # The batch collector is set for a local session whatever happens to the archive.
    assert local_defaults("local[*]")["spark.driver.extraJavaOptions"] == "-XX:+UseParallelGC"


@pytest.mark.slow
def test_a_built_archive_is_used_by_the_sessions_runs_start_and_maps(tmp_path):
    archive = tmp_path / "spark-driver.jsa"
    built = subprocess.run(
        [sys.executable, "-m", "medallion_assets.resources.class_archive"],
        env={**_clean_env(), ARCHIVE_ENV: str(archive)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert f"Spark class archive: {archive}" in built.stdout
    assert archive.stat().st_size > 10 * 2**20  # thousands of classes, not an empty file

    # -Xshare:on makes the JVM refuse to start unless the archive maps: the session starting is
    # the proof that it is used, not merely named.
    started = start_session(str(archive), "-Xshare:on")
    assert started.returncode == 0, started.stderr[-3000:]
    report = json.loads(started.stdout.strip().splitlines()[-1])
    assert f"-XX:SharedArchiveFile={archive}" in report["jvm_options"]
    assert report["count"] == 7

    # --if-missing leaves a built archive alone.
    again = subprocess.run(
        [sys.executable, "-m", "medallion_assets.resources.class_archive", "--if-missing"],
        env={**_clean_env(), ARCHIVE_ENV: str(archive)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and "already built" in again.stdout


@pytest.mark.slow
def test_a_damaged_archive_costs_nothing_but_its_use(tmp_path):
    damaged = tmp_path / "damaged.jsa"
    damaged.write_bytes(b"\x00not a class archive" * 50_000)
    started = start_session(str(damaged))
    assert started.returncode == 0, started.stderr[-3000:]
    report = json.loads(started.stdout.strip().splitlines()[-1])
    assert f"-XX:SharedArchiveFile={damaged}" in report["jvm_options"]
    assert report["count"] == 7
