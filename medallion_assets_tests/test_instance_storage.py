"""What a process sees when Dagster's PostgreSQL instance storage cannot be reached: an error that
names the instance storage and the server, never the password. (What a run does then — fail, wait
for the database, record its failure — is tested against a real server in test_team_deployment.)"""

import dagster as dg
import pytest

from medallion_assets.retries import SPARK_RETRY_POLICY
from medallion_assets.tools.instance_storage import (
    GuardedEventLogStorage,
    GuardedRunStorage,
    InstanceStorageUnavailableError,
    describe_database,
)
from medallion_assets_tests.postgres_server import free_port


def test_the_database_is_described_without_its_password():
    described = describe_database("postgresql://dagster:s3cret@db.internal:5433/dagster?sslmode=require")
    assert described == "PostgreSQL database 'dagster' at db.internal:5433 (user dagster)"


def test_a_storage_whose_server_does_not_answer_names_the_instance_storage():
    port = free_port()  # nothing listens there
    storage = GuardedRunStorage(
        f"postgresql://dagster:s3cret@127.0.0.1:{port}/dagster", should_autocreate_tables=False
    )
    with pytest.raises(InstanceStorageUnavailableError) as raised:
        storage.get_run_records()
    message = str(raised.value)
    assert message.startswith("Dagster's instance storage is unreachable")
    assert f"PostgreSQL database 'dagster' at 127.0.0.1:{port} (user dagster)" in message
    assert "Connection refused" in message
    assert "s3cret" not in message


def test_the_event_log_built_from_its_configuration_names_the_instance_storage_too():
    """As dagster.yaml's `event_log_storage` builds it: the guarded class itself (not
    dagster-postgres's, which its parent's `from_config_value` would build), its reads guarded."""
    port = free_port()  # nothing listens there
    storage = GuardedEventLogStorage.from_config_value(
        None,
        {
            "postgres_url": f"postgresql://dagster:s3cret@127.0.0.1:{port}/dagster",
            "should_autocreate_tables": False,
            "failure_record_wait_seconds": 5,
        },
    )
    assert type(storage) is GuardedEventLogStorage
    with pytest.raises(InstanceStorageUnavailableError) as raised:
        storage.get_logs_for_run("a-run-id")
    message = str(raised.value)
    assert message.startswith("Dagster's instance storage is unreachable")
    assert f"at 127.0.0.1:{port} (user dagster)" in message
    assert "s3cret" not in message


def test_a_step_that_loses_the_instance_storage_fails_at_once_despite_its_retry_policy():
    """Whichever event is the first one lost — here one written from inside the step — the step
    fails without a retry: a retry would wait out the backoff and could then let the run pass as
    if nothing had been lost."""
    attempts = []

    @dg.op(retry_policy=SPARK_RETRY_POLICY)
    def writes_an_event():
        attempts.append(1)
        raise InstanceStorageUnavailableError("Dagster's instance storage is unreachable: test")

    @dg.job
    def one_step():
        writes_an_event()

    result = one_step.execute_in_process(raise_on_error=False)
    assert not result.success
    assert len(attempts) == 1
    assert not result.filter_events(lambda e: e.is_step_up_for_retry)
    [failure] = result.get_step_failure_events()
    message = failure.step_failure_data.error.message
    assert "Dagster's instance storage is unreachable: test" in message
