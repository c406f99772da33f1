"""Month deadlines under the real daemon: `make dev` with the default automation (no schedule, the
sensors as they start), an empty landing directory and a month already past its deadline. The
UI's GraphQL shows that month's deadline check failed, and the webhook gets one message for it."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from medallion_assets.automation.deadlines import (
    CHECK_JOB_NAME,
    CHECK_NAME,
    SENSOR_NAME,
    MonthDeadline,
)
from medallion_assets.partitions import month_start, partition_key_for
from medallion_assets.settings import Settings
from medallion_assets_tests.dagster_dev import dagster_dev, wait_for
from medallion_assets_tests.test_alerts import SECRET_PATH, Webhook

pytestmark = pytest.mark.slow

TIMEOUT = 300


def latest_overdue_month(now: dt.datetime) -> str:
    """The last month whose default deadline has passed at ``now``."""
    first_not_due = MonthDeadline.of_settings(Settings()).first_month_due_after(now)
    previous = month_start(first_not_due) - dt.timedelta(days=1)
    return partition_key_for(previous.replace(day=1))


def check_executions(server, month: str) -> list[dict]:
    data = server.graphql(
        """query Checks($key: AssetKeyInput!, $name: String!, $partition: String) {
             assetCheckExecutions(assetKey: $key, checkName: $name, partition: $partition,
                                  limit: 10) {
               runId status partition
               evaluation { success description } } }""",
        {"key": {"path": ["landing", "events_csv"]}, "name": CHECK_NAME, "partition": month},
    )
    return data["assetCheckExecutions"]


def test_under_the_daemon_an_overdue_month_fails_its_check_and_is_alerted_once(tmp_path):
    month = latest_overdue_month(dt.datetime.now(dt.timezone.utc))
    webhook = Webhook()
    try:
        with dagster_dev(
            tmp_path, MEDALLION_ALERT_WEBHOOK_URL=webhook.url, MEDALLION_FIRST_MONTH=month
        ) as server:
            [execution] = wait_for(
                f"the deadline check of {month}",
                lambda: (
                    [e for e in check_executions(server, month) if e["status"] == "FAILED"] or None
                ),
                TIMEOUT,
                every=2,
            )
            assert execution["partition"] == month
            assert execution["evaluation"]["success"] is False
            assert execution["evaluation"]["description"].startswith(f"{month} was due by ")
            assert "no file for" in execution["evaluation"]["description"]
            [run] = [r for r in server.runs() if r["runId"] == execution["runId"]]
            assert run["jobName"] == CHECK_JOB_NAME
            tags = {t["key"]: t["value"] for t in run["tags"]}
            assert tags["dagster/partition"] == month
            assert tags["dagster/sensor_name"] == SENSOR_NAME

            wait_for("the deadline alert", lambda: webhook.requests or None, TIMEOUT, every=0.5)
            # The sensor looks once a minute; a second tick must not alert again.
            started = max(t["timestamp"] for t in server.sensor_ticks(SENSOR_NAME))
            wait_for(
                "a later tick of the deadline sensor",
                lambda: (
                    [t for t in server.ended_ticks(SENSOR_NAME) if t["timestamp"] > started]
                    or None
                ),
                TIMEOUT,
                every=2,
            )
        [(path, _, body)] = webhook.requests
        assert path == SECRET_PATH
        text = json.loads(body)["text"]
        assert text.startswith(f"Month {month} missed its deadline")
        assert "looked for" in text
    finally:
        webhook.close()
