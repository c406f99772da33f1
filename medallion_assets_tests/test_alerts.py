"""Failure alerts, sent for real: the project's job fails in a Dagster instance on disk, and the
alert sensor is evaluated on that failed run against an HTTP server and an SMTP server that the
tests start on 127.0.0.1. The channels are the sensor's `AlertChannels` resource, built here
from `Settings` as `build_defs` builds it, or directly.

The sensors record what they did as tags of the failed run, so each test reads its own copy of a
failed run (`copy_of`): one test's alert never hides another's.
"""

import datetime as dt
import json
import logging
import re
import socket
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from dagster import AssetCheckSeverity, build_run_status_sensor_context, instance_for_test
from dagster._core.utils import make_new_run_id

from medallion_assets.automation.alerts import failure_alert_sensor, retry_pending_alerts
from medallion_assets.definitions import build_defs
from medallion_assets.resources.alert_channels import AlertChannels
from medallion_assets.settings import Settings
from medallion_assets_tests.source_lines import good_lines, run_job, write_source

SECRET_PATH = "/services/T0001/B0002/not-to-be-logged"

# Every test reads a real failed run of the project's job (module fixtures build them).
pytestmark = pytest.mark.graph


@pytest.fixture(scope="module")
def failed_runs(tmp_path_factory, spark):
    """Two runs of the job that failed for lack of a source file, in an instance with run retries
    on: one that Dagster will retry (max_retries 1) and one that it will not."""
    root = tmp_path_factory.mktemp("alerts")
    landing = root / "landing"
    landing.mkdir()
    settings = Settings(landing_dir=str(landing), warehouse_dir=str(root / "warehouse"))
    with instance_for_test(overrides={"run_retries": {"enabled": True}}) as instance:
        final = run_job(settings, instance=instance)
        retried = run_job(settings, instance=instance, tags={"dagster/max_retries": "1"})
        assert not final.success and not retried.success
        yield instance, final, retried, landing


@pytest.fixture(scope="module")
def failed_check_run(tmp_path_factory, spark):
    """A run stopped by a blocking check: a tenth of the month's lines are not events, above the
    default 5 % that the rejected-share check lets through."""
    root = tmp_path_factory.mktemp("failed-check")
    landing = root / "landing"
    landing.mkdir()
    write_source(landing, "2019-Oct.csv", good_lines(90) + ["not,a,valid,line"] * 10)
    settings = Settings(landing_dir=str(landing), warehouse_dir=str(root / "warehouse"))
    assert settings.rejected_fail_percent == 5.0
    with instance_for_test() as instance:
        result = run_job(settings, instance=instance)
        assert not result.success
        yield instance, result


def copy_of(instance, result, into=None) -> str:
    """A copy of a failed run under a new run id, in the same instance or ``into`` another one:
    its run record (without its job's snapshots, which alerts do not read) and its event log.
    Nothing has alerted for it yet."""
    into = into or instance
    run = instance.get_run_by_id(result.run_id)
    run_id = make_new_run_id()
    into.add_run(
        run._replace(run_id=run_id, job_snapshot_id=None, execution_plan_snapshot_id=None)
    )
    for record in instance.get_records_for_run(run_id=result.run_id, limit=100_000).records:
        into.store_event(record.event_log_entry._replace(run_id=run_id))
    return run_id


def alert_tags(instance, run_id) -> dict[str, str]:
    tags = instance.get_run_by_id(run_id).tags
    return {k: v for k, v in tags.items() if k.startswith("medallion/alert")}


@pytest.fixture
def own_instance():
    with instance_for_test() as instance:
        yield instance


class Webhook:
    """A real HTTP endpoint that records what it is sent and answers with ``status``. Given a
    ``port``, it listens there (a port another webhook left, to bring an endpoint back)."""

    def __init__(self, port: int = 0):
        self.requests: list[tuple[str, dict, bytes]] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.requests.append((self.path, dict(self.headers), body))
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 Message accepted"


@pytest.fixture
def smtp_server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


def evaluate(instance, result, alerts: AlertChannels, sensor=failure_alert_sensor, logged=None):
    """Evaluate the sensor as the daemon does for a failed run, on a fresh copy of ``result``'s
    run, with ``alerts`` as its resource; what it logs is appended to ``logged``. The copy's run
    id."""
    run_id = copy_of(instance, result)
    evaluate_run(instance, run_id, result, alerts, sensor=sensor, logged=logged)
    return run_id


def evaluate_run(instance, run_id, result, alerts, sensor=failure_alert_sensor, logged=None):
    context = build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        resources={"alerts": alerts},
    )
    if logged is not None:
        context.log.addHandler(Collect(logged))
    sensor(context)


class Collect(logging.Handler):
    def __init__(self, logged: list[str]):
        super().__init__()
        self.logged = logged

    def emit(self, record: logging.LogRecord) -> None:
        self.logged.append(f"{record.levelname}: {record.getMessage()}")


def test_a_failed_run_posts_job_partition_step_error_and_a_link(failed_runs, webhook):
    instance, final, _, landing = failed_runs
    alerts = AlertChannels.from_settings(
        Settings(alert_webhook_url=webhook.url, webserver_url="http://dagster.internal:3000/")
    )

    run_id = evaluate(instance, final, alerts)

    assert len(webhook.requests) == 1
    path, headers, body = webhook.requests[0]
    assert path == SECRET_PATH
    assert headers["Content-Type"] == "application/json"
    text = json.loads(body)["text"]
    assert "`medallion_monthly`" in text
    assert "Partition: 2019-10" in text
    assert "Failed step: bronze_events" in text
    assert "No source file for month 2019-10" in text and str(landing / "2019-Oct.csv") in text
    assert f"Run: http://dagster.internal:3000/runs/{run_id}" in text
    assert "Failed check:" not in text  # no check ran: bronze never got its file
    assert "Sent late" not in text
    assert alert_tags(instance, run_id) == {
        "medallion/alert": "delivered",
        "medallion/alert/webhook": "delivered",
        "medallion/alert/webhook/attempts": "1",
        "medallion/alert/webhook/last_try": alert_tags(instance, run_id)[
            "medallion/alert/webhook/last_try"
        ],
    }


def test_a_run_stopped_by_a_check_names_the_failed_check(failed_check_run, webhook):
    instance, result = failed_check_run

    run_id = evaluate(instance, result, AlertChannels(webhook_url=webhook.url))

    lines = json.loads(webhook.requests[0][2])["text"].splitlines()
    failed = [
        e for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == AssetCheckSeverity.ERROR
    ]
    assert len(failed) == 1, failed  # the rejected share; every other check of the run passed
    check = failed[0]
    line = f"Failed check: {check.check_name} on bronze/events: {check.description}"
    # One line for the failed check only, between the error and the link to the run.
    assert [x for x in lines if x.startswith("Failed check:")] == [line]
    assert lines[-2] == line and lines[-1] == f"Run: http://127.0.0.1:3000/runs/{run_id}"
    assert re.search(r"\b10(\.0+)? ?%", line), line  # the share a reader acts on: 10 of 100 lines
    assert any(x.startswith("Partition: 2019-10") for x in lines)


def test_the_run_link_defaults_to_the_local_webserver(failed_runs, webhook):
    instance, final, _, _ = failed_runs

    run_id = evaluate(
        instance, final, AlertChannels.from_settings(Settings(alert_webhook_url=webhook.url))
    )

    assert f"http://127.0.0.1:3000/runs/{run_id}" in json.loads(webhook.requests[0][2])["text"]


def test_a_run_that_dagster_will_retry_does_not_alert(failed_runs, webhook):
    instance, final, retried, _ = failed_runs
    alerts = AlertChannels(webhook_url=webhook.url)
    # Dagster itself marks failed runs with this tag when run retries are on.
    assert instance.get_run_by_id(retried.run_id).tags["dagster/will_retry"] == "true"
    assert instance.get_run_by_id(final.run_id).tags["dagster/will_retry"] == "false"

    retried_copy = evaluate(instance, retried, alerts)
    assert webhook.requests == []
    assert alert_tags(instance, retried_copy) == {}

    evaluate(instance, final, alerts)
    assert len(webhook.requests) == 1


def test_with_no_channel_configured_a_failed_run_is_only_logged(failed_runs, webhook):
    instance, final, _, _ = failed_runs
    logged: list[str] = []

    run_id = evaluate(instance, final, AlertChannels.from_settings(Settings()), logged=logged)

    assert webhook.requests == []
    assert f"Run {run_id} failed; no alert channel configured" in " ".join(logged)
    assert alert_tags(instance, run_id) == {}


def test_the_alert_sensor_of_the_definitions_uses_the_channels_of_its_settings(
    failed_runs, webhook, tmp_path
):
    instance, final, _, _ = failed_runs
    defs = build_defs(
        Settings(
            landing_dir=str(tmp_path),
            alert_webhook_url=webhook.url,
            webserver_url="https://dagster.example.com",
        )
    )
    sensor = defs.resolve_sensor_def("medallion_failure_alerts")
    assert sensor.required_resource_keys == {"alerts"}

    run_id = evaluate(instance, final, defs.resources["alerts"], sensor=sensor)

    [(path, _, body)] = webhook.requests
    assert path == SECRET_PATH
    assert f"Run: https://dagster.example.com/runs/{run_id}" in json.loads(body)["text"]


def test_an_email_goes_through_a_real_smtp_server(failed_runs, smtp_server):
    instance, final, _, _ = failed_runs
    mailbox, port = smtp_server
    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_to="data-oncall@example.com, lead@example.com",
        smtp_from="medallion@example.com",
    )

    run_id = evaluate(instance, final, AlertChannels.from_settings(settings))

    (envelope,) = mailbox.messages
    assert envelope.mail_from == "medallion@example.com"
    assert envelope.rcpt_tos == ["data-oncall@example.com", "lead@example.com"]
    message = message_from_bytes(envelope.content)
    assert message["Subject"] == "Dagster run failed: medallion_monthly for 2019-10"
    body = message.get_payload(decode=True).decode()
    assert "Failed step: bronze_events" in body
    assert f"/runs/{run_id}" in body
    assert alert_tags(instance, run_id)["medallion/alert/email"] == "delivered"


def test_smtp_credentials_are_never_sent_without_tls(failed_runs, smtp_server):
    instance, final, _, _ = failed_runs
    mailbox, port = smtp_server
    alerts = AlertChannels(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_to=["data-oncall@example.com"],
        smtp_user="alerts",
        smtp_password="hunter2",
    )
    logged: list[str] = []

    run_id = evaluate(instance, final, alerts, logged=logged)

    tags = alert_tags(instance, run_id)
    assert tags["medallion/alert/email"] == "pending"
    assert "refusing to send the password" in tags["medallion/alert/email/last_error"]
    assert mailbox.messages == []
    assert "hunter2" not in json.dumps(tags) and "hunter2" not in " ".join(logged)


def test_a_refused_alert_is_kept_pending_in_the_run_without_revealing_the_webhook_url(
    failed_runs, webhook, smtp_server
):
    """The evaluation does not fail (Dagster would not evaluate the run again anyway): the
    refused channel is recorded as pending on the run, for the retry sensor, and the tick's log
    says so, naming the webhook by scheme, host and port only."""
    instance, final, _, _ = failed_runs
    mailbox, port = smtp_server
    webhook.status = 500
    alerts = AlertChannels(
        webhook_url=webhook.url,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_to=["data-oncall@example.com"],
        retry_seconds=90,
    )
    logged: list[str] = []

    run_id = evaluate(instance, final, alerts, logged=logged)

    tags = alert_tags(instance, run_id)
    assert tags["medallion/alert"] == "pending"
    assert tags["medallion/alert/webhook"] == "pending"
    assert tags["medallion/alert/webhook/attempts"] == "1"
    host = webhook.url.removesuffix(SECRET_PATH)
    assert tags["medallion/alert/webhook/last_error"] == f"webhook {host} answered HTTP 500"
    # The other channel was still tried: the alert reached the mailbox, once.
    assert tags["medallion/alert/email"] == "delivered"
    assert len(mailbox.messages) == 1
    [warning] = [line for line in logged if line.startswith("WARNING")]
    tried = dt.datetime.fromisoformat(tags["medallion/alert/webhook/last_try"])
    next_try = (tried + dt.timedelta(seconds=90)).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"not accepted by webhook (attempt 1): webhook {host} answered HTTP 500" in warning
    assert f"medallion_alert_retries tries again at {next_try}" in warning
    everything = json.dumps(tags) + " ".join(logged)
    assert SECRET_PATH not in everything and "not-to-be-logged" not in everything


def test_a_channel_that_accepted_the_alert_is_not_sent_it_again(failed_runs, webhook):
    """A daemon that stopped after an evaluation but before moving the sensor's cursor evaluates
    the same run again: the run's tags say the webhook has the alert already."""
    instance, final, _, _ = failed_runs
    alerts = AlertChannels(webhook_url=webhook.url)
    run_id = evaluate(instance, final, alerts)
    logged: list[str] = []

    evaluate_run(instance, run_id, final, alerts, logged=logged)

    assert len(webhook.requests) == 1
    assert f"Alert for failed run {run_id} already handled" in " ".join(logged)


def test_the_retry_sends_the_same_alert_marked_late_once_the_webhook_accepts_it(
    failed_runs, webhook, own_instance
):
    """In an instance of its own: a retry pass looks at every pending alert of its instance."""
    shared, final, _, _ = failed_runs
    instance = own_instance
    webhook.status = 503
    alerts = AlertChannels(webhook_url=webhook.url, retry_seconds=60)
    run_id = copy_of(shared, final, into=instance)
    evaluate_run(instance, run_id, final, alerts)
    [(_, _, refused)] = webhook.requests
    tags = alert_tags(instance, run_id)
    tried = dt.datetime.fromisoformat(tags["medallion/alert/webhook/last_try"])
    webhook.status = 200
    logged: list[str] = []
    log = logging.getLogger(f"test_alerts.retry.{run_id}")
    log.setLevel(logging.INFO)
    log.addHandler(Collect(logged))

    # Not due yet: nothing is sent.
    early = retry_pending_alerts(
        instance, alerts, log, now=lambda: tried + dt.timedelta(seconds=59)
    )
    assert early == ([], [], []) and len(webhook.requests) == 1
    sent, pending, abandoned = retry_pending_alerts(
        instance, alerts, log, now=lambda: tried + dt.timedelta(seconds=60)
    )

    assert sent == [f"run {run_id} by webhook"] and pending == abandoned == []
    [_, (_, _, body)] = webhook.requests
    first, late = json.loads(refused)["text"].splitlines(), json.loads(body)["text"].splitlines()
    # The copy's record has no end time: its alert counts from the copy's creation.
    failed_at = instance.get_run_record_by_id(run_id).create_timestamp.astimezone(dt.timezone.utc)
    assert late[:-1] == [
        *first[:-1],
        f"Sent late: the run failed at {failed_at:%Y-%m-%d %H:%M:%S} UTC.",
    ]
    assert late[-1] == first[-1] == f"Run: http://127.0.0.1:3000/runs/{run_id}"
    tags = alert_tags(instance, run_id)
    assert tags["medallion/alert"] == tags["medallion/alert/webhook"] == "delivered"
    assert tags["medallion/alert/webhook/attempts"] == "2"
    assert f"Alert for failed run {run_id} sent by webhook (attempt 2)." in " ".join(logged)

    # Delivered: no later pass sends it again.
    retry_pending_alerts(instance, alerts, log, now=lambda: tried + dt.timedelta(days=2))
    assert len(webhook.requests) == 2


def test_a_resource_given_a_webhook_that_is_not_http_does_not_use_it(failed_runs, tmp_path):
    """`Settings` refuses such a URL when the code location loads; a resource configured some
    other way (its config, an `EnvVar` whose value changed) is refused when the alert is due."""
    instance, final, _, _ = failed_runs

    run_id = evaluate(instance, final, AlertChannels(webhook_url=f"file://{tmp_path}/sink"))

    error = alert_tags(instance, run_id)["medallion/alert/webhook/last_error"]
    assert re.search(r"must be an http\(s\) URL, not file://\.", error), error
    assert "sink" not in error
    assert not (tmp_path / "sink").exists()
