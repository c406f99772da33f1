"""The Spark driver's class archive: built by a real run of the asset graph, used by the sessions
runs start, and harmless when it is missing, damaged or turned off."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyspark
import pytest

from medallion_assets.resources import class_archive
from medallion_assets.resources.spark import local_defaults
from medallion_assets.settings import Settings

ARCHIVE_ENV = Settings.env_name("spark_class_archive")

# Starts the session a run of the code location gets (its Spark resource, configured from the
# environment like `dagster` configures it), with extra JVM options if given, and prints its
# driver JVM's options and a query's result.
_SESSION = textwrap.dedent(
    """
    import json, sys
    from medallion_assets.definitions import defs
    from medallion_assets.resources.spark import SparkSessionResource
    extra = sys.argv[1]
    resource = defs.resources["spark"]
    if extra:
        options = resource.effective_config().get("spark.driver.extraJavaOptions", "")
        resource = SparkSessionResource(
            master=resource.master,
            class_archive=resource.class_archive,
            spark_config={"spark.driver.extraJavaOptions": f"{options} {extra}"},
        )
    session = resource.spark_session
    runtime = session.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    print(json.dumps({"jvm_options": list(runtime.getInputArguments()),
                      "count": session.range(7).count()}))
    session.stop()
    """
)


def child_env(archive: str) -> dict[str, str]:
    """This environment without the project's settings, plus a one-core local master and
    ``archive`` as the class-archive setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDALLION_", "PYTEST_"))}
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    env[Settings.env_name("spark_master")] = "local[1]"
    env[ARCHIVE_ENV] = archive
    return env


def start_session(archive: str, extra_java_options: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _SESSION, extra_java_options],
        env=child_env(archive),
        capture_output=True,
        text=True,
        timeout=300,
    )


def build_archive(archive: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medallion_assets.tools.build_class_archive", *args],
        env=child_env(str(archive)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fake_java_home(root: Path) -> Path:
    """A directory laid out like a JDK (``bin/java``), enough for finding the executable."""
    java = root / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    return root


def test_the_archive_is_named_for_the_pyspark_version_and_the_java_it_serves(tmp_path):
    first = fake_java_home(tmp_path / "jdk-a")
    path = class_archive.archive_path(None, str(first))
    assert path is not None
    assert path.parent == Path(sys.prefix) / "share" / "medallion_assets"
    assert path.name.startswith(f"spark-driver-{pyspark.__version__}-")
    assert path.suffix == ".jsa"
    # An empty setting is an unset one; the name is stable for the same Java.
    assert class_archive.archive_path("  ", str(first)) == path

    # Another Java executable means another archive.
    second = fake_java_home(tmp_path / "jdk-b")
    assert class_archive.java_executable(str(second)) == (second / "bin" / "java").resolve()
    other = class_archive.archive_path(None, str(second))
    assert other is not None and other.parent == path.parent and other != path


def test_without_java_home_the_java_on_the_path_names_the_archive(tmp_path):
    on_path = shutil.which("java")
    assert on_path, "the tests need Java (make test installs it)"
    assert class_archive.java_executable(None) == Path(os.path.realpath(on_path))
    path = class_archive.archive_path(None, None)
    assert path is not None and path.name.startswith(f"spark-driver-{pyspark.__version__}-")


def test_no_java_means_no_archive(tmp_path):
    nowhere = str(tmp_path / "nowhere")
    assert class_archive.java_executable(nowhere) is None
    assert class_archive.archive_path(None, nowhere) is None


def test_a_configured_path_is_used_as_it_is_whatever_the_java(tmp_path):
    configured = tmp_path / "elsewhere" / "driver.jsa"
    assert class_archive.archive_path(str(configured), None) == configured
    assert class_archive.archive_path(str(configured), str(tmp_path / "nowhere")) == configured


def test_turned_off_or_missing_the_session_gets_no_archive_option(tmp_path):
    assert class_archive.archive_path("off", None) is None
    assert class_archive.archive_path("OFF", str(fake_java_home(tmp_path / "jdk"))) is None
    assert class_archive.java_options("off") is None
    missing = tmp_path / "not-built.jsa"
    assert class_archive.java_options(missing) is None
    # The batch collector is set for a local session whatever happens to the archive.
    for archive in (None, "off", str(missing)):
        assert local_defaults("local[*]", archive)["spark.driver.extraJavaOptions"] == (
            "-XX:+UseParallelGC"
        ), archive


def test_a_built_archive_file_gives_the_session_its_option(tmp_path):
    built = tmp_path / "spark-driver.jsa"
    built.write_bytes(b"archive")
    assert class_archive.java_options(built) == f"-XX:SharedArchiveFile={built}"
    options = local_defaults("local[*]", str(built))["spark.driver.extraJavaOptions"]
    assert options == f"-XX:+UseParallelGC -XX:SharedArchiveFile={built}"
    # A cluster's driver runs in this process too: it gets the archive, not the local collector.
    cluster = local_defaults("spark://10.0.0.1:7077", str(built))
    assert cluster["spark.driver.extraJavaOptions"] == f"-XX:SharedArchiveFile={built}"


@pytest.mark.slow
def test_a_built_archive_is_used_by_the_sessions_runs_start_and_maps(tmp_path):
    archive = tmp_path / "spark-driver.jsa"
    built = build_archive(archive, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    assert f"Spark class archive: {archive}" in built.stdout
    assert "Warning" not in built.stderr, built.stderr[-3000:]
    assert archive.stat().st_size > 10 * 2**20  # thousands of classes, not an empty file

    # -Xshare:on makes the JVM refuse to start unless the archive maps: the session starting is
    # the proof that it is used, not merely named.
    started = start_session(str(archive), "-Xshare:on")
    assert started.returncode == 0, started.stderr[-3000:]
    report = json.loads(started.stdout.strip().splitlines()[-1])
    assert f"-XX:SharedArchiveFile={archive}" in report["jvm_options"]
    assert report["count"] == 7

    # --if-missing leaves a built archive alone.
    modified = archive.stat().st_mtime_ns
    again = build_archive(archive, "--if-missing", timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Spark class archive: {archive} (already built)" in again.stdout
    assert archive.stat().st_mtime_ns == modified


@pytest.mark.slow
def test_a_damaged_archive_costs_nothing_but_its_use(tmp_path):
    damaged = tmp_path / "damaged.jsa"
    damaged.write_bytes(b"\x00not a class archive" * 50_000)
    started = start_session(str(damaged))
    assert started.returncode == 0, started.stderr[-3000:]
    report = json.loads(started.stdout.strip().splitlines()[-1])
    assert f"-XX:SharedArchiveFile={damaged}" in report["jvm_options"]
    assert report["count"] == 7


@pytest.mark.slow
def test_turned_off_the_builder_says_so_and_succeeds():
    """``make spark-archive`` with the archive turned off: it says so and succeeds (sessions
    start without one), instead of building one no session would use."""
    completed = build_archive(Path("off"), timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"No Spark class archive: ${ARCHIVE_ENV} is 'off'" in completed.stdout
    assert "built in" not in completed.stdout
