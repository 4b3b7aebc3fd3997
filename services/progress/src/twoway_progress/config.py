"""Settings of the progress service."""

from __future__ import annotations

from pydantic import Field, SecretStr
from twoway_shared.platform.settings import Settings


class ProgressSettings(Settings):
    """TWOWAY_* settings of the progress service (CONTRACT.md section 7)."""

    http_port: int = Field(
        8084, ge=0, le=65535, description="Port of health, metrics and read API."
    )
    xapi_endpoint: str | None = Field(
        None, description="xAPI LRS base URL (`.../xapi/`); unset: no statements are sent."
    )
    xapi_username: str | None = Field(None, description="LRS basic-auth user.")
    xapi_password: SecretStr | None = Field(None, description="LRS basic-auth password.")
