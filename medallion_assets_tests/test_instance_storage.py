"""What a process sees when Dagster's PostgreSQL instance storage cannot be reached: an error that
names the instance storage and the server, never the password. (What a run does then — fail, wait
for the database, record its failure — is tested against a real server in test_team_deployment.)"""

import pytest

from medallion_assets.instance_storage import (
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
