"""E-mail alerts over STARTTLS, checked on the wire.

A real SMTP server (aiosmtpd) that offers STARTTLS with a self-signed certificate and refuses
AUTH and mail before it, reached through a TCP relay that records every byte the client sends in
clear. The client must upgrade the connection before it logs in; the relay proves that neither
the password (raw or in any of SMTP AUTH's base64 forms) nor the alert itself crossed the wire
unencrypted. The certificate is trusted the way a deployment trusts a private CA: OpenSSL's
``SSL_CERT_FILE``; without it the server is refused before anything is sent.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from medallion_assets.automation.alerts import FailureAlert
from medallion_assets.resources.alert_channels import AlertDeliveryError, SmtpSettings, send_email

USER = "alerts"
PASSWORD = "s3cret-smtp-pass-4711"
ALERT = FailureAlert(
    job="medallion_monthly",
    run_id="0123abcd",
    partitions="2019-10",
    failed_steps=("bronze_events",),
    error="No source file for month 2019-10",
    run_url="http://127.0.0.1:3000/runs/0123abcd",
)


def self_signed(tmp_path):
    """A certificate for 127.0.0.1 signed by its own key: (certificate file, server context)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "smtp-cert.pem", tmp_path / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return cert_file, context


class TlsMailServer:
    """aiosmtpd requiring STARTTLS before anything else, recording logins and messages with
    whether their connection was encrypted at that moment."""

    def __init__(self, tls_context: ssl.SSLContext):
        self.logins: list[tuple[bytes, bytes, bool]] = []
        self.messages: list[tuple[bytes, bool]] = []
        server = self

        class Handler:
            async def handle_DATA(self, smtp, session, envelope):
                server.messages.append((envelope.content, session.ssl is not None))
                return "250 Message accepted"

        def authenticator(smtp, session, envelope, mechanism, auth_data):
            assert isinstance(auth_data, LoginPassword)
            server.logins.append((auth_data.login, auth_data.password, session.ssl is not None))
            return AuthResult(success=True)

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            tls_context=tls_context,
            require_starttls=True,
            auth_require_tls=True,
            authenticator=authenticator,
        )
        self.controller.start()

    def stop(self):
        self.controller.stop()


class Relay:
    """A TCP relay on 127.0.0.1 to ``port``, keeping every byte the client sends."""

    def __init__(self, port: int):
        self.sent = bytearray()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source, sink, record):
        try:
            while data := source.recv(65536):
                if record:
                    self.sent.extend(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self):
        self.listener.close()


def password_forms() -> list[bytes]:
    """The password as SMTP AUTH could carry it: raw, and base64 of LOGIN's and PLAIN's forms."""
    raw = PASSWORD.encode()
    return [
        raw,
        base64.b64encode(raw),
        base64.b64encode(b"\0" + USER.encode() + b"\0" + raw),
        base64.b64encode(USER.encode() + b"\0" + USER.encode() + b"\0" + raw),
    ]


@pytest.fixture
def tls_server(tmp_path):
    cert_file, context = self_signed(tmp_path)
    server = TlsMailServer(context)
    relay = Relay(server.port)
    yield server, relay, cert_file
    relay.close()
    server.stop()


def smtp(port: int) -> SmtpSettings:
    return SmtpSettings(
        host="127.0.0.1",
        to=("data-oncall@example.com",),
        port=port,
        sender="medallion@example.com",
        user=USER,
        password=PASSWORD,
    )


def test_the_client_upgrades_to_starttls_before_it_logs_in_and_sends(tls_server, monkeypatch):
    server, relay, cert_file = tls_server
    # How a deployment trusts its mail server's private CA: OpenSSL's own variable.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))

    send_email(smtp(relay.port), ALERT)

    assert server.logins == [(USER.encode(), PASSWORD.encode(), True)]
    [(content, encrypted)] = server.messages
    assert encrypted and b"No source file for month 2019-10" in content
    clear = bytes(relay.sent)
    # The relay did see the clear part of the conversation: the greeting and the upgrade.
    assert b"EHLO" in clear.upper() and b"STARTTLS" in clear.upper()
    assert b"AUTH" not in clear.upper()
    for form in password_forms():
        assert form not in clear
    assert b"No source file" not in clear and b"Dagster run failed" not in clear


def test_a_server_whose_certificate_is_not_trusted_gets_neither_password_nor_mail(tls_server):
    server, relay, _ = tls_server

    with pytest.raises(AlertDeliveryError, match="CERTIFICATE_VERIFY_FAILED") as error:
        send_email(smtp(relay.port), ALERT)

    assert PASSWORD not in str(error.value)
    assert server.logins == [] and server.messages == []
    assert b"STARTTLS" in bytes(relay.sent).upper()
    for form in password_forms():
        assert form not in bytes(relay.sent)
