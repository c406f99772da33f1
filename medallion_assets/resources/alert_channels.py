"""The channels alerts go out on: a Slack-compatible webhook and e-mail, as one resource.

Anything the project has to tell people — a failed run (`medallion_assets.automation.alerts`), a
month past its deadline (`automation.deadlines`), a rebuilt month whose revenue moved
(`assets.change_notices`) — is a `Message` (a subject, a text, a Slack payload) sent through the
`AlertChannels` resource, configured from `medallion_assets.settings`:

- ``MEDALLION_ALERT_WEBHOOK_URL``: any endpoint accepting Slack's ``{"text": ...}`` JSON (Slack,
  Mattermost, Rocket.Chat, ...). Only ``http``/``https`` URLs are used; the URL is a secret and is
  never written to logs, errors or tags (errors name its scheme, host and port).
- ``MEDALLION_SMTP_HOST`` and ``MEDALLION_SMTP_TO`` (comma-separated) turn e-mail on; optional
  ``MEDALLION_SMTP_PORT`` (25, or 465 with ``MEDALLION_SMTP_SSL=true``), ``MEDALLION_SMTP_FROM``,
  ``MEDALLION_SMTP_USER`` / ``MEDALLION_SMTP_PASSWORD``. STARTTLS is used whenever the server offers
  it; credentials are never sent over an unencrypted connection.

It is a resource, below the assets and the sensors that use it, so that an asset (gold's change
notice) and a sensor send through the same code without one layer importing the other.
"""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from dagster import ConfigurableResource
from pydantic import Field

from medallion_assets.settings import Settings

WEBHOOK_ENV = Settings.env_name("alert_webhook_url")
TIMEOUT_SECONDS = 10.0


class Message(Protocol):
    """What a channel needs of anything it sends."""

    @property
    def subject(self) -> str: ...

    def text(self) -> str: ...

    def slack_payload(self) -> dict: ...


class AlertDeliveryError(RuntimeError):
    """A channel did not accept the alert."""


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
    """Where alerts go: a webhook, e-mail, both or neither (then a failed run is only
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
    retry_seconds: int = Field(
        default=Settings.model_fields["alert_retry_seconds"].default,
        description="Wait before retrying an alert a channel did not accept; then doubled.",
    )
    retry_hours: float = Field(
        default=Settings.model_fields["alert_retry_hours"].default,
        description="How long after the run failed its alert is retried before it is given up.",
    )

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
            retry_seconds=settings.alert_retry_seconds,
            retry_hours=settings.alert_retry_hours,
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

    def senders(self) -> dict[str, Callable[[Message], None]]:
        """Each configured channel by the name its run tags use, with what sends it an alert."""
        senders: dict[str, Callable[[Message], None]] = {}
        if self.webhook_url:
            url = self.webhook_url
            senders["webhook"] = lambda alert: post_webhook(url, alert.slack_payload())
        smtp = self.smtp()
        if smtp is not None:
            senders["email"] = lambda alert: send_email(smtp, alert)
        return senders

    def scrub(self, text: str) -> str:
        """``text`` without the secrets of these channels. The errors raised here never contain
        them; this keeps it so whatever a library puts in an exception's message."""
        for secret in (self.webhook_url, self.smtp_password):
            if secret:
                text = text.replace(secret, "(secret)")
        if self.webhook_url:
            path = urllib.parse.urlsplit(self.webhook_url).path
            if len(path) > 1:
                text = text.replace(path, "(secret)")
        return text


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


def send_email(smtp: SmtpSettings, alert: Message) -> None:
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


def deliver(alert: Message, channels: AlertChannels) -> list[str]:
    """Send the message on every configured channel, at once and without keeping any state; the
    channels that accepted it. Raises `AlertDeliveryError` naming every channel that did not,
    after trying them all. (Failed-run alerts go through `medallion_assets.automation.alerts`'
    sensors, which send each channel on its own and retry.)"""
    delivered, failures = [], []
    for channel, send in channels.senders().items():
        try:
            send(alert)
            delivered.append(channel)
        except AlertDeliveryError as error:
            failures.append(str(error))
    if failures:
        raise AlertDeliveryError(
            f"{alert.subject!r} not delivered: " + "; ".join(failures)
        )
    return delivered
