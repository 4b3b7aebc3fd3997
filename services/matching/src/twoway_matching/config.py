"""Settings of the matching service."""

from __future__ import annotations

from pydantic import Field
from twoway_shared.platform.settings import Settings


class MatchingServiceSettings(Settings):
    """TWOWAY_* settings of the matching service (CONTRACT.md section 7)."""

    http_port: int = Field(
        8081, ge=0, le=65535, description="Port of health, metrics and read API."
    )
