"""Settings of the notifications service."""

from __future__ import annotations

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
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS.")
    mail_from: str = Field("Twoway <no-reply@twoway.local>", description="From: of every email.")
    calendar_organizer: str | None = Field(
        None,
        description="ORGANIZER of invitations, a mailbox that can receive replies; "
        "unset: the address of mail_from.",
    )
