"""The session and JVM settings of every Spark run of bench.py, from one place.

Like with like: the headline compares our pipeline, the plain Spark script (floor.py) and the
notebook's approach (notebook_baseline.py) started with the same settings, so that a ratio
measures the work each one does and not how its JVM was tuned. The pipeline is measured as a user
runs it, and its settings cannot be changed from outside without measuring something else; so the
shared settings (`SHARED`) are the pipeline's own, those `SparkSessionResource` gives a run's
classic local session in this environment: the driver's class-data archive when `make
spark-archive` built it, the parallel collector, 8 shuffle partitions with adaptive execution,
Python call sites off, UTC, and the rest of `local_defaults`. The notebook's approach as it runs
today keeps Spark's defaults (`SPARK_DEFAULTS`: only the driver's memory, the UI and the log level
are set, as the notebook's script always did), in a row of its own.

PySpark starts the driver JVM with a session's settings as ``--conf`` pairs of spark-submit's
command line, so what a JVM was really given can be read back from its command line
(`launched_conf`); bench.py does that for every Spark run, the pipeline's included, and fails when
a run was not started with the settings its row names.

bench.py works the settings out once, before the rounds, and hands them to the scripts in a file
(`write_file`, named by ``$BENCH_SPARK_SETTINGS``): working them out imports the project and
Dagster, seconds that a plain script does not spend and that its measured time must not include.
Run by hand without that variable, a script works them out itself.

    python benchmarks/spark_settings.py [shared|spark-defaults]   # prints the settings
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

SHARED = "shared"
# The pipeline's settings for a small input: `SHARED` with the JVM's quick compiler only, as
# `SparkSessionResource.session_config` starts a session for at most `small_input_rows` rows.
# The small month's runs share these.
SHARED_SMALL = "shared-small"
SPARK_DEFAULTS = "spark-defaults"
CHOICES = (SHARED, SHARED_SMALL, SPARK_DEFAULTS)

# What the notebook's script has always set: a driver heap large enough for the month, and a
# quiet console. Everything else is Spark's default (200 shuffle partitions, G1, no class archive).
SPARK_DEFAULTS_CONF: dict[str, str] = {
    "spark.driver.memory": "2g",
    "spark.ui.enabled": "false",
    "spark.log.level": "WARN",
}

SETTINGS_FILE_ENV = "BENCH_SPARK_SETTINGS"

# Set by each script to its own name; not a setting that changes how the work runs.
_NOT_COMPARED = ("spark.app.name",)


def _pipeline_resource(environ: Mapping[str, str] | None = None):
    """The Spark resource a pipeline run gets in this environment, as `definitions` builds it,
    for a classic local session (``make dev``'s Connect endpoint is not what the CLI measures)."""
    from medallion_assets.resources.spark import SparkSessionResource
    from medallion_assets.settings import Settings

    env = dict(os.environ if environ is None else environ)
    env.pop("MEDALLION_SPARK_REMOTE", None)
    return SparkSessionResource.from_settings(Settings.from_env(env))


def master(environ: Mapping[str, str] | None = None) -> str:
    """The master every Spark run uses: the pipeline's (``local[*]`` unless configured)."""
    return _pipeline_resource(environ).resolved_master()


def conf(settings: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The session settings of ``settings`` (one of `CHOICES`), the master included as
    ``spark.master``."""
    if settings in (SHARED, SHARED_SMALL):
        resource = _pipeline_resource(environ)
        # A small input: as many rows as the resource still calls small (0, never: `SHARED`).
        values = resource.session_config(
            resource.small_input_rows if settings == SHARED_SMALL else None
        )
        return {"spark.master": resource.resolved_master(), **values}
    if settings == SPARK_DEFAULTS:
        return {"spark.master": master(environ), **SPARK_DEFAULTS_CONF}
    raise ValueError(f"unknown settings {settings!r}: expected one of {CHOICES}")


def write_file(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Work out every set of settings for ``environ`` and write them to ``path`` (JSON)."""
    values = {settings: conf(settings, environ) for settings in CHOICES}
    path.write_text(json.dumps(values, indent=1, sort_keys=True))
    return values


def resolved(settings: str) -> dict[str, str]:
    """The settings of ``settings``: from the file ``$BENCH_SPARK_SETTINGS`` names when it is
    set (under bench.py), else worked out here."""
    if settings not in CHOICES:
        raise ValueError(f"unknown settings {settings!r}: expected one of {CHOICES}")
    named = os.environ.get(SETTINGS_FILE_ENV)
    if named:
        return dict(json.loads(Path(named).read_text())[settings])
    return conf(settings)


def session(app_name: str, settings: str):
    """A classic Spark session started with ``settings``, as the pipeline starts its own."""
    from pyspark.sql import SparkSession

    values = resolved(settings)
    if settings in (SHARED, SHARED_SMALL) and values["spark.master"].startswith("local"):
        # The pipeline's resource names a local executor by loopback the same way (the JVM reads
        # it from its environment); see `SparkSessionResource._init_session`.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master(values.pop("spark.master")).appName(app_name)
    for key, value in values.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def launched_conf(command: Sequence[str]) -> dict[str, str]:
    """The settings a driver JVM was started with: the ``--conf key=value`` pairs of its command
    line (spark-submit's, which PySpark builds from the session's settings), without the
    application's name."""
    pairs: dict[str, str] = {}
    for flag, value in itertools.pairwise(command):
        if flag == "--conf" and "=" in value:
            key, _, setting = value.partition("=")
            if key not in _NOT_COMPARED:
                pairs[key] = setting
    return pairs


def differences(expected: Mapping[str, str], launched: Mapping[str, str]) -> list[str]:
    """How the settings a JVM was started with differ from those expected, one line per key."""
    lines = []
    for key in sorted(set(expected) | set(launched)):
        if key in _NOT_COMPARED or expected.get(key) == launched.get(key):
            continue
        lines.append(
            f"{key}: expected {expected.get(key, '(unset)')!r}, "
            f"started with {launched.get(key, '(unset)')!r}"
        )
    return lines


def describe(values: Mapping[str, str]) -> str:
    """``key=value`` pairs on one line, in key order."""
    return "; ".join(f"`{key}={value}`" for key, value in sorted(values.items()))


def describe_difference(base: Mapping[str, str], other: Mapping[str, str]) -> str:
    """The settings of ``other`` that ``base`` does not have, or has with another value, as
    `describe` shows them; "none" when there are none."""
    changed = {key: value for key, value in other.items() if base.get(key) != value}
    return describe(changed) if changed else "none"


if __name__ == "__main__":
    chosen = sys.argv[1] if len(sys.argv) > 1 else SHARED
    for key, value in sorted(conf(chosen).items()):
        print(f"{key}={value}")
