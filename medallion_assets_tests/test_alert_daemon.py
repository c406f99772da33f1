"""Failure alerts under a real ``dagster dev`` (webserver, daemon, code server), as deployed.

One failed run, with both channels configured the way a deployment configures them — variables
in the environment of ``dagster dev`` — and a secret in each: the webhook's token path, the SMTP
password, a PostgreSQL URL with its password (the team deployment's ``DAGSTER_POSTGRES_URL``). The
mail server is real (aiosmtpd, STARTTLS required, its certificate trusted through
``SSL_CERT_FILE``); the webhook is down when the run fails — nothing listens on its port — and
comes back on that port once the daemon's retry sensor has been refused at least once more.
Retries are made quick through the settings (first wait 1 s), not by touching the code.

The module's fixture runs that story once; each test reads what it left: the endpoints, the run,
the sensors' ticks (read from the webserver while it runs) and the instance's directory.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterInstance

from medallion_assets_tests.dagster_dev import (
    PROJECT,
    DagsterDev,
    dagster_home,
    free_port,
    user_env,
    wait_for,
)
from medallion_assets_tests.test_alert_smtp import TlsMailServer, self_signed
from medallion_assets_tests.test_alerts import SECRET_PATH, Webhook

pytestmark = pytest.mark.slow

SMTP_PASSWORD = "smtp-Pa55-never-logged-8812"
PG_PASSWORD = "pg-Pa55-never-logged-3391"
TIMEOUT = 300
FAILURE_SENSOR = "medallion_failure_alerts"
RETRY_SENSOR = "medallion_alert_retries"
SENSORS = (FAILURE_SENSOR, RETRY_SENSOR)


class DagsterDevOnly(DagsterDev):
    """``dagster dev`` on the project's workspace, without `make dev`'s Spark Connect server: the
    run fails before it asks for Spark."""

    def command(self) -> list[str]:
        return [
            str(PROJECT / ".venv" / "bin" / "dagster"),
            "dev",
            "-w",
            str(PROJECT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]


@dataclass
class Story:
    run_id: str
    home: Path
    webhook: Webhook
    webhook_back_at: float
    mails: list
    logins: list
    tags: dict[str, str]
    ticks: dict[str, list[dict]]
    dev_log: str
    secrets: list[str]


def run_tags(server: DagsterDev, run_id: str) -> dict[str, str]:
    [run] = [r for r in server.runs() if r["runId"] == run_id]
    return {t["key"]: t["value"] for t in run["tags"]}


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    root = tmp_path_factory.mktemp("alert-daemon")
    cert_file, tls = self_signed(root)
    mail = TlsMailServer(tls)
    webhook_port = free_port()  # nothing listens there yet: the endpoint is down
    webhook_url = f"http://127.0.0.1:{webhook_port}{SECRET_PATH}"
    home = dagster_home(root)
    env = user_env(
        root,
        DAGSTER_HOME=str(home),
        MEDALLION_ALERT_WEBHOOK_URL=webhook_url,
        MEDALLION_SMTP_HOST="127.0.0.1",
        MEDALLION_SMTP_PORT=str(mail.port),
        MEDALLION_SMTP_TO="data-oncall@example.com",
        MEDALLION_SMTP_USER="alerts",
        MEDALLION_SMTP_PASSWORD=SMTP_PASSWORD,
        MEDALLION_ALERT_RETRY_SECONDS="1",
        MEDALLION_ALERT_RETRY_HOURS="1",
        DAGSTER_POSTGRES_URL=f"postgresql://dagster:{PG_PASSWORD}@db.internal:5432/dagster",
        SSL_CERT_FILE=str(cert_file),
    )
    server = DagsterDevOnly(root, env)
    webhook = None
    try:
        server.start()
        # A month whose file never arrived: bronze fails at once, without retries.
        run_id = server.launch_run("medallion_monthly", {"dagster/partition": "2019-10"})

        def refused_twice():
            tags = run_tags(server, run_id)
            attempts = int(tags.get("medallion/alert/webhook/attempts", 0))
            return tags if attempts >= 2 and tags.get("medallion/alert") == "pending" else None

        # The failure sensor's try and at least one of the retry sensor's, both refused.
        wait_for("two refused tries of the webhook", refused_twice, TIMEOUT, every=0.5)
        webhook = Webhook(port=webhook_port)
        back_at = time.time()

        def delivered():
            tags = run_tags(server, run_id)
            return tags if tags.get("medallion/alert") == "delivered" else None

        tags = wait_for("the alert delivered", delivered, TIMEOUT, every=0.5)
        delivered_at = time.time()

        def two_more_retry_ticks():
            ended = server.ended_ticks(RETRY_SENSOR, limit=50)
            later = [t for t in ended if t["timestamp"] > delivered_at]
            return later if len(later) >= 2 else None

        wait_for("two more ticks of the retry sensor", two_more_retry_ticks, TIMEOUT, every=1)

        def finished_ticks():
            # A tick the daemon is still evaluating shows as STARTED; its outcome is not known yet,
            # so the snapshot the tests read is one in which every tick has ended.
            snapshot = {name: server.sensor_ticks(name, limit=200) for name in SENSORS}
            in_flight = [t for ts in snapshot.values() for t in ts if t["status"] == "STARTED"]
            return None if in_flight else snapshot

        ticks = wait_for("the sensors' ticks, none in flight", finished_ticks, TIMEOUT, every=0.2)
        yield_value = Story(
            run_id=run_id,
            home=home,
            webhook=webhook,
            webhook_back_at=back_at,
            mails=list(mail.messages),
            logins=list(mail.logins),
            tags=tags,
            ticks=ticks,
            dev_log="",
            secrets=[
                SECRET_PATH,
                SECRET_PATH.rsplit("/", 1)[-1],
                SMTP_PASSWORD,
                base64.b64encode(SMTP_PASSWORD.encode()).decode(),
                PG_PASSWORD,
            ],
        )
    finally:
        server.stop()
        mail.stop()
    yield_value.dev_log = server.log_tail(10**8)
    try:
        yield yield_value
    finally:
        if webhook is not None:
            webhook.close()


def test_an_alert_the_webhook_refused_while_down_reaches_it_once_when_it_is_back(story):
    # Exactly one alert reached the webhook, after it came back, and none since (two more
    # ticks of the retry sensor went by).
    [(path, _, body)] = story.webhook.requests
    assert path == SECRET_PATH
    text = json.loads(body)["text"]
    assert "`medallion_monthly`" in text and "Partition: 2019-10" in text
    assert "No source file for month 2019-10" in text
    assert "Sent late: the run failed at" in text and text.endswith(f"/runs/{story.run_id}")

    # The mail server accepted it at once, once, over STARTTLS, after a login over TLS.
    assert story.logins == [(b"alerts", SMTP_PASSWORD.encode(), True)]
    [(content, encrypted)] = story.mails
    assert encrypted and b"No source file for month 2019-10" in content

    tags = story.tags
    assert tags["medallion/alert"] == "delivered"
    assert tags["medallion/alert/email"] == "delivered"
    assert tags["medallion/alert/email/attempts"] == "1"
    assert tags["medallion/alert/webhook"] == "delivered"
    assert int(tags["medallion/alert/webhook/attempts"]) >= 3
    assert "unreachable" in tags["medallion/alert/webhook/last_error"]

    # What the sensors' pages in the UI show: the failure sensor's warning for that run, the
    # retry sensor's refused tries, then the one that went through.
    failure_messages = [m for t in story.ticks[FAILURE_SENSOR] for m in t["messages"]]
    assert any(
        f"Alert for failed run {story.run_id} not accepted by webhook (attempt 1)" in m
        and "medallion_alert_retries tries again at" in m
        for m in failure_messages
    ), failure_messages
    assert any(f"Alert for failed run {story.run_id} sent by email." in m for m in failure_messages)
    retry_ticks = story.ticks[RETRY_SENSOR]
    assert all(t["status"] in ("SKIPPED", "SUCCESS") for t in retry_ticks), retry_ticks
    retry_messages = [m for t in retry_ticks for m in t["messages"]]
    sent_line = f"Alert for failed run {story.run_id} sent by webhook"
    sent = [m for m in retry_messages if sent_line in m]
    assert len(sent) == 1, retry_messages
    assert any("not accepted by webhook (attempt 2)" in m for m in retry_messages)
    reasons = [t["skipReason"] or "" for t in retry_ticks]
    assert any(r.startswith("Failure alerts retried — sent: run") for r in reasons), reasons


def test_no_secret_reaches_the_event_log_the_compute_logs_or_the_sensor_ticks(story):
    secrets = story.secrets
    # The run's event log, from the instance's own storage.
    instance = DagsterInstance.from_config(str(story.home))
    try:
        records = instance.get_records_for_run(run_id=story.run_id, limit=100_000).records
        events = json.dumps([str(r.event_log_entry) for r in records])
        run = instance.get_run_by_id(story.run_id)
        run_text = json.dumps({"tags": dict(run.tags), "config": run.run_config}, default=str)
    finally:
        instance.dispose()
    assert "No source file for month 2019-10" in events  # the search sees the run's failure
    # The compute logs (runs' and sensor ticks' captured output), every file Dagster wrote.
    storage = [p for p in (story.home / "storage").rglob("*") if p.is_file()]
    captured = b"".join(p.read_bytes() for p in storage)
    assert b"No source file for month 2019-10" in captured  # the run's step output is there
    everything = {
        str(p.relative_to(story.home)): p.read_bytes()
        for p in story.home.rglob("*")
        if p.is_file()
    }
    # The sensors' ticks as the UI shows them: messages, skip reasons, errors.
    ticks = json.dumps(story.ticks)
    host = f"127.0.0.1:{story.webhook.server.server_address[1]}"
    assert f"http://{host} unreachable" in ticks  # the ticks do name the webhook, by its host

    for secret in secrets:
        assert secret not in events, secret
        assert secret not in run_text, secret
        assert secret.encode() not in captured, secret
        assert secret not in ticks, secret
        leaked = [name for name, data in everything.items() if secret.encode() in data]
        assert leaked == [], (secret, leaked)
        assert secret not in story.dev_log, secret
