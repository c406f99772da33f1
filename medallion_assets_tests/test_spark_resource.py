import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from dagster import EnvVar

from medallion_assets.definitions import build_defs
from medallion_assets.resources.spark import (
    QUICK_JIT_OPTION,
    REMOTE_ENV,
    SMALL_INPUT_CONF,
    SparkConnectUnavailable,
    SparkSessionResource,
    quick_jit,
    shown_endpoint,
    with_java_option,
)
from medallion_assets.settings import Settings
from medallion_assets_tests.dagster_dev import free_port


def spark_resource(**environ: str) -> SparkSessionResource:
    """The Spark resource of the code location, configured from ``environ`` as the variables a
    deployment sets."""
    return build_defs(Settings.from_env(environ)).resources["spark"]


def json_printed(script: str, cwd, env: dict[str, str], *args: str) -> tuple[dict, str]:
    """Run ``script`` in a fresh Python process; the JSON of its last line of output, and its
    standard error."""
    completed = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1]), completed.stderr


def test_the_master_comes_from_its_setting_and_defaults_to_local():
    assert spark_resource().resolved_master() == "local[*]"
    cluster = spark_resource(MEDALLION_SPARK_MASTER="spark://127.0.0.1:7077")
    assert cluster.resolved_master() == "spark://127.0.0.1:7077"
    assert not cluster.is_remote
    assert SparkSessionResource(master="local[1]").resolved_master() == "local[1]"


def test_a_connect_endpoint_comes_from_its_setting_and_wins_over_the_master(monkeypatch):
    assert spark_resource().resolved_remote() is None
    assert not spark_resource().is_remote
    environ = {
        "MEDALLION_SPARK_REMOTE": "sc://127.0.0.1:15002",
        "MEDALLION_SPARK_MASTER": "local[1]",
    }
    resource = spark_resource(**environ)
    # A secret: the resource names its variable, which Dagster (or the resource, outside a run)
    # reads from the process's environment.
    assert isinstance(resource.remote, EnvVar) and resource.remote.env_var_name == REMOTE_ENV
    monkeypatch.setenv(REMOTE_ENV, environ[REMOTE_ENV])
    assert resource.resolved_remote() == "sc://127.0.0.1:15002"
    assert resource.is_remote
    assert SparkSessionResource(remote="sc://spark.example:443").resolved_remote() == (
        "sc://spark.example:443"
    )


def test_a_connect_client_sets_only_session_settings():
    """Memory, UI and Hadoop settings belong to whoever starts the server, not to a client."""
    config = SparkSessionResource(
        remote="sc://127.0.0.1:15002", spark_config={"spark.sql.shuffle.partitions": 4}
    ).effective_config()
    assert config["spark.sql.session.timeZone"] == "UTC"
    assert config["spark.sql.parquet.outputTimestampType"] == "TIMESTAMP_MICROS"
    assert config["spark.sql.shuffle.partitions"] == "4"
    assert all(key.startswith("spark.sql.") for key in config)


def test_an_endpoint_is_shown_without_its_parameters_which_may_hold_a_token():
    assert shown_endpoint("sc://127.0.0.1:15002") == "sc://127.0.0.1:15002"
    assert shown_endpoint("sc://spark.example:443/;use_ssl=true;token=s3cr3t") == (
        "sc://spark.example:443"
    )
    assert shown_endpoint("sc://spark.example:443;token=s3cr3t") == "sc://spark.example:443"


@pytest.mark.filterwarnings("ignore:.*RETRIES_EXCEEDED:UserWarning")
def test_an_unreachable_connect_endpoint_is_named_within_seconds_and_its_token_is_not():
    """The Connect client's own reconnecting is cut to a few seconds (its default is about ten
    minutes), and the error names the endpoint and how to start one, but not its token."""
    was_connect_mode = "SPARK_CONNECT_MODE_ENABLED" in os.environ
    endpoint = f"sc://127.0.0.1:{free_port()}"
    token = "tok-never-shown-5521"
    started = time.monotonic()
    try:
        with pytest.raises(SparkConnectUnavailable) as error:
            SparkSessionResource(remote=f"{endpoint}/;use_ssl=true;token={token}").spark_session  # noqa: B018
    finally:
        # A Connect session switches PySpark to Connect mode; this process stays classic.
        if not was_connect_mode:
            os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
    assert time.monotonic() - started < 30
    message = str(error.value)
    assert message.startswith(f"The Spark Connect server at {endpoint} (${REMOTE_ENV}) does not")
    assert "make dev" in message
    assert token not in message


def test_local_defaults_can_be_overridden():
    config = SparkSessionResource(
        spark_config={"spark.ui.enabled": True, "spark.sql.shuffle.partitions": 64}
    ).effective_config()
    assert config["spark.ui.enabled"] == "True"
    assert config["spark.sql.shuffle.partitions"] == "64"
    assert config["spark.sql.session.timeZone"] == "UTC"
    assert config["spark.driver.host"] == "127.0.0.1"
    cluster = SparkSessionResource(master="spark://10.0.0.1:7077").effective_config()
    assert "spark.driver.host" not in cluster


def test_only_a_local_session_for_a_known_small_input_gets_the_quick_compiler():
    assert quick_jit("local[*]", 1_000, 500_000)
    assert quick_jit("local[2]", 500_000, 500_000)
    assert not quick_jit("local[*]", 500_001, 500_000)
    assert not quick_jit("local[*]", None, 500_000)  # unknown: the full compilers
    assert not quick_jit("local[*]", 1_000, 0)  # turned off
    assert not quick_jit("spark://10.0.0.1:7077", 1_000, 500_000)  # tasks run elsewhere


def test_the_quick_compiler_is_added_to_the_driver_options_unless_they_choose_their_own():
    defaults = SparkSessionResource(master="local[*]").effective_config()
    added = with_java_option(defaults, QUICK_JIT_OPTION)["spark.driver.extraJavaOptions"]
    assert added.split() == [*defaults["spark.driver.extraJavaOptions"].split(), QUICK_JIT_OPTION]
    assert with_java_option({}, QUICK_JIT_OPTION) == {
        "spark.driver.extraJavaOptions": QUICK_JIT_OPTION
    }
    own = {"spark.driver.extraJavaOptions": "-XX:-TieredCompilation"}
    assert with_java_option(own, QUICK_JIT_OPTION) == own


def test_a_session_for_a_small_input_runs_without_adaptive_execution_on_one_partition():
    resource = SparkSessionResource(master="local[*]", small_input_rows=500_000)
    assert resource.session_config(None) == resource.effective_config()
    assert resource.session_config(500_001) == resource.effective_config()
    small = resource.session_config(1_000)
    assert {k: small[k] for k in SMALL_INPUT_CONF} == {
        "spark.sql.adaptive.enabled": "false",
        "spark.sql.shuffle.partitions": "1",
    }
    assert small["spark.driver.extraJavaOptions"].endswith(QUICK_JIT_OPTION)
    # A setting of the deployment's own is kept.
    own = SparkSessionResource(
        master="local[*]", spark_config={"spark.sql.shuffle.partitions": "4"}
    ).session_config(1_000)
    assert own["spark.sql.shuffle.partitions"] == "4"
    assert own["spark.sql.adaptive.enabled"] == "false"


def test_a_running_session_is_used_without_asking_for_the_input_size(spark):
    def size():
        raise AssertionError("asked for the input size of a session already running")

    resource = SparkSessionResource(master="local[1]")
    assert resource.session_for(size) is spark
    assert not resource.owns_session


@pytest.mark.slow
def test_a_new_local_session_is_set_for_a_small_input_only_when_its_input_is_small(
    tmp_path,
):
    """In a fresh process per case: the JVM's own arguments say which compilers it runs, the
    session whether adaptive execution is on, and the size function is asked once, when the
    session starts."""
    script = textwrap.dedent(
        """
        import json, sys
        from medallion_assets.resources.spark import SparkSessionResource, stop_classic

        asked = []
        def rows():
            asked.append(1)
            return int(sys.argv[1])

        resource = SparkSessionResource(master="local[1]", small_input_rows=500_000)
        session = resource.session_for(rows)
        resource.session_for(rows)
        jvm = session.sparkContext._jvm
        arguments = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
                         .getInputArguments())
        adaptive = session.conf.get("spark.sql.adaptive.enabled")
        print(json.dumps({"arguments": arguments, "asked": len(asked), "adaptive": adaptive}))
        stop_classic(session)
        """
    )
    # Without the suite's own JVM options (conftest), which choose the quick compiler for all.
    env = {k: v for k, v in os.environ.items() if k != "JAVA_TOOL_OPTIONS"}
    seen = {rows: json_printed(script, tmp_path, env, str(rows))[0] for rows in (1_000, 5_000_000)}
    assert QUICK_JIT_OPTION in seen[1_000]["arguments"]
    assert QUICK_JIT_OPTION not in seen[5_000_000]["arguments"]
    assert "-XX:+UseParallelGC" in seen[5_000_000]["arguments"]
    assert seen[1_000]["asked"] == seen[5_000_000]["asked"] == 1
    assert (seen[1_000]["adaptive"], seen[5_000_000]["adaptive"]) == ("false", "true")


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
        servers = []

        @asset
        def first(spark: SparkSessionResource):
            seen.append(id(spark.spark_session))
            servers.append(spark.spark_session.sparkContext._accumulatorServer)
            return 1

        @asset
        def second(first, spark: SparkSessionResource):
            seen.append(id(spark.spark_session))
            return 2

        assert SparkSession.getActiveSession() is None
        spark = SparkSessionResource(master="local[1]")
        result = materialize([first, second], resources={"spark": spark})
        assert result.success
        assert len(seen) == 2 and seen[0] == seen[1], seen
        assert SparkContext._active_spark_context is None, "session still running after the run"
        # PySpark's accumulator server is shut down too (on a thread of its own, not waited for).
        import time
        deadline = time.monotonic() + 5
        while servers[0].socket.fileno() != -1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert servers[0].server_shutdown and servers[0].socket.fileno() == -1
        print("STOPPED-OK")
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "STOPPED-OK" in completed.stdout


@pytest.mark.slow
def test_a_local_session_names_its_executor_by_loopback_not_by_a_network_interface(tmp_path):
    """Started from an environment without SPARK_LOCAL_IP (as `make run` is): the JVM gets it
    from the resource, so the local executor is named by 127.0.0.1 even on a host whose name
    resolves elsewhere or to loopback (where Spark would otherwise pick the first interface)."""
    script = textwrap.dedent(
        """
        import json
        from medallion_assets.resources.spark import SparkSessionResource, stop_classic

        resource = SparkSessionResource(master="local[1]")
        jvm = resource.spark_session.sparkContext._jvm
        host = jvm.org.apache.spark.util.Utils.localCanonicalHostName()
        print(json.dumps({
            "variable": jvm.java.lang.System.getenv("SPARK_LOCAL_IP"),
            "loopback": jvm.java.net.InetAddress.getByName(host).isLoopbackAddress(),
        }))
        stop_classic(resource.spark_session)
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_LOCAL_IP", "SPARK_REMOTE")}
    seen, stderr = json_printed(script, tmp_path, env)
    assert seen == {"variable": "127.0.0.1", "loopback": True}
    assert "resolves to a loopback address" not in stderr


def test_building_columns_sends_no_call_sites_to_the_jvm(spark, monkeypatch):
    """A session from the resource does not have PySpark record each column function's Python
    call site on the JVM: building a plan is not a chain of round trips through py4j."""
    import py4j.clientserver
    import pyspark.errors.utils
    from pyspark.sql import functions as F

    # Decided once per process, from the active session: decide it from this one.
    monkeypatch.setattr(pyspark.errors.utils, "_enable_debugging_cache", None)
    sent: list[str] = []
    send = py4j.clientserver.ClientServerConnection.send_command

    def recording(self, command):
        sent.append(command)
        return send(self, command)

    monkeypatch.setattr(py4j.clientserver.ClientServerConnection, "send_command", recording)
    rule = F.lit(True)
    for name in ("a", "b", "c"):
        rule = rule & (F.col(name).isNull() | F.col(name).isNotNull())
    assert rule is not None and sent, "no command reached the JVM: nothing was measured"
    assert not [c for c in sent if "PySparkCurrentOrigin" in c]
    assert len(sent) < 40, len(sent)
