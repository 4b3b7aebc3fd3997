"""SMTP transport security against real aiosmtpd servers: STARTTLS, implicit TLS, no
cleartext login (a self-signed certificate made here)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twoway_dev.localstack.mailsink import OffersPipelining
from twoway_notifications.config import NotificationsSettings
from twoway_notifications.mailer import Delivery, Email, Mailer, SmtpConfig


def encrypted(server: Any, session: Session) -> bool:
    """TLS from STARTTLS (`session.ssl`) or from the first byte (an SSL transport)."""
    return session.ssl is not None or server.transport.get_extra_info("sslcontext") is not None


@dataclass
class Recorder(OffersPipelining):
    """What the server saw: messages (with whether TLS was on) and login attempts; it offers
    PIPELINING, so the mailer pipelines over TLS."""

    messages: list[tuple[bytes, bool]] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.content
        assert isinstance(content, bytes)
        self.messages.append((content, encrypted(server, session)))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        login = data.login.decode() if isinstance(data.login, bytes) else str(data.login)
        self.logins.append((login, encrypted(server, session)))
        return AuthResult(success=data.password == b"s3cret")


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "twoway test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_file, key_file)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    recorder: Recorder
    port: int


def serve(
    certificate: Certificate, *, starttls: bool = False, implicit: bool = False
) -> Iterator[Server]:
    recorder = Recorder()
    port = free_port()
    kwargs: dict[str, Any] = {
        "authenticator": recorder.authenticate,
        "auth_require_tls": False,  # the server would take a cleartext login: the client must not
    }
    if starttls:
        kwargs["tls_context"] = certificate.server_context()
    if implicit:
        kwargs["ssl_context"] = certificate.server_context()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield Server(recorder, port)
    finally:
        controller.stop()


@pytest.fixture
def plain(certificate: Certificate) -> Iterator[Server]:
    yield from serve(certificate)


@pytest.fixture
def offers_starttls(certificate: Certificate) -> Iterator[Server]:
    yield from serve(certificate, starttls=True)


@pytest.fixture
def implicit_tls(certificate: Certificate) -> Iterator[Server]:
    yield from serve(certificate, implicit=True)


def mail() -> Email:
    message = EmailMessage()
    message["From"] = "no-reply@twoway.test"
    message["To"] = "someone@example.org"
    message["Subject"] = "hello"
    message.set_content("body")
    return Email.of(message)


async def send(config: SmtpConfig) -> Delivery:
    mailer = Mailer(config)
    try:
        return (await mailer.send(mail())).delivery
    finally:
        await mailer.close()


async def test_opportunistic_starttls_is_used_when_offered(
    offers_starttls: Server, certificate: Certificate
) -> None:
    config = SmtpConfig(
        "127.0.0.1",
        offers_starttls.port,
        username="twoway",
        password="s3cret",
        ca_file=str(certificate.cert_file),
    )
    assert await send(config) == Delivery.SENT
    assert [tls for _, tls in offers_starttls.recorder.messages] == [True]
    assert offers_starttls.recorder.logins == [("twoway", True)]


async def test_opportunistic_without_starttls_sends_in_clear_but_never_logs_in(
    plain: Server,
) -> None:
    assert await send(SmtpConfig("127.0.0.1", plain.port)) == Delivery.SENT
    assert [tls for _, tls in plain.recorder.messages] == [False]
    with_login = SmtpConfig("127.0.0.1", plain.port, username="twoway", password="s3cret")
    assert await send(with_login) == Delivery.TEMPORARY  # kept pending, retried later
    assert plain.recorder.logins == []
    assert len(plain.recorder.messages) == 1


async def test_a_certificate_that_does_not_verify_is_not_downgraded_to_cleartext(
    offers_starttls: Server,
) -> None:
    # Self-signed and no CA bundle given: the system trust store does not know it.
    assert await send(SmtpConfig("127.0.0.1", offers_starttls.port)) == Delivery.TEMPORARY
    assert offers_starttls.recorder.messages == []


async def test_required_starttls_refuses_a_server_without_it(
    plain: Server, certificate: Certificate
) -> None:
    config = SmtpConfig("127.0.0.1", plain.port, tls="starttls", ca_file=str(certificate.cert_file))
    assert await send(config) == Delivery.TEMPORARY
    assert plain.recorder.messages == []


async def test_implicit_tls(implicit_tls: Server, certificate: Certificate) -> None:
    config = SmtpConfig(
        "127.0.0.1",
        implicit_tls.port,
        username="twoway",
        password="s3cret",
        tls="implicit",
        ca_file=str(certificate.cert_file),
    )
    assert await send(config) == Delivery.SENT
    assert [tls for _, tls in implicit_tls.recorder.messages] == [True]
    assert implicit_tls.recorder.logins == [("twoway", True)]


async def test_tls_off_sends_in_clear_even_when_offered(offers_starttls: Server) -> None:
    assert await send(SmtpConfig("127.0.0.1", offers_starttls.port, tls="off")) == Delivery.SENT
    assert [tls for _, tls in offers_starttls.recorder.messages] == [False]


def test_tls_settings_and_the_1_0_starttls_switch() -> None:
    assert NotificationsSettings().smtp_tls_mode == "opportunistic"
    assert NotificationsSettings(smtp_starttls=True).smtp_tls_mode == "starttls"
    assert NotificationsSettings(smtp_starttls=False).smtp_tls_mode == "off"
    assert NotificationsSettings(smtp_tls="implicit", smtp_starttls=False).smtp_tls_mode == (
        "implicit"
    )
