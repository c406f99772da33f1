"""Failure alerts: someone is told when a run fails, with what they need to act on it.

The job this project replaces only sent an e-mail saying that something failed. A failed run here
posts one message naming the job, the month(s), the failed step, the error and a link to the run in
the Dagster UI, to a Slack-compatible incoming webhook and/or by e-mail. The channels are the
`AlertChannels` resource, configured from `medallion_assets.settings`:

- ``MEDALLION_ALERT_WEBHOOK_URL``: any endpoint accepting Slack's ``{"text": ...}`` JSON (Slack,
  Mattermost, Rocket.Chat, ...). Only ``http``/``https`` URLs are used; the URL is a secret and is
  never written to logs or errors.
- ``MEDALLION_SMTP_HOST`` and ``MEDALLION_SMTP_TO`` (comma-separated) turn e-mail on; optional
  ``MEDALLION_SMTP_PORT`` (25, or 465 with ``MEDALLION_SMTP_SSL=true``), ``MEDALLION_SMTP_FROM``,
  ``MEDALLION_SMTP_USER`` / ``MEDALLION_SMTP_PASSWORD``. STARTTLS is used whenever the server offers
  it; credentials are never sent over an unencrypted connection.
- ``MEDALLION_WEBSERVER_URL``: base of the run links (default ``http://127.0.0.1:3000``).

A run that Dagster will re-execute (run retries, tag ``dagster/will_retry=true``) does not alert:
only the last attempt does, so a transient failure that heals itself wakes nobody up. Step
retries inside a run never reach the sensor at all: the run only fails once they are used up.

If a channel cannot be reached the sensor evaluation fails after trying every channel, and the
tick shows the error. Dagster 1.13 does not evaluate that run again: a run-status sensor's cursor
moves past a run whose evaluation raised (`run_status_sensor_definition.py`), so such an alert is
lost today; see the README's list of known limits.
"""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage

from dagster import (
    AssetCheckSeverity,
    ConfigurableResource,
    DagsterEventType,
    DefaultSensorStatus,
    RunFailureSensorContext,
    run_failure_sensor,
)

# Dagster's own run tags; it exports no public names for them.
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
    WILL_RETRY_TAG,
)
from pydantic import Field

from medallion_assets.settings import Settings

WEBHOOK_ENV = Settings.env_name("alert_webhook_url")
TIMEOUT_SECONDS = 10.0
MAX_ERROR_CHARS = 1500


class AlertDeliveryError(RuntimeError):
    """At least one configured channel did not accept the alert."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    to: tuple[str, ...]
    port: int = 25
    sender: str = ""
    user: str | None = None
    password: str | None = None
    use_ssl: bool = False


class AlertChannels(ConfigurableResource):
    """Where failure alerts go: a webhook, e-mail, both or neither (then a failed run is only
    logged). ``definitions.build_defs`` fills it from `medallion_assets.settings`; secrets come
    as `dagster.EnvVar`, so the UI shows the variable's name, not the value."""

    webhook_url: str | None = Field(
        default=None, description="Slack-compatible incoming webhook (http or https); a secret."
    )
    webserver_url: str = Field(
        default=Settings.model_fields["webserver_url"].default,
        description="Base of the run links in alerts.",
    )
    smtp_host: str | None = Field(default=None, description="SMTP server; with smtp_to.")
    smtp_to: list[str] = Field(default_factory=list, description="E-mail recipients.")
    smtp_port: int | None = Field(default=None, description="Default 25, or 465 with smtp_ssl.")
    smtp_ssl: bool = Field(default=False, description="TLS from the first byte (SMTPS).")
    smtp_from: str | None = Field(default=None, description="Default medallion-assets@<host>.")
    smtp_user: str | None = Field(default=None, description="SMTP login (only over TLS).")
    smtp_password: str | None = Field(default=None, description="SMTP password; a secret.")

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertChannels:
        return cls(
            webhook_url=settings.resource_value("alert_webhook_url"),
            webserver_url=settings.webserver_url.rstrip("/"),
            smtp_host=settings.smtp_host,
            smtp_to=[a.strip() for a in (settings.smtp_to or "").split(",") if a.strip()],
            smtp_port=settings.smtp_port,
            smtp_ssl=settings.smtp_ssl,
            smtp_from=settings.smtp_from,
            smtp_user=settings.smtp_user,
            smtp_password=settings.resource_value("smtp_password"),
        )

    def smtp(self) -> SmtpSettings | None:
        """The e-mail channel, when a server and at least one recipient are configured."""
        if not self.smtp_host or not self.smtp_to:
            return None
        return SmtpSettings(
            host=self.smtp_host,
            to=tuple(self.smtp_to),
            port=self.smtp_port or (465 if self.smtp_ssl else 25),
            sender=self.smtp_from or f"medallion-assets@{socket.getfqdn()}",
            user=self.smtp_user,
            password=self.smtp_password,
            use_ssl=self.smtp_ssl,
        )

    @property
    def configured(self) -> bool:
        return bool(self.webhook_url) or self.smtp() is not None


@dataclass(frozen=True)
class FailureAlert:
    """What a failure alert says, independent of the channel."""

    job: str
    run_id: str
    partitions: str | None
    failed_steps: tuple[str, ...]
    error: str
    run_url: str
    failed_checks: tuple[str, ...] = field(default_factory=tuple)

    @property
    def subject(self) -> str:
        where = f" for {self.partitions}" if self.partitions else ""
        return f"Dagster run failed: {self.job}{where}"

    def text(self) -> str:
        steps = ", ".join(self.failed_steps) or "(none: the run failed outside a step)"
        lines = [
            f"Dagster run failed: job `{self.job}`",
            f"Partition: {self.partitions or '(none)'}",
            f"Failed step: {steps}",
            f"Error: {self.error}",
        ]
        lines += [f"Failed check: {c}" for c in self.failed_checks]
        lines.append(f"Run: {self.run_url}")
        return "\n".join(lines)

    def slack_payload(self) -> dict:
        return {"text": self.text()}


def _partitions(tags: dict[str, str]) -> str | None:
    if tags.get(PARTITION_NAME_TAG):
        return tags[PARTITION_NAME_TAG]
    start, end = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}...{end}"
    return None


def _error_text(error) -> str:
    """The error and its causes, without stack traces, cut to a readable length."""
    parts = []
    while error is not None and len(parts) < 4:
        message = (error.message or "").strip()
        if message and message not in parts:
            parts.append(message)
        error = error.cause
    text = " | caused by: ".join(parts) or "unknown error"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def build_alert(context: RunFailureSensorContext, webserver_url: str) -> FailureAlert:
    run = context.dagster_run
    step_failures = context.get_step_failure_events()
    errors = []
    for event in step_failures:
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            errors.append(data.user_failure_data.description)
        elif data.error is not None:
            errors.append(_error_text(data.error))
    if not errors:
        errors.append(context.failure_event.message or "unknown error")
    checks = []
    for record in context.instance.get_records_for_run(
        run_id=run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records:
        evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
        if not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR:
            checks.append(
                f"{evaluation.check_name} on {evaluation.asset_key.to_user_string()}: "
                f"{evaluation.description or 'failed'}"
            )
    error = " / ".join(errors)
    return FailureAlert(
        job=run.job_name,
        run_id=run.run_id,
        partitions=_partitions(dict(run.tags)),
        failed_steps=tuple(e.step_key for e in step_failures if e.step_key),
        error=error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…",
        run_url=f"{webserver_url.rstrip('/')}/runs/{run.run_id}",
        failed_checks=tuple(checks),
    )


def _redacted(url: str) -> str:
    """The webhook URL without its path and query, which carry the secret."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


def post_webhook(url: str, payload: dict) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in {"http", "https"}:
        # `Settings` refuses such a URL from the environment; this catches one configured on the
        # resource some other way. The URL itself is a secret: only its scheme is named.
        raise AlertDeliveryError(
            f"The alert webhook (${WEBHOOK_ENV}) must be an http(s) URL, not "
            f"{scheme + '://' if scheme else 'a URL without a scheme'}."
        )
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise AlertDeliveryError(f"webhook {_redacted(url)} answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise AlertDeliveryError(f"webhook {_redacted(url)} unreachable: {reason}") from None


def send_email(smtp: SmtpSettings, alert: FailureAlert) -> None:
    message = EmailMessage()
    message["Subject"] = alert.subject
    message["From"] = smtp.sender
    message["To"] = ", ".join(smtp.to)
    message.set_content(alert.text())
    context = ssl.create_default_context()
    try:
        if smtp.use_ssl:
            client = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=TIMEOUT_SECONDS, context=context
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=TIMEOUT_SECONDS)
        with client:
            client.ehlo()
            encrypted = smtp.use_ssl
            if not encrypted and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
                encrypted = True
            if smtp.user:
                if not encrypted:
                    raise AlertDeliveryError(
                        f"SMTP server {smtp.host}:{smtp.port} offers no TLS; refusing to send the "
                        "password in clear text."
                    )
                client.login(smtp.user, smtp.password or "")
            client.send_message(message)
    except (smtplib.SMTPException, OSError) as error:
        raise AlertDeliveryError(f"SMTP {smtp.host}:{smtp.port}: {error}") from None


def deliver(alert: FailureAlert, channels: AlertChannels) -> list[str]:
    """Send the alert on every configured channel; the channels that accepted it."""
    delivered, failures = [], []
    if channels.webhook_url:
        try:
            post_webhook(channels.webhook_url, alert.slack_payload())
            delivered.append("webhook")
        except AlertDeliveryError as error:
            failures.append(str(error))
    smtp = channels.smtp()
    if smtp:
        try:
            send_email(smtp, alert)
            delivered.append("email")
        except AlertDeliveryError as error:
            failures.append(str(error))
    if failures:
        raise AlertDeliveryError(
            f"Alert for run {alert.run_id} not delivered: " + "; ".join(failures)
        )
    return delivered


def will_be_retried(context: RunFailureSensorContext) -> bool:
    run = context.instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
    return run.tags.get(WILL_RETRY_TAG, "").lower() == "true"


@run_failure_sensor(
    name="medallion_failure_alerts",
    description=(
        "Posts every failed run (job, months, failed step, error, link) to "
        f"${WEBHOOK_ENV} and/or e-mails it when SMTP settings are given; runs that Dagster "
        "will retry do not alert."
    ),
    default_status=DefaultSensorStatus.RUNNING,
)
def failure_alert_sensor(context: RunFailureSensorContext, alerts: AlertChannels) -> None:
    run_id = context.dagster_run.run_id
    if will_be_retried(context):
        context.log.info(f"Run {run_id} failed but will be retried: no alert.")
        return
    if not alerts.configured:
        context.log.info(f"Run {run_id} failed; no alert channel configured (${WEBHOOK_ENV}).")
        return
    channels = deliver(build_alert(context, alerts.webserver_url), alerts)
    context.log.info(f"Alert for failed run {run_id} sent by {', '.join(channels)}.")
