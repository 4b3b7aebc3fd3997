"""Settings of the notifications service."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from twoway_shared.platform.settings import CalendarSettings


class NotificationsSettings(CalendarSettings):
    """TWOWAY_* settings of the notifications service (CONTRACT.md section 7)."""

    http_port: int = Field(
        8083, ge=0, le=65535, description="Port of health, metrics and read API."
    )
    smtp_host: str = Field("localhost", description="SMTP server host.")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP server port.")
    smtp_username: str | None = Field(None, description="SMTP login user, if the server needs one.")
    smtp_password: SecretStr | None = Field(None, description="SMTP login password.")
    smtp_tls: Literal["opportunistic", "starttls", "implicit", "off"] = Field(
        "opportunistic",
        description="opportunistic: STARTTLS when the server offers it; starttls: required; "
        "implicit: TLS from the first byte (port 465); off: never (then never AUTH either).",
    )
    smtp_starttls: bool | None = Field(
        None,
        description="(1.0 setting) true: as smtp_tls=starttls; false: as smtp_tls=off; "
        "ignored when smtp_tls is set to anything but opportunistic.",
    )
    smtp_ca_file: str | None = Field(
        None, description="CA bundle (PEM) that verifies the SMTP server; unset: system CAs."
    )
    smtp_connections: int = Field(
        16,
        ge=1,
        le=100,
        description="SMTP connections each instance keeps open in a burst, one message in "
        "flight on each; a relay that limits connections per client needs no more than that.",
    )
    mail_from: str = Field("Twoway <no-reply@twoway.local>", description="From: of every email.")

    @property
    def smtp_tls_mode(self) -> Literal["opportunistic", "starttls", "implicit", "off"]:
        """The TLS mode in force, the 1.0 `smtp_starttls` taken into account."""
        if self.smtp_tls != "opportunistic" or self.smtp_starttls is None:
            return self.smtp_tls
        return "starttls" if self.smtp_starttls else "off"

    calendar_organizer: str | None = Field(
        None,
        description="ORGANIZER of invitations, a mailbox that can receive replies; "
        "unset: the address of mail_from.",
    )
